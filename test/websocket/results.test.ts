/**
 * End-to-end: what callback results and commands do on the wire, how a connection ends,
 * and what terminate gets (docs/websocket.md: results and commands, options, terminate reasons).
 */
import net, { type Socket } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import WebSocket from "ws";
import {
  binary,
  exit,
  close,
  commands,
  compileRoutes,
  isAlive,
  isDown,
  monitor,
  ok,
  ping,
  processInfo,
  reply,
  self,
  send,
  spawn,
  startClear,
  stop,
  stopListener,
  text,
  upgrade,
  type CallResult,
  type DownMessage,
  type Frame,
  type Listener,
  type PartialReq,
  type Pid,
  type TerminateReason,
  type WebSocketHandler,
  type WebSocketOptions,
} from "../../src/index.js";
import { captureLogs, sleep, until, type LogRecord } from "../support/helpers.js";
import { serverWrites } from "../support/writes.js";

/* ---------------------------------------------------------------- shared plumbing */

const { logger, records } = captureLogs();
const LISTENER = "ws-results-e2e";
const STOP_LISTENER = "ws-results-e2e-stop";
const STOP_LISTENER_2 = "ws-results-e2e-stop-passive";
let listener: Listener;
let stopListenerRunning = false;
let stopListener2Running = false;
const clients: WebSocket[] = [];
const rawSockets: Socket[] = [];

let nextId = 0;
const newId = (): string => `r${++nextId}`;

const events = new Map<string, string[]>();
const eventsOf = (id: string): string[] => events.get(id) ?? [];
function record(id: string, e: string): void {
  let list = events.get(id);
  if (list === undefined) events.set(id, (list = []));
  list.push(e);
}

const connPids = new Map<string, Pid>();
const terms: { id: string; reason: TerminateReason; req: PartialReq; state: S }[] = [];
const termsOf = (id: string) => terms.filter((t) => t.id === id);

type S = { id: string; n: number; items?: unknown[] };
type Action = (s: S, callback: string) => unknown;

/** What a text frame "<name>" (or an info { do: "<name>" }) makes the handler return. */
const actions: Record<string, Action> = {
  inc: (s) => ok({ ...s, n: s.n + 1 }),
  count: (s) => reply(text(`n=${s.n}`), s),
  one: (s) => reply(text("single"), s),
  many: (s) => reply([text("a"), binary(new Uint8Array([1, 2, 3])), text("c")], s),
  cmds: (s) => commands([text("x"), binary(new Uint8Array([9])), text("y")], { ...s, n: s.n + 10 }),
  emptyList: (s) => reply([], s),
  sendPing: (s) => reply(ping(new Uint8Array(Buffer.from("srv"))), s),
  stop: (s) => stop(s),
  closeMid: (s) => reply([text("b1"), text("b2"), close(4002, "mid"), text("after")], s),
  closeMidCmds: (s) => commands([text("c1"), close(4003, "cmd"), text("dropped"), { active: false }], s),
  closeEmpty: (s) => reply(close(), s),
  close4001: (s) => reply(close(4001, "bye"), s),
  closeReasonOnly: (s) => reply(close(undefined, "only a reason"), s),
  shutdownReason: (s) => commands([{ shutdownReason: { why: "maintenance" } }], s),
  shutdownAndClose: (s) => commands([{ shutdownReason: "in-list" }, close(4010, "x")], s),
  idle100: (s) => commands([{ setOptions: { idleTimeout: 100 } }], s),
  big: (s) => reply(text("x".repeat(4000)), s),
  deflateOff: (s) => commands([{ deflate: false }, text("y".repeat(4000))], s),
  deflateOn: (s) => commands([{ deflate: true }, text("z".repeat(4000))], s),
  manyBig: (s) => reply([text("p".repeat(3000)), text("q".repeat(3000)), text("r".repeat(3000))], s),
  maxFrame10: (s) => commands([{ setOptions: { maxFrameSize: 10 } }], s),
  idle200: (s) => commands([{ setOptions: { idleTimeout: 200 } }], s),
  noop: (s) => ok(s),
  passive: (s) => commands([{ active: false }], s),
  hib: (s) => ok({ ...s, n: s.n + 1, items: [1, "two", { three: [3] }] }, { hibernate: true }),
  hibReply: (s) => reply(text("sleeping"), { ...s, n: s.n + 100 }, { hibernate: true }),
  state: (s) => reply(text(JSON.stringify(s)), s),
  // invalid results
  ret42: () => 42,
  retBogus: (s) => ({ type: "bogus", state: s }),
  retUndefined: () => undefined,
  badFrameData: (s) => reply({ type: "text", data: 5 } as unknown as Frame, s),
  badCommand: (s) => commands([{ nope: 1 } as never], s),
  bigPing: (s) => reply(ping(new Uint8Array(200)), s),
  badCloseCode: (s) => reply(close(1005), s),
  // crashes
  throw: (_s, cb) => {
    throw new Error(`boom in ${cb}`);
  },
  asyncThrow: (_s, cb) => new Promise((_resolve, reject) => setTimeout(() => reject(new Error(`async boom in ${cb}`)), 20)),
  slow: (s) =>
    new Promise((resolve) =>
      setTimeout(() => {
        record(s.id, "slow:end");
        resolve(reply(text("slow-done"), s));
      }, 150),
    ),
};

