/**
 * End-to-end tests of plain HTTP handlers (cowboy_handler) and the Req (cowboy_req), over
 * real sockets on 127.0.0.1: init's answers, crashes, terminate, and every Req accessor and
 * reply form (headers, cookies, sendfile, streamed bodies, server-sent events, readBody).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";
import {
  CorralError,
  compileRoutes,
  isAlive,
  loop,
  ok,
  self,
  send,
  startClear,
  stop,
  stopListener,
  type HttpHandler,
  type HttpOk,
  type Listener,
  type LoopHandler,
  type Pid,
  type Req,
  type TerminateReason,
} from "../../src/index.js";
import { captureLogs, sleep, until, type LogRecord } from "../support/helpers.js";

const NAME = "http-e2e-test";
const MAX_BODY = 1024;

/* ---------------------------------------------------------------- what the handlers saw */

interface Seen {
  terminate: { route: string; reason: TerminateReason; state: unknown }[];
  pids: Map<string, Pid>;
  values: Map<string, unknown>;
  errors: Map<string, unknown>;
}
const seen: Seen = { terminate: [], pids: new Map(), values: new Map(), errors: new Map() };

function okReq<S>(req: Req, state: S): HttpOk<S> {
  return { type: "ok", req, state };
}

function terminateFor(route: string) {
  return (reason: TerminateReason, _req: unknown, state: unknown): void => {
    seen.terminate.push({ route, reason, state });
  };
}

function capture(key: string, fn: () => unknown): void {
  try {
    seen.values.set(key, fn());
  } catch (err) {
    seen.errors.set(key, err);
  }
}

/* ---------------------------------------------------------------- handlers */

const replyHandler: HttpHandler<{ tag: string }> = {
  init(req) {
    seen.pids.set("reply", self());
    req.reply(201, { "content-type": "text/plain", "x-handler": "reply" }, "hello from init");
    return okReq(req, { tag: "reply-state" });
  },
  terminate: terminateFor("reply"),
};

const noReplyHandler: HttpHandler<string> = {
  init(req) {
    seen.pids.set("noreply", self());
    return okReq(req, "silent");
  },
  terminate: terminateFor("noreply"),
};

const throwHandler: HttpHandler<null> = {
  init() {
    seen.pids.set("throw", self());
    throw new Error("boom in init");
  },
  terminate: terminateFor("throw"),
};

const asyncHandler: HttpHandler<string> = {
  async init(req) {
    await sleep(30);
    await Promise.resolve();
    req.reply(200, { "content-type": "text/plain" }, "async reply");
    return okReq(req, "async-state");
  },
  terminate: terminateFor("async"),
};

const asyncThrowHandler: HttpHandler<null> = {
  async init() {
    await sleep(10);
    throw new Error("async boom");
  },
  terminate: terminateFor("async-throw"),
};

const twiceHandler: HttpHandler<null> = {
  init(req) {
    req.reply(200, { "content-type": "text/plain" }, "first");
    capture("twice", () => req.reply(202, {}, "second"));
    capture("twice-stream", () => req.streamReply(200));
    return okReq(req, null);
  },
  terminate: terminateFor("twice"),
};

const headHandler: HttpHandler<null> = {
  init(req) {
    req.reply(200, { "content-type": "text/plain" }, "0123456789");
    return okReq(req, null);
  },
};

interface ReqSnapshot {
  method: string;
  version: string;
  scheme: string;
  host: string;
  port: number;
  path: string;
  qs: string;
  parseQs: unknown;
  headerNames: string[];
  customHeader: string | undefined;
  allHeaders: Record<string, string>;
  customViaHeader: string | undefined;
  customViaHeaderUpper: string | undefined;
  missingHeader: string | undefined;
  accept: unknown;
  cookie: unknown;
  contentType: unknown;
  protocols: unknown;
  peer: { address: string; port: number };
  bindings: Record<string, string>;
  bindingA: string | undefined;
  bindingB: string | undefined;
  bindingMissing: string | undefined;
  pathInfo: readonly string[] | undefined;
  cert: Uint8Array | undefined;
  replied: boolean;
}

