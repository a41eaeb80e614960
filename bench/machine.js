// @ts-check
/**
 * Machine handlers (xstate v5 through machineHandler) against plain WebSocket handlers doing
 * the same work — count the text frames, answer each with "n=<count>" — over real sockets
 * on 127.0.0.1:
 *
 *   - memory per idle connection, live and hibernated (server heap + external, after GC);
 *   - server CPU per message, live (16 in flight per connection) and hibernating after every
 *     message (1 in flight, so each message wakes a hibernated connection: for a machine, a
 *     rebuild of the actor from its snapshot).
 *
 * Each variant runs in a fresh server process (node --expose-gc); the clients live in
 * another process so their memory and CPU stay out of the figures.
 *
 *   npm run build && node bench/machine.js [--conns 2000] [--messages 60000] [--clients 50] [--window 16] [--json]
 */
import { fork } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";

const SELF = fileURLToPath(import.meta.url);

/** @param {string} name @param {number} fallback */
function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  const v = i === -1 ? undefined : Number(process.argv[i + 1]);
  return v !== undefined && Number.isFinite(v) && v > 0 ? v : fallback;
}

const role = process.argv[2];
if (role === "server") await server(/** @type {string} */ (process.argv[3]));
else if (role === "client") client();
else await main();

/* ------------------------------------------------------------------ the server side */

