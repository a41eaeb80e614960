// gen_server:call/3, cast/2, reply/2 and multi_call: asking a process and waiting for its answer, or telling it without waiting.
import { CorralError, badarg, describe, type ErrorCode } from "./errors.js";
import { wireRecord } from "./external.js";
import { Pid, type Ref } from "./pid.js";
import { currentProcess, send, spawnProcess, type Process, type ProcessLoop, type Sendable } from "./process.js";
import { lookupName } from "./registry.js";
import type { HibernateOption, Ok } from "./result.js";
import { exit, isDown, monitorFrom, type ExitReason } from "./signals.js";
import { sendAfter } from "./timers.js";
import { limit } from "./validate.js";

export type CallErrorCode = Extract<ErrorCode, "ERR_NOPROC" | "ERR_CALL_TIMEOUT" | "ERR_CALL_EXIT" | "ERR_CALL_UNHANDLED" | "ERR_BADARG">;

/** What a call rejects with when it got no answer; a bad argument to call itself is a CorralError ERR_BADARG. */
export class CallError extends CorralError {
  declare readonly code: CallErrorCode;
  /** ERR_CALL_EXIT: why the callee ended (Erlang's exit reason in {Reason, {gen_server, call, …}}). */
  readonly reason: ExitReason | undefined;

  constructor(code: CallErrorCode, message: string, reason?: ExitReason) {
    super(code, message);
    this.name = "CallError";
    this.reason = reason;
  }
}

/** Who waits for a call's answer: hand it to replyTo, now or later, from any process. */
export interface From {
  /** The call's own process: it lives until the answer, the callee's end or the timeout. */
  readonly pid: Pid;
  /**
   * The process that called, or null when code outside any process did (or a callback after
   * an await, where self() no longer knows who is calling).
   */
  readonly caller: Pid | null;
}

/** A call as the callee receives it: Erlang's {'$gen_call', From, Request}. */
export class CallMessage<Q = unknown> {
  readonly type = "call";
  /** @internal Use call(). */
  constructor(
    readonly from: From,
    readonly request: Q,
  ) {}
}

/** @internal A cast to a process that has handleCast: Erlang's {'$gen_cast', Msg}. */
export class CastMessage {
  constructor(readonly msg: unknown) {}
}

/** How a refused call travels: a code and a message, which survive the wire as an Error would not. */
interface Refusal {
  readonly code: CallErrorCode;
  readonly message: string;
}

/** @internal The answer, sent to the call's own process. */
class CallReply {
  constructor(
    readonly value: unknown,
    readonly refusal: Refusal | null,
  ) {}
}

wireRecord(CallMessage, (m) => [m.from, m.request], ([from, request]) => new CallMessage(from as From, request));
wireRecord(CastMessage, (m) => [m.msg], ([msg]) => new CastMessage(msg));
wireRecord(CallReply, (r) => [r.value, r.refusal], ([value, refusal]) => new CallReply(value, refusal as Refusal | null));

/** Type guard for a call in a mailbox, websocketInfo, a loop handler's info or a machine's events. */
export function isCall(msg: unknown): msg is CallMessage {
  return msg instanceof CallMessage;
}

/** What a call's own process holds: how to settle the caller's promise, and what it waits on. */
class Pending {
  monitor: Ref | null = null;
  settled = false;
  constructor(
    readonly dest: Pid,
    readonly timeoutMs: number,
    readonly resolve: (value: never) => void,
    readonly reject: (err: CallError) => void,
  ) {}
}

/** The message a call's timer sends its process: one object, compared by identity. */
const TIMED_OUT = Object.freeze({ callTimedOut: true });

/**
 * A call's own process, as the process blocked in gen_server:call: it monitors the callee, so
 * a callee that ends rejects the call at once, and it dies with the answer, so a late answer
 * goes to a dead pid and is dropped.
 */
const CALL_LOOP: ProcessLoop = {
  name: "call",
  receiveLoop: false,
  start(p: Process, pending: unknown): void {
    p.state = pending;
  },
  handle(p: Process, msg: unknown): void {
    const c = p.state as Pending;
    if (msg instanceof CallReply) {
      if (msg.refusal === null) c.resolve(msg.value as never);
      else c.reject(new CallError(msg.refusal.code, msg.refusal.message));
    } else if (isDown(msg) && msg.ref === c.monitor) {
      c.reject(
        msg.reason === "noproc"
          ? noproc(c.dest)
          : new CallError("ERR_CALL_EXIT", `call: ${c.dest} ended before answering: ${describe(msg.reason)}`, msg.reason),
      );
    } else if (msg === TIMED_OUT) {
      c.reject(new CallError("ERR_CALL_TIMEOUT", `call: ${c.dest} did not answer within ${c.timeoutMs} ms`));
    } else {
      // Anything else sent to a call's pid is not its answer.
      return;
    }
    c.settled = true;
    p.stopSelf("normal");
  },
  terminate(p: Process, reason: ExitReason): void {
    const c = p.state as Pending;
    if (!c.settled) c.reject(new CallError("ERR_CALL_EXIT", `call: the call's own process ${p.pid} was ended (${describe(reason)})`, reason));
  },
};

function noproc(dest: Pid | string): CallError {
  return new CallError("ERR_NOPROC", `call: no process ${typeof dest === "string" ? `registered as ${JSON.stringify(dest)}` : dest.toString()}`);
}

/** The pid a call or cast goes to; undefined for a name nobody holds. */
function destPid(dest: unknown, fn: string): Pid | undefined {
  if (dest instanceof Pid) return dest;
  if (typeof dest === "string") return lookupName(dest)?.pid;
  throw badarg(`${fn}: destination must be a Pid or a registered name, got ${describe(dest)}`);
}

