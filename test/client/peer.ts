/**
 * A small, strict server side of corral's session protocol (version 1), on node:http and ws,
 * for testing corral/client without a corral server: it follows the protocol as written (hello,
 * sequence numbers and acks both ways, resume, the three transports, POST) and records every
 * request and every rule the client breaks. Knobs let a test refuse a transport, cut one,
 * forget a session, mute the server, slow POSTs down or send duplicates after a resume.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { randomBytes } from "node:crypto";
import { WebSocketServer, type WebSocket } from "ws";

export type Kind = "websocket" | "eventsource" | "longpoll";
type Data = string | Buffer;

export interface RequestRecord {
  readonly kind: Kind | "post";
  readonly sid: string | null;
  readonly ack: number | null;
  readonly at: number;
  readonly body?: unknown[];
  /** A poll that asked for hello (a resume's first poll). */
  readonly hello?: boolean;
}

type Attachment =
  | { kind: "websocket"; ws: WebSocket; lastOut: number; lastIn: number; ackPending: boolean }
  | { kind: "eventsource"; res: ServerResponse; timer: ReturnType<typeof setInterval> }
  | { kind: "longpoll"; held: ServerResponse | null; timer: ReturnType<typeof setTimeout> | undefined };

export class Session {
  readonly id = randomBytes(32).toString("base64url");
  /** Every frame this side ever sent, seq i at index i - 1 (kept whole so duplicates can be sent on purpose). */
  readonly history: Data[] = [];
  /** The client's highest ack of those. */
  clientAck = 0;
  /** The client's frames delivered, in order, and how many duplicates were dropped. */
  readonly received: Data[] = [];
  duplicates = 0;
  /** Every ["a", n] the client sent (packet acks only; query acks are in the request log). */
  readonly acks: number[] = [];
  /** Every ["h"] the client sent. */
  pings = 0;
  /** The client's ["c", code, reason], once it came. */
  closedWith: [number, string] | null = null;
  att: Attachment | null = null;
  get outSeq(): number {
    return this.history.length;
  }
}

const encode = (d: Data): string => (typeof d === "string" ? d : d.toString("base64"));

