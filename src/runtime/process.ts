import { CorralError, badarg, describe } from "./errors.js";
import { releaseGlobalNames } from "./global.js";
import { leaveAllGroups } from "./groups.js";
import { evictState, restoreState, type StateStore } from "./hibernate.js";
import { runtimeLogger, type Logger } from "./log.js";
import { nodeName } from "./node.js";
import { livePids, newPid, Pid, Ref } from "./pid.js";
import { lookupName, registerProcess, unregisterProcess } from "./registry.js";
import { isResult, type Result } from "./result.js";
import { schedule } from "./scheduler.js";
import { cancelProcessTimers, cancelTimerRef } from "./timers.js";

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

/** Delivered to a monitoring process when the monitored one ends. */
export interface DownMessage {
  readonly type: "DOWN";
  readonly ref: Ref;
  readonly pid: Pid;
  readonly reason: ExitReason;
}

/** Delivered to a process that traps exits instead of the exit signal. */
export interface ExitMessage {
  readonly type: "EXIT";
  readonly from: Pid;
  readonly reason: ExitReason;
}

/** A gen_server-like process: callbacks run one message at a time, never re-entrantly. */
export interface ProcessBehavior<S, M = unknown, A = unknown> {
  init(arg: A): S | Result<S> | PromiseLike<S | Result<S>>;
  handleInfo(msg: M, state: S): Result<S> | PromiseLike<Result<S>>;
  terminate?(reason: ExitReason, state: S): void;
}

/** What an async-function process is given: its pid and Erlang's selective receive. */
export interface ReceiveContext<M = unknown> {
  readonly self: Pid;
  /** The oldest message matching `pred` (any message without one); unmatched ones stay queued in order. */
  receive(): Promise<M>;
  receive<T extends M>(pred: (msg: M) => msg is T): Promise<T>;
  receive(pred: (msg: M) => boolean): Promise<M>;
  /** With `after`: resolves to undefined when nothing matched within timeoutMs. */
  receive<T extends M>(pred: ((msg: M) => msg is T) | undefined, timeoutMs: number): Promise<T | undefined>;
  receive(pred: ((msg: M) => boolean) | undefined, timeoutMs: number): Promise<M | undefined>;
  /**
   * The process acting as itself after an await, where self() and friends no longer know
   * who is calling: Erlang's "receive, then link" in the async flavour.
   */
  link(pid: Pid): void;
  unlink(pid: Pid): void;
  monitor(pid: Pid): Ref;
  demonitor(ref: Ref, opts?: { flush?: boolean }): boolean;
  trapExit(on: boolean): boolean;
  exit(pid: Pid, reason: ExitReason): void;
  spawnLink<S, M2, A>(behavior: ProcessBehavior<S, M2, A> | ProcessFunction<M2, A>, arg?: A, opts?: SpawnOptions): Pid;
  spawnMonitor<S, M2, A>(behavior: ProcessBehavior<S, M2, A> | ProcessFunction<M2, A>, arg?: A, opts?: SpawnOptions): { pid: Pid; ref: Ref };
}

export type ProcessFunction<M = unknown, A = unknown> = (ctx: ReceiveContext<M>, arg: A) => unknown;

export interface SpawnOptions {
  /** Register the new process under this name before it runs. */
  readonly name?: string;
  /** Start with exits trapped, as process_flag(trap_exit, true) in init would. */
  readonly trapExit?: boolean;
  /** Where hibernated state goes; default: v8-serialized into a buffer held by the process. */
  readonly stateStore?: StateStore;
}

/**
 * @internal How one kind of process runs: the callback behaviour, the receive loop, and
 * the actors in src/actors (the WebSocket connection). `handle` returns a thenable to hold
 * the mailbox until it settles.
 */
export interface Actor {
  readonly name: string;
  /** Where this process's crash reports go; default: the runtime's logger. */
  readonly logger?: Logger;
  /** A receive-loop actor takes its own messages with ctx.receive; the run loop only starts it. */
  readonly receiveLoop: boolean;
  start(p: Process, arg: unknown): PromiseLike<unknown> | void;
  handle(p: Process, msg: unknown): PromiseLike<unknown> | void;
  /** Runs once when a started process ends, for every reason ("killed" included). */
  terminate(p: Process, reason: ExitReason): void;
}