const reqHandler: HttpHandler<null> = {
  init(req) {
    const snap: ReqSnapshot = {
      method: req.method,
      version: req.version,
      scheme: req.scheme,
      host: req.host,
      port: req.port,
      path: req.path,
      qs: req.qs,
      parseQs: req.parseQs(),
      headerNames: Object.keys(req.headers),
      customHeader: req.headers["x-custom-header"],
      allHeaders: { ...req.headers },
      customViaHeader: req.header("x-custom-header"),
      customViaHeaderUpper: req.header("X-Custom-Header"),
      missingHeader: req.header("x-not-sent"),
      accept: req.parseHeader("accept"),
      cookie: req.parseHeader("cookie"),
      contentType: req.parseHeader("content-type"),
      protocols: req.parseHeader("sec-websocket-protocol"),
      peer: { address: req.peer.address, port: req.peer.port },
      bindings: { ...req.bindings },
      bindingA: req.binding("a"),
      bindingB: req.binding("b"),
      bindingMissing: req.binding("zzz"),
      pathInfo: req.pathInfo,
      cert: req.cert,
      replied: req.replied,
    };
    seen.values.set("req", snap);
    req.reply(200, { "content-type": "text/plain" }, "seen");
    seen.values.set("replied-after", req.replied);
    return okReq(req, null);
  },
};

const pathInfoHandler: HttpHandler<null> = {
  init(req) {
    seen.values.set("pathInfo", req.pathInfo);
    seen.values.set("pathInfo-bindings", { ...req.bindings });
    req.reply(200, {}, "ok");
    return okReq(req, null);
  },
};

const acceptHandler: HttpHandler<null> = {
  init(req) {
    capture("accept", () => req.parseHeader("accept"));
    req.reply(200, {}, "ok");
    return okReq(req, null);
  },
};

const respHeaderHandler: HttpHandler<null> = {
  init(req) {
    req.setRespHeader("x-one", "1");
    req.setRespHeader("X-Two", "two");
    req
      .setRespCookie("session", "abc123", { maxAge: 3600, path: "/app", domain: "example.com", secure: true, httpOnly: true, sameSite: "lax" })
      .setRespCookie("theme", "dark");
    // reply's own headers are merged over those set before
    req.reply(200, { "x-two": "overridden", "content-type": "text/plain" }, "with headers");
    return okReq(req, null);
  },
};

let fileDir = "";
let filePath = "";
const FILE_CONTENT = "0123456789abcdefghijklmnopqrstuvwxyz";

const sendfileHandler: HttpHandler<null> = {
  init(req) {
    req.reply(200, { "content-type": "application/octet-stream" }, { sendfile: filePath, offset: 5, length: 10 });
    return okReq(req, null);
  },
};

const sendfileWholeHandler: HttpHandler<null> = {
  init(req) {
    req.reply(200, { "content-type": "application/octet-stream" }, { sendfile: filePath });
    return okReq(req, null);
  },
};

const streamHandler: HttpHandler<null> = {
  async init(req) {
    req.streamReply(200, { "content-type": "text/plain" });
    for (const part of ["one,", "two,", "three,"]) {
      await req.streamBody(part);
      await sleep(40);
    }
    await req.streamBody("end", true);
    capture("stream-after-fin", () => req.streamBody("too late"));
    return okReq(req, null);
  },
  terminate: terminateFor("stream"),
};

const openStreamHandler: HttpHandler<null> = {
  async init(req) {
    req.streamReply(200, { "content-type": "text/plain" });
    await req.streamBody("unfinished;");
    // returns without fin: Cowboy's stream_terminate sends the last chunk itself
    return okReq(req, null);
  },
  terminate: terminateFor("open-stream"),
};

