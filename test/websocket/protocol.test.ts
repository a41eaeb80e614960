/**
 * RFC 6455 framing as corral's WebSocket connections see it, over real sockets with a raw
 * client: each case checks the exact close code on the wire and the terminate reason
 * (docs/websocket.md, "Terminate reasons and close codes").
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import {
  compileRoutes,
  ok,
  reply,
  startClear,
  stopListener,
  text,
  upgrade,
  type InFrame,
  type Listener,
  type TerminateReason,
  type WebSocketHandler,
} from "../../src/index.js";
import { until } from "../support/helpers.js";
import { OP, RawClient, closePayload, encodeFrame, type ServerFrame } from "../support/raw-client.js";
import { serverWrites } from "../support/writes.js";

type State = { id: string };

/** Per connection id (the query string): what terminate got, what websocketHandle saw. */
const reasons = new Map<string, TerminateReason>();
const handled = new Map<string, InFrame[]>();

const echo: WebSocketHandler<State> = {
  init: (req) => upgrade(req, { id: req.qs }),
  websocketHandle(frame, s) {
    record(s.id, frame);
    return frame.type === "text" || frame.type === "binary" ? reply(frame, s) : ok(s);
  },
  terminate(reason, _req, s) {
    reasons.set(s.id, reason);
  },
};

/** Same, but websocketInit greets first: shows the order init → first frame. */
const greeter: WebSocketHandler<State> = {
  ...echo,
  websocketInit: (s) => reply(text("init"), s),
};

function record(id: string, frame: InFrame): void {
  let list = handled.get(id);
  if (list === undefined) handled.set(id, (list = []));
  list.push(frame);
}

const NAME = "ws-protocol-test";
let listener: Listener;
const clients = new Set<RawClient>();
let seq = 0;

beforeAll(async () => {
  const dispatch = compileRoutes([
    {
      host: "_",
      paths: [
        ["/echo", echo, {}],
        ["/greet", greeter, {}],
      ],
    },
  ]);
  listener = await startClear(NAME, { port: 0 }, { dispatch, shutdownTimeout: 500 });
});

afterEach(() => {
  for (const c of clients) c.destroy();
  clients.clear();
});

afterAll(async () => {
  await stopListener(NAME);
});

/** Opens a connection with a fresh id; returns the client and the id. */
async function open(path = "/echo", extra?: Uint8Array): Promise<{ c: RawClient; id: string }> {
  const id = `c${++seq}`;
  const c = await RawClient.open(listener.port, extra === undefined ? { path: `${path}?${id}` } : { path: `${path}?${id}`, extra });
  clients.add(c);
  return { c, id };
}

async function reasonOf(id: string): Promise<TerminateReason> {
  await until(() => reasons.has(id), 2000, `terminate of ${id}`);
  return reasons.get(id)!;
}

/** The server's close frame, its code, and that it then closes TCP; plus the terminate reason. */
async function expectClosed(c: RawClient, id: string, code: number | undefined): Promise<{ close: ServerFrame; before: ServerFrame[]; reason: TerminateReason }> {
  const { close, before } = await c.nextClose();
  expect(close.masked).toBe(false);
  if (code === undefined) expect(close.payload.length).toBe(0);
  else expect(close.code).toBe(code);
  const reason = await reasonOf(id);
  expect(await c.waitClosed(2000)).toBe(true);
  return { close, before, reason };
}

function textOf(f: ServerFrame): string {
  expect(f.type).toBe("text");
  return f.payload.toString("utf8");
}

async function expectEchoStillWorks(c: RawClient): Promise<void> {
  await c.sendText("still there?");
  expect(textOf(await c.next())).toBe("still there?");
}

