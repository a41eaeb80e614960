/**
 * Fuzzing: seeded random and mutated frame streams into real connections, while a canary
 * connection echoes throughout. Three kinds of stream:
 *
 * - valid: random well-formed frames (any length form boundary, fragments split anywhere,
 *   pings and pongs between fragments, random chunking); a reference model says exactly what
 *   the server must send back, and the server must send exactly that;
 * - mutated: a valid stream with bit flips, overwritten or inserted bytes, a cut, a deleted or
 *   duplicated range, or a rewritten frame header; everything the model expects from frames
 *   before the first changed byte must still come back;
 * - garbage: random bytes after the handshake.
 *
 * For every connection: the server's frames are well-formed; at most one close, last; its
 * code is one the server may send (1002, 1007, 1009, or the client's own valid code echoed)
 * and agrees with the terminate reason; terminate runs exactly once; a connection still open
 * at the end is alive and consistent. No crash is logged, the canary misses nothing, and
 * processes and sockets return to their baseline. A failure names its seed (replay it by
 * running that seed alone).
 */
import { afterAll, beforeAll, expect, test } from "vitest";
import WebSocket from "ws";
import { compileRoutes, isAlive, ok, processCount, reply, self, startClear, stopListener, upgrade, type Listener, type Pid, type TerminateReason, type WebSocketHandler } from "../../src/index.js";
import { captureLogs, sleep, until } from "../support/helpers.js";
import { OP, RawClient, closePayload, encodeFrame, type ServerFrame } from "../support/raw-client.js";
import { SCALE, timeout } from "./scale.js";
import { handles, pool, rng } from "../support/measure.js";

type Rng = ReturnType<typeof rng>;
type State = { id: string };

const { logger, records } = captureLogs();
const reasons = new Map<string, TerminateReason[]>();
const pids = new Map<string, Pid>();

const echo: WebSocketHandler<State> = {
  init: (req) => upgrade(req, { id: req.qs }, { idleTimeout: 30_000 }),
  websocketInit(s) {
    pids.set(s.id, self());
    return ok(s);
  },
  websocketHandle: (frame, s) => (frame.type === "text" || frame.type === "binary" ? reply(frame, s) : ok(s)),
  terminate(reason, _req, s) {
    let list = reasons.get(s.id);
    if (list === undefined) reasons.set(s.id, (list = []));
    list.push(reason);
  },
};

const NAME = "reliability-fuzz";
let listener: Listener;
let baseProcs = 0;
let baseSockets = 0;

beforeAll(async () => {
  baseSockets = handles("TCPSocketWrap");
  listener = await startClear(NAME, { port: 0 }, { dispatch: compileRoutes([{ host: "_", paths: [["/", echo, {}]] }]), logger, shutdownTimeout: 500 });
  baseProcs = processCount();
});

afterAll(async () => {
  await stopListener(NAME);
});

/* ---------------------------------------------------------------- the canary */

