// erlang:spawn/3, spawn_link/3 and spawn_monitor/3, and the two kinds of process they start: gen_server-like callbacks, or an async function that receives.
import { CallMessage, CastMessage, isAnswer, refuseUnhandled, replyTo, type From } from "./call.js";
import { badarg, describe } from "./errors.js";
import type { StateStore } from "./hibernate.js";
import type { SystemMessage } from "./messages.js";
import type { Pid, Ref } from "./pid.js";
import { callerProcess, spawnProcess, type ProcessLoop, type Process } from "./process.js";
import { receiveIn } from "./receive.js";
import { applyResult, isResult, isThenable, type Result } from "./result.js";
import { demonitorFrom, exitFrom, linkFrom, linkProcesses, monitorFrom, trapExitFor, unlinkFrom, type ExitReason } from "./signals.js";

/**
 * A gen_server-like process: callbacks run one message at a time, never re-entrantly. M is
 * what the app sends it, A what spawn passes init.
 */
export interface ProcessBehavior<S, M = unknown, A = unknown> {
  /**
   * Runs in the new process with spawn's arg, before any message. A function-typed property,
   * not a method, so TypeScript checks it strictly: an init that needs more than A says does not compile.
   */
  init: (arg: A) => S | Result<S> | PromiseLike<S | Result<S>>;
  /** Every message but calls: yours (M) and the runtime's own, a timer's timeout, a monitor's DOWN, a trapped EXIT. */
  handleInfo(msg: M | Exclude<SystemMessage, CallMessage>, state: S): Result<S> | PromiseLike<Result<S>>;
  /**
   * gen_server's handle_call: answer at once with answer(value, state), or return ok(state)
   * and answer later with replyTo(from, value). Without it, a call is refused (ERR_CALL_UNHANDLED).
   */
  handleCall?(request: unknown, from: From, state: S): Result<S> | PromiseLike<Result<S>>;
  /** gen_server's handle_cast; without it, a cast arrives in handleInfo as a plain message. */
  handleCast?(msg: unknown, state: S): Result<S> | PromiseLike<Result<S>>;
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
  spawnLink<S, M2, A>(behavior: Behavior<S, M2, A>, ...args: SpawnArgs<A>): Pid;
  spawnMonitor<S, M2, A>(behavior: Behavior<S, M2, A>, ...args: SpawnArgs<A>): { pid: Pid; ref: Ref };
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

/** The gen_server-like callbacks of ProcessBehavior, shared by every process of one behavior. */
class CallbackLoop implements ProcessLoop {
  readonly name: string;
  readonly receiveLoop = false;
  readonly takesCasts: boolean;
  readonly behavior: ProcessBehavior<unknown, unknown, unknown>;

  constructor(behavior: ProcessBehavior<unknown, unknown, unknown>) {
    this.behavior = behavior;
    this.name = behavior.constructor !== Object ? behavior.constructor.name : "process";
    this.takesCasts = typeof behavior.handleCast === "function";
  }

  start(p: Process, arg: unknown): PromiseLike<unknown> | void {
    const r = this.behavior.init(arg);
    if (isThenable(r)) return r.then((v) => this.started(p, v));
    this.started(p, r);
  }

  private started(p: Process, r: unknown): void {
    if (isResult(r)) applyResult(p, r, "init");
    else p.state = r;
  }

  handle(p: Process, msg: unknown): PromiseLike<unknown> | void {
    if (msg instanceof CallMessage) return this.call(p, msg);
    const b = this.behavior;
    // A CastMessage comes only to a behaviour with handleCast (takesCasts).
    const isCast = msg instanceof CastMessage;
    const callback = isCast ? "handleCast" : "handleInfo";
    const r = isCast ? b.handleCast!(msg.msg, p.state) : b.handleInfo(msg, p.state);
    if (isThenable(r)) return r.then((v) => applyResult(p, v, callback));
    applyResult(p, r, callback);
  }

  private call(p: Process, msg: CallMessage): PromiseLike<unknown> | void {
    const b = this.behavior;
    if (b.handleCall === undefined) return refuseUnhandled(msg.from, this.name);
    const r = b.handleCall(msg.request, msg.from, p.state);
    if (isThenable(r)) return r.then((v) => this.answered(p, v, msg.from));
    this.answered(p, r, msg.from);
  }

  /** Applies handleCall's result, then answers when it was answer(value, state). */
  private answered(p: Process, r: unknown, from: From): void {
    applyResult(p, r, "handleCall");
    if (isAnswer(r)) replyTo(from, r.answer);
  }

  terminate(p: Process, reason: ExitReason): void {
    if (reason !== "killed") this.behavior.terminate?.(reason, p.liveState());
  }
}

/** An async function run as a process: it takes its own messages with ctx.receive. */
class ReceiveLoop implements ProcessLoop {
  readonly name: string;
  readonly receiveLoop = true;
  readonly fn: ProcessFunction<unknown, unknown>;

  constructor(fn: ProcessFunction<unknown, unknown>) {
    this.fn = fn;
    this.name = fn.name || "process";
  }

