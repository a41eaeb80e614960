/**
 * End-to-end tests of startTls: https requests, wss:// WebSockets and client certificates,
 * with a self-signed key and certificate made by openssl at test time.
 */
import { createHook } from "node:async_hooks";
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import WebSocket from "ws";
import {
  CorralError,
  compileRoutes,
  ok,
  reply,
  startTls,
  stopListener,
  text,
  upgrade,
  type HttpHandler,
  type Listener,
  type PartialReq,
  type TerminateReason,
  type WebSocketHandler,
} from "../../src/index.js";
import { captureLogs } from "../support/helpers.js";

const NAME = "tls-e2e-test";
const MTLS_NAME = "tls-e2e-mtls";

let dir = "";
let serverKey: Buffer;
let serverCert: Buffer;
let clientKey: Buffer;
let clientCert: Buffer;

/** Runs openssl; a missing binary is a clear failure, not a skipped test. */
function openssl(args: string[]): void {
  try {
    execFileSync("openssl", args, { stdio: "pipe", timeout: 20_000 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    if (e.code === "ENOENT") {
      throw new Error("the TLS tests need the openssl command line tool to make a test certificate: install openssl (e.g. apt-get install openssl)");
    }
    throw new Error(`openssl ${args.join(" ")} failed: ${e.message}\n${e.stderr?.toString() ?? ""}`);
  }
}

function makeCert(name: string, cn: string): { key: Buffer; cert: Buffer } {
  const keyPath = join(dir, `${name}-key.pem`);
  const certPath = join(dir, `${name}-cert.pem`);
  openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", keyPath, "-out", certPath, "-days", "1", "-subj", `/CN=${cn}`]);
  return { key: readFileSync(keyPath), cert: readFileSync(certPath) };
}

/* ---------------------------------------------------------------- handlers */

interface Seen {
  scheme: string;
  port: number;
  host: string;
  cert: Uint8Array | undefined;
}
const seenHttp: Seen[] = [];
const seenWs: { scheme: string }[] = [];
/** req.cert as each WebSocket's init saw it. */
const wsCerts: (Uint8Array | undefined)[] = [];
const wsTerminated: TerminateReason[] = [];

const hello: HttpHandler<null> = {
  init(req) {
    seenHttp.push({ scheme: req.scheme, port: req.port, host: req.host, cert: req.cert });
    req.reply(200, { "content-type": "text/plain" }, `secure hello over ${req.scheme}`);
    return { type: "ok", req, state: null };
  },
};

const echo: WebSocketHandler<null> = {
  init(req) {
    seenWs.push({ scheme: req.scheme });
    wsCerts.push(req.cert);
    return upgrade(req, null);
  },
  websocketHandle(frame, state) {
    if (frame.type === "text") return reply(text(`echo: ${frame.data}`), state);
    if (frame.type === "binary") return reply({ type: "binary", data: frame.data }, state);
    return ok(state);
  },
  terminate(reason) {
    wsTerminated.push(reason);
  },
};

/** An echo with a short idle timeout that records what terminate gets. */
const idleTerminated: { reason: TerminateReason; req: PartialReq }[] = [];
const idle: WebSocketHandler<null> = {
  init: (req) => upgrade(req, null, { idleTimeout: 150 }),
  websocketHandle: (frame, state) => (frame.type === "text" ? reply(text(frame.data), state) : ok(state)),
  terminate(reason, req) {
    idleTerminated.push({ reason, req });
  },
};

let tls: Listener;
let mtls: Listener;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "corral-tls-"));
  ({ key: serverKey, cert: serverCert } = makeCert("server", "localhost"));
  ({ key: clientKey, cert: clientCert } = makeCert("client", "corral test client"));
  const { logger } = captureLogs();
  const dispatch = compileRoutes([
    {
      host: "_",
      paths: [
        ["/hello", hello],
        ["/ws", echo],
        ["/idle", idle],
      ],
    },
  ]);
  tls = await startTls(NAME, { port: 0, key: serverKey, cert: serverCert }, { dispatch, logger });
  mtls = await startTls(MTLS_NAME, { port: 0, key: serverKey, cert: serverCert, requestCert: true }, { dispatch, logger });
});

afterAll(async () => {
  await Promise.allSettled([stopListener(NAME), stopListener(MTLS_NAME)]);
  if (dir !== "") rmSync(dir, { recursive: true, force: true });
});

function get(port: number, path: string, extra: { key?: Buffer; cert?: Buffer } = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: "127.0.0.1", port, path, rejectUnauthorized: false, agent: false, ...extra }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.setTimeout(4000, () => req.destroy(new Error("https request timed out")));
    req.end();
  });
}

