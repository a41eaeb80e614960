// @ts-check
/**
 * The child side of runInChild: one job per process. Receives { module, fn, params } over
 * IPC, runs it, posts { type: "result", value, memoryUsage, cpuUsage } or { type: "error", ... } and
 * exits (process.exit also writes a --cpu-prof profile if one was asked for).
 */
if (typeof process.send !== "function" || typeof globalThis.gc !== "function") {
  console.error("child-entry.js is started by bench/lib/child.js (fork with IPC and --expose-gc)");
  process.exit(2);
}

// The harness is gone (killed, or it timed this child out): do not outlive it. Processes this
// child started (bench/ws/rig.js) exit in turn when their own IPC channel closes.
process.on("disconnect", () => process.exit(1));

process.once("message", async (/** @type {any} */ job) => {
  /** @type {any} */
  let reply;
  try {
    const mod = await import(job.module);
    if (typeof mod[job.fn] !== "function") throw new Error(`${job.module} has no export ${job.fn}`);
    const value = await mod[job.fn](job.params);
    reply = { type: "result", value, memoryUsage: process.memoryUsage(), cpuUsage: process.cpuUsage() };
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    reply = { type: "error", message: e.message, stack: e.stack };
  }
  /** @type {NonNullable<typeof process.send>} */ (process.send)(reply, undefined, {}, () => process.exit(reply.type === "result" ? 0 : 1));
});
