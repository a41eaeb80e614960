/**
 * End-to-end: what reaches a connection and in which order — websocketInit before any
 * frame, {active:false}, frames (text, binary, fragments, ping, pong), infos from app code
 * and from other processes (docs/websocket.md: callbacks and pings).
 */
import net from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import WebSocket from "ws";
import {
  commands,
  compileRoutes,
  isAlive,
  ok,
  register,
  reply,
  self,
  send,
  spawn,
  startClear,
  stopListener,
  text,
  upgrade,
  whereis,
  type InFrame,
  type Listener,
  type Pid,
  type TerminateReason,
  type WebSocketHandler,
} from "../../src/index.js";
import { captureLogs, sleep, until } from "../support/helpers.js";

/* ---------------------------------------------------------------- shared plumbing */

const { logger } = captureLogs();
const LISTENER = "ws-messages-e2e";
let listener: Listener;
const clients: WebSocket[] = [];
const rawSockets: net.Socket[] = [];

let nextId = 0;
const newId = (): string => `m${++nextId}`;

/** What each connection's callbacks saw, in order, by connection id. */
const events = new Map<string, string[]>();
const eventsOf = (id: string): string[] => events.get(id) ?? [];
function record(id: string, e: string): void {
  let list = events.get(id);
  if (list === undefined) events.set(id, (list = []));
  list.push(e);
}

/** Connection pids, sent out of websocketInit. */
const connPids = new Map<string, Pid>();
/** self() as seen by websocketHandle and websocketInfo. */
const selfSeen = new Map<string, Pid[]>();

const terms: { id: string; reason: TerminateReason }[] = [];
const termsOf = (id: string): TerminateReason[] => terms.filter((t) => t.id === id).map((t) => t.reason);

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

/** A readable, type-checking rendering of a received frame. */
function show(frame: InFrame): string {
  switch (frame.type) {
    case "text":
      return typeof frame.data === "string" ? `text:${frame.data}` : `text(NOT A STRING):${String(frame.data)}`;
    case "binary":
      return frame.data instanceof Uint8Array ? `binary:${hex(frame.data)}` : `binary(NOT A Uint8Array)`;
    case "ping":
    case "pong":
      return frame.data instanceof Uint8Array ? `${frame.type}:${Buffer.from(frame.data).toString()}` : `${frame.type}(NOT A Uint8Array)`;
    default:
      return `unexpected:${JSON.stringify(frame)}`;
  }
}

type S = { id: string; mode: string; name: string | null };

const handler: WebSocketHandler<S, unknown, unknown> = {
  init(req) {
    const q = new URLSearchParams(req.qs);
    return upgrade(req, { id: q.get("id") ?? "none", mode: q.get("mode") ?? "", name: q.get("name") });
  },
  websocketInit(s) {
    connPids.set(s.id, self());
    if (s.name !== null) register(s.name, self());
    record(s.id, "init");
    switch (s.mode) {
      case "greet":
        return reply(text("init"), s);
      case "asyncInit":
        return new Promise((resolve) =>
          setTimeout(() => {
            record(s.id, "init:done");
            resolve(reply(text("init"), s));
          }, 100),
        );
      case "passive":
        return commands([{ active: false }], s);
      default:
        return ok(s);
    }
  },
  websocketHandle(frame, s) {
    (selfSeen.get(s.id) ?? selfSeen.set(s.id, []).get(s.id)!).push(self());
    record(s.id, show(frame));
    if ((frame as { type: string }).type === "close") return ok(s);
    if (frame.type === "text") return reply(text(`echo:${frame.data}`), s);
    if (frame.type === "binary") return reply(text(`bin:${hex(frame.data)}`), s);
    if (frame.type === "ping") return reply(text(`saw-ping:${Buffer.from(frame.data).toString()}`), s);
    return reply(text(`saw-pong:${Buffer.from(frame.data).toString()}`), s);
  },
  websocketInfo(info, s) {
    (selfSeen.get(s.id) ?? selfSeen.set(s.id, []).get(s.id)!).push(self());
    record(s.id, `info:${JSON.stringify(info)}`);
    if (info === "activate") return commands([{ active: true }], s);
    if (info === "deactivate") return commands([{ active: false }], s);
    return reply(text(`info:${JSON.stringify(info)}`), s);
  },
  terminate(reason, _req, s) {
    terms.push({ id: s.id, reason });
  },
};

