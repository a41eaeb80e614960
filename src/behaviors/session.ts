// Bullet's session, made the handler's own process: the port a session's connection process talks to, while transports come and go under it.
import { createHash, randomBytes } from "node:crypto";
import { nodeName } from "../runtime/node.js";
import type { Pid, Ref } from "../runtime/pid.js";
import { send } from "../runtime/process.js";
import { demonitorFrom, isDown, monitorFrom } from "../runtime/signals.js";
import { stats } from "../runtime/stats.js";
import { closeCodeFor, remoteClose } from "./close.js";
import { ReceivedFrame, type Frame } from "./frames.js";
import { PortClosed, type ResolvedWebSocketOptions, type TerminateReason, type WebSocketPort } from "./websocket.js";

/** A packet of the session protocol (docs/sessions.md): a JSON array whose first element names it. */
export type Packet =
  | readonly ["hello", sid: string, ack: number, heartbeatMs: number, resumeWindowMs: number]
  | readonly ["t", seq: number, text: string]
  | readonly ["b", seq: number, data: Uint8Array]
  | readonly ["a", n: number]
  | readonly ["h"]
  | readonly ["c", code: number, reason: string];

/** Each session's process to its session, for the observer's detail of a process (weak: nothing to clean up). */
const byProcess = new WeakMap<object, SessionPort>();

/** The session whose process p is, if any. */
export function sessionOfProcess(p: object): SessionPort | undefined {
  return byProcess.get(p);
}

/** A session as the observer shows it (SessionPort.describe). */
export interface SessionInfo {
  readonly pid: Pid | null;
  /** The transport attached now; null while the client is away. */
  readonly transport: Transport["kind"] | null;
  /** While away: how long since the client was last attached (a long-poll's gap included), and what is left of the resume window. */
  readonly awayMs: number | null;
  readonly windowLeftMs: number | null;
  /** Frames sent and not yet acknowledged, which a resume would replay. */
  readonly outboxFrames: number;
  readonly outboxBytes: number;
  /** The last sequence numbers: sent to the client, acknowledged by it, received from it. */
  readonly sent: number;
  readonly acked: number;
  readonly received: number;
  readonly resumeWindowMs: number;
}

/** Where a session's packets go while a client is connected: a WebSocket, an event stream, a held poll. */
export interface Transport {
  /** Which of bullet's transports this is (a relay on another node says which it carries). */
  readonly kind: "websocket" | "eventsource" | "longpoll";
  /** The transport's process, which the session monitors: its death, however it comes, is the transport gone. */
  readonly pid: Pid | null;
  /** How long after this transport ends the client still counts as connected: a long-poll's turn between two polls, after an answer. */
  readonly gapMs: number;
  /** The client's frames come on this transport itself (a WebSocket), so their acks go back on it; a POST's answer acks its own. */
  readonly acksInline: boolean;
  /** An event stream: its client listens and says nothing, so while it is open the client counts as heard. */
  readonly listens: boolean;
  /** Packets for the client, in order; the transport writes them as it can. */
  push(packets: readonly Packet[]): void;
  /** This transport is done (the session ended, or another transport took over): end it after what was pushed. */
  end(): void;
}

/** A client broke the protocol (a gap in its sequence, an ack of what it never got): its transport ends, the session stays. */
export class ProtocolViolation extends Error {}

/** What the route fixes for all its sessions. */
export interface SessionLimits {
  readonly resumeWindowMs: number;
  readonly outboxLimit: number;
  readonly heartbeatMs: number;
}

/** A data frame for the client: kept in the outbox as the very packet every transport sends, until acknowledged. */
type DataPacket = Extract<Packet, readonly ["t" | "b", ...unknown[]]>;

function bytesOf(p: DataPacket): number {
  return p[0] === "t" ? p[2].length : p[2].byteLength;
}

/** What cannot be encoded as UTF-8: with the u flag, a surrogate matches only when it is unpaired. */
const LONE_SURROGATE = /\p{Surrogate}/u;

const ACK_EVERY = 64;
const ACK_AFTER_MS = 1000;

/** How early by performance.now() a Node timer may fire. */
const TIMER_SLACK_MS = 2;

const BADSIZE: TerminateReason = Object.freeze({ error: "badsize" });
const BADENCODING: TerminateReason = Object.freeze({ error: "badencoding" });
const BACKPRESSURE: TerminateReason = Object.freeze({ error: "backpressure" });

