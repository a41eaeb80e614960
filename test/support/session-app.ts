/**
 * The application behind the client's end-to-end tests: one WebSocket handler served by
 * bullet(), which keeps a log of its callbacks so a test can check that init, websocketInit
 * and terminate each ran once, on one pid, whatever the transports did underneath.
 *
 * What a client sends it:
 * - `"c:<n>"`: a numbered frame, kept in `log.got` (and not answered);
 * - `"stream:<ms>"`: start a numbered stream, `"s:<n>:<pid>"` every ms, on a timer;
 * - `"stop"`: the handler returns stop; `"close:<code>:<reason>"`: it sends that close frame;
 * - anything else, text or binary: echoed.
 *
 * What app code sends its pid: `{ push: text }` (sent on as a text frame), `{ halt: true }`
 * (the stream stops, then `"s-end:<last>"`).
 */
import {
  binary,
  cancelTimer,
  close,
  commands,
  isSystemMessage,
  ok,
  reply,
  self,
  sendAfter,
  stop,
  text,
  upgrade,
  type Pid,
  type Ref,
  type TerminateReason,
  type WebSocketHandler,
  type WebSocketOptions,
} from "../../src/index.js";

export interface SessionLog {
  inits: number;
  websocketInits: number;
  /** self() in each websocketInit. */
  pids: Pid[];
  terminates: TerminateReason[];
  /** The client's numbered frames, in the order the handler got them. */
  got: string[];
}

export type AppMessage = { push: string } | { halt: true } | { tick: true };

interface State {
  n: number;
  every: number;
  timer: Ref | null;
}

export const newLog = (): SessionLog => ({ inits: 0, websocketInits: 0, pids: [], terminates: [], got: [] });

/** opts: the handler's upgrade options (idleTimeout, …), which a session keeps on every transport. */
export function sessionApp(log: SessionLog, opts?: WebSocketOptions): WebSocketHandler<State, unknown, AppMessage> {
  return {
    init(req) {
      log.inits++;
      return upgrade(req, { n: 0, every: 0, timer: null }, opts);
    },
    websocketInit(state) {
      log.websocketInits++;
      log.pids.push(self());
      return ok(state);
    },
    websocketHandle(frame, state) {
      if (frame.type === "binary") return reply(binary(frame.data), state);
      if (frame.type !== "text") return ok(state);
      const data = frame.data;
      if (data.startsWith("c:")) {
        log.got.push(data);
        return ok(state);
      }
      if (data === "stop") return stop(state);
      const closing = /^close:(\d+):(.*)$/.exec(data);
      if (closing !== null) return commands([close(Number(closing[1]), closing[2])], state);
      const streaming = /^stream:(\d+)$/.exec(data);
      if (streaming !== null) {
        state.every = Number(streaming[1]);
        state.timer = sendAfter(state.every, self(), { tick: true } as AppMessage);
        return ok(state);
      }
      return reply(text(data), state);
    },
    websocketInfo(msg, state) {
      if (isSystemMessage(msg)) return ok(state);
      if ("push" in msg) return reply(text(msg.push), state);
      if ("halt" in msg) {
        if (state.timer !== null) cancelTimer(state.timer);
        state.timer = null;
        return reply(text(`s-end:${state.n}`), state);
      }
      if (state.timer === null) return ok(state);
      state.n++;
      state.timer = sendAfter(state.every, self(), { tick: true } as AppMessage);
      return reply(text(`s:${state.n}:${String(self())}`), state);
    },
    terminate(reason) {
      log.terminates.push(reason);
    },
  };
}
