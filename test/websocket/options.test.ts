/**
 * The upgrade options (docs/websocket.md, Options): idleTimeout, maxFrameSize (and setOptions),
 * validateUtf8, compress, maxBufferedAmount, and hibernation under an idle timeout —
 * over real sockets, with the raw client or the ws client where compression is needed.
 */
import { deflateRawSync, inflateRawSync, constants as zlib } from "node:zlib";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import WebSocket from "ws";
import {
  binary,
  commands,
  compileRoutes,
  ok,
  processInfo,
  reply,
  self,
  send,
  sendAfter,
  startClear,
  stopListener,
  text,
  upgrade,
  type CallResult,
  type InFrame,
  type Listener,
  type Pid,
  type TerminateReason,
  type WebSocketHandler,
  type WebSocketOptions,
} from "../../src/index.js";
import { sleep, until } from "../support/helpers.js";
import { OP, RawClient, closePayload, whenClosed, type ServerFrame } from "../support/raw-client.js";

type State = { id: string };

const reasons = new Map<string, TerminateReason>();
const handled = new Map<string, InFrame[]>();
const pids = new Map<string, Pid>();

const CHUNK = new Uint8Array(64 * 1024).fill(0x5a);

/**
 * An echo handler with test commands in text frames:
 * "cmd:tick" pushes a text frame every 50 ms; "cmd:flood" pushes 4 × 64 KiB every ms;
 * "cmd:max:N" and "cmd:idle:N" run setOptions. Everything else text or binary is echoed.
 */
function handler(opts: WebSocketOptions, hibernate = false): WebSocketHandler<State> {
  const h = hibernate ? { hibernate: true as const } : undefined;
  return {
    init: (req) => upgrade(req, { id: req.qs }, opts),
    websocketInit(s) {
      pids.set(s.id, self());
      return ok(s, h);
    },
    websocketHandle(frame, s): CallResult<State> {
      let list = handled.get(s.id);
      if (list === undefined) handled.set(s.id, (list = []));
      list.push(frame);
      if (frame.type === "text" && frame.data.startsWith("cmd:")) {
        const [, cmd, arg] = frame.data.split(":");
        switch (cmd) {
          case "tick":
          case "flood":
            send(self(), cmd);
            return reply(text(`started ${cmd}`), s, h);
          case "max":
            return commands([{ setOptions: { maxFrameSize: Number(arg) } }, text(`max ${arg}`)], s, h);
          case "idle":
            return commands([{ setOptions: { idleTimeout: Number(arg) } }, text(`idle ${arg}`)], s, h);
        }
      }
      return frame.type === "text" || frame.type === "binary" ? reply(frame, s, h) : ok(s, h);
    },
    websocketInfo(info, s) {
      if (info === "tick") {
        sendAfter(50, self(), "tick");
        return reply(text("tick"), s, h);
      }
      if (info === "flood") {
        sendAfter(1, self(), "flood");
        return reply([binary(CHUNK), binary(CHUNK), binary(CHUNK), binary(CHUNK)], s, h);
      }
      return ok(s, h);
    },
    terminate(reason, _req, s) {
      reasons.set(s.id, reason);
    },
  };
}

const NAME = "ws-options-test";
let listener: Listener;
const clients = new Set<RawClient>();
const wsClients = new Set<WebSocket>();
let seq = 0;

beforeAll(async () => {
  const dispatch = compileRoutes([
    {
      host: "_",
      paths: [
        ["/idle", handler({ idleTimeout: 150 }), {}],
        ["/hib", handler({ idleTimeout: 150 }, true), {}],
        ["/plain", handler({}), {}],
        ["/max", handler({ maxFrameSize: 100 }), {}],
        ["/max-deflate", handler({ maxFrameSize: 1000, compress: true }), {}],
        ["/noutf8", handler({ validateUtf8: false }), {}],
        ["/compress", handler({ compress: true }), {}],
        ["/bp", handler({ maxBufferedAmount: 256 * 1024 }), {}],
        ["/unlimited", handler({ maxFrameSize: Infinity }), {}],
      ],
    },
  ]);
  listener = await startClear(NAME, { port: 0 }, { dispatch, shutdownTimeout: 500 });
});

