import { isTimeout, ok, reply, self, startTimer, text, upgrade, type WebSocketHandler } from "corral";

/**
 * The Cowboy guide's ws_handler, in corral: greets "Hello!" from a timer after the
 * upgrade, answers every text with "That's what she said! <text>", and pushes
 * "How' you doin'?" every heartbeat (the route's opts, as [{heartbeat, 5000}] in the guide).
 */
export interface GuideOptions {
  readonly heartbeat?: number;
}

interface GuideState {
  readonly heartbeat: number;
}

export const guideHandler: WebSocketHandler<GuideState, GuideOptions> = {
  init: (req, opts) => upgrade(req, { heartbeat: opts.heartbeat ?? 5000 }, { idleTimeout: 60_000 }),

  websocketInit(state) {
    startTimer(1000, self(), "Hello!");
    return ok(state);
  },

  websocketHandle(frame, state) {
    if (frame.type === "text") return reply(text(`That's what she said! ${frame.data}`), state);
    return ok(state);
  },

  websocketInfo(info, state) {
    if (isTimeout(info)) {
      startTimer(state.heartbeat, self(), "How' you doin'?");
      return reply(text(String(info.msg)), state, { hibernate: true });
    }
    return ok(state);
  },
};
