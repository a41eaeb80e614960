import { broadcast, join, ok, reply, text, upgrade, type WebSocketHandler } from "corral";
import { announce, type PresenceSummary } from "./presence.js";

/** The group every chat connection joins; POST /broadcast sends to it from app code. */
export const CHAT_ROOM = "chat:lobby";

/** What travels through the group: one chat line, a presence summary, or an announcement from the server. */
export type ChatMessage =
  | { readonly type: "said"; readonly from: string; readonly text: string }
  | PresenceSummary
  | { readonly type: "broadcast"; readonly text: string };

interface ChatState {
  readonly name: string;
}

const MAX_NAME = 32;
const MAX_LINE = 2000;

/**
 * A chat room on a process group: join in websocketInit, broadcast through the group, names
 * from ?name=. Joins and leaves are not broadcast one by one (a storm of N joins would wake
 * every member N times): the room's presence process sends one summary per interval.
 */
export const chatHandler: WebSocketHandler<ChatState, unknown, ChatMessage> = {
  init(req) {
    const given = req.parseQs().find(([key]) => key === "name")?.[1];
    const name = typeof given === "string" && given.trim() !== "" ? given.trim().slice(0, MAX_NAME) : `guest-${Math.floor(Math.random() * 10_000)}`;
    return upgrade(req, { name }, { idleTimeout: 120_000, maxFrameSize: 16_384 });
  },

  websocketInit(state) {
    join(CHAT_ROOM);
    announce(CHAT_ROOM, state.name);
    return reply(text(JSON.stringify({ type: "welcome", name: state.name })), state, { hibernate: true });
  },

  websocketHandle(frame, state) {
    if (frame.type !== "text" || frame.data.trim() === "") return ok(state);
    broadcast(CHAT_ROOM, { type: "said", from: state.name, text: frame.data.slice(0, MAX_LINE) } satisfies ChatMessage);
    return ok(state);
  },

  websocketInfo(msg, state) {
    return reply(text(JSON.stringify(msg)), state, { hibernate: true });
  },
};
