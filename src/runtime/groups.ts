import { badarg, describe } from "./errors.js";
import { Pid } from "./pid.js";
import { currentProcess, type Process } from "./process.js";

/**
 * Process groups, as Erlang's pg: any process may join any group; a process that ends
 * leaves all of them. Membership is a set (joining twice is one membership).
 */
const groups = new Map<string, Set<Process>>();

function checkGroup(group: unknown, fn: string): string {
  if (typeof group !== "string" || group.length === 0) throw badarg(`${fn}: group must be a non-empty string, got ${describe(group)}`);
  return group;
}

function target(pid: Pid | undefined, fn: string): Process | null {
  if (pid === undefined) {
    const me = currentProcess();
    if (me === null) throw badarg(`${fn}: no pid given and not called inside a process`);
    return me;
  }
  if (!(pid instanceof Pid)) throw badarg(`${fn}: expected a Pid, got ${describe(pid)}`);
  return pid.proc;
}

/** Adds pid (default: the caller) to group. Joining with a dead pid does nothing. */
export function join(group: string, pid?: Pid): void {
  checkGroup(group, "join");
  const p = target(pid, "join");
  if (p === null) return;
  let set = groups.get(group);
  if (set === undefined) {
    set = new Set();
    groups.set(group, set);
  }
  if (set.has(p)) return;
  set.add(p);
  (p.groups ??= []).push(group);
}

/** Removes pid (default: the caller) from group; true if it was a member. */
export function leave(group: string, pid?: Pid): boolean {
  checkGroup(group, "leave");
  const p = target(pid, "leave");
  if (p === null || p.groups === null) return false;
  const i = p.groups.indexOf(group);
  if (i < 0) return false;
  p.groups.splice(i, 1);
  if (p.groups.length === 0) p.groups = null;
  removeMember(group, p);
  return true;
}

function removeMember(group: string, p: Process): void {
  const set = groups.get(group);
  if (set === undefined) return;
  set.delete(p);
  if (set.size === 0) groups.delete(group);
}

/** @internal The process ended. */
export function leaveAllGroups(p: Process): void {
  const mine = p.groups;
  p.groups = null;
  if (mine !== null) for (const g of mine) removeMember(g, p);
}

/** The pids in group, in join order. */
export function members(group: string): Pid[] {
  const set = groups.get(checkGroup(group, "members"));
  return set === undefined ? [] : Array.from(set, (p) => p.pid);
}

/** Every group with at least one member. */
export function whichGroups(): string[] {
  return Array.from(groups.keys());
}

export interface BroadcastOptions {
  /** Skip this member, e.g. the sender in a chat room. */
  readonly except?: Pid;
}

/** Sends msg to every member of group; returns how many got it. */
export function broadcast(group: string, msg: unknown, opts?: BroadcastOptions): number {
  const set = groups.get(checkGroup(group, "broadcast"));
  if (set === undefined) return 0;
  const skip = opts?.except?.proc ?? null;
  let n = 0;
  for (const p of set) {
    if (p === skip) continue;
    p.deliver(msg);
    n++;
  }
  return n;
}
