// Bullet (ninenines/bullet): one route serving a cowboy_websocket handler over WebSocket, EventSource + POST, or long-polling, as one session that outlives its transports.
import { CorralError, badarg, describe } from "../runtime/errors.js";
import { runtimeLogger, type Logger } from "../runtime/log.js";
import type { Pid } from "../runtime/pid.js";
import { currentProcess, send, self } from "../runtime/process.js";
import { ok, stop, type Result } from "../runtime/result.js";
import { isExit, trapExit } from "../runtime/signals.js";
import { knownKeys, limit, positive } from "../runtime/validate.js";
import { binary, close, ping, ReceivedFrame, text, type Frame, type InFrame } from "./frames.js";
import { loop, type Loop } from "./loop.js";
import { currentExchange, type Exchange } from "./request.js";
import type { HttpOk, PartialReq, Req } from "./req.js";
import { ProtocolViolation, SessionPort, type Packet, type SessionLimits, type SessionTable, type Transport } from "./session.js";
import {
  commands,
  reply,
  resolveWebSocketOptions,
  spawnConnection,
  upgrade,
  type CallResult,
  type ResolvedWebSocketOptions,
  type TerminateReason,
  type Upgrade,
  type WebSocketHandler,
  type WebSocketOptions,
} from "./websocket.js";

export type BulletTransport = "websocket" | "eventsource" | "longpoll";

export interface BulletOptions {
  /** The transports this route serves. Default: all three. */
  readonly transports?: readonly BulletTransport[];
  /** How long a session waits for its client to come back (any transport). 0: no resume. Default 30000. */
  readonly resumeWindowMs?: number;
  /** Frames kept for a client that has not acknowledged them; past it the session ends with { error: "backpressure" }. Default 10000. */
  readonly outboxLimit?: number;
  /** A transport with nothing to say for this long sends a heartbeat; a long-poll is answered at the latest after it. Default 25000. */
  readonly heartbeatMs?: number;
}

const KNOWN_OPTIONS = new Set(["transports", "resumeWindowMs", "outboxLimit", "heartbeatMs"]);
const TRANSPORTS: ReadonlySet<string> = new Set<BulletTransport>(["websocket", "eventsource", "longpoll"]);

/** How long a dead connection may stay unnoticed beyond two missed heartbeats. */
const SLACK_MS = 5000;

const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-store",
  // nginx buffers proxied responses unless told not to; an event stream must flow as written.
  "x-accel-buffering": "no",
};
const JSON_HEADERS = { "content-type": "application/json", "cache-control": "no-store" };

/** Validates a route's options once, where bullet() is called. */
function resolveOptions(options: BulletOptions | undefined): { transports: ReadonlySet<BulletTransport>; limits: SessionLimits } {
  if (options !== undefined && (typeof options !== "object" || options === null)) throw badarg(`bullet: options must be an object, got ${describe(options)}`);
  if (options !== undefined) knownKeys(options, KNOWN_OPTIONS, "bullet");
  const list = options?.transports ?? ["websocket", "eventsource", "longpoll"];
  if (!Array.isArray(list) || list.length === 0 || !list.every((t) => TRANSPORTS.has(t as string))) {
    throw badarg(`bullet: transports must be a non-empty list of "websocket", "eventsource", "longpoll", got ${describe(list)}`);
  }
  const window = options?.resumeWindowMs ?? 30_000;
  if (typeof window !== "number" || !Number.isFinite(window) || window < 0) throw badarg(`bullet: resumeWindowMs must be a finite number of ms >= 0, got ${describe(window)}`);
  return {
    transports: new Set(list),
    limits: {
      resumeWindowMs: window,
      outboxLimit: limit(options?.outboxLimit, "bullet: outboxLimit must be a number > 0", 10_000),
      heartbeatMs: positive(options?.heartbeatMs, "bullet: heartbeatMs must be a number of ms > 0", 25_000),
    },
  };
}