interface Client {
  ws: WebSocket;
  id: string;
  /** Everything the client saw, in order: "msg:<text>", "pong:<payload>", "close:<code>". */
  seen: string[];
  msgs: () => string[];
  closed: Promise<{ code: number; reason: string }>;
}

function connect(query: Record<string, string> = {}, onOpen?: (ws: WebSocket) => void): Promise<Client> {
  const id = query["id"] ?? newId();
  const qs = new URLSearchParams({ id, ...query }).toString();
  const ws = new WebSocket(`ws://127.0.0.1:${listener.port}/m?${qs}`);
  clients.push(ws);
  const seen: string[] = [];
  ws.on("message", (d, isBinary) => seen.push(isBinary ? `msgbin:${hex(d as Buffer)}` : `msg:${d.toString()}`));
  ws.on("pong", (d) => seen.push(`pong:${d.toString()}`));
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on("close", (code, reason) => {
      seen.push(`close:${code}`);
      resolve({ code, reason: reason.toString() });
    }),
  );
  return new Promise((resolve, reject) => {
    ws.once("open", () => {
      onOpen?.(ws);
      resolve({ ws, id, seen, msgs: () => seen.filter((s) => s.startsWith("msg:")).map((s) => s.slice(4)), closed });
    });
    ws.once("error", reject);
  });
}

async function pidOf(id: string): Promise<Pid> {
  await until(() => connPids.has(id), 2000, `the pid of ${id}`);
  return connPids.get(id)!;
}

/* ---------------------------------------------------------------- lifecycle */

beforeAll(async () => {
  const dispatch = compileRoutes([{ host: "_", paths: [["/m", handler]] }]);
  listener = await startClear(LISTENER, { port: 0 }, { dispatch, logger });
});

afterEach(async () => {
  for (const ws of clients.splice(0)) {
    ws.on("error", () => {});
    if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
  }
  for (const s of rawSockets.splice(0)) s.destroy();
  await sleep(10);
});

afterAll(async () => {
  await stopListener(LISTENER);
});

/* ---------------------------------------------------------------- order */

