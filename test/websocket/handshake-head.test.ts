/**
 * The upgrade request's head on the wire (docs/architecture.md, one connection): the usual
 * handshake, read whole in the connection's first read, goes straight to the router; anything
 * else goes through node:http and is answered exactly as before. Raw TCP on 127.0.0.1: each
 * case sends the same bytes in one write and split over two (which node:http always reads),
 * and compares what came back and what init saw. Whether node:http parsed a connection is
 * seen from outside, by the async resource its parser makes for each (HTTPINCOMINGMESSAGE).
 */
import { createHook } from "node:async_hooks";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { compileRoutes, ok, processCount, reply, startClear, stopListener, upgrade, type Listener, type WebSocketHandler } from "../../src/index.js";
import { captureLogs, sleep, until } from "../support/helpers.js";
import { handles } from "../support/measure.js";
import { OP, RawClient, encodeFrame, rawExchange, type RawExchange } from "../support/raw-client.js";

const NAME = "ws-handshake-head";
const KEY = "dGhlIHNhbXBsZSBub25jZQ==";
const REQUEST_TIMEOUT = 1500;
/** node:http checks request deadlines every connectionsCheckingInterval (1000 ms in corral); so does the first read. */
const CHECK_INTERVAL = 1000;
const KEEP_ALIVE = 300;
const MAX_HEADER_SIZE = 16_384;
let listener: Listener;
let baseProcs = 0;
let baseSockets = 0;

/** What init saw of each request: the Req's fields (the peer's port aside, it differs per connection). */
const seen: unknown[] = [];
let inits = 0;
let release: (() => void) | undefined;
const handler: WebSocketHandler<null> = {
  async init(req) {
    inits++;
    const { method, version, scheme, host, port, path, qs, headers, bindings, hostInfo, pathInfo } = req;
    seen.push({ method, version, scheme, host, port, path, qs, peer: req.peer.address, headers: { ...headers }, bindings, hostInfo, pathInfo, body: (await req.readBody()).length });
    if (path === "/wait") await new Promise<void>((resolve) => (release = resolve));
    if (path.startsWith("/plain")) {
      req.reply(200, { "content-type": "text/plain" }, "plain");
      return { type: "ok", req, state: null };
    }
    return upgrade(req, null);
  },
  websocketHandle: (frame, s) => (frame.type === "text" || frame.type === "binary" ? reply(frame, s) : ok(s)),
};

/** Connections node:http's parser was set up for. */
let parsers = 0;
const hook = createHook({
  init(_id, type) {
    if (type === "HTTPINCOMINGMESSAGE") parsers++;
  },
});

beforeAll(async () => {
  hook.enable();
  listener = await startClear(
    NAME,
    { port: 0 },
    {
      dispatch: compileRoutes([
        { host: "missing.example", paths: [] },
        { host: "_", paths: [["/[...]", handler, {}]] },
      ]),
      logger: captureLogs().logger,
      requestTimeout: REQUEST_TIMEOUT,
      keepAliveTimeout: KEEP_ALIVE,
      maxHeaderSize: MAX_HEADER_SIZE,
    },
  );
  baseProcs = processCount();
  baseSockets = handles("TCPSocketWrap");
});

afterAll(async () => {
  hook.disable();
  await stopListener(NAME);
});

function head(first: string, lines: readonly string[]): string {
  return [first, ...lines].join("\r\n") + "\r\n\r\n";
}

const UPGRADE = ["Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade", `Sec-WebSocket-Key: ${KEY}`, "Sec-WebSocket-Version: 13"];
const usual = (lines: readonly string[] = []): string => head("GET / HTTP/1.1", [...UPGRADE, ...lines]);

interface Observed {
  readonly ex: RawExchange;
  readonly seen: unknown[];
  readonly parsers: number;
}

/** One exchange: what came back, what init saw, how many connections node:http parsed. */
async function observe(chunks: readonly string[]): Promise<Observed> {
  seen.length = 0;
  parsers = 0;
  const ex = await rawExchange(listener.port, chunks);
  // init of a request node:http answered itself never ran; of one that upgraded, it ran before the 101.
  await sleep(20);
  return { ex, seen: [...seen], parsers };
}

