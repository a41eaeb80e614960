// @ts-check
/**
 * The processes of one cluster measurement, started and always stopped by the measurement
 * child (bench/cluster.js):
 *
 *   redis-server   its own, on a free 127.0.0.1 port, no persistence (--save "" --appendonly no),
 *                  so nothing of one measurement (keys, a slow fsync) reaches the next
 *   node A, B      bench/cluster/node.js, each a forked `node --expose-gc` with IPC, each a
 *                  corral node joined to that Redis
 *
 * CPU time of every one of them is read from /proc/<pid>/stat (user + system, all threads),
 * which is also what the harness needs as subprocessCpuMs (else it counts them as background
 * load). A node that loses the IPC channel exits by itself; a process 'exit' hook SIGKILLs
 * whatever is still alive if the measurement child itself goes down.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { IpcChild, profileArgs } from "../lib/ipc-child.js";
import { procCpuMs } from "../lib/proc.js";

const DIR = path.dirname(fileURLToPath(import.meta.url));
/** Keep at most this much of a process's output for error messages. */
const OUTPUT_CAP = 32 * 1024;
const REDIS_CANDIDATES = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"];

/** @type {Set<import("node:child_process").ChildProcess>} */
const live = new Set();
process.on("exit", () => {
  for (const c of live) c.kill("SIGKILL");
});

/**
 * Forks a node (bench/cluster/node.js) and waits for its ready message (the runtime
 * imported, no cluster yet).
 * @param {string} role  "a" or "b": its node name is `<role>@bench`
 */
async function startNode(role) {
  const { child } = await IpcChild.start(`node ${role}`, path.join(DIR, "node.js"), {
    execArgv: ["--expose-gc", ...profileArgs(role, "cluster")],
    // The runtime logs "node up" and the like at info: not what a benchmark wants to pay for.
    env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? "warn" },
  });
  return child;
}

/** @param {number} ms */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * The redis-server binary, or null when this machine has none (the scenario then reports
 * itself skipped). CORRAL_BENCH_REDIS_SERVER names another build to measure against (and,
 * set to a path that does not exist, shows the skipped report).
 */
export function redisServerBinary() {
  const chosen = process.env.CORRAL_BENCH_REDIS_SERVER;
  if (chosen !== undefined && chosen !== "") return existsSync(chosen) ? chosen : null;
  for (const c of REDIS_CANDIDATES) if (existsSync(c)) return c;
  const which = spawnSync("sh", ["-c", "command -v redis-server"], { encoding: "utf8" });
  const found = (which.stdout ?? "").trim();
  return which.status === 0 && found !== "" ? found : null;
}

/** A port nothing listens on right now (the kernel's pick, released again). */
function freePort() {
  return /** @type {Promise<number>} */ (
    new Promise((resolve, reject) => {
      const server = createServer();
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        const addr = server.address();
        const port = typeof addr === "object" && addr !== null ? addr.port : 0;
        server.close(() => resolve(port));
      });
    })
  );
}

/**
 * One Redis command over a fresh connection, in raw RESP, so the coordinator needs no Redis
 * client of its own (and its connection never shows in the nodes' traffic). Answers a simple
 * string, an error or a bulk string; null on a timeout or a refused connection.
 * @param {number} port
 * @param {string[]} args
 * @param {number} [ms]
 * @returns {Promise<string | null>}
 */
export function redisCommand(port, args, ms = 2000) {
  return new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    let buf = Buffer.alloc(0);
    /** @param {string | null} v */
    const done = (v) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(null), ms);
    socket.once("error", () => done(null));
    socket.once("connect", () => {
      socket.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join(""));
    });
    socket.on("data", (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      const eol = buf.indexOf("\r\n");
      if (eol < 0) return;
      const head = buf.toString("utf8", 0, eol);
      if (head[0] === "+" || head[0] === "-" || head[0] === ":") return done(head);
      if (head[0] === "$") {
        const len = Number(head.slice(1));
        if (len < 0) return done("");
        if (buf.length >= eol + 2 + len) done(buf.toString("utf8", eol + 2, eol + 2 + len));
      } else done(head);
    });
  });
}

/**
 * `INFO <section>` as numbers: field → value (fields that are not numbers are left out).
 * @param {number} port
 * @param {string} section
 */
export async function redisInfo(port, section) {
  const text = await redisCommand(port, ["INFO", section]);
  if (text === null) throw new Error(`redis-server on port ${port}: INFO ${section} got no answer`);
  /** @type {Record<string, number>} */
  const out = {};
  for (const line of text.split("\r\n")) {
    const i = line.indexOf(":");
    if (i <= 0 || line.startsWith("#")) continue;
    const key = line.slice(0, i);
    const value = line.slice(i + 1);
    // commandstats lines: cmdstat_publish:calls=12,usec=34,... → cmdstat_publish.calls etc.
    if (value.includes("=")) {
      for (const kv of value.split(",")) {
        const [k, v] = kv.split("=");
        if (k !== undefined && v !== undefined && v !== "" && Number.isFinite(Number(v))) out[`${key}.${k}`] = Number(v);
      }
    } else if (value !== "" && Number.isFinite(Number(value))) out[key] = Number(value);
  }
  return out;
}

