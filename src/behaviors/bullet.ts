// Bullet (ninenines/bullet): one route serving a cowboy_websocket handler over WebSocket, EventSource + POST, or long-polling, as one session that outlives its transports.
import { CorralError, badarg, describe } from "../runtime/errors.js";
import { runtimeLogger, type Logger } from "../runtime/log.js";
import type { Pid } from "../runtime/pid.js";
import { activeDist, currentProcess, send, self, spawnProcess, type Process, type ProcessLoop } from "../runtime/process.js";
import { call, CallError, isCall, replyTo } from "../runtime/call.js";
import { setDistService } from "../runtime/dist.js";
import { join, members } from "../runtime/groups.js";
import { nodeName } from "../runtime/node.js";
import type { Ref } from "../runtime/pid.js";
import { ok, stop, type Result } from "../runtime/result.js";
import { exitFrom, isDown, isExit, monitorFrom, trapExit } from "../runtime/signals.js";
import { knownKeys, limit, positive } from "../runtime/validate.js";
import { binary, close, ping, ReceivedFrame, text, type Frame, type InFrame } from "./frames.js";
import { loop, type Loop } from "./loop.js";
import { currentExchange, type Exchange } from "./request.js";
import type { HttpOk, PartialReq, Req } from "./req.js";
import { nodeSessions, nodeTag, ownerTag, ProtocolViolation, REMOTE, SessionPort, setRemoteHandler, type Packet, type SessionLimits, type SessionTable, type Transport } from "./session.js";
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