/** What the responses say, without their Date (the clock moves between the two), up to the end of a 101's head (frames follow). */
function normalized(text: string): string {
  const switched = /HTTP\/1\.1 101 [^]*?\r\n\r\n/.exec(text);
  return (switched === null ? text : text.slice(0, switched.index + switched[0].length)).replace(/\r\ndate: [^\r]*/gi, "");
}

/**
 * The bytes in one write and split in two (`at` bytes first): the same answer, the same Req
 * in init, and the split one always read by node:http. Returns the one-write exchange.
 */
async function sameAsNodeHttp(bytes: string, at = bytes.length - 2): Promise<Observed> {
  const whole = await observe([bytes]);
  const split = await observe([bytes.slice(0, at), bytes.slice(at)]);
  expect(split.parsers).toBe(1);
  expect(whole.ex.statuses).toEqual(split.ex.statuses);
  expect(normalized(whole.ex.text)).toBe(normalized(split.ex.text));
  expect(whole.ex.serverClosed).toBe(split.ex.serverClosed);
  expect(whole.seen).toEqual(split.seen);
  return whole;
}

async function nothingLeft(): Promise<void> {
  await until(() => processCount() === baseProcs, 3000, `processCount back to ${baseProcs} (is ${processCount()})`);
  await until(() => handles("TCPSocketWrap") === baseSockets, 3000, `TCP sockets back to ${baseSockets} (are ${handles("TCPSocketWrap")})`);
}