const handler: WebSocketHandler<S, unknown, unknown> = {
  init(req) {
    const q = new URLSearchParams(req.qs);
    const id = q.get("id") ?? "none";
    const opts: { -readonly [K in keyof WebSocketOptions]: WebSocketOptions[K] } = {};
    if (q.get("compress") === "1") opts.compress = true;
    if (q.get("idle") !== null) opts.idleTimeout = Number(q.get("idle"));
    if (q.get("filter") === "1") {
      opts.reqFilter = (r) => ({ filtered: true, path: r.path, tag: r.header("x-tag") }) as unknown as PartialReq;
    }
    return upgrade(req, { id, n: 0, init: q.get("init") } as S, opts);
  },
  websocketInit(s) {
    connPids.set(s.id, self());
    record(s.id, "init");
    const mode = (s as S & { init: string | null }).init;
    const { init: _drop, ...state } = s as S & { init: string | null };
    if (mode !== null) return actions[mode]!(state, "websocketInit") as CallResult<S>;
    return ok(state);
  },
  websocketHandle(frame, s) {
    if (frame.type === "text") {
      record(s.id, `text:${frame.data}`);
      const action = actions[frame.data];
      if (action !== undefined) return action(s, "websocketHandle") as CallResult<S>;
      return reply(text(`echo:${frame.data}`), s);
    }
    record(s.id, `${frame.type}:${Buffer.from(frame.data).toString()}`);
    if (frame.type === "pong") return reply(text(`saw-pong:${Buffer.from(frame.data).toString()}`), s);
    return ok(s);
  },
  websocketInfo(info, s) {
    record(s.id, `info:${JSON.stringify(info)}`);
    if (typeof info === "object" && info !== null && "do" in info) {
      return actions[(info as { do: string }).do]!(s, "websocketInfo") as CallResult<S>;
    }
    return reply(text(`info:${JSON.stringify(info)}`), s);
  },
  terminate(reason, req, s) {
    terms.push({ id: s.id, reason, req, state: s });
  },
};

/** A frame as the server put it on the wire (server frames are unmasked). */
interface WireFrame {
  rsv1: boolean;
  opcode: number;
  payload: Buffer;
}

/** Parses the server's frames off a client socket, from right after the 101. */
function sniff(socket: Socket, out: WireFrame[]): void {
  let buf = Buffer.alloc(0);
  socket.on("data", (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      if (buf.length < 2) return;
      let len = buf[1]! & 0x7f;
      let at = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2));
        at = 10;
      }
      if (buf.length < at + len) return;
      out.push({ rsv1: (buf[0]! & 0x40) !== 0, opcode: buf[0]! & 0x0f, payload: Buffer.from(buf.subarray(at, at + len)) });
      buf = buf.subarray(at + len);
    }
  });
}

/** The close frame the server sent, if any: code 1005 stands for an empty one. */
function serverClose(wire: readonly WireFrame[]): { code: number; reason: string } | undefined {
  const f = wire.find((w) => w.opcode === 8);
  if (f === undefined) return undefined;
  if (f.payload.length < 2) return { code: 1005, reason: "" };
  return { code: f.payload.readUInt16BE(0), reason: f.payload.subarray(2).toString() };
}

interface Client {
  ws: WebSocket;
  id: string;
  /** Everything the client saw, in order. */
  seen: string[];
  /** The server's frames as they came off the socket. */
  wire: WireFrame[];
  msgs: () => string[];
  closed: Promise<{ code: number; reason: string }>;
}

function connect(query: Record<string, string> = {}, opts: { port?: number; headers?: Record<string, string>; perMessageDeflate?: boolean } = {}): Promise<Client> {
  const id = query["id"] ?? newId();
  const qs = new URLSearchParams({ id, ...query }).toString();
  const ws = new WebSocket(`ws://127.0.0.1:${opts.port ?? listener.port}/r?${qs}`, {
    headers: opts.headers,
    perMessageDeflate: opts.perMessageDeflate ?? true,
  });
  clients.push(ws);
  const seen: string[] = [];
  const wire: WireFrame[] = [];
  // Attached on 'open', after ws's own listener (ws emits 'open' right after taking the socket, before any frame is read).
  ws.once("open", () => sniff((ws as unknown as { _socket: Socket })._socket, wire));
  ws.on("message", (d, isBinary) => seen.push(isBinary ? `bin:${(d as Buffer).toString("hex")}` : `msg:${d.toString()}`));
  ws.on("ping", (d) => seen.push(`ping:${d.toString()}`));
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on("close", (code, reason) => {
      seen.push(`close:${code}`);
      resolve({ code, reason: reason.toString() });
    }),
  );
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve({ ws, id, seen, wire, msgs: () => seen.filter((s) => s.startsWith("msg:")).map((s) => s.slice(4)), closed }));
    ws.once("error", reject);
  });
}

/** The client's close completes (TCP closed) within ms, or this rejects. */
function closedWithin(c: Client, ms: number): Promise<{ code: number; reason: string }> {
  return Promise.race([
    c.closed,
    sleep(ms).then(() => {
      throw new Error(`the connection was not closed within ${ms} ms (server close frame: ${JSON.stringify(serverClose(c.wire))})`);
    }),
  ]);
}