/** A ws client sending a numbered message every 10 ms and checking each echo, in order. */
function startCanary(port: number): { stop(): Promise<{ sent: number; received: number; outOfOrder: number; maxLatency: number }> } {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/?canary`);
  let sent = 0;
  let received = 0;
  let outOfOrder = 0;
  let maxLatency = 0;
  const sentAt: number[] = [];
  ws.on("message", (d) => {
    const n = Number(String(d));
    if (n !== received) outOfOrder++;
    maxLatency = Math.max(maxLatency, performance.now() - (sentAt[n] ?? 0));
    received++;
  });
  const open = new Promise<void>((resolve) => ws.once("open", () => resolve()));
  let timer: NodeJS.Timeout | undefined;
  void open.then(() => {
    timer = setInterval(() => {
      sentAt[sent] = performance.now();
      ws.send(String(sent++));
    }, 10);
  });
  return {
    async stop() {
      await open;
      clearInterval(timer);
      await until(() => received === sent || ws.readyState !== WebSocket.OPEN, 3000, `canary echoes (${received}/${sent})`);
      ws.close(1000);
      return { sent, received, outOfOrder, maxLatency };
    },
  };
}

/* ---------------------------------------------------------------- the stream model */

/** What the server must send for one client frame, once that frame is complete. */
type Expected = { type: "text" | "binary" | "pong"; payload: Buffer } | { type: "close"; code: number | undefined };

interface Stream {
  bytes: Buffer;
  /** Per frame: where it ends in `bytes`, and what the server sends once it has it. */
  frames: { end: number; out: Expected[] }[];
  /** The stream's trailing close frame starts here (bytes.length if it has none). */
  closeAt: number;
}

function randomText(r: Rng, bytes: number): Buffer {
  const parts: string[] = [];
  let n = 0;
  while (n < bytes) {
    const k = r.next();
    let cp: number;
    if (k < 0.6) cp = r.int(0x20, 0x7e);
    else if (k < 0.75) cp = r.int(0x80, 0x7ff);
    else if (k < 0.9) {
      cp = r.int(0x800, 0xfffd);
      if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xe000;
    } else cp = r.int(0x10000, 0x10ffff);
    const s = String.fromCodePoint(cp);
    parts.push(s);
    n += Buffer.byteLength(s);
  }
  return Buffer.from(parts.join(""), "utf8");
}

function randomBytes(r: Rng, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = r.int(0, 255);
  return b;
}

/** Payload sizes with the length-encoding boundaries over-represented. */
function size(r: Rng): number {
  const k = r.next();
  if (k < 0.1) return 0;
  if (k < 0.55) return r.int(1, 125);
  if (k < 0.65) return r.pick([125, 126, 127, 128]);
  if (k < 0.9) return r.int(129, 2000);
  if (k < 0.95) return r.pick([65535, 65536]);
  return r.int(2001, 70_000);
}

const VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999];

function maskKey(r: Rng): Buffer {
  return r.chance(0.1) ? Buffer.alloc(4) : randomBytes(r, 4);
}

/** Splits a payload into k pieces at random places (inside code points too; empty pieces allowed). */
function splitAt(r: Rng, payload: Buffer, k: number): Buffer[] {
  const cuts = Array.from({ length: k - 1 }, () => r.int(0, payload.length)).sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let at = 0;
  for (const c of cuts) {
    pieces.push(payload.subarray(at, c));
    at = c;
  }
  pieces.push(payload.subarray(at));
  return pieces;
}

function validStream(r: Rng): Stream {
  const parts: Buffer[] = [];
  const frames: Stream["frames"] = [];
  let at = 0;
  const push = (bytes: Buffer, out: Expected[]): void => {
    parts.push(bytes);
    at += bytes.length;
    frames.push({ end: at, out });
  };
  const control = (): void => {
    const payload = randomBytes(r, r.int(0, 125));
    if (r.chance(0.6)) push(encodeFrame({ opcode: OP.ping, payload, maskKey: maskKey(r) }), [{ type: "pong", payload }]);
    else push(encodeFrame({ opcode: OP.pong, payload, maskKey: maskKey(r) }), []);
  };
  const units = r.int(1, 10);
  for (let u = 0; u < units; u++) {
    const k = r.next();
    if (k < 0.3) {
      control();
      continue;
    }
    const text = r.chance(0.5);
    const payload = text ? randomText(r, size(r)) : randomBytes(r, size(r));
    const type = text ? ("text" as const) : ("binary" as const);
    const opcode = text ? OP.text : OP.binary;
    if (k < 0.65) {
      push(encodeFrame({ opcode, payload, maskKey: maskKey(r) }), [{ type, payload }]);
      continue;
    }
    const pieces = splitAt(r, payload, r.int(2, 6));
    pieces.forEach((piece, i) => {
      const last = i === pieces.length - 1;
      push(encodeFrame({ opcode: i === 0 ? opcode : OP.continuation, payload: piece, fin: last, maskKey: maskKey(r) }), last ? [{ type, payload }] : []);
      if (!last && r.chance(0.4)) control();
    });
  }
  const closeAt = at;
  const end = r.next();
  if (end < 0.5) {
    const code = r.pick(VALID_CODES);
    push(encodeFrame({ opcode: OP.close, payload: closePayload(code, randomText(r, r.int(0, 30))), maskKey: maskKey(r) }), [{ type: "close", code }]);
  } else if (end < 0.65) {
    push(encodeFrame({ opcode: OP.close, payload: Buffer.alloc(0), maskKey: maskKey(r) }), [{ type: "close", code: undefined }]);
  }
  return { bytes: Buffer.concat(parts), frames, closeAt };
}

/** Frame start offsets, for header-aware mutations. */
function starts(s: Stream): number[] {
  return [0, ...s.frames.slice(0, -1).map((f) => f.end)];
}

/** One mutation; returns the new bytes and the first offset that changed. */
function mutate(r: Rng, s: Stream): { bytes: Buffer; from: number; how: string } {
  const b = Buffer.from(s.bytes);
  const n = b.length;
  const at = r.int(0, Math.max(0, n - 1));
  switch (r.int(0, 7)) {
    case 0: {
      const flips = r.int(1, 3);
      let from = n;
      for (let i = 0; i < flips; i++) {
        const o = r.int(0, n - 1);
        b[o] = b[o]! ^ (1 << r.int(0, 7));
        from = Math.min(from, o);
      }
      return { bytes: b, from, how: `flip ${flips} bit(s)` };
    }
    case 1:
      b[at] = r.int(0, 255);
      return { bytes: b, from: at, how: `overwrite byte ${at}` };
    case 2:
      return { bytes: b.subarray(0, at), from: at, how: `cut at ${at}` };
    case 3:
      return { bytes: Buffer.concat([b.subarray(0, at), randomBytes(r, r.int(1, 16)), b.subarray(at)]), from: at, how: `insert at ${at}` };
    case 4: {
      const len = r.int(1, Math.max(1, Math.min(64, n - at)));
      return { bytes: Buffer.concat([b.subarray(0, at), b.subarray(at + len)]), from: at, how: `delete ${len} at ${at}` };
    }
    case 5: {
      const len = r.int(1, Math.max(1, Math.min(256, n - at)));
      return { bytes: Buffer.concat([b.subarray(0, at + len), b.subarray(at, at + len), b.subarray(at + len)]), from: at + len, how: `duplicate ${len} at ${at}` };
    }
    case 6: {
      const f = r.pick(starts(s));
      b[f] = r.int(0, 255);
      return { bytes: b, from: f, how: `header byte 0 of the frame at ${f}` };
    }
    default: {
      const f = r.pick(starts(s));
      if (f + 1 >= n) return { bytes: b, from: n, how: "none" };
      b[f + 1] = r.int(0, 255);
      return { bytes: b, from: f + 1, how: `header byte 1 (mask bit, length) of the frame at ${f}` };
    }
  }
}

/* ---------------------------------------------------------------- running one stream */

/** Writes bytes in random chunks (whole, small, or medium), yielding between chunks. */
async function writeChunked(r: Rng, c: RawClient, bytes: Buffer): Promise<void> {
  const mode = r.next();
  if (mode < 0.3 || bytes.length === 0) {
    await c.write(bytes);
    return;
  }
  const max = mode < 0.6 && bytes.length <= 8192 ? 16 : 4096;
  for (let i = 0; i < bytes.length && !c.isClosed; ) {
    const n = r.int(1, max);
    await c.write(bytes.subarray(i, i + n));
    i += n;
  }
}

function describeFrame(f: ServerFrame | Expected): string {
  if (f.type === "close") return `close:${f.code ?? "empty"}`;
  return `${f.type}:${f.payload.length}:${f.payload.subarray(0, 8).toString("hex")}`;
}

const ERROR_REASON: Record<number, string> = { 1002: "badframe", 1007: "badencoding", 1009: "badsize" };

/** How fuzzed connections ended, per kind of stream: "close 1002", "echoed close 4000", "still open"… */
const outcomes = new Map<string, number>();
function count(what: string): void {
  outcomes.set(what, (outcomes.get(what) ?? 0) + 1);
}

/** The invariants every fuzzed connection must keep; returns what broke (empty: nothing). */
async function checkEnd(c: RawClient, id: string, clientCloseCodes: ReadonlySet<number | undefined>): Promise<string[]> {
  const problems: string[] = [];
  // Wait until the server closed TCP, or nothing came for a while.
  let seen = -1;
  const deadline = Date.now() + 3000;
  while (!c.isClosed && Date.now() < deadline) {
    if (c.received.length === seen) break;
    seen = c.received.length;
    await sleep(150);
  }
  for (const f of c.received) {
    if (f.masked || f.rsv !== 0 || !f.fin || !["text", "binary", "pong", "close"].includes(f.type)) problems.push(`malformed server frame ${JSON.stringify({ ...f, payload: f.payload.length })}`);
  }
  const closes = c.received.filter((f) => f.type === "close");
  if (closes.length > 1) problems.push(`${closes.length} close frames`);
  const close = closes[0];
  if (close !== undefined && c.received[c.received.length - 1] !== close) problems.push("frames after the close frame");
  if (close !== undefined) {
    if (!c.isClosed && !(await c.waitClosed(2000))) problems.push("TCP still open 2 s after the server's close frame");
    await until(() => reasons.has(id), 2000, `terminate of ${id}`).catch(() => problems.push("no terminate after the close frame"));
    const reason = reasons.get(id)?.[0];
    const code = close.code;
    const clientMaySend = clientCloseCodes.has(code) || (code !== undefined && clientCloseCodes.has(-1));
    const remote = (reason as { remote?: { code: number } } | undefined)?.remote;
    if (code === undefined) {
      if (!clientCloseCodes.has(undefined)) problems.push("an empty close the client never asked for");
      if (reason !== "remote") problems.push(`empty close but terminate got ${JSON.stringify(reason)}`);
      count("empty close echoed");
    } else if (ERROR_REASON[code] !== undefined && JSON.stringify(reason) === JSON.stringify({ error: ERROR_REASON[code] })) {
      count(`close ${code}`);
    } else if (clientMaySend && remote?.code === code) {
      count("client's close code echoed");
    } else {
      problems.push(`close ${code} with terminate ${JSON.stringify(reason)}${clientMaySend ? "" : " (the client never sent that code)"}`);
    }
  } else if (c.isClosed) {
    problems.push("the server closed TCP without a close frame");
  } else {
    count("still open (waiting for more bytes)");
    // Still open: the connection must be alive and untouched.
    const pid = pids.get(id);
    if (pid === undefined || !isAlive(pid)) problems.push("open socket, dead connection process");
    if (reasons.has(id)) problems.push(`open socket, but terminate already ran: ${JSON.stringify(reasons.get(id))}`);
    c.destroy();
    await until(() => reasons.has(id), 2000, `terminate of ${id}`).catch(() => problems.push("no terminate after the client dropped TCP"));
    const reason = reasons.get(id)?.[0];
    if (reason !== undefined && JSON.stringify(reason) !== JSON.stringify({ error: "closed" })) problems.push(`client dropped TCP but terminate got ${JSON.stringify(reason)}`);
  }
  await sleep(5);
  const n = reasons.get(id)?.length ?? 0;
  if (n !== 1) problems.push(`terminate ran ${n} times`);
  c.destroy();
  return problems;
}

/** Client close codes a mutated stream may have sent: any valid one (-1 stands for "any"). */
const ANY_CLIENT_CODE: ReadonlySet<number | undefined> = new Set([-1, undefined]);

let seq = 0;
async function connect(): Promise<{ c: RawClient; id: string }> {
  const id = `f${++seq}`;
  return { c: await RawClient.open(listener.port, { path: `/?${id}`, timeoutMs: 5000 }), id };
}

/** Takes frames until `n` have arrived (or the socket closed, or 3 s passed). */
async function take(c: RawClient, n: number): Promise<ServerFrame[]> {
  const out: ServerFrame[] = [];
  while (out.length < n) {
    try {
      out.push(await c.next(3000));
    } catch {
      break;
    }
  }
  return out;
}

async function runValid(seed: number): Promise<string[]> {
  const r = rng(seed);
  const s = validStream(r);
  const { c, id } = await connect();
  // Everything before the close first, its answers awaited; then the close (see the "replies
  // lost to an early close" cases in test/websocket/conformance.test.ts: a close in the same read drops them).
  await writeChunked(r, c, s.bytes.subarray(0, s.closeAt));
  const expected = s.frames.filter((f) => f.end <= s.closeAt).flatMap((f) => f.out);
  const got = await take(c, expected.length);
  const problems: string[] = [];
  if (got.map(describeFrame).join(" ") !== expected.map(describeFrame).join(" ")) {
    problems.push(`expected ${expected.map(describeFrame).join(" ")}; got ${got.map(describeFrame).join(" ")}`);
  } else {
    for (let i = 0; i < expected.length; i++) {
      const e = expected[i]!;
      if (e.type !== "close" && !got[i]!.payload.equals(e.payload)) problems.push(`frame ${i}: payload differs`);
    }
  }
  const closeFrame = s.frames.find((f) => f.out.some((o) => o.type === "close"));
  const codes = new Set<number | undefined>();
  if (closeFrame !== undefined) {
    await writeChunked(r, c, s.bytes.subarray(s.closeAt));
    const o = closeFrame.out[0] as { code: number | undefined };
    codes.add(o.code);
    const { close } = await c.nextClose(3000).catch(() => ({ close: undefined }));
    if (close?.code !== o.code) problems.push(`expected close ${o.code ?? "empty"}, got ${close === undefined ? "none" : describeFrame(close)}`);
  } else {
    await c.sendClose(1000);
    codes.add(1000);
  }
  problems.push(...(await checkEnd(c, id, codes)));
  return problems;
}

async function runMutated(seed: number): Promise<string[]> {
  const r = rng(seed);
  const s = validStream(r);
  const m = mutate(r, s);
  const { c, id } = await connect();
  // The untouched prefix first (up to the close frame, if the stream has one: see runValid):
  // every answer it calls for must come back.
  const prefix = Math.min(m.from, s.closeAt);
  await writeChunked(r, c, m.bytes.subarray(0, prefix));
  const expected = s.frames.filter((f) => f.end <= prefix).flatMap((f) => f.out);
  const got = await take(c, expected.length);
  const problems: string[] = [];
  if (got.map(describeFrame).join(" ") !== expected.map(describeFrame).join(" ")) {
    problems.push(`(${m.how}) prefix: expected ${expected.map(describeFrame).join(" ")}; got ${got.map(describeFrame).join(" ")}`);
  }
  await writeChunked(r, c, m.bytes.subarray(prefix));
  problems.push(...(await checkEnd(c, id, ANY_CLIENT_CODE)).map((p) => `(${m.how}) ${p}`));
  return problems;
}

async function runGarbage(seed: number): Promise<string[]> {
  const r = rng(seed);
  const n = r.int(1, 2000);
  const bytes = randomBytes(r, n);
  // Bias toward frames that get past the first checks: masked, small opcodes.
  if (r.chance(0.7)) {
    bytes[0] = (bytes[0]! & 0xf0) | r.pick([0, 1, 2, 8, 9, 10]);
    if (n > 1) bytes[1] = bytes[1]! | 0x80;
  }
  const { c, id } = await connect();
  await writeChunked(r, c, bytes);
  return checkEnd(c, id, ANY_CLIENT_CODE);
}

/* ---------------------------------------------------------------- the cases */

const SEED_BASE = 0x5eed;

async function fuzz(kind: string, n: number, run: (seed: number) => Promise<string[]>, seedOffset: number): Promise<Map<string, number>> {
  const canary = startCanary(listener.port);
  outcomes.clear();
  const failures: string[] = [];
  const seeds = Array.from({ length: n }, (_, i) => SEED_BASE + seedOffset + i);
  await pool(seeds, SCALE.fuzzConcurrency, async (seed) => {
    const problems = await run(seed);
    for (const p of problems) failures.push(`${kind} seed ${seed}: ${p}`);
  });
  const stats = await canary.stop();
  expect(failures.slice(0, 20)).toEqual([]);
  expect(stats.received).toBe(stats.sent);
  expect(stats.outOfOrder).toBe(0);
  expect(stats.sent).toBeGreaterThan(0);
  expect(records.filter((rec) => rec.msg === "process crashed" || rec.msg === "terminate threw")).toEqual([]);
  // Nothing left behind: every fuzzed connection's process and sockets are gone.
  await until(() => processCount() === baseProcs, 3000, `processCount back to ${baseProcs} (is ${processCount()})`);
  await until(() => handles("TCPSocketWrap") === baseSockets && listener.connections === 0, 3000, "sockets back to baseline");
  const ends = [...outcomes.entries()].sort((a, b) => b[1] - a[1]);
  console.log(`fuzz ${kind}: ${n} connections; ends: ${ends.map(([k, v]) => `${k} ×${v}`).join(", ")}; canary ${stats.sent} echoes, max latency ${stats.maxLatency.toFixed(1)} ms`);
  return outcomes;
}

test(
  `valid streams (${SCALE.fuzzValid} seeds): the server sends exactly what the model says`,
  async () => {
    const ends = await fuzz("valid", SCALE.fuzzValid, runValid, 0);
    expect([...ends.keys()].every((k) => k === "client's close code echoed" || k === "empty close echoed")).toBe(true);
  },
  timeout(30_000, 300_000),
);

test(
  `mutated streams (${SCALE.fuzzMutated} seeds): the untouched prefix is answered, every end is a valid one`,
  async () => {
    const ends = await fuzz("mutated", SCALE.fuzzMutated, runMutated, 100_000);
    // the mutations reach more than one kind of ending
    expect(ends.get("close 1002") ?? 0).toBeGreaterThan(0);
    expect(ends.size).toBeGreaterThanOrEqual(3);
  },
  timeout(30_000, 300_000),
);

test(
  `random garbage after the handshake (${SCALE.fuzzGarbage} seeds): every end is a valid one`,
  async () => {
    const ends = await fuzz("garbage", SCALE.fuzzGarbage, runGarbage, 200_000);
    expect(ends.get("close 1002") ?? 0).toBeGreaterThan(0);
  },
  timeout(30_000, 300_000),
);

test("after the fuzzing the listener still serves new connections", async () => {
  const { c, id } = await connect();
  await c.sendText("still here");
  const f = await c.next();
  expect(f.payload.toString()).toBe("still here");
  await c.sendClose(1000);
  expect((await c.nextClose()).close.code).toBe(1000);
  expect(await c.waitClosed()).toBe(true);
  await until(() => reasons.has(id), 2000, "terminate");
});
