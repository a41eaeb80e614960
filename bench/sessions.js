// @ts-check
/**
 * Sessions (bullet): push throughput and server CPU per frame over each transport against a
 * plain corral WebSocket route, the CPU of a resume against a fresh session, memory per idle
 * session connected and away, and 10 000 clients resuming at once. Each measurement runs in a
 * fresh child (bench/lib/child.js) that starts the server under test (bench/ws/session-server.js,
 * its own `node --expose-gc` process), plays the clients itself (the protocol of
 * docs/sessions.md, spoken minimally: `ws` for WebSockets, node:http for event streams, polls
 * and POSTs), and reads the server's CPU time from /proc at the ends of each measured phase.
 */
import http from "node:http";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { IpcChild, profileArgs } from "./lib/ipc-child.js";
import { median } from "./lib/stats.js";

/** @typedef {import("./lib/scenario.js").Scenario} Scenario */
/** @typedef {"ws" | "s-ws" | "s-es" | "s-poll"} PushKind */

const SERVER = path.join(path.dirname(fileURLToPath(import.meta.url)), "ws", "session-server.js");
/** A client acknowledges every ACK_EVERY frames and grants credit (the server's WINDOW) every CREDIT_EVERY. */
const ACK_EVERY = 64;
const CREDIT_EVERY = 256;

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * @param {unknown} cond
 * @param {string} what
 * @returns {asserts cond}
 */
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

/** Waits (bounded) until pred() holds, polling. */
async function until(/** @type {() => Promise<boolean> | boolean} */ pred, /** @type {string} */ what, timeoutMs = 30_000) {
  const end = performance.now() + timeoutMs;
  while (!(await pred())) {
    if (performance.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Runs body with a fresh server, always stopping it; adds the server's CPU for the harness's background-load check. */
async function withServer(/** @type {(s: IpcChild, port: number) => Promise<any>} */ body) {
  const { child, info } = await IpcChild.start("server", SERVER, { execArgv: ["--expose-gc", ...profileArgs("server", "sessions")] });
  try {
    const r = await body(child, info.port);
    return { ...r, subprocessCpuMs: child.cpuMs() };
  } finally {
    await child.stop();
  }
}

/** Runs fn over items with at most `limit` at a time. */
async function pool(/** @type {number} */ count, /** @type {number} */ limit, /** @type {(i: number) => Promise<void>} */ fn) {
  let next = 0;
  const worker = async () => {
    while (next < count) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
}

// ---------------------------------------------------------------------------------------
// Clients

/** Keep-alive sockets for POSTs and polls, as a browser keeps them. */
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });

/**
 * @param {number} port
 * @param {string} method
 * @param {string} p
 * @param {string} [body]
 * @returns {Promise<string>}
 */
function request(port, method, p, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method, path: p, agent, headers: body === undefined ? {} : { "content-type": "application/json" } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (text += c));
      res.on("end", () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`${method} ${p.replace(/sid=[^&]+/, "sid=…")}: ${res.statusCode} ${text}`))));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** A client of the push routes: counts numbered frames, checks their order, acks and grants credit. */
class PushClient {
  /**
   * @param {PushKind} kind
   * @param {number} port
   */
  constructor(kind, port) {
    this.kind = kind;
    this.port = port;
    this.received = 0;
    this.errors = 0;
    /** @type {string | null} */
    this.firstError = null;
    this.sid = "";
    /** The last client frame numbered on the fallbacks. */
    this.outSeq = 0;
    /** @type {string[]} */
    this.texts = [];
    this.ackDue = false;
    this.posting = false;
    this.stopped = false;
    /** @type {WebSocket | null} */
    this.ws = null;
    /** @type {http.ClientRequest | null} */
    this.stream = null;
    /** @type {(() => void) | null} */
    this.helloed = null;
  }

  /** @param {string} what */
  fail(what) {
    if (this.stopped) return;
    this.errors++;
    this.firstError ??= `${this.kind}: ${what}`;
  }

