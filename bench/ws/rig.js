// @ts-check
/**
 * The coordinator's side of a WebSocket measurement: starts the server under test
 * (corral-server.js or raw-server.js) and the load generator process(es) (loadgen.js) as
 * forked children with IPC, talks to them (bench/ws/control.js), reads their CPU time from
 * /proc, and always stops them: a graceful `exit` first (so a --cpu-prof profile gets
 * written), SIGKILL past a deadline, and SIGKILL from a process 'exit' hook if the
 * coordinator itself goes down. Children also exit on their own when the IPC channel to
 * the coordinator closes.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { IpcChild, profileArgs } from "../lib/ipc-child.js";
import { merge, newHist } from "./hist.js";

const WS_DIR = path.dirname(fileURLToPath(import.meta.url));
/** Connections one generator process holds at most (its fd limit is the same as the server's). */
const PER_GENERATOR = 15_000;

/**
 * The fd limit children inherit, from /proc/self/limits: { soft, hard }.
 */
export function fdLimit() {
  try {
    const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files"));
    const [soft, hard] = (line ?? "").replace("Max open files", "").trim().split(/\s+/);
    return { soft: soft === "unlimited" ? Infinity : Number(soft), hard: hard === "unlimited" ? Infinity : Number(hard) };
  } catch {
    return { soft: NaN, hard: NaN };
  }
}

/**
 * Forks a process of bench/ws and waits for its ready message.
 * @param {string} role
 * @param {string} script  file in bench/ws
 * @param {{ gc?: boolean, profile?: boolean, extra?: string[] }} [o]
 */
function startChild(role, script, o = {}) {
  const execArgv = [...(o.gc ? ["--expose-gc"] : []), ...(o.profile ? profileArgs(role, "ws") : []), ...(o.extra ?? [])];
  return IpcChild.start(role, path.join(WS_DIR, script), { execArgv });
}

/**
 * A server under test plus enough generator processes for `conns` connections.
 * @param {{ server: "corral" | "raw", conns: number, workers: number }} o
 */
export async function startRig(o) {
  /** @type {IpcChild[]} */
  const started = [];
  try {
    const { child: server, info } = await startChild("server", o.server === "corral" ? "corral-server.js" : "raw-server.js", {
      gc: true,
      profile: true,
      // Diagnosis: more node flags for the server, e.g. CORRAL_BENCH_SERVER_FLAGS="--trace-gc".
      extra: (process.env.CORRAL_BENCH_SERVER_FLAGS ?? "").split(" ").filter(Boolean),
    });
    started.push(server);
    const nGen = Math.max(1, Math.ceil(o.conns / PER_GENERATOR));
    /** @type {IpcChild[]} */
    const gens = [];
    for (let g = 0; g < nGen; g++) {
      // CORRAL_BENCH_PROFILE_LOADGEN=<dir> profiles the generators too (diagnosis of the generator
      // itself; the main thread under a profiled coordinator, the workers always, see loadgen.js).
      const { child } = await startChild(`loadgen${nGen > 1 ? g + 1 : ""}`, "loadgen.js", { profile: Boolean(process.env.CORRAL_BENCH_PROFILE_LOADGEN) });
      started.push(child);
      gens.push(child);
    }
    await Promise.all(gens.map((g) => g.call("setup", { workers: o.workers })));
    return new Rig(server, /** @type {number} */ (info.port), gens, started);
  } catch (err) {
    await Promise.all(started.map((c) => c.stop()));
    throw err;
  }
}

export class Rig {
  /**
   * @param {IpcChild} server
   * @param {number} port
   * @param {IpcChild[]} gens
   * @param {IpcChild[]} all
   */
  constructor(server, port, gens, all) {
    this.server = server;
    this.port = port;
    this.gens = gens;
    this.all = all;
    /** CPU each child had used when last read, for subprocessCpuMs. */
    this.cpuSeen = new Map(all.map((c) => [c, 0]));
    this.next = 0;
  }