/* ---------------------------------------------------------------- transports */

/** The session's packets for a transport's process, in order. */
class Push {
  constructor(readonly packets: readonly Packet[]) {}
}

/** The transport's process is to end (the session ended, or another transport took over). */
const END = Symbol("transport end");

/**
 * One transport connection of a session, as the state of its process (the WebSocket
 * connection, or the request process of an event stream or a poll), which attaches it to
 * the session once it runs.
 */
class Relay implements Transport {
  pid: Pid | null = null;
  /** Set once a poll is answered: see Transport.gapMs. */
  gapMs = 0;
  readonly acksInline: boolean;
  readonly listens: boolean;
  /** WebSocket: the number of the client's next data frame, implicit on this connection. */
  nextIn = 0;

  constructor(
    readonly kind: BulletTransport,
    readonly session: SessionPort,
    /** The last server frame the client has, from its request. */
    readonly ack: number,
  ) {
    this.acksInline = kind === "websocket";
    this.listens = kind === "eventsource";
  }

  push(packets: readonly Packet[]): void {
    send(this.pid!, new Push(packets));
  }

  end(): void {
    send(this.pid!, END);
  }

  /** Attaches this transport, whose process is pid: false when the session ended meanwhile. */
  attach(pid: Pid, hello: boolean): boolean {
    this.pid = pid;
    return this.session.attachTransport(this, this.ack, hello);
  }
}

/** A packet as JSON for the fallbacks: binary data as base64. */
function jsonPacket(p: Packet): unknown {
  return p[0] === "b" ? ["b", p[1], Buffer.from(p[2].buffer, p[2].byteOffset, p[2].byteLength).toString("base64")] : p;
}

/**
 * A packet as a WebSocket frame: data as itself (its number implicit), unless a text would
 * read as a packet; a heartbeat as a ping, which a browser answers by itself, so an idle
 * client still sends the bytes that keep its connection from timing out.
 */
function wsFrame(p: Packet): Frame {
  if (p[0] === "t" && !p[2].startsWith("[")) return text(p[2]);
  if (p[0] === "b") return binary(p[2]);
  if (p[0] === "h") return HEARTBEAT;
  return text(JSON.stringify(p));
}

const HEARTBEAT = ping();