describe("order: websocketInit, then frames", () => {
  test("frames sent right on 'open' are handled after websocketInit, in order; websocketInit's frame arrives first", async () => {
    const c = await connect({ mode: "greet" }, (ws) => {
      ws.send("1");
      ws.send("2");
      ws.send("3");
    });
    await until(() => c.msgs().length >= 4, 2000, "init frame and three echoes");
    expect(eventsOf(c.id)).toEqual(["init", "text:1", "text:2", "text:3"]);
    expect(c.msgs()).toEqual(["init", "echo:1", "echo:2", "echo:3"]);
  });

  test("an async websocketInit holds the frames the client sent right away until it settles", async () => {
    const c = await connect({ mode: "asyncInit" }, (ws) => {
      ws.send("a");
      ws.send("b");
    });
    await until(() => c.msgs().length >= 3, 2000, "init frame and two echoes");
    expect(eventsOf(c.id)).toEqual(["init", "init:done", "text:a", "text:b"]);
    expect(c.msgs()).toEqual(["init", "echo:a", "echo:b"]);
  });

  test("frames that arrive in the same packet as the handshake are handled right after websocketInit", async () => {
    const id = newId();
    const mask = Buffer.from([0x12, 0x34, 0x56, 0x78]);
    const frame = (s: string): Buffer => {
      const payload = Buffer.from(s);
      const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
      return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]);
    };
    const request =
      `GET /m?id=${id}&mode=greet HTTP/1.1\r\n` +
      `Host: 127.0.0.1:${listener.port}\r\n` +
      "Connection: Upgrade\r\nUpgrade: websocket\r\n" +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    const sock = net.connect(listener.port, "127.0.0.1");
    rawSockets.push(sock);
    let received = Buffer.alloc(0);
    sock.on("data", (d: Buffer) => (received = Buffer.concat([received, d])));
    await new Promise<void>((resolve) => sock.once("connect", () => resolve()));
    sock.write(Buffer.concat([Buffer.from(request), frame("early1"), frame("early2")]));
    await until(() => eventsOf(id).length >= 3, 2000, "the early frames");
    expect(eventsOf(id)).toEqual(["init", "text:early1", "text:early2"]);
    // The server's frames (unmasked, short): the 101, then init's frame, then the echoes.
    await until(() => received.includes("echo:early2"), 2000, "the echoes on the raw socket");
    const head = received.indexOf("\r\n\r\n");
    expect(received.subarray(0, head).toString()).toMatch(/^HTTP\/1\.1 101 /);
    const texts: string[] = [];
    let at = head + 4;
    while (at + 2 <= received.length) {
      const len = received[at + 1]! & 0x7f;
      texts.push(received.subarray(at + 2, at + 2 + len).toString());
      at += 2 + len;
    }
    expect(texts).toEqual(["init", "echo:early1", "echo:early2"]);
  });

  test("websocketInit returning { active: false } holds frames unread (and pings unanswered) until an info sends { active: true }", async () => {
    const c = await connect({ mode: "passive" }, (ws) => {
      ws.send("one");
      ws.send("two");
      ws.ping(Buffer.from("p1"));
      ws.send("three");
    });
    const pid = await pidOf(c.id);
    await sleep(150);
    expect(eventsOf(c.id)).toEqual(["init"]);
    expect(c.seen).toEqual([]);
    send(pid, "activate");
    await until(() => c.msgs().length >= 4, 2000, "the held frames");
    expect(eventsOf(c.id)).toEqual(['init', 'info:"activate"', "text:one", "text:two", "ping:p1", "text:three"]);
    expect(c.msgs()).toEqual(["echo:one", "echo:two", "saw-ping:p1", "echo:three"]);
    // The pong went out only once reading resumed (nothing was seen above), and before the handler's answer to the ping.
    expect(c.seen).toContain("pong:p1");
    expect(c.seen.indexOf("pong:p1")).toBeLessThan(c.seen.indexOf("msg:saw-ping:p1"));
  });

  test("{ active: false } from websocketInfo pauses reading again; { active: true } resumes it", async () => {
    const c = await connect();
    const pid = await pidOf(c.id);
    send(pid, "deactivate");
    await until(() => eventsOf(c.id).includes('info:"deactivate"'), 2000, "deactivate");
    c.ws.send("held");
    await sleep(150);
    expect(eventsOf(c.id)).not.toContain("text:held");
    send(pid, "activate");
    await until(() => c.msgs().includes("echo:held"), 2000, "the held frame");
    expect(eventsOf(c.id)).toEqual(["init", 'info:"deactivate"', 'info:"activate"', "text:held"]);
  });
});

/* ---------------------------------------------------------------- infos */