/** The sessions of one route: an id presented to another route is unknown there. */
export type SessionTable = Map<string, SessionPort>;

/** The first element of every message between a relay and the node that owns its session (bullet.ts). */
export const REMOTE = "corral.bullet";

/** What a session's process does with a relay's message from another node: bullet.ts's, which knows the protocol. */
let onRemote: (session: SessionPort, msg: readonly unknown[]) => void = () => {};

/** @internal */
export function setRemoteHandler(handler: (session: SessionPort, msg: readonly unknown[]) => void): void {
  onRemote = handler;
}

/** Every session of this node, by id: what another node's relay asks for (bullet.ts's directory). */
export const nodeSessions: SessionTable = new Map();

const tags = new Map<string, string>();

/** A node's tag in the ids of its sessions: a digest, so an id names its owner without telling clients the node's name. */
export function nodeTag(node: string): string {
  let tag = tags.get(node);
  if (tag === undefined) tags.set(node, (tag = createHash("sha256").update(node).digest("base64url").slice(0, 11)));
  return tag;
}

/** The tag of the node a session id names as its owner ("" for an id without one). */
export function ownerTag(sid: string): string {
  const dot = sid.indexOf(".");
  return dot < 0 ? "" : sid.slice(0, dot);
}

/**
 * The session's side of the port: a WebSocketPort for its connection process (which runs the
 * handler exactly as over a plain WebSocket), and attach/receive/ack for its transports. It
 * numbers the frames each way, keeps what the client has not acknowledged, and waits
 * resumeWindowMs for a client that went away.
 */
export class SessionPort implements WebSocketPort {
  /** Its owner node's tag, then 32 random bytes: the session's only credential, so it must not be guessable. */
  readonly sid = `${nodeTag(nodeName())}.${randomBytes(32).toString("base64url")}`;
  private pid: Pid | null = null;
  private transport: Transport | null = null;
  /** The session process's monitor on its transport's process. */
  private relayMon: Ref | null = null;
  /** Frames sent and not yet acknowledged, oldest first, from `head`. */
  private outbox: DataPacket[] = [];
  private head = 0;
  private outboxBytes = 0;
  /** The last sequence number given to a frame for the client, and the last it acknowledged. */
  private outSeq = 0;
  private acked = 0;
  /** The last client frame delivered to the handler. */
  private inSeq = 0;
  /** Packets pushed in this turn, written to the transport in one go when it ends. */
  private pending: Packet[] | null = null;
  /** Client frames that came before startReading, or while the handler asked for {active: false}. */
  private held: ReceivedFrame[] = [];
  private reading = false;
  private paused = false;
  private ended = false;
  private maxFrameSize: number;
  private idleTimeout: number;
  private lastHeard = performance.now();
  private lastPushed = performance.now();
  private tick: NodeJS.Timeout | null = null;
  /** Client frames not yet acknowledged on a WebSocket, and the timer that will. */
  private unacked = 0;
  private ackTimer: NodeJS.Timeout | null = null;
  private window: NodeJS.Timeout | null = null;
  /** A transport attached before: the next one after an absence resumes the session. */
  private wasAttached = false;
  /** When the resume window of an absent client ends. */
  private awayUntil = 0;
  /** Takes the session off its listener's stop (it ended first). */
  cancelShutdown: (() => void) | undefined = undefined;
  /** The handler's close while no transport was attached, kept (with the outbox) for the client's next request until awayUntil. */
  private lastWords: Packet | null = null;

  constructor(
    private readonly table: SessionTable,
    readonly opts: ResolvedWebSocketOptions,
    readonly limits: SessionLimits,
  ) {
    this.maxFrameSize = opts.maxFrameSize;
    this.idleTimeout = opts.idleTimeout;
    table.set(this.sid, this);
    nodeSessions.set(this.sid, this);
    stats.sessionsOpened++;
    stats.sessionsOpen++;
    // Until its first transport attaches, a session is as good as away.
    this.awaitClient(0);
  }

  get isSession(): boolean {
    return true;
  }

  /* ------------------------------------------------------------ WebSocketPort: the connection's side */

  attach(pid: Pid): void {
    this.pid = pid;
    if (pid.proc !== null) byProcess.set(pid.proc, this);
  }

  /** The session's process, for a relay on another node. */
  get process(): Pid | null {
    return this.pid;
  }

