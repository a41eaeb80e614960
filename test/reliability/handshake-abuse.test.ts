/**
 * Handshake abuse: malformed upgrade requests get the documented status (docs/websocket.md,
 * "The handshake"; docs/listeners.md, "Limits") and their socket closed by the server; slow
 * clients (slowloris) are cut off at requestTimeout; nothing of theirs stays behind (request
 * processes, sockets), and a canary connection keeps echoing throughout.
 */
import { createHash, randomBytes } from "node:crypto";
import { connect as netConnect } from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import WebSocket from "ws";
import { compileRoutes, ok, processCount, reply, startClear, stopListener, upgrade, type Listener, type WebSocketHandler } from "../../src/index.js";
import { sleep, until } from "../support/helpers.js";
import { SCALE, timeout } from "./scale.js";
import { handles } from "../support/measure.js";

const echo: WebSocketHandler<null> = {
  init: (req) => upgrade(req, null),
  websocketHandle: (frame, s) => (frame.type === "text" || frame.type === "binary" ? reply(frame, s) : ok(s)),
};

const NAME = "reliability-handshake";
/** Short enough to keep the slowloris case quick; a trickle of one byte per second never beats it. */
const REQUEST_TIMEOUT = 1500;
/** node:http checks request deadlines every connectionsCheckingInterval (1000 ms in corral). */
const CHECK_INTERVAL = 1000;
/** How long an idle keep-alive socket (say, after a 426) stays open. */
const KEEP_ALIVE = 1000;
let listener: Listener;
let canary: WebSocket;
let baseProcs = 0;
let baseSockets = 0;

beforeAll(async () => {
  listener = await startClear(
    NAME,
    { port: 0 },
    { dispatch: compileRoutes([{ host: "_", paths: [["/", echo, {}]] }]), requestTimeout: REQUEST_TIMEOUT, keepAliveTimeout: KEEP_ALIVE },
  );
  baseSockets = handles("TCPSocketWrap");
  canary = new WebSocket(`ws://127.0.0.1:${listener.port}/`);
  await new Promise<void>((resolve, reject) => {
    canary.once("open", () => resolve());
    canary.once("error", reject);
  });
  // the canary's two ends: its client socket and the server's
  baseSockets += 2;
  baseProcs = processCount();
});

afterAll(async () => {
  canary.terminate();
  await stopListener(NAME);
});

let canarySeq = 0;
/** One echo round trip on the canary; its latency in ms. */
async function canaryEcho(): Promise<number> {
  const msg = `canary ${++canarySeq}`;
  const t0 = performance.now();
  const got = new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`canary: no echo of ${msg}`)), 2000);
    canary.once("message", (d) => {
      clearTimeout(t);
      resolve(String(d));
    });
  });
  canary.send(msg);
  expect(await got).toBe(msg);
  return performance.now() - t0;
}

interface Outcome {
  /** The response's status, or undefined if none came. */
  status: number | undefined;
  /** The server ended the socket (we never destroyed it ourselves before this). */
  serverClosed: boolean;
  ms: number;
}

/** Connects, writes the bytes (whole, or one byte every `trickleMs`), and watches until the server closes or `waitMs` passes. */
function exchange(bytes: Buffer, waitMs = 2500, trickleMs?: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const s = netConnect({ host: "127.0.0.1", port: listener.port });
    const t0 = performance.now();
    let out = Buffer.alloc(0);
    let done = false;
    let trickle: NodeJS.Timeout | undefined;
    const finish = (serverClosed: boolean): void => {
      if (done) return;
      done = true;
      clearInterval(trickle);
      clearTimeout(timer);
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(out.toString("latin1"));
      s.destroy();
      resolve({ status: m === null ? undefined : Number(m[1]), serverClosed, ms: performance.now() - t0 });
    };
    const timer = setTimeout(() => finish(false), waitMs);
    s.on("data", (d: Buffer) => (out = Buffer.concat([out, d])));
    s.on("end", () => finish(true));
    s.on("close", () => finish(true));
    s.on("error", () => {});
    s.once("connect", () => {
      if (trickleMs === undefined) {
        s.write(bytes);
        return;
      }
      let i = 0;
      trickle = setInterval(() => {
        if (i < bytes.length && !s.destroyed) s.write(bytes.subarray(i, ++i));
      }, trickleMs);
    });
  });
}