  /** Connects; resolves once the session's hello (or the plain socket's open) is in. */
  open() {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${this.kind}: no hello within 10 s`)), 10_000);
      this.helloed = () => {
        clearTimeout(t);
        resolve(undefined);
      };
      if (this.kind === "ws" || this.kind === "s-ws") this.openWs(reject);
      else if (this.kind === "s-es") this.openEs(reject);
      else this.poll(true).catch(reject);
    });
  }

  /** @param {(e: Error) => void} reject */
  openWs(reject) {
    const ws = new WebSocket(`ws://127.0.0.1:${this.port}/${this.kind === "ws" ? "ws-push" : "s-push"}`, { perMessageDeflate: false });
    this.ws = ws;
    ws.on("error", (e) => {
      reject(e);
      this.fail(e.message);
    });
    ws.on("close", (code) => {
      if (!this.stopped) this.fail(`closed ${code}`);
    });
    if (this.kind === "ws") ws.on("open", () => this.helloed?.());
    ws.on("message", (d) => {
      const s = d.toString();
      if (this.kind === "s-ws" && s.charCodeAt(0) === 91) this.packet(JSON.parse(s));
      else this.frame(s, this.received + 1);
    });
  }

  /** @param {(e: Error) => void} reject */
  openEs(reject) {
    const req = http.get({ host: "127.0.0.1", port: this.port, path: "/s-push?t=es", agent: false }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`event stream: ${res.statusCode}`));
      res.setEncoding("utf8");
      let buf = "";
      res.on("data", (/** @type {string} */ chunk) => {
        buf += chunk;
        let at = 0;
        for (let end = buf.indexOf("\n\n", at); end >= 0; end = buf.indexOf("\n\n", at)) {
          const d = buf.indexOf("data: ", at);
          if (d >= 0 && d < end) this.packet(JSON.parse(buf.slice(d + 6, end)));
          at = end + 2;
        }
        buf = buf.slice(at);
      });
      res.on("end", () => this.fail("event stream ended"));
    });
    req.on("error", (e) => {
      reject(e);
      this.fail(e.message);
    });
    this.stream = req;
  }

  /** A long-poll loop: each poll acknowledges what came before it. */
  async poll(first = false) {
    while (!this.stopped) {
      const q = first ? "" : `&sid=${encodeURIComponent(this.sid)}&ack=${this.received}`;
      first = false;
      let body;
      try {
        body = await request(this.port, "GET", `/s-push?t=poll${q}`);
      } catch (e) {
        this.fail(e instanceof Error ? e.message : String(e));
        return;
      }
      for (const p of JSON.parse(body)) this.packet(p);
    }
  }

  /** @param {any[]} p */
  packet(p) {
    switch (p[0]) {
      case "hello":
        this.sid = p[1];
        this.helloed?.();
        return;
      case "t":
        this.frame(p[2], p[1]);
        return;
      case "a":
      case "h":
        return;
      default:
        this.fail(`unexpected packet ${JSON.stringify(p).slice(0, 80)}`);
    }
  }

  /**
   * @param {string} data
   * @param {number} seq
   */
  frame(data, seq) {
    const n = this.received + 1;
    if (seq !== n || Number(data.slice(0, 8)) !== n || data.length !== 64) {
      this.fail(`frame ${seq} (${data.slice(0, 8)}) after ${this.received}`);
      return;
    }
    this.received = n;
    if (n % CREDIT_EVERY === 0) this.say(`c:${n}`);
    else if (n % ACK_EVERY === 0 && this.kind !== "ws") this.ack();
  }

  ack() {
    if (this.kind === "s-ws") this.ws?.send(`["a",${this.received}]`);
    // A poll acknowledges by itself.
    else if (this.kind === "s-es") {
      this.ackDue = true;
      this.post();
    }
  }

  /** A text frame to the handler: on a WebSocket itself (with an ack first on a session), else in the next POST. */
  say(/** @type {string} */ s) {
    if (this.kind === "ws") return this.ws?.send(s);
    if (this.kind === "s-ws") {
      this.ws?.send(`["a",${this.received}]`);
      return this.ws?.send(s);
    }
    this.texts.push(s);
    this.ackDue = true;
    this.post();
  }

  /** One POST at a time per client (its frames are numbered), carrying all that waits. */
  post() {
    if (this.posting || this.stopped || (!this.ackDue && this.texts.length === 0)) return;
    const packets = this.texts.map((t) => ["t", ++this.outSeq, t]);
    this.texts = [];
    packets.push(["a", this.received]);
    this.ackDue = false;
    this.posting = true;
    request(this.port, "POST", `/s-push?sid=${encodeURIComponent(this.sid)}`, JSON.stringify(packets)).then(
      () => {
        this.posting = false;
        this.post();
      },
      (e) => this.fail(e.message),
    );
  }

  /** @param {number} cap */
  go(cap) {
    this.say(`go:${cap}`);
  }

  /** Ends the session on purpose (the server's handler terminates), then the transport. */
  close() {
    this.stopped = true;
    if (this.kind === "ws") this.ws?.close();
    else if (this.kind === "s-ws") {
      this.ws?.send('["c",1000,""]');
      this.ws?.close();
    } else {
      request(this.port, "POST", `/s-push?sid=${encodeURIComponent(this.sid)}`, '[["c",1000,""]]').catch(() => {});
      this.stream?.destroy();
    }
  }
}

