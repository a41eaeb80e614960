// @ts-check
/**
 * Helpers for code running inside a measurement child: full GCs, memory readings, bounded
 * waits and correctness checks. Every wait here has a deadline and throws past it, so a
 * broken runtime makes a measurement fail instead of hang or report a number.
 */
import { performance } from "node:perf_hooks";

/** Yields one event-loop turn (a setImmediate). */
export function turn() {
  return new Promise((resolve) => setImmediate(resolve));
}

/** @returns {() => void} */
function gcFn() {
  const gc = globalThis.gc;
  if (typeof gc !== "function") throw new Error("run with node --expose-gc");
  return /** @type {() => void} */ (gc);
}

/**
 * Full GCs with event-loop turns between them, so ArrayBuffer backing stores freed by the
 * sweeper and weak callbacks are reflected in process.memoryUsage() afterwards.
 * @param {number} [times]
 */
export async function settle(times = 4) {
  const gc = gcFn();
  for (let i = 0; i < times; i++) {
    gc();
    await turn();
  }
}

/**
 * Full GCs without yielding (when nothing else may run in between).
 * @param {number} [times]
 */
export function gcNow(times = 4) {
  const gc = gcFn();
  for (let i = 0; i < times; i++) gc();
}

/**
 * @typedef {object} Mem
 * @property {number} rss
 * @property {number} heapUsed
 * @property {number} heapTotal
 * @property {number} external      includes arrayBuffers (Node docs)
 * @property {number} arrayBuffers
 */

/** @returns {Mem} */
export function mem() {
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers };
}

/**
 * after - before, field by field.
 * @param {Mem} after
 * @param {Mem} before
 * @returns {Mem}
 */
export function memDelta(after, before) {
  return {
    rss: after.rss - before.rss,
    heapUsed: after.heapUsed - before.heapUsed,
    heapTotal: after.heapTotal - before.heapTotal,
    external: after.external - before.external,
    arrayBuffers: after.arrayBuffers - before.arrayBuffers,
  };
}

/**
 * Polls `pred` once per event-loop turn until it holds; throws after timeoutMs.
 * @param {() => boolean} pred
 * @param {number} timeoutMs
 * @param {string} what  for the error message
 */
export async function waitFor(pred, timeoutMs, what) {
  const end = performance.now() + timeoutMs;
  while (!pred()) {
    if (performance.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await turn();
  }
}

/**
 * A promise with its resolve/reject, and a deadline that rejects it (the timer is cleared
 * once it settles).
 * @template T
 * @param {number} timeoutMs
 * @param {string} what
 * @returns {{ promise: Promise<T>, resolve: (v: T) => void, reject: (e: Error) => void }}
 */
export function deferred(timeoutMs, what) {
  /** @type {(v: T) => void} */
  let resolve = () => {};
  /** @type {(e: Error) => void} */
  let reject = () => {};
  /** @type {Promise<T>} */
  const promise = new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
    resolve = (v) => {
      clearTimeout(timer);
      res(v);
    };
    reject = (e) => {
      clearTimeout(timer);
      rej(e);
    };
  });
  return { promise, resolve, reject };
}

/**
 * Throws when a correctness check fails, so a broken run reports an error, not a number.
 * @param {unknown} cond
 * @param {string} what
 * @returns {asserts cond}
 */
export function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

/**
 * Deterministic PRNG (mulberry32) so every round builds the same inputs.
 * @param {number} seed
 * @returns {() => number} uniform in [0, 1)
 */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
