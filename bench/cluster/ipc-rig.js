// @ts-check
/**
 * The processes of one cluster measurement over node:cluster IPC, started and always stopped
 * by the measurement child (bench/cluster.js), which is itself the primary:
 *
 *   this process   the node:cluster primary: startClusterPrimary() of the runtime under test
 *                  introduces the workers, which then connect to each other (its CPU is this process's own)
 *   node A, B      bench/cluster/node.js as its cluster workers (`--expose-gc`), each a corral
 *                  node joined with startCluster({ ipc: true }), driven over the same channel
 *
 * Nothing else runs: no Redis. Node CPU comes from /proc/<pid>/stat as for the Redis rig.
 */
import cluster from "node:cluster";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { DIST_URL } from "../lib/corral.js";
import { IpcChild, profileArgs } from "../lib/ipc-child.js";

const DIR = path.dirname(fileURLToPath(import.meta.url));

/**
 * @typedef {object} IpcCluster
 * @property {IpcChild} a
 * @property {IpcChild} b
 * @property {() => number} primaryCpuMs  this process's CPU so far (user + system, µs resolution)
 */

/** @returns {number} */
function ownCpuMs() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * Two worker nodes that see each other through this process; `body` runs with them; both are
 * stopped afterwards, also when `body` throws. Their CPU is added to the result as
 * subprocessCpuMs (the primary's is this process's own).
 * @template {{ figures: Record<string, number>, details?: Record<string, unknown>, warnings?: string[] }} R
 * @param {(c: IpcCluster) => Promise<R>} body
 * @returns {Promise<R & { subprocessCpuMs: number }>}
 */
export async function withIpcCluster(body) {
  /** @type {typeof import("../../dist/index.js")} */
  const corral = await import(DIST_URL);
  // Before the first fork: the workers' channels then carry v8-serialized data.
  corral.startClusterPrimary();
  /** @type {IpcChild[]} */
  const nodes = [];
  const subprocessCpuMs = () => nodes.reduce((s, n) => s + n.cpuMs(), 0);
  /** @type {R} */
  let r;
  try {
    for (const role of ["a", "b"]) {
      cluster.setupPrimary({ exec: path.join(DIR, "node.js"), args: [], execArgv: ["--expose-gc", ...profileArgs(role, "cluster-ipc")], silent: true });
      // The runtime logs "node up" and the like at info: not what a benchmark wants to pay for.
      const worker = cluster.fork({ LOG_LEVEL: process.env.LOG_LEVEL ?? "warn" });
      nodes.push((await IpcChild.adopt(`node ${role}`, worker.process)).child);
    }
    const [a, b] = /** @type {[IpcChild, IpcChild]} */ (nodes);
    // One after the other: B's startCluster then waits for A's group members.
    await a.call("start", { node: "a@bench" }, 20_000);
    await b.call("start", { node: "b@bench" }, 20_000);
    await Promise.all([a.call("waitPeers", { n: 1, timeoutMs: 10_000 }, 15_000), b.call("waitPeers", { n: 1, timeoutMs: 10_000 }, 15_000)]);
    r = await body({ a, b, primaryCpuMs: ownCpuMs });
  } finally {
    await Promise.all(nodes.map((n) => n.stop(5000)));
  }
  return { ...r, subprocessCpuMs: subprocessCpuMs() };
}