describe("startTls", () => {
  test("an https request gets the handler's reply; req.scheme is https; no client certificate: req.cert undefined", async () => {
    seenHttp.length = 0;
    const res = await get(tls.port, "/hello");
    expect(res.status).toBe(200);
    expect(res.body).toBe("secure hello over https");
    expect(seenHttp).toHaveLength(1);
    expect(seenHttp[0]!.scheme).toBe("https");
    expect(seenHttp[0]!.host).toBe("127.0.0.1");
    expect(seenHttp[0]!.port).toBe(tls.port);
    expect(seenHttp[0]!.cert).toBeUndefined();
  });

  test("plain http to the TLS port gets no HTTP answer", async () => {
    const res = await fetch(`http://127.0.0.1:${tls.port}/hello`).then(
      (r) => r.status,
      () => "refused",
    );
    expect(res).not.toBe(200);
  });

  test("a wss:// WebSocket to a websocket handler echoes", async () => {
    seenWs.length = 0;
    wsTerminated.length = 0;
    const ws = new WebSocket(`wss://127.0.0.1:${tls.port}/ws`, { rejectUnauthorized: false });
    const got: string[] = [];
    ws.on("message", (d, isBinary) => got.push(isBinary ? `binary:${Buffer.from(d as Buffer).toString("hex")}` : d.toString()));
    try {
      await new Promise<void>((resolve, reject) => {
        ws.once("open", () => resolve());
        ws.once("error", reject);
      });
      ws.send("over tls");
      ws.send(Buffer.from([1, 2, 3]));
      const deadline = Date.now() + 2000;
      while (got.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      expect(got).toEqual(["echo: over tls", "binary:010203"]);
      expect(seenWs).toEqual([{ scheme: "https" }]);
      const code = await new Promise<number>((resolve) => {
        ws.once("close", (c) => resolve(c));
        ws.close(1000, "done");
      });
      expect(code).toBe(1000);
      const until = Date.now() + 2000;
      while (wsTerminated.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
      expect(wsTerminated).toEqual([{ remote: { code: 1000, reason: "done" } }]);
    } finally {
      ws.terminate();
    }
  });

  test("wss:// with an idle timeout: received pings keep it open, silence closes it with 1000; terminate gets 'timeout' and the https req", async () => {
    idleTerminated.length = 0;
    const ws = new WebSocket(`wss://127.0.0.1:${tls.port}/idle?q=1?2`, { rejectUnauthorized: false });
    try {
      await new Promise<void>((resolve, reject) => {
        ws.once("open", () => resolve());
        ws.once("error", reject);
      });
      const closed = new Promise<number>((resolve) => ws.once("close", (c) => resolve(c)));
      let lastPing = 0;
      for (let i = 0; i < 8; i++) {
        ws.ping();
        lastPing = Date.now();
        await new Promise((r) => setTimeout(r, 50));
      }
      // 400 ms, more than twice the timeout
      expect(ws.readyState).toBe(WebSocket.OPEN);
      expect(await closed).toBe(1000);
      // Date.now() counts whole milliseconds: 1 ms of slack.
      expect(Date.now() - lastPing).toBeGreaterThanOrEqual(149);
      const until = Date.now() + 2000;
      while (idleTerminated.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
      expect(idleTerminated).toHaveLength(1);
      const { reason, req } = idleTerminated[0]!;
      expect(reason).toBe("timeout");
      expect(req).toEqual({
        method: "GET",
        version: "HTTP/1.1",
        scheme: "https",
        host: "127.0.0.1",
        port: tls.port,
        path: "/idle",
        qs: "q=1?2",
        peer: { address: "127.0.0.1", port: req.peer.port },
      });
      expect(req.peer.port).toBeGreaterThan(0);
    } finally {
      ws.terminate();
    }
  });

  test("requestCert: a client certificate is req.cert as DER bytes (exactly the client's certificate)", async () => {
    seenHttp.length = 0;
    const res = await get(mtls.port, "/hello", { key: clientKey, cert: clientCert });
    expect(res.status).toBe(200);
    expect(seenHttp).toHaveLength(1);
    const cert = seenHttp[0]!.cert;
    expect(cert).toBeInstanceOf(Uint8Array);
    const der = new X509Certificate(clientCert).raw;
    expect(Buffer.from(cert!).equals(der)).toBe(true);
    // the DER is the client's, not the server's
    expect(Buffer.from(cert!).equals(new X509Certificate(serverCert).raw)).toBe(false);
  });

  test("wss:// with a client certificate: the head is read without node:http's parser, and init's req.cert is the client's DER", async () => {
    wsCerts.length = 0;
    let parsers = 0;
    const hook = createHook({
      init(_id, type) {
        if (type === "HTTPINCOMINGMESSAGE") parsers++;
      },
    }).enable();
    const ws = new WebSocket(`wss://127.0.0.1:${mtls.port}/ws`, { rejectUnauthorized: false, key: clientKey, cert: clientCert });
    try {
      await new Promise<void>((resolve, reject) => {
        ws.once("open", () => resolve());
        ws.once("error", reject);
      });
      const echoed = new Promise<string>((resolve) => ws.once("message", (d) => resolve(String(d))));
      ws.send("mtls");
      expect(await echoed).toBe("echo: mtls");
    } finally {
      hook.disable();
      ws.terminate();
    }
    expect(parsers).toBe(0);
    expect(wsCerts).toHaveLength(1);
    expect(Buffer.from(wsCerts[0]!).equals(new X509Certificate(clientCert).raw)).toBe(true);
  });

  test("requestCert without a client certificate: the request is served, req.cert is undefined", async () => {
    seenHttp.length = 0;
    const res = await get(mtls.port, "/hello");
    expect(res.status).toBe(200);
    expect(seenHttp).toHaveLength(1);
    expect(seenHttp[0]!.cert).toBeUndefined();
  });

  test("startTls without key/cert: ERR_BADARG, and the name stays free", async () => {
    const dispatch = compileRoutes([{ host: "_", paths: [["/hello", hello]] }]);
    const attempts: (() => Promise<Listener>)[] = [
      () => startTls("tls-e2e-nokey", { port: 0 }, { dispatch }),
      () => startTls("tls-e2e-nokey", { port: 0, cert: serverCert }, { dispatch }),
      () => startTls("tls-e2e-nokey", { port: 0, key: serverKey }, { dispatch }),
    ];
    for (const attempt of attempts) {
      let thrown: unknown;
      try {
        await attempt();
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(CorralError);
      expect((thrown as CorralError).code).toBe("ERR_BADARG");
    }
    const l = await startTls("tls-e2e-nokey", { port: 0, key: serverKey, cert: serverCert }, { dispatch });
    try {
      expect((await get(l.port, "/hello")).status).toBe(200);
    } finally {
      await stopListener("tls-e2e-nokey");
    }
  });
});
