/**
 * A test peer for the session protocol (bullet), written from the protocol alone, with no
 * import from src/: raw requests for each transport (a WebSocket, an event stream read as it
 * arrives, a poll, a POST), and SessionClient, a client that numbers its frames, keeps what
 * the server has not acknowledged, drops duplicates, and resumes on any transport. It records
 * what a correct server must never do (a gap, a duplicate, a frame kept then forgotten) so
 * tests can assert there was none.
 */
import { request as httpRequest, type ClientRequest, type IncomingHttpHeaders, type IncomingMessage } from "node:http";
import WebSocket from "ws";

export type Kind = "websocket" | "eventsource" | "longpoll";
export const KINDS: readonly Kind[] = ["websocket", "eventsource", "longpoll"];

/** A data frame as the app sees it. */
export type Data = string | Uint8Array;

/** A packet as JSON carries it: ["hello", …], ["t", seq, text], ["a", n], … */
export type Packet = readonly unknown[];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves once pred() holds; rejects after timeoutMs with what was awaited. */
export async function waitUntil(pred: () => boolean, what: string, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(2);
  }
}

/* ---------------------------------------------------------------- raw HTTP */

export interface HttpAnswer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

export interface HttpOptions {
  readonly method?: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string | Uint8Array;
  readonly timeoutMs?: number;
}

/** An HTTP request whose answer is read whole; `abort()` destroys its socket (the client vanishes). */
export interface PendingHttp {
  readonly answer: Promise<HttpAnswer>;
  readonly req: ClientRequest;
  abort(): void;
}

export function startHttp(port: number, path: string, opts: HttpOptions = {}): PendingHttp {
  const req = httpRequest({ host: "127.0.0.1", port, path, method: opts.method ?? "GET", headers: opts.headers, agent: false });
  let aborted = false;
  const answer = new Promise<HttpAnswer>((resolve, reject) => {
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`${opts.method ?? "GET"} ${path}: no answer within ${opts.timeoutMs ?? 2000} ms`));
    }, opts.timeoutMs ?? 2000);
    req.on("error", (err) => {
      clearTimeout(timer);
      reject(aborted ? new Error("aborted") : err);
    });
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      res.on("end", () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") });
      });
    });
  });
  // A test that aborts does not care about the rejection.
  answer.catch(() => {});
  req.end(opts.body);
  return {
    answer,
    req,
    abort() {
      aborted = true;
      req.destroy();
    },
  };
}

export function http(port: number, path: string, opts: HttpOptions = {}): Promise<HttpAnswer> {
  return startHttp(port, path, opts).answer;
}

/** A POST of client packets to a session. */
export function post(port: number, path: string, sid: string, packets: unknown, opts: Omit<HttpOptions, "method" | "body"> = {}): Promise<HttpAnswer> {
  return http(port, `${path}?sid=${encodeURIComponent(sid)}`, {
    ...opts,
    method: "POST",
    headers: { "content-type": "application/json", ...opts.headers },
    body: typeof packets === "string" ? packets : JSON.stringify(packets),
  });
}

export function jsonOf(a: HttpAnswer): unknown {
  return JSON.parse(a.body) as unknown;
}

/* ---------------------------------------------------------------- raw event stream */

export interface SseEvent {
  readonly id: string | undefined;
  readonly data: string;
}

/** An event stream read as it arrives: every event in `events`, `next()` takes them in order. */
export class EventStream {
  readonly events: SseEvent[] = [];
  ended = false;
  private taken = 0;
  private buf = "";
  private readonly wakers = new Set<() => void>();

