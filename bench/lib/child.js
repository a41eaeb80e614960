// @ts-check
/**
 * Runs one measurement in a fresh `node --expose-gc` process, so heaps, JIT state and the
 * runtime's module-level tables of one measurement never leak into the next.
 *
 * The child is `child-entry.js`: it imports a module, calls one of its exports with the
 * params sent over IPC and posts back what it returns. A hard timeout kills the child.
 * Scenarios that need several processes (bench/websocket.js: a server and load generators)
 * start them from inside their measurement (bench/ws/rig.js) and report their CPU time as
 * `subprocessCpuMs`, so the background-load figure does not count it.
 */
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { busyCores, cpuSnapshot } from "./load.js";

const ENTRY = fileURLToPath(new URL("./child-entry.js", import.meta.url));
/** Keep at most this much of a child's stdout/stderr for error reports. */
const OUTPUT_CAP = 64 * 1024;

/**
 * @typedef {object} ChildJob
 * @property {string} module   file URL of the module that exports `fn`
 * @property {string} fn       export to call: `(params) => result | Promise<result>`
 * @property {unknown} params  structured-cloneable
 * @property {number} timeoutMs the child is killed (SIGKILL) past this
 * @property {string[]} [execArgv] extra node flags (e.g. --cpu-prof)
 * @property {boolean} [echo]  pass the child's stderr through as it comes
 */

/**
 * @typedef {object} ChildResult
 * @property {any} value                        what `fn` returned
 * @property {NodeJS.MemoryUsage} memoryUsage   the child's process.memoryUsage() at the end
 * @property {number} wallMs                    fork to exit, parent clock
 * @property {number} cpuMs                     CPU time the child used (user + system)
 * @property {number} subprocessCpuMs           CPU time of processes the child started and reported (value.subprocessCpuMs)
 * @property {number} backgroundCores           cores busy with other work meanwhile
 */

/**
 * @param {ChildJob} job
 * @returns {Promise<ChildResult>}
 */
export function runInChild(job) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const cpuBefore = cpuSnapshot();
    const child = fork(ENTRY, [], {
      execArgv: ["--expose-gc", ...(job.execArgv ?? [])],
      stdio: ["ignore", "pipe", "pipe", "ipc"],
      serialization: "advanced",
    });
    let output = "";
    /** @param {Buffer} chunk */
    const keep = (chunk) => {
      if (output.length < OUTPUT_CAP) output += chunk.toString("utf8").slice(0, OUTPUT_CAP - output.length);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", (chunk) => {
      keep(chunk);
      if (job.echo) process.stderr.write(chunk);
    });
    /** @type {{ type: string, value?: unknown, memoryUsage?: NodeJS.MemoryUsage, cpuUsage?: NodeJS.CpuUsage, message?: string, stack?: string } | null} */
    let reply = null;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, job.timeoutMs);
    child.on("message", (m) => {
      reply = /** @type {typeof reply} */ (m);
    });
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      const wallMs = performance.now() - started;
      const r = /** @type {typeof reply} */ (reply);
      if (r?.type === "result") {
        const cpu = r.cpuUsage ?? { user: 0, system: 0 };
        const cpuMs = (cpu.user + cpu.system) / 1000;
        // A measurement that starts processes of its own (a server, load generators) says how
        // much CPU they used: that is the measurement's work, not background load.
        const sub = /** @type {{ subprocessCpuMs?: unknown } | null} */ (r.value)?.subprocessCpuMs;
        const subprocessCpuMs = typeof sub === "number" && Number.isFinite(sub) ? sub : 0;
        resolve({
          value: r.value,
          memoryUsage: /** @type {NodeJS.MemoryUsage} */ (r.memoryUsage),
          wallMs,
          cpuMs,
          subprocessCpuMs,
          backgroundCores: busyCores(cpuBefore, cpuSnapshot(), cpuMs + subprocessCpuMs),
        });
        return;
      }
      const why = timedOut
        ? `timed out after ${job.timeoutMs} ms`
        : r?.type === "error"
          ? `failed: ${r.stack ?? r.message}`
          : `exited (code ${code}, signal ${signal}) without a result`;
      const tail = output.trim() ? `\n--- child output ---\n${output.trim()}` : "";
      reject(new Error(`${job.fn}: ${why}${tail}`));
    });
    child.send({ module: job.module, fn: job.fn, params: job.params });
  });
}
