// gen_server:call/3's mechanism (internal until call is public): monitor the callee, send it a request carrying a reply-to, wait for the reply or the DOWN.
import type { Pid, Ref } from "./pid.js";
import { self, send } from "./process.js";
import { ok, stop, type Result } from "./result.js";
import { isDown, monitor, type ExitReason } from "./signals.js";
import { spawn, type ProcessBehavior } from "./spawn.js";

/** A call's answer: a value, or the Error the caller's promise rejects with. */
export type Outcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: Error };

/** How the callee answers a call: once, from any process (a callback, not a pid and a tag). */
export type Reply<T> = (outcome: Outcome<T>) => void;

/** Carries the settling of the caller's promise to the call process, which then ends. */
class CallReply {
  constructor(readonly settle: () => void) {}
}

interface CallArg {
  readonly dest: Pid;
  /** Builds the request once the call process knows its own pid. */
  readonly request: (me: Pid) => unknown;
  /** The Error the call rejects with when dest ends before replying. */
  readonly down: (reason: ExitReason) => Error;
  readonly reject: (err: Error) => void;
}

interface CallState {
  readonly arg: CallArg;
  readonly ref: Ref;
}

/** A monitor turns a callee that dies before replying into a rejection, never a hang. */
class Caller implements ProcessBehavior<CallState, unknown, CallArg> {
  init(arg: CallArg): Result<CallState> {
    const ref = monitor(arg.dest);
    send(arg.dest, arg.request(self()));
    return ok({ arg, ref });
  }

  handleInfo(msg: unknown, st: CallState): Result<CallState> {
    if (msg instanceof CallReply) {
      msg.settle();
      return stop(st);
    }
    if (isDown(msg) && msg.ref === st.ref) {
      st.arg.reject(st.arg.down(msg.reason));
      return stop(st);
    }
    return ok(st);
  }
}

const CALLER = new Caller();

/**
 * @internal Calls dest and waits as long as it lives: a short-lived process monitors dest and
 * sends it request(reply); the promise settles with the outcome dest replies, or rejects
 * with down(reason) when dest ends first (at once, "noproc", when it is not alive).
 */
export function call<T>(dest: Pid, request: (reply: Reply<T>) => unknown, down: (reason: ExitReason) => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const settle = (o: Outcome<T>) => (o.ok ? resolve(o.value) : reject(o.error));
    const build = (me: Pid) => request((o) => send(me, new CallReply(() => settle(o))));
    spawn(CALLER, { dest, request: build, down, reject } satisfies CallArg);
  });
}
