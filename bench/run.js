#!/usr/bin/env node
// @ts-check
/**
 * The benchmark harness: `npm run bench` (full), `node --expose-gc bench/run.js --quick`
 * (CI smoke, one round, under a minute).
 *
 *   --quick             1 round and smaller N where a figure allows it
 *   --large             also the measurements that need a big machine (50 000 WebSocket connections)
 *   --only <names>      comma-separated scenario names, measurement ids or measurement groups
 *                       (e.g. runtime, timers, websocket, echo, idle, hibernate, push, app-to-pid,
 *                       sessions, session-push, session-resume, session-memory)
 *   --rounds <n>        override the number of rounds (default: the scenario's, else 5; 1 with --quick)
 *   --cpu-prof [dir]    run every child under --cpu-prof, profiles into dir
 *                       (default: $TMPDIR/corral-cpu-prof); summarize with bench/lib/profile.js
 *   --retries <n>       redo a measurement up to n times when other work loaded the CPU
 *                       during it (default 2; 0 to keep every first attempt)
 *   --strict            exit 1 when a figure misses its target (errors always exit 1)
 *   --out <file>        results file (default bench/results/<YYYY-MM-DD>[-quick|-partial].json)
 *
 * A full run (no --quick, no --only) writes bench/results/<date>.json and regenerates
 * docs/benchmarks.md from it; a quick, partial, profiled or CORRAL_DIST run (another build of
 * the runtime, see bench/lib/corral.js) writes its own results file and leaves the docs
 * alone, so the docs always show one complete run of dist/. The docs' chart (an SVG of the
 * corral/raw ratios, bench/lib/chart.js) goes to docs/ with them, else next to the results file.
 *
 * Each measurement of each scenario runs in a fresh `node --expose-gc` child per round
 * (bench/lib/child.js). Scenario modules are listed in SCENARIOS; see bench/lib/scenario.js.
 */
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { runInChild } from "./lib/child.js";
import { snapshotDist } from "./lib/dist.js";
import { chartSvg } from "./lib/chart.js";
import { comparisonRows, consoleTable, gitInfo, machineInfo, markdown } from "./lib/report.js";
import { waitQuiet } from "./lib/load.js";
import { summarize } from "./lib/stats.js";

/** Before a child starts, wait (bounded) until other work keeps fewer than this many cores busy. */
const QUIET_CORES = 0.25;
/** A measurement during which other work kept more than this many cores busy is redone. */
const BUSY_CORES = 0.5;

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(BENCH_DIR, "..");

/** Scenario modules, in run order. */
const SCENARIOS = ["./runtime.js", "./websocket.js", "./storm.js", "./sessions.js", "./cluster.js"];

const USAGE = `usage: node --expose-gc bench/run.js [--quick] [--large] [--only <names>] [--rounds <n>] [--retries <n>] [--cpu-prof [dir]] [--strict] [--out <file>]`;

/**
 * @param {string[]} argv
 */
function parseArgs(argv) {
  /** @type {{ quick: boolean, large: boolean, only: string[] | null, rounds: number | null, cpuProf: string | null, strict: boolean, out: string | null, retries: number }} */
  const o = { quick: false, large: false, only: null, rounds: null, cpuProf: null, strict: false, out: null, retries: 2 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith("--")) throw new Error(`${a} needs a value\n${USAGE}`);
      return v;
    };
    if (a === "--quick") o.quick = true;
    else if (a === "--large") o.large = true;
    else if (a === "--strict") o.strict = true;
    else if (a === "--only") o.only = value().split(",").map((s) => s.trim()).filter(Boolean);
    else if (a === "--rounds") {
      const n = Number(value());
      if (!Number.isInteger(n) || n < 1 || n > 50) throw new Error(`--rounds must be an integer 1..50\n${USAGE}`);
      o.rounds = n;
    } else if (a === "--retries") {
      const n = Number(value());
      if (!Number.isInteger(n) || n < 0 || n > 5) throw new Error(`--retries must be an integer 0..5\n${USAGE}`);
      o.retries = n;
    } else if (a === "--out") o.out = path.resolve(value());
    else if (a === "--cpu-prof") {
      const next = argv[i + 1];
      o.cpuProf = next !== undefined && !next.startsWith("--") ? path.resolve(argv[++i]) : path.join(os.tmpdir(), "corral-cpu-prof");
    } else if (a === "--help" || a === "-h") {
      console.log(USAGE);
      process.exit(0);
    } else throw new Error(`unknown argument ${a}\n${USAGE}`);
  }
  return o;
}