  private constructor(
    readonly req: ClientRequest,
    readonly res: IncomingMessage,
  ) {
    res.setEncoding("utf8");
    res.on("data", (chunk: string) => {
      this.buf += chunk;
      for (let i = this.buf.indexOf("\n\n"); i >= 0; i = this.buf.indexOf("\n\n")) {
        const block = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 2);
        let id: string | undefined;
        const data: string[] = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("id:")) id = line.slice(3).trimStart();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length > 0) this.events.push({ id, data: data.join("\n") });
      }
      this.wake();
    });
    const done = (): void => {
      this.ended = true;
      this.wake();
    };
    res.on("end", done);
    res.on("close", done);
    res.on("error", done);
  }

  get status(): number {
    return this.res.statusCode ?? 0;
  }

  get headers(): IncomingHttpHeaders {
    return this.res.headers;
  }

  /** Opens GET path with Accept: text/event-stream; resolves with the response's head. */
  static open(port: number, path: string, headers: Readonly<Record<string, string>> = {}, timeoutMs = 2000): Promise<EventStream> {
    const req = httpRequest({ host: "127.0.0.1", port, path, headers: { accept: "text/event-stream", ...headers }, agent: false });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        req.destroy();
        reject(new Error(`GET ${path}: no response head within ${timeoutMs} ms`));
      }, timeoutMs);
      req.on("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      req.on("response", (res) => {
        clearTimeout(timer);
        resolve(new EventStream(req, res));
      });
      req.end();
    });
  }

  /** The next event's data as a packet. */
  async next(timeoutMs = 2000): Promise<Packet> {
    return JSON.parse((await this.nextEvent(timeoutMs)).data) as Packet;
  }

  async nextEvent(timeoutMs = 2000): Promise<SseEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const e = this.events[this.taken];
      if (e !== undefined) {
        this.taken++;
        return e;
      }
      if (this.ended) throw new Error("the event stream ended before another event");
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no event within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, left);
        function done(): void {
          clearTimeout(t);
          resolve();
        }
        this.wakers.add(done);
      });
    }
  }

  /** Resolves once the server has ended the stream. */
  async closed(timeoutMs = 2000): Promise<void> {
    await waitUntil(() => this.ended, "the event stream to end", timeoutMs);
  }

  /** Kills the TCP connection: the client vanished. */
  destroy(): void {
    this.req.destroy();
    this.res.destroy();
  }

  private wake(): void {
    const w = [...this.wakers];
    this.wakers.clear();
    for (const f of w) f();
  }
}

/* ---------------------------------------------------------------- raw WebSocket */

export interface WsMessage {
  readonly binary: boolean;
  readonly data: Buffer;
}

/** A ws WebSocket that keeps every message from the start (a first frame may ride with the 101). */
export class WsPeer {
  readonly ws: WebSocket;
  readonly messages: WsMessage[] = [];
  closeInfo: { code: number; reason: string } | undefined = undefined;
  /** Resolves once open; rejects with UpgradeRefused (the HTTP status) or the socket's error. */
  readonly opened: Promise<void>;
  /** Called for each message as it arrives, after it is kept. */
  onMessage: ((m: WsMessage) => void) | undefined = undefined;
  private taken = 0;

  /** Starts opening a WebSocket; messages are kept from the first one on. */
  constructor(url: string, headers: Readonly<Record<string, string>> = {}, timeoutMs = 2000) {
    const ws = (this.ws = new WebSocket(url, { headers, handshakeTimeout: timeoutMs }));
    ws.on("message", (data: Buffer, binary: boolean) => {
      const m = { binary, data };
      this.messages.push(m);
      this.onMessage?.(m);
    });
    ws.on("close", (code: number, reason: Buffer) => {
      this.closeInfo = { code, reason: reason.toString() };
    });
    ws.on("error", () => {
      // the close event follows
    });
    this.opened = new Promise((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("unexpected-response", (_req, res) => {
        res.resume();
        reject(new UpgradeRefused(res.statusCode ?? 0));
        ws.terminate();
      });
      ws.once("close", () => reject(new Error(`the WebSocket ${url} closed before it opened`)));
    });
    this.opened.catch(() => {});
  }

  /** Opens a WebSocket; rejects with UpgradeRefused (the HTTP status) if the upgrade is refused. */
  static async open(url: string, headers: Readonly<Record<string, string>> = {}, timeoutMs = 2000): Promise<WsPeer> {
    const peer = new WsPeer(url, headers, timeoutMs);
    await peer.opened;
    return peer;
  }

  async next(timeoutMs = 2000): Promise<WsMessage> {
    await waitUntil(() => this.messages.length > this.taken || this.closeInfo !== undefined, "a WebSocket message", timeoutMs);
    const m = this.messages[this.taken];
    if (m === undefined) throw new Error(`the WebSocket closed (${JSON.stringify(this.closeInfo)}) before another message`);
    this.taken++;
    return m;
  }

  /** The next message as a packet (a text message that is JSON). */
  async nextPacket(timeoutMs = 2000): Promise<Packet> {
    const m = await this.next(timeoutMs);
    if (m.binary) throw new Error("expected a packet, got a binary message");
    return JSON.parse(m.data.toString("utf8")) as Packet;
  }

