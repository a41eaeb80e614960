/**
 * How big the reliability cases are. `npm test` runs the reduced sizes (the whole
 * test/reliability suite in about a minute on 2 cores); `CORRAL_HEAVY=1` runs the full ones:
 *
 *   CORRAL_HEAVY=1 npx vitest run test/reliability
 *
 * Every loop in these tests is bounded by these counts and by the per-test timeouts below.
 */

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
