// @ts-check
/** Summaries across rounds and pass/fail against a target. */

/**
 * @param {number[]} xs
 * @returns {number}
 */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * @param {number[]} values
 * @param {import("./scenario.js").Target | undefined} target
 */
export function summarize(values, target) {
  if (values.length === 0) return { median: null, min: null, max: null, pass: null };
  const med = median(values);
  const pass = target === undefined ? null : target.op === ">=" ? med >= target.value : med <= target.value;
  return { median: med, min: Math.min(...values), max: Math.max(...values), pass };
}
