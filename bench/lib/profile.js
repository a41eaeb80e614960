#!/usr/bin/env node
// @ts-check
/**
 * Summarizes a V8 .cpuprofile (from `node --cpu-prof`, or `bench/run.js --cpu-prof`; the
 * WebSocket scenarios also profile their server, `<name>-server.cpuprofile`): self time per
 * function, heaviest first, with the share of all samples; --inclusive adds each function's
 * total time (itself and everything it called, each sample counted once per function).
 *
 *   node bench/lib/profile.js <file.cpuprofile> [--top 30] [--filter dist/] [--inclusive]
 */
import { readFileSync } from "node:fs";
import path from "node:path";

/**
 * @typedef {{ id: number, callFrame: { functionName: string, url: string, lineNumber: number }, children?: number[] }} ProfileNode
 * @typedef {{ nodes: ProfileNode[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }} Profile
 */

/**
 * @param {Profile} profile
 * @returns {{ name: string, where: string, selfMs: number, share: number }[]}
 */
export function selfTimes(profile) {
  /** @type {Map<number, ProfileNode>} */
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  /** @type {Map<string, { name: string, where: string, selfMs: number }>} */
  const acc = new Map();
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]);
    const dt = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    if (!node) continue;
    total += dt;
    const cf = node.callFrame;
    const where = cf.url ? `${path.basename(cf.url)}:${cf.lineNumber + 1}` : "";
    const key = `${cf.functionName}@${where}`;
    const e = acc.get(key) ?? { name: cf.functionName || "(anonymous)", where, selfMs: 0 };
    e.selfMs += dt;
    acc.set(key, e);
  }
  return [...acc.values()].sort((a, b) => b.selfMs - a.selfMs).map((e) => ({ ...e, share: total > 0 ? e.selfMs / total : 0 }));
}

/**
 * Inclusive time per function: every sample counts once for each distinct function on its stack.
 * @param {Profile} profile
 * @returns {Map<string, number>} key `${name}@${where}` → ms
 */
export function totalTimes(profile) {
  /** @type {Map<number, ProfileNode>} */
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  /** @type {Map<number, number>} */
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  /** @type {Map<string, number>} */
  const acc = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    /** @type {Set<string>} */
    const seen = new Set();
    for (let id = /** @type {number | undefined} */ (profile.samples[i]); id !== undefined; id = parent.get(id)) {
      const node = byId.get(id);
      if (!node) break;
      const cf = node.callFrame;
      const key = `${cf.functionName || "(anonymous)"}@${cf.url ? `${path.basename(cf.url)}:${cf.lineNumber + 1}` : ""}`;
      if (seen.has(key)) continue;
      seen.add(key);
      acc.set(key, (acc.get(key) ?? 0) + dt);
    }
  }
  return acc;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const file = args.find((a) => !a.startsWith("--"));
  if (!file) {
    console.error("usage: node bench/lib/profile.js <file.cpuprofile> [--top N] [--filter substring]");
    process.exit(2);
  }
  const top = Number(args[args.indexOf("--top") + 1]) || 30;
  const filter = args.includes("--filter") ? args[args.indexOf("--filter") + 1] : null;
  /** @type {Profile} */
  const profile = JSON.parse(readFileSync(file, "utf8"));
  const rows = selfTimes(profile).filter((r) => filter === null || r.where.includes(filter) || r.name.includes(filter));
  if (args.includes("--inclusive")) {
    const totals = totalTimes(profile);
    const all = selfTimes(profile).reduce((s, r) => s + r.selfMs, 0);
    const keyed = [...totals.entries()]
      .map(([key, ms]) => ({ key, ms }))
      .filter((r) => filter === null || r.key.includes(filter))
      .sort((a, b) => b.ms - a.ms);
    console.log("inclusive (self + callees):");
    for (const r of keyed.slice(0, top)) {
      const [name, where] = r.key.split("@");
      console.log(`${((r.ms / all) * 100).toFixed(1).padStart(5)}%  ${r.ms.toFixed(1).padStart(8)} ms  ${name}  ${where}`);
    }
    console.log("\nself:");
  }
  for (const r of rows.slice(0, top)) {
    console.log(`${(r.share * 100).toFixed(1).padStart(5)}%  ${r.selfMs.toFixed(1).padStart(8)} ms  ${r.name}  ${r.where}`);
  }
}
