// cow_ws's frame terms ({text, Data}, {binary, Data}, ping, pong, close): the frames handlers receive and send.
import { CorralError, describe } from "../runtime/errors.js";

/** A frame from the client, as websocketHandle sees it (fragments already reassembled). */
export type InFrame =
  | { readonly type: "text"; readonly data: string }
  | { readonly type: "binary"; readonly data: Uint8Array }
  | { readonly type: "ping"; readonly data: Uint8Array }
  | { readonly type: "pong"; readonly data: Uint8Array };

export interface CloseFrame {
  readonly type: "close";
  readonly code?: number;
  readonly reason?: string;
}

/** A frame a handler sends: any InFrame, or close. */
export type Frame = InFrame | CloseFrame;

/**
 * @internal What the port hands the connection process: an InFrame that is also known to
 * come from the socket, so a user message shaped like a frame stays an info.
 */
export class ReceivedFrame<T extends InFrame["type"] = InFrame["type"]> {
  constructor(
    readonly type: T,
    readonly data: T extends "text" ? string : Uint8Array,
  ) {}
}

/** What a received frame costs beyond its payload while it waits in a mailbox (the frame and buffer objects, the queue slot). */
const FRAME_OVERHEAD = 64;

/** @internal A received frame's weight in inbound flow control: its payload (characters for text) and its objects. */
export function inboundCost(frame: ReceivedFrame): number {
  return frame.data.length + FRAME_OVERHEAD;
}

const EMPTY = new Uint8Array(0);

export function text(data: string): InFrame & { type: "text" } {
  return { type: "text", data };
}

export function binary(data: Uint8Array): InFrame & { type: "binary" } {
  return { type: "binary", data };
}

export function ping(data: Uint8Array = EMPTY): InFrame & { type: "ping" } {
  return { type: "ping", data };
}

export function pong(data: Uint8Array = EMPTY): InFrame & { type: "pong" } {
  return { type: "pong", data };
}

/** Cowboy's `close`, `{close, Data}` (code 1000) and `{close, Code, Data}`. */
export function close(code?: number, reason?: string): CloseFrame {
  if (code === undefined) return reason === undefined ? { type: "close" } : { type: "close", code: 1000, reason };
  return reason === undefined ? { type: "close", code } : { type: "close", code, reason };
}

/**
 * Close codes a server may send (RFC 6455 §7.4): 1000–1003, 1007–1011, 1012–1014, and the
 * registered and private ranges 3000–4999. 1004, 1005, 1006 and 1015 are never sent.
 */
export function isSendableCloseCode(code: number): boolean {
  return (
    Number.isInteger(code) &&
    ((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999))
  );
}

function bad(what: string, value: unknown): CorralError {
  return new CorralError("ERR_BAD_RESULT", `invalid ${what}: ${describe(value)}`);
}

/**
 * Checks a frame a handler asked to send, once, at the edge: the port then writes it
 * without further checks. Throws ERR_BAD_RESULT naming the bad value (a crash: 1011).
 */
export function checkFrame(frame: Frame): void {
  switch (frame.type) {
    case "text":
      if (typeof frame.data !== "string") throw bad("text frame data (expected a string)", frame);
      return;
    case "binary":
      if (!(frame.data instanceof Uint8Array)) throw bad("binary frame data (expected a Uint8Array)", frame);
      return;
    case "ping":
    case "pong":
      if (!(frame.data instanceof Uint8Array) || frame.data.byteLength > 125) {
        throw bad(`${frame.type} frame (payload must be a Uint8Array of at most 125 bytes)`, frame);
      }
      return;
    case "close": {
      const { code, reason } = frame;
      if (code !== undefined && !isSendableCloseCode(code)) throw bad("close code", code);
      if (reason !== undefined && (typeof reason !== "string" || Buffer.byteLength(reason) > 123)) {
        throw bad("close reason (a string of at most 123 bytes)", reason);
      }
      return;
    }
    default:
      throw bad("frame", frame);
  }
}
