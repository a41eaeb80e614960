/**
 * Measuring helpers the reliability and other load tests share: a full GC, the settled heap,
 * open handles, percentiles, a seeded PRNG, a bounded pool of async tasks.
 */
import { runInNewContext } from "node:vm";
import { setFlagsFromString } from "node:v8";

/* ---------------------------------------------------------------- shared measuring helpers */

let gcFn: (() => void) | undefined;

/**
 * A full garbage collection. vitest does not pass --expose-gc, so the flag is set at run
 * time and `gc` fetched from a fresh context (V8 installs it there once the flag is on).
 */
export function fullGc(): void {
  if (gcFn === undefined) {
    const g = (globalThis as { gc?: () => void }).gc;
    if (typeof g === "function") gcFn = g;
    else {
      setFlagsFromString("--expose-gc");
      gcFn = runInNewContext("gc") as () => void;
    }
  }
  gcFn();
}

/** Heap in use after a few full collections (finalizers and weak callbacks get their turn). */
export async function settledHeap(): Promise<number> {
  for (let i = 0; i < 4; i++) {
    fullGc();
    await new Promise((r) => setTimeout(r, 20));
  }
  return process.memoryUsage().heapUsed;
}

/** Open libuv handles of one kind in this process: "TCPSocketWrap" (sockets), "TCPServerWrap" (listeners), "Timeout". */
export function handles(kind: string): number {
  return process.getActiveResourcesInfo().filter((k) => k === kind).length;
}

/** Median and other percentiles of a list of numbers (sorted copy). */
export function percentiles(xs: readonly number[]): { n: number; p50: number; p90: number; p99: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
  return { n: s.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: s[s.length - 1] ?? NaN };
}

/** A small seeded PRNG (mulberry32): the same seed gives the same case, so a failure can be replayed. */
export function rng(seed: number): { next(): number; int(lo: number, hi: number): number; pick<T>(xs: readonly T[]): T; chance(p: number): boolean } {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: (xs) => xs[Math.floor(next() * xs.length)]!,
    chance: (p) => next() < p,
  };
}

/** Runs tasks with at most `limit` in flight; resolves when all are done (each task is bounded by its caller). */
export async function pool<T>(items: readonly T[], limit: number, task: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      await task(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