/** The close frame the server sent, once it is on the wire. */
async function sentClose(c: Client): Promise<{ code: number; reason: string }> {
  await until(() => serverClose(c.wire) !== undefined, 2000, "the server's close frame");
  return serverClose(c.wire)!;
}

/** A masked client text frame (payload < 126 bytes). */
function maskedText(data: string): Buffer {
  const payload = Buffer.from(data);
  const mask = Buffer.from([0xa1, 0xb2, 0xc3, 0xd4]);
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!))]);
}

/** A hand-made client that completes the handshake, then never answers anything (not even a close). */
async function rawClient(id: string): Promise<{ sock: Socket; wire: WireFrame[]; ended: Promise<void> }> {
  const sock = net.connect(listener.port, "127.0.0.1");
  rawSockets.push(sock);
  const wire: WireFrame[] = [];
  const ended = new Promise<void>((resolve) => {
    sock.once("end", () => resolve());
    sock.once("close", () => resolve());
  });
  await new Promise<void>((resolve) => sock.once("connect", () => resolve()));
  sock.write(
    `GET /r?id=${id} HTTP/1.1\r\nHost: 127.0.0.1:${listener.port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
  );
  // Skip the 101's head, then parse frames.
  await new Promise<void>((resolve) => {
    let head = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      head = Buffer.concat([head, d]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      sock.off("data", onData);
      sniff(sock, wire);
      const rest = head.subarray(end + 4);
      if (rest.length > 0) sock.emit("data", rest);
      resolve();
    };
    sock.on("data", onData);
  });
  return { sock, wire, ended };
}

async function pidOf(id: string): Promise<Pid> {
  await until(() => connPids.has(id), 2000, `the pid of ${id}`);
  return connPids.get(id)!;
}

/** Waits for terminate, then checks it ran exactly once; returns that call. */
async function terminatedOnce(id: string) {
  await until(() => termsOf(id).length > 0, 2500, `terminate of ${id}`);
  await sleep(40);
  const calls = termsOf(id);
  expect(calls, `terminate calls for ${id}`).toHaveLength(1);
  return calls[0]!;
}

function crashReportsFor(pid: Pid): LogRecord[] {
  return records.filter((r) => r.level === 50 && r.msg === "process crashed" && r["pid"] === pid.toString());
}

/** A second connection on the same listener still echoes. */
async function stillWorks(c: Client): Promise<void> {
  const n = c.msgs().length;
  c.ws.send("alive?");
  await until(() => c.msgs().length > n, 2000, "the other connection's echo");
  expect(c.msgs().at(-1)).toBe("echo:alive?");
}

/** Spawns a process that monitors pid and collects the DOWN message. */
function watch(pid: Pid): { down: () => DownMessage | undefined } {
  let down: DownMessage | undefined;
  spawn(async (ctx) => {
    monitor(pid);
    const m = await ctx.receive(isDown, 2500);
    down = m;
  });
  return { down: () => down };
}

/* ---------------------------------------------------------------- lifecycle */

const dispatch = compileRoutes([{ host: "_", paths: [["/r", handler]] }]);

beforeAll(async () => {
  listener = await startClear(LISTENER, { port: 0 }, { dispatch, logger });
});

afterEach(async () => {
  for (const ws of clients.splice(0)) {
    ws.on("error", () => {});
    if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
  }
  for (const sock of rawSockets.splice(0)) sock.destroy();
  if (stopListenerRunning) {
    stopListenerRunning = false;
    await stopListener(STOP_LISTENER).catch(() => {});
  }
  if (stopListener2Running) {
    stopListener2Running = false;
    await stopListener(STOP_LISTENER_2).catch(() => {});
  }
  await sleep(10);
});

afterAll(async () => {
  await stopListener(LISTENER);
});

/* ---------------------------------------------------------------- results */

describe("results", () => {
  test("ok(state) sends nothing and keeps the new state", async () => {
    const c = await connect();
    c.ws.send("inc");
    c.ws.send("inc");
    c.ws.send("inc");
    c.ws.send("count");
    await until(() => c.msgs().length >= 1, 2000, "the count");
    await sleep(30);
    expect(c.msgs()).toEqual(["n=3"]);
  });

  test("reply(frame) sends one frame", async () => {
    const c = await connect();
    c.ws.send("one");
    await until(() => c.msgs().length >= 1, 2000, "the reply");
    await sleep(30);
    expect(c.seen).toEqual(["msg:single"]);
  });

  test("reply([frames]) sends them all, in order", async () => {
    const c = await connect();
    c.ws.send("many");
    await until(() => c.seen.length >= 3, 2000, "three frames");
    expect(c.seen).toEqual(["msg:a", "bin:010203", "msg:c"]);
  });

  test("reply([]) sends nothing and keeps the connection", async () => {
    const c = await connect();
    c.ws.send("emptyList");
    c.ws.send("hello");
    await until(() => c.msgs().length >= 1, 2000, "the echo");
    expect(c.seen).toEqual(["msg:echo:hello"]);
  });

  test("commands([...]) runs frames in order and keeps the new state", async () => {
    const c = await connect();
    c.ws.send("cmds");
    c.ws.send("count");
    await until(() => c.msgs().length >= 3, 2000, "frames and count");
    expect(c.seen).toEqual(["msg:x", "bin:09", "msg:y", "msg:n=10"]);
  });

  test("a ping frame from the handler gets the client's pong, which reaches websocketHandle", async () => {
    const c = await connect();
    c.ws.send("sendPing");
    await until(() => c.msgs().length >= 1, 2000, "the pong's echo");
    expect(c.seen).toEqual(["ping:srv", "msg:saw-pong:srv"]);
    expect(eventsOf(c.id)).toEqual(["init", "text:sendPing", "pong:srv"]);
  });

  test("all frames of one callback go out in one socket write", async () => {
    const c = await connect({}, { perMessageDeflate: false });
    const socket = (c.ws as unknown as { _socket: Socket })._socket;
    const chunks: number[] = [];
    socket.on("data", (d: Buffer) => chunks.push(d.length));
    const writes = await serverWrites(socket, async () => {
      c.ws.send("many");
      await until(() => c.seen.length >= 3, 2000, "three frames");
    });
    // text "a", binary 010203, text "c": one writev of the three frames, one chunk on loopback of 3 + 5 + 3 bytes.
    expect(writes).toEqual([3]);
    expect(chunks).toEqual([11]);
  });

  // ws deflates each frame asynchronously, so compressed frames of one callback may leave in
  // several writes (documented in docs/websocket.md); their order and content hold.
  test("compressed frames of one callback arrive compressed and in order", async () => {
    const c = await connect({ compress: "1" });
    expect(c.ws.extensions).toContain("permessage-deflate");
    c.ws.send("manyBig");
    await until(() => c.msgs().length >= 3, 2000, "three frames");
    expect(c.msgs()).toEqual(["p".repeat(3000), "q".repeat(3000), "r".repeat(3000)]);
    expect(c.wire.every((f) => f.rsv1)).toBe(true);
  });

  test("results from websocketInfo work the same way", async () => {
    const c = await connect();
    const pid = await pidOf(c.id);
    send(pid, { do: "many" });
    await until(() => c.seen.length >= 3, 2000, "three frames");
    expect(c.seen).toEqual(["msg:a", "bin:010203", "msg:c"]);
  });

  test("stop(state) closes with 1000 and terminate('stop') runs once", async () => {
    const c = await connect();
    c.ws.send("inc");
    c.ws.send("stop");
    const { code } = await c.closed;
    expect(code).toBe(1000);
    const t = await terminatedOnce(c.id);
    expect(t.reason).toBe("stop");
    expect(t.state.n).toBe(1);
  });

  test("a close frame inside a reply list: frames before it go out, frames after it are dropped, terminate('stop')", async () => {
    const c = await connect();
    c.ws.send("closeMid");
    expect(await c.closed).toEqual({ code: 4002, reason: "mid" });
    expect(c.seen).toEqual(["msg:b1", "msg:b2", "close:4002"]);
    expect((await terminatedOnce(c.id)).reason).toBe("stop");
  });

  test("a close frame inside a commands list: later frames and commands are dropped", async () => {
    const c = await connect();
    c.ws.send("closeMidCmds");
    expect(await c.closed).toEqual({ code: 4003, reason: "cmd" });
    expect(c.seen).toEqual(["msg:c1", "close:4003"]);
    expect((await terminatedOnce(c.id)).reason).toBe("stop");
  });

  test("close() with no code sends an empty close: the client sees 1005", async () => {
    const c = await connect();
    c.ws.send("closeEmpty");
    expect(await c.closed).toEqual({ code: 1005, reason: "" });
    expect((await terminatedOnce(c.id)).reason).toBe("stop");
  });

  test("close(4001, 'bye') reaches the client as is", async () => {
    const c = await connect();
    c.ws.send("close4001");
    expect(await c.closed).toEqual({ code: 4001, reason: "bye" });
    expect((await terminatedOnce(c.id)).reason).toBe("stop");
  });

  test("close(undefined, reason) is Cowboy's {close, Data}: code 1000 with the reason", async () => {
    const c = await connect();
    c.ws.send("closeReasonOnly");
    expect(await c.closed).toEqual({ code: 1000, reason: "only a reason" });
    expect((await terminatedOnce(c.id)).reason).toBe("stop");
  });

  test("a close frame from websocketInfo ends the connection the same way", async () => {
    const c = await connect();
    const pid = await pidOf(c.id);
    send(pid, { do: "close4001" });
    expect(await c.closed).toEqual({ code: 4001, reason: "bye" });
    expect((await terminatedOnce(c.id)).reason).toBe("stop");
    await until(() => !isAlive(pid), 2000, "the connection process to end");
  });
});

/* ---------------------------------------------------------------- commands */

describe("commands", () => {
  test("{ shutdownReason: x }: a monitoring process gets DOWN with { shutdown: x }", async () => {
    const c = await connect();
    const pid = await pidOf(c.id);
    const w = watch(pid);
    await until(() => (processInfo(pid)?.monitoredBy.length ?? 0) > 0, 2000, "the monitor");
    c.ws.send("shutdownReason");
    c.ws.send("stop");
    expect((await c.closed).code).toBe(1000);
    await until(() => w.down() !== undefined, 2500, "DOWN");
    expect(w.down()!.pid).toBe(pid);
    expect(w.down()!.reason).toEqual({ shutdown: { why: "maintenance" } });
    expect((await terminatedOnce(c.id)).reason).toBe("stop");
  });

  test("{ shutdownReason } then a close frame in the same list: DOWN carries it, the client sees the close", async () => {
    const c = await connect();
    const pid = await pidOf(c.id);
    const w = watch(pid);
    await until(() => (processInfo(pid)?.monitoredBy.length ?? 0) > 0, 2000, "the monitor");
    c.ws.send("shutdownAndClose");
    expect(await c.closed).toEqual({ code: 4010, reason: "x" });
    await until(() => w.down() !== undefined, 2500, "DOWN");
    expect(w.down()!.reason).toEqual({ shutdown: "in-list" });
  });

  test("without shutdownReason the DOWN reason is 'normal'", async () => {
    const c = await connect();
    const pid = await pidOf(c.id);
    const w = watch(pid);
    await until(() => (processInfo(pid)?.monitoredBy.length ?? 0) > 0, 2000, "the monitor");
    c.ws.send("stop");
    await c.closed;
    await until(() => w.down() !== undefined, 2500, "DOWN");
    expect(w.down()!.reason).toBe("normal");
  });

  test("{ setOptions: { idleTimeout: 100 } } closes an idle connection after ~100 ms with 1000, terminate('timeout')", async () => {
    const c = await connect();
    c.ws.send("idle100");
    const t0 = Date.now();
    const { code } = await c.closed;
    const elapsed = Date.now() - t0;
    expect(code).toBe(1000);
    expect(elapsed).toBeGreaterThanOrEqual(80);
    expect(elapsed).toBeLessThan(2000);
    expect((await terminatedOnce(c.id)).reason).toBe("timeout");
  });

  test("idleTimeout from the upgrade options: received pings keep the connection alive, silence ends it", async () => {
    const c = await connect({ idle: "200" });
    const t0 = Date.now();
    const timer = setInterval(() => c.ws.ping(), 40);
    await sleep(500);
    clearInterval(timer);
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
    const { code } = await c.closed;
    expect(code).toBe(1000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(650);
    expect((await terminatedOnce(c.id)).reason).toBe("timeout");
  });

  test("{ setOptions: { maxFrameSize } } applies to the next frames: above it closes with 1009, terminate { error: 'badsize' }", async () => {
    const c = await connect();
    c.ws.send("maxFrame10");
    c.ws.send("0123456789");
    await until(() => c.msgs().length >= 1, 2000, "the echo at the limit");
    expect(c.msgs()).toEqual(["echo:0123456789"]);
    c.ws.send("0123456789A");
    expect((await closedWithin(c, 2000)).code).toBe(1009);
    expect((await terminatedOnce(c.id)).reason).toEqual({ error: "badsize" });
    expect(eventsOf(c.id)).not.toContain("text:0123456789A");
  });

  test("app messages do not reset the idle timer: a connection fed only infos still times out", async () => {
    const c = await connect();
    const pid = await pidOf(c.id);
    c.ws.send("idle200");
    await until(() => eventsOf(c.id).includes("text:idle200"), 2000, "the setOptions");
    const t0 = Date.now();
    const timer = setInterval(() => {
      if (isAlive(pid)) send(pid, { do: "noop" });
    }, 30);
    try {
      const { code } = await closedWithin(c, 2000);
      expect(code).toBe(1000);
      expect(Date.now() - t0).toBeLessThan(1500);
    } finally {
      clearInterval(timer);
    }
    expect((await terminatedOnce(c.id)).reason).toBe("timeout");
  });

  test("{ deflate: false } on a compress: true connection sends the next frames uncompressed; { deflate: true } turns it back on", async () => {
    const c = await connect({ compress: "1" });
    expect(c.ws.extensions).toContain("permessage-deflate");
    // c.wire holds the server's frames as sent: RSV1 marks a compressed message.
    c.ws.send("big");
    c.ws.send("deflateOff");
    c.ws.send("deflateOn");
    await until(() => c.msgs().length >= 3, 2000, "three big frames");
    expect(c.msgs()).toEqual(["x".repeat(4000), "y".repeat(4000), "z".repeat(4000)]);
    const frames = c.wire.map((f) => ({ rsv1: f.rsv1, opcode: f.opcode, length: f.payload.length }));
    expect(frames).toHaveLength(3);
    expect(frames[0]).toMatchObject({ rsv1: true, opcode: 1 });
    expect(frames[0]!.length).toBeLessThan(4000);
    expect(frames[1]).toEqual({ rsv1: false, opcode: 1, length: 4000 });
    expect(c.wire[1]!.payload.toString()).toBe("y".repeat(4000));
    expect(frames[2]).toMatchObject({ rsv1: true, opcode: 1 });
    expect(frames[2]!.length).toBeLessThan(4000);
  });

  test("{ deflate } when compression was not negotiated is a no-op", async () => {
    const c = await connect({}, { perMessageDeflate: false });
    expect(c.ws.extensions).toBe("");
    c.ws.send("deflateOn");
    await until(() => c.msgs().length >= 1, 2000, "the frame");
    expect(c.msgs()).toEqual(["z".repeat(4000)]);
  });

  test("hibernate: processInfo(pid).hibernated becomes true and the next message sees the same state", async () => {
    const c = await connect();
    const pid = await pidOf(c.id);
    c.ws.send("inc");
    c.ws.send("hib");
    await until(() => processInfo(pid)?.hibernated === true, 2000, "hibernation");
    c.ws.send("state");
    await until(() => c.msgs().length >= 1, 2000, "the state");
    expect(JSON.parse(c.msgs()[0]!)).toEqual({ id: c.id, n: 2, items: [1, "two", { three: [3] }] });
    expect(processInfo(pid)?.hibernated).toBe(false);
  });

  test("hibernate after a reply, woken by an info: same state", async () => {
    const c = await connect();
    const pid = await pidOf(c.id);
    c.ws.send("hibReply");
    await until(() => processInfo(pid)?.hibernated === true, 2000, "hibernation");
    expect(c.msgs()).toEqual(["sleeping"]);
    send(pid, { do: "state" });
    await until(() => c.msgs().length >= 2, 2000, "the state");
    expect(JSON.parse(c.msgs()[1]!)).toEqual({ id: c.id, n: 100 });
  });

  test("terminate of a hibernated connection gets the live state", async () => {
    const c = await connect();
    const pid = await pidOf(c.id);
    c.ws.send("hib");
    await until(() => processInfo(pid)?.hibernated === true, 2000, "hibernation");
    c.ws.close(1000);
    await c.closed;
    const t = await terminatedOnce(c.id);
    expect(t.state).toEqual({ id: c.id, n: 1, items: [1, "two", { three: [3] }] });
  });
});

describe("closing: Cowboy does not wait for the peer's closing reply", () => {
  test("a close frame sent while { active: false }: the close frame goes out and terminate('stop') runs once", async () => {
    const c = await connect();
    const pid = await pidOf(c.id);
    send(pid, { do: "passive" });
    send(pid, { do: "close4001" });
    expect(await sentClose(c)).toEqual({ code: 4001, reason: "bye" });
    expect((await terminatedOnce(c.id)).reason).toBe("stop");
    expect(isAlive(pid)).toBe(false);
  });

  // Regression (found against b4a0903): not reading the socket ({ active: false }), the server never
  // read the client's close reply and the TCP connection stayed open until ws's 30 s close timeout.
  test("a close frame sent while { active: false }: the TCP connection ends promptly (client 'close' within 2 s)", async () => {
    const c = await connect();
    const pid = await pidOf(c.id);
    send(pid, { do: "passive" });
    send(pid, { do: "close4001" });
    expect(await closedWithin(c, 2000)).toEqual({ code: 4001, reason: "bye" });
  });

  test("websocketInit returning stop(): close 1000 goes out and terminate('stop') runs once", async () => {
    const c = await connect({ init: "stop" });
    expect(await sentClose(c)).toEqual({ code: 1000, reason: "" });
    expect((await terminatedOnce(c.id)).reason).toBe("stop");
  });

  // Regression (same cause): websocketInit ended the connection before reading was ever resumed.
  test("websocketInit returning stop(): the TCP connection ends promptly (client 'close' within 2 s)", async () => {
    const c = await connect({ init: "stop" });
    expect((await closedWithin(c, 2000)).code).toBe(1000);
  });

  test("a client that never answers the server's close: the close frame goes out and terminate('stop') runs once", async () => {
    const id = newId();
    const raw = await rawClient(id);
    raw.sock.write(maskedText("close4001"));
    await until(() => serverClose(raw.wire) !== undefined, 2000, "the close frame");
    expect(serverClose(raw.wire)).toEqual({ code: 4001, reason: "bye" });
    expect((await terminatedOnce(id)).reason).toBe("stop");
  });

  // Regression (found against b4a0903): the server waited for the peer's closing reply (ws's close
  // handshake, 30 s timeout) instead of ending the connection after its close frame, as Cowboy does.
  test("a client that never answers the server's close: the server ends the TCP connection within 1.5 s", async () => {
    const raw = await rawClient(newId());
    raw.sock.write(maskedText("close4001"));
    await until(() => serverClose(raw.wire) !== undefined, 2000, "the close frame");
    const t = await Promise.race([raw.ended.then(() => "ended"), sleep(1500).then(() => "still open")]);
    expect(t).toBe("ended");
  });
});

/* ---------------------------------------------------------------- crashes and bad values */

describe("invalid results and crashes", () => {
  const invalid: [action: string, names: string][] = [
    ["ret42", "42"],
    ["retBogus", '"bogus"'],
    ["retUndefined", "undefined"],
    ["badFrameData", '"data":5'],
    ["badCommand", '"nope"'],
    ["bigPing", "ping"],
    ["badCloseCode", "1005"],
  ];

  test.each(invalid)("websocketHandle returning %s closes only that connection with 1011 and logs one crash report naming it", async (action, names) => {
    const other = await connect();
    const c = await connect();
    const pid = await pidOf(c.id);
    c.ws.send("one");
    await until(() => c.msgs().length >= 1, 2000, "a first reply");
    c.ws.send(action);
    const { code } = await c.closed;
    expect(code).toBe(1011);
    // Nothing of the bad result went out.
    expect(c.seen).toEqual(["msg:single", "close:1011"]);
    const t = await terminatedOnce(c.id);
    expect(t.reason).toEqual({ crash: expect.any(Error) });
    const reports = crashReportsFor(pid);
    expect(reports).toHaveLength(1);
    expect(JSON.stringify(reports[0]!["err"])).toContain(names.replace(/"/g, '\\"'));
    await stillWorks(other);
  });

  test("an invalid result from websocketInfo closes with 1011 and logs one crash report", async () => {
    const c = await connect();
    const pid = await pidOf(c.id);
    send(pid, { do: "retBogus" });
    expect((await c.closed).code).toBe(1011);
    expect((await terminatedOnce(c.id)).reason).toEqual({ crash: expect.any(Error) });
    expect(crashReportsFor(pid)).toHaveLength(1);
    expect(JSON.stringify(crashReportsFor(pid)[0]!["err"])).toContain("bogus");
  });

  test("an invalid result from websocketInit closes with 1011 and logs one crash report", async () => {
    const other = await connect();
    const c = await connect({ init: "ret42" });
    const pid = await pidOf(c.id);
    // The close frame is checked on the wire, then the client's close.
    expect((await sentClose(c)).code).toBe(1011);
    expect((await closedWithin(c, 2000)).code).toBe(1011);
    expect((await terminatedOnce(c.id)).reason).toEqual({ crash: expect.any(Error) });
    expect(crashReportsFor(pid)).toHaveLength(1);
    expect(JSON.stringify(crashReportsFor(pid)[0]!["err"])).toContain("42");
    await stillWorks(other);
  });

  for (const cb of ["websocketHandle", "websocketInfo", "websocketInit"] as const) {
    test(`a throw in ${cb} closes with 1011, terminate runs once with { crash }, one crash report, other connections keep working`, async () => {
      const other = await connect();
      const c = await connect(cb === "websocketInit" ? { init: "throw" } : {});
      const pid = await pidOf(c.id);
      if (cb === "websocketHandle") c.ws.send("throw");
      if (cb === "websocketInfo") send(pid, { do: "throw" });
      // The close frame is checked on the wire, then the client's close.
      expect((await sentClose(c)).code).toBe(1011);
      expect((await closedWithin(c, 2000)).code).toBe(1011);
      const t = await terminatedOnce(c.id);
      const crash = (t.reason as { crash: Error }).crash;
      expect(crash).toBeInstanceOf(Error);
      expect(crash.message).toBe(`boom in ${cb}`);
      const reports = crashReportsFor(pid);
      expect(reports).toHaveLength(1);
      expect(JSON.stringify(reports[0])).toContain(`boom in ${cb}`);
      await stillWorks(other);
      expect(isAlive(pid)).toBe(false);
    });
  }

  // Regression (found against b4a0903): a connection that crashed in websocketInit never resumed
  // reading, so the client's close reply was never read and TCP lingered for ws's 30 s close timeout.
  test("after a crash in websocketInit the server ends the TCP connection promptly (client 'close' within 2 s)", async () => {
    const c = await connect({ init: "throw" });
    expect((await sentClose(c)).code).toBe(1011);
    expect((await closedWithin(c, 2000)).code).toBe(1011);
  });

  test("after an invalid websocketInit result the server ends the TCP connection promptly (client 'close' within 2 s)", async () => {
    const c = await connect({ init: "retBogus" });
    expect((await sentClose(c)).code).toBe(1011);
    expect((await closedWithin(c, 2000)).code).toBe(1011);
  });

  test("a rejected promise from websocketHandle is a crash: 1011, terminate once, one crash report", async () => {
    const other = await connect();
    const c = await connect();
    const pid = await pidOf(c.id);
    c.ws.send("asyncThrow");
    expect((await c.closed).code).toBe(1011);
    const t = await terminatedOnce(c.id);
    expect((t.reason as { crash: Error }).crash.message).toBe("async boom in websocketHandle");
    expect(crashReportsFor(pid)).toHaveLength(1);
    await stillWorks(other);
  });
});

/* ---------------------------------------------------------------- async callbacks */

describe("async callbacks", () => {
  test("a promise from websocketHandle holds the mailbox: the next frame waits until it settles", async () => {
    const c = await connect();
    c.ws.send("slow");
    c.ws.send("after");
    await until(() => c.msgs().length >= 2, 2000, "both replies");
    expect(eventsOf(c.id)).toEqual(["init", "text:slow", "slow:end", "text:after"]);
    expect(c.msgs()).toEqual(["slow-done", "echo:after"]);
  });

  test("a promise from websocketInfo holds infos and frames queued behind it", async () => {
    const c = await connect();
    const pid = await pidOf(c.id);
    send(pid, { do: "slow" });
    send(pid, "next-info");
    c.ws.send("next-frame");
    await until(() => c.msgs().length >= 3, 2000, "three replies");
    expect(eventsOf(c.id)).toEqual(["init", 'info:{"do":"slow"}', "slow:end", 'info:"next-info"', "text:next-frame"]);
    expect(c.msgs()).toEqual(["slow-done", 'info:"next-info"', "echo:next-frame"]);
  });
});

/* ---------------------------------------------------------------- terminate */

describe("terminate", () => {
  test("terminate gets the filtered req: method, version, scheme, host, port, path, qs, peer and nothing else", async () => {
    const c = await connect({}, { headers: { "x-tag": "t1" } });
    c.ws.close(1000);
    await c.closed;
    const { req } = await terminatedOnce(c.id);
    expect(Object.keys(req).sort()).toEqual(["host", "method", "path", "peer", "port", "qs", "scheme", "version"]);
    expect(req.method).toBe("GET");
    expect(req.version).toBe("HTTP/1.1");
    expect(req.scheme).toBe("http");
    expect(req.host).toBe("127.0.0.1");
    expect(req.port).toBe(listener.port);
    expect(req.path).toBe("/r");
    expect(req.qs).toBe(`id=${c.id}`);
    expect(req.peer.address).toBe("127.0.0.1");
    expect(req.peer.port).toBeGreaterThan(0);
  });

  test("the reqFilter option replaces what terminate gets", async () => {
    const c = await connect({ filter: "1" }, { headers: { "x-tag": "t2" } });
    c.ws.close(1000);
    await c.closed;
    const { req } = await terminatedOnce(c.id);
    expect(req).toEqual({ filtered: true, path: "/r", tag: "t2" });
  });

  test("terminate gets the latest state", async () => {
    const c = await connect();
    c.ws.send("inc");
    c.ws.send("inc");
    c.ws.send("count");
    await until(() => c.msgs().length >= 1, 2000, "the count");
    c.ws.close(4000);
    await c.closed;
    expect((await terminatedOnce(c.id)).state).toEqual({ id: c.id, n: 2 });
  });
});

/* ---------------------------------------------------------------- stopListener */

describe("stopListener", () => {
  test("stopListener with open connections: every client sees 1001 and terminate('shutdown') runs once per connection", async () => {
    const l = await startClear(STOP_LISTENER, { port: 0 }, { dispatch, logger });
    stopListenerRunning = true;
    const cs = await Promise.all([connect({}, { port: l.port }), connect({}, { port: l.port }), connect({}, { port: l.port })]);
    const pids = await Promise.all(cs.map((c) => pidOf(c.id)));
    await until(() => l.connections === 3, 2000, "three connections");
    const t0 = Date.now();
    await stopListener(STOP_LISTENER);
    stopListenerRunning = false;
    expect(Date.now() - t0).toBeLessThan(2500);
    const closes = await Promise.all(cs.map((c) => c.closed));
    for (const cl of closes) expect(cl.code).toBe(1001);
    for (const c of cs) expect((await terminatedOnce(c.id)).reason).toBe("shutdown");
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
    // The port is closed: a new request fails.
    await expect(fetch(`http://127.0.0.1:${l.port}/r`)).rejects.toThrow();
  });
});