describe("messages to the connection pid", () => {
  test("send(pid, msg) from app code (outside any process) reaches websocketInfo, in send order", async () => {
    const c = await connect();
    const pid = await pidOf(c.id);
    for (let i = 1; i <= 5; i++) send(pid, { n: i });
    await until(() => c.msgs().length >= 5, 2000, "five info replies");
    expect(eventsOf(c.id)).toEqual(["init", ...[1, 2, 3, 4, 5].map((n) => `info:{"n":${n}}`)]);
    expect(c.msgs()).toEqual([1, 2, 3, 4, 5].map((n) => `info:{"n":${n}}`));
  });

  test("send(pid, msg) from another process reaches websocketInfo, in send order", async () => {
    const c = await connect();
    const pid = await pidOf(c.id);
    const sender = spawn(async () => {
      for (let i = 1; i <= 5; i++) send(pid, `from-proc-${i}`);
    });
    await until(() => c.msgs().length >= 5, 2000, "five info replies");
    expect(eventsOf(c.id)).toEqual(["init", ...[1, 2, 3, 4, 5].map((n) => `info:"from-proc-${n}"`)]);
    await until(() => !isAlive(sender), 2000, "the sender to end");
  });

  test("infos and frames are handled in arrival order", async () => {
    const c = await connect();
    const pid = await pidOf(c.id);
    send(pid, "i1");
    c.ws.send("f1");
    await until(() => eventsOf(c.id).includes("text:f1"), 2000, "f1");
    send(pid, "i2");
    send(pid, "i3");
    c.ws.send("f2");
    c.ws.send("f3");
    await until(() => eventsOf(c.id).includes("text:f3"), 2000, "f3");
    send(pid, "i4");
    await until(() => c.msgs().length >= 7, 2000, "all replies");
    expect(eventsOf(c.id)).toEqual(["init", 'info:"i1"', "text:f1", 'info:"i2"', 'info:"i3"', "text:f2", "text:f3", 'info:"i4"']);
    expect(c.msgs()).toEqual(['info:"i1"', "echo:f1", 'info:"i2"', 'info:"i3"', "echo:f2", "echo:f3", 'info:"i4"']);
  });

  test("a name registered in websocketInit reaches the connection; the name is freed when it ends", async () => {
    const name = `ws-conn-${newId()}`;
    const c = await connect({ name });
    const pid = await pidOf(c.id);
    expect(whereis(name)).toBe(pid);
    send(name, "by-name");
    await until(() => c.msgs().includes('info:"by-name"'), 2000, "the info by name");
    c.ws.close();
    await c.closed;
    await until(() => whereis(name) === undefined, 2000, "the name to be freed");
    expect(isAlive(pid)).toBe(false);
  });

  test("self() in websocketHandle and websocketInfo is the connection pid from websocketInit", async () => {
    const c = await connect();
    const pid = await pidOf(c.id);
    c.ws.send("x");
    send(pid, "y");
    await until(() => c.msgs().length >= 2, 2000, "two replies");
    const seen = selfSeen.get(c.id)!;
    expect(seen).toHaveLength(2);
    for (const p of seen) expect(p).toBe(pid);
  });

  test("a message shaped like a frame, sent with send(), is an info, not a frame", async () => {
    const c = await connect();
    const pid = await pidOf(c.id);
    send(pid, { type: "text", data: "fake" });
    await until(() => c.msgs().length >= 1, 2000, "the info reply");
    expect(eventsOf(c.id)).toEqual(["init", 'info:{"type":"text","data":"fake"}']);
  });
});

/* ---------------------------------------------------------------- frames */

