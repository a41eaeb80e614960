// erlang:link/1, unlink/1, monitor/2, demonitor/2, exit/2 and process_flag(trap_exit, _): exit signals between processes.
import { CorralError, badarg, describe } from "./errors.js";
import { DEAD, TRAP_EXIT } from "./flags.js";
import { nodeName } from "./node.js";
import { Pid, Ref } from "./pid.js";
import { checkPid, flag } from "./validate.js";
import { activeDist, callerProcess, currentProcess, distFor, setExitHook, SIGNAL_LINKS, type Process } from "./process.js";
import { takeMatching } from "./receive.js";

/** Why a process ended. "killed" is what "kill" becomes; "noproc" and "noconnection" come from the runtime. */
export type ExitReason =
  | "normal"
  | "shutdown"
  | "kill"
  | "killed"
  | "noproc"
  | "noconnection"
  | { readonly shutdown: unknown }
  | { readonly crash: Error };

/** Delivered to a monitoring process when the monitored one ends (monitor, spawnMonitor). Guard: isDown. */
export interface DownMessage {
  readonly type: "DOWN";
  readonly ref: Ref;
  readonly pid: Pid;
  readonly reason: ExitReason;
}

/** Delivered instead of an exit signal to a process that traps exits (trapExit, a link's end, exit/2). Guard: isExit. */
export interface ExitMessage {
  readonly type: "EXIT";
  readonly from: Pid;
  readonly reason: ExitReason;
}

/** Monitor references know both ends so either end's exit can clean them up. */
export class Monitor extends Ref {
  /** @internal */
  watcher: Process;
  /** @internal */
  target: Process;

  /** @internal */
  constructor(watcher: Process, target: Process) {
    super();
    this.watcher = watcher;
    this.target = target;
  }
}

const EXIT_STRINGS = new Set(["normal", "shutdown", "kill", "killed", "noproc", "noconnection"]);

/** True for the exit reasons the runtime knows (see docs/processes.md). */
export function isExitReason(reason: unknown): reason is ExitReason {
  if (typeof reason === "string") return EXIT_STRINGS.has(reason);
  if (typeof reason !== "object" || reason === null) return false;
  const keys = Object.keys(reason);
  if (keys.length !== 1) return false;
  if (keys[0] === "shutdown") return true;
  return keys[0] === "crash" && (reason as { crash: unknown }).crash instanceof Error;
}

/** Type guard for a monitor's DOWN message. */
export function isDown(msg: unknown): msg is DownMessage {
  return typeof msg === "object" && msg !== null && (msg as { type?: unknown }).type === "DOWN" && "ref" in msg;
}

/** Type guard for a trapped exit's EXIT message. */
export function isExit(msg: unknown): msg is ExitMessage {
  return typeof msg === "object" && msg !== null && (msg as { type?: unknown }).type === "EXIT" && "from" in msg;
}

/** @internal An exit signal arrives at p (from a link, exit/2 or another node). */
export function exitSignal(p: Process, from: Pid, reason: ExitReason, viaLink: boolean): void {
  if (p.flags & DEAD) return;
  if (reason === "kill" && !viaLink) {
    p.pendExit("killed");
  } else if (p.flags & TRAP_EXIT) {
    p.deliver({ type: "EXIT", from, reason: reason === "kill" ? "killed" : reason } satisfies ExitMessage);
  } else if (reason === "normal") {
    // A normal exit signal is ignored, unless a process sends it to itself (exit(self(), "normal")).
    if (!viaLink && from === p.pid) p.pendExit("normal");
  } else {
    p.pendExit(reason === "kill" ? "killed" : reason);
  }
}

/** A process ended: its monitors go, its links get its exit signal, its watchers a DOWN. */
function signalLinks(p: Process, reason: ExitReason): void {
  if (p.monitors !== null) {
    for (const m of p.monitors) m.target.monitoredBy?.delete(m);
    p.monitors = null;
  }
  const links = p.links;
  p.links = null;
  if (links !== null) {
    for (const other of links) {
      other.links?.delete(p);
      exitSignal(other, p.pid, reason, true);
    }
  }
  const watchers = p.monitoredBy;
  p.monitoredBy = null;
  if (watchers !== null) {
    for (const m of watchers) {
      m.watcher.monitors?.delete(m);
      m.watcher.deliver({ type: "DOWN", ref: m, pid: p.pid, reason } satisfies DownMessage);
    }
  }
}

setExitHook(SIGNAL_LINKS, signalLinks);

/** @internal Links two live processes both ways. */
export function linkProcesses(a: Process, b: Process): void {
  (a.links ??= new Set()).add(b);
  (b.links ??= new Set()).add(a);
}

