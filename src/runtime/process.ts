// The Erlang process itself: its record (pid, mailbox, flags, state), the run loop that hands it messages, `!`, and how it ends.
import { CorralError, badarg, describe } from "./errors.js";
import { toError } from "./validate.js";
import * as flags from "./flags.js";
import { hibernate, wake, type StateStore } from "./hibernate.js";
import { runtimeLogger, type Logger } from "./log.js";
import { nodeName } from "./node.js";
import { livePids, newPid, Pid, type Ref } from "./pid.js";
import type { Waiter } from "./receive.js";
import { lookupName, registerProcess, unregisterProcess } from "./registry.js";
import { schedule } from "./scheduler.js";
import { stats } from "./stats.js";
import type { ExitReason, Monitor } from "./signals.js";
import type { SpawnOptions } from "./spawn.js";

// The flags as this module's own consts: V8 folds those into the run loop, but loads an imported binding at every use.
const { BUSY, DEAD, DIST_LINKED, EVICT_PENDING, GLOBAL_NAMED, HIBERNATE_NEXT, HIBERNATED, QUEUED, RUNNING, STARTED, TRAP_EXIT } = flags;

/**
 * @internal How one kind of process runs (a behavior's generic part, as gen_server's loop):
 * the callback process, the receive loop, and the behaviors in src/behaviors (the WebSocket
 * connection, the request). `handle` returns a thenable to hold the mailbox until it settles.
 */
export interface ProcessLoop {
  readonly name: string;
  /** Where this process's crash reports go; default: the runtime's logger. */
  readonly logger?: Logger;
  /** A receive-loop process takes its own messages with ctx.receive; the run loop only starts it. */
  readonly receiveLoop: boolean;
  /** Takes a cast in its own callback (handleCast); any other process gets a cast as a plain message. */
  readonly takesCasts?: boolean;
  start(p: Process, arg: unknown): PromiseLike<unknown> | void;
  handle(p: Process, msg: unknown): PromiseLike<unknown> | void;
  /** Runs once when a started process ends, for every reason ("killed" included). */
  terminate(p: Process, reason: ExitReason): void;
}

/** @internal What a module undoes when a process ends; registered once, when that module loads. */
export type ExitHook = (p: Process, reason: ExitReason) => void;

// The slots of the exit hooks. die() runs them in this order, between its own steps (see die).
/** groups.ts: leave every group. */
export const LEAVE_GROUPS = 0;
/** timers.ts: cancel the timers aimed at the process. */
export const CANCEL_TIMERS = 1;
/** signals.ts: drop its monitors, send exit signals to its links, DOWN to its watchers. */
export const SIGNAL_LINKS = 2;
/** global.ts: free its cluster-wide names. */
export const RELEASE_GLOBAL = 3;

type ExitHookSlot = typeof LEAVE_GROUPS | typeof CANCEL_TIMERS | typeof SIGNAL_LINKS | typeof RELEASE_GLOBAL;

/** A module that never loaded made nothing a process could hold. */
function nothingToUndo(): void {}

/** A fixed array, filled at module load: a process's end allocates nothing and calls only what it holds. */
const onExit: ExitHook[] = [nothingToUndo, nothingToUndo, nothingToUndo, nothingToUndo];

/** @internal */
export function setExitHook(slot: ExitHookSlot, hook: ExitHook): void {
  onExit[slot] = hook;
}

const EMPTY_QUEUE: unknown[] = [];
const COMPACT_AT = 1024;

/** The rarely used parts of a process: one pointer in each process instead of six fields. */
class Extra {
  links: Set<Process> | null = null;
  monitors: Set<Monitor> | null = null;
  monitoredBy: Set<Monitor> | null = null;
  name: string | undefined = undefined;
  groups: string[] | null = null;
  stateStore: StateStore | undefined = undefined;
}

export class Process {
  readonly pid: Pid;
  readonly loop: ProcessLoop;
  /** The process's state; while hibernated, what evictState left in its place. */
  state: unknown = undefined;
  flags = 0;
  /** The mailbox: a queue read from `head`; shared empty array while idle. */
  mailbox: unknown[] = EMPTY_QUEUE;
  head = 0;
  /** A pending exit: set by an exit signal or a stop result, acted on by the run loop. */
  exitSignal: ExitReason | undefined = undefined;
  /** Head of the intrusive list of timers aimed at this process (timers.ts). */
  timers: Ref | null = null;
  /** A pending receive (receive.ts). */
  waiter: Waiter | null = null;
  handled = 0;
  /** What most processes never use, made on first use. */
  private extra: Extra | null = null;