export class Peer {
  heartbeatMs = 200;
  resumeWindowMs = 10_000;
  /** Answer requests of these transports with this status instead (a WebSocket upgrade is refused with it). */
  refuse: Partial<Record<Kind | "post", number>> = {};
  /** Send every client frame back. */
  echo = false;
  /** Say nothing at all: no hello, no heartbeats, no answers (the requests stay open). */
  mute = false;
  /** Hold each POST this long before answering it. */
  postDelayMs = 0;
  /** On every resume, send this many frames the client already has again first (explicit packets). */
  resendOld = 0;
  /** A held poll the client gives up means its transport is gone (false: the peer waits for the next poll, as a server may). */
  pollAbortIsDrop = true;
  /** Answer POSTs whose body is longer than this with 413. */
  maxPostBytes = Infinity;
  /** Other paths this server answers GETs for (a page and its scripts, for a browser). */
  readonly files = new Map<string, { type: string; body: string }>();
  readonly requests: RequestRecord[] = [];
  readonly violations: string[] = [];
  readonly sessions = new Map<string, Session>();
  postsInFlight = 0;
  maxPostsInFlight = 0;
  readonly url: string;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    private readonly wss: WebSocketServer,
  ) {
    const addr = server.address();
    if (addr === null || typeof addr === "string") throw new Error("no port");
    this.url = `http://127.0.0.1:${addr.port}/live`;
    server.on("connection", (s: Socket) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
    server.on("request", (req, res) => void this.onRequest(req, res));
    server.on("upgrade", (req: IncomingMessage, socket: Socket, head: Buffer) => this.onUpgrade(req, socket, head));
  }

  static async start(): Promise<Peer> {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    return new Peer(server, new WebSocketServer({ noServer: true }));
  }

  async stop(): Promise<void> {
    for (const s of this.sessions.values()) this.detach(s);
    for (const ws of this.wss.clients) ws.terminate();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  /** The one session (most tests have one). */
  only(): Session {
    const all = [...this.sessions.values()];
    if (all.length !== 1) throw new Error(`${all.length} sessions`);
    return all[0]!;
  }

  /** A frame from the server: written now if a transport is attached, else kept for the resume. */
  push(s: Session, data: Data): void {
    s.history.push(data);
    if (!this.mute) this.write(s, [s.outSeq]);
  }

  /** The transport drops without a word (the session stays, to be resumed). */
  cut(s: Session): void {
    const a = s.att;
    s.att = null;
    if (a === null) return;
    if (a.kind === "websocket") a.ws.terminate();
    else if (a.kind === "eventsource") {
      clearInterval(a.timer);
      a.res.destroy();
    } else {
      clearTimeout(a.timer);
      a.held?.destroy();
    }
  }

  /** The session ends: ["c", code, reason] to the client, then it is forgotten. */
  end(s: Session, code: number, reason: string): void {
    this.packet(s, ["c", code, reason]);
    this.forget(s);
  }

  /** The session is gone without a word: requests for it get 404. */
  forget(s: Session): void {
    this.detach(s);
    this.sessions.delete(s.id);
  }

  private detach(s: Session): void {
    const a = s.att;
    s.att = null;
    if (a === null) return;
    if (a.kind === "websocket") a.ws.close(1000);
    else if (a.kind === "eventsource") {
      clearInterval(a.timer);
      a.res.end();
    } else {
      clearTimeout(a.timer);
      if (a.held !== null) a.held.end("[]");
    }
  }

  private violation(what: string): void {
    this.violations.push(what);
  }

  /** sid and ack from the query: the session (null: 404 sent), or "new". */
  private parse(url: URL): { sid: string | null; ack: number | null } {
    const sid = url.searchParams.get("sid");
    const ackText = url.searchParams.get("ack");
    const ack = ackText === null ? null : Number(ackText);
    if (ack !== null && !(Number.isInteger(ack) && ack >= 0)) this.violation(`bad ack ${ackText}`);
    return { sid, ack };
  }

  private takeAck(s: Session, n: number): void {
    if (n > s.outSeq) this.violation(`ack ${n} beyond the last sent ${s.outSeq}`);
    if (n > s.clientAck) s.clientAck = n;
  }

  private hello(s: Session): unknown[] {
    return ["hello", s.id, s.received.length, this.heartbeatMs, this.resumeWindowMs];
  }

  /** Frame seqs to send after a (re)attach at the client's ack: the ones after it, plus resendOld before it. */
  private after(s: Session, ack: number): number[] {
    const from = Math.max(1, ack + 1 - (ack > 0 ? this.resendOld : 0));
    const seqs: number[] = [];
    for (let i = from; i <= s.outSeq; i++) seqs.push(i);
    return seqs;
  }

  private write(s: Session, seqs: number[]): void {
    const a = s.att;
    if (a === null || seqs.length === 0) return;
    if (a.kind === "websocket") {
      for (const seq of seqs) {
        const d = s.history[seq - 1]!;
        const implicit = seq === a.lastOut + 1 && (typeof d !== "string" || d[0] !== "[");
        if (implicit) a.ws.send(d, { binary: typeof d !== "string" });
        else a.ws.send(JSON.stringify([typeof d === "string" ? "t" : "b", seq, encode(d)]));
        a.lastOut = seq;
      }
    } else if (a.kind === "eventsource") {
      for (const seq of seqs) {
        const d = s.history[seq - 1]!;
        a.res.write(`id: ${seq}\ndata: ${JSON.stringify([typeof d === "string" ? "t" : "b", seq, encode(d)])}\n\n`);
      }
    } else if (a.held !== null) {
      this.answerPoll(a, seqs.map((seq) => [typeof s.history[seq - 1] === "string" ? "t" : "b", seq, encode(s.history[seq - 1]!)]));
    }
  }

  private packet(s: Session, p: unknown[]): void {
    const a = s.att;
    if (a === null) return;
    if (a.kind === "websocket") a.ws.send(JSON.stringify(p));
    else if (a.kind === "eventsource") a.res.write(`data: ${JSON.stringify(p)}\n\n`);
    else if (a.held !== null) this.answerPoll(a, [p]);
  }

  private answerPoll(a: Extract<Attachment, { kind: "longpoll" }>, packets: unknown[]): void {
    clearTimeout(a.timer);
    const res = a.held!;
    a.held = null;
    res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" }).end(JSON.stringify(packets));
  }

  /** A client frame: delivered once, in order; a gap breaks the rules. Returns false on a gap. */
  private deliver(s: Session, seq: unknown, data: Data): boolean {
    if (typeof seq !== "number") {
      this.violation(`bad seq ${String(seq)}`);
      return false;
    }
    if (seq <= s.received.length) {
      s.duplicates++;
      return true;
    }
    if (seq !== s.received.length + 1) {
      this.violation(`gap: frame ${seq} after ${s.received.length}`);
      return false;
    }
    s.received.push(data);
    if (this.echo) this.push(s, data);
    return true;
  }

  /** A client packet (any transport); false if it broke a rule. */
  private clientPacket(s: Session, p: unknown): boolean {
    if (!Array.isArray(p)) {
      this.violation(`not a packet: ${JSON.stringify(p)}`);
      return false;
    }
    const [type, a, b] = p as unknown[];
    if (type === "t" && typeof b === "string") return this.deliver(s, a, b);
    if (type === "b" && typeof b === "string") return this.deliver(s, a, Buffer.from(b, "base64"));
    if (type === "a" && typeof a === "number") {
      s.acks.push(a);
      this.takeAck(s, a);
      return true;
    }
    if (type === "h") {
      s.pings++;
      if (!this.mute && s.att?.kind === "websocket") s.att.ws.send('["h"]');
      return true;
    }
    if (type === "c" && typeof a === "number" && typeof b === "string") {
      s.closedWith = [a, b];
      this.forget(s);
      return true;
    }
    this.violation(`unknown packet ${JSON.stringify(p)}`);
    return false;
  }

  private session(sid: string | null): Session | null {
    if (sid === null) {
      const s = new Session();
      this.sessions.set(s.id, s);
      return s;
    }
    return this.sessions.get(sid) ?? null;
  }

  private onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const url = new URL(req.url ?? "/", "http://x");
    const { sid, ack } = this.parse(url);
    this.requests.push({ kind: "websocket", sid, ack, at: Date.now() });
    const status = this.refuse.websocket ?? (sid !== null && !this.sessions.has(sid) ? 404 : 0);
    if (status !== 0) {
      socket.end(`HTTP/1.1 ${status} No\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const s = this.session(sid)!;
      if (this.mute) return;
      if (ack !== null) this.takeAck(s, ack);
      this.detach(s);
      const a: Attachment = { kind: "websocket", ws, lastOut: ack ?? 0, lastIn: s.received.length, ackPending: false };
      s.att = a;
      ws.send(JSON.stringify(this.hello(s)));
      this.write(s, this.after(s, ack ?? 0));
      ws.on("message", (raw: Buffer, isBinary: boolean) => {
        if (this.mute) return;
        let ok: boolean;
        if (isBinary) ok = this.deliver(s, ++a.lastIn, Buffer.from(raw));
        else {
          const text = raw.toString();
          if (text[0] !== "[") ok = this.deliver(s, ++a.lastIn, text);
          else {
            const p = JSON.parse(text) as unknown[];
            if ((p[0] === "t" || p[0] === "b") && typeof p[1] === "number") a.lastIn = p[1];
            ok = this.clientPacket(s, p);
          }
        }
        if (!ok) return ws.close(1002);
        // The server acknowledges what it got, a turn later (so a burst gets one ack).
        if (!a.ackPending) {
          a.ackPending = true;
          setImmediate(() => {
            a.ackPending = false;
            if (s.att === a && !this.mute) ws.send(JSON.stringify(["a", s.received.length]));
          });
        }
      });
      ws.on("close", () => {
        if (s.att === a) s.att = null;
      });
    });
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://x");
    if (url.pathname !== "/live") {
      const file = this.files.get(url.pathname);
      if (file === undefined) res.writeHead(404).end();
      else res.writeHead(200, { "content-type": file.type }).end(file.body);
      return;
    }
    const { sid, ack } = this.parse(url);
    const json = (status: number, body: unknown): void => void res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    if (req.method === "POST") {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const text = Buffer.concat(chunks).toString();
      const body = JSON.parse(text) as unknown[];
      this.requests.push({ kind: "post", sid, ack: null, at: Date.now(), body });
      if (this.refuse.post !== undefined) return json(this.refuse.post, { error: "refused" });
      const s = sid === null ? null : this.sessions.get(sid);
      if (s === undefined || s === null) return json(404, { error: "no such session" });
      if (Buffer.byteLength(text) > this.maxPostBytes) return json(413, { error: "too large" });
      this.postsInFlight++;
      this.maxPostsInFlight = Math.max(this.maxPostsInFlight, this.postsInFlight);
      for (const p of body) if (!this.clientPacket(s, p)) {
        this.postsInFlight--;
        return json(400, { error: "protocol" });
      }
      if (this.postDelayMs > 0) await new Promise((r) => setTimeout(r, this.postDelayMs));
      this.postsInFlight--;
      return json(200, [["a", s.received.length]]);
    }
    const t = url.searchParams.get("t");
    const kind: Kind = t === "es" ? "eventsource" : "longpoll";
    const hello = url.searchParams.has("hello");
    this.requests.push({ kind, sid, ack, at: Date.now(), ...(kind === "longpoll" ? { hello } : {}) });
    const status = this.refuse[kind];
    if (status !== undefined) return json(status, { error: "refused" });
    const known = sid === null ? null : this.sessions.get(sid);
    if (known === undefined) return json(404, { error: "no such session" });
    if (this.mute) return;
    const s = this.session(sid)!;
    if (ack !== null) this.takeAck(s, ack);
    if (kind === "eventsource") {
      this.detach(s);
      res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store" });
      const a: Attachment = { kind, res, timer: setInterval(() => this.mute || res.write('data: ["h"]\n\n'), this.heartbeatMs) };
      s.att = a;
      res.on("close", () => {
        clearInterval(a.timer);
        if (s.att === a) s.att = null;
      });
      res.write(`data: ${JSON.stringify(this.hello(s))}\n\n`);
      this.write(s, this.after(s, ack ?? 0));
      return;
    }
    // Long-poll: a session's first request, or a resume (the session is away or elsewhere, or the poll asks for hello), gets hello at once.
    const a0 = s.att;
    if (sid === null || hello || a0 === null || a0.kind !== "longpoll") {
      this.detach(s);
      const a: Attachment = { kind: "longpoll", held: null, timer: undefined };
      s.att = a;
      const packets: unknown[] = [this.hello(s)];
      for (const seq of this.after(s, ack ?? 0)) packets.push([typeof s.history[seq - 1] === "string" ? "t" : "b", seq, encode(s.history[seq - 1]!)]);
      return json(200, packets);
    }
    if (a0.held !== null) this.answerPoll(a0, []);
    a0.held = res;
    res.on("close", () => {
      // The client gave this poll up: the transport is gone.
      if (a0.held === res && !res.writableEnded) {
        a0.held = null;
        clearTimeout(a0.timer);
        if (s.att === a0 && this.pollAbortIsDrop) s.att = null;
      }
    });
    const pending = this.after(s, ack ?? 0).filter((seq) => seq > (ack ?? 0));
    if (pending.length > 0) return this.write(s, pending);
    a0.timer = setTimeout(() => a0.held !== null && !this.mute && this.answerPoll(a0, [["h"]]), this.heartbeatMs);
  }
}

/** Resolves once pred() holds, polling; rejects after timeoutMs naming what was awaited. */
export async function until(pred: () => boolean, timeoutMs = 3000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