function sseEvent(p: Packet): string {
  // A text frame, most of the traffic, spelled out: stringifying only its text, not the packet around it.
  if (p[0] === "t") return `id: ${p[1]}\ndata: ["t",${p[1]},${JSON.stringify(p[2])}]\n\n`;
  const data = JSON.stringify(jsonPacket(p));
  return p[0] === "b" ? `id: ${p[1]}\ndata: ${data}\n\n` : `data: ${data}\n\n`;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function seqOf(v: unknown): number {
  if (!Number.isSafeInteger(v) || (v as number) < 0) throw new ProtocolViolation(`not a sequence number: ${describe(v)}`);
  return v as number;
}

/**
 * One packet from the client, checked and applied to its session. Returns the number of a
 * data frame (for a WebSocket's implicit numbering), else undefined.
 */
function clientPacket(session: SessionPort, p: unknown): number | undefined {
  if (!Array.isArray(p) || typeof p[0] !== "string") throw new ProtocolViolation(`not a packet: ${describe(p)}`);
  switch (p[0]) {
    case "t": {
      if (p.length !== 3 || typeof p[2] !== "string") break;
      const seq = seqOf(p[1]);
      session.receive(seq, new ReceivedFrame("text", p[2]));
      return seq;
    }
    case "b": {
      if (p.length !== 3 || typeof p[2] !== "string" || !BASE64.test(p[2])) break;
      const seq = seqOf(p[1]);
      session.receive(seq, new ReceivedFrame("binary", Buffer.from(p[2], "base64")));
      return seq;
    }
    case "a":
      if (p.length !== 2) break;
      session.ackFromClient(seqOf(p[1]));
      return undefined;
    case "h":
      session.heard();
      return undefined;
    case "c": {
      const code: unknown = p[1];
      if (p.length !== 3 || !Number.isInteger(code) || (code as number) < 1000 || (code as number) > 4999 || typeof p[2] !== "string" || p[2].length > 123) break;
      session.clientClose(code as number, p[2]);
      return undefined;
    }
  }
  throw new ProtocolViolation(`not a packet: ${describe(p)}`);
}

/* ---------------------------------------------------------------- the route */

interface Query {
  readonly t: string | undefined;
  readonly sid: string | undefined;
  readonly ack: number | undefined;
  /** A long-poll that opens a transport (a resume) asks for hello, answered at once. */
  readonly hello: boolean;
}

/** A request the route refuses, with its status: the client's fault, never a crash. */
class Refused {
  constructor(
    readonly status: number,
    readonly error: string,
  ) {}
}

function queryOf(req: Req): Query {
  let t: string | undefined;
  let sid: string | undefined;
  let ackText: string | undefined;
  let hello = false;
  let pairs: [string, string | true][];
  try {
    pairs = req.parseQs();
  } catch {
    throw new Refused(400, "malformed query string");
  }
  for (const [k, v] of pairs) {
    const value = v === true ? "" : v;
    if (k === "t") t = value;
    else if (k === "sid") sid = value;
    else if (k === "ack") ackText = value;
    else if (k === "hello") hello = true;
  }
  ackText ??= req.header("last-event-id");
  if (ackText !== undefined && !/^\d{1,15}$/.test(ackText)) throw new Refused(400, "ack must be a non-negative integer");
  return { t, sid, ack: ackText === undefined ? undefined : Number(ackText), hello };
}

/** A bullet() route: a handler of every kind at once, as the request it is asked for needs. */
class BulletRoute<S, Opts> {
  private readonly sessions: SessionTable = new Map();
  private readonly transports: ReadonlySet<BulletTransport>;
  private readonly limits: SessionLimits;

  constructor(
    private readonly handler: WebSocketHandler<S, Opts, unknown>,
    options: BulletOptions | undefined,
  ) {
    const { transports, limits } = resolveOptions(options);
    this.transports = transports;
    this.limits = limits;
  }

  async init(req: Req, opts: Opts): Promise<Upgrade<Relay> | Loop<Relay> | HttpOk<unknown>> {
    // The request process and its logger, known only before the first await (the handler's init may await).
    const me = self();
    const logger = currentProcess()?.loop.logger ?? runtimeLogger();
    const exchange = currentExchange();
    try {
      return await this.route(req, opts, me, logger, exchange);
    } catch (err) {
      if (err instanceof Refused) return answer(req, err.status, { error: err.error });
      if (err instanceof ProtocolViolation) return answer(req, 400, { error: err.message });
      throw err;
    }
  }

  private async route(req: Req, opts: Opts, me: Pid, logger: Logger, exchange: Exchange | undefined): Promise<Upgrade<Relay> | Loop<Relay> | HttpOk<unknown>> {
    const q = queryOf(req);
    if (req.method === "POST") return this.post(req, q);
    if (req.method !== "GET") {
      req.setRespHeader("allow", "GET, POST");
      throw new Refused(405, "GET or POST");
    }
    const kind: BulletTransport | undefined =
      (req.header("upgrade") ?? "").toLowerCase() === "websocket" ? "websocket"
      : q.t === "es" ? "eventsource"
      : q.t === "poll" ? "longpoll"
      : undefined;
    if (kind === undefined) throw new Refused(400, "a WebSocket upgrade, or t=es or t=poll");
    if (!this.transports.has(kind)) throw new Refused(400, "transport disabled");
    let session: SessionPort;
    const fresh = q.sid === undefined;
    if (fresh) {
      const started = await this.start(req, opts, logger, exchange);
      if (!(started instanceof SessionPort)) return started;
      session = started;
    } else {
      session = this.known(req, q.sid!);
    }
    const relay = new Relay(kind, session, q.ack ?? 0);
    // Attached in the connection's websocketInit: an upgrade refused after init leaves nothing attached.
    if (kind === "websocket") {
      session.checkAck(relay.ack);
      return upgrade(req, relay, this.relayOptions(session.opts));
    }
    if (!relay.attach(me, kind === "eventsource" || fresh || q.hello)) throw new Refused(404, "no such session");
    if (kind === "eventsource") req.streamReply(200, SSE_HEADERS);
    return loop(req, relay);
  }

  /** A session id this route knows, presented from an origin the session allows; anything else is 404 or 403. */
  private known(req: Req, sid: string): SessionPort {
    const session = this.sessions.get(sid);
    if (session === undefined) throw new Refused(404, "no such session");
    checkOrigin(req, session.opts);
    return session;
  }

  /** A new session: the handler's init in this request process, then its own process (websocketInit there). */
  private async start(req: Req, opts: Opts, logger: Logger, exchange: Exchange | undefined): Promise<SessionPort | HttpOk<unknown>> {
    const r = await this.handler.init(req, opts);
    if (r.type !== "upgrade") return r;
    const resolved = resolveWebSocketOptions(r.opts);
    checkOrigin(req, resolved);
    const session = new SessionPort(this.sessions, resolved, this.limits);
    // A session ends with the listener it started on ("shutdown"), whichever transport carries it then, or none.
    session.cancelShutdown = exchange?.onListenerStop?.(() => session.shutdown());
    // Known to the port at once, before the process starts: the first transport's monitor comes from it.
    session.attach(spawnConnection(this.handler as WebSocketHandler<S, unknown, unknown>, sessionName(this.handler), r.state, session, req, resolved, logger));
    return session;
  }

  /** What a WebSocket transport of a session is: the session's options, and dead peers noticed by their missing heartbeats. */
  private relayOptions(o: ResolvedWebSocketOptions): WebSocketOptions {
    return {
      idleTimeout: this.limits.heartbeatMs * 2 + SLACK_MS,
      // A packet may spell a text out as JSON; the session checks the frame's own size.
      maxFrameSize: o.maxFrameSize * 2 + 64,
      compress: o.compress,
      validateUtf8: o.validateUtf8,
      maxBufferedAmount: o.maxBufferedAmount,
      ...(o.allowedOrigins === undefined ? {} : { allowedOrigins: [...o.allowedOrigins] }),
    };
  }

  /** The client's frames on a fallback: a JSON list of packets, answered with how far the session got. */
  private async post(req: Req, q: Query): Promise<HttpOk<unknown>> {
    if (q.sid === undefined) throw new Refused(400, "sid missing");
    const session = this.known(req, q.sid);
    const body = await req.readBody({ length: session.opts.maxFrameSize * 2 + 1024 });
    let packets: unknown;
    try {
      packets = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("utf8"));
    } catch {
      throw new Refused(400, "the body must be a JSON list of packets");
    }
    if (!Array.isArray(packets)) throw new Refused(400, "the body must be a JSON list of packets");
    for (const p of packets) clientPacket(session, p);
    return answer(req, 200, [["a", session.received]]);
  }

  /* ---------------------------------------------------------- a WebSocket transport's callbacks */

  websocketInit(relay: Relay): CallResult<Relay> {
    // The listener's stop comes as an EXIT after what the session still had to say, which then goes first (see websocketInfo).
    trapExit(true);
    relay.nextIn = relay.session.received + 1;
    return relay.attach(self(), true) ? ok(relay) : commands([close(1000)], relay);
  }

  websocketHandle(frame: InFrame, relay: Relay): CallResult<Relay> {
    // Any frame is the client heard, a pong to the heartbeat's ping included.
    relay.session.heard();
    try {
      if (frame.type === "text" && frame.data.startsWith("[")) {
        let packet: unknown;
        try {
          packet = JSON.parse(frame.data);
        } catch {
          throw new ProtocolViolation("a text frame starting with [ must be a JSON packet");
        }
        const seq = clientPacket(relay.session, packet);
        if (seq !== undefined) relay.nextIn = seq + 1;
        else if ((packet as unknown[])[0] === "h") return reply(text('["h"]'), relay);
      } else if (frame.type === "text" || frame.type === "binary") {
        relay.session.receive(relay.nextIn++, new ReceivedFrame(frame.type, frame.data as never));
      }
    } catch (err) {
      if (err instanceof ProtocolViolation) return commands([close(1002, err.message.slice(0, 120))], relay);
      throw err;
    }
    return ok(relay);
  }

  websocketInfo(msg: unknown, relay: Relay): CallResult<Relay> {
    if (msg instanceof Push) return reply(msg.packets.map(wsFrame), relay);
    if (msg === END) return commands([close(1000)], relay);
    if (isExit(msg)) {
      // The listener stops: the session ends ("shutdown") and this relay gets its close packet, then END.
      if (msg.reason === "shutdown") relay.session.shutdown();
      else if (msg.reason !== "normal") return stop(relay);
    }
    return ok(relay);
  }

  /* ---------------------------------------------------------- an event stream's or a poll's callbacks */

  async info(msg: unknown, req: Req, relay: Relay): Promise<Result<Relay>> {
    if (msg instanceof Push) {
      if (relay.kind === "eventsource") {
        await req.streamBody(msg.packets.map(sseEvent).join(""));
        return ok(relay);
      }
      answer(req, 200, msg.packets.map(jsonPacket));
      // A poll answered is not a client gone: its next poll, or its finding out that the answer was lost (no answer within heartbeatMs + 1 s), comes within heartbeatMs + 5 s.
      relay.gapMs = relay.session.limits.heartbeatMs + SLACK_MS;
      return stop(relay);
    }
    if (msg === END) {
      if (relay.kind === "longpoll") answer(req, 200, []);
      return stop(relay);
    }
    return ok(relay);
  }

  /**
   * Any transport's end: the session waits for its client, unless another transport took
   * over; a transport shut down with its listener takes its session with it.
   */
  terminate(reason: TerminateReason, _req: PartialReq, state: unknown): void {
    if (!(state instanceof Relay)) return;
    if (reason === "shutdown") state.session.shutdown();
    else state.session.detachTransport(state);
  }
}

