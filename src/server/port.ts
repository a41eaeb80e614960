// cowboy_websocket's socket side (Cowboy's ranch transport): frames in and out, flow control, the close as the transport sees it.
import type { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import type { Writable } from "node:stream";
import { WebSocket } from "ws";
import { protocolError, remoteClose } from "../behaviors/close.js";
import { inboundCost, ReceivedFrame, type Frame } from "../behaviors/frames.js";
import { PortClosed, type ResolvedWebSocketOptions, type TerminateReason, type WebSocketPort } from "../behaviors/websocket.js";
import type { Pid } from "../runtime/pid.js";
import { mailboxLength, send } from "../runtime/process.js";
import { stats } from "../runtime/stats.js";
import { gateDeflate, releaseInflate } from "./deflate.js";
import type { IdleGroup, IdlePort } from "./idle.js";
import { FrameScan } from "./utf8.js";
import { BINARY, byteFrame, payloadApart, PING, PONG, textFrame } from "./wire.js";
import { flushAfterTurn } from "./writes.js";
import {
  deflateOf,
  dropListenerTable,
  emitClose,
  interceptReceiverWrite,
  receiverError,
  receiverOf,
  receiverWrite,
  setMaxPayload,
  setStatusCode,
  shareNoExtensions,
  takeOverReceiverEvent,
  webSocketOf,
  wsReceiverListener,
  type WsReceiver,
} from "./ws-internals.js";

const TEXT_PLAIN = { binary: false, compress: false, fin: true };
const TEXT_DEFLATE = { binary: false, compress: true, fin: true };
const BINARY_PLAIN = { binary: true, compress: false, fin: true };
const BINARY_DEFLATE = { binary: true, compress: true, fin: true };

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
/** The idle sweeps since a byte was last received count in the bits from here up (idle.ts: MAX_SWEEPS fits in them). */
const SWEEP_SHIFT = 16;
const SWEEP = 1 << SWEEP_SHIFT;

/** The runtime's counters, held in a module const: V8 loads an imported binding at every use. */
const counts = stats;

/** One frozen empty extensions object for every connection without one (ws makes one per connection). */
const NO_EXTENSIONS = Object.freeze({});

/**
 * A WebSocket connection's socket (docs/architecture.md, the port): ws's WebSocket itself, extended,
 * so a connection costs no object of its own for the port. Events reach the port through
 * an overridden emit: no listener is registered, so ws's listener table is never made.
 */
export class WsPort extends WebSocket implements WebSocketPort, IdlePort<WsPort> {
  /** The connection's pid once attached; before, what happened already (only an early close can). */
  private target: Pid | PortClosed | null = null;
  private portFlags = 0;
  /** The listener's ports with this port's idle timeout: the port is in it while its socket is open. */
  private idleGroup: IdleGroup<WsPort> | null = null;
  /** @internal The group's intrusive list. */
  idlePrev: WsPort | null = null;
  /** @internal */
  idleNext: WsPort | null = null;
  /** socket.bytesRead (as an int32) at the last idle sweep. */
  private idleRead = 0;
  /** What the received frames waiting in the mailbox weigh (inboundCost), and the most they may before reading stops. */
  private queuedBytes = 0;
  private maxQueuedBytes = Infinity;
  /** ws's own field: the TCP (or TLS) socket under it. */
  declare readonly _socket: Socket;

  constructor(...args: unknown[]) {
    super(...(args as [null]));
    dropListenerTable(this);
    shareNoExtensions(this, NO_EXTENSIONS);
  }

  /** @internal The handshake is done: start as a port, not reading yet, in the group of its idle timeout. */
  open(group: IdleGroup<WsPort>, opts: ResolvedWebSocketOptions): void {
    if (opts.compress) this.portFlags |= COMPRESS;
    this.maxQueuedBytes = opts.maxQueuedBytes;
    const deflate = deflateOf(this);
    if (deflate !== undefined) {
      this.portFlags |= DEFLATING;
      gateDeflate(this, deflate);
    }
    // Nothing is read until the connection has run websocketInit (docs/websocket.md, callbacks).
    this.pause();
    const receiver = receiverOf(this);
    if (receiver !== undefined) {
      if (takeOverReceiverEvent(receiver, "conclude", onConclude)) this.portFlags |= HOLDS_CONCLUDE;
      if (takeOverReceiverEvent(receiver, "error", onReceiverError)) this.portFlags |= HOLDS_ERROR;
      // Text is checked as it arrives (utf8.ts), before ws's receiver sees the bytes.
      if (opts.validateUtf8) interceptReceiverWrite(receiver, scanWrite);
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
        this.closed(protocolError((a as Error & { code?: string }).code).reason);
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
    const theirs = (this.portFlags & (error ? HOLDS_ERROR : HOLDS_CONCLUDE)) === 0 ? undefined : wsReceiverListener(error ? "error" : "conclude");
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
    this.portFlags |= GONE;
    counts.closedBytesIn += this._socket.bytesRead;
    counts.closedBytesOut += this._socket.bytesWritten;
    this.idleGroup?.delete(this);
  }

  private join(group: IdleGroup<WsPort>): void {
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
    counts.framesIn++;
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
    // Inbound flow control (docs/websocket.md): a mailbox past a high-water mark (frames or bytes) stops reading until the connection drains it.
    if ((this.portFlags & THROTTLED) === 0 && (mailboxLength(pid) > MAILBOX_HIGH_WATER || this.queuedBytes > this.maxQueuedBytes)) {
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
    flushAfterTurn(this);
  }

  flush(): void {
    if ((this.portFlags & CORKED) === 0) return;
    this.portFlags &= ~CORKED;
    this._socket.uncork();
  }

  sendFrame(frame: Exclude<Frame, { type: "close" }>): void {
    counts.framesOut++;
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

  setDeflate(on: boolean): void {
    this.portFlags = on ? this.portFlags | COMPRESS : this.portFlags & ~COMPRESS;
  }

  /** Cowboy does not wait for the client's closing reply: the socket ends once the frame is out (with compression, at ws's 1 s close timer). */
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
    setMaxPayload(this, bytes === Infinity ? 0 : bytes);
  }

  /** @internal The socket closed while inflating was held: ws would wait for its receiver forever. */
  closeNow(): void {
    emitClose(this);
  }
}

/** Frames waiting in a connection's mailbox before its socket stops being read, and where reading starts again. */
const MAILBOX_HIGH_WATER = 1024;
const MAILBOX_LOW_WATER = 256;

function portOf(receiver: object): WsPort {
  return webSocketOf<WsPort>(receiver);
}

/**
 * Cowboy ends the connection as soon as the client's close frame is in, not when TCP closes:
 * ws's receiver says so with 'conclude' (ws echoes the frame itself).
 */
function onConclude(this: EventEmitter, code: number, reason: Buffer): void {
  portOf(this).receiverEnded(this, remoteClose(code, reason.toString()), [code, reason], false);
}

/**
 * Scans could share one object, as most chunks hold whole messages; a connection left inside
 * a frame or a message keeps its own, here rather than in a field every connection would carry.
 */
let scratchScan = new FrameScan();
const partialScans = new WeakMap<WsPort, FrameScan>();

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

/**
 * Fails the receiver with ws's own 1007 error, as ws fails it: the stream errors, so ws ends
 * the socket right after the close frame instead of waiting for the client's reply.
 */
function failText(receiver: Writable): void {
  receiver.destroy(receiverError(receiver as WsReceiver, "invalid UTF-8 sequence", 1007, "WS_ERR_INVALID_UTF8"));
}

/** A protocol error from ws's receiver: the reason and, where Cowboy's differs from ws's, the close code (close.ts). */
function onReceiverError(this: EventEmitter, err: Error & { code?: string }): void {
  const { reason, code } = protocolError(err.code);
  if (code !== undefined) setStatusCode(err, code);
  portOf(this).receiverEnded(this, reason, [err], true);
}

function resumeAfterThrottle(port: WsPort): void {
  port.afterThrottle();
}
