/**
 * What a hostile client can make the server log: the listener's pino logger writes to a stream
 * collected here, and each hostile request may add a bounded number of bytes, never an
 * error-level line or a stack. A genuine handler bug still gets its crash report.
 */
import { request as httpRequest } from "node:http";
import { connect } from "node:net";
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { compileRoutes, startClear, stopListener, upgrade, type HttpHandler, type TerminateReason, type WebSocketHandler } from "../../src/index.js";
import { sleep, until } from "../support/helpers.js";

const NAME = "log-bounds-test";
/** Bytes one hostile request may add to the log. The subprotocol warning alone is ~450. */
const BYTES_PER_REQUEST = 1024;
const REPEATS = 20;

interface Line {
  readonly level: number;
  readonly msg: string;
  readonly err?: { readonly stack?: string };
  readonly [field: string]: unknown;
}
const lines: Line[] = [];
let bytes = 0;
const sink = new Writable({
  write(chunk: Buffer, _enc, done) {
    bytes += chunk.byteLength;
    for (const line of chunk.toString().split("\n")) if (line !== "") lines.push(JSON.parse(line) as Line);
    done();
  },
});
const logger = pino({ level: "trace", base: null }, sink);
const reasons: TerminateReason[] = [];
let port: number;

const body: HttpHandler<null> = {
  // No catch, as the demo's first version: the rejection escapes init.
  async init(req) {
    const data = await req.readBody();
    req.reply(200, {}, data);
    return { type: "ok", req, state: null };
  },
  terminate: (reason) => void reasons.push(reason),
};

const lateBody: HttpHandler<null> = {
  async init(req) {
    await sleep(100);
    const data = await req.readBody();
    req.reply(200, {}, data);
    return { type: "ok", req, state: null };
  },
  terminate: (reason) => void reasons.push(reason),
};

const qs: HttpHandler<null> = {
  init(req) {
    req.reply(200, {}, JSON.stringify(req.parseQs()));
    return { type: "ok", req, state: null };
  },
  terminate: (reason) => void reasons.push(reason),
};

const accept: HttpHandler<null> = {
  async init(req) {
    await sleep(1);
    req.reply(200, {}, JSON.stringify(req.parseHeader("accept")));
    return { type: "ok", req, state: null };
  },
};

const buggy: HttpHandler<null> = {
  init() {
    throw new Error("a real bug");
  },
};

const ws: WebSocketHandler<null> = {
  init: (req) => upgrade(req, null),
  websocketHandle: (_frame, state) => ({ type: "ok", state }),
};

const constraint = (): boolean => {
  throw new Error("constraint bug");
};

beforeAll(async () => {
  const dispatch = compileRoutes([
    {
      host: "_",
      paths: [
        ["/body", body],
        ["/late-body", lateBody],
        ["/qs", qs],
        ["/accept", accept],
        ["/buggy", buggy],
        ["/ws", ws],
        { path: "/c/:x/[...]", handler: buggy, constraints: { x: constraint } },
      ],
    },
  ]);
  port = (await startClear(NAME, { port: 0 }, { dispatch, logger, maxBodySize: 1000, maxHeaderSize: 64 * 1024 })).port;
});

afterAll(async () => {
  await stopListener(NAME);
});

beforeEach(() => {
  lines.length = 0;
  bytes = 0;
  reasons.length = 0;
});

/** Sends raw bytes, resolves with what came back once the server closes (at most 5 s of silence). */
function exchange(data: string, opts: { headOnly?: boolean } = {}): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    let answer = "";
    socket.on("connect", () => socket.write(data));
    socket.on("data", (d: Buffer) => {
      answer += d.toString("latin1");
      // An upgrade stays open: its status line is the answer.
      if (opts.headOnly === true && answer.includes("\r\n\r\n")) socket.destroy();
    });
    socket.on("error", () => {});
    socket.on("close", () => resolve(answer));
    socket.setTimeout(5000, () => socket.destroy());
  });
}

const status = (answer: string): number => Number(answer.split(" ")[1]);

/** Repeats a hostile request and checks what the log got for it. */
async function expectBoundedLog(send: () => Promise<unknown>, maxLevel: number): Promise<void> {
  for (let i = 0; i < REPEATS; i++) await send();
  await sleep(50);
  if (process.env["CORRAL_SHOW_LOG"] === "1") console.log(`log bytes per request: ${bytes / REPEATS}, levels ${[...new Set(lines.map((l) => l.level))].join(",")}`);
  expect(bytes / REPEATS).toBeLessThan(BYTES_PER_REQUEST);
  for (const line of lines) {
    expect(line.level, line.msg).toBeLessThanOrEqual(maxLevel);
    expect(JSON.stringify(line)).not.toMatch(/\n\s+at /);
  }
}