  constructor(loop: ProcessLoop, stateStore: StateStore | undefined) {
    this.loop = loop;
    this.pid = newPid(this);
    if (stateStore !== undefined) this.more().stateStore = stateStore;
  }

  private more(): Extra {
    return (this.extra ??= new Extra());
  }

  get links(): Set<Process> | null {
    return this.extra === null ? null : this.extra.links;
  }
  set links(v: Set<Process> | null) {
    if (v !== null || this.extra !== null) this.more().links = v;
  }

  /** Monitors this process holds on others. */
  get monitors(): Set<Monitor> | null {
    return this.extra === null ? null : this.extra.monitors;
  }
  set monitors(v: Set<Monitor> | null) {
    if (v !== null || this.extra !== null) this.more().monitors = v;
  }

  /** Monitors others hold on this process. */
  get monitoredBy(): Set<Monitor> | null {
    return this.extra === null ? null : this.extra.monitoredBy;
  }
  set monitoredBy(v: Set<Monitor> | null) {
    if (v !== null || this.extra !== null) this.more().monitoredBy = v;
  }

  get name(): string | undefined {
    return this.extra === null ? undefined : this.extra.name;
  }
  set name(v: string | undefined) {
    if (v !== undefined || this.extra !== null) this.more().name = v;
  }

  get groups(): string[] | null {
    return this.extra === null ? null : this.extra.groups;
  }
  set groups(v: string[] | null) {
    if (v !== null || this.extra !== null) this.more().groups = v;
  }

  get stateStore(): StateStore | undefined {
    return this.extra === null ? undefined : this.extra.stateStore;
  }

  get alive(): boolean {
    return (this.flags & DEAD) === 0;
  }

  get hibernated(): boolean {
    return (this.flags & HIBERNATED) !== 0;
  }

  get trapsExits(): boolean {
    return (this.flags & TRAP_EXIT) !== 0;
  }

  /** Messages waiting in the mailbox. */
  get queueLength(): number {
    return this.mailbox.length - this.head;
  }

  /** Ask for the state to be evicted once this turn ends with an empty mailbox. */
  requestHibernate(): void {
    this.flags |= HIBERNATE_NEXT;
  }

  /** The callback result ended the process. */
  stopSelf(reason: ExitReason): void {
    if (this.exitSignal === undefined) this.exitSignal = reason;
  }

  /**
   * One turn of the run loop: pending exit first, then init, then up to `batch` messages.
   * Returns the work done, for the scheduler's budget.
   */
  run(batch: number): number {
    this.flags &= ~QUEUED;
    if (this.flags & DEAD) return 1;
    if (this.exitSignal !== undefined) {
      this.die(this.exitSignal);
      return 1;
    }
    if ((this.flags & STARTED) === 0) return this.start();
    if (this.flags & BUSY) return 1;
    let n = 0;
    while (n < batch && this.head < this.mailbox.length) {
      const msg = this.dequeue();
      // Hibernation is one-shot: only the last callback's result decides.
      this.flags = (this.flags & ~HIBERNATE_NEXT) | RUNNING;
      current = this;
      let pending: PromiseLike<unknown> | void;
      try {
        if (this.flags & (HIBERNATED | EVICT_PENDING)) wake(this);
        pending = this.loop.handle(this, msg);
      } catch (err) {
        current = null;
        this.flags &= ~RUNNING;
        this.crash(err, msg);
        return n + 1;
      }
      current = null;
      this.flags &= ~RUNNING;
      n++;
      this.handled++;
      stats.messagesHandled++;
      if (this.exitSignal !== undefined) {
        this.die(this.exitSignal);
        return n;
      }
      if (pending !== undefined) {
        this.hold(pending, msg);
        return n;
      }
    }
    this.endTurn();
    return n === 0 ? 1 : n;
  }

  private start(): number {
    this.flags |= STARTED | RUNNING;
    current = this;
    let pending: PromiseLike<unknown> | void;
    // Until init runs, the state field holds the spawn argument.
    const arg = this.state;
    this.state = undefined;
    try {
      pending = this.loop.start(this, arg);
    } catch (err) {
      current = null;
      this.flags &= ~RUNNING;
      this.crash(err, undefined);
      return 1;
    }
    current = null;
    this.flags &= ~RUNNING;
    if (this.exitSignal !== undefined) this.die(this.exitSignal);
    else if (pending !== undefined) this.hold(pending, undefined);
    else this.endTurn();
    return 1;
  }

