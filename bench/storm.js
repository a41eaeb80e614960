// @ts-check
/**
 * The reconnect storm: a node restarts, or a network blip drops every client, and all of them
 * connect again at once. corral and raw ws side by side, with the rig of bench/websocket.js
 * (bench/ws/rig.js: the server under test, the load generators, CPU from /proc):
 *
 *   20 000 clients (1 000 with --quick) fire their connects in the same instant, from two
 *   source addresses, and each writes its upgrade as soon as its TCP handshake completes.
 *   Measured: the time until the last one is upgraded, each client's time from its connect
 *   to its 101 (retries included), the server's CPU per handshake, and how many connects
 *   were refused or reset and retried, or failed all six attempts.
 *
 * The server needs one file descriptor per client: with a lower `ulimit -n` the storm is as
 * large as the limit allows (a warning says so), and below MIN_STORM it fails saying why.
 */
import { readFileSync } from "node:fs";
import { merge, newHist, quantile } from "./ws/hist.js";
import { fdLimit, sourceAddresses, startRig } from "./ws/rig.js";

/** @typedef {"corral" | "raw"} Side */

/** Descriptors the server holds besides its clients' sockets (stdio, IPC, epoll, the listener, …), with room to spare. */
const FD_MARGIN = 200;
/** A storm smaller than this says little about a reconnect storm: fail instead of measuring it. */
const MIN_STORM = 5000;

/**
 * The kernel's counts of SYNs dropped at a full accept queue (ListenOverflows) and of
 * connections it turned away at a listener for any reason (ListenDrops), this network
 * namespace's, from /proc/net/netstat (Linux); NaN where they cannot be read.
 */
function listenDrops() {
  try {
    const lines = readFileSync("/proc/net/netstat", "utf8").split("\n").filter((l) => l.startsWith("TcpExt:"));
    const names = lines[0].split(" ");
    const values = lines[1].split(" ");
    return { overflows: Number(values[names.indexOf("ListenOverflows")]), drops: Number(values[names.indexOf("ListenDrops")]) };
  } catch {
    return { overflows: NaN, drops: NaN };
  }
}

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * @param {unknown} cond
 * @param {string} what
 * @returns {asserts cond}
 */
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

/**
 * How many of `want` clients the fd limit lets the server hold: `want`, or fewer (rounded
 * down to a thousand) with a warning; an error below MIN_STORM.
 * @param {number} want
 * @returns {{ conns: number, warning: string | null }}
 */
export function stormSize(want) {
  const { soft, hard } = fdLimit();
  if (!Number.isFinite(soft) || soft >= want + FD_MARGIN) return { conns: want, warning: null };
  const fits = Math.floor((soft - FD_MARGIN) / 1000) * 1000;
  const raise = `raise it to ${want + FD_MARGIN} (ulimit -n, LimitNOFILE for a service, --ulimit nofile for a container; a process cannot raise its hard limit)`;
  if (fits < Math.min(want, MIN_STORM)) {
    throw new Error(`the storm needs about ${want + FD_MARGIN} file descriptors in the server process; the limit here is ${soft} (soft) / ${hard} (hard): ${raise}`);
  }
  return { conns: fits, warning: `the fd limit (${soft}) holds ${fits} of the storm's ${want} clients: measured with ${fits}; ${raise}` };
}

/**
 * Warm-up (`warmup` connections opened and closed), then `conns` clients connect at once.
 * @param {{ server: Side, conns: number, warmup: number }} p
 */