  /** What the observer shows of a session: never its id, which is the client's secret. */
  describe(now: number): SessionInfo {
    const t = this.transport;
    return {
      pid: this.pid,
      transport: t === null ? null : t.kind,
      awayMs: t === null ? Math.max(0, now - (this.awayUntil - this.limits.resumeWindowMs)) : null,
      windowLeftMs: t === null ? Math.max(0, this.awayUntil - now) : null,
      outboxFrames: this.outbox.length - this.head,
      outboxBytes: this.outboxBytes,
      sent: this.outSeq,
      acked: this.acked,
      received: this.inSeq,
      resumeWindowMs: this.limits.resumeWindowMs,
    };
  }

  /** The transport the session rides on now. */
  get current(): Transport | null {
    return this.transport;
  }

  /**
   * The session's own messages in its process's mailbox: a relay's from another node, and the
   * DOWN of its transport's process, which is that transport gone (even killed, when it ran no terminate).
   */
  intercept(msg: unknown): boolean {
    if (Array.isArray(msg) && msg[0] === REMOTE) {
      onRemote(this, msg);
      return true;
    }
    if (this.relayMon === null || !isDown(msg) || msg.ref !== this.relayMon) return false;
    this.relayMon = null;
    const t = this.transport;
    if (t !== null) this.detachTransport(t);
    return true;
  }

  startReading(): void {
    this.reading = true;
    this.release();
  }

  sendFrame(frame: Exclude<Frame, { type: "close" }>): void {
    // Pings and pongs belong to each transport; a session has its own heartbeat.
    if (this.ended || (frame.type !== "text" && frame.type !== "binary")) return;
    const seq = ++this.outSeq;
    const packet: DataPacket = frame.type === "text" ? ["t", seq, frame.data] : ["b", seq, frame.data as Uint8Array];
    this.outbox.push(packet);
    this.outboxBytes += bytesOf(packet);
    if (this.outSeq - this.acked > this.limits.outboxLimit) {
      this.fail(BACKPRESSURE);
      return;
    }
    if (this.transport !== null) this.queue(packet);
  }

  cork(): void {
    // Every turn's packets already leave together (queue).
  }

  flush(): void {
    const packets = this.pending;
    if (packets === null) return;
    this.pending = null;
    this.lastPushed = performance.now();
    this.transport?.push(packets);
  }

  setDeflate(): void {
    // Compression is each WebSocket transport's own (the upgrade's compress option).
  }

  sendClose(code: number | undefined, reason: string | undefined): void {
    if (this.ended) return;
    const close: Packet = ["c", code ?? 1000, reason ?? ""];
    if (this.transport !== null) this.queue(close);
    else this.lastWords = close;
    this.finish();
  }

  destroy(): void {
    if (!this.ended) this.finish();
  }

  pauseReading(): void {
    this.paused = true;
  }

  resumeReading(): void {
    this.paused = false;
    this.release();
  }

  taken(): void {
    // Client frames arrive in bounded batches (a POST body, one WebSocket frame): no inbound throttle to lift.
  }

  setMaxFrameSize(bytes: number): void {
    this.maxFrameSize = bytes;
  }

  setIdleTimeout(ms: number): void {
    this.idleTimeout = ms;
  }

  /** What waits for the client's acknowledgement: the bound maxBufferedAmount puts on a session. */
  get bufferedAmount(): number {
    return this.outboxBytes;
  }

  /* ------------------------------------------------------------ the transports' side */

  /**
   * A transport connects with the client's ack: the previous one ends, the resume window
   * stops, and the client gets hello (unless it is the next poll of a long-poll, which has no
   * use for it) and every frame after its ack. False if the session is over.
   */
  attachTransport(t: Transport, ack: number, hello: boolean): boolean {
    if (this.ended) return this.tellEnd(t, ack, hello);
    this.ackFromClient(ack);
    const old = this.transport;
    this.transport = t;
    this.watch(t);
    if (old !== null) old.end();
    if (this.window !== null) {
      clearTimeout(this.window);
      this.window = null;
      stats.sessionsAway--;
      // A long-poll's next poll (no hello) is not a resumption.
      if (hello && this.wasAttached) stats.sessionsResumed++;
    }
    this.wasAttached = true;
    this.heard();
    const packets: Packet[] = hello ? [["hello", this.sid, this.inSeq, this.limits.heartbeatMs, this.limits.resumeWindowMs]] : [];
    for (let i = this.head; i < this.outbox.length; i++) packets.push(this.outbox[i]!);
    if (this.pending !== null) this.pending = null;
    this.lastPushed = performance.now();
    if (packets.length > 0) t.push(packets);
    this.armTick();
    return true;
  }