type SseMsg = string;
const sseHandler: LoopHandler<{ sent: number }, unknown, SseMsg> = {
  init(req) {
    seen.pids.set("sse", self());
    req.streamReply(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    return loop(req, { sent: 0 });
  },
  async info(msg, req, state) {
    if (msg === "end") return stop(state);
    await req.streamBody(`data: ${msg}\n\n`);
    return ok({ sent: state.sent + 1 });
  },
  terminate: terminateFor("sse"),
};

const bodyHandler: HttpHandler<null> = {
  async init(req) {
    try {
      const body = await req.readBody();
      seen.values.set("body-length", body.byteLength);
      req.reply(200, { "content-type": "application/octet-stream" }, body);
    } catch (err) {
      seen.errors.set("body", err);
    }
    return okReq(req, null);
  },
  terminate: terminateFor("body"),
};

const badResultHandler: HttpHandler<null> = {
  init() {
    return undefined as unknown as HttpOk<null>;
  },
  terminate: terminateFor("bad-result"),
};

const replyThenThrowHandler: HttpHandler<null> = {
  init(req) {
    req.reply(200, { "content-type": "text/plain" }, "replied before the throw");
    throw new Error("thrown after the reply");
  },
  terminate: terminateFor("reply-then-throw"),
};

const slowReplyHandler: HttpHandler<null> = {
  async init(req) {
    seen.pids.set("slow-reply", self());
    await sleep(150);
    req.reply(200, { "content-type": "text/plain" }, "late");
    seen.values.set("slow-replied", true);
    return okReq(req, null);
  },
  terminate: terminateFor("slow-reply"),
};

const bodyTwiceHandler: HttpHandler<null> = {
  async init(req) {
    const first = await req.readBody();
    const second = await Promise.race([req.readBody(), sleep(1000).then(() => "hung" as const)]);
    seen.values.set("second", second === "hung" ? "hung" : Buffer.from(second).toString());
    req.reply(200, {}, first);
    return okReq(req, null);
  },
};

const bodySmallHandler: HttpHandler<null> = {
  async init(req) {
    try {
      await req.readBody({ length: 10 });
      req.reply(200, {}, "accepted");
    } catch (err) {
      seen.errors.set("body-small", err);
    }
    return okReq(req, null);
  },
};

const bodyAbortHandler: HttpHandler<null> = {
  async init(req) {
    seen.pids.set("body-abort", self());
    try {
      await req.readBody();
      seen.values.set("body-abort", "resolved");
    } catch (err) {
      seen.errors.set("body-abort", err);
    }
    return okReq(req, null);
  },
  terminate: terminateFor("body-abort"),
};

const qsHandler: HttpHandler<null> = {
  init(req) {
    capture("qs", () => req.parseQs());
    req.reply(200, {}, "ok");
    return okReq(req, null);
  },
};

/* ---------------------------------------------------------------- the listener */

let listener: Listener;
let port = 0;
let logs: { records: LogRecord[] };

const crashReports = (): LogRecord[] => logs.records.filter((r) => r.msg === "process crashed");

beforeAll(async () => {
  fileDir = mkdtempSync(join(tmpdir(), "corral-http-"));
  filePath = join(fileDir, "data.bin");
  writeFileSync(filePath, FILE_CONTENT);
  const captured = captureLogs();
  logs = captured;
  const dispatch = compileRoutes([
    {
      host: "_",
      paths: [
        ["/reply", replyHandler],
        ["/noreply", noReplyHandler],
        ["/throw", throwHandler],
        ["/async", asyncHandler],
        ["/async-throw", asyncThrowHandler],
        ["/twice", twiceHandler],
        ["/head", headHandler],
        ["/req/:a/:b", reqHandler],
        ["/files/[...]", pathInfoHandler],
        ["/accept", acceptHandler],
        ["/respheader", respHeaderHandler],
        ["/sendfile", sendfileHandler],
        ["/sendfile-whole", sendfileWholeHandler],
        ["/stream", streamHandler],
        ["/sse", sseHandler],
        ["/open-stream", openStreamHandler],
        ["/body", bodyHandler],
        ["/bad-result", badResultHandler],
        ["/reply-then-throw", replyThenThrowHandler],
        ["/slow-reply", slowReplyHandler],
        ["/body-twice", bodyTwiceHandler],
        ["/body-small", bodySmallHandler],
        ["/body-abort", bodyAbortHandler],
        ["/qs", qsHandler],
      ],
    },
  ]);
  listener = await startClear(NAME, { port: 0 }, { dispatch, logger: captured.logger, maxBodySize: MAX_BODY });
  port = listener.port;
});

afterAll(async () => {
  await stopListener(NAME);
  rmSync(fileDir, { recursive: true, force: true });
});

beforeEach(() => {
  seen.terminate.length = 0;
  seen.pids.clear();
  seen.values.clear();
  seen.errors.clear();
  logs.records.length = 0;
});

const openSockets = new Set<{ destroy(): void }>();
afterEach(() => {
  for (const s of openSockets) s.destroy();
  openSockets.clear();
});

/* ---------------------------------------------------------------- clients */

interface Resp {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** The body as the data events delivered it. */
  chunks: Buffer[];
}

interface ReqOpts {
  method?: string;
  headers?: Record<string, string | number>;
  body?: string | Buffer;
  /** Written one by one with a pause between, chunked (no content-length). */
  chunks?: Buffer[];
}

function http(path: string, opts: ReqOpts = {}): Promise<Resp> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: "127.0.0.1", port, path, method: opts.method ?? "GET", headers: opts.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), chunks }));
      res.on("error", reject);
    });
    openSockets.add(req);
    let answered = false;
    req.on("response", () => (answered = true));
    req.on("error", (err) => {
      if (!answered) reject(err);
    });
    if (opts.chunks !== undefined) {
      const parts = opts.chunks;
      void (async () => {
        for (const c of parts) {
          if (req.destroyed) return;
          req.write(c);
          await sleep(5);
        }
        req.end();
      })();
    } else {
      req.end(opts.body);
    }
  });
}