/** Links the caller and pid both ways. A dead pid: EXIT noproc if trapping, else throws ERR_NOPROC. */
export function link(pid: Pid): void {
  linkFrom(callerProcess("link"), pid);
}

/** @internal link() for a given process (the receive context's own). */
export function linkFrom(me: Process, pid: Pid): void {
  const other = checkPid(pid, "link").proc;
  if (other === me) return;
  if (other === null) {
    const remote = distFor(pid);
    if (remote !== null) remote.link(me, pid);
    else if (me.flags & TRAP_EXIT) me.deliver({ type: "EXIT", from: pid, reason: "noproc" } satisfies ExitMessage);
    else throw new CorralError("ERR_NOPROC", `link: ${pid} is not alive`);
    return;
  }
  linkProcesses(me, other);
}

export function unlink(pid: Pid): void {
  unlinkFrom(callerProcess("unlink"), pid);
}

/** @internal */
export function unlinkFrom(me: Process, pid: Pid): void {
  const other = checkPid(pid, "unlink").proc;
  if (other === null) distFor(pid)?.unlink(me, pid);
  if (other === null || other === me) return;
  me.links?.delete(other);
  other.links?.delete(me);
}

/** Monitors pid; exactly one DOWN follows, at once with "noproc" (or "noconnection" when remote) for a dead pid. */
export function monitor(pid: Pid): Ref {
  return monitorFrom(callerProcess("monitor"), pid);
}

/** @internal */
export function monitorFrom(me: Process, pid: Pid): Ref {
  const target = checkPid(pid, "monitor").proc;
  if (target === null) {
    const remote = distFor(pid);
    if (remote !== null) return remote.monitor(me, pid);
    const ref = new Ref();
    const reason: ExitReason = pid.node === me.pid.node ? "noproc" : "noconnection";
    me.deliver({ type: "DOWN", ref, pid, reason } satisfies DownMessage);
    return ref;
  }
  const m = new Monitor(me, target);
  (me.monitors ??= new Set()).add(m);
  (target.monitoredBy ??= new Set()).add(m);
  return m;
}

/** Removes a monitor; a DOWN already in the mailbox stays unless flush is set. Returns whether it was active. */
export function demonitor(ref: Ref, opts?: { flush?: boolean }): boolean {
  return demonitorFrom(callerProcess("demonitor"), ref, opts);
}

/** @internal */
export function demonitorFrom(me: Process, ref: Ref, opts?: { flush?: boolean }): boolean {
  if (!(ref instanceof Ref)) throw badarg(`demonitor: expected a Ref, got ${describe(ref)}`);
  let active = false;
  const dist = activeDist();
  if (ref instanceof Monitor && ref.watcher === me && me.monitors?.delete(ref) === true) {
    ref.target.monitoredBy?.delete(ref);
    active = true;
  } else if (dist !== null && !(ref instanceof Monitor)) {
    active = dist.demonitor(me, ref);
  }
  if (opts?.flush === true) {
    takeMatching(me, (msg) => isDown(msg) && msg.ref === ref);
  }
  return active;
}

/** The sender of exit signals that come from outside any process (Erlang's shell, say): `<node.0>`. */
let outside: Pid | undefined;

function outsidePid(): Pid {
  return (outside ??= new Pid(nodeName(), 0, null));
}

/** Erlang's exit/2: sends an exit signal to pid from the caller (or from the runtime outside a process). */
export function exit(pid: Pid, reason: ExitReason): void {
  exitFrom(currentProcess(), pid, reason);
}

/** @internal exit/2 sent by a given process, or from outside (null). */
export function exitFrom(sender: Process | null, pid: Pid, reason: ExitReason): void {
  checkPid(pid, "exit");
  if (!isExitReason(reason)) {
    throw badarg(`exit: invalid reason ${describe(reason)}; use "normal", "shutdown", { shutdown: x }, "kill" or { crash: Error }`);
  }
  const target = pid.proc;
  if (target !== null) exitSignal(target, sender?.pid ?? outsidePid(), reason, false);
  else distFor(pid)?.exit(sender?.pid ?? outsidePid(), pid, reason);
}

/** process_flag(trap_exit, on) for the caller; returns the previous value. */
export function trapExit(on: boolean): boolean {
  return trapExitFor(callerProcess("trapExit"), on);
}

/** @internal */
export function trapExitFor(me: Process, on: boolean): boolean {
  flag(on, "trapExit: expected a boolean");
  const was = (me.flags & TRAP_EXIT) !== 0;
  if (on) me.flags |= TRAP_EXIT;
  else me.flags &= ~TRAP_EXIT;
  return was;
}