describe("framing that must be accepted", () => {
  test("a text frame fed one byte at a time is echoed", async () => {
    const { c, id } = await open();
    await c.sendFrame({ opcode: OP.text, payload: "byte by byte" }, 1);
    const f = await c.next();
    expect(f).toMatchObject({ fin: true, rsv: 0, opcode: OP.text, masked: false });
    expect(textOf(f)).toBe("byte by byte");
    // and a 16-bit-length binary frame, header and mask split too
    const big = Buffer.alloc(200, 7);
    await c.sendFrame({ opcode: OP.binary, payload: big }, 1);
    const g = await c.next();
    expect(g.type).toBe("binary");
    expect(g.payload.equals(big)).toBe(true);
    expect(reasons.has(id)).toBe(false);
  });

  test("a text frame in the same TCP write as the handshake is echoed, after websocketInit", async () => {
    const { c, id } = await open("/greet", encodeFrame({ opcode: OP.text, payload: "early bird" }));
    expect(textOf(await c.next())).toBe("init");
    expect(textOf(await c.next())).toBe("early bird");
    expect(handled.get(id)).toEqual([{ type: "text", data: "early bird" }]);
  });

  test("several frames in the handshake's write, split at odd places afterwards, all echoed in order", async () => {
    const extra = Buffer.concat([encodeFrame({ opcode: OP.text, payload: "one" }), encodeFrame({ opcode: OP.text, payload: "two" })]);
    const { c } = await open("/echo", extra);
    const rest = Buffer.concat([encodeFrame({ opcode: OP.text, payload: "three" }), encodeFrame({ opcode: OP.binary, payload: Buffer.from([1, 2, 3]) })]);
    await c.write(rest, 3);
    expect(textOf(await c.next())).toBe("one");
    expect(textOf(await c.next())).toBe("two");
    expect(textOf(await c.next())).toBe("three");
    const b = await c.next();
    expect(b.type).toBe("binary");
    expect([...b.payload]).toEqual([1, 2, 3]);
  });

  test("16-bit length frames are echoed (126 and 65535 bytes)", async () => {
    const { c } = await open();
    for (const n of [126, 65535]) {
      const payload = Buffer.alloc(n, n & 0xff);
      await c.sendFrame({ opcode: OP.binary, payload, lengthForm: 16 });
      const f = await c.next();
      expect(f.type).toBe("binary");
      expect(f.payload.length).toBe(n);
      expect(f.payload.equals(payload)).toBe(true);
    }
  });

  test("64-bit length frames are echoed (65536 and 300000 bytes)", async () => {
    const { c } = await open();
    for (const n of [65536, 300_000]) {
      const payload = Buffer.alloc(n);
      for (let i = 0; i < n; i++) payload[i] = (i * 31) & 0xff;
      await c.sendFrame({ opcode: OP.binary, payload, lengthForm: 64 });
      const f = await c.next();
      expect(f.type).toBe("binary");
      expect(f.payload.length).toBe(n);
      expect(f.payload.equals(payload)).toBe(true);
    }
  });

  test("an empty text frame and an empty binary frame are echoed", async () => {
    const { c, id } = await open();
    await c.sendText("");
    await c.sendBinary(new Uint8Array(0));
    const t = await c.next();
    expect(t.type).toBe("text");
    expect(t.payload.length).toBe(0);
    const b = await c.next();
    expect(b.type).toBe("binary");
    expect(b.payload.length).toBe(0);
    expect(handled.get(id)?.map((f) => f.type)).toEqual(["text", "binary"]);
  });

  test("fragments with a ping interleaved: the pong carries the ping's payload, the message is reassembled", async () => {
    const { c, id } = await open();
    await c.sendFrame({ opcode: OP.text, payload: "frag", fin: false });
    await c.sendFrame({ opcode: OP.ping, payload: "mid-ping" });
    await c.sendFrame({ opcode: OP.continuation, payload: "men", fin: false });
    await c.sendFrame({ opcode: OP.continuation, payload: "ted" });
    const pong = await c.next();
    expect(pong.type).toBe("pong");
    expect(pong.payload.toString()).toBe("mid-ping");
    const f = await c.next();
    expect(f.fin).toBe(true);
    expect(textOf(f)).toBe("fragmented");
    await until(() => (handled.get(id)?.length ?? 0) >= 2, 1000, "frames handled");
    const seen = handled.get(id)!;
    expect(seen[0]!.type).toBe("ping");
    expect(Buffer.from(seen[0]!.data as Uint8Array).toString()).toBe("mid-ping");
    expect(seen[1]).toEqual({ type: "text", data: "fragmented" });
  });

  test("a fragmented binary message is reassembled before the handler sees it", async () => {
    const { c, id } = await open();
    await c.sendFrame({ opcode: OP.binary, payload: Buffer.from([1, 2]), fin: false });
    await c.sendFrame({ opcode: OP.continuation, payload: Buffer.from([]), fin: false });
    await c.sendFrame({ opcode: OP.continuation, payload: Buffer.from([3]) });
    const f = await c.next();
    expect(f.type).toBe("binary");
    expect([...f.payload]).toEqual([1, 2, 3]);
    expect(handled.get(id)?.length).toBe(1);
  });

  test("ping payload is echoed in the pong, and the handler then gets the ping", async () => {
    const { c, id } = await open();
    const payload = Buffer.alloc(125);
    for (let i = 0; i < 125; i++) payload[i] = i;
    await c.sendPing(payload);
    const pong = await c.next();
    expect(pong).toMatchObject({ type: "pong", fin: true, masked: false });
    expect(pong.payload.equals(payload)).toBe(true);
    await c.sendPing("");
    const empty = await c.next();
    expect(empty.type).toBe("pong");
    expect(empty.payload.length).toBe(0);
    await until(() => (handled.get(id)?.length ?? 0) === 2, 1000, "pings handled");
    expect(handled.get(id)!.map((f) => f.type)).toEqual(["ping", "ping"]);
  });

  test("a pong from the client reaches the handler and gets no answer", async () => {
    const { c, id } = await open();
    await c.sendFrame({ opcode: OP.pong, payload: "unsolicited" });
    await c.sendText("after");
    expect(textOf(await c.next())).toBe("after");
    const seen = handled.get(id)!;
    expect(seen[0]!.type).toBe("pong");
    expect(Buffer.from(seen[0]!.data as Uint8Array).toString()).toBe("unsolicited");
  });

  test("UTF-8 split inside a code point across fragments is accepted when valid once joined", async () => {
    const { c, id } = await open();
    const bytes = Buffer.from("é€😀", "utf8"); // 2 + 3 + 4 bytes
    await c.sendFrame({ opcode: OP.text, payload: bytes.subarray(0, 1), fin: false });
    await c.sendFrame({ opcode: OP.continuation, payload: bytes.subarray(1, 4), fin: false });
    await c.sendFrame({ opcode: OP.continuation, payload: bytes.subarray(4, 7), fin: false });
    await c.sendFrame({ opcode: OP.continuation, payload: bytes.subarray(7) });
    expect(textOf(await c.next())).toBe("é€😀");
    expect(handled.get(id)).toEqual([{ type: "text", data: "é€😀" }]);
    expect(reasons.has(id)).toBe(false);
  });
});

