import { ok, reply, upgrade, type WebSocketHandler } from "corral";

/** Echoes text and binary frames back as they came: what the benchmarks measure. */
export const echoHandler: WebSocketHandler<null> = {
  init: (req) => upgrade(req, null),
  websocketHandle: (frame, state) => (frame.type === "text" || frame.type === "binary" ? reply(frame, state) : ok(state)),
};
