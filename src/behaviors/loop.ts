// cowboy_loop: a request process that waits for messages (long polling, server-sent events).
import type { Result } from "../runtime/result.js";
import type { SystemMessage } from "../runtime/messages.js";
import type { HttpOk, PartialReq, Req } from "./req.js";
import type { RouteOptsCheck } from "./request.js";
import type { TerminateReason } from "./websocket.js";

/**
 * Cowboy's cowboy_loop behavior, for long-polling and server-sent events: init returns
 * loop(...), and the request process lives on, taking messages sent to it in `info` until
 * one returns stop. The loop itself runs in the request process (request.ts), as in Cowboy.
 */
export interface LoopHandler<S = unknown, Opts = unknown, Info = unknown> extends RouteOptsCheck {
  init(req: Req, opts: Opts): Loop<S> | HttpOk<S> | PromiseLike<Loop<S> | HttpOk<S>>;
  /**
   * Each message sent to the request process, yours (Info) or the runtime's own (SystemMessage):
   * ok(state) to go on (reply or stream first if you like), stop(state) to end.
   */
  info(msg: Info | SystemMessage, req: Req, state: S): Result<S> | PromiseLike<Result<S>>;
  terminate?(reason: TerminateReason, req: PartialReq, state: S): void;
}

export interface LoopOptions {
  /** End with terminate("timeout") after this many ms without a message. Default: none. */
  readonly timeout?: number;
  /** Evict the state until the first message (see hibernation). */
  readonly hibernate?: boolean;
}

/** Cowboy's {cowboy_loop, Req, State, Opts}. */
export interface Loop<S> {
  readonly type: "loop";
  readonly req: Req;
  readonly state: S;
  readonly opts: LoopOptions | undefined;
}

export function loop<S>(req: Req, state: S, opts?: LoopOptions): Loop<S> {
  return { type: "loop", req, state, opts };
}