// ---------------------------------------------------------------------------------------
// 1. Push throughput

/**
 * `conns` clients each open the route, then each tells its handler "go"; the handlers push
 * numbered 64-byte texts (at most the server's window beyond each client's credit, up to
 * `cap` each). After `warmupSeconds`, a window of `seconds`: frames the clients got / window,
 * and the server's CPU / those frames.
 * @param {{ kind: PushKind, conns: number, cap: number, seconds: number, warmupSeconds: number }} p
 */
export async function measurePush(p) {
  return withServer(async (server, port) => {
    const clients = Array.from({ length: p.conns }, () => new PushClient(p.kind, port));
    await Promise.all(clients.map((c) => c.open()));
    for (const c of clients) c.go(p.cap);
    await sleep(p.warmupSeconds * 1000);
    const count = () => clients.reduce((s, c) => s + c.received, 0);
    const mark = () => ({ at: performance.now(), frames: count(), cpu: server.cpuMs(), gen: process.cpuUsage() });
    await server.call("elu");
    const a = mark();
    await sleep(p.seconds * 1000);
    const b = mark();
    const elu = await server.call("elu");
    const least = Math.min(...clients.map((c) => c.received));
    for (const c of clients) c.close();
    agent.destroy();
    const errors = clients.reduce((s, c) => s + c.errors, 0);
    check(errors === 0, `${errors} client errors, first: ${clients.find((c) => c.firstError)?.firstError}`);
    const frames = b.frames - a.frames;
    check(frames > 0 && least > 0, `push ${p.kind}: ${frames} frames in the window, a client got ${least}`);
    const s = (b.at - a.at) / 1000;
    const genCores = (b.gen.user + b.gen.system - a.gen.user - a.gen.system) / 1e6 / s;
    const suffix = { ws: "Ws", "s-ws": "SessionWs", "s-es": "SessionEs", "s-poll": "SessionPoll" }[p.kind];
    return {
      figures: {
        [`pushRate${suffix}`]: frames / s,
        [`pushCpuUs${suffix}`]: ((b.cpu - a.cpu) * 1000) / frames,
      },
      details: { ...p, seconds: s, frames, serverCores: (b.cpu - a.cpu) / 1000 / s, serverElu: elu, clientCores: genCores, perClient: [least, Math.max(...clients.map((c) => c.received))] },
    };
  });
}

// ---------------------------------------------------------------------------------------
// 2, 4. Resume vs a fresh session; many clients resuming at once

/** A session client on a WebSocket for /s-open: hello and frames, acks, resumes. */
class OpenClient {
  /** @param {number} port @param {string} source */
  constructor(port, source) {
    this.port = port;
    this.source = source;
    this.sid = "";
    this.received = 0;
    /** @type {WebSocket | null} */
    this.ws = null;
  }

