// A node with a top supervisor, in its own OS process, for test/behaviors/supervisor-app.test.ts:
// imports the BUILT package (dist/index.js), starts a listener and the supervisor "app_sup"
// (intensity 1, one worker registered as "worker") with the options given as JSON in argv[2],
// and obeys text frames on /ws. Everything it reports is a pino JSON line on stdout, through
// the runtime's logger (setLogger), so the lines the node stop logs are flushed like the rest.
//
// argv[2]: { permanent?: boolean, stopTimeout?: number,
//            other?: "clean" | "stuck" }   a second permanent supervisor, "other_sup", whose
//                                          child ends on shutdown ("clean") or ignores it ("stuck")
// Frames: "which" → the worker's pid (or "none"); "crash" → the worker throws; "stop" →
//         stopSupervisor("app_sup"); "kill" → exit(app_sup, "kill"); anything else is echoed.
import { pino } from "pino";
import * as corral from "../../dist/index.js";

const { compileRoutes, exit, ok, reply, send, setLogger, spawnLink, startClear, startSupervisor, stop, stopSupervisor, text, upgrade, whereis } = corral;

const opts = JSON.parse(process.argv[2] ?? "{}");
const logger = pino({ base: null, level: "info" });
setLogger(logger);

const worker = {
  init: () => null,
  handleInfo(msg, st) {
    if (msg === "crash") throw new Error("worker crashed on purpose");
    return ok(st);
  },
};

/** The other supervisor's child: traps exits, so the supervisor's shutdown arrives as an EXIT it reports, then obeys or not. */
const otherChild = {
  init: () => null,
  handleInfo(msg, st) {
    if (msg?.type === "EXIT") {
      logger.info({ reason: msg.reason }, "other child got EXIT");
      if (opts.other === "clean") return stop(st, msg.reason);
    }
    return ok(st);
  },
};

const ws = {
  init: (req) => upgrade(req, null, { idleTimeout: 60_000 }),
  websocketHandle(frame, st) {
    if (frame.type !== "text") return ok(st);
    const answer = (data) => reply(text(data), st);
    switch (frame.data) {
      case "which":
        return answer(String(whereis("worker") ?? "none"));
      case "crash":
        send("worker", "crash");
        return answer("crashing");
      case "stop":
        void stopSupervisor("app_sup").then(() => logger.info("app_sup stopped"));
        return answer("stopping");
      case "kill":
        exit(whereis("app_sup"), "kill");
        return answer("killing");
      default:
        return answer(frame.data);
    }
  },
  terminate(reason) {
    logger.info({ reason }, "handler terminated");
  },
};

const http = {
  init(req) {
    req.reply(200, { "content-type": "text/plain" }, "up\n");
    return { type: "ok", req, state: null };
  },
};

if (opts.other !== undefined) {
  startSupervisor(
    { children: [{ id: "other", start: () => spawnLink(otherChild, undefined, { trapExit: true }), shutdown: "infinity" }] },
    { name: "other_sup", permanent: true },
  );
}
const permanent = opts.permanent === undefined ? {} : { permanent: opts.permanent };
const stopTimeout = opts.stopTimeout === undefined ? {} : { stopTimeout: opts.stopTimeout };
startSupervisor(
  { intensity: 1, periodMs: 60_000, children: [{ id: "worker", start: () => spawnLink(worker, undefined, { name: "worker" }) }] },
  { name: "app_sup", ...permanent, ...stopTimeout },
);

const dispatch = compileRoutes([{ host: "_", paths: [["/ws", ws], ["/", http]] }]);
const listener = await startClear("app", { port: 0, host: "127.0.0.1" }, { dispatch, logger });
logger.info({ port: listener.port }, "listening");
