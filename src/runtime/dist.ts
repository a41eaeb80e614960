// Erlang distribution's signals: messages, links, monitors and exit signals to pids of other nodes, and "noconnection".
import { serialize } from "node:v8";
import { deliverFromWire } from "./call.js";
import { CorralError, describe } from "./errors.js";
import { checkPortable, markForWire, restoreFromWire } from "./external.js";
import { dropNode, localBroadcast, localMemberships, remoteJoin, remoteLeave, setGroupDist } from "./groups.js";
import { livePids, Pid, pidOf, Ref } from "./pid.js";
import { nodeName } from "./node.js";
import { DIST_LINKED } from "./flags.js";
import { setDist, type Process } from "./process.js";
import { exitSignal, type DownMessage, type ExitReason } from "./signals.js";

/**
 * Erlang distribution's signals between nodes: messages, links, monitors and exit signals
 * to pids of other nodes. A transport (src/cluster) serializes the signals and carries them
 * in order per node pair; this module keeps both ends' bookkeeping and turns a lost node
 * into "noconnection", as Erlang does.
 *
 * A signal is an array whose first element is its tag. `marked` says its pids and refs were
 * replaced by wire markers (external.ts), which the receiver turns back with restoreSignal.
 */
export interface DistTransport {
  /** Whether node is connected now; a pid of an unknown or lost node is unreachable. */
  isUp(node: string): boolean;
  /** Queues a signal for node, after everything queued for it before. */
  post(node: string, signal: unknown[], marked: boolean): void;
  /** Queues a signal for every other node, in the same order as post's. */
  postAll(signal: unknown[], marked: boolean): void;
  /** A signal for a node that is not up was not sent: the transport counts and logs it as dropped. */
  unreachable(node: string): void;
}

// Signal tags: the first element of every encoded signal.
const SEND = 0;
const LINK = 1;
const UNLINK = 2;
const EXIT = 3;
const MONITOR = 4;
const DEMONITOR = 5;
const DOWN = 6;
const JOIN = 7;
const LEAVE = 8;
const GROUP_SEND = 9;
/** "What follows is all my group members": the receiver forgets what it had for the sender. */
const MEMBERS = 10;

/** A monitor this node's process holds on a pid of another node. */
class RemoteMonitor extends Ref {
  /** @internal */
  readonly watcher: Process;
  /** @internal */
  readonly target: Pid;

  /** @internal */
  constructor(watcher: Process, target: Pid) {
    super();
    this.watcher = watcher;
    this.target = target;
  }
}

/** What one local process holds across nodes. */
interface Remote {
  links: Pid[];
  monitors: RemoteMonitor[];
  /** Monitors processes of other nodes hold on this one: their refs and pids. */
  watchers: { ref: Ref; watcher: Pid }[];
}

const remotes = new Map<Process, Remote>();
const monitorsByRef = new Map<number, RemoteMonitor>();
let transport: DistTransport | null = null;

/**
 * A node-level service that lives with the distribution, as Erlang's net_kernel starts its
 * own: started before the first node is met (so it is among the members nodeUp tells),
 * stopped when the cluster stops. The session directory (behaviors/bullet.ts) is the one.
 */
export interface DistService {
  start(): void;
  stop(): void;
}

let service: DistService | null = null;

/** @internal Registered once, when its module loads; a cluster already running starts it at once. */
export function setDistService(s: DistService): void {
  service = s;
  if (transport !== null) s.start();
}

function remoteOf(p: Process): Remote {
  let r = remotes.get(p);
  if (r === undefined) {
    r = { links: [], monitors: [], watchers: [] };
    remotes.set(p, r);
    p.flags |= DIST_LINKED;
  }
  return r;
}

function forgetIfEmpty(p: Process, r: Remote): void {
  if (r.links.length === 0 && r.monitors.length === 0 && r.watchers.length === 0) remotes.delete(p);
}

function removePid(list: Pid[], pid: Pid): boolean {
  const i = list.findIndex((x) => x.id === pid.id && x.node === pid.node);
  if (i < 0) return false;
  list.splice(i, 1);
  return true;
}

/** Runtime signals carry pids or refs: always marked. */
function post(node: string, signal: unknown[]): void {
  transport?.post(node, markForWire(signal) as unknown[], true);
}

/** A user's message, checked at the call so a bad one fails there, not dropped when the batch leaves. */
function userSignal(what: string, msg: unknown, signal: (payload: unknown) => unknown[]): { signal: unknown[]; marked: boolean } {
  let marked: boolean;
  try {
    marked = checkPortable(msg);
  } catch (err) {
    throw new CorralError("ERR_BADARG", `${what}: ${(err as Error).message} (a message for another node must be data v8 can serialize)`, { cause: err });
  }
  return { signal: signal(marked ? markForWire(msg) : msg), marked };
}

