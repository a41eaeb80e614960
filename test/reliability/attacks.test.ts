/**
 * Attacks by one client that used to cost the server without bound, each run for real over
 * 127.0.0.1 and bounded in count and time:
 *
 * - Pings from a client that never reads: every pong counts against maxBufferedAmount.
 * - Big frames queued faster than an async handler takes them: reading pauses on bytes
 *   (maxQueuedBytes), counted after inflating, not on a count of frames.
 * - A message in too many fragments: 1009 and { error: "badsize" }, the two agreeing.
 */
import type { Socket } from "node:net";
import { deflateRawSync, constants as zlib } from "node:zlib";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  compileRoutes,
  exit,
  ok,
  processInfo,
  reply,
  self,
  startClear,
  stopListener,
  upgrade,
  type Listener,
  type Pid,
  type TerminateReason,
  type WebSocketHandler,
  type WebSocketOptions,
} from "../../src/index.js";
import { sleep, until } from "../support/helpers.js";
import { OP, RawClient, encodeFrame } from "../support/raw-client.js";
import { fullGc } from "../support/measure.js";

type State = { id: string; handled: number };

const terms = new Map<string, TerminateReason>();
const counts = new Map<string, State>();
const pids = new Map<string, Pid>();

/** Route options by test, picked by the path. */
const ROUTES: Record<string, WebSocketOptions> = {
  "/pings": { maxBufferedAmount: 256 * 1024 },
  "/slow": { maxQueuedBytes: 2 * 1024 * 1024 },
  "/slow-deflate": { maxQueuedBytes: 2 * 1024 * 1024, compress: true },
  "/slow-frames": {},
  "/fragments": {},
};

/** Where the /slow-deflate handler waits before it takes its first frame, while set. */
let gate: Promise<void> | null = null;

/** Echoes short texts, ignores pings (ws would have answered them; corral does), awaits `delayMs` per data frame. */
function handler(delayMs: number): WebSocketHandler<State, WebSocketOptions> {
  return {
    init: (req, opts) => upgrade(req, { id: req.qs, handled: 0 }, opts),
    websocketInit(s) {
      counts.set(s.id, s);
      pids.set(s.id, self());
      return ok(s);
    },
    async websocketHandle(frame, s) {
      s.handled++;
      if (gate !== null) await gate.finally(() => (gate = null));
      if (delayMs > 0 && (frame.type === "text" || frame.type === "binary")) await sleep(delayMs);
      return frame.type === "text" && frame.data.length < 64 ? reply(frame, s) : ok(s);
    },
    terminate(reason, _req, s) {
      terms.set(s.id, reason);
    },
  };
}

/** Synchronous for pings, so the flood is answered as fast as ws can parse it. */
const fast: WebSocketHandler<State, WebSocketOptions> = {
  ...handler(0),
  websocketHandle(frame, s) {
    s.handled++;
    return frame.type === "text" ? reply(frame, s) : ok(s);
  },
};

const NAME = "reliability-attacks";
let listener: Listener;
let seq = 0;

beforeAll(async () => {
  const slow = handler(20);
  const paths = Object.entries(ROUTES).map(([path, opts]) => [path, path === "/pings" || path === "/fragments" ? fast : slow, opts] as const);
  listener = await startClear(NAME, { port: 0 }, { dispatch: compileRoutes([{ host: "_", paths }]), shutdownTimeout: 500 });
});

afterAll(async () => {
  await stopListener(NAME);
});

async function open(path: string, headers?: Record<string, string>): Promise<{ c: RawClient; id: string }> {
  const id = `a${++seq}`;
  const c = await RawClient.open(listener.port, { path: `${path}?${id}`, headers });
  return { c, id };
}