  sendPacket(p: Packet): void {
    this.ws.send(JSON.stringify(p));
  }

  async closed(timeoutMs = 2000): Promise<{ code: number; reason: string }> {
    await waitUntil(() => this.closeInfo !== undefined, "the WebSocket to close", timeoutMs);
    return this.closeInfo!;
  }

  /** Kills the TCP connection without a close frame. */
  destroy(): void {
    this.ws.terminate();
  }
}

export class UpgradeRefused extends Error {
  constructor(readonly status: number) {
    super(`the upgrade was refused with ${status}`);
  }
}

/* ---------------------------------------------------------------- the protocol peer */

export interface SessionClientOptions {
  /** Acknowledge after this many unacknowledged frames (the protocol's 64). */
  readonly ackEvery?: number;
  /** …or this long after the first unacknowledged one (the protocol's 1 s). */
  readonly ackDelayMs?: number;
  /** Extra request headers on every request (an Origin, say). */
  readonly headers?: Readonly<Record<string, string>>;
}

interface Kept {
  readonly seq: number;
  readonly data: Data;
}

const base64 = (d: Uint8Array): string => Buffer.from(d).toString("base64");

/**
 * One client of one session, as the protocol describes it. `connect(kind)` opens a new
 * session or resumes this one; `drop()` kills the transport's TCP connection (the session
 * should wait); `close()` ends the session on purpose.
 */
export class SessionClient {
  sid: string | undefined = undefined;
  heartbeatMs = 0;
  resumeWindowMs = 0;
  /** Server data frames delivered to the app, in order. */
  readonly delivered: Data[] = [];
  /** Every packet from the server that is not data (hello, a, h, c), with the transport it came on. */
  readonly control: { kind: Kind; packet: Packet }[] = [];
  /** What a correct server never does: a gap, a frame that is not a packet, a seq gone back… */
  readonly violations: string[] = [];
  /** WebSocket pings from the server (ws answers them, as a browser does). */
  pings = 0;
  /** Server frames received a second time (dropped, as the protocol says, and counted). */
  duplicates = 0;
  /** The `["c", code, reason]` the server ended the session with. */
  closedWith: { code: number; reason: string } | undefined = undefined;
  /** A request that found no session (404), or was refused. */
  refused: { status: number; body: string } | undefined = undefined;
  kind: Kind | null = null;
  /** Transports opened so far. */
  connections = 0;
  /** The last server seq delivered, and the last client seq given. */
  inSeq = 0;
  outSeq = 0;
  /** The highest `["a", n]` the server sent. */
  serverAck = 0;

  private kept: Kept[] = [];
  private lastAckSent = 0;
  private ackTimer: NodeJS.Timeout | null = null;
  private readonly ackEvery: number;
  private readonly ackDelayMs: number;
  private readonly headers: Readonly<Record<string, string>>;
  /** The current connection: its id, so late events of a dropped one are ignored. */
  private conn = 0;
  private ws: WsPeer | null = null;
  private es: EventStream | null = null;
  private esRead = 0;
  private poll: PendingHttp | null = null;
  private posting = false;
  private postedUpTo = 0;
  /** WebSocket: the implicit number of the server's next data frame on this connection. */
  private wsNextIn = 0;
  private helloSeen = false;

  constructor(
    readonly port: number,
    readonly path: string,
    options: SessionClientOptions = {},
  ) {
    this.ackEvery = options.ackEvery ?? 64;
    this.ackDelayMs = options.ackDelayMs ?? 1000;
    this.headers = options.headers ?? {};
  }