describe("the usual handshake in one read: no node:http parser, the same Req and 101", () => {
  const FAST: [string, string][] = [
    ["the usual handshake", usual()],
    [
      "a browser's: a query string, Origin, User-Agent, a cookie, subprotocols, extensions, Connection: keep-alive, Upgrade",
      head("GET /chat/room?x=1&y=%2F HTTP/1.1", [
        "Host: example.com:8080",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Accept: */*",
        "Accept-Language: en-US,en;q=0.5",
        "Accept-Encoding: gzip, deflate, br",
        "Sec-WebSocket-Version: 13",
        "Origin: https://example.com",
        "Sec-WebSocket-Protocol: chat, superchat",
        "Sec-WebSocket-Extensions: permessage-deflate",
        `Sec-WebSocket-Key: ${KEY}`,
        "Connection: keep-alive, Upgrade",
        "Cookie: a=1; b=2",
        "Pragma: no-cache",
        "Cache-Control: no-cache",
        "Upgrade: websocket",
      ]),
    ],
    ["lower-case names, spaces and tabs around values, an empty value", head("GET / HTTP/1.1", ["host:127.0.0.1", "upgrade:\t websocket \t", "connection:  upgrade", `sec-websocket-key: ${KEY}  `, "sec-websocket-version:13", "x-empty:", "x-inner: a  b\tc"])],
    ["Upgrade: WebSocket and Connection: UPGRADE (any case), Content-Length: 0", head("GET / HTTP/1.1", ["Host: 127.0.0.1", "Upgrade: WebSocket", "Connection: UPGRADE", `Sec-WebSocket-Key: ${KEY}`, "Sec-WebSocket-Version: 13", "Content-Length: 0"])],
    ["an IPv6 Host with a port", head("GET / HTTP/1.1", ["Host: [::1]:8080", ...UPGRADE.slice(1)])],
    ["a target with every kind of visible byte", head("GET /a/%20b;c=d,e!$&'()*+@:~[]|{}^`\"\\<>?q=1&r=/?#frag HTTP/1.1", UPGRADE)],
    ["Connection listing upgrade among other tokens", usual().replace("Connection: Upgrade", "Connection: foo,\tupgrade , bar")],
    ["a refused one, read the same way: no Sec-WebSocket-Key (400)", head("GET / HTTP/1.1", ["Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13"])],
    ["no route for it (404 from the router, on the raw socket)", head("GET / HTTP/1.1", ["Host: missing.example", ...UPGRADE.slice(1)])],
  ];

  test.each(FAST)("%s", async (_name, bytes) => {
    const o = await sameAsNodeHttp(bytes);
    expect(o.parsers).toBe(0);
    expect(o.ex.status).toBeDefined();
  });

  test("the usual handshake gets its 101 and echoes, and init saw GET, HTTP/1.1, http, the host, path, query and headers", async () => {
    const o = await sameAsNodeHttp(head("GET /room?id=7 HTTP/1.1", ["Host: Example.COM:9000", ...UPGRADE.slice(1), "Origin: http://example.com"]));
    expect(o.ex.status).toBe(101);
    expect(o.seen).toEqual([
      {
        method: "GET",
        version: "HTTP/1.1",
        scheme: "http",
        host: "example.com",
        port: 9000,
        path: "/room",
        qs: "id=7",
        peer: "127.0.0.1",
        headers: {
          host: "Example.COM:9000",
          upgrade: "websocket",
          connection: "Upgrade",
          "sec-websocket-key": KEY,
          "sec-websocket-version": "13",
          origin: "http://example.com",
        },
        bindings: {},
        hostInfo: undefined,
        pathInfo: ["room"],
        body: 0,
      },
    ]);
    const client = await RawClient.connect(listener.port);
    expect(client.response!.status).toBe(101);
    client.socket.write(encodeFrame({ opcode: OP.text, payload: "over the fast path" }));
    const frame = await client.next();
    expect(frame.payload.toString()).toBe("over the fast path");
    client.destroy();
  });
});

describe("anything else goes to node:http, answered as it always was", () => {
  const big = (n: number): string => {
    const base = usual(["X-Pad: "]);
    return base.replace("X-Pad: ", `X-Pad: ${"p".repeat(n - base.length)}`);
  };
  const FALLBACK: [string, string][] = [
    ["obs-fold (a header line continued on the next)", usual(["X-Folded: a", " b"])],
    ["a repeated Upgrade", usual(["Upgrade: websocket"])],
    ["a repeated Host", usual(["Host: other.example"])],
    ["a repeated Sec-WebSocket-Key", usual([`Sec-WebSocket-Key: ${KEY}`])],
    ["a repeated Connection", usual(["Connection: keep-alive"])],
    ["Transfer-Encoding: chunked", usual(["Transfer-Encoding: chunked"])],
    ["Content-Length: 5 and a body", usual(["Content-Length: 5"]) + "hello"],
    ["Content-Length: 5, the body not sent", usual(["Content-Length: 5"])],
    ["bytes after the head (a frame)", usual() + encodeFrame({ opcode: OP.text, payload: "early" }).toString("latin1")],
    ["a second request after the head", usual() + "GET /plain HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"],
    ["an HTTP/1.0 upgrade", head("GET / HTTP/1.0", UPGRADE)],
    ["a lower-case method", head("get / HTTP/1.1", UPGRADE)],
    ["POST", head("POST / HTTP/1.1", [...UPGRADE, "Content-Length: 0"])],
    ["an absolute-form target", head("GET http://127.0.0.1/ HTTP/1.1", UPGRADE)],
    ["an asterisk target", head("GET * HTTP/1.1", UPGRADE)],
    ["two spaces in the request line", head("GET  / HTTP/1.1", UPGRADE)],
    ["a non-ASCII byte in a header value", usual(["X-Name: caf\u00e9"])],
    ["a non-ASCII byte in the target", head("GET /caf\u00e9 HTTP/1.1", UPGRADE)],
    ["a DEL byte in a header value", usual(["X-Bad: a\u007fb"])],
    ["a NUL byte in a header value", usual(["X-Bad: a\u0000b"])],
    ["a space before the colon", usual(["X-Spaced : v"])],
    ["a header line without a colon", usual(["not a header"])],
    ["bare LF line ends", usual().replace(/\r\n/g, "\n")],
    ["a bare CR inside a value", usual(["X-CR: a\rb"])],
    ["no Host", head("GET / HTTP/1.1", UPGRADE.slice(1))],
    ["Upgrade: h2c", usual().replace("Upgrade: websocket", "Upgrade: h2c")],
    ["an empty Upgrade", usual().replace("Upgrade: websocket", "Upgrade:")],
    ["Connection without upgrade (a keep-alive request)", usual().replace("Connection: Upgrade", "Connection: keep-alive")],
    ["Connection: upgradex (not the token)", usual().replace("Connection: Upgrade", "Connection: upgradex")],
    ["a header named __proto__", usual(["__proto__: x"])],
    ["a header named constructor", usual(["Constructor: x"])],
    ["101 headers", usual(Array.from({ length: 96 }, (_, i) => `X-H${i}: v`))],
    ["a head one byte over maxHeaderSize", big(MAX_HEADER_SIZE + 1)],
    ["a 20 KB head (431)", big(20_000)],
  ];

  test.each(FALLBACK)("%s", async (_name, bytes) => {
    const o = await sameAsNodeHttp(bytes);
    expect(o.parsers).toBe(1);
  });

  test("a head of exactly maxHeaderSize bytes is read without node:http and upgrades", async () => {
    const o = await sameAsNodeHttp(big(MAX_HEADER_SIZE));
    expect(o.parsers).toBe(0);
    expect(o.ex.status).toBe(101);
  });

  test("statuses as before: obs-fold 400, a repeated Upgrade 426, HTTP/1.0 426, a lower-case method 400, an absolute-form target 400, a 20 KB head 431", async () => {
    expect((await observe([usual(["X-Folded: a", " b"])])).ex.status).toBe(400);
    expect((await observe([usual(["Upgrade: websocket"])])).ex.status).toBe(426);
    expect((await observe([head("GET / HTTP/1.0", UPGRADE)])).ex.status).toBe(426);
    expect((await observe([head("get / HTTP/1.1", UPGRADE)])).ex.status).toBe(400);
    expect((await observe([head("GET http://127.0.0.1/ HTTP/1.1", UPGRADE)])).ex.status).toBe(400);
    expect((await observe([big(20_000)])).ex.status).toBe(431);
  });

  test("a head split across two TCP writes still upgrades (node:http reads it)", async () => {
    const bytes = usual();
    for (const at of [1, 16, bytes.length - 1]) {
      const o = await observe([bytes.slice(0, at), bytes.slice(at)]);
      expect(o.ex.status).toBe(101);
      expect(o.parsers).toBe(1);
    }
  });

  test("a frame in the same write as the head: node:http hands it over as the head's tail, and it is echoed", async () => {
    const client = await RawClient.connect(listener.port, { extra: encodeFrame({ opcode: OP.text, payload: "early" }) });
    expect(client.response!.status).toBe(101);
    expect((await client.next()).payload.toString()).toBe("early");
    client.destroy();
  });
});

describe("keep-alive and pipelining stay node:http's", () => {
  test("a plain GET first, then another and an upgrade on the same connection: 200, 200, 101", async () => {
    const plain = "GET /plain HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    const o = await observe([plain, plain, usual()]);
    expect(o.ex.statuses).toEqual([200, 200, 101]);
    expect(o.parsers).toBe(1);
  });

  test("an upgrade pipelined after a GET in one write: the GET answered, then the upgrade, as node:http does it", async () => {
    const plain = "GET /plain HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    const o = await sameAsNodeHttp(plain + usual(), plain.length + 10);
    expect(o.ex.statuses).toEqual([200, 101]);
    expect(o.parsers).toBe(1);
  });

  test("a keep-alive GET's connection is closed after keepAliveTimeout (and node's one-second buffer), as node:http does", async () => {
    const o = await observe(["GET /plain HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"]);
    expect(o.ex.statuses).toEqual([200]);
    expect(o.ex.serverClosed).toBe(true);
    expect(o.ex.ms).toBeLessThan(KEEP_ALIVE + 2000);
  });
});

describe("slow and silent clients: requestTimeout as before", () => {
  test(
    "a head that stops half-way and a connection that sends nothing both get 408 at requestTimeout",
    async () => {
      const wait = REQUEST_TIMEOUT + CHECK_INTERVAL + 1500;
      const t0 = performance.now();
      const [partial, silent] = await Promise.all([
        rawExchange(listener.port, [usual().slice(0, 40)], { waitMs: wait }),
        rawExchange(listener.port, [], { waitMs: wait }),
      ]);
      for (const o of [partial, silent]) {
        expect(o.status).toBe(408);
        expect(o.serverClosed).toBe(true);
        expect(o.ms).toBeGreaterThanOrEqual(REQUEST_TIMEOUT - 100);
        expect(o.ms).toBeLessThan(REQUEST_TIMEOUT + CHECK_INTERVAL + 1000);
      }
      expect(performance.now() - t0).toBeLessThan(wait);
      await nothingLeft();
    },
    10_000,
  );

  test("a client that half-closes without sending anything is closed at once", async () => {
    const o = await rawExchange(listener.port, [], { end: true, waitMs: 1000 });
    expect(o.serverClosed).toBe(true);
    expect(o.status).toBeUndefined();
    expect(o.ms).toBeLessThan(500);
  });

  test("a reset before the first byte, and one after half a head, leave nothing behind", async () => {
    await Promise.all([rawExchange(listener.port, [], { resetAfterMs: 20 }), rawExchange(listener.port, [usual().slice(0, 30)], { resetAfterMs: 20 })]);
    await nothingLeft();
  });
});

describe("the client leaves before the 101", () => {
  test("a reset while init runs ends that socket, not the node; the next client upgrades", async () => {
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown): void => {
      uncaught.push(err);
    };
    process.prependListener("uncaughtException", onUncaught);
    try {
      for (const split of [false, true]) {
        const before = inits;
        const bytes = head("GET /wait HTTP/1.1", UPGRADE);
        const gone = rawExchange(listener.port, split ? [bytes.slice(0, 20), bytes.slice(20)] : [bytes], { resetAfterMs: 50 });
        await until(() => inits === before + 1, 2000, "init started");
        await gone;
        await sleep(50);
        release!();
        await nothingLeft();
      }
      expect((await observe([usual()])).ex.status).toBe(101);
      expect(uncaught).toEqual([]);
    } finally {
      process.off("uncaughtException", onUncaught);
    }
  });
});

describe("bytes sent before the 101", () => {
  test("a frame sent while init runs is kept, and echoed after the 101 (one read and split)", async () => {
    for (const split of [false, true]) {
      const before = inits;
      const bytes = head("GET /wait HTTP/1.1", UPGRADE);
      const o = await rawExchange(
        listener.port,
        [
          ...(split ? [bytes.slice(0, 20), bytes.slice(20)] : [bytes]),
          () => until(() => inits === before + 1, 2000, "init started"),
          encodeFrame({ opcode: OP.text, payload: "sent before the 101" }),
          () => sleep(50),
          () => release!(),
        ],
        { untilText: "sent before the 101", waitMs: 2000 },
      );
      expect(o.status).toBe(101);
      expect(o.text).toContain("sent before the 101");
    }
  });
});

describe("stopListener", () => {
  test("a connection that sent nothing is destroyed at shutdownTimeout, as node:http's are", async () => {
    const l = await startClear("ws-handshake-head-stop", { port: 0 }, { dispatch: compileRoutes([{ host: "_", paths: [["/", handler, {}]] }]), shutdownTimeout: 300 });
    const silent = rawExchange(l.port, [], { waitMs: 3000 });
    await sleep(50);
    const t0 = performance.now();
    await stopListener("ws-handshake-head-stop");
    const ms = performance.now() - t0;
    expect(ms).toBeGreaterThanOrEqual(250);
    expect(ms).toBeLessThan(1500);
    const o = await silent;
    expect(o.serverClosed).toBe(true);
    expect(o.status).toBeUndefined();
  });
});
