import { broadcast, CorralError, type HttpHandler } from "corral";
import { CHAT_ROOM, type ChatMessage } from "./chat.js";

const MAX_BODY = 4096;

/** POST /broadcast: app code sending to every chat connection's pid, through the group. */
export const broadcastHandler: HttpHandler<null> = {
  async init(req) {
    if (req.method !== "POST") {
      req.reply(405, { allow: "POST" });
      return { type: "ok", req, state: null };
    }
    let bytes: Uint8Array;
    try {
      bytes = await req.readBody({ length: MAX_BODY });
    } catch (err) {
      // The client's doing, not a crash: too large is a 413 (readBody sent it), an aborted body needs no answer.
      if (err instanceof CorralError && err.code === "ERR_BODY_TOO_LARGE" && !req.replied) req.reply(413);
      return { type: "ok", req, state: null };
    }
    const body = new TextDecoder().decode(bytes).trim();
    if (body === "") {
      req.reply(400, { "content-type": "text/plain" }, "empty message\n");
      return { type: "ok", req, state: null };
    }
    const reached = broadcast(CHAT_ROOM, { type: "broadcast", text: body } satisfies ChatMessage);
    req.reply(202, { "content-type": "application/json" }, JSON.stringify({ reached }));
    return { type: "ok", req, state: null };
  },
};
