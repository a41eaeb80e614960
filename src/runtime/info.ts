// erlang:process_info/1, processes/0 and is_process_alive/1: what a process looks like from outside.
import { BUSY, DIST_LINKED, HIBERNATED, QUEUED, RUNNING, TRAP_EXIT } from "./flags.js";
import { livePids, type Pid, type Ref } from "./pid.js";
import { checkPid } from "./validate.js";
import { activeDist } from "./process.js";

export type ProcessStatus = "runnable" | "running" | "waiting" | "hibernated" | "exiting";

export interface ProcessInfo {
  readonly pid: Pid;
  readonly behaviour: string;
  readonly status: ProcessStatus;
  readonly messageQueueLen: number;
  readonly messagesHandled: number;
  readonly registeredName: string | undefined;
  readonly links: Pid[];
  readonly monitors: Ref[];
  readonly monitoredBy: Pid[];
  readonly groups: string[];
  readonly trapExit: boolean;
  readonly hibernated: boolean;
}

export function isAlive(pid: Pid): boolean {
  return checkPid(pid, "isAlive").proc !== null;
}

/** Every live local process. */
export function processes(): Pid[] {
  return Array.from(livePids.values());
}

/** How many local processes are alive (without building the list). */
export function processCount(): number {
  return livePids.size;
}

/** A snapshot of one process, or undefined when it is not alive. */
export function processInfo(pid: Pid): ProcessInfo | undefined {
  const p = checkPid(pid, "processInfo").proc;
  if (p === null) return undefined;
  const f = p.flags;
  const remote = f & DIST_LINKED ? activeDist()?.remotes(p) : undefined;
  const status: ProcessStatus =
    p.exitSignal !== undefined ? "exiting"
    : f & RUNNING ? "running"
    : f & HIBERNATED ? "hibernated"
    : p.waiter !== null ? "waiting"
    : f & (QUEUED | BUSY) ? "runnable"
    : "waiting";
  return {
    pid: p.pid,
    behaviour: p.loop.name,
    status,
    messageQueueLen: p.queueLength,
    messagesHandled: p.handled,
    registeredName: p.name,
    links: [...(p.links === null ? [] : Array.from(p.links, (l) => l.pid)), ...(remote?.links ?? [])],
    monitors: [...(p.monitors === null ? [] : Array.from(p.monitors)), ...(remote?.monitors ?? [])],
    monitoredBy: [...(p.monitoredBy === null ? [] : Array.from(p.monitoredBy, (m) => m.watcher.pid)), ...(remote?.monitoredBy ?? [])],
    groups: p.groups === null ? [] : [...p.groups],
    trapExit: (f & TRAP_EXIT) !== 0,
    hibernated: (f & HIBERNATED) !== 0,
  };
}
