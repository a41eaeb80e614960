/**
 * How big the reliability cases are. `npm test` runs the reduced sizes (the whole
 * test/reliability suite in about a minute on 2 cores); `CORRAL_HEAVY=1` runs the full ones:
 *
 *   CORRAL_HEAVY=1 npx vitest run test/reliability
 *
 * Every loop in these tests is bounded by these counts and by the per-test timeouts below.
 * A few measuring helpers the cases share live at the end.
 */
import { runInNewContext } from "node:vm";
import { setFlagsFromString } from "node:v8";

export const HEAVY = process.env["CORRAL_HEAVY"] === "1";

const pick = <T>(reduced: T, full: T): T => (HEAVY ? full : reduced);

export const SCALE = {
  /** handshake-abuse: each malformed handshake, sent this many times (concurrently). */
  handshakeRepeats: pick(5, 100),
  /** handshake-abuse: slowloris sockets trickling one header byte per second. */
  slowloris: pick(8, 200),
  /** fuzz: seeds per stream kind (valid-differential, mutated, garbage). */
  fuzzValid: pick(60, 1500),
  fuzzMutated: pick(120, 4000),
  fuzzGarbage: pick(40, 1000),
  /** fuzz: connections fuzzed at the same time. */
  fuzzConcurrency: pick(8, 16),
  /** overload: clients that stop reading while their handler pushes. */
  slowConsumers: pick(4, 40),
  /** overload: well-behaved clients echoing meanwhile, and how long the pushing goes on. */
  bystanders: pick(4, 40),
  slowWindowMs: pick(1000, 2000),
  /** overload: flood windows (flooding, then paused), each measureWindowMs long. */
  floodWindows: pick(3, 10),
  floodWindowMs: pick(300, 1500),
  /** crash-isolation: connections in the crash storm (each crashes once), and healthy ones beside them. */
  crashStorm: pick(300, 3000),
  crashHealthy: pick(20, 200),
  /** churn: connect/disconnect cycles (half end abruptly) and how many run at once. */
  churnCycles: pick(2000, 50_000),
  churnConcurrency: pick(20, 50),
  /** shutdown-load: connections open (and busy) when stopListener is called. */
  shutdownConnections: pick(120, 1500),
  /** storm: maxConnections, and connection attempts fired at once against it. */
  stormMax: pick(40, 400),
  stormAttempts: pick(400, 6000),
  /** deflate-fairness: how long 40 compressed clients send inflation bombs while the canary is timed. */
  deflateAttackSeconds: pick(6, 20),
} as const;

/** A per-test timeout: the reduced or the full one. */
export const timeout = (reducedMs: number, fullMs: number): number => pick(reducedMs, fullMs);

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
