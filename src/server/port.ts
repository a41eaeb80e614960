import type { IncomingMessage } from "node:http";
import type { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";
import { WebSocketServer, type ServerOptions, type WebSocket } from "ws";
import { ReceivedFrame, type Frame } from "../actors/frames.js";
import { PortClosed, type ResolvedWebSocketOptions, type TerminateReason, type WebSocketPort } from "../actors/websocket.js";
import type { Pid } from "../runtime/pid.js";
import { send } from "../runtime/process.js";
import type { HttpReq } from "./req.js";

const TEXT = { binary: false, compress: false, fin: true };
const TEXT_DEFLATE = { binary: false, compress: true, fin: true };
const BINARY = { binary: true, compress: false, fin: true };
const BINARY_DEFLATE = { binary: true, compress: true, fin: true };

/** The terminate reason for an error ws's receiver raised (it has already sent the close frame). */
function errorReason(err: Error & { code?: string }): TerminateReason {
  switch (err.code) {
    case "WS_ERR_INVALID_UTF8":
      return { error: "badencoding" };
    case "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH":
    case "WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH":
      return { error: "badsize" };
    default:
      return { error: "badframe" };
  }
}

/** A WebSocket connection's socket, implemented with ws (DESIGN.md: the port). */
export class WsPort implements WebSocketPort {
  lastActivity = performance.now();
  pid: Pid | null = null;
  /** What happened before attach (only an early close can): delivered on attach. */
  private early: PortClosed | null = null;
  private readonly ws: WebSocket;
  private readonly socket: Duplex;
  /** With permessage-deflate ws may hold frames back while it compresses. */
  private readonly deflating: boolean;

  /** The listener's set of open connections: the port is in it while its socket is open. */
  private readonly ports: Set<WsPort>;

  constructor(ws: WebSocket, socket: Duplex, ports: Set<WsPort>) {
    this.ws = ws;
    this.socket = socket;
    this.ports = ports;
    this.deflating = ws.extensions.includes("permessage-deflate");
    // Nothing is read until the connection has run websocketInit (COWBOY.md, Callbacks).
    ws.pause();
    // Shared listeners find their port through kPort: no closures per connection (memory).
    const receiver = (ws as unknown as { _receiver?: EventEmitter })._receiver;
    (ws as Carrier)[kPort] = this;
    ws.on("message", onMessage);
    ws.on("ping", onPing);
    ws.on("pong", onPong);
    ws.on("error", onError);
    ws.on("close", onClose);
    socket.on("data", onData);
    if (receiver !== undefined) {
      this.wsConclude = takeOver(receiver, "conclude", onConclude);
      this.wsError = takeOver(receiver, "error", onReceiverError);
    }
  }

  /** ws's own handlers for a close frame and a protocol error, run when the connection gets there. */
  private wsConclude: ReceiverListener | undefined;
  private wsError: ReceiverListener | undefined;

  /** @internal The client's close frame or a bad frame: stop reading, hold ws's answer for the connection. */
  receiverEnded(receiver: EventEmitter, reason: TerminateReason, args: unknown[], error: boolean): void {
    this.socket.pause();
    const theirs = error ? this.wsError : this.wsConclude;
    this.closed(reason, theirs === undefined ? undefined : () => theirs.apply(receiver, args));
  }

  /** @internal The socket closed: the connection is over and leaves the listener's set. */
  gone(): void {
    this.closed({ error: "closed" });
    this.ports.delete(this);
  }

  /** @internal */
  deliverFrame(type: "text" | "binary" | "ping" | "pong", data: Buffer): void {
    this.deliver(type === "text" ? new ReceivedFrame("text", data.toString()) : new ReceivedFrame(type, data));
  }

  private deliver(msg: ReceivedFrame | PortClosed): void {
    const pid = this.pid;
    if (pid === null) return;
    send(pid, msg);
    // Inbound flow control: a mailbox past the high-water mark stops reading until the connection drains it.
    if (!this.throttled && (pid.proc?.queueLength ?? 0) > MAILBOX_HIGH_WATER) {
      this.throttled = true;
      this.ws.pause();
    }
  }

  /** True while reading is stopped because the mailbox is too full. */
  throttled = false;
  /** Stopped by the handler's {active: false} (reading starts paused until websocketInit is done). */
  private userPaused = true;

  /**
   * The connection drained its mailbox: read again unless the handler asked not to. On a
   * later turn of the event loop, so other sockets are read before this one floods again.
   */
  unthrottle(): void {
    if (this.resuming) return;
    this.resuming = true;
    setImmediate(resumeAfterThrottle, this);
  }

  private resuming = false;

  /** @internal */
  resumeReading(): void {
    this.resuming = false;
    this.throttled = false;
    if (!this.userPaused) this.ws.resume();
  }

  /** The first reason wins: a close frame or a protocol error comes before the TCP close that follows it. */
  /** @internal */
  closed(reason: TerminateReason, settle?: () => void): void {
    if (this.early !== null) return;
    this.early = new PortClosed(reason, settle);
    this.deliver(this.early);
  }

  attach(pid: Pid): void {
    this.pid = pid;
    if (this.early !== null) send(pid, this.early);
  }

  /** Corked until the end of this turn of the run loop (see flushCorked). */
  private corked = false;

  /** Holds this socket's writes until the current turn ends, so all its frames leave in one write. */
  private cork(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    corkedPorts.push(this);
    if (corkedPorts.length === 1) process.nextTick(flushCorked);
  }

  /** @internal */
  flush(): void {
    this.corked = false;
    this.socket.uncork();
  }

  send(frame: Exclude<Frame, { type: "close" }>, compress: boolean): void {
    this.cork();
    const ws = this.ws;
    switch (frame.type) {
      case "text":
        ws.send(frame.data, compress ? TEXT_DEFLATE : TEXT);
        return;
      case "binary":
        ws.send(frame.data, compress ? BINARY_DEFLATE : BINARY);
        return;
      case "ping":
        ws.ping(frame.data);
        return;
      case "pong":
        ws.pong(frame.data);
        return;
    }
  }

  /** Cowboy does not wait for the client's closing reply: the socket ends once the frame is out. */
  close(code: number | undefined, reason: string | undefined): void {
    if (code === undefined) this.ws.close();
    else this.ws.close(code, reason);
    // Without compression ws has written the frame already; with it, ws's close timer ends the socket.
    if (!this.deflating) this.socket.end();
  }

  destroy(): void {
    this.ws.terminate();
  }

  pause(): void {
    this.userPaused = true;
    this.ws.pause();
  }

  resume(): void {
    this.userPaused = false;
    if (!this.throttled) this.ws.resume();
  }

  setMaxFrameSize(bytes: number): void {
    const max = bytes === Infinity ? 0 : bytes;
    // ws fixes maxPayload per server; a runtime change reaches into its receiver and inflater.
    const internals = this.ws as unknown as {
      _receiver?: { _maxPayload: number };
      _extensions?: Record<string, { _maxPayload?: number }>;
    };
    if (internals._receiver) internals._receiver._maxPayload = max;
    const deflate = internals._extensions?.["permessage-deflate"];
    if (deflate !== undefined) deflate._maxPayload = max;
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }
}

/**
 * Write coalescing: a port corks its socket at its first send in a turn of the run loop,
 * and every corked socket is flushed once after the turn (a nextTick queued from the
 * scheduler's microtask runs when it is done). Many frames, one syscall; raw ws makes one
 * write per send.
 */
const corkedPorts: WsPort[] = [];

function flushCorked(): void {
  for (let i = 0; i < corkedPorts.length; i++) corkedPorts[i]!.flush();
  corkedPorts.length = 0;
}

/** Frames waiting in a connection's mailbox before its socket stops being read. */
const MAILBOX_HIGH_WATER = 1024;

const kPort = Symbol("corral.port");
type Carrier = { [kPort]?: WsPort };

/**
 * The port of a ws WebSocket, or of its socket or receiver: those two point back to their
 * WebSocket under ws's own symbol ("websocket"), so only the WebSocket carries ours (a
 * property on the socket and the receiver would cost out-of-object storage on each).
 */
function portOf(emitter: unknown): WsPort {
  const own = (emitter as Carrier)[kPort];
  if (own !== undefined) return own;
  kWebSocket ??= Object.getOwnPropertySymbols(emitter).find((s) => s.description === "websocket");
  return ((emitter as Record<symbol, Carrier>)[kWebSocket!]!)[kPort]!;
}

let kWebSocket: symbol | undefined;

function onMessage(this: WebSocket, data: Buffer, isBinary: boolean): void {
  portOf(this).deliverFrame(isBinary ? "binary" : "text", data);
}

function onPing(this: WebSocket, data: Buffer): void {
  portOf(this).deliverFrame("ping", data);
}

function onPong(this: WebSocket, data: Buffer): void {
  portOf(this).deliverFrame("pong", data);
}

function onError(this: WebSocket, err: Error): void {
  portOf(this).closed(errorReason(err));
}

function onClose(this: WebSocket): void {
  portOf(this).gone();
}

function onData(this: Duplex): void {
  portOf(this).lastActivity = performance.now();
}

/**
 * Cowboy ends the connection as soon as the client's close frame is in, not when TCP closes:
 * ws's receiver says so with 'conclude' (ws echoes the frame itself).
 */
function onConclude(this: EventEmitter, code: number, reason: Buffer): void {
  const why: TerminateReason = code === 1005 ? "remote" : { remote: { code, reason: reason.toString() } };
  portOf(this).receiverEnded(this, why, [code, reason], false);
}

/** A protocol error from ws's receiver. Corrupt deflate data is 1002 for Cowboy, where ws would send 1007. */
function onReceiverError(this: EventEmitter, err: Error & { code?: string }): void {
  if (err.code?.startsWith("Z_") === true) setStatusCode(err, 1002);
  portOf(this).receiverEnded(this, errorReason(err), [err], true);
}

function resumeAfterThrottle(port: WsPort): void {
  port.resumeReading();
}

type ReceiverListener = (...args: unknown[]) => void;

/**
 * Puts our listener in place of ws's own for one receiver event and returns ws's, to be
 * called later by the connection. If ws ever registers other than one, it keeps its own.
 */
function takeOver(receiver: EventEmitter, event: string, ours: (...args: never[]) => void): ReceiverListener | undefined {
  const theirs = receiver.listeners(event) as ReceiverListener[];
  if (theirs.length !== 1) {
    receiver.prependListener(event, ours as ReceiverListener);
    return undefined;
  }
  receiver.removeListener(event, theirs[0]!);
  receiver.on(event, ours as ReceiverListener);
  return theirs[0];
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
/** The Req of a request being upgraded, so ws's handshake hooks can read its response headers. */
const upgrading = new WeakMap<IncomingMessage, HttpReq>();

function serverFor(opts: ResolvedWebSocketOptions): WebSocketServer {
  const key = `${opts.maxFrameSize}|${opts.validateUtf8}|${opts.compress}`;
  let wss = servers.get(key);
  if (wss !== undefined) return wss;
  // closeTimeout and autoPong are newer than @types/ws knows.
  const options: ServerOptions & { closeTimeout: number; autoPong: boolean } = {
    noServer: true,
    clientTracking: false,
    closeTimeout: CLOSE_TIMEOUT,
    // The connection process answers pings itself, in frame order (COWBOY.md, Ping).
    autoPong: false,
    maxPayload: opts.maxFrameSize === Infinity ? 0 : opts.maxFrameSize,
    skipUTF8Validation: !opts.validateUtf8,
    perMessageDeflate: opts.compress ? {} : false,
    // Cowboy picks no subprotocol by itself: only the one init set goes out.
    handleProtocols: (_offered, raw) => {
      const chosen = upgrading.get(raw)?.respHeaders.get("sec-websocket-protocol");
      return chosen === undefined ? false : String(chosen);
    },
  };
  wss = new WebSocketServer(options);
  wss.on("headers", (headers: string[], raw: IncomingMessage) => {
    const req = upgrading.get(raw);
    if (req === undefined) return;
    for (const [name, value] of req.respHeaders) {
      if (name === "sec-websocket-protocol") continue;
      for (const v of Array.isArray(value) ? value : [value]) headers.push(`${name}: ${v}`);
    }
  });
  servers.set(key, wss);
  return wss;
}

/**
 * Completes the handshake with ws and gives the port, or null when ws refused it or the
 * socket died first (ws then answers or drops the socket itself, without calling back).
 */
export function completeUpgrade(
  req: HttpReq,
  raw: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  opts: ResolvedWebSocketOptions,
  ports: Set<WsPort>,
  done: (port: WsPort | null) => void,
): void {
  let called = false;
  const onClose = (): void => {
    if (called) return;
    called = true;
    done(null);
  };
  if (!socket.readable || !socket.writable) {
    onClose();
    return;
  }
  socket.once("close", onClose);
  upgrading.set(raw, req);
  serverFor(opts).handleUpgrade(raw, socket, head, (ws) => {
    upgrading.delete(raw);
    socket.off("close", onClose);
    if (called) return;
    called = true;
    req.replied = true;
    const port = new WsPort(ws, socket, ports);
    ports.add(port);
    done(port);
  });
}