const KEY = "dGhlIHNhbXBsZSBub25jZQ==";

function request(first: string, lines: readonly string[]): Buffer {
  return Buffer.from([first, "Host: 127.0.0.1", ...lines].join("\r\n") + "\r\n\r\n", "latin1");
}

const UPGRADE = ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13"];

/** [case, request bytes, documented status]. */
const CASE_LIST: [string, Buffer, number][] = [
  ["no Sec-WebSocket-Key", request("GET / HTTP/1.1", UPGRADE), 400],
  ["an empty Sec-WebSocket-Key", request("GET / HTTP/1.1", [...UPGRADE, "Sec-WebSocket-Key: "]), 400],
  ["a Sec-WebSocket-Key that is not 16 bytes in base64 (\"abc\")", request("GET / HTTP/1.1", [...UPGRADE, "Sec-WebSocket-Key: abc"]), 400],
  ["a Sec-WebSocket-Key of 17 bytes", request("GET / HTTP/1.1", [...UPGRADE, `Sec-WebSocket-Key: ${Buffer.alloc(17, 1).toString("base64")}`]), 400],
  ["two Sec-WebSocket-Key headers", request("GET / HTTP/1.1", [...UPGRADE, `Sec-WebSocket-Key: ${KEY}`, `Sec-WebSocket-Key: ${KEY}`]), 400],
  ["no Sec-WebSocket-Version", request("GET / HTTP/1.1", ["Upgrade: websocket", "Connection: Upgrade", `Sec-WebSocket-Key: ${KEY}`]), 400],
  ...["8", "12", "14", "13x", "13, 13"].map((v): [string, Buffer, number] => [
    `Sec-WebSocket-Version: ${v}`,
    request("GET / HTTP/1.1", ["Upgrade: websocket", "Connection: Upgrade", `Sec-WebSocket-Version: ${v}`, `Sec-WebSocket-Key: ${KEY}`]),
    400,
  ]),
  ...["POST", "PUT", "DELETE", "OPTIONS"].map((m): [string, Buffer, number] => [`${m} with upgrade headers`, request(`${m} / HTTP/1.1`, [...UPGRADE, `Sec-WebSocket-Key: ${KEY}`, "Content-Length: 0"]), 400]),
  ["HEAD with upgrade headers", request("HEAD / HTTP/1.1", [...UPGRADE, `Sec-WebSocket-Key: ${KEY}`]), 400],
  ["Upgrade: h2c", request("GET / HTTP/1.1", ["Upgrade: h2c", "Connection: Upgrade", `Sec-WebSocket-Key: ${KEY}`]), 426],
  ["a 20 KB header (maxHeaderSize 16384)", request("GET / HTTP/1.1", [...UPGRADE, `Sec-WebSocket-Key: ${KEY}`, `X-Big: ${"b".repeat(20_000)}`]), 431],
  ["3000 small headers", request("GET / HTTP/1.1", [...UPGRADE, `Sec-WebSocket-Key: ${KEY}`, ...Array.from({ length: 3000 }, (_, i) => `X-H${i}: v`)]), 431],
  ["binary garbage instead of a request", Buffer.from([0, 1, 2, 0xff, 0xfe, 13, 10, 13, 10]), 400],
  ["an impossible HTTP version", Buffer.from("GET / HTTP/9.9.9\r\nHost: 127.0.0.1\r\n\r\n"), 400],
  ["a NUL byte inside a header", request("GET / HTTP/1.1", [...UPGRADE, `Sec-WebSocket-Key: ${KEY}`, "X-Bad: a\u0000b"]), 400],
  ["a header line without a colon", request("GET / HTTP/1.1", [...UPGRADE, `Sec-WebSocket-Key: ${KEY}`, "not a header"]), 400],
];
const CASES = CASE_LIST.map(([name, bytes, status]) => ({ name, bytes, status }));