afterEach(() => {
  for (const c of clients) c.destroy();
  clients.clear();
  for (const w of wsClients) w.terminate();
  wsClients.clear();
});

afterAll(async () => {
  await stopListener(NAME);
});

async function open(path: string, headers?: Record<string, string>): Promise<{ c: RawClient; id: string }> {
  const id = `o${++seq}`;
  const c = await RawClient.open(listener.port, headers === undefined ? { path: `${path}?${id}` } : { path: `${path}?${id}`, headers });
  clients.add(c);
  return { c, id };
}

async function openWs(path: string, options: WebSocket.ClientOptions): Promise<{ ws: WebSocket; id: string }> {
  const id = `o${++seq}`;
  const ws = new WebSocket(`ws://127.0.0.1:${listener.port}${path}?${id}`, options);
  wsClients.add(ws);
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  return { ws, id };
}

function nextMessage(ws: WebSocket, timeoutMs = 2000): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no message within ${timeoutMs} ms`)), timeoutMs);
    ws.once("message", (data: Buffer, isBinary: boolean) => {
      clearTimeout(t);
      resolve({ data, isBinary });
    });
  });
}

async function reasonOf(id: string, timeoutMs = 2000): Promise<TerminateReason> {
  await until(() => reasons.has(id), timeoutMs, `terminate of ${id}`);
  return reasons.get(id)!;
}

function textOf(f: ServerFrame): string {
  expect(f.type).toBe("text");
  return f.payload.toString("utf8");
}

/** The server's close frame with that code, then the terminate reason. */
async function expectClose(c: RawClient, id: string, code: number, timeoutMs = 2000): Promise<{ before: ServerFrame[]; reason: TerminateReason }> {
  const { close, before } = await c.nextClose(timeoutMs);
  expect(close.code).toBe(code);
  return { before, reason: await reasonOf(id) };
}

/** A compressed (permessage-deflate) payload as a client sends it: raw deflate, sync flush, tail removed. */
function deflateMessage(data: Uint8Array): Buffer {
  const out = deflateRawSync(data, { finishFlush: zlib.Z_SYNC_FLUSH });
  return out.subarray(0, out.length - 4);
}

function inflateMessage(data: Uint8Array): Buffer {
  return inflateRawSync(Buffer.concat([data, Buffer.from([0, 0, 0xff, 0xff])]), { finishFlush: zlib.Z_SYNC_FLUSH });
}

/** A data frame's message on a deflate connection negotiated with server_no_context_takeover. */
function bodyOf(f: ServerFrame): string {
  return (f.rsv === 4 ? inflateMessage(f.payload) : f.payload).toString("utf8");
}

/** Each server message compressed on its own, so the test can inflate it without a shared window. */
const DEFLATE_OFFER = { "Sec-WebSocket-Extensions": "permessage-deflate; server_no_context_takeover; client_no_context_takeover" };

describe("idleTimeout", () => {
  test("an idle connection is closed with 1000 and terminate gets 'timeout'", async () => {
    const { c, id } = await open("/idle");
    const t0 = Date.now();
    const { before, reason } = await expectClose(c, id, 1000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(100);
    expect(before).toEqual([]);
    expect(reason).toBe("timeout");
  });

  // BUG: the port closes with ws's close(), which keeps the socket open up to 30 s waiting
  // for the client's close frame; Cowboy closes right after sending (docs/websocket.md).
  test("after the idle close the server closes TCP without waiting for the client's close reply, as Cowboy", async () => {
    const { c, id } = await open("/idle");
    await expectClose(c, id, 1000);
    // The raw client never answers the close frame.
    expect(await c.waitClosed(2000)).toBe(true);
  });

  test("received pings keep the connection alive past the timeout", async () => {
    const { c, id } = await open("/idle");
    for (let i = 0; i < 10; i++) {
      await c.sendPing(`p${i}`);
      const pong = await c.next();
      expect(pong.type).toBe("pong");
      expect(pong.payload.toString()).toBe(`p${i}`);
      await sleep(50);
    }
    // ~500 ms, more than three timeouts
    expect(reasons.has(id)).toBe(false);
    const { reason } = await expectClose(c, id, 1000);
    expect(reason).toBe("timeout");
  });

  test("a partial frame trickled one byte per 50 ms keeps the connection alive", async () => {
    const { c, id } = await open("/idle");
    // 6 header bytes + 10 payload bytes = 16 bytes over ~800 ms
    await c.sendFrame({ opcode: OP.text, payload: "keep alive" }, 1, 50);
    expect(textOf(await c.next())).toBe("keep alive");
    expect(reasons.has(id)).toBe(false);
    const { reason } = await expectClose(c, id, 1000);
    expect(reason).toBe("timeout");
  });

  test("frames the server sends (an info every 50 ms) do not keep it alive", async () => {
    const { c, id } = await open("/idle");
    const t0 = Date.now();
    await c.sendText("cmd:tick");
    const { before, reason } = await expectClose(c, id, 1000, 2000);
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(reason).toBe("timeout");
    expect(before.length).toBeGreaterThanOrEqual(2);
    expect(textOf(before[0]!)).toBe("started tick");
    expect(before.slice(1).every((f) => f.type === "text" && f.payload.toString() === "tick")).toBe(true);
  });

  test("setOptions { idleTimeout } at run time arms the new timeout", async () => {
    const { c, id } = await open("/plain");
    await sleep(200);
    expect(reasons.has(id)).toBe(false);
    await c.sendText("cmd:idle:150");
    expect(textOf(await c.next())).toBe("idle 150");
    const { reason } = await expectClose(c, id, 1000, 1500);
    expect(reason).toBe("timeout");
  });

  test("setOptions { idleTimeout: Infinity } disables it; setting the same timeout again re-arms it from then", async () => {
    const { c, id } = await open("/idle");
    const counted = listener.connections;
    await c.sendText("cmd:idle:Infinity");
    expect(textOf(await c.next())).toBe("idle Infinity");
    await sleep(450);
    expect(reasons.has(id)).toBe(false);
    await c.sendText("cmd:idle:150");
    expect(textOf(await c.next())).toBe("idle 150");
    await c.sendText("cmd:idle:150");
    expect(textOf(await c.next())).toBe("idle 150");
    const t0 = Date.now();
    const { reason } = await expectClose(c, id, 1000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    expect(reason).toBe("timeout");
    expect(await c.waitClosed(2000)).toBe(true);
    await until(() => listener.connections < counted, 2000, "the listener to count the connection out");
  });

  test("a handler that always hibernates still closes on the idle timeout", async () => {
    const { c, id } = await open("/hib");
    await c.sendText("wake up");
    expect(textOf(await c.next())).toBe("wake up");
    const pid = pids.get(id)!;
    await until(() => processInfo(pid)?.hibernated === true, 1000, "the connection to hibernate");
    const { reason } = await expectClose(c, id, 1000);
    expect(reason).toBe("timeout");
  });

  test("a hibernating connection kept alive by pings, then closed on idle", async () => {
    const { c, id } = await open("/hib");
    for (let i = 0; i < 6; i++) {
      await c.sendPing("x");
      expect((await c.next()).type).toBe("pong");
      await sleep(60);
    }
    expect(reasons.has(id)).toBe(false);
    const { reason } = await expectClose(c, id, 1000);
    expect(reason).toBe("timeout");
  });
});

describe("maxFrameSize", () => {
  test("a frame exactly at the limit is accepted", async () => {
    const { c, id } = await open("/max");
    const payload = Buffer.alloc(100, 0x41);
    await c.sendBinary(payload);
    const f = await c.next();
    expect(f.type).toBe("binary");
    expect(f.payload.equals(payload)).toBe(true);
    await c.sendText("a".repeat(100));
    expect(textOf(await c.next())).toBe("a".repeat(100));
    expect(reasons.has(id)).toBe(false);
  });

  test("a frame one byte above the limit: 1009 and { error: 'badsize' }", async () => {
    const { c, id } = await open("/max");
    await c.sendBinary(Buffer.alloc(101, 0x41));
    const { before, reason } = await expectClose(c, id, 1009);
    expect(before).toEqual([]);
    expect(reason).toEqual({ error: "badsize" });
    expect(handled.get(id)).toBeUndefined();
  });

  test("a large declared 64-bit length is refused from the header alone", async () => {
    const { c, id } = await open("/max");
    // header of a 10 MB frame, no payload sent
    const header = Buffer.from([0x82, 0xff, 0, 0, 0, 0, 0, 0x98, 0x96, 0x80, 1, 2, 3, 4]);
    await c.write(header);
    const { reason } = await expectClose(c, id, 1009);
    expect(reason).toEqual({ error: "badsize" });
  });

  test("fragments adding up to exactly the limit are accepted", async () => {
    const { c } = await open("/max");
    await c.sendFrame({ opcode: OP.text, payload: "x".repeat(60), fin: false });
    await c.sendFrame({ opcode: OP.continuation, payload: "y".repeat(40) });
    expect(textOf(await c.next())).toBe("x".repeat(60) + "y".repeat(40));
  });

  test("a message reassembled from fragments above the limit: 1009 and { error: 'badsize' }", async () => {
    const { c, id } = await open("/max");
    await c.sendFrame({ opcode: OP.binary, payload: Buffer.alloc(60), fin: false });
    await c.sendFrame({ opcode: OP.continuation, payload: Buffer.alloc(41) });
    const { before, reason } = await expectClose(c, id, 1009);
    expect(before).toEqual([]);
    expect(reason).toEqual({ error: "badsize" });
    expect(handled.get(id)).toBeUndefined();
  });

  test("compressed (ws client): inflated size at the limit accepted, above it 1009 and { error: 'badsize' }", async () => {
    const { ws, id } = await openWs("/max-deflate", { perMessageDeflate: { threshold: 0 } });
    expect(ws.extensions).toContain("permessage-deflate");
    const got = nextMessage(ws);
    ws.send("a".repeat(1000));
    expect((await got).data.toString()).toBe("a".repeat(1000));
    const closed = whenClosed(ws);
    ws.send("a".repeat(5000));
    const [code] = await closed;
    expect(code).toBe(1009);
    expect(await reasonOf(id)).toEqual({ error: "badsize" });
    expect(handled.get(id)?.length).toBe(1);
  });

  test("compressed (raw client): a tiny frame that inflates above the limit: 1009", async () => {
    const { c, id } = await open("/max-deflate", DEFLATE_OFFER);
    expect(c.response!.headers["sec-websocket-extensions"]).toMatch(/permessage-deflate/);
    const ok1000 = deflateMessage(Buffer.alloc(1000, 0x62));
    expect(ok1000.length).toBeLessThan(100);
    await c.sendFrame({ opcode: OP.text, payload: ok1000, rsv: 4 });
    const echoed = await c.next();
    expect(echoed.type).toBe("text");
    expect(bodyOf(echoed)).toBe("b".repeat(1000));
    const bomb = deflateMessage(Buffer.alloc(100_000, 0x62));
    expect(bomb.length).toBeLessThan(1000);
    await c.sendFrame({ opcode: OP.text, payload: bomb, rsv: 4 });
    const { reason } = await expectClose(c, id, 1009);
    expect(reason).toEqual({ error: "badsize" });
  });

  test("setOptions { maxFrameSize } at run time raises and lowers the limit", async () => {
    const { c, id } = await open("/max");
    await c.sendText("cmd:max:200");
    expect(textOf(await c.next())).toBe("max 200");
    await c.sendBinary(Buffer.alloc(200, 1));
    expect((await c.next()).payload.length).toBe(200);
    await c.sendText("cmd:max:50");
    expect(textOf(await c.next())).toBe("max 50");
    await c.sendBinary(Buffer.alloc(50, 1));
    expect((await c.next()).payload.length).toBe(50);
    await c.sendBinary(Buffer.alloc(51, 1));
    const { reason } = await expectClose(c, id, 1009);
    expect(reason).toEqual({ error: "badsize" });
  });

  test("the default limit is 1,000,000 bytes: exactly that is accepted, one more is 1009", async () => {
    const { c, id } = await open("/plain");
    const payload = Buffer.alloc(1_000_000, 3);
    await c.sendBinary(payload);
    const f = await c.next(3000);
    expect(f.payload.length).toBe(1_000_000);
    await c.sendBinary(Buffer.alloc(1_000_001, 3));
    const { reason } = await expectClose(c, id, 1009);
    expect(reason).toEqual({ error: "badsize" });
  });

  test("maxFrameSize: Infinity disables the limit", async () => {
    const { c, id } = await open("/unlimited");
    await c.sendBinary(Buffer.alloc(1_500_000, 4));
    expect((await c.next(3000)).payload.length).toBe(1_500_000);
    expect(reasons.has(id)).toBe(false);
  });

  test("setOptions { maxFrameSize } also governs the inflated size on a deflate connection", async () => {
    const { c, id } = await open("/max-deflate", DEFLATE_OFFER);
    await c.sendText("cmd:max:5000");
    expect(bodyOf(await c.next())).toBe("max 5000");
    await c.sendFrame({ opcode: OP.text, payload: deflateMessage(Buffer.alloc(5000, 0x63)), rsv: 4 });
    expect(bodyOf(await c.next())).toBe("c".repeat(5000));
    await c.sendFrame({ opcode: OP.text, payload: deflateMessage(Buffer.alloc(5001, 0x63)), rsv: 4 });
    const { reason } = await expectClose(c, id, 1009);
    expect(reason).toEqual({ error: "badsize" });
  });

  test("setOptions { maxFrameSize } changes only that connection", async () => {
    const a = await open("/max");
    const b = await open("/max");
    await a.c.sendText("cmd:max:500");
    expect(textOf(await a.c.next())).toBe("max 500");
    await a.c.sendBinary(Buffer.alloc(300));
    expect((await a.c.next()).payload.length).toBe(300);
    await b.c.sendBinary(Buffer.alloc(300));
    const { reason } = await expectClose(b.c, b.id, 1009);
    expect(reason).toEqual({ error: "badsize" });
  });
});

describe("validateUtf8: false", () => {
  test("invalid UTF-8 text reaches the handler; no 1007", async () => {
    const { c, id } = await open("/noutf8");
    await c.sendText(Buffer.from([0x48, 0xff, 0x49]));
    const f = await c.next();
    expect(f.type).toBe("text");
    const seen = handled.get(id)!;
    expect(seen).toHaveLength(1);
    expect(seen[0]!.type).toBe("text");
    expect(typeof seen[0]!.data).toBe("string");
    expect(reasons.has(id)).toBe(false);
    await c.sendText("still fine");
    expect(textOf(await c.next())).toBe("still fine");
  });

  test("invalid UTF-8 split across fragments passes too", async () => {
    const { c, id } = await open("/noutf8");
    await c.sendFrame({ opcode: OP.text, payload: Buffer.from([0x61, 0xe2]), fin: false });
    await c.sendFrame({ opcode: OP.continuation, payload: Buffer.from([0x62]) });
    expect((await c.next()).type).toBe("text");
    expect(reasons.has(id)).toBe(false);
  });

  test("a close reason with invalid UTF-8 is accepted (echoed 1000)", async () => {
    const { c, id } = await open("/noutf8");
    await c.sendFrame({ opcode: OP.close, payload: closePayload(1000, Buffer.from([0xff])) });
    const { reason } = await expectClose(c, id, 1000);
    expect(reason).toMatchObject({ remote: { code: 1000 } });
  });
});

describe("compress", () => {
  test("compress: true negotiates permessage-deflate in the 101", async () => {
    const { c } = await open("/compress", { "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits" });
    expect(c.response!.headers["sec-websocket-extensions"]).toMatch(/^permessage-deflate/);
  });

  test("without compress the offer is declined and RSV1 stays a protocol error", async () => {
    const { c, id } = await open("/plain", { "Sec-WebSocket-Extensions": "permessage-deflate" });
    expect(c.response!.headers["sec-websocket-extensions"]).toBeUndefined();
    await c.sendFrame({ opcode: OP.text, payload: deflateMessage(Buffer.from("hello")), rsv: 4 });
    const { reason } = await expectClose(c, id, 1002);
    expect(reason).toEqual({ error: "badframe" });
  });

  test("compressed messages round-trip (ws client)", async () => {
    const { ws, id } = await openWs("/compress", { perMessageDeflate: { threshold: 0 } });
    expect(ws.extensions).toContain("permessage-deflate");
    const big = "compress me ".repeat(500);
    let got = nextMessage(ws);
    ws.send(big);
    let m = await got;
    expect(m.isBinary).toBe(false);
    expect(m.data.toString()).toBe(big);
    const bin = Buffer.alloc(10_000);
    for (let i = 0; i < bin.length; i++) bin[i] = i % 7;
    got = nextMessage(ws);
    ws.send(bin);
    m = await got;
    expect(m.isBinary).toBe(true);
    expect(Buffer.compare(m.data, bin)).toBe(0);
    got = nextMessage(ws);
    ws.send("short");
    expect((await got).data.toString()).toBe("short");
    expect(handled.get(id)?.map((f) => f.type)).toEqual(["text", "binary", "text"]);
  });

  test("compressed frames on the wire (raw client): RSV1 set, payload inflates to the message", async () => {
    const { c } = await open("/compress", DEFLATE_OFFER);
    const msg = "z".repeat(2000);
    await c.sendFrame({ opcode: OP.text, payload: deflateMessage(Buffer.from(msg)), rsv: 4 });
    const f = await c.next();
    expect(f.type).toBe("text");
    expect(f.rsv).toBe(4);
    expect(f.payload.length).toBeLessThan(2000);
    expect(inflateMessage(f.payload).toString()).toBe(msg);
    // an uncompressed frame is fine on a deflate connection too
    await c.sendText("plain");
    const g = await c.next();
    expect(g.type).toBe("text");
    expect(bodyOf(g)).toBe("plain");
    // and a compressed message split into a compressed first fragment and a continuation
    const deflated = deflateMessage(Buffer.from(msg));
    await c.sendFrame({ opcode: OP.text, payload: deflated.subarray(0, 5), rsv: 4, fin: false });
    await c.sendFrame({ opcode: OP.continuation, payload: deflated.subarray(5) });
    const h = await c.next();
    expect(bodyOf(h)).toBe(msg);
  });

  const CORRUPT = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00, 0x12]);

  test("corrupt deflate data: terminate gets { error: 'badframe' } and the socket closes", async () => {
    const { c, id } = await open("/compress", DEFLATE_OFFER);
    await c.sendFrame({ opcode: OP.binary, payload: CORRUPT, rsv: 4 });
    await c.nextClose();
    expect(await reasonOf(id)).toEqual({ error: "badframe" });
    expect(await c.waitClosed(2000)).toBe(true);
  });

  // BUG: ws answers a zlib error with 1007 and corral passes it through, while its terminate
  // reason says badframe; docs/websocket.md's table sends 1002 for corrupt deflate data.
  test("corrupt deflate data is closed with 1002 (as Cowboy: badframe)", async () => {
    const { c } = await open("/compress", DEFLATE_OFFER);
    await c.sendFrame({ opcode: OP.binary, payload: CORRUPT, rsv: 4 });
    const { close } = await c.nextClose();
    expect(close.code).toBe(1002);
  });
});

describe("maxBufferedAmount", () => {
  test("a client that never reads is disconnected with { error: 'backpressure' }; another connection keeps echoing", async () => {
    const slow = await open("/bp");
    const fast = await open("/bp");
    slow.c.pause();
    await slow.c.sendText("cmd:flood");
    // the other connection works while the flood goes on
    for (let i = 0; i < 3; i++) {
      await fast.c.sendText(`ping ${i}`);
      expect(textOf(await fast.c.next())).toBe(`ping ${i}`);
    }
    expect(await reasonOf(slow.id, 3000)).toEqual({ error: "backpressure" });
    await fast.c.sendText("after");
    expect(textOf(await fast.c.next())).toBe("after");
    expect(reasons.has(fast.id)).toBe(false);
  });

  // BUG: after { error: "backpressure" } the port only queues a 1008 close behind the unsent
  // data and ws then waits 30 s for a close reply that a non-reading client never sends.
  test("the slow client's server socket is released within a bound (not held open waiting for a close reply)", async () => {
    const slow = await open("/bp");
    const fast = await open("/bp");
    const before = listener.connections;
    slow.c.pause();
    await slow.c.sendText("cmd:flood");
    expect(await reasonOf(slow.id, 3000)).toEqual({ error: "backpressure" });
    await until(() => listener.connections === before - 1, 2500, "the slow connection's socket to be closed");
    await fast.c.sendText("alive");
    expect(textOf(await fast.c.next())).toBe("alive");
  });
});