/** Heap plus buffers outside it, live ones only (after a full GC): what a flood makes the server hold. */
function held(): number {
  fullGc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/** Samples held() - base every 25 ms; stop() returns the peak. */
function sampleHeld(base: number): () => number {
  let peak = 0;
  const t = setInterval(() => (peak = Math.max(peak, held() - base)), 25);
  return () => {
    clearInterval(t);
    return Math.max(peak, held() - base);
  };
}

/** Writes `chunk` up to `times` times, waiting for drain, until stop() or the socket closes; the count written. */
async function flood(c: RawClient, chunk: Buffer, times: number, stop: () => boolean): Promise<number> {
  let n = 0;
  while (n < times && !stop() && !c.isClosed && !c.socket.destroyed) {
    n++;
    if (!c.socket.write(chunk)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(t);
          resolve();
        };
        const t = setTimeout(done, 200);
        c.socket.once("drain", done);
      });
    }
  }
  return n;
}

describe("pings from a client that never reads", () => {
  test("the pongs count against maxBufferedAmount: 1008 / { error: 'backpressure' }, memory bounded", async () => {
    const { c, id } = await open("/pings");
    c.pause();
    const stop = sampleHeld(held());
    // 1,000 pings of 125 bytes per write, up to 400 writes: 52 MB of pongs if nothing stopped them.
    const pings = Buffer.concat(Array.from({ length: 1000 }, () => encodeFrame({ opcode: OP.ping, payload: Buffer.alloc(125, 0x70) })));
    const written = await flood(c, pings, 400, () => terms.has(id));
    await until(() => terms.has(id), 10_000, "the pinging connection to end");
    const peak = stop();
    console.log(`ping flood: ${written * 1000} pings sent, ${counts.get(id)!.handled} answered, closed ${JSON.stringify(terms.get(id))}, peak held ${(peak / 2 ** 20).toFixed(1)} MiB`);
    expect(terms.get(id)).toEqual({ error: "backpressure" });
    // Ended long before the flood was done with: the server stopped answering, not the client sending.
    expect(written).toBeLessThan(400);
    expect(counts.get(id)!.handled).toBeLessThan(400 * 1000);
    // 256 KiB of pongs in node plus the kernel's buffers, not tens of megabytes.
    expect(peak).toBeLessThan(24 * 1024 * 1024);
    c.destroy();
  }, 30_000);
});

