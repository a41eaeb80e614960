#!/usr/bin/env node
// @ts-check
/**
 * Diagnosis, not a benchmark: what a server keeps per idle connection, by constructor.
 * Starts a server (as bench/websocket.js does), opens and closes a warm-up batch, takes a
 * heap snapshot, opens N connections, takes another, and prints the difference per
 * (type, constructor name): objects per connection and self bytes per connection.
 *
 *   node bench/ws/heapdiff.js [corral|raw] [/idle|/hibernate|/state|/push|/echo] [N] [--top 40] [--keep]
 *
 * Snapshots go to $TMPDIR/corral-heapdiff-*.heapsnapshot (deleted afterwards; --keep keeps
 * the second, to open in DevTools' Memory tab and follow retainers).
 */
import { readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { sourceAddresses, startRig } from "./rig.js";

/**
 * @param {string} file
 * @returns {Map<string, { count: number, bytes: number }>}
 */
function summarize(file) {
  const snap = JSON.parse(readFileSync(file, "utf8"));
  const meta = snap.snapshot.meta;
  const fields = meta.node_fields;
  const nf = fields.length;
  const iType = fields.indexOf("type");
  const iName = fields.indexOf("name");
  const iSize = fields.indexOf("self_size");
  const types = meta.node_types[iType];
  /** @type {string[]} */
  const strings = snap.strings;
  const nodes = snap.nodes;
  /** @type {Map<string, { count: number, bytes: number }>} */
  const acc = new Map();
  for (let i = 0; i < nodes.length; i += nf) {
    const type = types[nodes[i + iType]];
    let name = strings[nodes[i + iName]];
    if (type === "string" || type === "concatenated string" || type === "sliced string") name = "";
    else if (type === "code") name = "";
    else if (name.length > 60) name = name.slice(0, 60) + "…";
    const key = `${type}\t${name}`;
    const e = acc.get(key) ?? { count: 0, bytes: 0 };
    e.count++;
    e.bytes += nodes[i + iSize];
    acc.set(key, e);
  }
  return acc;
}

const args = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const server = /** @type {"corral" | "raw"} */ (args[0] ?? "corral");
const route = args[1] ?? "/idle";
const n = Number(args[2] ?? 2000);
const top = process.argv.includes("--top") ? Number(process.argv[process.argv.indexOf("--top") + 1]) : 40;

const rig = await startRig({ server, conns: n, workers: 1 });
const a = path.join(os.tmpdir(), `corral-heapdiff-${process.pid}-a.heapsnapshot`);
const b = path.join(os.tmpdir(), `corral-heapdiff-${process.pid}-b.heapsnapshot`);
try {
  const sources = sourceAddresses(n);
  const mode = route === "/push" ? "push" : route === "/echo" ? "echo" : "idle";
  await rig.connect({ mode, path: route, count: 200, concurrency: 64, sources, timeoutMs: 30_000 });
  await rig.waitConns(200, 10_000);
  await rig.gensCall("closeAll");
  await rig.waitConns(0, 10_000);
  await rig.server.call("heapSnapshot", { file: a }, 120_000);
  await rig.connect({ mode, path: route, count: n, concurrency: 64, sources, timeoutMs: 60_000 });
  await rig.waitConns(n, 20_000);
  await new Promise((r) => setTimeout(r, 300));
  await rig.server.call("heapSnapshot", { file: b }, 120_000);
} finally {
  await rig.close();
}
const before = summarize(a);
const after = summarize(b);
rmSync(a, { force: true });
if (process.argv.includes("--keep")) console.log(`kept ${b}`);
else rmSync(b, { force: true });
const rows = [];
let total = 0;
for (const [key, e] of after) {
  const o = before.get(key) ?? { count: 0, bytes: 0 };
  const dBytes = e.bytes - o.bytes;
  const dCount = e.count - o.count;
  total += dBytes;
  if (dBytes !== 0 || dCount !== 0) rows.push({ key, perConnCount: dCount / n, perConnBytes: dBytes / n });
}
rows.sort((x, y) => y.perConnBytes - x.perConnBytes);
console.log(`${server} ${route}: heap self size per connection ${(total / n).toFixed(0)} B (N = ${n})`);
console.log("  bytes/conn  objs/conn  type  name");
for (const r of rows.slice(0, top)) {
  const [type, name] = r.key.split("\t");
  console.log(`${r.perConnBytes.toFixed(1).padStart(10)}  ${r.perConnCount.toFixed(2).padStart(9)}  ${type}  ${name}`);
}