  start(p: Process, arg: unknown): PromiseLike<unknown> {
    const ctx = new Context(p);
    return Promise.resolve(this.fn(ctx, arg)).then(() => p.stopSelf("normal"));
  }

  handle(): void {
    // Never called: a receive loop's messages wait in the mailbox for ctx.receive.
  }

  terminate(): void {}
}

class Context implements ReceiveContext<unknown> {
  readonly self: Pid;
  readonly #p: Process;

  constructor(p: Process) {
    this.#p = p;
    this.self = p.pid;
  }

  link(pid: Pid): void {
    linkFrom(this.#p, pid);
  }

  unlink(pid: Pid): void {
    unlinkFrom(this.#p, pid);
  }

  monitor(pid: Pid): Ref {
    return monitorFrom(this.#p, pid);
  }

  demonitor(ref: Ref, opts?: { flush?: boolean }): boolean {
    return demonitorFrom(this.#p, ref, opts);
  }

  trapExit(on: boolean): boolean {
    return trapExitFor(this.#p, on);
  }

  exit(pid: Pid, reason: ExitReason): void {
    exitFrom(this.#p, pid, reason);
  }

  spawnLink(behavior: unknown, arg?: unknown, opts?: SpawnOptions): Pid {
    return spawnLinkFrom(this.#p, behavior, arg, opts);
  }

  spawnMonitor(behavior: unknown, arg?: unknown, opts?: SpawnOptions): { pid: Pid; ref: Ref } {
    return spawnMonitorFrom(this.#p, behavior, arg, opts);
  }

  receive(pred?: (msg: unknown) => boolean, timeoutMs?: number): Promise<never> {
    return receiveIn(this.#p, pred, timeoutMs);
  }
}

const callbackLoops = new WeakMap<object, ProcessLoop>();
const receiveLoops = new WeakMap<object, ProcessLoop>();

function loopFor(behavior: unknown): ProcessLoop {
  if (typeof behavior === "function") {
    let a = receiveLoops.get(behavior);
    if (a === undefined) receiveLoops.set(behavior, (a = new ReceiveLoop(behavior as ProcessFunction<unknown, unknown>)));
    return a;
  }
  if (
    typeof behavior === "object" &&
    behavior !== null &&
    typeof (behavior as { init?: unknown }).init === "function" &&
    typeof (behavior as { handleInfo?: unknown }).handleInfo === "function"
  ) {
    let a = callbackLoops.get(behavior);
    if (a === undefined) callbackLoops.set(behavior, (a = new CallbackLoop(behavior as ProcessBehavior<unknown, unknown, unknown>)));
    return a;
  }
  throw badarg(`spawn: behaviour must be an object with init and handleInfo, or an async function; got ${describe(behavior)}`);
}

export type Behavior<S, M, A> = ProcessBehavior<S, M, A> | ProcessFunction<M, A>;

/**
 * spawn's arguments after the behaviour: the arg that init (or the function) takes, then the
 * options. The arg may be left out only where init would accept undefined (no parameter, an
 * optional one, or one typed unknown).
 */
export type SpawnArgs<A> = undefined extends A ? [arg?: NoInfer<A>, opts?: SpawnOptions] : [arg: NoInfer<A>, opts?: SpawnOptions];

/** Starts a process; it runs after the caller's current callback (never re-entrantly). */
export function spawn<S, M, A>(behavior: Behavior<S, M, A>, ...args: SpawnArgs<A>): Pid;
export function spawn(behavior: unknown, arg?: unknown, opts?: SpawnOptions): Pid {
  return spawnProcess(loopFor(behavior), arg, opts).pid;
}

/** spawn and link to the caller atomically (before the new process runs). */
export function spawnLink<S, M, A>(behavior: Behavior<S, M, A>, ...args: SpawnArgs<A>): Pid;
export function spawnLink(behavior: unknown, arg?: unknown, opts?: SpawnOptions): Pid {
  return spawnLinkFrom(callerProcess("spawnLink"), behavior, arg, opts);
}

function spawnLinkFrom(me: Process, behavior: unknown, arg: unknown, opts: SpawnOptions | undefined): Pid {
  const p = spawnProcess(loopFor(behavior), arg, opts);
  linkProcesses(me, p);
  return p.pid;
}

/** spawn and monitor from the caller atomically. */
export function spawnMonitor<S, M, A>(behavior: Behavior<S, M, A>, ...args: SpawnArgs<A>): { pid: Pid; ref: Ref };
export function spawnMonitor(behavior: unknown, arg?: unknown, opts?: SpawnOptions): { pid: Pid; ref: Ref } {
  return spawnMonitorFrom(callerProcess("spawnMonitor"), behavior, arg, opts);
}

function spawnMonitorFrom(me: Process, behavior: unknown, arg: unknown, opts: SpawnOptions | undefined): { pid: Pid; ref: Ref } {
  const p = spawnProcess(loopFor(behavior), arg, opts);
  return { pid: p.pid, ref: monitorFrom(me, p.pid) };
}