/**
 * An exit reason as it can cross: one v8 cannot serialize (a function in a shutdown term,
 * an Error whose cause is one) crosses as its description, so DOWN and links still fire.
 */
function portable(reason: ExitReason): ExitReason {
  if (typeof reason === "string") return reason;
  if ("crash" in reason) {
    try {
      serialize(reason.crash);
      return reason;
    } catch {
      const copy = new Error(reason.crash.message);
      copy.name = reason.crash.name;
      copy.stack = reason.crash.stack;
      return { crash: copy };
    }
  }
  try {
    checkPortable(reason.shutdown);
    return reason;
  } catch {
    return { shutdown: describe(reason.shutdown) };
  }
}

function down(m: RemoteMonitor, reason: ExitReason): void {
  m.watcher.deliver({ type: "DOWN", ref: m, pid: m.target, reason } satisfies DownMessage);
}

const groupDist = {
  joined(group: string, pid: Pid): void {
    transport?.postAll(markForWire([JOIN, group, [pid]]) as unknown[], true);
  },
  left(group: string, pid: Pid): void {
    transport?.postAll(markForWire([LEAVE, group, [pid]]) as unknown[], true);
  },
  broadcast(node: string, group: string, msg: unknown, except: Pid | undefined): void {
    const { signal, marked } = userSignal(`broadcast to ${JSON.stringify(group)}`, msg, (payload) => [GROUP_SEND, group, payload, except === undefined ? -1 : except.node === node ? except.id : -1]);
    transport?.post(node, signal, marked);
  },
};

const dist = {
  send(to: Pid, msg: unknown): void {
    if (!transport!.isUp(to.node)) {
      transport!.unreachable(to.node);
      return;
    }
    const { signal, marked } = userSignal(`send to ${to}`, msg, (payload) => [SEND, to.id, payload]);
    transport!.post(to.node, signal, marked);
  },

  link(me: Process, to: Pid): void {
    if (!transport!.isUp(to.node)) {
      exitSignal(me, to, "noconnection", true);
      return;
    }
    const r = remoteOf(me);
    if (r.links.some((x) => x.equals(to))) return;
    r.links.push(to);
    post(to.node, [LINK, me.pid, to.id]);
  },

  unlink(me: Process, to: Pid): void {
    const r = remotes.get(me);
    if (r === undefined || !removePid(r.links, to)) return;
    forgetIfEmpty(me, r);
    post(to.node, [UNLINK, me.pid, to.id]);
  },

  monitor(me: Process, target: Pid): Ref {
    const m = new RemoteMonitor(me, target);
    if (!transport!.isUp(target.node)) {
      down(m, "noconnection");
      return m;
    }
    remoteOf(me).monitors.push(m);
    monitorsByRef.set(m.id, m);
    post(target.node, [MONITOR, me.pid, m, target.id]);
    return m;
  },

  demonitor(me: Process, ref: Ref): boolean {
    if (!(ref instanceof RemoteMonitor) || ref.watcher !== me || !monitorsByRef.delete(ref.id)) return false;
    const r = remotes.get(me);
    if (r !== undefined) {
      r.monitors.splice(r.monitors.indexOf(ref), 1);
      forgetIfEmpty(me, r);
    }
    post(ref.target.node, [DEMONITOR, ref, ref.target.id]);
    return true;
  },

  exit(from: Pid, to: Pid, reason: ExitReason): void {
    if (transport!.isUp(to.node)) post(to.node, [EXIT, from, to.id, portable(reason), false]);
    else transport!.unreachable(to.node);
  },

  remotes: remotesOf,

  died(p: Process, exitReason: ExitReason): void {
    const r = remotes.get(p);
    if (r === undefined) return;
    remotes.delete(p);
    const reason = portable(exitReason);
    for (const to of r.links) post(to.node, [EXIT, p.pid, to.id, reason, true]);
    for (const m of r.monitors) {
      monitorsByRef.delete(m.id);
      post(m.target.node, [DEMONITOR, m, m.target.id]);
    }
    for (const w of r.watchers) post(w.watcher.node, [DOWN, w.ref, p.pid, reason]);
  },
};

/** What a process holds across nodes; undefined when nothing. */
function remotesOf(p: Process): { links: Pid[]; monitors: Ref[]; monitoredBy: Pid[] } | undefined {
  const r = remotes.get(p);
  if (r === undefined) return undefined;
  return { links: [...r.links], monitors: [...r.monitors], monitoredBy: r.watchers.map((w) => w.watcher) };
}

/** @internal Starts carrying signals to other nodes through transport. */
export function startDist(t: DistTransport): void {
  transport = t;
  setDist(dist);
  // Before groups cross: the service's memberships go out with the others when each node is met.
  service?.start();
  setGroupDist(groupDist);
}

