// @ts-check
/**
 * The control channel of a benchmark server (bench/ws/corral-server.js, raw-server.js) and
 * of the load generator: the coordinator (bench/websocket.js, through bench/ws/rig.js) sends
 * { id, cmd, args } over the fork IPC channel, the process answers { id, ok, value } or
 * { id, ok: false, error }. Nothing here runs per WebSocket message: the coordinator only
 * talks to a server between phases (and once at each end of a measured window).
 *
 * A process that loses its parent exits at once (the IPC channel closes when the
 * coordinator dies, also when it is SIGKILLed), so no server or generator outlives a run.
 */
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { writeHeapSnapshot } from "node:v8";

/**
 * @typedef {(args: any) => unknown} Command
 */

/**
 * @param {Record<string, Command>} commands
 */
export function serve(commands) {
  if (typeof process.send !== "function") {
    console.error(`${process.argv[1]} is a benchmark child: bench/run.js forks it with IPC`);
    process.exit(2);
  }
  process.on("disconnect", () => process.exit(3));
  process.on("message", async (/** @type {any} */ m) => {
    if (typeof m !== "object" || m === null || typeof m.cmd !== "string") return;
    /** @type {any} */
    let reply;
    try {
      const fn = commands[m.cmd];
      if (fn === undefined) throw new Error(`unknown command ${m.cmd}`);
      reply = { id: m.id, ok: true, value: await fn(m.args) };
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      reply = { id: m.id, ok: false, error: e.stack ?? e.message };
    }
    // An exit ends the process in the send callback: the answer is out first.
    if (process.connected) /** @type {NonNullable<typeof process.send>} */ (process.send)(reply, undefined, {}, () => {
      if (m.cmd === "exit") process.exit(0);
    });
  });
}

/** Tells the coordinator the process is up (and e.g. which port it listens on). */
export function ready(/** @type {Record<string, unknown>} */ info) {
  /** @type {NonNullable<typeof process.send>} */ (process.send)({ id: 0, ok: true, value: { ready: true, pid: process.pid, ...info } });
}

function turn() {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Full GCs with event-loop turns between them (bench/lib/measure.js settle), then
 * process.memoryUsage().
 * @param {number} [times]
 */
export async function settledMemory(times = 4) {
  const gc = /** @type {(() => void) | undefined} */ (globalThis.gc);
  if (typeof gc !== "function") throw new Error("the server runs with --expose-gc");
  for (let i = 0; i < times; i++) {
    gc();
    await turn();
  }
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers };
}

/** Commands every server answers the same way. */
export function commonCommands() {
  /** @type {ReturnType<typeof performance.eventLoopUtilization> | null} */
  let eluMark = null;
  /** @type {import("node:perf_hooks").IntervalHistogram | null} */
  let eld = null;
  return {
    /** Starts sampling the event-loop delay (a 10 ms timer: cheap next to the work measured). */
    eldStart: () => {
      eld?.disable();
      eld = monitorEventLoopDelay({ resolution: 10 });
      eld.enable();
      return true;
    },
    /** Event-loop delay since eldStart, in ms (beyond the 10 ms sampling period). */
    eldStop: () => {
      if (eld === null) return null;
      eld.disable();
      const r = { p50: eld.percentile(50) / 1e6, p99: eld.percentile(99) / 1e6, max: eld.max / 1e6, samples: eld.count };
      eld = null;
      return r;
    },
    mem: () => settledMemory(),
    /** Event-loop utilization since the previous call (the first call starts the window). */
    elu: () => {
      const now = performance.eventLoopUtilization();
      const d = eluMark === null ? null : performance.eventLoopUtilization(now, eluMark);
      eluMark = now;
      return d === null ? null : d.utilization;
    },
    cpu: () => process.cpuUsage(),
    /** For diagnosis (bench/ws/heapdiff.js): a heap snapshot after forced GCs, to `file`. */
    heapSnapshot: async (/** @type {{ file: string }} */ a) => {
      await settledMemory();
      return writeHeapSnapshot(a.file);
    },
    // serve ends the process once this answer is out; a --cpu-prof profile is written on a normal exit.
    exit: () => true,
  };
}
