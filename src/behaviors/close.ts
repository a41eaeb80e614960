// cowboy_websocket's close paths in one table: why a connection ends, the terminate reason it gives, the close code it sends.
import type { ExitReason } from "../runtime/signals.js";
import type { TerminateReason } from "./websocket.js";

const BADFRAME: TerminateReason = Object.freeze({ error: "badframe" });
const BADENCODING: TerminateReason = Object.freeze({ error: "badencoding" });
const BADSIZE: TerminateReason = Object.freeze({ error: "badsize" });

/**
 * A protocol error the transport's parser (ws's receiver) found, by its error code: the
 * terminate reason, and the close code when Cowboy's differs from the one ws would send.
 */
const PROTOCOL_ERRORS: ReadonlyMap<string, { readonly reason: TerminateReason; readonly code?: number }> = new Map([
  ["WS_ERR_INVALID_UTF8", { reason: BADENCODING }],
  ["WS_ERR_UNSUPPORTED_MESSAGE_LENGTH", { reason: BADSIZE }],
  ["WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH", { reason: BADSIZE }],
  // A message in more fragments (or buffered chunks) than are kept is too big (ws would say 1008, a policy).
  ["WS_ERR_TOO_MANY_BUFFERED_PARTS", { reason: BADSIZE, code: 1009 }],
]);

/** Corrupt deflate data (zlib's Z_* codes) is a bad frame for Cowboy: 1002, where ws would send 1007. */
const CORRUPT_DEFLATE = { reason: BADFRAME, code: 1002 };
const OTHER_ERROR = { reason: BADFRAME };

export function protocolError(code: string | undefined): { readonly reason: TerminateReason; readonly code?: number } {
  if (code === undefined) return OTHER_ERROR;
  return PROTOCOL_ERRORS.get(code) ?? (code.startsWith("Z_") ? CORRUPT_DEFLATE : OTHER_ERROR);
}

/** The client's close frame: 1005 is "no code" (an empty close). */
export function remoteClose(code: number, reason: string): TerminateReason {
  return code === 1005 ? "remote" : { remote: { code, reason } };
}

/**
 * The close frame the server sends as a connection ends, by terminate reason (docs/websocket.md,
 * Terminate reasons and close codes). Undefined: nothing to send (the client closed, or the
 * transport already answered a protocol error, or TCP is gone).
 */
export function closeCodeFor(reason: TerminateReason): number | undefined {
  if (typeof reason === "string") {
    if (reason === "stop" || reason === "timeout") return 1000;
    if (reason === "shutdown") return 1001;
    return undefined;
  }
  if ("crash" in reason) return 1011;
  if ("shutdown" in reason) return 1001;
  if ("error" in reason && reason.error === "backpressure") return 1008;
  return undefined;
}

/** What terminate gets for a process exit that came from outside the handler (an exit signal, a crash). */
export function terminateReasonOf(exit: ExitReason): TerminateReason {
  if (typeof exit === "string") return exit === "shutdown" || exit === "normal" ? exit : { error: exit };
  if ("crash" in exit) return exit;
  return { shutdown: exit.shutdown };
}