/** @param {number} ms */
function secs(ms) {
  return `${(ms / 1000).toFixed(1)} s`;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const startedAt = new Date();
  const date = startedAt.toISOString().slice(0, 10);
  const paramOpts = { large: opts.large };

  /** @type {{ url: string, scenario: import("./lib/scenario.js").Scenario, measurements: import("./lib/scenario.js").Measurement[], rounds: number, enabled: number }[]} */
  const plan = [];
  for (const rel of SCENARIOS) {
    const url = pathToFileURL(path.join(BENCH_DIR, rel)).href;
    const { scenario } = await import(url);
    const enabled = scenario.measurements.filter(
      (/** @type {import("./lib/scenario.js").Measurement} */ m) =>
        (m.enabled?.(paramOpts) ?? true) && (!m.explicit || (opts.only?.includes(m.id) ?? false)),
    );
    const measurements = enabled.filter(
      (/** @type {import("./lib/scenario.js").Measurement} */ m) =>
        opts.only === null || opts.only.includes(scenario.name) || opts.only.includes(m.id) || (m.groups ?? []).some((g) => opts.only?.includes(g)),
    );
    const rounds = opts.rounds ?? (opts.quick ? 1 : scenario.rounds ?? 5);
    if (measurements.length > 0) plan.push({ url, scenario, measurements, rounds, enabled: enabled.length });
  }
  if (plan.length === 0) throw new Error(`--only ${opts.only?.join(",")} matches no scenario, measurement or group`);
  const rounds = Math.max(...plan.map((p) => p.rounds));
  const partial = opts.only !== null && plan.some((p) => p.measurements.length !== p.enabled) || (opts.only !== null && plan.length !== SCENARIOS.length);

  checkBuild();
  // One build for the whole run, even if dist/ is rebuilt meanwhile (children inherit the env).
  const snapshot = process.env.CORRAL_DIST ? null : snapshotDist(ROOT);
  if (snapshot) {
    process.env.CORRAL_BENCH_DIST = snapshot.index;
    process.on("exit", snapshot.cleanup);
    // Interrupted: remove the copy too (the children exit when their IPC channel closes).
    for (const sig of /** @type {const} */ (["SIGINT", "SIGTERM"])) {
      process.once(sig, () => {
        snapshot.cleanup();
        process.exit(sig === "SIGINT" ? 130 : 143);
      });
    }
  }
  const machine = machineInfo();
  console.error(
    `corral bench: ${plan.map((p) => `${p.scenario.name} ${p.rounds} round(s)`).join(", ")}${opts.quick ? ", quick" : ""}${opts.large ? ", large" : ""}; ` +
      `node ${machine.node}, ${machine.cpuModel} × ${machine.cores}`,
  );
  if (opts.cpuProf) {
    mkdirSync(opts.cpuProf, { recursive: true });
    console.error(`CPU profiles → ${opts.cpuProf}`);
  }

  /** @type {Map<string, { round: number, attempt: number, wallMs: number, cpuMs?: number, subprocessCpuMs?: number, warnings?: string[], load?: { before: number, waitedMs: number, during: number }, figures?: Record<string, number>, details?: unknown, memoryUsage?: NodeJS.MemoryUsage, error?: string }[]>} */
  const runs = new Map();
  /** @type {object[]} */
  const discarded = [];
  /** Total time the run may spend waiting for a quiet machine and redoing loaded measurements. */
  let quietBudget = opts.quick ? 10_000 : 120_000;
  for (const p of plan) for (const m of p.measurements) runs.set(`${p.scenario.name}/${m.id}`, []);

  for (let round = 1; round <= rounds; round++) {
    for (const p of plan) {
      if (round > p.rounds) continue;
      // Side-by-side scenarios flip their order every round, so neither side always goes first.
      const order = p.scenario.alternate && round % 2 === 0 ? [...p.measurements].reverse() : p.measurements;
      for (const m of order) {
        const key = `${p.scenario.name}/${m.id}`;
        const execArgv = opts.cpuProf
          ? ["--cpu-prof", `--cpu-prof-dir=${opts.cpuProf}`, `--cpu-prof-name=${p.scenario.name}-${m.id}-r${round}.cpuprofile`]
          : [];
        let attempt = 0;
        for (;;) {
          attempt++;
          const quiet = await waitQuiet({ maxCores: QUIET_CORES, sampleMs: 300, maxWaitMs: Math.max(0, Math.min(15_000, quietBudget)) });
          quietBudget -= quiet.waitedMs;
          process.stderr.write(`[round ${round}/${rounds}] ${key}${attempt > 1 ? ` (retry ${attempt - 1})` : ""} … `);
          const t0 = performance.now();
          try {
            const r = await runInChild({ module: p.url, fn: m.fn, params: m.params(opts.quick, paramOpts), timeoutMs: m.timeoutMs, execArgv });
            const { figures, details, warnings = [] } = /** @type {import("./lib/scenario.js").MeasurementResult} */ (r.value);
            for (const [id, v] of Object.entries(figures)) {
              if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`${key}: figure ${id} is ${v}`);
            }
            const load = { before: quiet.load, waitedMs: quiet.waitedMs, during: r.backgroundCores };
            const record = { round, attempt, wallMs: r.wallMs, cpuMs: r.cpuMs, subprocessCpuMs: r.subprocessCpuMs, load, figures, details, warnings, memoryUsage: r.memoryUsage };
            const shown = Object.entries(figures).map(([id, v]) => {
              const f = p.scenario.figures.find((x) => x.id === id);
              return `${id}=${f ? fmtShort(v, f.format) : v}`;
            });
            const loaded = r.backgroundCores > BUSY_CORES;
            console.error(`${secs(performance.now() - t0)}  ${shown.join("  ")}  [background ${r.backgroundCores.toFixed(2)} cores]`);
            for (const w of warnings) console.error(`  warning: ${w}`);
            // A measurement that shared the CPU with other work is redone while the budget
            // lasts; the discarded attempt stays in the results file.
            if (loaded && attempt <= opts.retries && quietBudget > 0) {
              discarded.push({ key, ...record, discarded: `background load ${r.backgroundCores.toFixed(2)} cores > ${BUSY_CORES}` });
              quietBudget -= r.wallMs;
              continue;
            }
            runs.get(key)?.push(record);
          } catch (err) {
            const msg = err instanceof Error ? err.message : String(err);
            runs.get(key)?.push({ round, attempt, wallMs: performance.now() - t0, error: msg });
            console.error(`FAILED after ${secs(performance.now() - t0)}\n${msg}`);
          }
          break;
        }
      }
    }
  }

  // Collect: per round, merge the figures of a scenario's measurements, derive, then summarize.
  const scenarios = plan.map((p) => {
    /** @type {Map<string, number[]>} */
    const values = new Map();
    /** @type {Map<string, number>} */
    const errors = new Map();
    const rounds = p.rounds;
    for (let round = 1; round <= rounds; round++) {
      /** @type {Record<string, number>} */
      const merged = {};
      for (const m of p.measurements) {
        const r = runs.get(`${p.scenario.name}/${m.id}`)?.find((x) => x.round === round);
        if (r?.figures) Object.assign(merged, r.figures);
      }
      Object.assign(merged, p.scenario.derive?.(merged) ?? {});
      for (const [id, v] of Object.entries(merged)) {
        if (!values.has(id)) values.set(id, []);
        values.get(id)?.push(v);
      }
      for (const m of p.measurements) {
        const r = runs.get(`${p.scenario.name}/${m.id}`)?.find((x) => x.round === round);
        if (r?.error) errors.set(m.id, (errors.get(m.id) ?? 0) + 1);
      }
    }
    const anyErrors = [...errors.values()].reduce((a, b) => a + b, 0);
    const figures = p.scenario.figures
      .filter((f) => values.has(f.id) || anyErrors > 0)
      .map((f) => {
        const vs = values.get(f.id) ?? [];
        return {
          id: f.id,
          label: f.label,
          format: f.format,
          unit: f.unit,
          target: f.target ?? null,
          note: f.note,
          values: vs,
          ...summarize(vs, f.target),
          // A figure is suspect when any round of the measurements producing it failed: the
          // median of the survivors would hide the failure, so the figure reports ERROR.
          errors: vs.length < rounds ? rounds - vs.length : 0,
        };
      })
      .filter((f) => f.values.length > 0 || f.errors > 0);
    /** @type {Record<string, any[]>} */
    const details = {};
    for (const m of p.measurements) {
      details[m.id] = (runs.get(`${p.scenario.name}/${m.id}`) ?? []).filter((r) => r.details).map((r) => r.details);
    }
    let detailLines = /** @type {string[]} */ ([]);
    try {
      detailLines = p.scenario.detailLines?.(details) ?? [];
    } catch (err) {
      detailLines = [`(details unavailable: ${err instanceof Error ? err.message : String(err)})`];
    }
    return {
      name: p.scenario.name,
      title: p.scenario.title,
      about: p.scenario.about,
      rounds,
      figures,
      comparisons: p.scenario.comparisons ?? [],
      detailLines,
      measurements: p.measurements.map((m) => ({
        id: m.id,
        fn: m.fn,
        params: m.params(opts.quick, paramOpts),
        how: m.how,
        rounds: runs.get(`${p.scenario.name}/${m.id}`) ?? [],
      })),
    };
  });

  const results = {
    schema: 1,
    date,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    quick: opts.quick,
    large: opts.large,
    only: opts.only,
    rounds,
    cpuProfiled: opts.cpuProf !== null,
    machine,
    git: gitInfo(ROOT),
    harness: { node: process.version, execArgv: process.execArgv, memoryUsage: process.memoryUsage() },
    corralDist: process.env.CORRAL_DIST ? path.resolve(process.env.CORRAL_DIST) : "dist/index.js",
    distSnapshot: snapshot ? { sha256: snapshot.sha256, builtAt: snapshot.builtAt } : null,
    load: loadSummary(runs),
    scenarios,
    discarded,
  };

  const resultsDir = path.join(BENCH_DIR, "results");
  const otherBuild = Boolean(process.env.CORRAL_DIST);
  const suffix = opts.quick ? "-quick" : partial ? "-partial" : opts.cpuProf ? "-profiled" : otherBuild ? "-other-build" : "";
  const outFile = opts.out ?? path.join(resultsDir, `${date}${suffix}.json`);
  mkdirSync(path.dirname(outFile), { recursive: true });
  writeFileSync(outFile, JSON.stringify(results, null, 2) + "\n");
  console.log(consoleTable(scenarios));
  console.log(`\nresults: ${path.relative(process.cwd(), outFile)}`);

  const updateDocs = !opts.quick && !partial && !opts.cpuProf && !otherBuild;
  const docsDir = path.join(ROOT, "docs");
  /** @type {Map<string, string>} scenario name → chart file */
  const charts = new Map();
  for (const s of scenarios) {
    const rows = comparisonRows(s).filter((r) => r.ratio !== null);
    if (rows.length === 0) continue;
    const file = updateDocs
      ? path.join(docsDir, `benchmarks-${s.name}.svg`)
      : outFile.replace(/\.json$/, "") + `-${s.name}.svg`;
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, chartSvg(s.title, rows, results));
    charts.set(s.name, file);
    console.log(`chart:   ${path.relative(process.cwd(), file)}`);
  }

  if (updateDocs) {
    mkdirSync(docsDir, { recursive: true });
    const rel = path.relative(docsDir, outFile).split(path.sep).join("/");
    /** @type {Record<string, string>} */
    const chartLinks = {};
    for (const [name, file] of charts) chartLinks[name] = path.relative(docsDir, file).split(path.sep).join("/");
    writeFileSync(path.join(docsDir, "benchmarks.md"), markdown(results, rel, chartLinks));
    console.log(`docs:    ${path.relative(process.cwd(), path.join(docsDir, "benchmarks.md"))}`);
  }

  const errored = scenarios.some((s) => s.figures.some((f) => f.errors > 0));
  const missed = scenarios.some((s) => s.figures.some((f) => f.pass === false));
  if (errored) {
    console.error("\nsome measurements FAILED (see above)");
    process.exitCode = 1;
  } else if (missed && opts.strict) {
    console.error("\nsome figures miss their targets (--strict)");
    process.exitCode = 1;
  }
}

