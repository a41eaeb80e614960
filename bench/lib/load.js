// @ts-check
/**
 * Background CPU load: how busy the machine was with work other than the measurement.
 * The numbers of a 2-core box shared with test runs are only as good as this, so every
 * measurement records it, and run.js waits for a quiet moment before starting a child.
 * Portable (os.cpus() times, in ms), so it works where /proc does not.
 */
import os from "node:os";

/** @returns {{ busyMs: number, at: number }} CPU time spent busy by all cores, and when read */
export function cpuSnapshot() {
  let busy = 0;
  for (const c of os.cpus()) busy += c.times.user + c.times.nice + c.times.sys + c.times.irq;
  return { busyMs: busy, at: performance.now() };
}

/**
 * Cores kept busy between two snapshots, minus `ownCpuMs` of CPU the measurement itself used.
 * @param {{ busyMs: number, at: number }} a
 * @param {{ busyMs: number, at: number }} b
 * @param {number} [ownCpuMs]
 */
export function busyCores(a, b, ownCpuMs = 0) {
  const wall = b.at - a.at;
  if (wall <= 0) return 0;
  return Math.max(0, (b.busyMs - a.busyMs - ownCpuMs) / wall);
}

/**
 * Waits (bounded) until the machine is quiet: background load below `maxCores` over one
 * sample window. Returns the last sample's load, and how long it waited.
 * @param {{ maxCores: number, sampleMs: number, maxWaitMs: number }} o
 */
export async function waitQuiet(o) {
  const start = performance.now();
  for (;;) {
    const a = cpuSnapshot();
    await new Promise((r) => setTimeout(r, o.sampleMs));
    const load = busyCores(a, cpuSnapshot());
    const waited = performance.now() - start;
    if (load <= o.maxCores || waited >= o.maxWaitMs) return { load, waitedMs: waited };
  }
}