// Process flags: one small integer instead of a field per boolean keeps a process small.
const QUEUED = 1;
const RUNNING = 2;
const BUSY = 4;
const STARTED = 8;
const TRAP_EXIT = 16;
const HIBERNATE_NEXT = 32;
const HIBERNATED = 64;
const DEAD = 128;
/** @internal The process has links or monitors across nodes (dist.ts keeps them). */
export const DIST_LINKED = 256;
/** @internal The process holds cluster-wide names (global.ts keeps them). */
export const GLOBAL_NAMED = 512;
/** @internal The hibernated state is a bare serialized string (hibernate.ts). */
export const FROZEN_BYTES = 1024;

/** A pending receive of an async-function process. */
/** @internal */
export interface Waiter {
  pred: ((msg: unknown) => boolean) | undefined;
  resolve: (msg: unknown) => void;
  timer: Ref | null;
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

export class Process {
  readonly pid: Pid;
  readonly actor: Actor;
  /** The actor's state; while hibernated, what evictState left in its place. */
  state: unknown = undefined;
  flags = 0;
  /** The mailbox: a queue read from `head`; shared empty array while idle. */
  mailbox: unknown[] = EMPTY_QUEUE;
  head = 0;
  /** A pending exit: set by an exit signal or a stop result, acted on by the run loop. */
  exitSignal: ExitReason | undefined = undefined;
  /** Head of the intrusive list of timers aimed at this process (timers.ts). */
  timers: Ref | null = null;
  waiter: Waiter | null = null;
  handled = 0;
  /** What most processes never use, made on first use. */
  private extra: Extra | null = null;

  constructor(actor: Actor, stateStore: StateStore | undefined) {
    this.actor = actor;
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
        if (this.flags & HIBERNATED) this.wake();
        pending = this.actor.handle(this, msg);
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
      pending = this.actor.start(this, arg);
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
        else if (!this.actor.receiveLoop) this.endTurn();
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
      if (evictState(this)) this.flags |= HIBERNATED;
    }
  }

  private wake(): void {
    this.flags &= ~HIBERNATED;
    restoreState(this);
  }

  /** @internal The state as the actor should see it, waking the process if it sleeps. */
  liveState(): unknown {
    if (this.flags & HIBERNATED) this.wake();
    return this.state;
  }

  private enqueueSelf(): void {
    if ((this.flags & (QUEUED | RUNNING | BUSY | DEAD)) === 0 && !this.actor.receiveLoop) {
      this.flags |= QUEUED;
      schedule(this);
    }
  }

  /** Puts a message in the mailbox (or straight into a waiting receive). */
  deliver(msg: unknown): void {
    if (this.flags & DEAD) return;
    const waiter = this.waiter;
    if (waiter !== null && this.matches(waiter, msg)) {
      this.takeWaiter(waiter);
      this.handled++;
      waiter.resolve(msg);
      return;
    }
    if (this.mailbox === EMPTY_QUEUE) this.mailbox = [msg];
    else this.mailbox.push(msg);
    this.enqueueSelf();
  }

  /**
   * Runs a receive pattern for a message on its way in. The pattern is the receiver's code
   * running in the sender's call: if it throws, the receiver crashes, never the sender.
   */
  private matches(waiter: Waiter, msg: unknown): boolean {
    if (waiter.pred === undefined) return true;
    try {
      return waiter.pred(msg);
    } catch (err) {
      const error = toError(err);
      this.report(error, msg);
      this.pendExit({ crash: error });
      return false;
    }
  }

