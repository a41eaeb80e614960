// @ts-check
/** The machine description, number formatting, and the console and Markdown renderings. */
import { execFileSync } from "node:child_process";
import os from "node:os";

/** Node, V8, CPU, cores, memory, OS: what the numbers depend on. */
export function machineInfo() {
  const cpus = os.cpus();
  return {
    node: process.version,
    v8: process.versions.v8,
    platform: process.platform,
    arch: process.arch,
    osRelease: os.release(),
    cpuModel: cpus[0]?.model.trim() ?? "unknown",
    cores: cpus.length,
    cpuSpeedMHz: cpus[0]?.speed ?? null,
    totalMemGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
  };
}

/**
 * The commit the numbers belong to (read-only git queries; null outside a checkout).
 * @param {string} cwd
 */
export function gitInfo(cwd) {
  try {
    const commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    const status = execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    return { commit, dirty: status.trim().length > 0 };
  } catch {
    return null;
  }
}

/**
 * @param {number} v
 * @param {number} digits
 */
function fixed(v, digits) {
  return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/**
 * @param {number | null | undefined} v
 * @param {import("./scenario.js").Figure["format"]} format
 * @returns {string}
 */
export function fmt(v, format) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  switch (format) {
    case "rate":
      if (Math.abs(v) >= 1e6) return `${fixed(v / 1e6, 2)} M/s`;
      if (Math.abs(v) >= 1e3) return `${fixed(v / 1e3, 0)} k/s`;
      return `${fixed(v, 0)} /s`;
    case "bytes":
      return `${fixed(v, 0)} B`;
    case "MB":
      return `${fixed(v, 1)} MB`;
    case "ms":
      return `${fixed(v, Math.abs(v) < 10 ? 2 : Math.abs(v) < 100 ? 1 : 0)} ms`;
    case "us":
      return `${fixed(v, Math.abs(v) < 10 ? 2 : Math.abs(v) < 100 ? 1 : 0)} µs`;
    case "cores":
      return `${fixed(v, 2)} cores`;
    case "ratio":
      // A ratio far below 1 (cross-node over local throughput) would print as 0.00 or 0.01:
      // two significant digits instead.
      return v !== 0 && Math.abs(v) < 0.1 ? v.toPrecision(2) : fixed(v, 2);
    default:
      return fixed(v, Math.abs(v) < 10 ? 2 : 0);
  }
}

/** @param {import("./scenario.js").Figure} f */
export function fmtTarget(f) {
  return f.target === undefined ? "—" : `${f.target.op === ">=" ? "≥" : "≤"} ${fmt(f.target.value, f.format)}`;
}

/**
 * @typedef {object} FigureResult
 * @property {string} id
 * @property {string} label
 * @property {string} format
 * @property {string} [unit]
 * @property {import("./scenario.js").Target | null} target
 * @property {string} [note]
 * @property {number[]} values   one per round that produced it
 * @property {number | null} median
 * @property {number | null} min
 * @property {number | null} max
 * @property {boolean | null} pass
 * @property {number} errors     rounds whose measurement failed
 */

/** @param {FigureResult} f */
function verdict(f) {
  if (f.errors > 0) return "ERROR";
  if (f.pass === null) return f.target ? "—" : "report";
  return f.pass ? "pass" : "FAIL";
}

/** @param {FigureResult} f */
function range(f) {
  const format = /** @type {import("./scenario.js").Figure["format"]} */ (f.format);
  return f.values.length > 1 ? `${fmt(f.min, format)} – ${fmt(f.max, format)}` : "(1 round)";
}

/**
 * @param {FigureResult} f
 */
function row(f) {
  const format = /** @type {import("./scenario.js").Figure["format"]} */ (f.format);
  return [f.label, fmtTarget(/** @type {any} */ ({ ...f, target: f.target ?? undefined })), fmt(f.median, format), range(f), verdict(f)];
}

/**
 * @typedef {object} ComparisonRow
 * @property {string} section
 * @property {string} label
 * @property {FigureResult | null} a       corral
 * @property {FigureResult | null} b       raw ws, or the baseline the label names
 * @property {FigureResult | null} ratio   a / b per round
 * @property {string} target
 * @property {string} verdict              pass, FAIL, ERROR or report
 */

/**
 * A scenario's side-by-side rows (scenario.comparisons) with their figures, target and
 * verdict; rows whose figures were not measured in this run are left out.
 * @param {{ figures: FigureResult[], comparisons?: import("./scenario.js").Comparison[] }} s
 * @returns {ComparisonRow[]}
 */
