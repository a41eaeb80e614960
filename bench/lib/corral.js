// @ts-check
/**
 * The runtime under test: the build in dist/ by default, or another build named by
 * CORRAL_DIST (a path to its index.js) to compare a patched runtime side by side, e.g.
 *   CORRAL_DIST=/tmp/patched/dist/index.js node --expose-gc bench/run.js --only throughput
 * run.js records which build was measured, and only a default build updates the docs. By
 * default run.js measures a copy of dist/ taken when it starts (bench/lib/dist.js).
 */
import path from "node:path";
import { pathToFileURL } from "node:url";

// CORRAL_BENCH_DIST: run.js's copy of dist/ for the run (bench/lib/dist.js); CORRAL_DIST wins.
const chosen = process.env.CORRAL_DIST ?? process.env.CORRAL_BENCH_DIST;
export const DIST_URL = chosen ? pathToFileURL(path.resolve(chosen)).href : new URL("../../dist/index.js", import.meta.url).href;

/** @type {typeof import("../../dist/index.js")} */
const corral = await import(DIST_URL);

export const { answer, call, exit, ok, processCount, processes, processInfo, self, send, sendAfter, spawn, stop, timerCount } = corral;
