// @ts-check
/**
 * The runtime under test: the build in dist/ by default, or another build named by
 * CORRAL_DIST (a path to its index.js) to compare a patched runtime side by side, e.g.
 *   CORRAL_DIST=/tmp/patched/dist/index.js node --expose-gc bench/run.js --only throughput
 * run.js records which build was measured, and only a default build updates the docs.
 */
import path from "node:path";
import { pathToFileURL } from "node:url";

export const DIST_URL = process.env.CORRAL_DIST
  ? pathToFileURL(path.resolve(process.env.CORRAL_DIST)).href
  : new URL("../../dist/index.js", import.meta.url).href;

/** @type {typeof import("../../dist/index.js")} */
const corral = await import(DIST_URL);

export const { exit, ok, processCount, processes, processInfo, self, send, sendAfter, spawn, stop, timerCount } = corral;