  /** A callback returned a promise: the mailbox waits until it settles. */
  private hold(pending: PromiseLike<unknown>, msg: unknown): void {
    this.flags |= BUSY;
    pending.then(
      () => {
        if (this.flags & DEAD) return;
        this.flags &= ~BUSY;
        if (this.exitSignal !== undefined) this.die(this.exitSignal);
        else if (!this.loop.receiveLoop) this.endTurn();
      },
      (err: unknown) => {
        if (this.flags & DEAD) return;
        this.flags &= ~BUSY;
        this.crash(err, msg);
      },
    );
  }

  /** After a turn: more mail → back in the run queue; none and asked to → hibernate. */
  private endTurn(): void {
    if (this.head < this.mailbox.length) {
      this.enqueueSelf();
    } else if (this.flags & HIBERNATE_NEXT) {
      this.flags &= ~HIBERNATE_NEXT;
      hibernate(this);
    }
  }

  /** @internal The state as the process's loop should see it, waking the process if it sleeps. */
  liveState(): unknown {
    if (this.flags & HIBERNATED) wake(this);
    return this.state;
  }

  private enqueueSelf(): void {
    if ((this.flags & (QUEUED | RUNNING | BUSY | DEAD)) === 0 && !this.loop.receiveLoop) {
      this.flags |= QUEUED;
      schedule(this);
    }
  }

  /** Puts a message in the mailbox (or straight into a waiting receive). */
  deliver(msg: unknown): void {
    if (this.flags & DEAD) return;
    const waiter = this.waiter;
    if (waiter !== null && waiter.offer(this, msg)) return;
    if (this.mailbox === EMPTY_QUEUE) this.mailbox = [msg];
    else this.mailbox.push(msg);
    this.enqueueSelf();
  }

  /** @internal Takes the oldest message (the run loop's, and a receive's that matched it). */
  dequeue(): unknown {
    const q = this.mailbox;
    const msg = q[this.head];
    q[this.head++] = undefined;
    if (this.head === q.length) {
      this.mailbox = EMPTY_QUEUE;
      this.head = 0;
    } else if (this.head >= COMPACT_AT && this.head * 2 >= q.length) {
      // splice, not copyWithin: on a plain array V8 moves elements ~20x faster this way.
      q.splice(0, this.head);
      this.head = 0;
    }
    return msg;
  }

  /** @internal An exit to act on at the process's next turn ("killed" overrides any other). */
  pendExit(reason: ExitReason): void {
    if (this.exitSignal === undefined || reason === "killed") this.exitSignal = reason;
    if (this.flags & (QUEUED | RUNNING)) return;
    this.flags |= QUEUED;
    schedule(this);
  }

  /** A callback threw or its promise rejected: the process ends with { crash }, then one crash report. */
  crash(err: unknown, msg: unknown): void {
    if (this.flags & DEAD) return;
    const error = toError(err);
    this.die({ crash: error });
    this.report(error, msg);
  }

  /** @internal This process's code threw outside its turn (a receive pattern, in the sender's call): report now, end at the next turn. */
  crashLater(err: unknown, msg: unknown): void {
    const error = toError(err);
    this.report(error, msg);
    this.pendExit({ crash: error });
  }

  private report(error: Error, msg: unknown): void {
    stats.crashes++;
    (this.loop.logger ?? runtimeLogger()).error(
      { pid: this.pid.toString(), behaviour: this.loop.name, err: error, message: describe(msg) },
      "process crashed",
    );
  }

  /**
   * The one way a process ends: terminate, then free everything, then tell links and
   * monitors. Each step runs only when the process holds something of its kind, in this
   * order: name, groups, timers, pending receive, hibernated state, mailbox, links and
   * monitors, global names, what it holds on other nodes.
   */
  die(reason: ExitReason): void {
    if (this.flags & DEAD) return;
    this.flags |= DEAD;
    // Actors always hear of the end (a connection must free its socket even when killed);
    // each decides whether its user callback runs for the reason.
    if ((this.flags & STARTED) !== 0) {
      const caller = current;
      current = this;
      try {
        this.loop.terminate(this, reason);
      } catch (err) {
        (this.loop.logger ?? runtimeLogger()).error({ pid: this.pid.toString(), behaviour: this.loop.name, err }, "terminate threw");
      }
      current = caller;
    }
    livePids.delete(this.pid.id);
    this.pid.proc = null;
    if (this.name !== undefined) unregisterProcess(this);
    if (this.groups !== null) onExit[LEAVE_GROUPS](this, reason);
    if (this.timers !== null) onExit[CANCEL_TIMERS](this, reason);
    if (this.waiter !== null) this.waiter.cancel(this);
    if (this.flags & HIBERNATED) this.stateStore?.delete(this.pid);
    this.state = undefined;
    this.mailbox = EMPTY_QUEUE;
    this.head = 0;
    if (this.extra !== null) onExit[SIGNAL_LINKS](this, reason);
    if (this.flags & GLOBAL_NAMED) onExit[RELEASE_GLOBAL](this, reason);
    if (this.flags & DIST_LINKED) dist?.died(this, reason);
  }
}