  /**
   * Opens (fresh, or resuming with sid and ack) and resolves once hello and frame `want` are in.
   * @param {number} want
   * @param {string} expect  the text frame `want` must carry
   */
  connect(want, expect) {
    const q = this.sid === "" ? "" : `?sid=${encodeURIComponent(this.sid)}&ack=${this.received}`;
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${this.port}/s-open${q}`, { perMessageDeflate: false, localAddress: this.source });
      this.ws = ws;
      const t = setTimeout(() => reject(new Error(`session ${want}: not there within 30 s`)), 30_000);
      let hello = false;
      ws.on("error", (e) => {
        clearTimeout(t);
        reject(e);
      });
      ws.on("message", (d) => {
        const s = d.toString();
        if (s.charCodeAt(0) === 91) {
          const p = JSON.parse(s);
          if (p[0] === "hello") {
            if (this.sid !== "" && p[1] !== this.sid) reject(new Error("resumed into another session"));
            this.sid = p[1];
            hello = true;
          }
          return;
        }
        if (!hello || ++this.received !== want || s !== expect) {
          reject(new Error(`frame ${this.received} "${s}", expected ${want} "${expect}" after hello`));
          return;
        }
        clearTimeout(t);
        ws.send(`["a",${this.received}]`);
        resolve(undefined);
      });
    });
  }

  /** The network drops: no close frame, the socket is gone. */
  drop() {
    this.ws?.terminate();
  }

  end() {
    this.ws?.send('["c",1000,""]');
    this.ws?.close();
  }
}

/**
 * Source addresses 127.0.0.2 … for the clients' sockets, one per 1 000 connections: dropped
 * sockets wait out TIME_WAIT on the client's side, and the kernel's search for a free port
 * of one address slows as they pile up (it was the clients' bottleneck at 4 000 per address).
 * @param {number} n
 */
function sources(n) {
  return Array.from({ length: Math.max(2, Math.ceil(n / 1000)) }, (_, i) => `127.0.0.${i + 2}`);
}

/**
 * One cycle over `n` sessions of /s-open: open each fresh (hello + "welcome"), ack; drop every
 * socket; app code sends each session a message while it is away; resume each (sid, ack 1)
 * until hello + that frame. Server CPU and wall time of the open and resume phases.
 * @param {IpcChild} server
 * @param {number} port
 * @param {number} n
 * @param {number} concurrency
 * @param {number} first  index of the first client (source addresses rotate)
 */
async function cycle(server, port, n, concurrency, first) {
  const src = sources(n + first);
  const clients = Array.from({ length: n }, (_, i) => new OpenClient(port, src[(first + i) % src.length]));
  const cpu = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  const g0 = cpu();
  const c0 = server.cpuMs();
  const t0 = performance.now();
  await pool(n, concurrency, (i) => clients[i].connect(1, "welcome"));
  const t1 = performance.now();
  const c1 = server.cpuMs();
  const g1 = cpu();
  await until(async () => (await server.call("alive")).open === n, `${n} sessions open`);
  await sleep(1200); // the server's acks of our acks have gone out; all quiet
  for (const c of clients) c.drop();
  await until(async () => (await server.call("conns")) === 0, "every socket closed on the server");
  check((await server.call("poke")) === n, `poke reached ${n} sessions`);
  await sleep(300);
  const g2 = cpu();
  const c2 = server.cpuMs();
  const t2 = performance.now();
  await pool(n, concurrency, (i) => clients[i].connect(2, "while away"));
  const t3 = performance.now();
  const c3 = server.cpuMs();
  const g3 = cpu();
  check((await server.call("alive")).open === n, `${n} sessions alive after the resume`);
  for (const c of clients) c.end();
  await until(async () => (await server.call("alive")).open === 0, "every session ended");
  return { openMs: t1 - t0, openCpuMs: c1 - c0, resumeMs: t3 - t2, resumeCpuMs: c3 - c2, clientOpenCpuMs: g1 - g0, clientResumeCpuMs: g3 - g2 };
}

/**
 * @param {{ n: number, warmup: number, concurrency: number, prefix: string }} p
 */
export async function measureResume(p) {
  return withServer(async (server, port) => {
    await cycle(server, port, p.warmup, p.concurrency, 0);
    const r = await cycle(server, port, p.n, p.concurrency, p.warmup);
    const pre = p.prefix;
    return {
      figures: {
        [`${pre}OpenCpuUs`]: (r.openCpuMs * 1000) / p.n,
        [`${pre}ResumeCpuUs`]: (r.resumeCpuMs * 1000) / p.n,
        [`${pre}OpenMs`]: r.openMs,
        [`${pre}ResumeMs`]: r.resumeMs,
      },
      details: { ...p, ...r },
    };
  });
}

// ---------------------------------------------------------------------------------------
// 3. Memory per idle session

/**
 * Opens and closes `warmup` connections, reads the server's memory after forced GCs, opens
 * `n` to the idle route (plain or session), waits until every handler is hibernated, reads
 * it again; for a session, drops every socket (the client goes away) and reads it a third time.
 * @param {{ route: "ws-idle" | "s-idle", n: number, warmup: number, concurrency: number }} p
 */
export async function measureIdle(p) {
  return withServer(async (server, port) => {
    const src = sources(p.n + p.warmup);
    /** @type {WebSocket[]} */
    const socks = [];
    const open = (/** @type {number} */ i) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/${p.route}`, { perMessageDeflate: false, localAddress: src[i % src.length] });
        ws.on("error", reject);
        // A plain socket is ready when open; a session when its hello is in.
        if (p.route === "ws-idle") ws.on("open", () => resolve(undefined));
        else ws.on("message", () => resolve(undefined));
        socks.push(ws);
      });
    const idle = async (/** @type {number} */ n) => until(async () => {
      const a = await server.call("alive");
      return a.idle === n && a.hibernated === n;
    }, `${n} idle handlers, hibernated`);
    await pool(p.warmup, p.concurrency, open);
    await idle(p.warmup);
    for (const ws of socks.splice(0)) {
      if (p.route === "s-idle") ws.send('["c",1000,""]');
      ws.close();
    }
    await until(async () => (await server.call("conns")) === 0 && (await server.call("alive")).idle === 0, "warm-up closed");
    await sleep(200);
    const m0 = await server.call("mem", undefined, 60_000);
    await pool(p.n, p.concurrency, (i) => open(p.warmup + i));
    await idle(p.n);
    await sleep(200);
    const m1 = await server.call("mem", undefined, 60_000);
    const per = (/** @type {any} */ a, /** @type {any} */ b) => ({ rss: (b.rss - a.rss) / p.n, js: (b.heapUsed + b.external - a.heapUsed - a.external) / p.n });
    const connected = per(m0, m1);
    if (p.route === "ws-idle") {
      return { figures: { idleWsJs: connected.js, idleWsRss: connected.rss }, details: { ...p, m0, m1 } };
    }
    for (const ws of socks) ws.terminate();
    await until(async () => (await server.call("conns")) === 0, "every socket closed on the server");
    await idle(p.n);
    await sleep(200);
    const m2 = await server.call("mem", undefined, 60_000);
    const away = per(m0, m2);
    return {
      figures: { idleSessionJs: connected.js, idleSessionRss: connected.rss, awaySessionJs: away.js, awaySessionRss: away.rss },
      details: { ...p, m0, m1, m2 },
    };
  });
}