describe("ended from outside", () => {
  test("stopListener also closes a connection that is not reading ({ active: false }) with 1001, promptly", async () => {
    const l = await startClear(STOP_LISTENER_2, { port: 0 }, { dispatch, logger });
    stopListener2Running = true;
    const active = await connect({}, { port: l.port });
    const passive = await connect({}, { port: l.port });
    const pid = await pidOf(passive.id);
    await pidOf(active.id);
    send(pid, { do: "passive" });
    await until(() => eventsOf(passive.id).includes('info:{"do":"passive"}'), 2000, "passive");
    const t0 = Date.now();
    await stopListener(STOP_LISTENER_2);
    stopListener2Running = false;
    expect(Date.now() - t0).toBeLessThan(2500);
    expect((await closedWithin(passive, 1000)).code).toBe(1001);
    expect((await closedWithin(active, 1000)).code).toBe(1001);
    expect((await terminatedOnce(passive.id)).reason).toBe("shutdown");
    expect((await terminatedOnce(active.id)).reason).toBe("shutdown");
  });

  test("exit(pid, { shutdown: x }) from app code closes with 1001 and terminate gets { shutdown: x }", async () => {
    const c = await connect();
    const pid = await pidOf(c.id);
    exit(pid, { shutdown: "app says bye" });
    expect((await closedWithin(c, 2000)).code).toBe(1001);
    expect((await terminatedOnce(c.id)).reason).toEqual({ shutdown: "app says bye" });
  });
});

/* ---------------------------------------------------------------- bookkeeping */

describe("bookkeeping", () => {
  test("every connection this file opened ran terminate exactly once", async () => {
    for (const ws of clients.splice(0)) {
      ws.on("error", () => {});
      ws.terminate();
    }
    await until(() => [...connPids.values()].every((p) => !isAlive(p)), 2500, "every connection to end");
    await sleep(30);
    const wrong = [...connPids.keys()].map((id) => ({ id, calls: termsOf(id).length })).filter((x) => x.calls !== 1);
    expect(wrong).toEqual([]);
    expect(connPids.size).toBeGreaterThan(15);
  });
});