/** The process whose callback is running; null between callbacks. */
let current: Process | null = null;

/**
 * @internal What the runtime asks of distribution (dist.ts) for pids of other nodes:
 * Erlang's signals, carried by a cluster transport.
 */
export interface Dist {
  send(to: Pid, msg: unknown): void;
  link(me: Process, to: Pid): void;
  unlink(me: Process, to: Pid): void;
  monitor(me: Process, target: Pid): Ref;
  demonitor(me: Process, ref: Ref): boolean;
  exit(from: Pid, to: Pid, reason: ExitReason): void;
  /** A process marked DIST_LINKED ended. */
  died(p: Process, reason: ExitReason): void;
  /** What a process holds across nodes, for processInfo. */
  remotes(p: Process): { links: Pid[]; monitors: Ref[]; monitoredBy: Pid[] } | undefined;
}

/** Set while a cluster runs; null keeps every pid of another node unreachable, as before. */
let dist: Dist | null = null;

/** @internal */
export function setDist(d: Dist | null): void {
  dist = d;
}

/** @internal The running cluster's distribution, or null. */
export function activeDist(): Dist | null {
  return dist;
}

/** @internal dist, when pid belongs to another node and a cluster runs. */
export function distFor(pid: Pid): Dist | null {
  return dist !== null && pid.node !== nodeName() ? dist : null;
}

/** @internal The running process, or null. */
export function currentProcess(): Process | null {
  return current;
}

/** @internal The calling process; throws a clear Error naming fn outside one. */
export function callerProcess(fn: string): Process {
  if (current === null) {
    throw new CorralError(
      "ERR_NOT_IN_PROCESS",
      `${fn}() called outside a process: call it inside a callback, or capture the pid first (const me = self()) and use it after an await`,
    );
  }
  return current;
}

/** The calling process's pid. Valid in a callback's synchronous part. */
export function self(): Pid {
  return callerProcess("self").pid;
}

/** @internal Starts a process that runs `loop`. */
export function spawnProcess(loop: ProcessLoop, arg: unknown, opts: SpawnOptions | undefined): Process {
  const p = new Process(loop, opts?.stateStore);
  p.state = arg;
  if (opts?.trapExit === true) p.flags |= TRAP_EXIT;
  if (opts?.name !== undefined) {
    try {
      registerProcess(opts.name, p);
    } catch (err) {
      livePids.delete(p.pid.id);
      p.pid.proc = null;
      throw err;
    }
  }
  p.flags |= QUEUED;
  schedule(p);
  return p;
}

/** Resolves a destination; undefined for a dead or remote pid (sends to those are dropped, as in Erlang). */
function resolve(dest: Pid | string, fn: string): Process | undefined {
  if (dest instanceof Pid) return dest.proc ?? undefined;
  if (typeof dest === "string") {
    const p = lookupName(dest);
    if (p === undefined) throw new CorralError("ERR_UNKNOWN_NAME", `${fn}: no process registered as ${JSON.stringify(dest)}`);
    return p;
  }
  throw badarg(`${fn}: destination must be a Pid or a registered name, got ${describe(dest)}`);
}

/** @internal process_info(Pid, message_queue_len) without the snapshot: for a port's flow control, per frame. */
export function mailboxLength(pid: Pid): number {
  return pid.proc?.queueLength ?? 0;
}

/**
 * Erlang's `!`: asynchronous, ordered per sender; to a dead pid it is dropped. This is the
 * runtime's own, whose local tags may be symbols; apps get it typed as sendMessage.
 */
export function send(dest: Pid | string, msg: unknown): void {
  const p = dest instanceof Pid ? dest.proc : resolve(dest, "send");
  if (p) p.deliver(msg);
  else if (dest instanceof Pid) distFor(dest)?.send(dest, msg);
}

/**
 * A message send takes: anything but a symbol or a function as the message itself, which
 * could never reach a pid of another node (a pid does not say where it lives). Nested ones,
 * and values typed unknown, are checked when they are sent to another node.
 */
export type Sendable<M> = M extends symbol | Function ? NotSendable : M;

/** What send's message parameter becomes for a symbol or a function: nothing is assignable to it. */
export interface NotSendable {
  readonly "a symbol or a function cannot be a message: send data (a string tag, an object)": never;
}

/** Erlang's `!` as apps call it (exported as send): the same function, refusing at compile time what is not Sendable. */
export const sendMessage: <M>(dest: Pid | string, msg: Sendable<M>) => void = send;
