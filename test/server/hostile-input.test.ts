/**
 * Every parser that sees request data, fed 16 KiB of input shaped against it (long runs of
 * whitespace, separators and near-misses that make a backtracking regex retry from every
 * position), through a real request on 127.0.0.1. The bound is on CPU time counted by
 * process.cpuUsage (the listener runs in this process), never on wall-clock time: a linear
 * parser costs well under a millisecond for 16 KiB, a quadratic one hundreds.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { httpDate, parseRange } from "../../src/handlers/static.js";
import { compileRoutes, startClear, staticDir, staticFile, stopListener, upgrade, type HttpHandler, type WebSocketHandler } from "../../src/index.js";

const NAME = "hostile-input-test";
const N = 16 * 1024;
/** CPU per request (client and server, this process), the cheapest of a few runs. Linear: ~1 ms. */
const CPU_BOUND_MS = 30;

let tmp: string;
let port: number;

/** Parses what a handler may parse, so each parser runs on the request's values. */
const parse: HttpHandler<null> = {
  init(req) {
    for (const name of ["cookie", "accept", "content-type", "sec-websocket-protocol"] as const) {
      try {
        req.parseHeader(name);
      } catch {
        // a malformed value throws ERR_BADARG: what matters here is what it cost
      }
    }
    try {
      req.parseQs();
    } catch {
      // likewise
    }
    req.reply(200, {}, "parsed");
    return { type: "ok", req, state: null };
  },
};

const ws: WebSocketHandler<null> = {
  init: (req) => upgrade(req, null, { allowedOrigins: ["http://good.example"] }),
  websocketHandle: (_frame, state) => ({ type: "ok", state }),
};

const id: HttpHandler<null> = {
  init(req) {
    req.reply(200, {}, req.binding("id") ?? "");
    return { type: "ok", req, state: null };
  },
};

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), "corral-hostile-"));
  await writeFile(path.join(tmp, "index.html"), "<h1>hi</h1>");
  const paths = [
    ["/", staticFile(path.join(tmp, "index.html"))],
    ["/static/[...]", staticDir(tmp)],
    ["/parse", parse],
    ["/ws", ws],
    { path: "/n/:id", handler: id, constraints: { id: "int" } },
  ] as const;
  // A host route first, so the Host header is split and matched on every request.
  const dispatch = compileRoutes([
    { host: ":sub.example.com", paths: [["/", id]] },
    { host: "_", paths },
  ]);
  port = (await startClear(NAME, { port: 0 }, { dispatch, maxHeaderSize: 4 * N, requestTimeout: 10_000 })).port;
});

afterAll(async () => {
  await stopListener(NAME);
  await rm(tmp, { recursive: true, force: true });
});

/** One request over a raw socket (connection: close); resolves with the status when the server closes. */
function request(target: string, headers: Readonly<Record<string, string>>, method = "GET"): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    let head = `${method} ${target} HTTP/1.1\r\n`;
    if (!Object.keys(headers).some((k) => k.toLowerCase() === "host")) head += "host: localhost\r\n";
    if (!Object.keys(headers).some((k) => k.toLowerCase() === "connection")) head += "connection: close\r\n";
    for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
    socket.on("connect", () => socket.write(head + "\r\n"));
    socket.on("data", (d: Buffer) => {
      chunks.push(d);
      // An upgrade that succeeded stays open: the status line is all we wait for.
      if (Buffer.concat(chunks).includes("\r\n\r\n")) socket.destroy();
    });
    socket.on("error", reject);
    socket.on("close", () => resolve(Number(Buffer.concat(chunks).toString("latin1").split(" ")[1])));
    socket.setTimeout(10_000, () => socket.destroy(new Error("no answer within 10 s")));
  });
}

/** CPU (user + system, ms) of the cheapest of `runs` calls, after one to warm up. */
async function cpuOf(fn: () => unknown, runs = 3): Promise<number> {
  await fn();
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const before = process.cpuUsage();
    await fn();
    const used = process.cpuUsage(before);
    best = Math.min(best, (used.user + used.system) / 1000);
  }
  return best;
}