  /** Opens a transport: a new session, or a resume of this one. Resolves once it is usable (hello, or the first poll). */
  async connect(kind: Kind, timeoutMs = 2000): Promise<void> {
    if (this.closedWith !== undefined) throw new Error("the session is closed");
    this.detach();
    const conn = ++this.conn;
    this.kind = kind;
    this.connections++;
    this.helloSeen = false;
    this.refused = undefined;
    this.postedUpTo = 0;
    const ack = this.inSeq;
    const resume = this.sid === undefined ? "" : `sid=${encodeURIComponent(this.sid)}&ack=${ack}`;
    if (kind === "websocket") {
      const url = `ws://127.0.0.1:${this.port}${this.path}${resume === "" ? "" : `?${resume}`}`;
      this.wsNextIn = ack + 1;
      // Set before it opens: hello may come in the same packet as the 101, and our resends answer it.
      const peer = new WsPeer(url, this.headers, timeoutMs);
      peer.onMessage = (m) => {
        if (conn === this.conn) this.onWsMessage(m);
      };
      this.ws = peer;
      peer.ws.on("ping", () => {
        if (conn === this.conn) this.pings++;
      });
      peer.ws.on("close", () => {
        if (conn === this.conn) this.ws = null;
      });
      try {
        await peer.opened;
      } catch (err) {
        if (conn === this.conn) this.ws = null;
        if (err instanceof UpgradeRefused) this.refused = { status: err.status, body: "" };
        throw err;
      }
      await waitUntil(() => this.helloSeen || this.closedWith !== undefined || this.ws === null, "hello on the WebSocket", timeoutMs);
      if (!this.helloSeen) throw new Error(`the WebSocket closed before hello (${JSON.stringify(peer.closeInfo)})`);
      return;
    }
    if (kind === "eventsource") {
      const es = await EventStream.open(this.port, `${this.path}?t=es${resume === "" ? "" : `&${resume}`}`, this.headers, timeoutMs);
      if (es.status !== 200) {
        await es.closed().catch(() => {});
        this.refused = { status: es.status, body: "" };
        throw new Error(`GET ?t=es: ${es.status}`);
      }
      this.es = es;
      this.esRead = 0;
      es.res.on("data", () => {
        if (conn === this.conn) this.drainEs();
      });
      this.drainEs();
      await waitUntil(() => this.helloSeen || this.closedWith !== undefined || es.ended, "hello on the event stream", timeoutMs);
      if (!this.helloSeen) throw new Error("the event stream ended before hello");
      return;
    }
    // Long-poll: the first poll of a new session answers with hello; a resume poll is answered when there is something.
    const first = this.startPoll(conn, resume === "" ? `t=poll` : `t=poll&${resume}`);
    if (this.sid === undefined) {
      const ok = await first;
      if (!ok) throw new Error(`the first poll failed: ${JSON.stringify(this.refused)}`);
    } else {
      // A resume poll is held: it is usable as soon as it is in flight. Push our kept frames now.
      this.flushPosts();
    }
  }

  /** Sends a data frame: numbered, kept until acknowledged, written now if connected. */
  send(data: Data): void {
    const seq = ++this.outSeq;
    this.kept.push({ seq, data });
    this.transmit();
  }

  /** Kills the transport's TCP connection without a word: the session should wait. */
  drop(): void {
    this.detach();
  }

  /** Ends the session on purpose: ["c", code, reason], then (WebSocket) a close 1000. */
  async close(code = 1000, reason = ""): Promise<void> {
    const packet = ["c", code, reason];
    if (this.kind === "websocket" && this.ws !== null) {
      this.ws.ws.send(JSON.stringify(packet));
      this.ws.ws.close(1000);
      await waitUntil(() => this.ws === null, "the WebSocket to close");
    } else if (this.sid !== undefined) {
      const a = await post(this.port, this.path, this.sid, [packet], { headers: this.headers });
      if (a.status !== 200) throw new Error(`close: POST answered ${a.status} ${a.body}`);
    }
    this.closedWith = { code, reason };
    this.detach();
  }

  /** Resolves once the app has n frames. */
  async waitDelivered(n: number, timeoutMs = 2000): Promise<void> {
    await waitUntil(() => this.delivered.length >= n || this.closedWith !== undefined, `${n} frames (have ${this.delivered.length})`, timeoutMs);
    if (this.delivered.length < n) throw new Error(`the session closed (${JSON.stringify(this.closedWith)}) with ${this.delivered.length} of ${n} frames`);
  }

  /** Resolves once the server has acknowledged every frame sent. */
  async waitAcked(timeoutMs = 2000): Promise<void> {
    await waitUntil(() => this.kept.length === 0, `the server to acknowledge frames up to ${this.outSeq} (it has ${this.serverAck})`, timeoutMs);
  }

  async waitClosed(timeoutMs = 2000): Promise<{ code: number; reason: string }> {
    await waitUntil(() => this.closedWith !== undefined, "the session's [\"c\", code, reason]", timeoutMs);
    return this.closedWith!;
  }

  /** The current transport is open (a WebSocket open, a stream not ended, a poll in flight). */
  get transportOpen(): boolean {
    if (this.ws !== null) return this.ws.ws.readyState === WebSocket.OPEN;
    if (this.es !== null) return !this.es.ended;
    return this.poll !== null;
  }