export async function measureStorm(p) {
  const { conns, warning } = stormSize(p.conns);
  const rig = await startRig({ server: p.server, conns, workers: 1 });
  try {
    const sources = sourceAddresses(conns + p.warmup);
    await rig.connect({ mode: "idle", path: "/idle", count: p.warmup, concurrency: 128, sources, timeoutMs: 30_000 });
    await rig.waitConns(p.warmup, 10_000);
    await rig.gensCall("closeAll");
    await rig.waitConns(0, 10_000);
    await sleep(200);

    // Each generator fires its share in one go (concurrency = its count), indices after the warm-up's.
    const n = rig.gens.length;
    const drops0 = listenDrops();
    const cpu0 = rig.server.cpuMs();
    const gen0 = rig.gens.reduce((s, g) => s + g.cpuMs(), 0);
    const rs = await Promise.all(
      rig.gens.map((g, k) => {
        const lo = Math.floor((conns * k) / n);
        const hi = Math.floor((conns * (k + 1)) / n);
        return g.call(
          "connect",
          { mode: "idle", port: rig.port, path: "/idle", first: p.warmup + lo, count: hi - lo, sources, concurrency: hi - lo, timeoutMs: 120_000, countFailures: true },
          125_000,
        );
      }),
    );
    const cpu1 = rig.server.cpuMs();
    const gen1 = rig.gens.reduce((s, g) => s + g.cpuMs(), 0);
    const drops1 = listenDrops();
    /** @type {bigint} */
    let t0 = rs[0].t0;
    /** @type {bigint} */
    let t1 = rs[0].t1;
    const hist = newHist();
    for (const r of rs) {
      if (r.t0 < t0) t0 = r.t0;
      if (r.t1 > t1) t1 = r.t1;
      merge(hist, r.upgradeHist);
    }
    const opened = rs.reduce((s, r) => s + r.opened, 0);
    const failed = rs.reduce((s, r) => s + r.failed, 0);
    const retries = rs.reduce((s, r) => s + r.retries, 0);
    check(opened + failed === conns, `storm: ${opened} upgraded and ${failed} failed of ${conns}`);
    await rig.waitConns(opened, 30_000);
    const m = await rig.gensCall("mark");
    const errors = m.reduce((k, x) => k + x.errors, 0);
    check(errors === 0, `storm: ${errors} errors, first: ${m.find((x) => x.firstError)?.firstError}`);

    const ms = Number(t1 - t0) / 1e6;
    const s = p.server === "corral" ? "Corral" : "Raw";
    return {
      figures: {
        [`stormMs${s}`]: ms,
        [`stormCpuUs${s}`]: ((cpu1 - cpu0) * 1000) / conns,
        [`stormP50Ms${s}`]: quantile(hist, 0.5) / 1000,
        [`stormP99Ms${s}`]: quantile(hist, 0.99) / 1000,
        [`stormRetries${s}`]: retries,
        [`stormFailed${s}`]: failed,
        ...(Number.isNaN(drops0.overflows) ? {} : { [`stormOverflows${s}`]: drops1.overflows - drops0.overflows }),
        [`stormServerCores${s}`]: (cpu1 - cpu0) / ms,
        [`stormGenCores${s}`]: (gen1 - gen0) / ms,
      },
      details: { ...p, conns, ms, opened, failed, retries, maxMs: quantile(hist, 1) / 1000, listenDrops: drops1.drops - drops0.drops },
      warnings: warning === null ? [] : [warning],
      subprocessCpuMs: rig.subprocessCpuMs(),
    };
  } finally {
    await rig.close();
  }
}

/**
 * @param {Record<string, number>} f
 * @param {string} a
 * @param {string} b
 */
function ratio(f, a, b) {
  return f[a] !== undefined && f[b] !== undefined && f[b] !== 0 ? f[a] / f[b] : undefined;
}