export function comparisonRows(s) {
  /** @param {string | null | undefined} id */
  const fig = (id) => (id ? (s.figures.find((f) => f.id === id) ?? null) : null);
  /** @type {ComparisonRow[]} */
  const out = [];
  for (const c of s.comparisons ?? []) {
    const a = fig(c.a);
    const b = fig(c.b);
    const ratio = fig(c.ratio);
    if (a === null && b === null && ratio === null) continue;
    if (c.optional && a === null) continue;
    const judged = [a, b, ratio].filter((f) => f !== null && f.target);
    let verdict = "report";
    if ([a, b, ratio].some((f) => f !== null && f.errors > 0)) verdict = "ERROR";
    else if (judged.some((f) => f?.pass === false)) verdict = "FAIL";
    else if (judged.some((f) => f?.pass === true)) verdict = "pass";
    let target = "—";
    if (ratio?.target) target = fmtTarget(/** @type {any} */ (ratio));
    else if (a?.target) target = fmtTarget(/** @type {any} */ (a)) + (b?.target ? " each" : "");
    out.push({ section: c.section, label: c.label, a, b, ratio, target, verdict });
  }
  return out;
}

/** @param {FigureResult | null} f */
function med(f) {
  if (f === null) return "—";
  if (f.errors > 0 && f.values.length === 0) return "ERROR";
  return fmt(f.median, /** @type {any} */ (f.format));
}

/** @param {FigureResult | null} f */
function perRound(f) {
  if (f === null || f.values.length === 0) return "—";
  return f.values.map((v) => fmt(v, /** @type {any} */ (f.format))).join(", ");
}

/**
 * Figures no comparison row shows.
 * @param {{ figures: FigureResult[], comparisons?: import("./scenario.js").Comparison[] }} s
 */
function uncompared(s) {
  const shown = new Set((s.comparisons ?? []).flatMap((c) => [c.a, c.b, c.ratio]));
  return s.figures.filter((f) => !shown.has(f.id));
}

/**
 * A plain-text table for the terminal.
 * @param {{ title: string, figures: FigureResult[], comparisons?: import("./scenario.js").Comparison[] }[]} scenarios
 */
export function consoleTable(scenarios) {
  const lines = [];
  /** @param {string[][]} rows */
  const table = (rows) => {
    const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
    for (const r of rows) lines.push("  " + r.map((cell, c) => cell.padEnd(widths[c])).join("  "));
  };
  for (const s of scenarios) {
    lines.push("", s.title);
    const comps = comparisonRows(s);
    if (comps.length > 0) {
      table([
        ["", "corral", "raw ws / baseline", "ratio", "ratio per round", "target", "result"],
        ...comps.map((r) => [`${r.section}: ${r.label}`, med(r.a), med(r.b), med(r.ratio), perRound(r.ratio), r.target, r.verdict]),
      ]);
    }
    const rest = comps.length > 0 ? uncompared(s) : s.figures;
    if (rest.length > 0) {
      if (comps.length > 0) lines.push("");
      table([["figure", "target", "median", "min – max", "result"], ...rest.map(row)]);
    }
  }
  return lines.join("\n");
}

/**
 * @param {string} s
 */
function cell(s) {
  return s.replaceAll("|", "\\|");
}

/**
 * docs/benchmarks.md, generated from one results file.
 * @param {any} results      the object written to bench/results/<date>.json
 * @param {string} resultsRel  its path relative to docs/
 * @param {Record<string, string>} [charts]  scenario name → its SVG chart, relative to docs/
 */
