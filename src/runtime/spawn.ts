import { badarg, describe } from "./errors.js";
import type { Pid, Ref } from "./pid.js";
import {
  applyResult,
  callerProcess,
  demonitorFrom,
  exitFrom,
  linkFrom,
  linkProcesses,
  monitorFrom,
  spawnActor,
  trapExitFor,
  unlinkFrom,
  type Actor,
  type ExitReason,
  type Process,
  type ProcessBehavior,
  type ProcessFunction,
  type ReceiveContext,
  type SpawnOptions,
  type Waiter,
} from "./process.js";
import { isResult, isThenable } from "./result.js";
import { BUDGET } from "./scheduler.js";
import { sendAfter } from "./timers.js";


/** The gen_server-like callbacks of ProcessBehavior, shared by every process of one behaviour. */
class CallbackActor implements Actor {
  readonly name: string;
  readonly receiveLoop = false;
  readonly behavior: ProcessBehavior<unknown, unknown, unknown>;

  constructor(behavior: ProcessBehavior<unknown, unknown, unknown>) {
    this.behavior = behavior;
    this.name = behavior.constructor !== Object ? behavior.constructor.name : "process";
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
    const r = this.behavior.handleInfo(msg, p.state);
    if (isThenable(r)) return r.then((v) => applyResult(p, v, "handleInfo"));
    applyResult(p, r, "handleInfo");
  }

  terminate(p: Process, reason: ExitReason): void {
    if (reason !== "killed") this.behavior.terminate?.(reason, p.liveState());
  }
}

/** A never-settling promise: what receive gives a process that has already ended. */
const NEVER = new Promise<never>(() => {});

/** An async function run as a process: it takes its own messages with ctx.receive. */
class ReceiveActor implements Actor {
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

  spawnLink<S, M2, A>(behavior: Behavior<S, M2, A>, arg?: A, opts?: SpawnOptions): Pid {
    return spawnLinkFrom(this.#p, behavior, arg, opts);
  }

  spawnMonitor<S, M2, A>(behavior: Behavior<S, M2, A>, arg?: A, opts?: SpawnOptions): { pid: Pid; ref: Ref } {
    return spawnMonitorFrom(this.#p, behavior, arg, opts);
  }

  receive(pred?: (msg: unknown) => boolean, timeoutMs?: number): Promise<never> {
    const p = this.#p;
    if (pred !== undefined && typeof pred !== "function") throw badarg(`receive: pattern must be a function, got ${describe(pred)}`);
    if (timeoutMs !== undefined && (typeof timeoutMs !== "number" || Number.isNaN(timeoutMs) || timeoutMs < 0)) {
      throw badarg(`receive: timeout must be a number of ms >= 0 or Infinity, got ${describe(timeoutMs)}`);
    }
    if (!p.alive) return NEVER;
    if (p.waiter !== null) throw badarg("receive: this process is already waiting in receive");
    const hit = p.takeMatching(pred);
    if (hit.found) return resolveQueued(hit.msg);
    if (timeoutMs === 0) return Promise.resolve(undefined as never);
    const waiting = new Promise<unknown>((resolve) => {
      const waiter: Waiter = { pred, resolve, timer: null };
      if (timeoutMs !== undefined && timeoutMs !== Infinity) {
        waiter.timer = sendAfter(timeoutMs, p.pid, new ReceiveTimeout(waiter));
        // The timeout message must reach this waiter even though the pattern would reject it.
        waiter.pred = (msg) => (msg instanceof ReceiveTimeout ? msg.waiter === waiter : pred === undefined || pred(msg));
      }
      p.setWaiter(waiter);
    });
    return waiting.then((msg) => (msg instanceof ReceiveTimeout ? undefined : msg)) as Promise<never>;
  }
}

/**
 * A receive that finds its message queued resolves at once; a loop of those is one long
 * microtask chain, so every BUDGET of them waits for setImmediate and I/O gets its turn.
 */
let immediateReceives = 0;

function resolveQueued(msg: unknown): Promise<never> {
  if (++immediateReceives < BUDGET) return Promise.resolve(msg as never);
  return new Promise<never>((resolve) =>
    setImmediate(() => {
      immediateReceives = 0;
      resolve(msg as never);
    }),
  );
}

/** The runtime's own message that ends a receive's `after`. */
class ReceiveTimeout {
  constructor(readonly waiter: object) {}
}

const callbackActors = new WeakMap<object, Actor>();
const receiveActors = new WeakMap<object, Actor>();

function actorFor(behavior: unknown): Actor {
  if (typeof behavior === "function") {
    let a = receiveActors.get(behavior);
    if (a === undefined) receiveActors.set(behavior, (a = new ReceiveActor(behavior as ProcessFunction<unknown, unknown>)));
    return a;
  }
  if (
    typeof behavior === "object" &&
    behavior !== null &&
    typeof (behavior as { init?: unknown }).init === "function" &&
    typeof (behavior as { handleInfo?: unknown }).handleInfo === "function"
  ) {
    let a = callbackActors.get(behavior);
    if (a === undefined) callbackActors.set(behavior, (a = new CallbackActor(behavior as ProcessBehavior<unknown, unknown, unknown>)));
    return a;
  }
  throw badarg(`spawn: behaviour must be an object with init and handleInfo, or an async function; got ${describe(behavior)}`);
}

export type Behavior<S, M, A> = ProcessBehavior<S, M, A> | ProcessFunction<M, A>;

/** Starts a process; it runs after the caller's current callback (never re-entrantly). */
export function spawn<S, M, A>(behavior: Behavior<S, M, A>, arg?: A, opts?: SpawnOptions): Pid {
  return spawnActor(actorFor(behavior), arg, opts).pid;
}

/** spawn and link to the caller atomically (before the new process runs). */
export function spawnLink<S, M, A>(behavior: Behavior<S, M, A>, arg?: A, opts?: SpawnOptions): Pid {
  return spawnLinkFrom(callerProcess("spawnLink"), behavior, arg, opts);
}

function spawnLinkFrom<S, M, A>(me: Process, behavior: Behavior<S, M, A>, arg: A | undefined, opts: SpawnOptions | undefined): Pid {
  const p = spawnActor(actorFor(behavior), arg, opts);
  linkProcesses(me, p);
  return p.pid;
}

/** spawn and monitor from the caller atomically. */
export function spawnMonitor<S, M, A>(behavior: Behavior<S, M, A>, arg?: A, opts?: SpawnOptions): { pid: Pid; ref: Ref } {
  return spawnMonitorFrom(callerProcess("spawnMonitor"), behavior, arg, opts);
}

function spawnMonitorFrom<S, M, A>(me: Process, behavior: Behavior<S, M, A>, arg: A | undefined, opts: SpawnOptions | undefined): { pid: Pid; ref: Ref } {
  const p = spawnActor(actorFor(behavior), arg, opts);
  return { pid: p.pid, ref: monitorFrom(me, p.pid) };
}