  private dequeue(): unknown {
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

  /** Removes and returns the first queued message matching pred (selective receive). */
  takeMatching(pred: ((msg: unknown) => boolean) | undefined): { found: boolean; msg: unknown } {
    const q = this.mailbox;
    for (let i = this.head; i < q.length; i++) {
      const msg = q[i];
      if (pred === undefined || pred(msg)) {
        if (i === this.head) this.dequeue();
        else q.splice(i, 1);
        this.handled++;
        return { found: true, msg };
      }
    }
    return { found: false, msg: undefined };
  }

  /** @internal Installs a pending receive; a timed one is cleared by the timer module. */
  setWaiter(waiter: Waiter): void {
    this.waiter = waiter;
  }

  /** @internal */
  takeWaiter(waiter: Waiter): void {
    this.waiter = null;
    if (waiter.timer !== null) cancelTimerRef(waiter.timer);
  }

  /** An exit signal arrives (from a link or exit/2). */
  signal(from: Pid, reason: ExitReason, viaLink: boolean): void {
    if (this.flags & DEAD) return;
    if (reason === "kill" && !viaLink) {
      this.pendExit("killed");
    } else if (this.flags & TRAP_EXIT) {
      this.deliver({ type: "EXIT", from, reason: reason === "kill" ? "killed" : reason } satisfies ExitMessage);
    } else if (reason === "normal") {
      // A normal exit signal is ignored, unless a process sends it to itself (exit(self(), "normal")).
      if (!viaLink && from === this.pid) this.pendExit("normal");
    } else {
      this.pendExit(reason === "kill" ? "killed" : reason);
    }
  }

  private pendExit(reason: ExitReason): void {
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

  private report(error: Error, msg: unknown): void {
    (this.actor.logger ?? runtimeLogger()).error(
      { pid: this.pid.toString(), behaviour: this.actor.name, err: error, message: describe(msg) },
      "process crashed",
    );
  }

  /** The one way a process ends: terminate, then free everything, then tell links and monitors. */
  die(reason: ExitReason): void {
    if (this.flags & DEAD) return;
    this.flags |= DEAD;
    // Actors always hear of the end (a connection must free its socket even when killed);
    // each decides whether its user callback runs for the reason.
    if ((this.flags & STARTED) !== 0) {
      const caller = current;
      current = this;
      try {
        this.actor.terminate(this, reason);
      } catch (err) {
        (this.actor.logger ?? runtimeLogger()).error({ pid: this.pid.toString(), behaviour: this.actor.name, err }, "terminate threw");
      }
      current = caller;
    }
    livePids.delete(this.pid.id);
    this.pid.proc = null;
    if (this.name !== undefined) unregisterProcess(this);
    if (this.groups !== null) leaveAllGroups(this);
    if (this.timers !== null) cancelProcessTimers(this);
    if (this.waiter !== null) this.takeWaiter(this.waiter);
    if (this.flags & HIBERNATED) this.stateStore?.delete(this.pid);
    this.state = undefined;
    this.mailbox = EMPTY_QUEUE;
    this.head = 0;
    if (this.monitors !== null) {
      for (const m of this.monitors) m.target.monitoredBy?.delete(m);
      this.monitors = null;
    }
    const links = this.links;
    this.links = null;
    if (links !== null) {
      for (const other of links) {
        other.links?.delete(this);
        other.signal(this.pid, reason, true);
      }
    }
    const watchers = this.monitoredBy;
    this.monitoredBy = null;
    if (watchers !== null) {
      for (const m of watchers) {
        m.watcher.monitors?.delete(m);
        m.watcher.deliver({ type: "DOWN", ref: m, pid: this.pid, reason } satisfies DownMessage);
      }
    }
    if (this.flags & GLOBAL_NAMED) releaseGlobalNames(this);
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

/** @internal dist, when pid belongs to another node and a cluster runs. */
function distFor(pid: Pid): Dist | null {
  return dist !== null && pid.node !== nodeName() ? dist : null;
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(`non-error thrown: ${describe(err)}`, { cause: err });
}

/** The sender of exit signals that come from outside any process (Erlang's shell, say): `<node.0>`. */
let outside: Pid | undefined;

function outsidePid(): Pid {
  return (outside ??= new Pid(nodeName(), 0, null));
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

/** @internal Starts a process for an actor. */
export function spawnActor(actor: Actor, arg: unknown, opts: SpawnOptions | undefined): Process {
  const p = new Process(actor, opts?.stateStore);
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

/** Erlang's `!`: asynchronous, ordered per sender; to a dead pid it is dropped. */
export function send(dest: Pid | string, msg: unknown): void {
  const p = dest instanceof Pid ? dest.proc : resolve(dest, "send");
  if (p) p.deliver(msg);
  else if (dest instanceof Pid) distFor(dest)?.send(dest, msg);
}


function checkPid(pid: unknown, fn: string): Pid {
  if (!(pid instanceof Pid)) throw badarg(`${fn}: expected a Pid, got ${describe(pid)}`);
  return pid;
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
  if (ref instanceof Monitor && ref.watcher === me && me.monitors?.delete(ref) === true) {
    ref.target.monitoredBy?.delete(ref);
    active = true;
  } else if (dist !== null && !(ref instanceof Monitor)) {
    active = dist.demonitor(me, ref);
  }
  if (opts?.flush === true) {
    me.takeMatching((msg) => isDown(msg) && msg.ref === ref);
  }
  return active;
}

const EXIT_STRINGS = new Set(["normal", "shutdown", "kill", "killed", "noproc", "noconnection"]);

/** True for the exit reasons of API.md §1 (and the runtime's own). */
export function isExitReason(reason: unknown): reason is ExitReason {
  if (typeof reason === "string") return EXIT_STRINGS.has(reason);
  if (typeof reason !== "object" || reason === null) return false;
  const keys = Object.keys(reason);
  if (keys.length !== 1) return false;
  if (keys[0] === "shutdown") return true;
  return keys[0] === "crash" && (reason as { crash: unknown }).crash instanceof Error;
}

/** Erlang's exit/2: sends an exit signal to pid from the caller (or from the runtime outside a process). */
export function exit(pid: Pid, reason: ExitReason): void {
  exitFrom(current, pid, reason);
}

/** @internal exit/2 sent by a given process, or from outside (null). */
export function exitFrom(sender: Process | null, pid: Pid, reason: ExitReason): void {
  checkPid(pid, "exit");
  if (!isExitReason(reason)) {
    throw badarg(`exit: invalid reason ${describe(reason)}; use "normal", "shutdown", { shutdown: x }, "kill" or { crash: Error }`);
  }
  const target = pid.proc;
  if (target !== null) target.signal(sender?.pid ?? outsidePid(), reason, false);
  else distFor(pid)?.exit(sender?.pid ?? outsidePid(), pid, reason);
}

/** process_flag(trap_exit, on) for the caller; returns the previous value. */
export function trapExit(on: boolean): boolean {
  return trapExitFor(callerProcess("trapExit"), on);
}

/** @internal */
export function trapExitFor(me: Process, on: boolean): boolean {
  if (typeof on !== "boolean") throw badarg(`trapExit: expected a boolean, got ${describe(on)}`);
  const was = (me.flags & TRAP_EXIT) !== 0;
  if (on) me.flags |= TRAP_EXIT;
  else me.flags &= ~TRAP_EXIT;
  return was;
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

export function isDown(msg: unknown): msg is DownMessage {
  return typeof msg === "object" && msg !== null && (msg as { type?: unknown }).type === "DOWN" && "ref" in msg;
}

export function isExit(msg: unknown): msg is ExitMessage {
  return typeof msg === "object" && msg !== null && (msg as { type?: unknown }).type === "EXIT" && "from" in msg;
}

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

/** A snapshot of one process, or undefined when it is not alive. */
export function processInfo(pid: Pid): ProcessInfo | undefined {
  const p = checkPid(pid, "processInfo").proc;
  if (p === null) return undefined;
  const f = p.flags;
  const remote = f & DIST_LINKED ? dist?.remotes(p) : undefined;
  const status: ProcessStatus =
    p.exitSignal !== undefined ? "exiting"
    : f & RUNNING ? "running"
    : f & HIBERNATED ? "hibernated"
    : p.waiter !== null ? "waiting"
    : f & (QUEUED | BUSY) ? "runnable"
    : "waiting";
  return {
    pid: p.pid,
    behaviour: p.actor.name,
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

/** @internal Links two live processes both ways. */
export function linkProcesses(a: Process, b: Process): void {
  (a.links ??= new Set()).add(b);
  (b.links ??= new Set()).add(a);
}

/** @internal Applies a callback result to the process; anything else is a crash naming the value. */
export function applyResult(p: Process, result: unknown, callback: string): void {
  if (!isResult(result)) {
    throw new CorralError("ERR_BAD_RESULT", `${p.actor.name}.${callback} returned ${describe(result)}; expected ok(state) or stop(state)`);
  }
  p.state = result.state;
  if (result.type === "stop") {
    const reason = result.reason ?? "normal";
    if (!isExitReason(reason)) throw new CorralError("ERR_BAD_RESULT", `${p.actor.name}.${callback} stopped with invalid reason ${describe(reason)}`);
    p.stopSelf(reason);
  } else if (result.hibernate === true) {
    p.requestHibernate();
  }
}
