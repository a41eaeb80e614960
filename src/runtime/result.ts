// gen_server's callback returns ({ok, State}, {ok, State, hibernate}, {stop, Reason, State}) and what they do to the process.
import { CorralError, describe } from "./errors.js";
import type { Process } from "./process.js";
import { isExitReason, type ExitReason } from "./signals.js";

/** Continue with a new state; `hibernate` evicts it until the next message (docs/hibernation.md). */
export interface Ok<S> {
  readonly type: "ok";
  readonly state: S;
  readonly hibernate?: boolean;
}

/** End the process: "normal" unless a reason is given. */
export interface Stop<S> {
  readonly type: "stop";
  readonly state: S;
  readonly reason?: ExitReason;
}

export type Result<S> = Ok<S> | Stop<S>;

export interface HibernateOption {
  readonly hibernate?: boolean;
}

export function ok<S>(state: S, opts?: HibernateOption): Ok<S> {
  return { type: "ok", state, hibernate: opts?.hibernate === true };
}

export function stop<S>(state: S, reason?: ExitReason): Stop<S> {
  return reason === undefined ? { type: "stop", state } : { type: "stop", state, reason };
}

/** True for anything shaped like a result object; init() uses it to tell a state from a result. */
export function isResult(value: unknown): value is Result<unknown> {
  if (typeof value !== "object" || value === null || !("state" in value)) return false;
  const type = (value as { type?: unknown }).type;
  return type === "ok" || type === "stop";
}

/** @internal A callback's answer that is a promise (the mailbox then waits for it). */
export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === "object" && v !== null && typeof (v as { then?: unknown }).then === "function";
}

/** @internal Applies a callback result to the process; anything else is a crash naming the value. */
export function applyResult(p: Process, result: unknown, callback: string): void {
  if (!isResult(result)) {
    throw new CorralError("ERR_BAD_RESULT", `${p.loop.name}.${callback} returned ${describe(result)}; expected ok(state) or stop(state)`);
  }
  p.state = result.state;
  if (result.type === "stop") {
    const reason = result.reason ?? "normal";
    if (!isExitReason(reason)) throw new CorralError("ERR_BAD_RESULT", `${p.loop.name}.${callback} stopped with invalid reason ${describe(reason)}`);
    p.stopSelf(reason);
  } else if (result.hibernate === true) {
    p.requestHibernate();
  }
}