const DEBUG = 20;
const WARN = 40;

describe("log lines a client controls are bounded", () => {
  test("an upgrade offering 2,000 subprotocols to a handler that picks none: one warning, its list cut to 200 characters and saying how much", async () => {
    const offered = Array.from({ length: 2000 }, (_, i) => `proto${i}`).join(", ");
    const head = `GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\nsec-websocket-protocol: ${offered}\r\n\r\n`;
    await expectBoundedLog(async () => expect(status(await exchange(head, { headOnly: true }))).toBe(101), WARN);
    const warnings = lines.filter((l) => l.level === WARN);
    expect(warnings).toHaveLength(REPEATS);
    expect(warnings[0]!["offered"]).toMatch(/^proto0, proto1, .*… \(\d+ more characters in 2000 values\)$/);
    expect((warnings[0]!["offered"] as string).length).toBeLessThan(260);
  });

  test("a body over maxBodySize escaping init: 413, at most a debug line without a stack, terminate { error: 'body_too_large' }", async () => {
    const big = "x".repeat(2000);
    await expectBoundedLog(async () => {
      expect(status(await exchange(`POST /body HTTP/1.1\r\nhost: x\r\ncontent-length: ${big.length}\r\n\r\n${big}`))).toBe(413);
      expect(status(await exchange(`POST /body HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n7d0\r\n${big}\r\n0\r\n\r\n`))).toBe(413);
    }, DEBUG);
    expect(reasons).toHaveLength(2 * REPEATS);
    expect(reasons.every((r) => typeof r === "object" && "error" in r && r.error === "body_too_large")).toBe(true);
  });

  // /body reads at once; /late-body only after the client has gone, when its events are long over.
  for (const [path, when] of [["/body", "while readBody waits"], ["/late-body", "before init asks for the body"]] as const) {
    test(`a client that leaves mid-body ${when}: nothing above debug, readBody rejects, terminate { error: 'closed' }`, async () => {
      await expectBoundedLog(async () => {
        const req = httpRequest({ host: "127.0.0.1", port, path, method: "POST", agent: false, headers: { "content-length": 900 } });
        req.on("error", () => {});
        req.write("x".repeat(100));
        await sleep(20);
        req.destroy();
      }, DEBUG);
      await until(() => reasons.length === REPEATS, 2000, "every request process to end");
      expect(reasons.every((r) => typeof r === "object" && "error" in r && r.error === "closed")).toBe(true);
    });
  }

  test("a malformed query string or header the handler does not catch: 400 (Cowboy's request_error), no crash report", async () => {
    await expectBoundedLog(async () => {
      expect(status(await exchange(`GET /qs?${"%zz".repeat(3000)} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`))).toBe(400);
      expect(status(await exchange(`GET /accept HTTP/1.1\r\nhost: x\r\nconnection: close\r\naccept: ${"garbage".repeat(2000)}\r\n\r\n`))).toBe(400);
    }, DEBUG);
    expect(reasons.filter((r) => typeof r === "object" && "error" in r && r.error === "bad_request")).toHaveLength(REPEATS);
  });

  test("a route constraint that throws, on a 16 KiB path: still an error (a server bug), the path in it cut to 200 characters", async () => {
    const target = `/c/y/${"a".repeat(16 * 1024)}`;
    for (let i = 0; i < REPEATS; i++) expect(status(await exchange(`GET ${target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`))).toBe(500);
    await sleep(50);
    expect(lines.filter((l) => l.msg === "route constraint failed")).toHaveLength(REPEATS);
    expect(bytes / REPEATS).toBeLessThan(2048);
    expect((lines[0]!["path"] as string).length).toBeLessThan(260);
  });

  test("a genuine bug in init still gets its crash report, at error, with the stack", async () => {
    expect(status(await exchange("GET /buggy HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"))).toBe(500);
    await until(() => lines.some((l) => l.msg === "process crashed"), 2000, "the crash report");
    const report = lines.find((l) => l.msg === "process crashed")!;
    expect(report.level).toBe(50);
    expect(report.err?.stack).toMatch(/a real bug\n\s+at /);
  });
});
