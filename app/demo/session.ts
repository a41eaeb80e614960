import { commands, ok, reply, self, text, type CallResult, type Frame, type WebSocketHandler, type WebSocketResult } from "corral";

/** The first frame of every session the page opens: the session's pid, which stays the same across drops and transports. */
export interface SessionGreeting {
  readonly type: "session";
  readonly pid: string;
}

/** The greeting goes out before whatever the handler's own websocketInit sends. */
function first<S>(frame: Frame, result: WebSocketResult<S>): WebSocketResult<S> {
  const hibernate = { hibernate: result.type !== "stop" && result.hibernate === true };
  switch (result.type) {
    case "ok":
      return reply(frame, result.state, hibernate);
    case "reply":
      return reply([frame].concat(result.frames), result.state, hibernate);
    case "commands":
      return commands([frame, ...result.commands], result.state, hibernate);
    case "stop":
      return result;
  }
}

/**
 * The handler as it is, plus one frame first, {"type":"session","pid":"<nonode@nohost.42>"}:
 * what the page shows as the session's pid. Only the demo's bullet() routes wrap their handler
 * in it; the plain WebSocket routes serve the handler unchanged.
 */
export function tellingPid<S, Opts, Info>(handler: WebSocketHandler<S, Opts, Info>): WebSocketHandler<S, Opts, Info> {
  return {
    ...handler,
    websocketInit(state): CallResult<S> {
      // self() here is the session's pid, for the session's whole life.
      const greeting = text(JSON.stringify({ type: "session", pid: String(self()) } satisfies SessionGreeting));
      const result = handler.websocketInit?.(state) ?? ok(state);
      if ("then" in result) return Promise.resolve(result).then((r) => first(greeting, r));
      return first(greeting, result);
    },
  };
}