describe("frames the server writes", () => {
  test("text frames at each header boundary, in multi-byte UTF-8, arrive whole, final and unmasked", async () => {
    const { c } = await open();
    for (const bytes of [0, 1, 125, 126, 127, 65535, 65536, 200_001]) {
      // "é" is two bytes in UTF-8: the header form follows the byte length, not the characters.
      const text = "é".repeat(Math.floor(bytes / 2)) + (bytes % 2 === 1 ? "a" : "");
      await c.sendFrame({ opcode: OP.text, payload: text });
      const f = await c.next();
      expect(f).toMatchObject({ fin: true, rsv: 0, opcode: OP.text, masked: false });
      expect(f.payload.length).toBe(bytes);
      expect(f.payload.toString("utf8")).toBe(text);
    }
  });

  test("the replies to frames that came in one TCP write leave in one socket write", async () => {
    const { c } = await open();
    await expectEchoStillWorks(c);
    const texts = ["a", "bb", "ccc", "dddd", "eeeee"];
    const writes = await serverWrites(c.socket, async () => {
      await c.write(Buffer.concat(texts.map((t) => encodeFrame({ opcode: OP.text, payload: t }))));
      for (const t of texts) expect(textOf(await c.next())).toBe(t);
    });
    // One writev of five chunks: a frame each, header and payload in one buffer.
    expect(writes).toEqual([5]);
  });
});

