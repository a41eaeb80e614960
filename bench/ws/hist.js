// @ts-check
/**
 * A log-linear histogram of non-negative values (µs for latencies, ms·1000 for lateness):
 * 1-unit buckets below 100, then buckets 1 % wide up to 1e9. Fixed size, so worker threads
 * record into their own Uint32Array and the coordinator adds them up; a percentile comes
 * back as its bucket's upper bound (at most 1 % high).
 */

const LINEAR = 100;
const STEP = Math.log(1.01);
/** Buckets: 100 linear, then log-spaced up to 1e9 (values above land in the last). */
export const BUCKETS = LINEAR + Math.ceil(Math.log(1e9 / LINEAR) / STEP) + 1;

/** @returns {Uint32Array} */
export function newHist() {
  return new Uint32Array(BUCKETS);
}

/**
 * @param {Uint32Array} h
 * @param {number} v
 */
export function record(h, v) {
  let i;
  if (!(v > 0)) i = 0;
  else if (v < LINEAR) i = Math.floor(v);
  else i = Math.min(BUCKETS - 1, LINEAR + Math.floor(Math.log(v / LINEAR) / STEP));
  h[i]++;
}

/**
 * Upper bound of bucket i.
 * @param {number} i
 */
function upper(i) {
  return i < LINEAR ? i + 1 : LINEAR * Math.exp((i - LINEAR + 1) * STEP);
}

/**
 * @param {Uint32Array} into
 * @param {Uint32Array} from
 */
export function merge(into, from) {
  for (let i = 0; i < into.length; i++) into[i] += from[i];
  return into;
}

/** @param {Uint32Array} h */
export function count(h) {
  let n = 0;
  for (let i = 0; i < h.length; i++) n += h[i];
  return n;
}

/**
 * The value at quantile q (0..1), NaN for an empty histogram.
 * @param {Uint32Array} h
 * @param {number} q
 */
export function quantile(h, q) {
  const n = count(h);
  if (n === 0) return NaN;
  const rank = Math.max(1, Math.ceil(q * n));
  let seen = 0;
  for (let i = 0; i < h.length; i++) {
    seen += h[i];
    if (seen >= rank) return upper(i);
  }
  return upper(h.length - 1);
}

/**
 * Largest recorded value (its bucket's upper bound).
 * @param {Uint32Array} h
 */
export function max(h) {
  for (let i = h.length - 1; i >= 0; i--) if (h[i] > 0) return upper(i);
  return NaN;
}

/**
 * Share of the recorded values above v (bucket resolution).
 * @param {Uint32Array} h
 * @param {number} v
 */
export function fractionAbove(h, v) {
  const n = count(h);
  if (n === 0) return NaN;
  let above = 0;
  for (let i = h.length - 1; i >= 0 && upper(i) > v; i--) above += h[i];
  return above / n;
}