// ---------------------------------------------------------------------------------------
// What bench/run.js runs and reports

/**
 * @param {Record<string, number>} f
 * @param {string} a
 * @param {string} b
 */
function ratio(f, a, b) {
  return f[a] !== undefined && f[b] !== undefined && f[b] !== 0 ? f[a] / f[b] : undefined;
}

/** @type {[PushKind, string][]} */
const PUSH_KINDS = [
  ["ws", "plain corral WebSocket route (the baseline)"],
  ["s-ws", "bullet over WebSocket"],
  ["s-es", "bullet over EventSource + POST"],
  ["s-poll", "bullet over long-polling + POST"],
];

/** @type {Scenario} */
export const scenario = {
  name: "sessions",
  title: "Sessions (bullet) vs a plain corral WebSocket",
  rounds: 3,
  alternate: true,
  about:
    "The server under test (`bench/ws/session-server.js`, the package from `dist/`) runs in its own `node --expose-gc` " +
    "process and serves the same handlers plain and through `bullet()`; the measurement's own child plays the clients, " +
    "speaking the protocol of docs/sessions.md minimally (`ws` for WebSockets, `node:http` for event streams, polls and " +
    "POSTs on keep-alive sockets), all on loopback. CPU time is the server process's user + system time from " +
    "`/proc/<pid>/stat` over the measured phase; memory is its `process.memoryUsage()` after forced full GCs. On this " +
    "2-core machine the clients' process and the server share the cores, so throughput is bounded by both; the server's " +
    "CPU per frame is the figure that isolates the server. Ratios are against the plain corral WebSocket route of the " +
    "same round, each side in its own fresh server.",
  measurements: [
    ...PUSH_KINDS.map(([kind], k) => ({
      id: `push-${kind}`,
      fn: "measurePush",
      groups: ["session-push"],
      params: (/** @type {boolean} */ quick) => ({ kind, conns: quick ? 10 : 50, cap: 1_000_000, seconds: quick ? 1.5 : 5, warmupSeconds: quick ? 0.5 : 1 }),
      timeoutMs: 90_000,
      ...(k === 0
        ? {
            how:
              "50 clients (10 with --quick) each open the route, then send the handler `go`; it pushes numbered 64-byte " +
              "texts, 128 per turn at most (then it sends itself a message to go on), never more than 1 024 beyond the " +
              "client's credit: every 256 frames the client sends `c:<n>` (a text frame to the handler), so no outbox and " +
              "no socket buffer grows without bound whatever the transport. The same handler serves a plain WebSocket route " +
              "(**push-ws**, the baseline) and a `bullet()` route over WebSocket (**push-s-ws**: the client sends `[\"a\", n]` " +
              "every 64 frames), EventSource (**push-s-es**: `[\"a\", n]` in a POST every 64 frames, the credit in the same " +
              "POST, one POST in flight per client) and long-polling (**push-s-poll**: each poll carries `ack`; the credit in " +
              "a POST). 1 s of warm-up, then a 5 s window (1.5 s with --quick): frames the clients received / window = " +
              "throughput; server CPU / those frames = CPU per frame. Each handler stops at 1 000 000 frames (never reached). " +
              "Checked: every frame arrives once, in order, numbered as sent (sequence number and payload), and every client " +
              "got frames in the window.",
          }
        : {}),
    })),
    {
      id: "resume",
      fn: "measureResume",
      groups: ["session-resume"],
      params: (quick) => ({ n: quick ? 200 : 2000, warmup: quick ? 50 : 200, concurrency: 50, prefix: "resume" }),
      timeoutMs: 120_000,
      how:
        "N = 2 000 sessions (200 with --quick), 50 handshakes outstanding at a time, over WebSocket: **open** each fresh " +
        "(its `init`, the session's process, its WebSocket transport; the handler's `websocketInit` replies `\"welcome\"`) " +
        "until the client has hello and that frame, and the client acknowledges it; then every client **drops** its socket " +
        "(no close frame); once the server has closed them all, app code sends each session's pid a message, which the " +
        "handler pushes into the outbox of a session whose client is away; then each client **resumes** " +
        "(`?sid=…&ack=1`) until it has hello and that frame. Server CPU of each phase / N: the CPU of a resume and of a " +
        "fresh session, each including the WebSocket handshake and one frame delivered. A cycle over 200 sessions first, " +
        "untimed. Checked: every resume lands in its own session (the hello's sid), gets exactly the frame sent while it " +
        "was away, numbered 2, and every session is still alive afterwards.",
    },
    {
      id: "resume-10k",
      fn: "measureResume",
      groups: ["session-resume"],
      params: (quick) => ({ n: quick ? 1000 : 10_000, warmup: quick ? 50 : 200, concurrency: 256, prefix: "resume10k" }),
      timeoutMs: 180_000,
      how:
        "As **resume** with N = 10 000 (1 000 with --quick) and 256 handshakes outstanding: every client's socket " +
        "drops at once (as when the network under a listener goes), then all 10 000 resume; the time from the first " +
        "resume's connect to the last client holding its frame, next to the time the same 10 000 took to open fresh.",
    },
    {
      id: "idle-ws",
      fn: "measureIdle",
      groups: ["session-memory"],
      params: (quick) => ({ route: "ws-idle", n: quick ? 500 : 5000, warmup: quick ? 100 : 500, concurrency: 64 }),
      timeoutMs: 120_000,
      how:
        "N = 5 000 (500 with --quick) idle clients of a handler that holds a small state and returns " +
        "`{ hibernate: true }` from every callback, served plain (**idle-ws**) and through `bullet()` (**idle-session**, " +
        "resumeWindowMs 120 s). The server's `heapUsed + external` and `rss` after forced full GCs, before and after " +
        "opening them (every handler hibernated), / N; for the sessions, again after every client dropped its socket " +
        "(the sessions away, each waiting out its resume window). A warm-up of 500 opened and closed first. Checked: " +
        "every handler is alive and hibernated at each reading.",
    },
    {
      id: "idle-session",
      fn: "measureIdle",
      groups: ["session-memory"],
      params: (quick) => ({ route: "s-idle", n: quick ? 500 : 5000, warmup: quick ? 100 : 500, concurrency: 64 }),
      timeoutMs: 120_000,
    },
  ],
  figures: [
    { id: "pushRateWs", label: "Push throughput, plain corral WebSocket (baseline)", format: "rate", unit: "frames/s" },
    { id: "pushRateSessionWs", label: "Push throughput, bullet over WebSocket", format: "rate", unit: "frames/s" },
    { id: "pushRateSessionEs", label: "Push throughput, bullet over EventSource", format: "rate", unit: "frames/s" },
    { id: "pushRateSessionPoll", label: "Push throughput, bullet over long-polling", format: "rate", unit: "frames/s" },
    { id: "pushRateRatioSessionWs", label: "Push throughput, bullet WebSocket / plain", format: "ratio" },
    { id: "pushRateRatioSessionEs", label: "Push throughput, bullet EventSource / plain WebSocket", format: "ratio", target: { op: ">=", value: 0.5 } },
    { id: "pushRateRatioSessionPoll", label: "Push throughput, bullet long-polling / plain WebSocket", format: "ratio" },
    { id: "pushCpuUsWs", label: "Server CPU per pushed frame, plain corral WebSocket", format: "us" },
    { id: "pushCpuUsSessionWs", label: "Server CPU per pushed frame, bullet over WebSocket", format: "us" },
    { id: "pushCpuUsSessionEs", label: "Server CPU per pushed frame, bullet over EventSource", format: "us" },
    { id: "pushCpuUsSessionPoll", label: "Server CPU per pushed frame, bullet over long-polling", format: "us" },
    { id: "pushCpuRatioSessionWs", label: "Server CPU per frame, bullet WebSocket / plain", format: "ratio" },
    { id: "pushCpuRatioSessionEs", label: "Server CPU per frame, bullet EventSource / plain WebSocket", format: "ratio" },
    { id: "pushCpuRatioSessionPoll", label: "Server CPU per frame, bullet long-polling / plain WebSocket", format: "ratio" },

    { id: "resumeOpenCpuUs", label: "Server CPU per fresh session (WebSocket)", format: "us" },
    { id: "resumeResumeCpuUs", label: "Server CPU per resume (WebSocket)", format: "us" },
    { id: "resumeCpuRatio", label: "Server CPU resume / fresh session", format: "ratio", target: { op: "<=", value: 2 } },
    { id: "resumeOpenMs", label: "2 000 sessions: time to open fresh", format: "ms" },
    { id: "resumeResumeMs", label: "2 000 sessions: time to resume", format: "ms" },
    { id: "resume10kOpenMs", label: "10 000 sessions: time to open fresh", format: "ms" },
    { id: "resume10kResumeMs", label: "10 000 sessions: time for all to resume after their sockets dropped", format: "ms" },
    { id: "resume10kOpenCpuUs", label: "10 000 sessions: server CPU per fresh session", format: "us" },
    { id: "resume10kResumeCpuUs", label: "10 000 sessions: server CPU per resume", format: "us" },
    { id: "resume10kCpuRatio", label: "10 000 sessions: server CPU resume / fresh", format: "ratio" },

    { id: "idleWsJs", label: "Idle plain WebSocket: heapUsed + external per connection", format: "bytes" },
    { id: "idleSessionJs", label: "Idle session, connected (WebSocket): heapUsed + external per session", format: "bytes" },
    { id: "awaySessionJs", label: "Idle session, away (hibernated): heapUsed + external per session", format: "bytes" },
    { id: "idleSessionJsRatio", label: "Idle session connected / plain WebSocket, heap + external", format: "ratio" },
    { id: "awaySessionJsRatio", label: "Idle session away / plain WebSocket, heap + external", format: "ratio" },
    { id: "idleWsRss", label: "Idle plain WebSocket: RSS per connection", format: "bytes" },
    { id: "idleSessionRss", label: "Idle session, connected: RSS per session", format: "bytes" },
    { id: "awaySessionRss", label: "Idle session, away: RSS per session", format: "bytes" },
    { id: "idleSessionRssRatio", label: "Idle session connected / plain WebSocket, RSS", format: "ratio" },
    { id: "awaySessionRssRatio", label: "Idle session away / plain WebSocket, RSS", format: "ratio" },
  ],
  derive: (f) => {
    /** @type {Record<string, number | undefined>} */
    const out = {
      resumeCpuRatio: ratio(f, "resumeResumeCpuUs", "resumeOpenCpuUs"),
      resume10kCpuRatio: ratio(f, "resume10kResumeCpuUs", "resume10kOpenCpuUs"),
      idleSessionJsRatio: ratio(f, "idleSessionJs", "idleWsJs"),
      awaySessionJsRatio: ratio(f, "awaySessionJs", "idleWsJs"),
      idleSessionRssRatio: ratio(f, "idleSessionRss", "idleWsRss"),
      awaySessionRssRatio: ratio(f, "awaySessionRss", "idleWsRss"),
    };
    for (const s of ["SessionWs", "SessionEs", "SessionPoll"]) {
      out[`pushRateRatio${s}`] = ratio(f, `pushRate${s}`, "pushRateWs");
      out[`pushCpuRatio${s}`] = ratio(f, `pushCpuUs${s}`, "pushCpuUsWs");
    }
    /** @type {Record<string, number>} */
    const defined = {};
    for (const [k, v] of Object.entries(out)) if (v !== undefined && Number.isFinite(v)) defined[k] = v;
    return defined;
  },
  comparisons: [
    { section: "1. Push", label: "throughput, bullet over WebSocket", a: "pushRateSessionWs", b: "pushRateWs", ratio: "pushRateRatioSessionWs" },
    { section: "1. Push", label: "throughput, bullet over EventSource", a: "pushRateSessionEs", b: "pushRateWs", ratio: "pushRateRatioSessionEs" },
    { section: "1. Push", label: "throughput, bullet over long-polling", a: "pushRateSessionPoll", b: "pushRateWs", ratio: "pushRateRatioSessionPoll" },
    { section: "1. Push", label: "server CPU per frame, bullet over WebSocket", a: "pushCpuUsSessionWs", b: "pushCpuUsWs", ratio: "pushCpuRatioSessionWs" },
    { section: "1. Push", label: "server CPU per frame, bullet over EventSource", a: "pushCpuUsSessionEs", b: "pushCpuUsWs", ratio: "pushCpuRatioSessionEs" },
    { section: "1. Push", label: "server CPU per frame, bullet over long-polling", a: "pushCpuUsSessionPoll", b: "pushCpuUsWs", ratio: "pushCpuRatioSessionPoll" },
    { section: "2. Resume (WebSocket)", label: "server CPU, a resume vs a fresh session", a: "resumeResumeCpuUs", b: "resumeOpenCpuUs", ratio: "resumeCpuRatio" },
    { section: "2. Resume (WebSocket)", label: "2 000 sessions: resume vs open, wall time", a: "resumeResumeMs", b: "resumeOpenMs" },
    { section: "2. Resume (WebSocket)", label: "10 000 clients: all resumed after their sockets dropped vs opened fresh", a: "resume10kResumeMs", b: "resume10kOpenMs" },
    { section: "2. Resume (WebSocket)", label: "10 000: server CPU, a resume vs a fresh session", a: "resume10kResumeCpuUs", b: "resume10kOpenCpuUs", ratio: "resume10kCpuRatio" },
    { section: "3. Idle memory (hibernated handler)", label: "heap + external, session connected vs plain WebSocket", a: "idleSessionJs", b: "idleWsJs", ratio: "idleSessionJsRatio" },
    { section: "3. Idle memory (hibernated handler)", label: "heap + external, session away vs plain WebSocket", a: "awaySessionJs", b: "idleWsJs", ratio: "awaySessionJsRatio" },
    { section: "3. Idle memory (hibernated handler)", label: "RSS, session connected vs plain WebSocket", a: "idleSessionRss", b: "idleWsRss", ratio: "idleSessionRssRatio" },
    { section: "3. Idle memory (hibernated handler)", label: "RSS, session away vs plain WebSocket", a: "awaySessionRss", b: "idleWsRss", ratio: "awaySessionRssRatio" },
  ],
  detailLines: (d) => {
    const f2 = (/** @type {number} */ v) => (Number.isFinite(v) ? v.toFixed(2) : "—");
    const n0 = (/** @type {number} */ v) => (Number.isFinite(v) ? Math.round(v).toLocaleString("en-US") : "—");
    /** @param {string} m @param {(x: any) => number} pick */
    const med = (m, pick) => (d[m]?.length ? median(d[m].map(pick)) : NaN);
    const lines = [];
    for (const [kind, label] of PUSH_KINDS) {
      const m = `push-${kind}`;
      if (!d[m]?.length) continue;
      lines.push(
        `push, ${label}: server ${f2(med(m, (x) => x.serverCores))} cores (event loop ${f2(med(m, (x) => x.serverElu))} busy), ` +
          `clients ${f2(med(m, (x) => x.clientCores))} cores; frames per client in the run ${n0(med(m, (x) => x.perClient[0]))} – ${n0(med(m, (x) => x.perClient[1]))}.`,
      );
    }
    for (const m of ["resume", "resume-10k"]) {
      if (!d[m]?.length) continue;
      lines.push(
        `${m}: ${n0(med(m, (x) => x.n))} sessions opened in ${n0(med(m, (x) => x.openMs))} ms (${n0(med(m, (x) => x.n / (x.openMs / 1000)))}/s), ` +
          `resumed in ${n0(med(m, (x) => x.resumeMs))} ms (${n0(med(m, (x) => x.n / (x.resumeMs / 1000)))}/s); ` +
          `the clients' process used ${n0(med(m, (x) => x.clientOpenCpuMs))} ms of CPU opening and ${n0(med(m, (x) => x.clientResumeCpuMs))} ms resuming.`,
      );
    }
    return lines;
  },
};
