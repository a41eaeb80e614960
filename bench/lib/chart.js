// @ts-check
/**
 * The docs' chart: one horizontal bar per side-by-side row that has a ratio (corral / raw),
 * on a log scale centred on 1 (equal), so "half" and "double" are the same distance away.
 * The bar runs from 1 to the median; a thin line spans the rounds' min–max, dots mark each
 * round; a black tick marks the target. Green: the row passes; red: it fails; grey: no target.
 * Plain SVG, no dependencies, deterministic for one results file.
 */
import { fmt } from "./report.js";

/** @param {string} s */
function esc(s) {
  return s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;");
}

const COLORS = /** @type {Record<string, string>} */ ({ pass: "#2e7d32", FAIL: "#c62828", ERROR: "#ef6c00", report: "#8a8a8a" });

/**
 * @param {string} title
 * @param {import("./report.js").ComparisonRow[]} rows  rows with a ratio figure
 * @param {any} results  the results object (date, commit, machine)
 * @returns {string}
 */
export function chartSvg(title, rows, results) {
  const W = 980;
  const labelW = 430;
  const x0 = labelW + 20;
  const x1 = W - 150;
  const rowH = 24;
  const top = 92;

  // Domain: log2 of the ratio, at least 1/4 … 4, widened to every value and target shown.
  let lo = -2;
  let hi = 2;
  for (const r of rows) {
    const vs = [...(r.ratio?.values ?? []), r.ratio?.target?.value ?? 1].filter((v) => v > 0 && Number.isFinite(v));
    for (const v of vs) {
      lo = Math.min(lo, Math.floor(Math.log2(v)));
      hi = Math.max(hi, Math.ceil(Math.log2(v)));
    }
  }
  /** @param {number} v */
  const X = (v) => x0 + ((Math.log2(Math.max(v, 2 ** lo)) - lo) / (hi - lo)) * (x1 - x0);

  /** @type {string[]} */
  const body = [];
  let y = top;
  let section = "";
  for (const r of rows) {
    if (r.section !== section) {
      section = r.section;
      y += 6;
      body.push(`<text x="12" y="${y + 15}" class="sec">${esc(section)}</text>`);
      y += rowH;
    }
    const cy = y + rowH / 2;
    body.push(`<text x="24" y="${cy + 4}" class="lbl">${esc(r.label)}</text>`);
    const f = r.ratio;
    const color = COLORS[r.verdict] ?? COLORS.report;
    if (f && f.median !== null && f.median > 0) {
      const a = X(1);
      const b = X(f.median);
      body.push(`<rect x="${Math.min(a, b).toFixed(1)}" y="${(cy - 7).toFixed(1)}" width="${Math.max(1, Math.abs(b - a)).toFixed(1)}" height="14" fill="${color}" fill-opacity="0.8"/>`);
      if (f.min !== null && f.max !== null && f.values.length > 1) {
        body.push(`<line x1="${X(f.min).toFixed(1)}" x2="${X(f.max).toFixed(1)}" y1="${cy}" y2="${cy}" stroke="#222" stroke-width="1.2"/>`);
      }
      for (const v of f.values) body.push(`<circle cx="${X(v).toFixed(1)}" cy="${cy}" r="2.6" fill="#fff" stroke="#222" stroke-width="1"/>`);
      if (f.target) {
        const tx = X(f.target.value).toFixed(1);
        body.push(`<line x1="${tx}" x2="${tx}" y1="${cy - 10}" y2="${cy + 10}" stroke="#000" stroke-width="2.2"/>`);
      }
      body.push(`<text x="${x1 + 10}" y="${cy + 4}" class="val">${esc(fmt(f.median, "ratio"))}  ${esc(r.verdict === "report" ? "" : r.verdict)}${f.target ? `  (${esc(r.target)})` : ""}</text>`);
    } else {
      body.push(`<text x="${x1 + 10}" y="${cy + 4}" class="val">${r.verdict === "ERROR" ? "ERROR" : "—"}</text>`);
    }
    y += rowH;
  }
  const bottom = y + 8;

  // Grid: powers of two, labelled; 1 (equal) stronger.
  /** @type {string[]} */
  const grid = [];
  for (let e = lo; e <= hi; e++) {
    const v = 2 ** e;
    const gx = X(v).toFixed(1);
    grid.push(`<line x1="${gx}" x2="${gx}" y1="${top - 6}" y2="${bottom}" stroke="${e === 0 ? "#444" : "#ddd"}" stroke-width="${e === 0 ? 1.2 : 1}"${e === 0 ? "" : ' stroke-dasharray="3,3"'}/>`);
    grid.push(`<text x="${gx}" y="${top - 10}" class="tick" text-anchor="middle">${v >= 1 ? v : `1/${2 ** -e}`}×</text>`);
  }

  const H = bottom + 40;
  const sub = `${results.date}${results.git ? `, commit ${results.git.commit}${results.git.dirty ? " (uncommitted changes)" : ""}` : ""}; ${results.machine?.cpuModel ?? ""} × ${results.machine?.cores ?? "?"}, Node ${results.machine?.node ?? ""}`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif">`,
    `<style>.t{font-size:16px;font-weight:600}.s{font-size:11px;fill:#555}.sec{font-size:13px;font-weight:600}.lbl{font-size:12px}.val{font-size:12px}.tick{font-size:11px;fill:#555}</style>`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="12" y="22" class="t">${esc(title)}</text>`,
    `<text x="12" y="40" class="s">corral / raw ws per figure: bar from 1× to the median of the rounds (log scale); line: min–max; dots: each round; black tick: the target.</text>`,
    `<text x="12" y="54" class="s">${esc(sub)}</text>`,
    ...grid,
    ...body,
    `<text x="12" y="${H - 14}" class="s">Left of 1×: corral smaller (less CPU, memory or time; fewer msgs/s). Green: meets its target, red: misses it, grey: no target. Generated by bench/run.js.</text>`,
    `</svg>`,
    "",
  ].join("\n");
}