/** @internal Stops: every remote link and monitor ends as if all other nodes were lost. */
export function stopDist(nodes: Iterable<string>): void {
  for (const node of nodes) nodeDown(node);
  setDist(null);
  setGroupDist(null);
  transport = null;
  service?.stop();
}

/** @internal Puts back the pids and refs of a signal that came marked. */
export function restoreSignal(signal: unknown[]): unknown[] {
  return restoreFromWire(signal) as unknown[];
}

/** @internal One signal from node, in the order node sent it. */
export function receiveSignal(from: string, signal: unknown[]): void {
  switch (signal[0]) {
    case SEND: {
      const p = livePids.get(signal[1] as number)?.proc;
      if (p !== undefined && p !== null) deliverFromWire(p, signal[2]);
      return;
    }
    case LINK: {
      const [, other, id] = signal as [number, Pid, number];
      const target = livePids.get(id)?.proc;
      if (target === undefined || target === null) {
        post(from, [EXIT, pidOf(nodeName(), id), other.id, "noproc", true]);
        return;
      }
      const r = remoteOf(target);
      if (!r.links.some((x) => x.equals(other))) r.links.push(other);
      return;
    }
    case UNLINK: {
      const [, other, id] = signal as [number, Pid, number];
      const target = livePids.get(id)?.proc;
      const r = target ? remotes.get(target) : undefined;
      if (target && r !== undefined && removePid(r.links, other)) forgetIfEmpty(target, r);
      return;
    }
    case EXIT: {
      const [, other, id, reason, viaLink] = signal as [number, Pid, number, ExitReason, boolean];
      const target = livePids.get(id)?.proc;
      if (!target) return;
      if (viaLink) {
        // An exit signal through a link counts only while the link stands.
        const r = remotes.get(target);
        if (r === undefined || !removePid(r.links, other)) return;
        forgetIfEmpty(target, r);
      }
      exitSignal(target, other, reason, viaLink);
      return;
    }
    case MONITOR: {
      const [, watcher, ref, id] = signal as [number, Pid, Ref, number];
      const target = livePids.get(id)?.proc;
      if (!target) post(from, [DOWN, ref, pidOf(nodeName(), id), "noproc"]);
      else remoteOf(target).watchers.push({ ref, watcher });
      return;
    }
    case DEMONITOR: {
      const [, ref, id] = signal as [number, Ref, number];
      const target = livePids.get(id)?.proc;
      const r = target ? remotes.get(target) : undefined;
      if (!target || r === undefined) return;
      const i = r.watchers.findIndex((w) => w.ref.equals(ref));
      if (i >= 0) r.watchers.splice(i, 1);
      forgetIfEmpty(target, r);
      return;
    }
    case DOWN: {
      const [, ref, , reason] = signal as [number, Ref, Pid, ExitReason];
      const m = monitorsByRef.get(ref.id);
      if (m === undefined || ref.node !== nodeName()) return;
      monitorsByRef.delete(m.id);
      const r = remotes.get(m.watcher);
      if (r !== undefined) {
        r.monitors.splice(r.monitors.indexOf(m), 1);
        forgetIfEmpty(m.watcher, r);
      }
      down(m, reason);
      return;
    }
    case JOIN:
      remoteJoin(from, signal[1] as string, signal[2] as Pid[]);
      return;
    case LEAVE:
      remoteLeave(from, signal[1] as string, signal[2] as Pid[]);
      return;
    case MEMBERS:
      dropNode(from);
      return;
    case GROUP_SEND: {
      const except = signal[3] as number;
      localBroadcast(signal[1] as string, signal[2], except < 0 ? undefined : livePids.get(except));
      return;
    }
  }
}

/** @internal node has come up: it learns this node's group members. */
export function nodeUp(node: string): void {
  post(node, [MEMBERS]);
  for (const [group, pids] of localMemberships()) post(node, [JOIN, group, pids]);
}

/** @internal node is lost: links to its pids fire and monitors on them go DOWN, with "noconnection"; its group members are forgotten. */
export function nodeDown(node: string): void {
  dropNode(node);
  for (const [p, r] of Array.from(remotes)) {
    const lost = r.links.filter((pid) => pid.node === node);
    if (lost.length > 0) r.links = r.links.filter((pid) => pid.node !== node);
    const gone = r.monitors.filter((m) => m.target.node === node);
    if (gone.length > 0) r.monitors = r.monitors.filter((m) => m.target.node !== node);
    r.watchers = r.watchers.filter((w) => w.watcher.node !== node);
    forgetIfEmpty(p, r);
    for (const m of gone) {
      monitorsByRef.delete(m.id);
      down(m, "noconnection");
    }
    for (const pid of lost) exitSignal(p, pid, "noconnection", true);
  }
}
