// @ts-check
/**
 * One build for the whole run. Others may rebuild dist/ while a run is under way (a full run
 * takes minutes); each measurement child imports the runtime afresh, so without a copy one
 * run could measure two builds. run.js copies dist/ once at the start into a temporary
 * directory (with a node_modules link, so `ws` and `pino` resolve as from the repo), points
 * every child at it through CORRAL_BENCH_DIST (bench/lib/corral.js), records the copy's
 * hash in the results, and removes it at the end.
 */
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from "node:fs";
import os from "node:os";
import path from "node:path";

/**
 * @param {string} root  the repository (holds dist/ and node_modules/)
 * @returns {{ index: string, sha256: string, builtAt: string, cleanup: () => void }}
 */
export function snapshotDist(root) {
  const dist = path.join(root, "dist");
  const dir = mkdtempSync(path.join(os.tmpdir(), "corral-bench-dist-"));
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  try {
    cpSync(dist, path.join(dir, "dist"), { recursive: true });
    if (existsSync(path.join(root, "node_modules"))) symlinkSync(path.join(root, "node_modules"), path.join(dir, "node_modules"), "dir");
    if (existsSync(path.join(root, "package.json"))) cpSync(path.join(root, "package.json"), path.join(dir, "package.json"));
    const hash = createHash("sha256");
    let newest = 0;
    /** @param {string} d */
    const walk = (d) => {
      for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith(".js")) {
          hash.update(path.relative(dir, p)).update("\0").update(readFileSync(p));
          newest = Math.max(newest, statSync(path.join(dist, path.relative(path.join(dir, "dist"), p))).mtimeMs);
        }
      }
    };
    walk(path.join(dir, "dist"));
    return { index: path.join(dir, "dist", "index.js"), sha256: hash.digest("hex"), builtAt: new Date(newest).toISOString(), cleanup };
  } catch (err) {
    cleanup();
    throw err;
  }
}
