/**
 * The handler the session tests serve with bullet(): it records every callback per session
 * (init, websocketInit, each frame, terminate), echoes, pushes what a test sends to its pid,
 * streams numbered frames from a timer, and closes, crashes or hibernates on request.
 */
import {
  binary,
  close,
  ok,
  reply,
  self,
  sendAfter,
  text,
  upgrade,
  type InFrame,
  type Pid,
  type TerminateReason,
  type WebSocketHandler,
  type WebSocketOptions,
} from "../../src/index.js";

/** What a test sends to a session's pid. */
export type Info =
  | { readonly push: string | Uint8Array; readonly hibernate?: boolean }
  | { readonly report: true }
  | { readonly pushMany: number; readonly prefix: string }
  | { readonly stream: number; readonly everyMs: number }
  | { readonly close: number; readonly reason?: string }
  | { readonly crash: true }
  | { readonly hibernate: true }
  | { readonly tick: number };

export interface State {
  readonly id: number;
  /** Frames of the timer stream still to send, and its period. */
  left: number;
  everyMs: number;
  sent: number;
  /** The client frames this session's handler got, in order. */
  got: (string | Uint8Array)[];
}

/** One session as the handler saw it. */
export interface Seen {
  readonly id: number;
  pid: Pid | undefined;
  inits: number;
  websocketInits: number;
  terminates: TerminateReason[];
  /** The client frames delivered to websocketHandle, in order (a copy kept outside the state, which hibernation may evict). */
  readonly got: (string | Uint8Array)[];
  readonly initQuery: string;
}

export interface Recorder {
  readonly sessions: Seen[];
  /** The session whose websocketInit ran in pid. */
  byPid(pid: Pid): Seen | undefined;
  reset(): void;
}

export function recorder(): Recorder {
  const sessions: Seen[] = [];
  return {
    sessions,
    byPid: (pid) => sessions.find((s) => s.pid === pid),
    reset() {
      sessions.length = 0;
    },
  };
}

/**
 * The test handler. Client text frames: "echo:<x>" → "<x>"; "close:<code>:<reason>" →
 * close(code, reason); "crash" → throws; "hibernate" → ok(state, {hibernate}); anything else
 * is only recorded. Binary frames are echoed.
 */
export function testHandler(rec: Recorder, wsOpts?: WebSocketOptions): WebSocketHandler<State, unknown, Info> {
  return {
    init(req) {
      const id = rec.sessions.length;
      rec.sessions.push({ id, pid: undefined, inits: 1, websocketInits: 0, terminates: [], got: [], initQuery: req.qs });
      return upgrade(req, { id, left: 0, everyMs: 0, sent: 0, got: [] }, wsOpts);
    },
    websocketInit(state) {
      const seen = rec.sessions[state.id]!;
      seen.pid = self();
      seen.websocketInits++;
      return ok(state);
    },
    websocketHandle(frame: InFrame, state) {
      const seen = rec.sessions[state.id]!;
      if (frame.type === "binary") {
        seen.got.push(frame.data);
        state.got.push(frame.data);
        return reply(binary(frame.data), state);
      }
      if (frame.type !== "text") return ok(state);
      seen.got.push(frame.data);
      state.got.push(frame.data);
      const d = frame.data;
      if (d.startsWith("echo:")) return reply(text(d.slice(5)), state);
      if (d.startsWith("close:")) {
        const [, code, reason] = d.split(":");
        return reply(close(Number(code), reason ?? ""), state);
      }
      if (d === "crash") throw new Error("asked to crash");
      if (d === "hibernate") return ok(state, { hibernate: true });
      return ok(state);
    },
    websocketInfo(msg, state) {
      if ("push" in msg) return reply(typeof msg.push === "string" ? text(msg.push) : binary(msg.push), state, { hibernate: msg.hibernate === true });
      if ("report" in msg) return reply(text(`got ${state.got.length}, sent ${state.sent}`), state);
      if ("pushMany" in msg) {
        const frames = [];
        for (let i = 1; i <= msg.pushMany; i++) frames.push(text(`${msg.prefix}${i}`));
        return reply(frames, state);
      }
      if ("stream" in msg) {
        state.left = msg.stream;
        state.everyMs = msg.everyMs;
        sendAfter(msg.everyMs, self(), { tick: 0 });
        return ok(state);
      }
      if ("tick" in msg) {
        if (state.left <= 0) return ok(state);
        state.left--;
        state.sent++;
        if (state.left > 0) sendAfter(state.everyMs, self(), { tick: state.sent });
        return reply(text(`s${state.sent}`), state);
      }
      if ("close" in msg) return reply(close(msg.close, msg.reason ?? ""), state);
      if ("crash" in msg) throw new Error("asked to crash");
      return ok(state, { hibernate: true });
    },
    terminate(reason, _req, state) {
      rec.sessions[state.id]!.terminates.push(reason);
    },
  };
}
