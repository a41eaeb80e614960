// Erlang's pg: process groups, joined and left by any process, left by every process that ends.
import { badarg, describe } from "./errors.js";
import { Pid } from "./pid.js";
import { currentProcess, LEAVE_GROUPS, setExitHook, type Process, type Sendable } from "./process.js";
import { checkPid } from "./validate.js";

/**
 * Process groups, as Erlang's pg: any process may join any group; a process that ends
 * leaves all of them. Membership is a set (joining twice is one membership).
 */
const groups = new Map<string, Set<Process>>();

/**
 * What a cluster does for groups, as Erlang's pg does between nodes: every node keeps the
 * full membership; joins and leaves are told to all, a broadcast crosses once per node.
 */
export interface GroupDist {
  joined(group: string, pid: Pid): void;
  left(group: string, pid: Pid): void;
  broadcast(node: string, group: string, msg: unknown, except: Pid | undefined): void;
}

let dist: GroupDist | null = null;

/** Members on other nodes: group → node → pid id → pid, in join order. */
const remote = new Map<string, Map<string, Map<number, Pid>>>();

/** @internal */
export function setGroupDist(d: GroupDist | null): void {
  dist = d;
  if (d === null) remote.clear();
}

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
  return checkPid(pid, fn).proc;
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
  dist?.joined(group, p.pid);
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
  dist?.left(group, p.pid);
}

/** The process ended. */
function leaveAllGroups(p: Process): void {
  const mine = p.groups;
  p.groups = null;
  if (mine !== null) for (const g of mine) removeMember(g, p);
}

setExitHook(LEAVE_GROUPS, leaveAllGroups);

/** The pids in group: this node's in join order, then each other node's. */
export function members(group: string): Pid[] {
  const set = groups.get(checkGroup(group, "members"));
  const pids = set === undefined ? [] : Array.from(set, (p) => p.pid);
  const nodes = remote.get(group);
  if (nodes !== undefined) for (const byId of nodes.values()) for (const pid of byId.values()) pids.push(pid);
  return pids;
}

/** Every group with at least one member, on any node. */
export function whichGroups(): string[] {
  const names = new Set(groups.keys());
  for (const group of remote.keys()) names.add(group);
  return Array.from(names);
}

/** @internal Every local membership, for a node that has just come up: group → pids. */
export function localMemberships(): [string, Pid[]][] {
  return Array.from(groups, ([group, set]) => [group, Array.from(set, (p) => p.pid)]);
}

/** @internal Pids of another node joined group. */
export function remoteJoin(node: string, group: string, pids: Pid[]): void {
  let nodes = remote.get(group);
  if (nodes === undefined) remote.set(group, (nodes = new Map()));
  let byId = nodes.get(node);
  if (byId === undefined) nodes.set(node, (byId = new Map()));
  for (const pid of pids) byId.set(pid.id, pid);
}

/** @internal Pids of another node left group. */
export function remoteLeave(node: string, group: string, pids: Pid[]): void {
  const nodes = remote.get(group);
  const byId = nodes?.get(node);
  if (nodes === undefined || byId === undefined) return;
  for (const pid of pids) byId.delete(pid.id);
  if (byId.size === 0) nodes.delete(node);
  if (nodes.size === 0) remote.delete(group);
}

/** @internal A node went down (or came back and will tell its groups again): forget its members. */
export function dropNode(node: string): void {
  for (const [group, nodes] of remote) {
    if (nodes.delete(node) && nodes.size === 0) remote.delete(group);
  }
}

export interface BroadcastOptions {
  /** Skip this member, e.g. the sender in a chat room. */
  readonly except?: Pid;
}

/**
 * Sends msg to every member of group, on every node (one message per other node, fanned
 * out there); returns how many members it was sent to.
 */
export function broadcast<M>(group: string, msg: Sendable<M>, opts?: BroadcastOptions): number {
  const except = opts?.except;
  let n = localBroadcast(checkGroup(group, "broadcast"), msg, except);
  const nodes = remote.get(group);
  if (nodes === undefined || dist === null) return n;
  for (const [node, byId] of nodes) {
    const count = except !== undefined && except.node === node && byId.has(except.id) ? byId.size - 1 : byId.size;
    if (count === 0) continue;
    dist.broadcast(node, group, msg, except);
    n += count;
  }
  return n;
}

/** @internal The local part of a broadcast; a broadcast from another node arrives here. */
export function localBroadcast(group: string, msg: unknown, except: Pid | undefined): number {
  const set = groups.get(group);
  if (set === undefined) return 0;
  const skip = except?.proc ?? null;
  let n = 0;
  for (const p of set) {
    if (p === skip) continue;
    p.deliver(msg);
    n++;
  }
  return n;
}