describe("protocol errors: 1002 and { error: 'badframe' }", () => {
  async function expectBadframe(build: (c: RawClient) => Promise<void>): Promise<void> {
    const { c, id } = await open();
    await build(c);
    const { before, reason } = await expectClosed(c, id, 1002);
    expect(before).toEqual([]);
    expect(reason).toEqual({ error: "badframe" });
    expect(handled.get(id)).toBeUndefined();
  }

  test("an unmasked client frame", async () => {
    await expectBadframe((c) => c.sendFrame({ opcode: OP.text, payload: "naked", mask: false }));
  });

  test.each([
    ["RSV1", 4],
    ["RSV2", 2],
    ["RSV3", 1],
  ])("%s set without a negotiated extension", async (_name, rsv) => {
    await expectBadframe((c) => c.sendFrame({ opcode: OP.text, payload: "rsv", rsv }));
  });

  test.each([3, 7, 0xb, 0xf])("reserved opcode %i", async (opcode) => {
    await expectBadframe((c) => c.sendFrame({ opcode, payload: "x" }));
  });

  test("a fragmented control frame (ping with fin=0)", async () => {
    await expectBadframe((c) => c.sendFrame({ opcode: OP.ping, payload: "p", fin: false }));
  });

  test("a ping with a 126-byte payload", async () => {
    await expectBadframe((c) => c.sendFrame({ opcode: OP.ping, payload: Buffer.alloc(126, 1) }));
  });

  test("a close with a 126-byte payload", async () => {
    await expectBadframe((c) => c.sendFrame({ opcode: OP.close, payload: closePayload(1000, "r".repeat(124)) }));
  });

  test("a continuation frame without a start", async () => {
    await expectBadframe((c) => c.sendFrame({ opcode: OP.continuation, payload: "orphan" }));
  });

  test("a new text frame while a fragmented message is open", async () => {
    await expectBadframe(async (c) => {
      await c.sendFrame({ opcode: OP.text, payload: "first", fin: false });
      await c.sendFrame({ opcode: OP.text, payload: "second" });
    });
  });

  test("a new binary frame while a fragmented text message is open", async () => {
    await expectBadframe(async (c) => {
      await c.sendFrame({ opcode: OP.text, payload: "first", fin: false });
      await c.sendFrame({ opcode: OP.binary, payload: "second", fin: false });
    });
  });

  test("a close frame with a 1-byte payload", async () => {
    await expectBadframe((c) => c.sendFrame({ opcode: OP.close, payload: Buffer.from([0x03]) }));
  });

  test.each([999, 1004, 1005, 1006, 1100, 2000, 2999, 5000])("a close frame with the invalid code %i", async (code) => {
    await expectBadframe((c) => c.sendFrame({ opcode: OP.close, payload: closePayload(code, "bad") }));
  });

  test("a bad frame after good ones: the good ones were echoed first", async () => {
    const { c, id } = await open();
    await c.sendText("good");
    expect(textOf(await c.next())).toBe("good");
    await c.sendFrame({ opcode: 3, payload: "" });
    const { reason } = await expectClosed(c, id, 1002);
    expect(reason).toEqual({ error: "badframe" });
  });
});

describe("UTF-8: 1007 and { error: 'badencoding' }", () => {
  test("invalid UTF-8 in a text frame", async () => {
    const { c, id } = await open();
    await c.sendText(Buffer.from([0x48, 0x69, 0xff, 0xfe]));
    const { before, reason } = await expectClosed(c, id, 1007);
    expect(before).toEqual([]);
    expect(reason).toEqual({ error: "badencoding" });
    expect(handled.get(id)).toBeUndefined();
  });

  test.each([
    ["an overlong encoding", [0xc0, 0xaf]],
    ["a UTF-16 surrogate", [0xed, 0xa0, 0x80]],
    ["a code point above U+10FFFF", [0xf4, 0x90, 0x80, 0x80]],
    ["a truncated sequence", [0x61, 0xe2, 0x82]],
  ])("invalid UTF-8: %s", async (_what, bytes) => {
    const { c, id } = await open();
    await c.sendText(Buffer.from(bytes));
    const { reason } = await expectClosed(c, id, 1007);
    expect(reason).toEqual({ error: "badencoding" });
  });

  test("invalid UTF-8 split across fragments", async () => {
    const { c, id } = await open();
    await c.sendFrame({ opcode: OP.text, payload: "valid start ", fin: false });
    await c.sendFrame({ opcode: OP.continuation, payload: Buffer.from([0xce]), fin: false });
    // 0xce must be followed by a continuation byte, not ASCII
    await c.sendFrame({ opcode: OP.continuation, payload: Buffer.from("bad end") });
    const { before, reason } = await expectClosed(c, id, 1007);
    expect(before).toEqual([]);
    expect(reason).toEqual({ error: "badencoding" });
    expect(handled.get(id)).toBeUndefined();
  });

  test("a message ending inside a code point", async () => {
    const { c, id } = await open();
    const euro = Buffer.from("€", "utf8");
    await c.sendFrame({ opcode: OP.text, payload: euro.subarray(0, 2), fin: false });
    await c.sendFrame({ opcode: OP.continuation, payload: Buffer.alloc(0) });
    const { reason } = await expectClosed(c, id, 1007);
    expect(reason).toEqual({ error: "badencoding" });
  });

  test("a close reason with invalid UTF-8", async () => {
    const { c, id } = await open();
    await c.sendFrame({ opcode: OP.close, payload: closePayload(1000, Buffer.from([0xff, 0x80])) });
    const { reason } = await expectClosed(c, id, 1007);
    expect(reason).toEqual({ error: "badencoding" });
  });
});