const spaces = " ".repeat(N);
const ws13 = { upgrade: "websocket", connection: "Upgrade", "sec-websocket-version": "13", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==" };

/** [parser, target, headers, expected status]: each value is ~16 KiB shaped against its parser. */
const WIRE: readonly (readonly [string, string, Readonly<Record<string, string>>, number])[] = [
  ["If-None-Match (static, '/')", "/", { "if-none-match": `a${spaces}b` }, 200],
  ["If-None-Match, unclosed quotes", "/", { "if-none-match": '"'.repeat(N) }, 200],
  ["If-None-Match, commas", "/", { "if-none-match": `${",".repeat(N)}x` }, 200],
  ["If-Match (staticDir)", "/static/index.html", { "if-match": `a${spaces}b` }, 412],
  ["If-Match, W/ runs", "/static/index.html", { "if-match": "W/".repeat(N / 2) }, 412],
  ["If-Modified-Since", "/", { "if-modified-since": `Sun, 06 Nov 1994${spaces}x` }, 200],
  ["If-Unmodified-Since", "/", { "if-unmodified-since": `Sunday, ${"0".repeat(N)}` }, 200],
  ["Range, whitespace", "/", { range: `bytes=${spaces}x` }, 200],
  ["Range, many specs", "/", { range: `bytes=${"0-0,".repeat(N / 4)}` }, 200],
  ["Range, long digits", "/", { range: `bytes=${"1".repeat(N)}-` }, 416],
  ["If-Range", "/", { range: "bytes=0-1", "if-range": `Sun,${spaces}GMT` }, 200],
  ["Host header, colons", "/n/1", { host: "1:".repeat(N / 2) }, 200],
  ["Host header, brackets", "/n/1", { host: `[${"]".repeat(N)}` }, 200],
  ["Host labels (host route)", "/", { host: `${"a.".repeat(N / 2)}example.com` }, 200],
  ["Cookie", "/parse", { cookie: `${"a=b;".repeat(N / 4)}${spaces}` }, 200],
  ["Accept", "/parse", { accept: `${"a/b;q=1, ".repeat(N / 9)}` }, 200],
  ["Accept, parameters", "/parse", { accept: `a/b${";x=y".repeat(N / 4)}` }, 200],
  ["Content-Type", "/parse", { "content-type": `text/plain${";".repeat(N)}` }, 200],
  ["Sec-WebSocket-Protocol (parseHeader)", "/parse", { "sec-websocket-protocol": ` ,${" ".repeat(N)}` }, 200],
  ["Query string (parseQs)", `/parse?${"a+b=%41&".repeat(N / 8)}`, {}, 200],
  ["Path segments (router)", `/n${"/.".repeat(N / 2)}/1`, {}, 200],
  ["Path, escapes (router)", `/static/${"%41".repeat(N / 3)}`, {}, 404],
  ["Route constraint int", `/n/${"1".repeat(N)}`, {}, 404],
  ["Static name, dots (extension)", `/static/${".".repeat(200)}a${"x".repeat(50)}`, {}, 404],
  ["Connection tokens (upgrade)", "/ws", { ...ws13, connection: `${" ,".repeat(N / 2)}upgrade` }, 101],
  ["Upgrade header", "/ws", { ...ws13, upgrade: `websocket${spaces}x` }, 426],
  ["Sec-WebSocket-Key", "/ws", { ...ws13, "sec-websocket-key": "A".repeat(N) }, 400],
  ["Sec-WebSocket-Version", "/ws", { ...ws13, "sec-websocket-version": `13${spaces}4` }, 400],
  ["Sec-WebSocket-Protocol (upgrade)", "/ws", { ...ws13, "sec-websocket-protocol": `a${", a".repeat(N / 3)}` }, 400],
  ["Sec-WebSocket-Extensions", "/ws", { ...ws13, "sec-websocket-extensions": `permessage-deflate;${" ;".repeat(N / 2)}` }, 101],
  ["Origin", "/ws", { ...ws13, origin: `http://${"a".repeat(N)}` }, 403],
];

describe("16 KiB of adversarial input costs linear CPU in every parser that sees request data", () => {
  for (const [name, target, headers, status] of WIRE) {
    test(`${name}: answered ${status}, under ${CPU_BOUND_MS} ms of CPU`, async () => {
      let got = 0;
      const ms = await cpuOf(async () => {
        got = await request(target, headers);
      });
      expect(got).toBe(status);
      if (process.env["CORRAL_SHOW_CPU"] === "1") console.log(`${name}: ${ms.toFixed(2)} ms`);
      expect(ms).toBeLessThan(CPU_BOUND_MS);
    });
  }

  test("parseRange and httpDate called directly", async () => {
    const inputs = [`bytes=${spaces}x`, ` ${spaces}bytes=0-1`, `bytes=${"-".repeat(N)}`, `bytes=0-${"0".repeat(N)}`];
    const ms = await cpuOf(() => {
      for (const v of inputs) parseRange(v, 1000);
      for (const v of [`${spaces}x`, `Sun, 06 Nov 1994 08:49:37 GMT${spaces}x`, `Sun${spaces}Nov  6 08:49:37 1994`, "A".repeat(N)]) httpDate(v);
    });
    expect(ms).toBeLessThan(CPU_BOUND_MS);
  });
});