export function markdown(results, resultsRel, charts = {}) {
  const m = results.machine;
  const out = [];
  out.push("# Benchmarks", "");
  out.push(
    "<!-- Generated by bench/run.js (`npm run bench`); edit the harness, not this file. -->",
    "",
    `Measured on ${results.date} by \`npm run bench\`` +
      (results.git ? ` at commit \`${results.git.commit}\`${results.git.dirty ? " (with uncommitted changes)" : ""}` : "") +
      (results.distSnapshot ? `, measuring \`dist/\` as built at ${results.distSnapshot.builtAt} (copied once for the run, sha256 \`${results.distSnapshot.sha256.slice(0, 12)}\`)` : "") +
      `. Raw numbers, every round and each child's \`process.memoryUsage()\`: [${resultsRel}](${resultsRel}).`,
    "",
  );
  out.push("## Machine", "");
  out.push("| | |", "|---|---|");
  out.push(`| Node.js | ${m.node} (V8 ${m.v8}) |`);
  out.push(`| CPU | ${cell(m.cpuModel)}, ${m.cores} cores${m.cpuSpeedMHz ? ` (${m.cpuSpeedMHz} MHz reported)` : ""} |`);
  out.push(`| Memory | ${m.totalMemGiB} GiB |`);
  out.push(`| OS | ${m.platform} ${m.arch}, kernel ${m.osRelease} |`, "");
  out.push("## Method", "");
  out.push(
    `Every measurement runs in its own fresh \`node --expose-gc\` child process, so heaps and JIT state ` +
      `never carry over; ${roundsText(results)}, each round running every ` +
      `measurement once, rounds interleaved. A figure is the **median** across rounds, with the min–max ` +
      `beside it; pass/fail compares the median with the target. Every measurement checks its own result ` +
      `(messages counted and in order, processes really gone, state intact after hibernation, timers ` +
      `delivered exactly once) and fails loudly instead of reporting a number for a broken run. Every wait ` +
      `has a deadline and every child a hard timeout.`,
    "",
  );
  const load = results.load;
  if (load) {
    out.push(
      `The machine is shared (other builds and tests may run on it), so each measurement also records ` +
        `the background load: cores kept busy by anything but the measurement's own processes, from ` +
        `\`os.cpus()\` times minus the child's \`process.cpuUsage()\` (and, for the WebSocket scenarios, minus the ` +
        `CPU time of the server and load generators it started). Before each child the harness waits ` +
        `(bounded) for a quiet moment, and a measurement run under more than ${load.busyThresholdCores} cores ` +
        `of background load is redone while a time budget lasts (the discarded attempts stay in the results ` +
        `file). For the figures below: background load median ${load.medianCores.toFixed(2)}, max ` +
        `${load.maxCores.toFixed(2)} cores; ${load.aboveThreshold} of ${load.measurements} measurements above ` +
        `${load.busyThresholdCores}${results.discarded?.length ? `; ${results.discarded.length} attempt(s) discarded` : ""}.`,
      "",
    );
  }
  for (const s of results.scenarios) {
    out.push(`## ${s.title}`, "", s.about, "");
    const notes = [];
    const comps = comparisonRows(s);
    if (comps.length > 0) {
      out.push(
        "| | corral | raw ws (or the baseline named) | corral / raw, median | per round | Target | Result |",
        "|---|---|---|---|---|---|---|",
      );
      let section = "";
      for (const r of comps) {
        if (r.section !== section) {
          section = r.section;
          out.push(`| **${cell(section)}** | | | | | | |`);
        }
        let label = r.label;
        const note = r.ratio?.note ?? r.a?.note;
        if (note) {
          notes.push(note);
          label += `<sup>${notes.length}</sup>`;
        }
        out.push(`| ${[label, med(r.a), med(r.b), med(r.ratio), perRound(r.ratio), r.target, r.verdict].map(cell).join(" | ")} |`);
      }
      out.push("");
      if (charts[s.name]) out.push(`![corral / raw ws ratios per figure](${charts[s.name]})`, "");
    }
    const rest = comps.length > 0 ? uncompared(s) : s.figures;
    if (rest.length > 0) out.push("| Figure | Target | Median | Min – max | Result |", "|---|---|---|---|---|");
    for (const f of rest) {
      const r = row(f);
      if (f.note) {
        notes.push(f.note);
        r[0] += `<sup>${notes.length}</sup>`;
      }
      out.push(`| ${r.map(cell).join(" | ")} |`);
    }
    if (rest.length > 0) out.push("");
    notes.forEach((n, i) => out.push(`<sup>${i + 1}</sup> ${n}  `));
    if (notes.length) out.push("");
    if (s.detailLines?.length) {
      out.push("Details (medians across rounds):", "", ...s.detailLines.map((/** @type {string} */ l) => `- ${l}`), "");
    }
    out.push("### How each is measured", "");
    for (const meas of s.measurements) if (meas.how) out.push(`- **${meas.id}**: ${meas.how}`);
    out.push("");
    const warned = s.measurements.flatMap((/** @type {any} */ meas) =>
      meas.rounds.flatMap((/** @type {any} */ r) => (r.warnings ?? []).map((/** @type {string} */ w) => `${meas.id} (round ${r.round}): ${w}`)),
    );
    if (warned.length) out.push("**Warnings:**", "", ...warned.map((/** @type {string} */ w) => `- ${w}`), "");
    const failed = s.measurements.flatMap((/** @type {any} */ meas) =>
      meas.rounds.filter((/** @type {any} */ r) => r.error).map((/** @type {any} */ r) => `${meas.id} (round ${r.round})`),
    );
    if (failed.length) out.push(`**Failed measurements:** ${failed.join(", ")} — see the results file.`, "");
  }
  return out.join("\n");
}

/**
 * "5 rounds", or per scenario when they differ.
 * @param {any} results
 */
function roundsText(results) {
  const per = (results.scenarios ?? []).map((/** @type {any} */ s) => [s.title, s.rounds ?? results.rounds]);
  const distinct = new Set(per.map((/** @type {any[]} */ p) => p[1]));
  /** @param {number} n */
  const r = (n) => `${n} round${n === 1 ? "" : "s"}`;
  if (distinct.size <= 1) return r(per[0]?.[1] ?? results.rounds);
  return per.map((/** @type {any[]} */ p) => `${r(p[1])} for ${p[0]}`).join(", ");
}