/**
 * gen_server:call: sends request to dest and resolves with its answer. Rejects with a
 * CallError: ERR_NOPROC (no such process or name), ERR_CALL_TIMEOUT, ERR_CALL_EXIT (dest
 * ended first; `reason` says why), ERR_CALL_UNHANDLED (dest's behaviour takes no calls).
 */
export function call<R = unknown>(dest: Pid | string, request: unknown, timeoutMs = 5000): Promise<R> {
  return new Promise<R>((resolve, reject) => {
    const ms = limit(timeoutMs, "call: timeoutMs must be a number of ms > 0, or Infinity");
    const pid = destPid(dest, "call");
    if (pid === undefined) throw noproc(dest);
    const me = currentProcess();
    if (me !== null && me.pid === pid) throw badarg(`call: ${pid} called itself, and would wait for its own answer until the timeout`);
    const c = new Pending(pid, ms, resolve as (value: never) => void, reject);
    const p = spawnProcess(CALL_LOOP, c, undefined);
    try {
      c.monitor = monitorFrom(p, pid);
      if (ms !== Infinity) sendAfter(ms, p.pid, TIMED_OUT);
      send(pid, new CallMessage({ pid: p.pid, caller: me === null ? null : me.pid }, request));
    } catch (err) {
      // A request that cannot leave (not serializable for another node): the call's process goes with it.
      c.settled = true;
      exit(p.pid, "kill");
      throw err;
    }
  });
}

function checkFrom(from: unknown, fn: string): From {
  if (typeof from !== "object" || from === null || !((from as { pid?: unknown }).pid instanceof Pid)) {
    throw badarg(`${fn}: expected the from of a call (isCall(msg) ? msg.from), got ${describe(from)}`);
  }
  return from as From;
}

/** gen_server:reply: answers a call, now or later, from any process; a second answer, or one after the timeout, is dropped. */
export function replyTo(from: From, value: unknown): void {
  send(checkFrom(from, "replyTo").pid, new CallReply(value, null));
}

/** @internal Rejects a call with code, from the callee's side (a supervisor's refusal, a behaviour that takes no calls). */
export function refuse(from: From, code: CallErrorCode, message: string): void {
  send(checkFrom(from, "refuse").pid, new CallReply(undefined, { code, message }));
}

/** @internal A call to a process whose behaviour has no way to take it. */
export function refuseUnhandled(from: From, behaviour: string): void {
  refuse(from, "ERR_CALL_UNHANDLED", `call: the process's behaviour (${behaviour}) takes no calls: give it handleCall, or websocketInfo for a WebSocket handler`);
}

/**
 * gen_server:cast: fire and forget. A process whose behaviour has handleCast gets msg there;
 * any other gets msg as if sent. As in Erlang, a cast to a dead pid or a free name is dropped.
 */
export function cast<M>(dest: Pid | string, msg: Sendable<M>): void {
  const pid = destPid(dest, "cast");
  if (pid === undefined) return;
  const p = pid.proc;
  if (p !== null) deliverCast(p, msg);
  else send(pid, new CastMessage(msg));
}

function deliverCast(p: Process, msg: unknown): void {
  p.deliver(p.loop.takesCasts === true ? new CastMessage(msg) : msg);
}

/** @internal A message from another node for p: a cast arrives as a local cast would. */
export function deliverFromWire(p: Process, msg: unknown): void {
  if (msg instanceof CastMessage) deliverCast(p, msg.msg);
  else p.deliver(msg);
}

/** gen_server's {reply, Reply, State}: handleCall's result that answers at once. */
export interface Answer<S> extends Ok<S> {
  readonly answer: unknown;
}

/** handleCall's result that answers the call with value and continues with state. */
export function answer<S>(value: unknown, state: S, opts?: HibernateOption): Answer<S> {
  return { type: "ok", state, hibernate: opts?.hibernate === true, answer: value };
}

/** @internal */
export function isAnswer(r: unknown): r is Answer<unknown> {
  return typeof r === "object" && r !== null && "answer" in r;
}

/** What multiCall gathered by its deadline: who answered, and who did not and why. */
export interface MultiCallResult<R> {
  readonly replies: ReadonlyArray<{ readonly dest: Pid | string; readonly value: R }>;
  readonly failed: ReadonlyArray<{ readonly dest: Pid | string; readonly error: CorralError }>;
}

/**
 * gen_server:multi_call: calls every dest at once with one deadline, and resolves when each has
 * answered, ended or run out of time. Never rejects for one dest: each failure is in `failed`.
 */
export async function multiCall<R = unknown>(dests: Iterable<Pid | string>, request: unknown, timeoutMs = 5000): Promise<MultiCallResult<R>> {
  const ms = limit(timeoutMs, "multiCall: timeoutMs must be a number of ms > 0, or Infinity");
  // A string is iterable too, but as its characters: a name alone is a mistake, not a list.
  if (typeof dests !== "object" || dests === null || typeof (dests as Partial<Iterable<unknown>>)[Symbol.iterator] !== "function") {
    throw badarg(`multiCall: destinations must be a list (or other iterable) of pids and names, got ${describe(dests)}`);
  }
  const list = Array.from(dests);
  const outcomes = await Promise.allSettled(list.map((dest) => call<R>(dest, request, ms)));
  const replies: { dest: Pid | string; value: R }[] = [];
  const failed: { dest: Pid | string; error: CorralError }[] = [];
  for (let i = 0; i < list.length; i++) {
    const o = outcomes[i]!;
    const dest = list[i]!;
    if (o.status === "fulfilled") replies.push({ dest, value: o.value });
    // call rejects with CorralErrors only.
    else failed.push({ dest, error: o.reason as CorralError });
  }
  return { replies, failed };
}