function answer(req: Req, status: number, body: unknown): HttpOk<null> {
  req.reply(status, JSON_HEADERS, JSON.stringify(body));
  return { type: "ok", req, state: null };
}

/** A fallback request from an origin the session's options do not allow: 403, as the WebSocket upgrade would answer. */
function checkOrigin(req: Req, opts: ResolvedWebSocketOptions): void {
  const origin = req.header("origin");
  if (opts.allowedOrigins !== undefined && origin !== undefined && !opts.allowedOrigins.has(origin.toLowerCase())) throw new Refused(403, "origin not allowed");
}

function sessionName(handler: object): string {
  const name = handler.constructor !== Object ? handler.constructor.name : "";
  return name === "" ? "session" : `${name} session`;
}

/**
 * Bullet: serves handler over WebSocket, EventSource + POST and long-polling from one route,
 * as one session process per client that outlives dropped connections for resumeWindowMs.
 * The handler cannot tell the transports apart (docs/sessions.md).
 */
export function bullet<S, Opts = unknown, Info = unknown>(handler: WebSocketHandler<S, Opts, Info>, options?: BulletOptions): BulletRoute<S, Opts> {
  if (typeof handler !== "object" || handler === null || typeof handler.init !== "function" || typeof handler.websocketHandle !== "function") {
    throw new CorralError("ERR_BADARG", `bullet: expected a WebSocket handler (init and websocketHandle), got ${describe(handler)}`);
  }
  return new BulletRoute(handler as WebSocketHandler<S, Opts, unknown>, options);
}

export type { BulletRoute };