/** @param {string} variant "plain" | "machine" */
async function server(variant) {
  const corral = await import("../dist/index.js");
  const { assign, setup } = await import("xstate");
  const { compileRoutes, machineHandler, ok, processInfo, processes, reply, setLogger, startClear, text, upgrade, wsReply } = corral;
  const { pino } = await import("pino");
  setLogger(pino({ level: "silent" }));

  /** @param {boolean} hibernate @returns {import("../dist/index.js").WebSocketHandler<{ n: number }>} */
  const plain = (hibernate) => ({
    init: (req) => upgrade(req, { n: 0 }, { idleTimeout: 600_000 }),
    websocketInit: (state) => reply(text("ready"), state),
    websocketHandle(frame, state) {
      if (frame.type !== "text") return ok(state);
      const next = { n: state.n + 1 };
      return reply(text(`n=${next.n}`), next, { hibernate });
    },
  });

  const counter = setup({ types: { context: /** @type {{ n: number }} */ ({}), events: /** @type {import("../dist/index.js").WsEvent} */ ({ type: "ws.info", data: null }) } }).createMachine({
    context: { n: 0 },
    entry: wsReply(text("ready")),
    on: {
      "ws.text": { actions: [assign({ n: ({ context }) => context.n + 1 }), wsReply(({ context }) => text(`n=${context.n}`))] },
    },
  });
  const websocket = { idleTimeout: 600_000 };
  const handlers =
    variant === "plain"
      ? { live: plain(false), hib: plain(true) }
      : { live: machineHandler(counter, { websocket }), hib: machineHandler(counter, { websocket, hibernate: true }) };

  const dispatch = compileRoutes([{ host: "_", paths: [["/live", handlers.live], ["/hib", handlers.hib]] }]);
  const listener = await startClear(`bench-${variant}`, { port: 0, host: "127.0.0.1" }, { dispatch });
  const gc = /** @type {() => void} */ (globalThis.gc);

  const memory = () => {
    for (let i = 0; i < 4; i++) gc();
    const m = process.memoryUsage();
    return { heap: m.heapUsed, external: m.external };
  };
  const hibernatedCount = () => processes().filter((p) => processInfo(p)?.hibernated === true).length;

  /** @type {{ heap: number, external: number }} */
  let base = memory();
  /** @type {NodeJS.CpuUsage | undefined} */
  let cpu;
  process.on("message", async (/** @type {any} */ msg) => {
    switch (msg.cmd) {
      case "baseline":
        await new Promise((r) => setTimeout(r, 50));
        base = memory();
        process.send?.({ ok: true });
        break;
      case "measure": {
        // Let every connection finish its turn (and hibernate, when it asked to).
        const deadline = Date.now() + 20_000;
        while (msg.hibernated > 0 && hibernatedCount() < msg.hibernated && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        await new Promise((r) => setTimeout(r, 100));
        const m = memory();
        process.send?.({ heap: (m.heap - base.heap) / msg.conns, external: (m.external - base.external) / msg.conns, hibernated: hibernatedCount() });
        break;
      }
      case "cpuStart":
        cpu = process.cpuUsage();
        process.send?.({ ok: true });
        break;
      case "cpuStop": {
        const d = process.cpuUsage(cpu);
        process.send?.({ us: d.user + d.system });
        break;
      }
    }
  });
  process.send?.({ port: listener.port });
}

/* ------------------------------------------------------------------ the client side */

function client() {
  /** @type {import("ws").WebSocket[]} */
  let sockets = [];
  process.on("message", async (/** @type {any} */ msg) => {
    const { default: WebSocket } = await import("ws");
    if (msg.cmd === "open") {
      // Connect in batches; each connection waits for "ready", then sends one message and waits for its answer.
      for (let i = 0; i < msg.conns; i += 100) {
        const batch = [];
        for (let j = i; j < Math.min(msg.conns, i + 100); j++) {
          const ws = new WebSocket(`ws://127.0.0.1:${msg.port}${msg.path}`, { perMessageDeflate: false });
          sockets.push(ws);
          batch.push(
            new Promise((resolve, reject) => {
              ws.once("error", reject);
              ws.once("message", () => {
                ws.send("hello");
                ws.once("message", resolve);
              });
            }),
          );
        }
        await Promise.all(batch);
      }
      process.send?.({ ok: true });
    } else if (msg.cmd === "pingpong") {
      // msg.messages messages spread over the first msg.clients connections, msg.window in flight on each.
      const per = Math.ceil(msg.messages / msg.clients);
      const window = Math.min(msg.window, per);
      await Promise.all(
        sockets.slice(0, msg.clients).map(
          (ws) =>
            new Promise((resolve) => {
              let sent = 0;
              let answered = 0;
              const onMessage = () => {
                if (++answered === per) {
                  ws.off("message", onMessage);
                  resolve(undefined);
                } else if (sent < per) {
                  sent++;
                  ws.send("x");
                }
              };
              ws.on("message", onMessage);
              for (; sent < window; sent++) ws.send("x");
            }),
        ),
      );
      process.send?.({ done: per * msg.clients });
    } else if (msg.cmd === "close") {
      for (const ws of sockets) ws.terminate();
      sockets = [];
      process.send?.({ ok: true });
    }
  });
  process.send?.({ ready: true });
}

/* ------------------------------------------------------------------ the conductor */

/** @param {import("node:child_process").ChildProcess} child @param {object} msg @returns {Promise<any>} */
async function ask(child, msg) {
  const reply = once(child, "message");
  child.send(msg);
  const timer = setTimeout(() => child.kill(), 120_000);
  try {
    return (await reply)[0];
  } finally {
    clearTimeout(timer);
  }
}

async function main() {
  const conns = arg("conns", 2000);
  const messages = arg("messages", 60_000);
  const clients = Math.min(arg("clients", 50), conns);
  const window = arg("window", 16);
  const asJson = process.argv.includes("--json");
  const cli = fork(SELF, ["client"], { stdio: "inherit" });
  await once(cli, "message");

  /** @type {Record<string, Record<string, number>>} */
  const results = {};
  for (const variant of ["plain", "machine"]) {
    for (const path of ["/live", "/hib"]) {
      const srv = fork(SELF, ["server", variant], { execArgv: ["--expose-gc"], stdio: "inherit" });
      const [{ port }] = /** @type {[{ port: number }]} */ (await once(srv, "message"));
      // Warm up the code paths (JIT), then take the baseline with no connection open.
      await ask(cli, { cmd: "open", port, path, conns: Math.min(200, conns) });
      await ask(cli, { cmd: "pingpong", messages: 20_000, clients: Math.min(20, conns), window });
      await ask(cli, { cmd: "close" });
      await new Promise((r) => setTimeout(r, 300));
      await ask(srv, { cmd: "baseline" });
      await ask(cli, { cmd: "open", port, path, conns });
      const mem = await ask(srv, { cmd: "measure", conns, hibernated: path === "/hib" ? conns : 0 });
      // Server CPU per message: the median of three rounds.
      const rounds = [];
      for (let r = 0; r < 3; r++) {
        await ask(srv, { cmd: "cpuStart" });
        const t0 = performance.now();
        // Hibernating: one message in flight per connection, so every message wakes a hibernated one.
        const { done } = await ask(cli, { cmd: "pingpong", messages: path === "/hib" ? messages / 4 : messages, clients, window: path === "/hib" ? 1 : window });
        const ms = performance.now() - t0;
        const { us } = await ask(srv, { cmd: "cpuStop" });
        rounds.push({ usPerMsg: us / done, perSec: done / (ms / 1000) });
      }
      rounds.sort((a, b) => a.usPerMsg - b.usPerMsg);
      const mid = rounds[1];
      await ask(cli, { cmd: "close" });
      srv.kill();
      results[`${variant} ${path === "/live" ? "live" : "hibernating"}`] = {
        bytesPerConn: Math.round(mem.heap + mem.external),
        heapPerConn: Math.round(mem.heap),
        externalPerConn: Math.round(mem.external),
        hibernated: mem.hibernated,
        cpuUsPerMsg: Number(mid.usPerMsg.toFixed(2)),
        msgPerSec: Math.round(mid.perSec),
      };
    }
  }
  cli.kill();

  if (asJson) {
    console.log(JSON.stringify({ node: process.version, conns, messages, clients, window, results }, null, 2));
    return;
  }
  console.log(`corral: machine handler (xstate) vs plain handler — node ${process.version}, ${conns} connections`);
  console.log(`CPU: live, ${messages} messages over ${clients} connections, ${window} in flight each; hibernating, ${messages / 4} messages, 1 in flight each (every message wakes the connection)\n`);
  console.log("variant               bytes/conn   (heap + external)   hibernated   server CPU µs/msg   msg/s");
  for (const [name, r] of Object.entries(results)) {
    console.log(
      `${name.padEnd(20)} ${String(r.bytesPerConn).padStart(10)}   ${`(${r.heapPerConn} + ${r.externalPerConn})`.padEnd(19)} ${String(r.hibernated).padStart(10)}   ${String(r.cpuUsPerMsg).padStart(17)}   ${String(r.msgPerSec).padStart(6)}`,
    );
  }
  const pl = results["plain live"], ml = results["machine live"], ph = results["plain hibernating"], mh = results["machine hibernating"];
  if (pl && ml && ph && mh) {
    console.log(`\nmachine − plain, live:        ${ml.bytesPerConn - pl.bytesPerConn} bytes/conn, ${(ml.cpuUsPerMsg - pl.cpuUsPerMsg).toFixed(2)} µs/msg`);
    console.log(`machine − plain, hibernated:  ${mh.bytesPerConn - ph.bytesPerConn} bytes/conn, ${(mh.cpuUsPerMsg - ph.cpuUsPerMsg).toFixed(2)} µs/msg (a wake-up rebuilds the actor)`);
  }
}