/** Processes and sockets are back where they were (request processes ended, server sockets closed). */
async function nothingLeft(): Promise<void> {
  await until(() => processCount() === baseProcs, 3000, `processCount back to ${baseProcs} (is ${processCount()})`);
  await until(() => handles("TCPSocketWrap") === baseSockets, 3000, `TCP sockets back to ${baseSockets} (are ${handles("TCPSocketWrap")})`);
  expect(listener.connections).toBe(1);
}

describe("malformed handshakes: the documented status, the socket closed by the server, nothing left behind", () => {
  test.each(CASES)(`$name → $status (×${SCALE.handshakeRepeats}, at once)`, async ({ bytes, status }) => {
    const outcomes = await Promise.all(Array.from({ length: SCALE.handshakeRepeats }, () => exchange(bytes)));
    for (const o of outcomes) {
      expect(o.status).toBe(status);
      expect(o.serverClosed).toBe(true);
      expect(o.ms).toBeLessThan(2000);
    }
    await nothingLeft();
    await canaryEcho();
  });

  test("a well-formed request still upgrades (the control case)", async () => {
    const s = netConnect({ host: "127.0.0.1", port: listener.port });
    const key = randomBytes(16).toString("base64");
    const head = await new Promise<string>((resolve) => {
      s.once("data", (d) => resolve(d.toString("latin1")));
      s.write(request("GET / HTTP/1.1", [...UPGRADE, `Sec-WebSocket-Key: ${key}`]));
    });
    expect(head).toMatch(/^HTTP\/1\.1 101 /);
    expect(head).toContain(createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64"));
    s.destroy();
    await nothingLeft();
  });

  test("Upgrade: websocket without Connection: upgrade (a keep-alive request), or with Connection: close → 426; the socket is freed at keepAliveTimeout at the latest", async () => {
    const [keepAlive, close] = await Promise.all([
      exchange(request("GET / HTTP/1.1", ["Upgrade: websocket", "Sec-WebSocket-Version: 13", `Sec-WebSocket-Key: ${KEY}`]), KEEP_ALIVE + CHECK_INTERVAL + 1500),
      exchange(request("GET / HTTP/1.1", ["Upgrade: websocket", "Connection: close", "Sec-WebSocket-Version: 13", `Sec-WebSocket-Key: ${KEY}`]), KEEP_ALIVE + CHECK_INTERVAL + 1500),
    ]);
    for (const o of [keepAlive, close]) {
      expect(o.status).toBe(426);
      expect(o.serverClosed).toBe(true);
      expect(o.ms).toBeLessThan(KEEP_ALIVE + CHECK_INTERVAL + 1000);
    }
    await nothingLeft();
  });

  // BUG: the client said Connection: close, but the 426 carries corral's "connection: upgrade"
  // header, and node:http takes any Connection response header other than "close" as keep-alive
  // (it sets shouldKeepAlive), so the socket stays open until keepAliveTimeout instead of closing
  // after the response (RFC 9112 9.6). Suspected: the 426 headers from
  // src/server/upgrade.ts refuseUpgrade, as replied by src/server/listener.ts.
  test("Upgrade: websocket with Connection: close → 426 and the server closes the socket right after the response", async () => {
    const o = await exchange(request("GET / HTTP/1.1", ["Upgrade: websocket", "Connection: close", "Sec-WebSocket-Version: 13", `Sec-WebSocket-Key: ${KEY}`]), 500);
    expect(o.status).toBe(426);
    expect(o.serverClosed).toBe(true);
  });

  // BUG: corral upgrades an HTTP/1.0 request. RFC 6455 4.1 requires HTTP/1.1 or higher, and
  // Cowboy's cowboy_websocket:is_upgrade_request/1 only matches version 'HTTP/1.1' (or HTTP/2
  // CONNECT), so Cowboy answers 426 (not an upgrade). Suspected: src/server/listener.ts,
  // ServerExchange.handshakeError checks method, key and version header but not req.version.
  test("an HTTP/1.0 upgrade request → 426 (Cowboy: not an upgrade request); corral answers 101", async () => {
    const o = await exchange(request("GET / HTTP/1.0", [...UPGRADE, `Sec-WebSocket-Key: ${KEY}`]), 500);
    expect(o.status).toBe(426);
  });
});

describe("slow clients (slowloris)", () => {
  test(
    `${SCALE.slowloris} sockets trickling an upgrade request one byte per second and ${SCALE.slowloris} silent sockets: each gets 408 (or is closed) at requestTimeout, the canary never stalls, new clients get in meanwhile`,
    async () => {
      const req = request("GET / HTTP/1.1", [...UPGRADE, `Sec-WebSocket-Key: ${KEY}`]);
      const t0 = performance.now();
      const slow = Array.from({ length: SCALE.slowloris }, () => exchange(req, REQUEST_TIMEOUT + CHECK_INTERVAL + 2000, 1000));
      const silent = Array.from({ length: SCALE.slowloris }, () => exchange(Buffer.alloc(0), REQUEST_TIMEOUT + CHECK_INTERVAL + 2000));
      // meanwhile: the canary echoes every 50 ms, and a new client completes a handshake quickly
      const latencies: number[] = [];
      let sockets: Outcome[] | undefined;
      void Promise.all([...slow, ...silent]).then((o) => (sockets = o));
      let fresh = 0;
      while (sockets === undefined && performance.now() - t0 < REQUEST_TIMEOUT + CHECK_INTERVAL + 3000) {
        latencies.push(await canaryEcho());
        if (fresh < 3 && performance.now() - t0 > 500 * (fresh + 1)) {
          const h0 = performance.now();
          const ws = new WebSocket(`ws://127.0.0.1:${listener.port}/`);
          await new Promise<void>((resolve, reject) => {
            ws.once("open", () => resolve());
            ws.once("error", reject);
          });
          expect(performance.now() - h0).toBeLessThan(1500);
          ws.terminate();
          fresh++;
        }
        await sleep(50);
      }
      expect(sockets).toBeDefined();
      for (const o of sockets!) {
        expect(o.serverClosed).toBe(true);
        if (o.status !== undefined) expect(o.status).toBe(408);
        expect(o.ms).toBeGreaterThanOrEqual(REQUEST_TIMEOUT - 100);
        expect(o.ms).toBeLessThan(REQUEST_TIMEOUT + CHECK_INTERVAL + 1000);
      }
      expect(fresh).toBe(3);
      const ms = sockets!.map((o) => o.ms);
      console.log(
        `slowloris: ${sockets!.length} sockets cut off after ${Math.round(Math.min(...ms))}–${Math.round(Math.max(...ms))} ms ` +
          `(${sockets!.filter((o) => o.status === 408).length} with a 408); canary ${latencies.length} echoes, worst ${Math.max(...latencies).toFixed(1)} ms`,
      );
      // generous bounds: other test files may load the machine; a stall would be seconds
      expect(Math.max(...latencies)).toBeLessThan(1000);
      await nothingLeft();
    },
    timeout(15_000, 30_000),
  );

  test("a request trickled in 20-byte pieces that completes well inside requestTimeout still upgrades (the timeout is not spuriously tight)", async () => {
    const key = randomBytes(16).toString("base64");
    const bytes = request("GET / HTTP/1.1", [...UPGRADE, `Sec-WebSocket-Key: ${key}`]);
    const s = netConnect({ host: "127.0.0.1", port: listener.port });
    await new Promise((r) => s.once("connect", r));
    const head = new Promise<string>((resolve) => s.once("data", (d) => resolve(d.toString("latin1"))));
    for (let i = 0; i < bytes.length; i += 20) {
      s.write(bytes.subarray(i, i + 20));
      await sleep(20);
    }
    expect(await head).toMatch(/^HTTP\/1\.1 101 /);
    s.destroy();
    await nothingLeft();
  });
});
