import { broadcast, type HttpHandler } from "../../index.js";
import { CHAT_ROOM, type ChatMessage } from "./chat.js";

/** POST /broadcast: app code sending to every chat connection's pid, through the group. */
export const broadcastHandler: HttpHandler<null> = {
  async init(req) {
    if (req.method !== "POST") {
      req.reply(405, { allow: "POST" });
      return { type: "ok", req, state: null };
    }
    const body = new TextDecoder().decode(await req.readBody({ length: 4096 })).trim();
    if (body === "") {
      req.reply(400, { "content-type": "text/plain" }, "empty message\n");
      return { type: "ok", req, state: null };
    }
    const reached = broadcast(CHAT_ROOM, { type: "broadcast", text: body } satisfies ChatMessage);
    req.reply(202, { "content-type": "application/json" }, JSON.stringify({ reached }));
    return { type: "ok", req, state: null };
  },
};