  /** Stops everything (a test's cleanup). */
  dispose(): void {
    this.detach();
  }

  /* ------------------------------------------------------------ inside */

  private detach(): void {
    this.conn++;
    if (this.ackTimer !== null) clearTimeout(this.ackTimer);
    this.ackTimer = null;
    this.ws?.ws.terminate();
    this.ws = null;
    this.es?.destroy();
    this.es = null;
    this.poll?.abort();
    this.poll = null;
  }

  private get connected(): boolean {
    return this.ws !== null || this.es !== null || this.poll !== null;
  }

  private onWsMessage(m: WsMessage): void {
    if (m.binary) {
      this.data(this.wsNextIn++, new Uint8Array(m.data));
      return;
    }
    const text = m.data.toString("utf8");
    if (!text.startsWith("[")) {
      this.data(this.wsNextIn++, text);
      return;
    }
    let p: Packet;
    try {
      p = JSON.parse(text) as Packet;
    } catch {
      this.violations.push(`a WebSocket text starting with [ that is not JSON: ${text.slice(0, 80)}`);
      return;
    }
    if ((p[0] === "t" || p[0] === "b") && typeof p[1] === "number") this.wsNextIn = p[1] + 1;
    this.packet("websocket", p);
  }

  private drainEs(): void {
    const es = this.es;
    if (es === null) return;
    while (this.esRead < es.events.length) {
      const e = es.events[this.esRead++]!;
      let p: Packet;
      try {
        p = JSON.parse(e.data) as Packet;
      } catch {
        this.violations.push(`an event that is not JSON: ${e.data.slice(0, 80)}`);
        continue;
      }
      if ((p[0] === "t" || p[0] === "b") && e.id !== String(p[1])) this.violations.push(`event id ${e.id} on packet ${JSON.stringify(p).slice(0, 40)}`);
      this.packet("eventsource", p);
    }
  }

  /** Starts a poll; resolves true when it answered 200 (and goes on polling), false otherwise. */
  private startPoll(conn: number, query: string): Promise<boolean> {
    const pending = startHttp(this.port, `${this.path}?${query}`, { headers: this.headers, timeoutMs: Math.max(5000, this.heartbeatMs * 3) });
    this.poll = pending;
    return pending.answer.then(
      (a) => {
        if (conn !== this.conn) return false;
        this.poll = null;
        if (a.status !== 200) {
          this.refused = { status: a.status, body: a.body };
          return false;
        }
        let packets: unknown;
        try {
          packets = JSON.parse(a.body);
        } catch {
          this.violations.push(`a poll answer that is not JSON: ${a.body.slice(0, 80)}`);
          return false;
        }
        if (!Array.isArray(packets)) {
          this.violations.push(`a poll answer that is not a list: ${a.body.slice(0, 80)}`);
          return false;
        }
        for (const p of packets as Packet[]) this.packet("longpoll", p);
        if (this.closedWith === undefined && conn === this.conn && this.sid !== undefined) {
          void this.startPoll(conn, `t=poll&sid=${encodeURIComponent(this.sid)}&ack=${this.inSeq}`);
          this.lastAckSent = this.inSeq;
          this.flushPosts();
        }
        return true;
      },
      () => {
        if (conn === this.conn) this.poll = null;
        return false;
      },
    );
  }

  /** One packet from the server, on any transport. */
  private packet(kind: Kind, p: Packet): void {
    switch (p[0]) {
      case "hello": {
        const [, sid, ack, hb, window] = p as [string, string, number, number, number];
        if (this.sid !== undefined && sid !== this.sid) this.violations.push(`hello with another sid`);
        this.sid = sid;
        this.heartbeatMs = hb;
        this.resumeWindowMs = window;
        this.control.push({ kind, packet: p });
        this.forget(ack);
        if (this.kept.length > 0 && this.kept[0]!.seq !== ack + 1) this.violations.push(`hello ack ${ack}, but frame ${this.kept[0]!.seq - 1} was acknowledged before`);
        this.helloSeen = true;
        this.postedUpTo = ack;
        if (kind === "websocket") {
          // The first data frame this connection carries from us is ack + 1: the kept ones, in order.
          for (const k of this.kept) this.wsWrite(k);
        } else this.flushPosts();
        return;
      }
      case "t":
      case "b": {
        const seq = p[1];
        if (typeof seq !== "number") {
          this.violations.push(`data without a seq: ${JSON.stringify(p).slice(0, 80)}`);
          return;
        }
        const data: Data = p[0] === "t" ? String(p[2]) : new Uint8Array(Buffer.from(String(p[2]), "base64"));
        this.data(seq, data);
        return;
      }
      case "a": {
        this.control.push({ kind, packet: p });
        const n = p[1] as number;
        if (n > this.outSeq) this.violations.push(`the server acknowledged ${n}, we sent ${this.outSeq}`);
        this.forget(n);
        return;
      }
      case "h":
        this.control.push({ kind, packet: p });
        return;
      case "c":
        this.control.push({ kind, packet: p });
        this.closedWith = { code: p[1] as number, reason: p[2] as string };
        this.detach();
        return;
      default:
        this.violations.push(`unknown packet ${JSON.stringify(p).slice(0, 80)}`);
    }
  }