/** The session a process carries as one of its transports (its state is the transport's Relay), for the observer. */
export function carriedSession(state: unknown): SessionPort | null {
  return state instanceof Relay ? state.session : null;
}

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

  get heartbeatMs(): number {
    return this.session.limits.heartbeatMs;
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

/**
 * A data frame of a WebSocket transport, numbered `at.nextIn` unless it is a packet: "h" for
 * a client heartbeat, which the transport answers.
 */
function wsData(session: SessionPort, at: { nextIn: number }, type: "text" | "binary", data: string | Uint8Array): "h" | undefined {
  if (type === "text" && (data as string).startsWith("[")) {
    let packet: unknown;
    try {
      packet = JSON.parse(data as string);
    } catch {
      throw new ProtocolViolation("a text frame starting with [ must be a JSON packet");
    }
    const seq = clientPacket(session, packet);
    if (seq !== undefined) at.nextIn = seq + 1;
    else if ((packet as unknown[])[0] === "h") return "h";
    return undefined;
  }
  session.receive(at.nextIn++, new ReceivedFrame(type, data as never));
  return undefined;
}

/* ---------------------------------------------------------------- sessions on other nodes */

/** The group of every node's session directory: a relay finds its session's owner by the tag in the session id. */
const DIRECTORIES = "corral.bullet.directories";
/** How long a relay waits for the owner's answer before it answers 503 (the client tries again). */
const OWNER_TIMEOUT_MS = 5000;

/** What the owner tells a relay of a session it serves: where it is, its limits, the options the transport follows. */
interface Owned {
  readonly pid: Pid;
  readonly heartbeatMs: number;
  readonly resumeWindowMs: number;
  readonly opts: {
    readonly maxFrameSize: number;
    readonly compress: boolean;
    readonly validateUtf8: boolean;
    readonly maxBufferedAmount: number;
    readonly allowedOrigins: readonly string[] | undefined;
  };
}

/** An answer of the owner that refuses: the status the relay's request gets. */
interface Refusal {
  readonly status: number;
  readonly error: string;
}

const isRefusal = (v: unknown): v is Refusal => typeof v === "object" && v !== null && "status" in v;

/** A transport on another node, as its session sees it: its relay's pid, to which the packets go as messages. */
class RemoteTransport implements Transport {
  gapMs = 0;
  nextIn = 0;
  readonly acksInline: boolean;
  readonly listens: boolean;

  constructor(
    readonly pid: Pid,
    readonly kind: BulletTransport,
  ) {
    this.acksInline = kind === "websocket";
    this.listens = kind === "eventsource";
  }

  push(packets: readonly Packet[]): void {
    send(this.pid, [REMOTE, "push", packets]);
  }

  end(): void {
    send(this.pid, [REMOTE, "end"]);
  }
}

/**
 * This node's session directory: the process other nodes' relays ask for a session of this
 * node, which checks the whole id here. A node-level service, as Erlang's global_name_server:
 * it starts with the cluster (before the first node is met, so every node learns of it with
 * this node's other group members) and stops with it, whether or not a bullet route runs yet.
 */
let directory: Pid | null = null;

/** The directory's process: a call is answered at once; its end, however it ends (killed too), starts the next while the cluster runs. */
const DIRECTORY: ProcessLoop = {
  name: "session directory",
  receiveLoop: false,
  start(): void {},
  handle(_p: Process, msg: unknown): void {
    if (isCall(msg)) replyTo(msg.from, ownerCall(msg.request));
  },
  terminate(p: Process): void {
    if (directory !== p.pid) return;
    // No session depends on it: the next one joins before this one leaves the group, so other nodes never see this node without one.
    directory = null;
    if (activeDist() !== null) startDirectory();
  },
};

function startDirectory(): void {
  if (directory !== null) return;
  directory = spawnProcess(DIRECTORY, null, undefined).pid;
  join(DIRECTORIES, directory);
}

function stopDirectory(): void {
  const dir = directory;
  directory = null;
  if (dir !== null) exitFrom(null, dir, "shutdown");
}

setDistService({ start: startDirectory, stop: stopDirectory });

/** The session an id names here, if the request's origin may use it. */
function ownedSession(sid: unknown, origin: unknown): SessionPort | Refusal {
  const session = typeof sid === "string" ? nodeSessions.get(sid) : undefined;
  if (session === undefined || session.process === null) return { status: 404, error: "no such session" };
  const allowed = session.opts.allowedOrigins;
  if (allowed !== undefined && typeof origin === "string" && !allowed.has(origin.toLowerCase())) return { status: 403, error: "origin not allowed" };
  return session;
}

function owned(session: SessionPort): Owned {
  const o = session.opts;
  return {
    pid: session.process!,
    heartbeatMs: session.limits.heartbeatMs,
    resumeWindowMs: session.limits.resumeWindowMs,
    opts: {
      maxFrameSize: o.maxFrameSize,
      compress: o.compress,
      validateUtf8: o.validateUtf8,
      maxBufferedAmount: o.maxBufferedAmount,
      allowedOrigins: o.allowedOrigins === undefined ? undefined : [...o.allowedOrigins],
    },
  };
}

/** A relay's question to the owner: "open" (before a WebSocket upgrade), "attach" (a transport), "post" (the client's frames). */
function ownerCall(request: unknown): Owned | Refusal | { readonly ack: number } {
  if (!Array.isArray(request) || request[0] !== REMOTE) return { status: 400, error: "not a session request" };
  const [, op, sid, origin] = request as unknown[];
  const session = ownedSession(sid, origin);
  if (isRefusal(session)) return session;
  try {
    if (op === "open") return owned(session);
    if (op === "attach") {
      const [, , , , relay, kind, ack, hello] = request as [string, string, string, unknown, Pid, BulletTransport, number, boolean];
      const t = new RemoteTransport(relay, kind);
      t.nextIn = session.received + 1;
      session.checkAck(ack);
      return session.attachTransport(t, ack, hello) ? owned(session) : { status: 404, error: "no such session" };
    }
    if (op === "post") {
      for (const p of request[4] as unknown[]) clientPacket(session, p);
      return { ack: session.received };
    }
  } catch (err) {
    if (err instanceof ProtocolViolation) return { status: 400, error: err.message };
    throw err;
  }
  return { status: 400, error: "not a session request" };
}

/** What a relay tells the session's process on its own: the client's WebSocket frames, a heartbeat heard, its end. */
function ownerInfo(session: SessionPort, msg: readonly unknown[]): void {
  const [, op, sid, relay] = msg as [string, string, string, Pid];
  const t = session.current;
  if (sid !== session.sid || !(t instanceof RemoteTransport) || !t.pid.equals(relay)) return;
  if (op === "heard") session.heard();
  else if (op === "detach") {
    t.gapMs = msg[4] as number;
    session.detachTransport(t);
  } else if (op === "ws") {
    session.heard();
    try {
      wsData(session, t, msg[4] as "text" | "binary", msg[5] as string | Uint8Array);
    } catch (err) {
      if (!(err instanceof ProtocolViolation)) throw err;
      send(relay, [REMOTE, "violation", err.message]);
    }
  }
}

setRemoteHandler(ownerInfo);

/** The directory of the node whose tag a session id carries, when a cluster runs and that node is another. */
function ownerDirectory(sid: string): Pid | undefined {
  const tag = ownerTag(sid);
  if (tag === "" || activeDist() === null || tag === nodeTag(nodeName())) return undefined;
  return members(DIRECTORIES).find((p) => nodeTag(p.node) === tag);
}

/**
 * Asks the owner's directory. A node lost is a session gone (404); a node that does not
 * answer, or whose directory ended before answering (the next one is already there), is a
 * session that cannot be reached now (503), and the client tries again.
 */
async function askOwner(dir: Pid, request: readonly unknown[]): Promise<unknown> {
  try {
    return await call(dir, request, OWNER_TIMEOUT_MS);
  } catch (err) {
    if (!(err instanceof CallError)) throw err;
    if (err.code === "ERR_CALL_EXIT" && err.reason === "noconnection") throw new Refused(404, "no such session");
    throw new Refused(503, err.code === "ERR_CALL_TIMEOUT" ? "the session's node does not answer" : "the session's node is restarting its directory");
  }
}

/**
 * A transport of a session owned by another node: it carries the transport here, attaches
 * through the owner's directory (which checks the whole id and answers with the session's
 * pid), then relays packets to and from that pid. It monitors the session: the owner's death
 * closes its client.
 */
class RemoteRelay {
  pid: Pid | null = null;
  /** Set once a poll is answered, as a local relay's. */
  gapMs = 0;
  /** What the owner said of the session when this transport attached. */
  private owner: Owned | null = null;
  private watch: Ref | null = null;

  constructor(
    readonly kind: BulletTransport,
    readonly sid: string,
    readonly dir: Pid,
    readonly ack: number,
    readonly origin: string | undefined,
  ) {}

  get heartbeatMs(): number {
    return this.owner?.heartbeatMs ?? 0;
  }

  /** Attaches this transport at the owner, from the relay's process (pid): the owner's refusal, or undefined. */
  async attach(pid: Pid, hello: boolean): Promise<Refusal | undefined> {
    this.pid = pid;
    const r = await askOwner(this.dir, [REMOTE, "attach", this.sid, this.origin, pid, this.kind, this.ack, hello]);
    if (isRefusal(r)) return r;
    this.owner = r as Owned;
    // The relay watches the session as the session watches it: a DOWN, even for a pid already gone, closes the client.
    if (pid.proc !== null) this.watch = monitorFrom(pid.proc, this.owner.pid);
    return undefined;
  }

  /** A WebSocket frame of the client, for the owner; a heartbeat is answered here. */
  fromClient(frame: InFrame): CallResult<RemoteRelay> {
    const to = this.owner!.pid;
    if (frame.type === "text" && frame.data === '["h"]') {
      send(to, [REMOTE, "heard", this.sid, this.pid]);
      return reply(text('["h"]'), this);
    }
    if (frame.type === "text" || frame.type === "binary") send(to, [REMOTE, "ws", this.sid, this.pid, frame.type, frame.data]);
    else send(to, [REMOTE, "heard", this.sid, this.pid]);
    return ok(this);
  }

  /**
   * A message from the owner: packets for the client, null when the transport is to end, a
   * string for a violation; undefined for anything else. The session's DOWN is its last packet.
   */
  fromOwner(msg: unknown): readonly Packet[] | null | string | undefined {
    if (Array.isArray(msg) && msg[0] === REMOTE) {
      if (msg[1] === "push") return msg[2] as Packet[];
      if (msg[1] === "end") return null;
      if (msg[1] === "violation") return String(msg[2]);
      return undefined;
    }
    if (isDown(msg) && msg.ref === this.watch) return [["c", 1001, msg.reason === "noconnection" ? "node down" : "session lost"]];
    return undefined;
  }

  /** The relay's end: the owner detaches it at once (a killed relay is its monitor's DOWN there). */
  ended(): void {
    if (this.owner !== null) send(this.owner.pid, [REMOTE, "detach", this.sid, this.pid, this.gapMs]);
  }
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

  async init(req: Req, opts: Opts): Promise<Upgrade<Relay | RemoteRelay> | Loop<Relay | RemoteRelay> | HttpOk<unknown>> {
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

  private async route(req: Req, opts: Opts, me: Pid, logger: Logger, exchange: Exchange | undefined): Promise<Upgrade<Relay | RemoteRelay> | Loop<Relay | RemoteRelay> | HttpOk<unknown>> {
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
      const dir = this.sessions.has(q.sid!) ? undefined : ownerDirectory(q.sid!);
      if (dir !== undefined) return this.remote(req, q, kind, me, dir);
      session = this.known(req, q.sid!);
    }
    const relay = new Relay(kind, session, q.ack ?? 0);
    // Attached in the connection's websocketInit: an upgrade refused after init leaves nothing attached.
    if (kind === "websocket") {
      session.checkAck(relay.ack);
      return upgrade(req, relay, this.relayOptions(session.opts, this.limits.heartbeatMs));
    }
    if (!relay.attach(me, kind === "eventsource" || fresh || q.hello)) throw new Refused(404, "no such session");
    if (kind === "eventsource") req.streamReply(200, SSE_HEADERS);
    return loop(req, relay);
  }

  /** A transport of a session another node owns: relayed from here (docs/sessions.md, Clusters). */
  private async remote(req: Req, q: Query, kind: BulletTransport, me: Pid, dir: Pid): Promise<Upgrade<Relay | RemoteRelay> | Loop<Relay | RemoteRelay>> {
    const origin = req.header("origin");
    if (kind === "websocket") {
      const open = await askOwner(dir, [REMOTE, "open", q.sid, origin]);
      if (isRefusal(open)) throw new Refused(open.status, open.error);
      const o = (open as Owned).opts;
      return upgrade(req, new RemoteRelay(kind, q.sid!, dir, q.ack ?? 0, origin), this.relayOptions({ ...o, allowedOrigins: o.allowedOrigins === undefined ? undefined : new Set(o.allowedOrigins) }, (open as Owned).heartbeatMs));
    }
    const relay = new RemoteRelay(kind, q.sid!, dir, q.ack ?? 0, origin);
    const refused = await relay.attach(me, kind === "eventsource" || q.hello);
    if (refused !== undefined) throw new Refused(refused.status, refused.error);
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
  private relayOptions(o: Pick<ResolvedWebSocketOptions, "maxFrameSize" | "compress" | "validateUtf8" | "maxBufferedAmount" | "allowedOrigins">, heartbeatMs: number): WebSocketOptions {
    return {
      idleTimeout: heartbeatMs * 2 + SLACK_MS,
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
    const dir = this.sessions.has(q.sid) ? undefined : ownerDirectory(q.sid);
    if (dir !== undefined) return remotePost(req, q.sid, dir);
    const session = this.known(req, q.sid);
    const packets = await postedPackets(req, session.opts.maxFrameSize);
    for (const p of packets) clientPacket(session, p);
    return answer(req, 200, [["a", session.received]]);
  }

  /* ---------------------------------------------------------- a WebSocket transport's callbacks */

  websocketInit(relay: Relay | RemoteRelay): CallResult<Relay | RemoteRelay> {
    // The listener's stop comes as an EXIT after what the session still had to say, which then goes first (see websocketInfo).
    trapExit(true);
    // A session gone meanwhile, or an owner that does not answer: the client resumes, and learns which it was.
    if (relay instanceof RemoteRelay) return relay.attach(self(), true).then((refused) => (refused === undefined ? ok(relay) : commands([close(1000)], relay)), () => commands([close(1000)], relay));
    relay.nextIn = relay.session.received + 1;
    return relay.attach(self(), true) ? ok(relay) : commands([close(1000)], relay);
  }

  websocketHandle(frame: InFrame, relay: Relay | RemoteRelay): CallResult<Relay | RemoteRelay> {
    if (relay instanceof RemoteRelay) return relay.fromClient(frame);
    // Any frame is the client heard, a pong to the heartbeat's ping included.
    relay.session.heard();
    try {
      if ((frame.type === "text" || frame.type === "binary") && wsData(relay.session, relay, frame.type, frame.data as string | Uint8Array) === "h") return reply(text('["h"]'), relay);
    } catch (err) {
      if (err instanceof ProtocolViolation) return commands([close(1002, err.message.slice(0, 120))], relay);
      throw err;
    }
    return ok(relay);
  }

  websocketInfo(msg: unknown, relay: Relay | RemoteRelay): CallResult<Relay | RemoteRelay> {
    if (msg instanceof Push) return reply(msg.packets.map(wsFrame), relay);
    if (msg === END) return commands([close(1000)], relay);
    if (relay instanceof RemoteRelay) {
      if (isExit(msg)) return msg.reason === "normal" ? ok(relay) : stop(relay);
      const packets = relay.fromOwner(msg);
      if (packets === undefined) return ok(relay);
      if (packets === null) return commands([close(1000)], relay);
      if (typeof packets === "string") return commands([close(1002, packets.slice(0, 120))], relay);
      // The owner's death is the last packet a relay gets.
      return packets.at(-1)?.[0] === "c" ? commands([...packets.map(wsFrame), close(1000)], relay) : reply(packets.map(wsFrame), relay);
    }
    if (isExit(msg)) {
      // The listener stops: the session ends ("shutdown") and this relay gets its close packet, then END.
      if (msg.reason === "shutdown") relay.session.shutdown();
      else if (msg.reason !== "normal") return stop(relay);
    }
    return ok(relay);
  }

  /* ---------------------------------------------------------- an event stream's or a poll's callbacks */

  async info(msg: unknown, req: Req, relay: Relay | RemoteRelay): Promise<Result<Relay | RemoteRelay>> {
    const packets = msg instanceof Push ? msg.packets : msg === END ? null : relay instanceof RemoteRelay ? relay.fromOwner(msg) : undefined;
    if (packets === undefined || typeof packets === "string") return ok(relay);
    if (packets === null) {
      if (relay.kind === "longpoll") answer(req, 200, []);
      return stop(relay);
    }
    if (relay.kind === "eventsource") {
      await req.streamBody(packets.map(sseEvent).join(""));
      // The owner's death is the last packet a relay gets.
      return relay instanceof RemoteRelay && packets.at(-1)?.[0] === "c" ? stop(relay) : ok(relay);
    }
    answer(req, 200, packets.map(jsonPacket));
    // A poll answered is not a client gone: its next poll, or its finding out that the answer was lost (no answer within heartbeatMs + 1 s), comes within heartbeatMs + 5 s.
    relay.gapMs = relay.heartbeatMs + SLACK_MS;
    return stop(relay);
  }

  /**
   * Any transport's end: the session waits for its client, unless another transport took
   * over; a transport shut down with its listener takes its session with it.
   */
  terminate(reason: TerminateReason, _req: PartialReq, state: unknown): void {
    if (state instanceof RemoteRelay) return state.ended();
    if (!(state instanceof Relay)) return;
    if (reason === "shutdown") state.session.shutdown();
    else state.session.detachTransport(state);
  }
}

function answer(req: Req, status: number, body: unknown): HttpOk<null> {
  req.reply(status, JSON_HEADERS, JSON.stringify(body));
  return { type: "ok", req, state: null };
}

/** A POST's body: a JSON list of packets, of at most twice maxFrameSize and 1 KB. */
async function postedPackets(req: Req, maxFrameSize: number): Promise<unknown[]> {
  const body = await req.readBody({ length: maxFrameSize * 2 + 1024 });
  let packets: unknown;
  try {
    packets = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("utf8"));
  } catch {
    throw new Refused(400, "the body must be a JSON list of packets");
  }
  if (!Array.isArray(packets)) throw new Refused(400, "the body must be a JSON list of packets");
  return packets;
}

/** A POST for a session another node owns: its packets go to the owner, which answers how far the session got. */
async function remotePost(req: Req, sid: string, dir: Pid): Promise<HttpOk<unknown>> {
  const origin = req.header("origin");
  const open = await askOwner(dir, [REMOTE, "open", sid, origin]);
  if (isRefusal(open)) throw new Refused(open.status, open.error);
  const packets = await postedPackets(req, (open as Owned).opts.maxFrameSize);
  const r = await askOwner(dir, [REMOTE, "post", sid, origin, packets]);
  if (isRefusal(r)) throw new Refused(r.status, r.error);
  return answer(req, 200, [["a", (r as { ack: number }).ack]]);
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
