#!/usr/bin/env node
// @ts-check
/**
 * Router micro-benchmark: `npm run build && node bench/router.js`.
 *
 * Median nanoseconds per matchRoute with 10, 1,000 and 10,000 routes, for a hit on the last
 * route listed (the worst case for a linear scan), a hit in the middle, a hit on a route with
 * an "[...]" rest, and a miss (404). The point: the figures stay flat as routes grow.
 *
 * For contrast, "linear" is Cowboy's strategy, trying routes one by one in order (each route
 * compiled alone, then matched in turn); it grows with the number of routes.
 *
 * Bounded: every measurement is a fixed number of batches of a fixed number of matches.
 */
import { compileRoutes } from "../dist/index.js";
// matchRoute is what the listener calls; it is not part of the package root's exports.
import { matchRoute } from "../dist/server/router.js";

const SIZES = [10, 1_000, 10_000];
const BATCHES = 15;
const PER_BATCH = 20_000;
/** The linear baseline does this many route tests per batch in all (matches × routes). */
const LINEAR_BUDGET = 500_000;
const LINEAR_BATCHES = 5;

const handler = { init: () => undefined };

/** N routes of a typical API's shapes: literals, bindings, optional parts, a rest. */
function routes(n) {
  const paths = [];
  for (let i = 0; i < n; i++) {
    switch (i % 4) {
      case 0: paths.push([`/api/v1/res${i}/:id`, handler]); break;
      case 1: paths.push([`/api/v1/res${i}/:id/items/[:item]`, handler]); break;
      case 2: paths.push({ path: `/api/v2/res${i}/:id`, handler, constraints: { id: "int" } }); break;
      default: paths.push([`/static${i}/[...]`, handler]); break;
    }
  }
  return paths;
}

function targets(n) {
  const last = n - 1;
  const mid = Math.floor(n / 2) - (Math.floor(n / 2) % 4);
  return {
    last: pathFor(last),
    middle: pathFor(mid),
    rest: `/static${lastStatic(n)}/css/site/main.css`,
    miss: "/api/v3/nothing/here",
  };
}

function lastStatic(n) {
  let i = n - 1;
  while (i % 4 !== 3) i--;
  return i;
}

function pathFor(i) {
  switch (i % 4) {
    case 0: return `/api/v1/res${i}/42`;
    case 1: return `/api/v1/res${i}/42/items/7`;
    case 2: return `/api/v2/res${i}/42`;
    default: return `/static${i}/a/b.css`;
  }
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

let sink = 0;

function measure(fn, batches, perBatch) {
  for (let i = 0; i < Math.min(perBatch, 2_000); i++) sink ^= fn() ? 1 : 0; // warm-up
  const samples = [];
  for (let b = 0; b < batches; b++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < perBatch; i++) sink ^= fn() ? 1 : 0;
    samples.push(Number(process.hrtime.bigint() - t0) / perBatch);
  }
  return median(samples);
}

const rows = [];
for (const n of SIZES) {
  const paths = routes(n);
  const c0 = process.hrtime.bigint();
  const dispatch = compileRoutes([{ host: "_", paths }]);
  const compileMs = Number(process.hrtime.bigint() - c0) / 1e6;
  const t = targets(n);
  for (const [what, path] of Object.entries(t)) {
    const m = matchRoute(dispatch, "example.com", path);
    const expectStatus = what === "miss" ? 404 : undefined;
    if (("status" in m ? m.status : undefined) !== expectStatus) throw new Error(`bench setup: ${path} gave ${JSON.stringify(m)}`);
  }
  const row = { routes: n, "compile ms": compileMs.toFixed(1) };
  for (const [what, path] of Object.entries(t)) {
    row[`${what} ns`] = Math.round(measure(() => "handler" in matchRoute(dispatch, "example.com", path), BATCHES, PER_BATCH));
  }
  // Cowboy's linear scan, for contrast: one compiled route at a time, in order.
  const singles = paths.map((p) => compileRoutes([{ host: "_", paths: [p] }]));
  const linear = () => {
    for (const s of singles) if ("handler" in matchRoute(s, "example.com", t.last)) return true;
    return false;
  };
  row["linear last ns"] = Math.round(measure(linear, LINEAR_BATCHES, Math.max(5, Math.floor(LINEAR_BUDGET / n / LINEAR_BATCHES))));
  rows.push(row);
}

console.log(`node ${process.version}, median of ${BATCHES} batches × ${PER_BATCH} matches (linear: ${LINEAR_BATCHES} batches)`);
console.table(rows);
if (sink === 2) console.log(""); // keep the results observable