/** @type {import("./lib/scenario.js").Scenario} */
export const scenario = {
  name: "storm",
  title: "Reconnect storm: corral vs raw ws",
  rounds: 3,
  alternate: true,
  about:
    "A node restarts, or a network blip drops every client, and they all come back at once. The rig of the WebSocket " +
    "scenarios (`bench/ws/rig.js`: the server under test in its own process, lean load generators, CPU from `/proc`): " +
    "corral (`bench/ws/corral-server.js`, its `/idle` route, the listener's defaults: `backlog` 1 024) and raw ws " +
    "(`bench/ws/raw-server.js`, `WebSocketServer({ port })`: Node's backlog, 511), one after the other in each round, " +
    "the order flipped every round.",
  measurements: /** @type {Side[]} */ (["corral", "raw"]).map((side, k) => ({
    id: `storm-${side}`,
    fn: "measureStorm",
    groups: ["storm"],
    params: (quick) => ({ server: side, conns: quick ? 1000 : 20_000, warmup: quick ? 100 : 1000 }),
    timeoutMs: 240_000,
    ...(k === 0
      ? {
          how:
            "Warm-up: 1 000 connections opened and closed (100 with --quick). Then N = 20 000 clients (1 000 with " +
            "--quick), from source addresses 127.0.0.2 and 127.0.0.3, fire their connects in the same instant (each " +
            "generator process opens its share in one loop) and each writes its upgrade request as soon as its TCP " +
            "handshake completes. **Time to all upgraded**: from the first connect to the last 101. **Time to upgrade**: " +
            "each client's, from its first connect to its 101, retries included (p50, p99). **Retried**: connects that " +
            "were refused or reset before their 101 and tried again (up to 5 more times, 20 ms × attempt apart); " +
            "**failed**: clients that never got their 101. A SYN that finds the accept queue full is dropped by the kernel " +
            "and sent again by the client's kernel a second later (then 3 s, 7 s): that shows in the times, not as a retry; " +
            "the kernel's count of them (the ListenOverflows field of `/proc/net/netstat`, the whole network namespace's) is " +
            "**SYNs dropped at a full accept queue**. So the storm comes in waves a retransmit apart, and what decides the " +
            "total is how many clients each wave gets in: the backlog plus what the server accepts while the wave lasts. Server CPU " +
            "over the storm / N: CPU per handshake. The server needs one file descriptor per client: with a lower " +
            "`ulimit -n` the storm is as large as the limit allows, rounded down to a thousand, and the run says so.",
        }
      : {}),
  })),
  figures: [
    { id: "stormMsCorral", label: "Storm: time to all upgraded, corral", format: "ms" },
    { id: "stormMsRaw", label: "Storm: time to all upgraded, raw ws", format: "ms" },
    { id: "stormMsRatio", label: "Storm: time to all upgraded corral / raw", format: "ratio", target: { op: "<=", value: 1.0 } },
    { id: "stormP99MsCorral", label: "Storm: time to upgrade p99, corral", format: "ms" },
    { id: "stormP99MsRaw", label: "Storm: time to upgrade p99, raw ws", format: "ms" },
    { id: "stormP99Ratio", label: "Storm: time to upgrade p99 corral / raw", format: "ratio" },
    { id: "stormP50MsCorral", label: "Storm: time to upgrade p50, corral", format: "ms" },
    { id: "stormP50MsRaw", label: "Storm: time to upgrade p50, raw ws", format: "ms" },
    { id: "stormCpuUsCorral", label: "Storm: server CPU per handshake, corral", format: "us" },
    { id: "stormCpuUsRaw", label: "Storm: server CPU per handshake, raw ws", format: "us" },
    { id: "stormCpuRatio", label: "Storm: server CPU per handshake corral / raw", format: "ratio" },
    { id: "stormRetriesCorral", label: "Storm: connects retried, corral", format: "number" },
    { id: "stormRetriesRaw", label: "Storm: connects retried, raw ws", format: "number" },
    { id: "stormOverflowsCorral", label: "Storm: SYNs dropped at a full accept queue, corral", format: "number" },
    { id: "stormOverflowsRaw", label: "Storm: SYNs dropped at a full accept queue, raw ws", format: "number" },
    { id: "stormFailedCorral", label: "Storm: clients never upgraded, corral", format: "number", target: { op: "<=", value: 0 } },
    { id: "stormFailedRaw", label: "Storm: clients never upgraded, raw ws", format: "number" },
    { id: "stormServerCoresCorral", label: "Storm: server CPU, corral", format: "cores" },
    { id: "stormServerCoresRaw", label: "Storm: server CPU, raw ws", format: "cores" },
    { id: "stormGenCoresCorral", label: "Storm: generator CPU, corral run", format: "cores" },
    { id: "stormGenCoresRaw", label: "Storm: generator CPU, raw run", format: "cores" },
  ],
  derive: (f) => {
    /** @type {Record<string, number | undefined>} */
    const out = {
      stormMsRatio: ratio(f, "stormMsCorral", "stormMsRaw"),
      stormP99Ratio: ratio(f, "stormP99MsCorral", "stormP99MsRaw"),
      stormCpuRatio: ratio(f, "stormCpuUsCorral", "stormCpuUsRaw"),
    };
    /** @type {Record<string, number>} */
    const defined = {};
    for (const [k, v] of Object.entries(out)) if (v !== undefined && Number.isFinite(v)) defined[k] = v;
    return defined;
  },
  comparisons: [
    { section: "Reconnect storm", label: "time to all upgraded", a: "stormMsCorral", b: "stormMsRaw", ratio: "stormMsRatio" },
    { section: "Reconnect storm", label: "time to upgrade p99", a: "stormP99MsCorral", b: "stormP99MsRaw", ratio: "stormP99Ratio" },
    { section: "Reconnect storm", label: "time to upgrade p50", a: "stormP50MsCorral", b: "stormP50MsRaw" },
    { section: "Reconnect storm", label: "server CPU per handshake", a: "stormCpuUsCorral", b: "stormCpuUsRaw", ratio: "stormCpuRatio" },
    { section: "Reconnect storm", label: "connects retried", a: "stormRetriesCorral", b: "stormRetriesRaw" },
    { section: "Reconnect storm", label: "SYNs dropped at a full accept queue", a: "stormOverflowsCorral", b: "stormOverflowsRaw" },
    { section: "Reconnect storm", label: "clients never upgraded", a: "stormFailedCorral", b: "stormFailedRaw" },
    { section: "Load generator check", label: "storm: server CPU (cores)", a: "stormServerCoresCorral", b: "stormServerCoresRaw" },
    { section: "Load generator check", label: "storm: generator CPU (cores)", a: "stormGenCoresCorral", b: "stormGenCoresRaw" },
  ],
};
