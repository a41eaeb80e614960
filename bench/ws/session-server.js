// @ts-check
/**
 * The server of the sessions scenario (bench/sessions.js): the package from dist/ as an app
 * uses it, one listener, the same handlers served plain and through bullet():
 *
 *   /ws-push  a plain WebSocket route: on "go:<cap>" from the client, pushes numbered 64-byte
 *             text frames, at most WINDOW beyond the client's last "c:<n>" (its credit), until cap
 *   /s-push   the same handler through bullet() (all three transports)
 *   /ws-idle  a plain WebSocket route that holds a small state, hibernated, and does nothing
 *   /s-idle   the same through bullet(), resumeWindowMs 120 s: connected, then away
 *   /s-open   bullet(); websocketInit replies "welcome"; `poke` sends each session a message
 *             it pushes while its client is away ("while away"), replayed on resume
 *
 * The credit keeps every outbox bounded (WINDOW frames) whatever the transport: a handler
 * cannot see its session's acknowledgements, so the app paces itself, as a real one would.
 * Started by bench/sessions.js with `node --expose-gc`; driven over IPC (bench/ws/control.js).
 */
import { DIST_URL } from "../lib/corral.js";
import { commonCommands, ready, serve } from "./control.js";

/** @type {typeof import("../../dist/index.js")} */
const corral = await import(DIST_URL);
const { bullet, compileRoutes, ok, processInfo, reply, self, send, startClear, text, upgrade } = corral;

/** @typedef {import("../../dist/index.js").Pid} Pid */

/** Frames the handler may push beyond the client's credit. */
const WINDOW = 1024;
/** Frames pushed in one turn at most: a client's burst never holds the loop for long. */
const BATCH = 128;
const PAD = "x".repeat(56);
const MORE = Symbol("more");

/** @typedef {{ sent: number, credit: number, cap: number }} PushState */

/** @param {PushState} s */
function pushSome(s) {
  const upTo = Math.min(s.credit, s.cap);
  const n = Math.min(BATCH, upTo - s.sent);
  if (n <= 0) return ok(s);
  /** @type {import("../../dist/index.js").Frame[]} */
  const frames = new Array(n);
  for (let k = 0; k < n; k++) frames[k] = text(String(++s.sent).padStart(8, "0") + PAD);
  if (s.sent < upTo) send(self(), MORE);
  return reply(frames, s);
}

/** @type {import("../../dist/index.js").WebSocketHandler<PushState, unknown, unknown>} */
const pusher = {
  init: (req) => upgrade(req, { sent: 0, credit: 0, cap: 0 }, { idleTimeout: 120_000 }),
  websocketHandle(frame, s) {
    if (frame.type !== "text") return ok(s);
    const d = frame.data;
    if (d.startsWith("go:")) {
      s.cap = Number(d.slice(3));
      s.credit = WINDOW;
    } else if (d.startsWith("c:")) s.credit = Number(d.slice(2)) + WINDOW;
    return pushSome(s);
  },
  websocketInfo: (msg, s) => (msg === MORE ? pushSome(s) : ok(s)),
};

/** The idle routes' and /s-open's pids (as an app keeps them to reach its sessions): what the coordinator counts and pokes. */
/** @type {Set<Pid>} */
const idlers = new Set();
/** @type {Set<Pid>} */
const opened = new Set();

/** @type {import("../../dist/index.js").WebSocketHandler<{ id: string, n: number }, unknown, string>} */
const idle = {
  init: (req) => upgrade(req, { id: "idle", n: 0 }, { idleTimeout: 300_000 }),
  websocketInit(s) {
    idlers.add(self());
    return ok(s, { hibernate: true });
  },
  websocketHandle: (_f, s) => ok(s, { hibernate: true }),
  terminate() {
    idlers.delete(self());
  },
};

/** @type {import("../../dist/index.js").WebSocketHandler<{ id: string }, unknown, string>} */
const openClose = {
  init: (req) => upgrade(req, { id: "open" }, { idleTimeout: 300_000 }),
  websocketInit(s) {
    opened.add(self());
    return reply(text("welcome"), s);
  },
  websocketHandle: (_f, s) => ok(s),
  websocketInfo: (msg, s) => reply(text(msg), s),
  terminate() {
    opened.delete(self());
  },
};

const dispatch = compileRoutes([
  {
    host: "_",
    paths: [
      ["/ws-push", pusher, {}],
      ["/s-push", bullet(pusher, { resumeWindowMs: 10_000 }), {}],
      ["/ws-idle", idle, {}],
      ["/s-idle", bullet(idle, { resumeWindowMs: 120_000 }), {}],
      ["/s-open", bullet(openClose, { resumeWindowMs: 120_000 }), {}],
    ],
  },
]);
const listener = await startClear("sessions-bench", { port: 0, host: "127.0.0.1" }, { dispatch });

serve({
  ...commonCommands(),
  /** Open TCP connections of the listener (WebSockets, event streams, polls, POSTs). */
  conns: () => listener.connections,
  /** Sessions (or plain connections) alive per handler, and how many idle ones are hibernated. */
  alive: () => {
    let hibernated = 0;
    for (const pid of idlers) if (processInfo(pid)?.hibernated === true) hibernated++;
    return { idle: idlers.size, hibernated, open: opened.size };
  },
  /** App code sends each /s-open session one message, which it pushes (to its outbox while its client is away). */
  poke: () => {
    for (const pid of opened) send(pid, "while away");
    return opened.size;
  },
});
ready({ port: listener.port });