  /**
   * Opens `count` more connections (indices continue from earlier calls), spread over the
   * generator processes. Connection i binds sources[i % sources.length].
   * @param {{ mode: "echo" | "idle" | "push", path: string, count: number, concurrency: number, sources: string[], timeoutMs: number }} a
   */
  async connect(a) {
    const n = this.gens.length;
    const first = this.next;
    this.next += a.count;
    const rs = await Promise.all(
      this.gens.map((g, k) => {
        const lo = Math.floor((a.count * k) / n);
        const hi = Math.floor((a.count * (k + 1)) / n);
        return g.call(
          "connect",
          { mode: a.mode, port: this.port, path: a.path, first: first + lo, count: hi - lo, sources: a.sources, concurrency: Math.max(1, Math.floor(a.concurrency / n)), timeoutMs: a.timeoutMs },
          a.timeoutMs + 5000,
        );
      }),
    );
    let t0 = rs[0].t0;
    let t1 = rs[0].t1;
    for (const r of rs) {
      if (r.t0 < t0) t0 = r.t0;
      if (r.t1 > t1) t1 = r.t1;
    }
    const opened = rs.reduce((s, r) => s + r.opened, 0);
    if (opened !== a.count) throw new Error(`opened ${opened} of ${a.count} connections`);
    return { ms: Number(t1 - t0) / 1e6, retries: rs.reduce((s, r) => s + r.retries, 0) };
  }

  /**
   * @param {string} cmd
   * @param {unknown} [args]
   * @param {number} [timeoutMs]
   */
  gensCall(cmd, args, timeoutMs) {
    return Promise.all(this.gens.map((g) => g.call(cmd, args, timeoutMs)));
  }

  /** Waits (bounded) until the server counts `n` open connections. */
  async waitConns(/** @type {number} */ n, /** @type {number} */ timeoutMs) {
    const end = performance.now() + timeoutMs;
    let have = -1;
    for (;;) {
      have = await this.server.call("conns");
      if (have === n) return;
      if (performance.now() > end) throw new Error(`the server has ${have} connections, expected ${n}, after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * One boundary of a measured window: CPU of the server and the generators from /proc, the
   * server's event-loop utilization since the last boundary, then the generators' counters
   * (each worker resets its own at this call).
   */
  async mark() {
    const at = performance.now();
    const serverCpuMs = this.server.cpuMs();
    const genCpuMs = this.gens.reduce((s, g) => s + g.cpuMs(), 0);
    const [serverElu, ...gs] = await Promise.all([this.server.call("elu"), ...this.gens.map((g) => g.call("mark"))]);
    const hist = newHist();
    for (const g of gs) merge(hist, g.hist);
    return {
      at,
      serverCpuMs,
      genCpuMs,
      serverElu: /** @type {number | null} */ (serverElu),
      received: gs.reduce((s, g) => s + g.received, 0),
      sent: gs.reduce((s, g) => s + g.sent, 0),
      conns: gs.reduce((s, g) => s + g.conns, 0),
      hist,
      genElu: gs.flatMap((g) => g.elu),
      minPerConn: Math.min(...gs.map((g) => g.minPerConn)),
      maxPerConn: Math.max(...gs.map((g) => g.maxPerConn)),
      minLateMs: Math.min(...gs.map((g) => g.minLateMs)),
      errors: gs.reduce((s, g) => s + g.errors, 0),
      firstError: gs.find((g) => g.firstError)?.firstError ?? null,
    };
  }

  /** CPU of the server and generators so far (for the harness's background-load figure). */
  subprocessCpuMs() {
    let total = 0;
    for (const c of this.all) {
      try {
        if (!c.gone) this.cpuSeen.set(c, c.cpuMs());
      } catch {
        // already gone: keep the last reading
      }
      total += this.cpuSeen.get(c) ?? 0;
    }
    return total;
  }

  /** Stops every child (generators first, so the server sees its clients leave). */
  async close() {
    this.subprocessCpuMs();
    for (const g of this.gens) await g.stop();
    await this.server.stop();
  }
}

/**
 * Source addresses 127.0.0.2 … for the clients' localAddress: each has its own ports
 * (loadgen.js binds 22 768 client ports per address), so connections beyond one address's
 * ports fit; at least two, one per 10 000 connections.
 * @param {number} conns
 */
export function sourceAddresses(conns) {
  const n = Math.min(250, Math.max(2, Math.ceil(conns / 10_000)));
  return Array.from({ length: n }, (_, i) => `127.0.0.${i + 2}`);
}
