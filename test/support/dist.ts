/**
 * What tests that run the built package in child processes share: a build of dist/ when
 * src/ or app/ is newer (one at a time across parallel test files), a free port, bounded waits.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, rmdirSync, statSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
/** The library's entry and the app's: both must be newer than every source. */
const BUILT = [path.join(ROOT, "dist/index.js"), path.join(ROOT, "dist/app/cli.js")];
/** The library first: the app imports it as "corral", which resolves to dist/. */
const BUILDS = ["tsconfig.build.json", "tsconfig.app.json"];

function newest(dir: string): number {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    latest = Math.max(latest, statSync(path.join(entry.parentPath, entry.name)).mtimeMs);
  }
  return latest;
}

function mtime(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

let builtOnce: Promise<void> | undefined;

/**
 * Rebuilds dist/ (the library, then the app, as `npm run build`) when anything under src/,
 * app/ or the tsconfigs is newer. Test files run in parallel: a lock directory keeps it to
 * one build. Once per test file, so the test process and its children run the same code for
 * the whole file.
 */
export function ensureBuilt(): Promise<void> {
  builtOnce ??= build();
  return builtOnce;
}

async function build(): Promise<void> {
  // Outside the checkout: one lock per checkout path.
  const lock = path.join(tmpdir(), `corral-build-${createHash("sha1").update(ROOT).digest("hex").slice(0, 12)}.lock`);
  const deadline = Date.now() + 150_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // Another file is building; a lock older than the deadline is stale.
      if (Date.now() - mtime(lock) > 150_000) rmdirSync(lock);
      if (Date.now() > deadline) throw new Error("timed out waiting for another test file to build dist/");
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  try {
    const sources = Math.max(newest(path.join(ROOT, "src")), newest(path.join(ROOT, "app")), ...["tsconfig.json", ...BUILDS].map((f) => mtime(path.join(ROOT, f))));
    if (Math.min(...BUILT.map(mtime)) >= sources) return;
    const tsc = path.join(ROOT, "node_modules/typescript/bin/tsc");
    for (const config of BUILDS) {
      const result = spawnSync(process.execPath, [tsc, "-p", config], { cwd: ROOT, encoding: "utf8", timeout: 120_000 });
      if (result.status !== 0) throw new Error(`building dist/ (${config}) failed (exit ${result.status ?? result.signal}):\n${result.stdout}${result.stderr}`);
    }
  } finally {
    rmdirSync(lock);
  }
}

/** A port nothing listens on right now (the kernel's pick, released again). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Rejects after ms with a message naming what was awaited. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls pred until it returns a value other than undefined/false; bounded. `what` may be computed when the wait fails. */
export async function until<T>(pred: () => T | false | undefined | Promise<T | false | undefined>, ms: number, what: string | (() => string), every = 10): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    const v = await pred();
    if (v !== false && v !== undefined) return v;
    last = v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${typeof what === "function" ? what() : what} (last: ${String(last)})`);
    await sleep(every);
  }
}