/**
 * The benchmarks import dist/: say so when it is missing or older than a file in src/
 * (`npm run bench` builds first; a bare `node bench/run.js` does not).
 */
function checkBuild() {
  if (process.env.CORRAL_DIST) return;
  const dist = path.join(ROOT, "dist", "index.js");
  if (!existsSync(dist)) throw new Error("dist/index.js is missing: run `npm run build` first (or `npm run bench`)");
  const built = statSync(dist).mtimeMs;
  /** @param {string} dir @returns {string | null} */
  const newer = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) {
        const hit = newer(p);
        if (hit) return hit;
      } else if (e.name.endsWith(".ts") && statSync(p).mtimeMs > built) return p;
    }
    return null;
  };
  const src = path.join(ROOT, "src");
  const stale = existsSync(src) ? newer(src) : null;
  if (stale) console.error(`warning: ${path.relative(ROOT, stale)} is newer than dist/: measuring an old build (npm run build)`);
}

/**
 * Background load over the kept measurements: what the docs say about how quiet the box was.
 * @param {Map<string, { load?: { during: number } }[]>} runs
 */
function loadSummary(runs) {
  const during = [...runs.values()].flat().flatMap((r) => (r.load ? [r.load.during] : []));
  if (during.length === 0) return null;
  const sorted = [...during].sort((a, b) => a - b);
  return {
    busyThresholdCores: BUSY_CORES,
    medianCores: sorted[sorted.length >> 1],
    maxCores: sorted[sorted.length - 1],
    measurements: during.length,
    aboveThreshold: during.filter((x) => x > BUSY_CORES).length,
  };
}

/**
 * @param {number} v
 * @param {string} format
 */
function fmtShort(v, format) {
  if (format === "rate") return v >= 1e6 ? `${(v / 1e6).toFixed(2)}M/s` : `${(v / 1e3).toFixed(1)}k/s`;
  if (format === "bytes") return `${Math.round(v)}B`;
  if (format === "MB") return `${v.toFixed(1)}MB`;
  if (format === "ms") return `${v.toFixed(1)}ms`;
  if (format === "us") return `${v.toFixed(2)}µs`;
  if (format === "cores") return `${v.toFixed(2)}cores`;
  return v.toFixed(2);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
