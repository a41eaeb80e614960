/**
 * Type-level tests of send: a symbol or a function as the message itself is refused at compile
 * time; data, unknown and any pass (what is nested is checked when it leaves for another node).
 * A line after `// @ts-expect-error -- text` must fail with an error whose message holds text.
 */
import { broadcast, cast, send, sendAfter, sendGlobal, startTimer, type Pid, type Sendable } from "../../src/index.js";

declare const pid: Pid;
declare const value: unknown;
declare const loose: any; // what an untyped caller passes
declare const maybeFn: string | (() => void);
const TAG = Symbol("tag");
class Job {}
function work(): void {}

// Data, whatever its type says, and values the compiler cannot see into.
send(pid, "tick");
send(pid, 42);
send(pid, null);
send(pid, undefined);
send(pid, { type: "job", id: 1, at: new Date(), bytes: new Uint8Array(2), tags: new Set(["a"]) });
send(pid, ["a", 1, { nested: true }]);
send(pid, { replyTo: pid });
send(pid, new Job());
send(pid, value);
send(pid, loose);
send("registered-name", { ok: true });
// A function inside data is not seen by the type; sending it to another node fails at run time.
send(pid, { run: work });

// Generic code states what it sends as Sendable<M>.
function relay<M>(to: Pid, msg: Sendable<M>): void {
  send(to, msg);
}
relay(pid, { hop: 1 });
// @ts-expect-error -- not assignable to parameter of type 'NotSendable'
relay(pid, work);

// A symbol or a function as the message itself never compiles.
// @ts-expect-error -- Argument of type 'symbol' is not assignable to parameter of type 'NotSendable'
send(pid, Symbol());
// @ts-expect-error -- Argument of type 'typeof TAG' is not assignable to parameter of type 'NotSendable'
send(pid, TAG);
// @ts-expect-error -- Argument of type '() => number' is not assignable to parameter of type 'NotSendable'
send(pid, () => 1);
// @ts-expect-error -- Argument of type '() => void' is not assignable to parameter of type 'NotSendable'
send(pid, work);
// @ts-expect-error -- Argument of type 'typeof Job' is not assignable to parameter of type 'NotSendable'
send("registered-name", Job);
// @ts-expect-error -- Argument of type 'string | (() => void)' is not assignable to parameter of type 'string | NotSendable'
send(pid, maybeFn);

// Everything else that sends a message checks it the same way: cast, the timers, groups, global names.
cast(pid, { type: "job", id: 1 });
cast("registered-name", "stop");
startTimer(10, pid, "tick");
sendAfter(10, pid, { type: "tick" });
broadcast("room", { said: "hi" }, { except: pid });
void sendGlobal("global-name", { ok: true });
cast(pid, value);
startTimer(10, pid, loose);
// @ts-expect-error -- Argument of type 'symbol' is not assignable to parameter of type 'NotSendable'
cast(pid, Symbol());
// @ts-expect-error -- Argument of type '() => void' is not assignable to parameter of type 'NotSendable'
cast("registered-name", work);
// @ts-expect-error -- Argument of type 'typeof TAG' is not assignable to parameter of type 'NotSendable'
startTimer(10, pid, TAG);
// @ts-expect-error -- Argument of type '() => number' is not assignable to parameter of type 'NotSendable'
sendAfter(10, pid, () => 1);
// @ts-expect-error -- Argument of type 'typeof Job' is not assignable to parameter of type 'NotSendable'
broadcast("room", Job);
// @ts-expect-error -- Argument of type 'symbol' is not assignable to parameter of type 'NotSendable'
void sendGlobal("global-name", Symbol("stop"));