  /** A client back after its session ended while it was away: what it lacks, the close, and the session is forgotten. */
  private tellEnd(t: Transport, ack: number, hello: boolean): boolean {
    const close = this.lastWords;
    if (close === null) return false;
    this.ackFromClient(ack);
    const packets: Packet[] = hello ? [["hello", this.sid, this.inSeq, this.limits.heartbeatMs, this.limits.resumeWindowMs]] : [];
    for (let i = this.head; i < this.outbox.length; i++) packets.push(this.outbox[i]!);
    packets.push(close);
    t.push(packets);
    t.end();
    this.forget();
    return true;
  }

  /** Checks a client's ack before its transport opens: one of frames never sent is a violation. */
  checkAck(n: number): void {
    if (n > this.outSeq) throw new ProtocolViolation(`ack ${n} of frames never sent (the last is ${this.outSeq})`);
  }

  /** A transport went away: unless another took over, the session waits resumeWindowMs for its client. */
  detachTransport(t: Transport): void {
    if (this.transport !== t) return;
    this.transport = null;
    this.unwatch();
    this.pending = null;
    if (this.ended) return;
    if (this.tick !== null) {
      clearTimeout(this.tick);
      this.tick = null;
    }
    this.awaitClient(t.gapMs);
  }

  /** The session process monitors its transport's process, as a gen_server its client. */
  private watch(t: Transport): void {
    this.unwatch();
    const me = this.pid?.proc;
    if (me !== null && me !== undefined && t.pid !== null) this.relayMon = monitorFrom(me, t.pid);
  }

  private unwatch(): void {
    const ref = this.relayMon;
    if (ref === null) return;
    this.relayMon = null;
    const me = this.pid?.proc;
    // A DOWN already in the mailbox (the transport died just now) must not reach the handler.
    if (me !== null && me !== undefined && !demonitorFrom(me, ref)) demonitorFrom(me, ref, { flush: true });
  }

  private awaitClient(gapMs: number): void {
    stats.sessionsAway++;
    this.awayUntil = performance.now() + gapMs + this.limits.resumeWindowMs;
    this.window = setTimeout(() => this.fail("timeout"), gapMs + this.limits.resumeWindowMs).unref();
  }

  /** A frame from the client, numbered seq: a duplicate is dropped, a gap is a violation. */
  receive(seq: number, frame: ReceivedFrame<"text" | "binary">): void {
    if (this.ended) return;
    this.heard();
    if (seq <= this.inSeq) return;
    if (seq !== this.inSeq + 1) throw new ProtocolViolation(`frame ${seq} after ${this.inSeq}: frames must come in order`);
    const data = frame.data;
    const size = typeof data === "string" ? Buffer.byteLength(data) : (data as Uint8Array).byteLength;
    if (size > this.maxFrameSize) {
      this.failWith(BADSIZE, 1009, "message too big");
      return;
    }
    if (typeof data === "string" && this.opts.validateUtf8 && LONE_SURROGATE.test(data)) {
      this.failWith(BADENCODING, 1007, "invalid UTF-8");
      return;
    }
    this.inSeq = seq;
    this.owedAck();
    if (this.reading && !this.paused && this.held.length === 0) this.deliver(frame);
    else this.held.push(frame);
  }

  /** The client has the frames up to n: they leave the outbox. */
  ackFromClient(n: number): void {
    this.checkAck(n);
    if (n <= this.acked) return;
    this.acked = n;
    const box = this.outbox;
    while (this.head < box.length && box[this.head]![1] <= n) this.outboxBytes -= bytesOf(box[this.head++]!);
    if (this.head > 64 && this.head * 2 > box.length) {
      this.outbox = box.slice(this.head);
      this.head = 0;
    }
  }

  /** The client's last delivered frame, for a POST's answer. */
  get received(): number {
    return this.inSeq;
  }

  /** The client said something (a frame, an ack, a heartbeat, a poll). */
  heard(): void {
    this.lastHeard = performance.now();
  }

  /** The listener under the session's transport is stopping: the session ends with it ("shutdown", 1001). */
  shutdown(): void {
    this.fail("shutdown");
  }

  /** The client closed the session on purpose. */
  clientClose(code: number, reason: string): void {
    if (this.ended) return;
    this.closeWith(remoteClose(code, reason));
  }