/** Sends raw bytes; resolves with everything the server sent once it closed the socket (or `until` matched). */
function raw(data: string, stopWhen?: (text: string) => boolean, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: "127.0.0.1", port });
    openSockets.add(socket);
    let text = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`raw exchange: no complete answer within ${timeoutMs} ms; got ${JSON.stringify(text)}`));
    }, timeoutMs);
    socket.on("connect", () => socket.write(data));
    socket.on("data", (d: Buffer) => {
      text += d.toString("latin1");
      if (stopWhen?.(text) === true) {
        clearTimeout(timer);
        socket.destroy();
        resolve(text);
      }
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
}

/* ---------------------------------------------------------------- plain HTTP handlers */

describe("plain HTTP handlers", () => {
  test("init replies and returns ok: the client gets that response; terminate('normal') runs once with the state; the process ends", async () => {
    const res = await http("/reply");
    expect(res.status).toBe(201);
    expect(res.headers["content-type"]).toBe("text/plain");
    expect(res.headers["x-handler"]).toBe("reply");
    expect(res.headers["content-length"]).toBe(String(Buffer.byteLength("hello from init")));
    expect(res.body.toString()).toBe("hello from init");
    await until(() => seen.terminate.length > 0, 2000, "terminate");
    await sleep(30);
    expect(seen.terminate).toEqual([{ route: "reply", reason: "normal", state: { tag: "reply-state" } }]);
    const pid = seen.pids.get("reply")!;
    await until(() => !isAlive(pid), 2000, "the request process to end");
    expect(crashReports()).toHaveLength(0);
  });

  test("init without a reply: 204 with no body; terminate('normal')", async () => {
    const res = await http("/noreply");
    expect(res.status).toBe(204);
    expect(res.body.byteLength).toBe(0);
    await until(() => seen.terminate.length > 0, 2000, "terminate");
    expect(seen.terminate).toEqual([{ route: "noreply", reason: "normal", state: "silent" }]);
    await until(() => !isAlive(seen.pids.get("noreply")!), 2000, "the request process to end");
  });

  test("a throw in init: 500, terminate gets { crash: Error }, exactly one crash report", async () => {
    const res = await http("/throw");
    expect(res.status).toBe(500);
    await until(() => seen.terminate.length > 0 && crashReports().length > 0, 2000, "terminate and the crash report");
    await sleep(50);
    expect(seen.terminate).toHaveLength(1);
    const { route, reason } = seen.terminate[0]!;
    expect(route).toBe("throw");
    expect(typeof reason === "object" && "crash" in reason).toBe(true);
    const crash = (reason as { crash: Error }).crash;
    expect(crash).toBeInstanceOf(Error);
    expect(crash.message).toBe("boom in init");
    const reports = crashReports();
    expect(reports).toHaveLength(1);
    expect(reports[0]!.level).toBe(50);
    expect(JSON.stringify(reports[0])).toContain("boom in init");
    await until(() => !isAlive(seen.pids.get("throw")!), 2000, "the crashed process to end");
    // the listener survives a crashing handler
    expect((await http("/reply")).status).toBe(201);
  });

  test("async init: the awaited reply is the response; terminate('normal')", async () => {
    const res = await http("/async");
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("async reply");
    await until(() => seen.terminate.length > 0, 2000, "terminate");
    expect(seen.terminate).toEqual([{ route: "async", reason: "normal", state: "async-state" }]);
  });

  test("an async init that rejects: 500, terminate({ crash }), one crash report", async () => {
    const res = await http("/async-throw");
    expect(res.status).toBe(500);
    await until(() => seen.terminate.length > 0 && crashReports().length > 0, 2000, "terminate and the crash report");
    await sleep(50);
    expect(seen.terminate).toHaveLength(1);
    const reason = seen.terminate[0]!.reason as { crash: Error };
    expect(reason.crash).toBeInstanceOf(Error);
    expect(reason.crash.message).toBe("async boom");
    expect(crashReports()).toHaveLength(1);
  });

  test("replying twice throws a CorralError; the first response stands; terminate('normal')", async () => {
    const res = await http("/twice");
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("first");
    const err = seen.errors.get("twice");
    expect(err).toBeInstanceOf(CorralError);
    expect(seen.errors.get("twice-stream")).toBeInstanceOf(CorralError);
    expect(seen.values.has("twice")).toBe(false);
    await until(() => seen.terminate.length > 0, 2000, "terminate");
    expect(seen.terminate.map((t) => t.reason)).toEqual(["normal"]);
    expect(crashReports()).toHaveLength(0);
  });

  test("HEAD: the headers (content-length of the body) and no body bytes on the wire", async () => {
    const res = await http("/head", { method: "HEAD" });
    expect(res.status).toBe(200);
    expect(res.headers["content-length"]).toBe("10");
    expect(res.headers["content-type"]).toBe("text/plain");
    expect(res.body.byteLength).toBe(0);
    // on the wire: nothing follows the head (the next bytes would be a second response)
    const text = await raw(
      `HEAD /head HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /head HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
    );
    const responses = text.split("HTTP/1.1 ").filter((s) => s !== "");
    expect(responses).toHaveLength(2);
    expect(responses[0]!.endsWith("\r\n\r\n")).toBe(true);
    expect(responses[0]).not.toContain("0123456789");
    expect(responses[1]!.endsWith("\r\n\r\n0123456789")).toBe(true);
  });
});

describe("plain HTTP handlers: edge cases", () => {
  test("init returning something that is not a result: 500, terminate({ crash }) naming it, one crash report", async () => {
    const res = await http("/bad-result");
    expect(res.status).toBe(500);
    await until(() => seen.terminate.length > 0 && crashReports().length > 0, 2000, "terminate and the crash report");
    await sleep(50);
    expect(seen.terminate).toHaveLength(1);
    const crash = (seen.terminate[0]!.reason as { crash: Error }).crash;
    expect(crash).toBeInstanceOf(CorralError);
    expect((crash as CorralError).code).toBe("ERR_BAD_RESULT");
    expect(crashReports()).toHaveLength(1);
  });

  test("a throw after the reply: the client keeps the reply (no 500), terminate({ crash }), one crash report", async () => {
    const res = await http("/reply-then-throw");
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("replied before the throw");
    await until(() => seen.terminate.length > 0 && crashReports().length > 0, 2000, "terminate and the crash report");
    await sleep(50);
    expect(seen.terminate).toHaveLength(1);
    expect((seen.terminate[0]!.reason as { crash: Error }).crash.message).toBe("thrown after the reply");
    expect(crashReports()).toHaveLength(1);
  });

  test("the client leaves before an async init replies: no crash, terminate('normal'), the listener keeps serving", async () => {
    const req = httpRequest({ host: "127.0.0.1", port, path: "/slow-reply", agent: false });
    req.on("error", () => {});
    req.end();
    await until(() => seen.pids.has("slow-reply"), 2000, "init to start");
    req.destroy();
    await until(() => seen.terminate.length > 0, 2000, "terminate");
    await sleep(50);
    expect(seen.values.get("slow-replied")).toBe(true);
    expect(seen.terminate.map((t) => t.reason)).toEqual(["normal"]);
    expect(crashReports()).toHaveLength(0);
    expect(isAlive(seen.pids.get("slow-reply")!)).toBe(false);
    expect((await http("/reply")).status).toBe(201);
  });
});

/* ---------------------------------------------------------------- Req */

describe("Req", () => {
  test("a repeated header is joined as Cowboy joins it (cookie with '; '), where node would keep only the first of some", async () => {
    const head = [
      "GET /req/x/y HTTP/1.1",
      "Host: 127.0.0.1",
      "X-Tag: one",
      "x-tag: two",
      "User-Agent: first",
      "User-Agent: second",
      "Cookie: a=1",
      "Cookie: b=2",
      "Connection: close",
    ];
    expect(await raw(`${head.join("\r\n")}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 200/);
    const snap = seen.values.get("req") as ReqSnapshot;
    expect(snap.allHeaders).toEqual({
      host: "127.0.0.1",
      "x-tag": "one, two",
      "user-agent": "first, second",
      cookie: "a=1; b=2",
      connection: "close",
    });
  });

  test("without a repeated header, every header is there under its lower-case name", async () => {
    const head = ["GET /req/x/y HTTP/1.1", "Host: 127.0.0.1", "X-Tag: one", "Set-Cookie: odd=1", "Connection: close"];
    expect(await raw(`${head.join("\r\n")}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 200/);
    const snap = seen.values.get("req") as ReqSnapshot;
    expect(snap.allHeaders).toEqual({ host: "127.0.0.1", "x-tag": "one", "set-cookie": "odd=1", connection: "close" });
  });

  test("method, version, scheme, host (lower-case, no port), port, path, qs, parseQs, headers, parsed headers, peer, bindings", async () => {
    const res = await http("/req/first/second?a=1&b&c=x%20y+z", {
      method: "PATCH",
      headers: {
        Host: `LocalHost.Example:${port}`,
        "X-Custom-Header": "Custom Value",
        Accept: "text/html;level=1, application/json;q=0.5, */*;q=0.1",
        Cookie: "sid=abc123; theme=dark",
        "Content-Type": "text/plain; Charset=UTF-8",
        "Sec-WebSocket-Protocol": "chat, superchat",
      },
    });
    expect(res.status).toBe(200);
    const snap = seen.values.get("req") as ReqSnapshot;
    expect(snap).toBeDefined();
    expect(snap.method).toBe("PATCH");
    expect(snap.version).toBe("HTTP/1.1");
    expect(snap.scheme).toBe("http");
    expect(snap.host).toBe("localhost.example");
    expect(snap.port).toBe(port);
    expect(snap.path).toBe("/req/first/second");
    expect(snap.qs).toBe("a=1&b&c=x%20y+z");
    expect(snap.parseQs).toEqual([
      ["a", "1"],
      ["b", true],
      ["c", "x y z"],
    ]);
    for (const name of snap.headerNames) expect(name).toBe(name.toLowerCase());
    expect(snap.headerNames).toContain("x-custom-header");
    expect(snap.customHeader).toBe("Custom Value");
    expect(snap.customViaHeader).toBe("Custom Value");
    expect(snap.customViaHeaderUpper).toBe("Custom Value");
    expect(snap.missingHeader).toBeUndefined();
    expect(snap.accept).toEqual([
      { type: "text", subtype: "html", q: 1, params: { level: "1" } },
      { type: "application", subtype: "json", q: 0.5, params: {} },
      { type: "*", subtype: "*", q: 0.1, params: {} },
    ]);
    expect(snap.cookie).toEqual([
      ["sid", "abc123"],
      ["theme", "dark"],
    ]);
    expect(snap.contentType).toEqual({ type: "text", subtype: "plain", params: { charset: "utf-8" } });
    expect(snap.protocols).toEqual(["chat", "superchat"]);
    expect(snap.peer.address).toBe("127.0.0.1");
    expect(snap.peer.port).toBeGreaterThan(0);
    expect(snap.bindings).toEqual({ a: "first", b: "second" });
    expect(snap.bindingA).toBe("first");
    expect(snap.bindingB).toBe("second");
    expect(snap.bindingMissing).toBeUndefined();
    expect(snap.pathInfo).toBeUndefined();
    expect(snap.cert).toBeUndefined();
    expect(snap.replied).toBe(false);
    expect(seen.values.get("replied-after")).toBe(true);
  });

  test("parseQs keeps order and repeated keys; an empty qs is []; parseHeader of an absent header is undefined", async () => {
    await http("/req/x/y?z=1&a=2&z=3");
    const snap = seen.values.get("req") as ReqSnapshot;
    expect(snap.parseQs).toEqual([
      ["z", "1"],
      ["a", "2"],
      ["z", "3"],
    ]);
    seen.values.clear();
    await http("/req/x/y", { headers: {} });
    const bare = seen.values.get("req") as ReqSnapshot;
    expect(bare.qs).toBe("");
    expect(bare.parseQs).toEqual([]);
    expect(bare.cookie).toBeUndefined();
    expect(bare.contentType).toBeUndefined();
    expect(bare.protocols).toBeUndefined();
    expect(bare.method).toBe("GET");
  });

  // DIVERGENCE from Cowboy: cowboy_http takes the port from the Host header and, when it has
  // none, the scheme's default (80 for http); corral falls back to the listener's port.
  test("a Host header without a port: req.port is the scheme's default (80), as in Cowboy", async () => {
    await http("/req/x/y", { headers: { Host: "Example.com" } });
    const snap = seen.values.get("req") as ReqSnapshot;
    expect(snap.host).toBe("example.com");
    expect(snap.port).toBe(80);
  });

  test("pathInfo is what [...] matched", async () => {
    const res = await http("/files/a/b/c.txt");
    expect(res.status).toBe(200);
    expect(seen.values.get("pathInfo")).toEqual(["a", "b", "c.txt"]);
    expect(seen.values.get("pathInfo-bindings")).toEqual({});
  });

  test("a malformed accept header: parseHeader throws ERR_BADARG", async () => {
    for (const bad of ["garbage", "text/html;q=nope", "text/html;q=2"]) {
      seen.errors.clear();
      seen.values.clear();
      const res = await http("/accept", { headers: { Accept: bad } });
      expect(res.status).toBe(200);
      const err = seen.errors.get("accept");
      expect(err, `accept ${JSON.stringify(bad)} should be refused`).toBeInstanceOf(CorralError);
      expect((err as CorralError).code).toBe("ERR_BADARG");
    }
  });

  test("setRespHeader then reply: the headers are sent (reply's own win); setRespCookie: one set-cookie header per cookie, with the options", async () => {
    const res = await http("/respheader");
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("with headers");
    expect(res.headers["x-one"]).toBe("1");
    expect(res.headers["x-two"]).toBe("overridden");
    const cookies = res.headers["set-cookie"];
    expect(cookies).toHaveLength(2);
    const [session, theme] = cookies!;
    expect(session!.startsWith("session=abc123")).toBe(true);
    const attrs = session!.split(";").map((s) => s.trim().toLowerCase());
    expect(attrs).toContain("max-age=3600");
    expect(attrs).toContain("path=/app");
    expect(attrs).toContain("domain=example.com");
    expect(attrs).toContain("secure");
    expect(attrs).toContain("httponly");
    expect(attrs).toContain("samesite=lax");
    expect(theme).toBe("theme=dark");
  });

  test("reply with a { sendfile, offset, length } body: exactly those bytes, with content-length", async () => {
    const res = await http("/sendfile");
    expect(res.status).toBe(200);
    expect(res.headers["content-length"]).toBe("10");
    expect(res.headers["transfer-encoding"]).toBeUndefined();
    expect(res.body.toString()).toBe(FILE_CONTENT.slice(5, 15));
    const whole = await http("/sendfile-whole");
    expect(whole.headers["content-length"]).toBe(String(FILE_CONTENT.length));
    expect(whole.body.toString()).toBe(FILE_CONTENT);
  });

  test("streamReply + streamBody: chunked transfer, chunks in order, fin ends the body; streamBody after fin throws", async () => {
    const res = await http("/stream");
    expect(res.status).toBe(200);
    expect(res.headers["transfer-encoding"]).toBe("chunked");
    expect(res.headers["content-length"]).toBeUndefined();
    expect(res.body.toString()).toBe("one,two,three,end");
    // the parts were sent apart in time: they arrived as separate pieces
    expect(res.chunks.length).toBeGreaterThanOrEqual(3);
    expect(res.chunks[0]!.toString()).toBe("one,");
    expect(seen.errors.get("stream-after-fin")).toBeInstanceOf(CorralError);
    await until(() => seen.terminate.length > 0, 2000, "terminate");
    expect(seen.terminate.map((t) => t.reason)).toEqual(["normal"]);
  });

  // BUG: a plain handler whose init returns ok with a streamed body still open leaves the
  // response unfinished forever (no last chunk, socket kept open).
  test("init returning ok with a stream still open: the body is ended (the client sees the end)", async () => {
    const res = await Promise.race([
      http("/open-stream"),
      sleep(1500).then((): never => {
        throw new Error("the streamed body never ended");
      }),
    ]);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("unfinished;");
    await until(() => seen.terminate.length > 0, 2000, "terminate");
    expect(seen.terminate.map((t) => t.reason)).toEqual(["normal"]);
  });

  test("server-sent events from a loop handler's info: text/event-stream, each event arrives as it is sent, stop ends the stream", async () => {
    const got: string[] = [];
    let headers: IncomingHttpHeaders = {};
    let status = 0;
    let ended = false;
    const req = httpRequest({ host: "127.0.0.1", port, path: "/sse", agent: false }, (res) => {
      status = res.statusCode ?? 0;
      headers = res.headers;
      res.on("data", (c: Buffer) => got.push(c.toString()));
      res.on("end", () => (ended = true));
    });
    openSockets.add(req);
    req.on("error", () => {});
    req.end();
    await until(() => seen.pids.has("sse") && status !== 0, 2000, "the SSE stream to start");
    expect(status).toBe(200);
    expect(headers["content-type"]).toBe("text/event-stream");
    const pid = seen.pids.get("sse")!;
    for (const x of ["x1", "x2", "x3"]) {
      send(pid, x);
      // each event reaches the client before the next is even sent
      await until(() => got.join("").includes(`data: ${x}\n\n`), 2000, `event ${x}`);
    }
    expect(ended).toBe(false);
    expect(got.join("")).toBe("data: x1\n\ndata: x2\n\ndata: x3\n\n");
    send(pid, "end");
    await until(() => ended, 2000, "the end of the event stream");
    expect(got.join("")).toBe("data: x1\n\ndata: x2\n\ndata: x3\n\n");
    await until(() => seen.terminate.length > 0, 2000, "terminate");
    expect(seen.terminate).toEqual([{ route: "sse", reason: "stop", state: { sent: 3 } }]);
    await until(() => !isAlive(pid), 2000, "the loop process to end");
  });

  test("readBody returns the body (content-length and chunked)", async () => {
    const payload = Buffer.from("x".repeat(700) + "é");
    const res = await http("/body", { method: "POST", body: payload, headers: { "content-length": payload.byteLength } });
    expect(res.status).toBe(200);
    expect(res.body.equals(payload)).toBe(true);
    const chunked = await http("/body", { method: "POST", chunks: [Buffer.from("abc"), Buffer.from("def"), Buffer.from("ghi")] });
    expect(chunked.status).toBe(200);
    expect(chunked.body.toString()).toBe("abcdefghi");
    const empty = await http("/body", { method: "POST", body: "" });
    expect(empty.status).toBe(200);
    expect(empty.body.byteLength).toBe(0);
  });

  // BUG: a second readBody after the whole body was read never settles (Cowboy's read_body
  // then returns an empty body); the request process hangs until the client gives up.
  test("readBody a second time, once the body was read: resolves with an empty body", async () => {
    const res = await http("/body-twice", { method: "POST", body: "once" });
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("once");
    expect(seen.values.get("second")).toBe("");
  });

  test("readBody({ length }) below the body size: 413 and ERR_BODY_TOO_LARGE", async () => {
    const res = await http("/body-small", { method: "POST", body: "x".repeat(20) });
    expect(res.status).toBe(413);
    await until(() => seen.errors.has("body-small"), 2000, "readBody to reject");
    expect((seen.errors.get("body-small") as CorralError).code).toBe("ERR_BODY_TOO_LARGE");
  });

  test("the client leaving mid-body: readBody settles (rejects) instead of hanging, and the process ends", async () => {
    const req = httpRequest({ host: "127.0.0.1", port, path: "/body-abort", method: "POST", agent: false, headers: { "content-length": 500 } });
    req.on("error", () => {});
    req.write("x".repeat(100));
    await until(() => seen.pids.has("body-abort"), 2000, "init to start");
    await sleep(30);
    req.destroy();
    await until(() => seen.errors.has("body-abort") || seen.values.has("body-abort"), 2000, "readBody to settle");
    expect(seen.values.has("body-abort")).toBe(false);
    expect(seen.errors.get("body-abort")).toBeInstanceOf(Error);
    await until(() => !isAlive(seen.pids.get("body-abort")!), 2000, "the request process to end");
  });

  test("parseQs of a malformed query string: ERR_BADARG", async () => {
    await http("/qs?a=%zz&b=1");
    const err = seen.errors.get("qs");
    expect(err).toBeInstanceOf(CorralError);
    expect((err as CorralError).code).toBe("ERR_BADARG");
  });

  test("readBody with a body at exactly maxBodySize is accepted", async () => {
    const payload = Buffer.alloc(MAX_BODY, 0x61);
    const res = await http("/body", { method: "POST", body: payload });
    expect(res.status).toBe(200);
    expect(res.body.byteLength).toBe(MAX_BODY);
  });

  test("readBody beyond maxBodySize (content-length): 413 and the promise rejects with ERR_BODY_TOO_LARGE", async () => {
    const payload = Buffer.alloc(MAX_BODY + 1, 0x62);
    const res = await http("/body", { method: "POST", body: payload });
    expect(res.status).toBe(413);
    await until(() => seen.errors.has("body"), 2000, "readBody to reject");
    const err = seen.errors.get("body") as CorralError;
    expect(err).toBeInstanceOf(CorralError);
    expect(err.code).toBe("ERR_BODY_TOO_LARGE");
    await until(() => seen.terminate.length > 0, 2000, "terminate");
    expect(seen.terminate.map((t) => t.reason)).toEqual(["normal"]);
  });

  test("a Content-Length over the limit is refused at once, before any body byte is sent", async () => {
    const text = await raw(
      `POST /body HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n`,
      (t) => t.includes("\r\n\r\n"),
      2000,
    );
    expect(text.startsWith("HTTP/1.1 413")).toBe(true);
    await until(() => seen.errors.has("body"), 2000, "readBody to reject");
    expect((seen.errors.get("body") as CorralError).code).toBe("ERR_BODY_TOO_LARGE");
  });

  test("a chunked body over the limit: 413 and ERR_BODY_TOO_LARGE", async () => {
    const chunks = Array.from({ length: 6 }, () => Buffer.alloc(400, 0x63));
    const res = await http("/body", { method: "POST", chunks });
    expect(res.status).toBe(413);
    await until(() => seen.errors.has("body"), 2000, "readBody to reject");
    const err = seen.errors.get("body") as CorralError;
    expect(err).toBeInstanceOf(CorralError);
    expect(err.code).toBe("ERR_BODY_TOO_LARGE");
    expect(seen.values.has("body-length")).toBe(false);
  });
});