/**
 * @typedef {object} Redis
 * @property {string} url
 * @property {number} port
 * @property {number} pid
 * @property {() => number} cpuMs     CPU so far (the last reading once it has exited)
 * @property {() => Promise<void>} stop
 */

/**
 * Starts redis-server on a free loopback port and waits (bounded) until it answers PING. A
 * free port can be taken between the check and the bind, so a few ports are tried.
 * @param {string} bin
 * @returns {Promise<Redis>}
 */
export async function startRedis(bin) {
  /** @type {unknown} */
  let lastErr = null;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning"];
    const proc = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    live.add(proc);
    let output = "";
    /** @param {Buffer} chunk */
    const keep = (chunk) => {
      if (output.length < OUTPUT_CAP) output += chunk.toString("utf8");
    };
    proc.stdout?.on("data", keep);
    proc.stderr?.on("data", keep);
    const exited = new Promise((resolve) => proc.once("exit", resolve));
    proc.once("exit", () => live.delete(proc));
    const deadline = performance.now() + 10_000;
    let up = false;
    while (performance.now() < deadline && proc.exitCode === null && proc.signalCode === null) {
      if ((await redisCommand(port, ["PING"], 300)) === "+PONG") {
        up = true;
        break;
      }
      await sleep(20);
    }
    if (!up) {
      proc.kill("SIGKILL");
      await exited;
      lastErr = new Error(`redis-server on port ${port} did not answer PING within 10 s (exit ${proc.exitCode ?? proc.signalCode}):\n${output.slice(-2000)}`);
      continue;
    }
    const pid = /** @type {number} */ (proc.pid);
    let lastCpu = 0;
    const cpuMs = () => {
      if (proc.exitCode === null && proc.signalCode === null) lastCpu = procCpuMs(pid);
      return lastCpu;
    };
    return {
      url: `redis://127.0.0.1:${port}`,
      port,
      pid,
      cpuMs,
      async stop() {
        if (proc.exitCode !== null || proc.signalCode !== null) return;
        cpuMs();
        proc.kill("SIGTERM");
        await Promise.race([exited, sleep(5000)]);
        if (proc.exitCode === null && proc.signalCode === null) {
          proc.kill("SIGKILL");
          await Promise.race([exited, sleep(2000)]);
        }
      },
    };
  }
  throw lastErr instanceof Error ? lastErr : new Error("redis-server did not start");
}

/**
 * @typedef {object} Cluster
 * @property {Redis} redis
 * @property {IpcChild} a
 * @property {IpcChild} b
 * @property {() => number} subprocessCpuMs   CPU of Redis and both nodes so far
 */

/**
 * Redis plus two nodes that see each other; `body` runs with them; everything is stopped
 * afterwards, also when `body` throws. The CPU all three used is added to the result as
 * subprocessCpuMs.
 * @template {{ figures: Record<string, number>, details?: Record<string, unknown>, warnings?: string[] }} R
 * @param {string} bin   redis-server
 * @param {(c: Cluster) => Promise<R>} body
 * @returns {Promise<R & { subprocessCpuMs: number }>}
 */
export async function withCluster(bin, body) {
  const redis = await startRedis(bin);
  /** @type {IpcChild[]} */
  const nodes = [];
  const subprocessCpuMs = () => redis.cpuMs() + nodes.reduce((s, n) => s + n.cpuMs(), 0);
  /** @type {R} */
  let r;
  try {
    for (const role of ["a", "b"]) nodes.push(await startNode(role));
    const [a, b] = /** @type {[IpcChild, IpcChild]} */ (nodes);
    // One after the other: B's startCluster then finds A's liveness key and waits for A's
    // group members (WELCOME), so both are fully joined when it returns.
    await a.call("start", { redis: redis.url, node: "a@bench" }, 20_000);
    await b.call("start", { redis: redis.url, node: "b@bench" }, 20_000);
    await Promise.all([a.call("waitPeers", { n: 1, timeoutMs: 10_000 }, 15_000), b.call("waitPeers", { n: 1, timeoutMs: 10_000 }, 15_000)]);
    r = await body({ redis, a, b, subprocessCpuMs });
  } finally {
    // Nodes first (they say BYE through Redis), then Redis; each keeps its last CPU reading.
    await Promise.all(nodes.map((n) => n.stop(5000)));
    await redis.stop();
  }
  return { ...r, subprocessCpuMs: subprocessCpuMs() };
}
