// @ts-check
/**
 * The corral server under test, written as a user of the package would write it: the
 * public entry point (dist/index.js after `npm run build`, or CORRAL_DIST, see
 * bench/lib/corral.js), one listener, one route per handler:
 *
 *   /echo       text and binary frames echoed with reply(frame, state)
 *   /idle       nothing per frame; websocketInit keeps the pid in the app's own Set (as an
 *               app does to reach its connections) and websocketInfo pushes what it is sent
 *   /state      holds a ~2 KB chat-connection state (bench/runtime.js makeState), live
 *   /hibernate  the same state, every callback returns { hibernate: true }
 *   /push       the guide's handler (docs/websocket.md): startTimer(1000, self(), "tick")
 *               in websocketInit, re-armed in websocketInfo, which pushes text("tick") and
 *               hibernates, as the guide does; its state also holds a ~2 KB chat-connection
 *               state (makeState), so that hibernating really serializes it
 *   /push-live  the same without hibernating (what hibernation costs per push)
 *
 * Started by bench/ws/rig.js with `node --expose-gc`; the coordinator drives it over IPC
 * (bench/ws/control.js). Never talks to the coordinator per message.
 */
import { isDeepStrictEqual } from "node:util";
import { serialize } from "node:v8";
import { DIST_URL } from "../lib/corral.js";
import { makeState } from "../runtime.js";
import { commonCommands, ready, serve } from "./control.js";

/** @type {typeof import("../../dist/index.js")} */
const corral = await import(DIST_URL);
const { broadcast, compileRoutes, isTimeout, join, metrics, ok, processInfo, reply, self, send, startClear, startTimer, text, upgrade } = corral;

/** @typedef {import("../../dist/index.js").Pid} Pid */

/** The app's own registry of connections: what app code loops over to reach them. */
/** @type {Set<Pid>} */
const app = new Set();
const GROUP = "all";

/** @type {import("../../dist/index.js").WebSocketHandler<null>} */
const echo = {
  init: (req) => upgrade(req, null),
  websocketHandle(frame, state) {
    if (frame.type === "text" || frame.type === "binary") return reply(frame, state);
    return ok(state);
  },
};

/** @type {import("../../dist/index.js").WebSocketHandler<null, unknown, string>} */
const idle = {
  init: (req) => upgrade(req, null),
  websocketInit(state) {
    app.add(self());
    return ok(state);
  },
  websocketHandle: (_frame, state) => ok(state),
  websocketInfo: (msg, state) => reply(text(msg), state),
  terminate() {
    app.delete(self());
  },
};

let nextState = 0;
let checked = 0;
let mismatches = 0;

/**
 * @param {boolean} hibernate
 * @returns {import("../../dist/index.js").WebSocketHandler<{ i: number, s: ReturnType<typeof makeState> } | null, unknown, string>}
 */
function stateful(hibernate) {
  return {
    init: (req) => upgrade(req, null),
    websocketInit() {
      app.add(self());
      const i = nextState++;
      return ok({ i, s: makeState(i) }, { hibernate });
    },
    websocketHandle: (_frame, state) => ok(state, { hibernate }),
    websocketInfo(msg, state) {
      if (msg === "check" && state !== null) {
        checked++;
        if (!isDeepStrictEqual(state.s, makeState(state.i))) mismatches++;
        return ok(state, { hibernate });
      }
      return reply(text(String(msg)), state, { hibernate });
    },
    terminate() {
      app.delete(self());
    },
  };
}

let nextPusher = 0;

/**
 * The guide's handler (docs/websocket.md), pushing every second, with a ~2 KB state beside
 * its heartbeat; with hibernate false, the same without hibernating after each push (/push-live).
 * @param {boolean} hibernate
 * @returns {import("../../dist/index.js").WebSocketHandler<{ heartbeat: number, chat: ReturnType<typeof makeState> }>}
 */
function pusher(hibernate) {
  return {
    init: (req) => upgrade(req, { heartbeat: 1000, chat: makeState(nextPusher++) }),
    websocketInit(state) {
      startTimer(1000, self(), "tick");
      return ok(state);
    },
    websocketHandle: (_frame, state) => ok(state),
    websocketInfo(info, state) {
      if (isTimeout(info)) {
        startTimer(state.heartbeat, self(), "tick");
        return reply(text(String(info.msg)), state, { hibernate });
      }
      return ok(state);
    },
  };
}

/** The metrics route once the coordinator turned it on (echo-metrics): until then /metrics is a 404 and prom-client's Node metrics are not collected. */
/** @type {ReturnType<typeof metrics> | null} */
let metricsRoute = null;

/** @type {import("../../dist/index.js").HttpHandler<null>} */
const metricsOrNot = {
  init(req) {
    if (metricsRoute !== null) return /** @type {any} */ (metricsRoute.init(req, undefined));
    return { type: "ok", req: req.reply(404), state: null };
  },
};

const dispatch = compileRoutes([
  {
    host: "_",
    paths: [
      ["/echo", echo, {}],
      ["/idle", idle, {}],
      ["/state", stateful(false), {}],
      ["/hibernate", stateful(true), {}],
      ["/push", pusher(true), {}],
      ["/push-live", pusher(false), {}],
      ["/metrics", metricsOrNot, {}],
    ],
  },
]);
const listener = await startClear("bench", { port: 0, host: "127.0.0.1" }, { dispatch });

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

serve({
  ...commonCommands(),
  conns: () => listener.connections,
  metricsOn: () => {
    metricsRoute ??= metrics();
    return true;
  },
  /** From app code: one message to each connection's pid, or to the group. */
  sendAll: (/** @type {{ via: "each" | "group", msg: string }} */ a) => {
    let n = 0;
    const t0 = process.hrtime.bigint();
    if (a.via === "group") n = broadcast(GROUP, a.msg);
    else for (const pid of app) {
      send(pid, a.msg);
      n++;
    }
    const t1 = process.hrtime.bigint();
    return { t0, t1, n };
  },
  join: () => {
    for (const pid of app) join(GROUP, pid);
    return app.size;
  },
  /** How many of the app's connections are hibernated now. */
  hibernated: () => {
    let n = 0;
    for (const pid of app) if (processInfo(pid)?.hibernated === true) n++;
    return { hibernated: n, of: app.size };
  },
  /** Wakes every stateful connection and compares its state with a freshly built one. */
  check: async (/** @type {{ timeoutMs: number }} */ a) => {
    checked = 0;
    mismatches = 0;
    const n = app.size;
    for (const pid of app) send(pid, "check");
    const end = performance.now() + a.timeoutMs;
    while (checked < n && performance.now() < end) await sleep(5);
    return { checked, mismatches, of: n };
  },
  /**
   * v8.serialize size of the states the last `count` stateful connections hold, their mean
   * (their ids come after the warm-up's: longer numbers in the state than the first ones').
   */
  serializedSize: (/** @type {{ count: number }} */ a) => {
    const from = Math.max(0, nextState - a.count);
    let bytes = 0;
    for (let i = from; i < nextState; i++) bytes += serialize({ i, s: makeState(i) }).byteLength;
    return bytes / (nextState - from);
  },
});
ready({ port: listener.port });