describe("frames queued faster than the handler takes them", () => {
  /** Writes `bytes` `times` times to a handler that awaits 20 ms per frame; the bytes the server held at their peak. */
  async function bigFrames(path: string, bytes: Buffer, times: number, headers?: Record<string, string>): Promise<{ peak: number; id: string; c: RawClient }> {
    const { c, id } = await open(path, headers);
    const stop = sampleHeld(held());
    await flood(c, bytes, times, () => false);
    // Long enough for an unbounded server to read all of it (60 MB at loopback speed).
    await sleep(1500);
    return { peak: stop(), id, c };
  }

  test("reading pauses on bytes: 60 frames of 999,000 B park at most maxQueuedBytes plus a frame or two", async () => {
    const payload = Buffer.alloc(999_000, 0x61);
    const { peak, id, c } = await bigFrames("/slow", encodeFrame({ opcode: OP.binary, payload }), 60);
    console.log(`big frames: peak held ${(peak / 2 ** 20).toFixed(1)} MiB for 60 × 999,000 B`);
    // 2 MiB budget + a frame in the handler + one frame being read + socket buffers; 60 MB without the bound.
    expect(peak).toBeLessThan(16 * 1024 * 1024);
    // Nothing lost: the handler gets every frame in the end.
    await until(() => counts.get(id)!.handled === 60, 10_000, "all 60 frames handled");
    expect(terms.has(id)).toBe(false);
    c.destroy();
    await until(() => terms.has(id), 5000, "the connection to end");
  }, 30_000);

  /** `n` permessage-deflate messages of about a kilobyte each, each inflating to 999,000 × 'a'. */
  function bombs(n: number): Buffer {
    const deflated = deflateRawSync(Buffer.alloc(999_000, 0x61), { finishFlush: zlib.Z_SYNC_FLUSH });
    const wire = deflated.subarray(0, deflated.length - 4);
    expect(wire.length).toBeLessThan(2000);
    const frame = encodeFrame({ opcode: OP.binary, payload: wire, rsv: 4 });
    return Buffer.concat(Array.from({ length: n }, () => frame));
  }
  const DEFLATE = { "Sec-WebSocket-Extensions": "permessage-deflate" };

  test("inflated bytes count, not wire bytes: 1 KB frames inflating to 999,000 B park no more", async () => {
    const stop = sampleHeld(held());
    let release = (): void => {};
    gate = new Promise<void>((resolve) => (release = resolve));
    const { c, id } = await open("/slow-deflate", DEFLATE);
    await c.write(bombs(30));
    // The handler sits on the first message; everything the server inflates meanwhile waits in the mailbox.
    await sleep(1500);
    const peak = stop();
    const queued = processInfo(pids.get(id)!)!.messageQueueLen;
    console.log(`deflate bombs: ${queued} queued while the handler waits, peak held ${(peak / 2 ** 20).toFixed(1)} MiB`);
    release();
    // 2 MiB of budget holds two of them; 29 (29 MB) if every message read were inflated.
    expect(queued).toBeLessThanOrEqual(3);
    expect(peak).toBeLessThan(16 * 1024 * 1024);
    await until(() => counts.get(id)!.handled === 30, 10_000, "all 30 messages handled");
    expect(terms.has(id)).toBe(false);
    // Held and released again and again: the server's socket gathers no close listener per hold.
    const ports = (listener as unknown as { ports: { all(): Array<{ _socket: Socket }> } }).ports.all();
    for (const port of ports) expect(port._socket.listenerCount("close")).toBeLessThanOrEqual(2);
    c.destroy();
    await until(() => terms.has(id), 5000, "the connection to end");
  }, 30_000);

  test("a connection killed while its inflating waits for the mailbox leaves the listener", async () => {
    const base = listener.connections;
    const { c, id } = await open("/slow-deflate", DEFLATE);
    await c.write(bombs(30));
    await until(() => counts.get(id)!.handled >= 3, 5000, "the mailbox to fill");
    exit(pids.get(id)!, "kill");
    await until(() => listener.connections === base, 5000, "the port to leave the listener");
    c.destroy();
  }, 30_000);

  test("nothing is lost: once the handler catches up, every frame arrives, in order", async () => {
    const { c, id } = await open("/slow");
    const frames = Array.from({ length: 8 }, (_, i) => encodeFrame({ opcode: OP.binary, payload: Buffer.alloc(900_000, i) }));
    await c.write(Buffer.concat(frames));
    await c.sendText("done");
    const echoed = await c.next(10_000);
    expect(echoed.type === "text" && echoed.payload.toString()).toBe("done");
    expect(counts.get(id)!.handled).toBe(9);
    c.destroy();
  }, 30_000);
});

describe("a message in too many fragments", () => {
  test("16,385 fragments: 1009 and { error: 'badsize' }, the limit documented in docs/websocket.md", async () => {
    const { c, id } = await open("/fragments");
    const first = encodeFrame({ opcode: OP.text, payload: "a", fin: false });
    const more = encodeFrame({ opcode: OP.continuation, payload: "a", fin: false });
    await c.write(Buffer.concat([first, ...Array.from({ length: 16_384 }, () => more)]));
    const { close } = await c.nextClose(5000);
    expect(close.code).toBe(1009);
    await until(() => terms.has(id), 2000, "terminate");
    expect(terms.get(id)).toEqual({ error: "badsize" });
    c.destroy();
  }, 30_000);

  test("16,384 fragments are one message", async () => {
    const { c } = await open("/fragments");
    const first = encodeFrame({ opcode: OP.text, payload: "", fin: false });
    const more = encodeFrame({ opcode: OP.continuation, payload: "", fin: false });
    const last = encodeFrame({ opcode: OP.continuation, payload: "ok", fin: true });
    await c.write(Buffer.concat([first, ...Array.from({ length: 16_382 }, () => more), last]));
    const f = await c.next(5000);
    expect(f.type === "text" && f.payload.toString()).toBe("ok");
    c.destroy();
  }, 30_000);
});