describe("closing", () => {
  test.each([1000, 1001, 1003, 1011, 3000, 4000, 4999])("a close with the valid code %i is echoed; terminate gets { remote: { code, reason } }", async (code) => {
    const { c, id } = await open();
    await c.sendClose(code, "bye now");
    const { close, before, reason } = await expectClosed(c, id, code);
    expect(before).toEqual([]);
    expect(close.fin).toBe(true);
    expect(reason).toEqual({ remote: { code, reason: "bye now" } });
  });

  test("a close with a code and no reason", async () => {
    const { c, id } = await open();
    await c.sendClose(4000);
    const { close, reason } = await expectClosed(c, id, 4000);
    expect(close.payload.length).toBe(2);
    expect(reason).toEqual({ remote: { code: 4000, reason: "" } });
  });

  test("an empty close is answered with an empty close; terminate gets 'remote'", async () => {
    const { c, id } = await open();
    await c.sendClose();
    const { close, reason } = await expectClosed(c, id, undefined);
    expect(close.payload.length).toBe(0);
    expect(reason).toBe("remote");
  });

  test("a close fed one byte at a time, with a multi-byte UTF-8 reason", async () => {
    const { c, id } = await open();
    await c.sendFrame({ opcode: OP.close, payload: closePayload(1000, "à bientôt") }, 1);
    const { reason } = await expectClosed(c, id, 1000);
    expect(reason).toEqual({ remote: { code: 1000, reason: "à bientôt" } });
  });

  test("frames after the close frame are not handed to the handler", async () => {
    const { c, id } = await open();
    await c.write(Buffer.concat([encodeFrame({ opcode: OP.close, payload: closePayload(1000) }), encodeFrame({ opcode: OP.text, payload: "too late" })]));
    const { before, reason } = await expectClosed(c, id, 1000);
    expect(before).toEqual([]);
    expect(reason).toEqual({ remote: { code: 1000, reason: "" } });
    expect(handled.get(id)).toBeUndefined();
  });

  test("TCP closed without a close frame: terminate gets { error: 'closed' }", async () => {
    const { c, id } = await open();
    await c.sendText("hello");
    expect(textOf(await c.next())).toBe("hello");
    c.end();
    expect(await reasonOf(id)).toEqual({ error: "closed" });
    expect(await c.waitClosed(2000)).toBe(true);
  });

  test("TCP reset in the middle of a frame: terminate gets { error: 'closed' }", async () => {
    const { c, id } = await open();
    await c.write(encodeFrame({ opcode: OP.text, payload: "never finished" }).subarray(0, 5));
    await until(() => c.socket.bytesWritten > 0, 1000, "bytes written");
    c.destroy();
    expect(await reasonOf(id)).toEqual({ error: "closed" });
  });

  test("the connection keeps working across many small exchanges", async () => {
    const { c } = await open();
    for (let i = 0; i < 20; i++) {
      await c.sendText(`m${i}`);
    }
    for (let i = 0; i < 20; i++) expect(textOf(await c.next())).toBe(`m${i}`);
    await expectEchoStillWorks(c);
  });
});