  private data(seq: number, data: Data): void {
    if (seq <= this.inSeq) {
      this.duplicates++;
      return;
    }
    if (seq !== this.inSeq + 1) {
      this.violations.push(`server frame ${seq} after ${this.inSeq}`);
      return;
    }
    this.inSeq = seq;
    this.delivered.push(data);
    this.scheduleAck();
  }

  private forget(n: number): void {
    if (n > this.serverAck) this.serverAck = n;
    while (this.kept.length > 0 && this.kept[0]!.seq <= n) this.kept.shift();
  }

  private scheduleAck(): void {
    if (this.kind === "longpoll") return; // each poll's ack acknowledges
    if (this.inSeq - this.lastAckSent >= this.ackEvery) {
      this.sendAck();
      return;
    }
    if (this.ackTimer === null) {
      this.ackTimer = setTimeout(() => {
        this.ackTimer = null;
        this.sendAck();
      }, this.ackDelayMs);
    }
  }

  private sendAck(): void {
    if (this.ackTimer !== null) clearTimeout(this.ackTimer);
    this.ackTimer = null;
    if (this.inSeq === this.lastAckSent) return;
    const n = this.inSeq;
    if (this.kind === "websocket" && this.ws !== null) {
      this.ws.ws.send(JSON.stringify(["a", n]));
      this.lastAckSent = n;
    } else if (this.kind === "eventsource" && this.es !== null) {
      this.lastAckSent = n;
      this.postQueue.push(["a", n]);
      this.flushPosts();
    }
  }

  private transmit(): void {
    if (!this.connected) return;
    if (this.kind === "websocket") {
      if (this.helloSeen) this.wsWrite(this.kept[this.kept.length - 1]!);
    } else this.flushPosts();
  }

  private wsWrite(k: Kept): void {
    const ws = this.ws?.ws;
    if (ws === undefined || ws.readyState !== WebSocket.OPEN) return;
    if (typeof k.data !== "string") ws.send(k.data, { binary: true });
    else if (k.data.startsWith("[")) ws.send(JSON.stringify(["t", k.seq, k.data]));
    else ws.send(k.data);
  }

  /** Control packets waiting for the next POST. */
  private postQueue: Packet[] = [];

  /** One POST in flight at most: the kept frames not yet posted on this connection, and queued acks. */
  private flushPosts(): void {
    if (this.posting || this.sid === undefined || !this.connected || this.kind === "websocket") return;
    const frames = this.kept.filter((k) => k.seq > this.postedUpTo);
    if (frames.length === 0 && this.postQueue.length === 0) return;
    const packets: Packet[] = [...this.postQueue, ...frames.map((k) => (typeof k.data === "string" ? ["t", k.seq, k.data] : ["b", k.seq, base64(k.data)]))];
    this.postQueue = [];
    const upTo = frames.length > 0 ? frames[frames.length - 1]!.seq : this.postedUpTo;
    this.posting = true;
    const conn = this.conn;
    post(this.port, this.path, this.sid, packets, { headers: this.headers }).then(
      (a) => {
        this.posting = false;
        if (a.status === 200) {
          const answer = JSON.parse(a.body) as Packet[];
          for (const p of answer) this.packet(this.kind ?? "longpoll", p);
          if (conn === this.conn) this.postedUpTo = Math.max(this.postedUpTo, upTo);
        } else if (conn === this.conn) {
          this.refused = { status: a.status, body: a.body };
          return;
        }
        this.flushPosts();
      },
      () => {
        this.posting = false;
      },
    );
  }
}
