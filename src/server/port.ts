import type { IncomingMessage } from "node:http";
import type { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import { Writable, type Duplex } from "node:stream";
import { WebSocket, WebSocketServer, type ServerOptions } from "ws";
import { inboundCost, ReceivedFrame, type Frame } from "../actors/frames.js";
import { PortClosed, type ResolvedWebSocketOptions, type TerminateReason, type WebSocketPort } from "../actors/websocket.js";
import type { Pid } from "../runtime/pid.js";
import { send } from "../runtime/process.js";
import { BINARY, byteFrame, payloadApart, PING, PONG, textFrame } from "./frame.js";
import { forgetInflate, gateDeflate, releaseInflate, type Deflate } from "./deflate.js";
import type { HttpReq } from "./req.js";
import { FrameScan } from "./utf8.js";

const TEXT_PLAIN = { binary: false, compress: false, fin: true };
const TEXT_DEFLATE = { binary: false, compress: true, fin: true };
const BINARY_PLAIN = { binary: true, compress: false, fin: true };
const BINARY_DEFLATE = { binary: true, compress: true, fin: true };

/** The terminate reason for an error ws's receiver raised (it has already sent the close frame). */
function errorReason(err: Error & { code?: string }): TerminateReason {
  switch (err.code) {
    case "WS_ERR_INVALID_UTF8":
      return { error: "badencoding" };
    case "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH":
    case "WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH":
    case "WS_ERR_TOO_MANY_BUFFERED_PARTS":
      return { error: "badsize" };
    default:
      return { error: "badframe" };
  }
}

// Port flags: one small integer instead of a field per boolean keeps a port small.
const THROTTLED = 1;
/** The handler's {active: false}. */
const USER_PAUSED = 2;
const RESUMING = 4;
const CORKED = 8;
const DEFLATING = 16;
/** ws's receiver listeners for a close frame and a protocol error were taken over (takeOver). */
const HOLDS_CONCLUDE = 32;
const HOLDS_ERROR = 64;
/** The socket closed: the port left its idle group for good. */
const GONE = 128;
/** attach() ran: `target` is the connection's pid. */
const ATTACHED = 256;
/** The port delivered (or holds) its PortClosed. */
const CLOSED = 512;
/** Joined its idle group since the last sweep, which therefore does not count. */
const FRESH = 1024;
/** startReading() ran: reading goes on whenever neither the handler nor the throttle stops it. */
const STARTED = 2048;
/** Data frames go out compressed (the handler's deflate toggle). */
const COMPRESS = 4096;
const CLOSE_SENT = 8192;
/** The UTF-8 scan is inside a frame or a message: its state is in partialScans. */
const PARTIAL_SCAN = 16384;
/** The scan found invalid UTF-8: nothing more goes to ws's receiver. */
const BAD_TEXT = 32768;
/** The idle sweeps since a byte was last received count in the bits from here up. */
const SWEEP_SHIFT = 16;
const SWEEP = 1 << SWEEP_SHIFT;
/** The most sweeps the flags can count: a timeout needing more (thousands of years) never comes. */
const MAX_SWEEPS = 2 ** (31 - SWEEP_SHIFT) - 1;

/** One frozen empty extensions object for every connection without one (ws makes one per connection). */
const NO_EXTENSIONS = Object.freeze({});

/**
 * A WebSocket connection's socket (DESIGN.md: the port): ws's WebSocket itself, extended,
 * so a connection costs no object of its own for the port. Events reach the port through
 * an overridden emit: no listener is registered, so ws's listener table is never made.
 */
export class WsPort extends WebSocket implements WebSocketPort {
  /** The connection's pid once attached; before, what happened already (only an early close can). */
  private target: Pid | PortClosed | null = null;
  private portFlags = 0;
  /** The listener's ports with this port's idle timeout: the port is in it while its socket is open. */
  private idleGroup: IdleGroup | null = null;
  /** @internal The group's intrusive list. */
  idlePrev: WsPort | null = null;
  /** @internal */
  idleNext: WsPort | null = null;
  /** socket.bytesRead (as an int32) at the last idle sweep. */
  private idleRead = 0;
  /** What the received frames waiting in the mailbox weigh (inboundCost), and the most they may before reading stops. */
  private queuedBytes = 0;
  private maxQueuedBytes = Infinity;
  declare readonly _socket: Socket;

  constructor(...args: unknown[]) {
    super(...(args as [null]));
    // EventEmitter creates its listener table again on the first on(); the port needs none.
    (this as unknown as { _events: unknown })._events = undefined;
    // ws replaces it (never writes into it) when an extension is negotiated.
    (this as unknown as { _extensions: object })._extensions = NO_EXTENSIONS;
  }

  /** @internal The handshake is done: start as a port, not reading yet, in the group of its idle timeout. */
  open(group: IdleGroup, opts: ResolvedWebSocketOptions): void {
    if (opts.compress) this.portFlags |= COMPRESS;
    this.maxQueuedBytes = opts.maxQueuedBytes;
    if (this.extensions.includes("permessage-deflate")) {
      this.portFlags |= DEFLATING;
      gateDeflate(this, (this as unknown as { _extensions: Record<string, Deflate> })._extensions["permessage-deflate"]!);
    }
    // Nothing is read until the connection has run websocketInit (COWBOY.md, Callbacks).
    this.pause();
    const receiver = (this as unknown as { _receiver?: EventEmitter & { write: Writable["write"] } })._receiver;
    if (receiver !== undefined) {
      if (takeOver(receiver, "conclude", onConclude)) this.portFlags |= HOLDS_CONCLUDE;
      if (takeOver(receiver, "error", onReceiverError)) this.portFlags |= HOLDS_ERROR;
      // Text is checked as it arrives (utf8.ts), before ws's receiver sees the bytes.
      if (opts.validateUtf8) receiver.write = scanWrite as Writable["write"];
    }
    this.join(group);
  }

  override emit(event: string | symbol, a?: unknown, b?: unknown): boolean {
    if (this.idleGroup === null) return super.emit(event, a, b);
    switch (event) {
      case "message":
        this.deliverFrame(b === true ? "binary" : "text", a as Buffer);
        return true;
      case "ping":
      case "pong":
        this.deliverFrame(event, a as Buffer);
        return true;
      case "error":
        this.closed(errorReason(a as Error));
        return true;
      case "close":
        this.gone();
        return true;
      default:
        return super.emit(event, a, b);
    }
  }

  /** @internal The client's close frame or a bad frame: stop reading, hold ws's answer for the connection. */
  receiverEnded(receiver: EventEmitter, reason: TerminateReason, args: unknown[], error: boolean): void {
    this._socket.pause();
    const theirs = (this.portFlags & (error ? HOLDS_ERROR : HOLDS_CONCLUDE)) === 0 ? undefined : error ? wsOnError : wsOnConclude;
    this.closed(reason, theirs === undefined ? undefined : () => theirs.apply(receiver, args));
  }

  /**
   * @internal Scans a chunk before ws's receiver gets it: -1 to pass it on, -2 to drop it
   * (invalid text came before), or where the frame with invalid UTF-8 begins.
   */
  scanText(chunk: Buffer): number {
    const flags = this.portFlags;
    if ((flags & BAD_TEXT) !== 0) return -2;
    const partial = (flags & PARTIAL_SCAN) !== 0;
    const scan = partial ? partialScans.get(this)! : scratchScan;
    const cut = scan.scan(chunk);
    if (cut >= 0) {
      this.portFlags |= BAD_TEXT;
      if (!partial) scratchScan = new FrameScan();
    } else if (partial && scan.idle) {
      partialScans.delete(this);
      this.portFlags &= ~PARTIAL_SCAN;
    } else if (!partial && !scan.idle) {
      partialScans.set(this, scan);
      scratchScan = new FrameScan();
      this.portFlags |= PARTIAL_SCAN;
    }
    return cut;
  }

  /** The socket closed: the connection is over and leaves the listener's set. */
  private gone(): void {
    this.closed({ error: "closed" });
    if ((this.portFlags & DEFLATING) !== 0) forgetInflate(this);
    this.portFlags |= GONE;
    this.idleGroup?.delete(this);
  }

  private join(group: IdleGroup): void {
    this.idleGroup = group;
    group.add(this);
    this.idleRead = this._socket.bytesRead | 0;
    // The group's next sweep comes less than a period from now: it does not count.
    this.portFlags = (this.portFlags & (SWEEP - 1)) | FRESH;
  }

  /** @internal One idle sweep of the port's group: a byte received since the last one counts as activity. */
  sweep(limit: number): void {
    const read = this._socket.bytesRead | 0;
    const flags = this.portFlags;
    if (read !== this.idleRead || (flags & FRESH) !== 0) {
      this.idleRead = read;
      this.portFlags = flags & (SWEEP - 1) & ~FRESH;
    } else if ((flags & CLOSED) === 0) {
      this.portFlags = flags + SWEEP;
      if (this.portFlags >>> SWEEP_SHIFT >= limit) this.closed("timeout");
    }
  }

  setIdleTimeout(ms: number): void {
    const current = this.idleGroup;
    if (current === null || (this.portFlags & GONE) !== 0) return;
    // Left first: a group that empties is dropped, and the new one must be the owner's.
    current.delete(this);
    this.join(current.owner.group(ms));
  }

  private deliverFrame(type: "text" | "binary" | "ping" | "pong", data: Buffer): void {
    const frame = type === "text" ? new ReceivedFrame("text", data.toString()) : new ReceivedFrame(type, data);
    this.queuedBytes += inboundCost(frame);
    this.deliver(frame);
  }

  /** The connection's pid, once attached. */
  get pid(): Pid | null {
    return (this.portFlags & ATTACHED) !== 0 ? (this.target as Pid) : null;
  }

  private deliver(msg: ReceivedFrame | PortClosed): void {
    if ((this.portFlags & ATTACHED) === 0) return;
    const pid = this.target as Pid;
    send(pid, msg);
    // Inbound flow control: a mailbox past a high-water mark (frames or bytes) stops reading until the connection drains it.
    if ((this.portFlags & THROTTLED) === 0 && ((pid.proc?.queueLength ?? 0) > MAILBOX_HIGH_WATER || this.queuedBytes > this.maxQueuedBytes)) {
      this.portFlags |= THROTTLED;
      this.pause();
    }
  }

  /** @internal True while reading is stopped because the mailbox is too full. */
  get throttled(): boolean {
    return (this.portFlags & THROTTLED) !== 0;
  }

  taken(bytes: number, queueLength: number): void {
    const queued = (this.queuedBytes -= bytes);
    if ((this.portFlags & (THROTTLED | RESUMING)) !== THROTTLED || queueLength > MAILBOX_LOW_WATER || queued > this.maxQueuedBytes / 4) return;
    // Read again on a later turn of the event loop, so other sockets are read before this one floods again.
    this.portFlags |= RESUMING;
    setImmediate(resumeAfterThrottle, this);
  }

  /** @internal */
  afterThrottle(): void {
    this.portFlags &= ~(RESUMING | THROTTLED);
    // A message whose inflating waited for the mailbox to drain goes first.
    if ((this.portFlags & DEFLATING) !== 0) releaseInflate(this);
    if ((this.portFlags & (STARTED | USER_PAUSED)) === STARTED) this.resume();
  }

  /** The first reason wins: a close frame or a protocol error comes before the TCP close that follows it. */
  private closed(reason: TerminateReason, settle?: () => void): void {
    if ((this.portFlags & CLOSED) !== 0) return;
    this.portFlags |= CLOSED;
    const msg = new PortClosed(reason, settle);
    if ((this.portFlags & ATTACHED) !== 0) this.deliver(msg);
    else this.target = msg;
  }

  attach(pid: Pid): void {
    const early = this.target;
    this.target = pid;
    this.portFlags |= ATTACHED;
    if (early instanceof PortClosed) send(pid, early);
  }

  /** Holds this socket's writes until flush(), or at the latest until the current turn ends: many frames, one write. */
  cork(): void {
    if ((this.portFlags & CORKED) !== 0) return;
    this.portFlags |= CORKED;
    this._socket.cork();
    corkedPorts.push(this);
    if (corkedPorts.length === 1) process.nextTick(flushCorked);
  }

  flush(): void {
    if ((this.portFlags & CORKED) === 0) return;
    this.portFlags &= ~CORKED;
    this._socket.uncork();
  }

  sendFrame(frame: Exclude<Frame, { type: "close" }>): void {
    // Without an extension the frame is built here, one buffer; with one (or once closing) ws's sender keeps its order.
    if ((this.portFlags & DEFLATING) !== 0 || this.readyState !== WebSocket.OPEN) {
      this.sendThroughWs(frame);
      return;
    }
    const socket = this._socket;
    if (frame.type === "text") {
      socket.write(textFrame(frame.data));
      return;
    }
    const opcode = frame.type === "binary" ? BINARY : frame.type === "ping" ? PING : PONG;
    const data = frame.data;
    if (!payloadApart(data)) {
      socket.write(byteFrame(opcode, data));
      return;
    }
    // Header and payload in one writev, as ws's sender writes them.
    socket.cork();
    socket.write(byteFrame(opcode, data));
    socket.write(data);
    socket.uncork();
  }

  private sendThroughWs(frame: Exclude<Frame, { type: "close" }>): void {
    const compress = (this.portFlags & COMPRESS) !== 0;
    switch (frame.type) {
      case "text":
        this.send(frame.data, compress ? TEXT_DEFLATE : TEXT_PLAIN);
        return;
      case "binary":
        this.send(frame.data, compress ? BINARY_DEFLATE : BINARY_PLAIN);
        return;
      case "ping":
        this.ping(frame.data);
        return;
      case "pong":
        this.pong(frame.data);
        return;
    }
  }

  /** Cowboy does not wait for the client's closing reply: the socket ends once the frame is out. */
  setDeflate(on: boolean): void {
    this.portFlags = on ? this.portFlags | COMPRESS : this.portFlags & ~COMPRESS;
  }

  sendClose(code: number | undefined, reason: string | undefined): void {
    if ((this.portFlags & CLOSE_SENT) !== 0) return;
    this.portFlags |= CLOSE_SENT;
    if (code === undefined) this.close();
    else this.close(code, reason);
    // Without compression ws has written the frame already; with it, ws's close timer ends the socket.
    if ((this.portFlags & DEFLATING) === 0) this._socket.end();
  }

  destroy(): void {
    this.terminate();
  }

  pauseReading(): void {
    this.portFlags |= USER_PAUSED;
    this.pause();
  }

  resumeReading(): void {
    this.portFlags &= ~USER_PAUSED;
    if ((this.portFlags & (STARTED | THROTTLED)) === STARTED) this.resume();
  }

  startReading(): void {
    this.portFlags |= STARTED;
    if ((this.portFlags & (USER_PAUSED | THROTTLED)) === 0) this.resume();
  }

  setMaxFrameSize(bytes: number): void {
    const max = bytes === Infinity ? 0 : bytes;
    // ws fixes maxPayload per server; a runtime change reaches into its receiver and inflater.
    const internals = this as unknown as {
      _receiver?: { _maxPayload: number };
      _extensions?: Record<string, { _maxPayload?: number }>;
    };
    if (internals._receiver) internals._receiver._maxPayload = max;
    const deflate = internals._extensions?.["permessage-deflate"];
    if (deflate !== undefined) deflate._maxPayload = max;
  }
}

/**
 * Idle timeouts without a timer per connection: the ports of a listener are grouped by
 * idle timeout, and each group sweeps its ports IDLE_SWEEPS times per timeout, comparing
 * socket.bytesRead with the previous sweep. A connection closes between idleTimeout and
 * idleTimeout × (1 + 1 / IDLE_SWEEPS) (at least 1 ms more) after the last byte it received.
 */
const IDLE_SWEEPS = 10;
/** The longest delay a Node timer takes. */
const TIMER_MAX = 2 ** 31 - 1;

/** The open ports of one listener, by idle timeout. */
export class PortSet {
  private readonly groups = new Map<number, IdleGroup>();
  size = 0;

  /** The group of ports with this idle timeout (Infinity: never swept). */
  group(timeout: number): IdleGroup {
    let g = this.groups.get(timeout);
    if (g === undefined) {
      g = new IdleGroup(this, timeout);
      this.groups.set(timeout, g);
    }
    return g;
  }

  /** @internal */
  drop(group: IdleGroup): void {
    if (this.groups.get(group.timeout) === group) this.groups.delete(group.timeout);
  }

  /** Every open port, taken at the time of the call. */
  all(): WsPort[] {
    const out: WsPort[] = [];
    for (const g of this.groups.values()) g.collect(out);
    return out;
  }
}

/** @internal The ports of one listener with one idle timeout (an intrusive list), and their sweep timer. */
export class IdleGroup {
  private head: WsPort | null = null;
  /** Sweeps without a received byte that make the timeout. */
  private readonly limit: number;
  private readonly period: number;
  /** False for Infinity, and for timeouts beyond what the sweeps count (thousands of years). */
  private readonly swept: boolean;
  private timer: NodeJS.Timeout | undefined = undefined;

  constructor(
    readonly owner: PortSet,
    readonly timeout: number,
  ) {
    // Timers count whole milliseconds: a timeout under IDLE_SWEEPS ms takes a sweep per millisecond.
    this.limit = Math.max(Math.min(IDLE_SWEEPS, Math.ceil(timeout)), Math.ceil(timeout / TIMER_MAX));
    // Rounded up, so limit × period is never shorter than the timeout.
    this.period = Math.ceil(timeout / this.limit);
    this.swept = this.limit <= MAX_SWEEPS;
  }

  add(port: WsPort): void {
    port.idleNext = this.head;
    if (this.head !== null) this.head.idlePrev = port;
    this.head = port;
    this.owner.size++;
    if (this.timer === undefined && this.swept) {
      this.timer = setInterval(sweepGroup, this.period, this);
      // The sockets keep the process running, never the sweep.
      this.timer.unref();
    }
  }

  delete(port: WsPort): void {
    const { idlePrev: prev, idleNext: next } = port;
    if (prev === null && this.head !== port) return;
    if (prev === null) this.head = next;
    else prev.idleNext = next;
    if (next !== null) next.idlePrev = prev;
    port.idlePrev = port.idleNext = null;
    this.owner.size--;
    if (this.head !== null) return;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.owner.drop(this);
  }

  /** Appends every port of the group to `into`. */
  collect(into: WsPort[]): void {
    for (let port = this.head; port !== null; port = port.idleNext) into.push(port);
  }

  /** @internal */
  sweep(): void {
    const limit = this.limit;
    for (let port = this.head; port !== null; port = port.idleNext) port.sweep(limit);
  }
}

function sweepGroup(group: IdleGroup): void {
  group.sweep();
}

/**
 * Write coalescing: the connection corks its port when more than one frame may come from
 * it in a turn (a callback with several frames, more messages waiting) and flushes it when
 * its mailbox is empty, so they leave in one syscall; raw ws makes one write per send.
 * Corked ports are also flushed once after the turn (a nextTick queued from the scheduler's
 * microtask runs when it is done), in case a process yields with mail left.
 */
const corkedPorts: WsPort[] = [];

function flushCorked(): void {
  for (let i = 0; i < corkedPorts.length; i++) corkedPorts[i]!.flush();
  corkedPorts.length = 0;
}

/** Frames waiting in a connection's mailbox before its socket stops being read, and where reading starts again. */
const MAILBOX_HIGH_WATER = 1024;
const MAILBOX_LOW_WATER = 256;

/** The port of a ws receiver: it points back to its WebSocket under ws's own symbol ("websocket"). */
function portOf(receiver: EventEmitter): WsPort {
  kWebSocket ??= Object.getOwnPropertySymbols(receiver).find((s) => s.description === "websocket");
  return (receiver as unknown as Record<symbol, WsPort>)[kWebSocket!]!;
}

let kWebSocket: symbol | undefined;

/**
 * Cowboy ends the connection as soon as the client's close frame is in, not when TCP closes:
 * ws's receiver says so with 'conclude' (ws echoes the frame itself).
 */
function onConclude(this: EventEmitter, code: number, reason: Buffer): void {
  const why: TerminateReason = code === 1005 ? "remote" : { remote: { code, reason: reason.toString() } };
  portOf(this).receiverEnded(this, why, [code, reason], false);
}

/**
 * Scans could share one object, as most chunks hold whole messages; a connection left inside
 * a frame or a message keeps its own, here rather than in a field every connection would carry.
 */
let scratchScan = new FrameScan();
const partialScans = new WeakMap<WsPort, FrameScan>();

const receiverWrite = Writable.prototype.write as (this: Writable, chunk: Buffer, callback?: (err?: Error | null) => void) => boolean;

/** ws's receiver's write, for a port that checks UTF-8 as it arrives. */
function scanWrite(this: Writable, chunk: Buffer): boolean {
  const port = portOf(this);
  const cut = port.scanText(chunk);
  if (cut === -1) return receiverWrite.call(this, chunk);
  // The whole frames before the bad one are delivered first, then the receiver fails as if it had found it.
  if (cut >= 0) receiverWrite.call(this, chunk.subarray(0, cut), (err) => err == null && failText(this));
  // ws pauses the socket when its receiver is full: nothing more is read.
  return false;
}

interface WsReceiver extends Writable {
  createError(ctor: ErrorConstructor, message: string, prefix: boolean, statusCode: number, code: string): Error;
}

/** Fails the receiver with ws's own 1007 error, through the same path as one ws found. */
function failText(receiver: Writable): void {
  const err = (receiver as WsReceiver).createError(Error, "invalid UTF-8 sequence", true, 1007, "WS_ERR_INVALID_UTF8");
  onReceiverError.call(receiver, err);
}

/**
 * A protocol error from ws's receiver. Corrupt deflate data is 1002 for Cowboy, where ws
 * would send 1007; a message in more fragments than ws keeps is too big (1009), where ws says 1008.
 */
function onReceiverError(this: EventEmitter, err: Error & { code?: string }): void {
  if (err.code?.startsWith("Z_") === true) setStatusCode(err, 1002);
  else if (err.code === "WS_ERR_TOO_MANY_BUFFERED_PARTS") setStatusCode(err, 1009);
  portOf(this).receiverEnded(this, errorReason(err), [err], true);
}

function resumeAfterThrottle(port: WsPort): void {
  port.afterThrottle();
}

type ReceiverListener = (...args: unknown[]) => void;

/** ws's own receiver listeners for 'conclude' and 'error' (module functions, the same for every receiver). */
let wsOnConclude: ReceiverListener | undefined;
let wsOnError: ReceiverListener | undefined;

/**
 * Puts our listener in place of ws's own for one receiver event, in the same slot of the
 * listener table (no new property on it), and keeps ws's, to be called later by the
 * connection. If ws ever registers other than one, it keeps its own: returns false.
 */
function takeOver(receiver: EventEmitter, event: "conclude" | "error", ours: (...args: never[]) => void): boolean {
  const events = (receiver as unknown as { _events?: Record<string, unknown> })._events;
  const theirs = events?.[event];
  if (typeof theirs !== "function" || (event === "conclude" ? wsOnConclude ?? theirs : wsOnError ?? theirs) !== theirs) {
    receiver.prependListener(event, ours as ReceiverListener);
    return false;
  }
  if (event === "conclude") wsOnConclude = theirs as ReceiverListener;
  else wsOnError = theirs as ReceiverListener;
  events![event] = ours;
  return true;
}

/** ws keeps the close code of a receiver error under its own symbol, named "status-code". */
function setStatusCode(err: Error, code: number): void {
  for (const sym of Object.getOwnPropertySymbols(err)) {
    if (sym.description === "status-code") (err as unknown as Record<symbol, number>)[sym] = code;
  }
}

/** How long ws waits for the client's close reply before dropping the socket. */
const CLOSE_TIMEOUT = 1000;

/** One ws server (noServer) per set of per-connection options that ws fixes at the handshake. */
const servers = new Map<string, WebSocketServer>();
/** The last server used and its options: most listeners use one set, so no key is built per handshake. */
let lastServer: { readonly maxFrameSize: number; readonly validateUtf8: boolean; readonly compress: boolean; readonly wss: WebSocketServer } | null = null;
/** The Req being upgraded, for ws's handshake hooks: ws upgrades synchronously, inside completeUpgrade. */
let upgrading: HttpReq | null = null;
/** What ws's upgrade callback handed over during that call. */
let upgraded: WsPort | null = null;

function serverFor(opts: ResolvedWebSocketOptions): WebSocketServer {
  const last = lastServer;
  if (last !== null && last.maxFrameSize === opts.maxFrameSize && last.validateUtf8 === opts.validateUtf8 && last.compress === opts.compress) return last.wss;
  const key = `${opts.maxFrameSize}|${opts.validateUtf8}|${opts.compress}`;
  let wss = servers.get(key);
  if (wss === undefined) {
    wss = newServer(opts);
    servers.set(key, wss);
  }
  lastServer = { maxFrameSize: opts.maxFrameSize, validateUtf8: opts.validateUtf8, compress: opts.compress, wss };
  return wss;
}

function newServer(opts: ResolvedWebSocketOptions): WebSocketServer {
  // closeTimeout and autoPong are newer than @types/ws knows.
  const options: ServerOptions & { closeTimeout: number; autoPong: boolean } = {
    noServer: true,
    WebSocket: WsPort,
    clientTracking: false,
    closeTimeout: CLOSE_TIMEOUT,
    // The connection process answers pings itself, in frame order (COWBOY.md, Ping).
    autoPong: false,
    maxPayload: opts.maxFrameSize === Infinity ? 0 : opts.maxFrameSize,
    skipUTF8Validation: !opts.validateUtf8,
    perMessageDeflate: opts.compress ? {} : false,
    // Cowboy picks no subprotocol by itself: only the one init set goes out.
    handleProtocols: () => {
      const chosen = upgrading?.respHeaders.get("sec-websocket-protocol");
      return chosen === undefined ? false : String(chosen);
    },
  };
  const wss = new WebSocketServer(options);
  wss.on("headers", (headers: string[]) => {
    if (upgrading === null) return;
    for (const [name, value] of upgrading.respHeaders) {
      if (name === "sec-websocket-protocol") continue;
      for (const v of Array.isArray(value) ? value : [value]) headers.push(`${name}: ${v}`);
    }
  });
  return wss;
}

function onUpgraded(ws: WebSocket): void {
  upgraded = ws as WsPort;
}

/**
 * Completes the handshake with ws and returns the port, or null when ws refused it or the
 * socket died first (ws then answers or drops the socket itself). Without a verifyClient,
 * ws decides within the call, so the answer is known when it returns.
 */
export function completeUpgrade(req: HttpReq, raw: IncomingMessage, socket: Duplex, head: Buffer, opts: ResolvedWebSocketOptions, ports: PortSet): WsPort | null {
  if (!socket.readable || !socket.writable) return null;
  upgrading = req;
  try {
    serverFor(opts).handleUpgrade(raw, socket, head, onUpgraded);
  } finally {
    upgrading = null;
  }
  const port = upgraded;
  upgraded = null;
  if (port === null) return null;
  req.replied = true;
  // node caches getpeername's answer on the socket for its lifetime; the Req has its copy.
  (socket as { _peername?: unknown })._peername = undefined;
  port.open(ports.group(opts.idleTimeout), opts);
  return port;
}
