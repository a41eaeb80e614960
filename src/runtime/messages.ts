// The messages the runtime itself delivers (Erlang's {timeout, …}, {'DOWN', …}, {'EXIT', …}, {'$gen_call', …}), as one union.
import { isCall, type CallMessage } from "./call.js";
import { isDown, isExit, type DownMessage, type ExitMessage } from "./signals.js";
import { isTimeout, type TimeoutMessage } from "./timers.js";

/**
 * What the runtime itself puts in a mailbox, each told apart by its `type`: "timeout"
 * (startTimer), "DOWN" (a monitor), "EXIT" (a link, when trapping exits) and "call" (call()).
 * A handler's info parameter is its own messages or one of these, so a switch over
 * `msg.type` is exhaustive only when it handles them too (or has a default). A
 * ProcessBehavior's calls go to handleCall, so its handleInfo never sees "call".
 */
export type SystemMessage = TimeoutMessage | DownMessage | ExitMessage | CallMessage;

/** Type guard for any SystemMessage: `if (isSystemMessage(msg)) return ok(state);` leaves msg your own type. */
export function isSystemMessage(msg: unknown): msg is SystemMessage {
  return isCall(msg) || isTimeout(msg) || isDown(msg) || isExit(msg);
}