  /* ------------------------------------------------------------ inside */

  /** Acks on a WebSocket: after 64 frames, or a second after the first one not yet acknowledged. */
  private owedAck(): void {
    if (this.transport === null || !this.transport.acksInline) return;
    if (++this.unacked >= ACK_EVERY) this.sendAck();
    else this.ackTimer ??= setTimeout(() => this.sendAck(), ACK_AFTER_MS).unref();
  }

  private sendAck(): void {
    if (this.ackTimer !== null) clearTimeout(this.ackTimer);
    this.ackTimer = null;
    this.unacked = 0;
    if (!this.ended && this.transport !== null) this.queue(["a", this.inSeq]);
  }

  private queue(packet: Packet): void {
    if (this.pending === null) {
      this.pending = [packet];
      queueMicrotask(() => this.flush());
    } else {
      this.pending.push(packet);
    }
  }

  private deliver(frame: ReceivedFrame): void {
    if (this.pid !== null) send(this.pid, frame);
  }

  private release(): void {
    if (!this.reading || this.paused) return;
    const held = this.held;
    this.held = [];
    for (const f of held) this.deliver(f);
  }

  /** One timer per connected session: a heartbeat when nothing else was sent, and the idle timeout. */
  /** Armed for the nearer of the next heartbeat and the idle timeout, each counted from when it was last reset. */
  private armTick(): void {
    if (this.tick !== null) clearTimeout(this.tick);
    const now = performance.now();
    const next = Math.min(this.lastPushed + this.limits.heartbeatMs, this.lastHeard + this.idleTimeout);
    this.tick = setTimeout(() => this.onTick(), Math.max(1, Math.ceil(next - now))).unref();
  }

  private onTick(): void {
    this.tick = null;
    if (this.ended || this.transport === null) return;
    if (this.transport.listens) this.heard();
    // Node's timers count from the event loop's cached clock and may fire a hair early by performance.now().
    const now = performance.now() + TIMER_SLACK_MS;
    if (now - this.lastHeard >= this.idleTimeout) {
      this.fail("timeout");
      return;
    }
    if (now - this.lastPushed >= this.limits.heartbeatMs) {
      this.queue(["h"]);
      this.flush();
    }
    this.armTick();
  }

  /** Ends the session for reason, telling a connected client with the close code Cowboy would send. */
  private fail(reason: TerminateReason): void {
    if (this.transport !== null) this.queue(["c", closeCodeFor(reason) ?? 1000, ""]);
    this.closeWith(reason);
  }

  /** A frame the session cannot take: the client is told with code, then the session ends with reason. */
  private failWith(reason: TerminateReason, code: number, text: string): void {
    if (this.transport !== null) this.queue(["c", code, text]);
    this.closeWith(reason);
  }

  /** The connection process gets reason in order, after the frames before it. */
  private closeWith(reason: TerminateReason): void {
    if (this.ended) return;
    this.finish();
    if (this.pid !== null) send(this.pid, new PortClosed(reason));
  }

  /** The session is over: its id is forgotten, its timers stop, its transport ends after what it was given. */
  private finish(): void {
    this.ended = true;
    this.cancelShutdown?.();
    this.cancelShutdown = undefined;
    // Away, the client cannot be told now: the close waits for it (tellEnd), as long as it could come back.
    const keep = this.lastWords !== null && this.window !== null;
    if (!keep) {
      this.table.delete(this.sid);
      nodeSessions.delete(this.sid);
    }
    stats.sessionsOpen--;
    if (this.tick !== null) clearTimeout(this.tick);
    if (this.window !== null) {
      clearTimeout(this.window);
      stats.sessionsAway--;
    }
    if (this.ackTimer !== null) clearTimeout(this.ackTimer);
    this.tick = this.window = this.ackTimer = null;
    this.unwatch();
    this.flush();
    const t = this.transport;
    this.transport = null;
    t?.end();
    this.held = [];
    if (keep) this.window = setTimeout(() => this.forget(), Math.max(0, this.awayUntil - performance.now())).unref();
    else this.forget();
  }

  /** The ended session's id and outbox go. */
  private forget(): void {
    if (this.window !== null) clearTimeout(this.window);
    this.window = null;
    this.lastWords = null;
    this.table.delete(this.sid);
    nodeSessions.delete(this.sid);
    this.outbox = [];
    this.head = 0;
    this.outboxBytes = 0;
  }
}