describe("frames reaching websocketHandle", () => {
  test("text arrives as a string, binary as a Uint8Array", async () => {
    const c = await connect();
    c.ws.send("héllo wörld");
    c.ws.send(Buffer.from([0, 1, 2, 255]));
    c.ws.send(new Uint8Array(0));
    await until(() => c.msgs().length >= 3, 2000, "three replies");
    expect(eventsOf(c.id)).toEqual(["init", "text:héllo wörld", "binary:000102ff", "binary:"]);
    expect(c.msgs()).toEqual(["echo:héllo wörld", "bin:000102ff", "bin:"]);
  });

  test("a fragmented binary message is reassembled into one frame", async () => {
    const c = await connect();
    c.ws.send(Buffer.from([1, 2]), { binary: true, fin: false });
    c.ws.send(Buffer.from([3, 4]), { binary: true, fin: false });
    c.ws.send(Buffer.from([5]), { binary: true, fin: true });
    c.ws.send("after");
    await until(() => c.msgs().length >= 2, 2000, "two replies");
    expect(eventsOf(c.id)).toEqual(["init", "binary:0102030405", "text:after"]);
  });

  test("a fragmented text message is reassembled into one frame", async () => {
    const c = await connect();
    c.ws.send("frag", { fin: false });
    c.ws.send("men", { fin: false });
    c.ws.send("ted", { fin: true });
    await until(() => c.msgs().length >= 1, 2000, "one reply");
    await sleep(30);
    expect(eventsOf(c.id)).toEqual(["init", "text:fragmented"]);
    expect(c.msgs()).toEqual(["echo:fragmented"]);
  });

  test("a ping is answered with a pong carrying the same payload before the handler sees the ping", async () => {
    const c = await connect();
    c.ws.ping(Buffer.from("abc"));
    await until(() => c.msgs().length >= 1, 2000, "the handler's reply to the ping");
    expect(eventsOf(c.id)).toEqual(["init", "ping:abc"]);
    expect(c.seen).toEqual(["pong:abc", "msg:saw-ping:abc"]);
  });

  test("an empty ping gets an empty pong and reaches the handler with an empty payload", async () => {
    const c = await connect();
    c.ws.ping();
    await until(() => c.msgs().length >= 1, 2000, "the reply");
    expect(eventsOf(c.id)).toEqual(["init", "ping:"]);
    expect(c.seen).toEqual(["pong:", "msg:saw-ping:"]);
  });

  test("a pong reaches the handler with its payload", async () => {
    const c = await connect();
    c.ws.pong(Buffer.from("xyz"));
    await until(() => c.msgs().length >= 1, 2000, "the reply");
    expect(eventsOf(c.id)).toEqual(["init", "pong:xyz"]);
    expect(c.msgs()).toEqual(["saw-pong:xyz"]);
    // The server does not answer a pong.
    expect(c.seen.filter((s) => s.startsWith("pong:"))).toEqual([]);
  });

  test("a close frame with a code never reaches websocketHandle; terminate runs once with { remote }", async () => {
    const c = await connect();
    c.ws.send("before");
    await until(() => c.msgs().length >= 1, 2000, "the echo");
    c.ws.close(4321, "see ya");
    expect(await c.closed).toEqual({ code: 4321, reason: "see ya" });
    await until(() => termsOf(c.id).length > 0, 2000, "terminate");
    await sleep(30);
    expect(eventsOf(c.id)).toEqual(["init", "text:before"]);
    expect(termsOf(c.id)).toEqual([{ remote: { code: 4321, reason: "see ya" } }]);
  });

  test("an empty close frame never reaches websocketHandle; terminate runs once with 'remote'", async () => {
    const c = await connect();
    c.ws.close();
    expect((await c.closed).code).toBe(1005);
    await until(() => termsOf(c.id).length > 0, 2000, "terminate");
    await sleep(30);
    expect(eventsOf(c.id)).toEqual(["init"]);
    expect(termsOf(c.id)).toEqual(["remote"]);
  });

  test("a client that drops TCP without a close frame: terminate runs once with { error: 'closed' }", async () => {
    const c = await connect();
    const pid = await pidOf(c.id);
    c.ws.terminate();
    await until(() => termsOf(c.id).length > 0, 2000, "terminate");
    await sleep(30);
    expect(termsOf(c.id)).toEqual([{ error: "closed" }]);
    expect(isAlive(pid)).toBe(false);
  });
});

/* ---------------------------------------------------------------- bookkeeping */

describe("bookkeeping", () => {
  test("every connection this file opened ran terminate exactly once", async () => {
    for (const ws of clients.splice(0)) {
      ws.on("error", () => {});
      ws.terminate();
    }
  for (const s of rawSockets.splice(0)) s.destroy();
    await until(() => [...connPids.values()].every((p) => !isAlive(p)), 2500, "every connection to end");
    await sleep(30);
    const wrong = [...connPids.keys()].map((id) => ({ id, calls: termsOf(id).length })).filter((x) => x.calls !== 1);
    expect(wrong).toEqual([]);
    expect(connPids.size).toBeGreaterThan(15);
  });
});
