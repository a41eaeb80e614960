// cowboy:start_clear/3, start_tls/3 and stop_listener/1 (Ranch's listener): the node:http server, its limits, and each request's way to its process.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { SecureContext, SecureContextOptions, TlsOptions } from "node:tls";
import { logValue } from "../behaviors/req.js";
import { spawnRequest, type Exchange } from "../behaviors/request.js";
import type { ResolvedWebSocketOptions, WebSocketPort } from "../behaviors/websocket.js";
import { CorralError, badarg, describe } from "../runtime/errors.js";
import { limit, positive } from "../runtime/validate.js";
import { runtimeLogger, type Logger } from "../runtime/log.js";
import { setStopHook, STOP_LISTENERS } from "../runtime/shutdown.js";
import { countOne, handshakes } from "../runtime/stats.js";
import { exit, isDown } from "../runtime/signals.js";
import type { Pid, Ref } from "../runtime/pid.js";
import { spawn } from "../runtime/spawn.js";
import { takeFirstReads, type FirstReads } from "./accept.js";
import type { UpgradeHead } from "./head.js";
import { PortSet } from "./idle.js";
import type { WsPort } from "./port.js";
import { completeUpgrade, ignoreSocketError, refuseUpgrade, warnNoSubprotocol } from "./upgrade.js";
import { DEFAULT_MAX_BODY_SIZE, HttpReq } from "./req.js";
import { matchRoute, type Dispatch } from "./router.js";

export interface TransportOptions {
  /** 0 picks a free port; listener.port tells which. */
  readonly port: number;
  /** Default 127.0.0.1: exposing a server is a choice. */
  readonly host?: string;
  /** Beyond this many open sockets, new ones are closed at once (ranch's max_connections). Default 65536. */
  readonly maxConnections?: number;
  /**
   * Connections the kernel completes and queues until the listener accepts them (ranch's
   * backlog; the kernel caps it at net.core.somaxconn). Default 1024, where Node's is 511.
   */
  readonly backlog?: number;
}

/** startTls: the transport options plus a key and certificate (or a SecureContext) and any node:tls option. */
export interface TlsTransportOptions extends TransportOptions, Pick<SecureContextOptions, "key" | "cert" | "ca" | "passphrase" | "pfx"> {
  readonly secureContext?: SecureContext;
  /** Ask clients for a certificate (req.cert); default false. */
  readonly requestCert?: boolean;
  readonly rejectUnauthorized?: boolean;
}

export interface ProtocolOptions {
  readonly dispatch: Dispatch;
  /** Default: the runtime's pino logger. */
  readonly logger?: Logger;
  /** How long stopListener waits for connections to close before destroying them. Default 5000 ms. */
  readonly shutdownTimeout?: number;
  /** Time to receive a request's headers (slowloris); Cowboy's request_timeout. Default 5000 ms. */
  readonly requestTimeout?: number;
  /** Time to receive a whole request, body included, however fast it comes. Default 300000 ms. */
  readonly bodyTimeout?: number;
  /**
   * The slowest a request body may arrive, in bytes per second, after minBodyRateGrace: a
   * client that has sent fewer than (elapsed - grace) × rate bytes of its body is cut off
   * (408, or the connection closed if an answer went out). Time the server spends not reading
   * (the handler has not asked for the body yet) does not count. 0 turns it off. Default 1024.
   */
  readonly minBodyRate?: number;
  /** How long a body may take before minBodyRate applies. Default 10000 ms. */
  readonly minBodyRateGrace?: number;
  /** An idle keep-alive connection is closed after this. Default 5000 ms. */
  readonly keepAliveTimeout?: number;
  /** Largest request head (line and headers) accepted; beyond it: 431. Default 16384 bytes. */
  readonly maxHeaderSize?: number;
  /** Default limit of req.readBody(); beyond it: 413. Default 8 MiB. */
  readonly maxBodySize?: number;
}

export interface Listener {
  readonly name: string;
  readonly port: number;
  readonly host: string;
  /** Open WebSocket connections. */
  readonly connections: number;
}

interface Limits {
  readonly shutdownTimeout: number;
  readonly requestTimeout: number;
  readonly bodyTimeout: number;
  readonly minBodyRate: number;
  readonly minBodyRateGrace: number;
  readonly keepAliveTimeout: number;
  readonly maxHeaderSize: number;
  readonly maxBodySize: number;
  readonly maxConnections: number;
}

class ListenerState implements Listener {
  readonly name: string;
  readonly server: Server;
  readonly scheme: "http" | "https";
  readonly dispatch: Dispatch;
  readonly logger: Logger;
  readonly limits: Limits;
  readonly ports = new PortSet<WsPort>();
  /** Request bodies still arriving, checked against minBodyRate by one sweep for the listener. */
  readonly bodies = new Set<BodyWatch>();
  bodySweep: NodeJS.Timeout | undefined = undefined;
  /** New connections' first reads (accept.ts); undefined: node:http reads every connection. */
  firstReads: FirstReads | undefined = undefined;
  port = 0;
  readonly host: string;
  stopping: Promise<void> | undefined = undefined;
  /** What ends with the listener besides its connections: the sessions started on it (bullet). */
  readonly onStop = new Set<() => void>();

  constructor(name: string, server: Server, scheme: "http" | "https", host: string, opts: ProtocolOptions, limits: Limits) {
    this.name = name;
    this.server = server;
    this.scheme = scheme;
    this.host = host;
    this.dispatch = opts.dispatch;
    this.logger = opts.logger ?? runtimeLogger();
    this.limits = limits;
  }

  get connections(): number {
    return this.ports.size;
  }
}

const listeners = new Map<string, ListenerState>();

/** How often bodies in flight are checked against minBodyRate: the cut comes at most this late. */
const BODY_SWEEP_MS = 1000;

/** One request body in flight. */
interface BodyWatch {
  readonly req: HttpReq;
  readonly raw: IncomingMessage;
  /** socket.bytesRead when the headers were in: what came after is the body (and maybe a pipelined request). */
  readonly from: number;
  /** When the body's clock started; moved on by the time the server did not read. */
  since: number;
  checked: number;
}

function watchBody(listener: ListenerState, req: HttpReq, raw: IncomingMessage): void {
  if (listener.bodySweep === undefined) return;
  const headers = raw.headers;
  if (headers["transfer-encoding"] === undefined && Number(headers["content-length"] ?? 0) <= 0) return;
  const now = Date.now();
  listener.bodies.add({ req, raw, from: raw.socket.bytesRead, since: now, checked: now });
}

/** Cuts off every body that arrives below minBodyRate once its grace is over. */
function sweepBodies(listener: ListenerState): void {
  const { minBodyRate, minBodyRateGrace } = listener.limits;
  const now = Date.now();
  for (const w of listener.bodies) {
    const socket = w.raw.socket;
    if (w.raw.complete || socket.destroyed) {
      listener.bodies.delete(w);
      continue;
    }
    // A paused socket is the server's doing (the handler has not read what came): not the client's time.
    if (socket.isPaused()) w.since += now - w.checked;
    w.checked = now;
    const received = socket.bytesRead - w.from;
    if (now - w.since <= minBodyRateGrace + (received * 1000) / minBodyRate) continue;
    listener.bodies.delete(w);
    listener.logger.debug({ listener: listener.name, peer: w.req.peer.address, received, ms: now - w.since }, "request body below minBodyRate: cut off");
    w.req.cutSlowBody();
  }
}

/** What a request process needs from the server for one request. */
class ServerExchange implements Exchange {
  readonly req: HttpReq;
  private readonly listener: ListenerState;
  /** undefined for an upgrade head read by accept.ts. */
  private readonly raw: IncomingMessage | undefined;
  private readonly res: ServerResponse | undefined;
  private readonly socket: Duplex | undefined;
  private readonly head: Buffer | undefined;

  constructor(listener: ListenerState, req: HttpReq, raw: IncomingMessage | undefined, res: ServerResponse | undefined, socket: Duplex | undefined, head: Buffer | undefined) {
    this.listener = listener;
    this.req = req;
    this.raw = raw;
    this.res = res;
    this.socket = socket;
    this.head = head;
  }

  get logger(): Logger {
    return this.listener.logger;
  }

  onListenerStop(callback: () => void): () => void {
    const hooks = this.listener.onStop;
    hooks.add(callback);
    return () => hooks.delete(callback);
  }

  upgrade(opts: ResolvedWebSocketOptions, handler: string): WebSocketPort | null {
    const req = this.req;
    const refused = refuseUpgrade(req, this.socket !== undefined, opts);
    if (refused !== undefined) {
      countOne(handshakes, String(refused.status));
      req.reply(refused.status, refused.headers);
      return null;
    }
    warnNoSubprotocol(req, handler, this.listener.logger);
    const socket = this.socket!;
    if (this.listener.stopping !== undefined) {
      countOne(handshakes, "stopping");
      socket.destroy();
      return null;
    }
    const port = completeUpgrade(req, this.raw, socket, this.head!, opts, this.listener.ports);
    countOne(handshakes, port === null ? "failed" : "upgraded");
    return port;
  }

  onClientGone(callback: () => void): void {
    const out = this.res ?? this.socket!;
    // 'close' before the response finished means the client left (or the socket broke).
    out.once("close", () => {
      if (this.res === undefined || !this.res.writableFinished) callback();
    });
  }

  endStream(): void {
    this.req.endStream();
  }

  abort(): void {
    const out = this.res ?? this.socket!;
    if (!out.writableEnded) out.destroy();
  }
}

/** What follows the head of an upgrade read by accept.ts: nothing (anything else went to node:http). */
const NO_BYTES = Buffer.alloc(0);

/** A request node:http parsed: 'request' (with its response) or 'upgrade' (with the socket and what followed the head). */
function onRequest(listener: ListenerState, raw: IncomingMessage, res: ServerResponse | undefined, socket: Duplex | undefined, head: Buffer | undefined): void {
  const sink = res !== undefined ? { res } : { socket: socket! };
  const req = new HttpReq(raw, raw.socket, sink, listener.scheme, listener.scheme === "https" ? 443 : 80, listener.limits.maxBodySize);
  route(listener, req, raw, res, socket, head);
}

/** An upgrade head accept.ts read whole from a connection's first read. */
function onUpgradeHead(listener: ListenerState, socket: Socket, head: UpgradeHead): void {
  const req = new HttpReq(head, socket, { socket }, listener.scheme, listener.scheme === "https" ? 443 : 80, listener.limits.maxBodySize);
  route(listener, req, undefined, undefined, socket, NO_BYTES);
}

/** The request to its route's handler, in a request process; no route: 404 (or 400, 500). */
function route(listener: ListenerState, req: HttpReq, raw: IncomingMessage | undefined, res: ServerResponse | undefined, socket: Duplex | undefined, head: Buffer | undefined): void {
  const m = matchRoute(listener.dispatch, req.host, req.path);
  if ("status" in m) {
    if ("error" in m) listener.logger.error({ err: m.error, path: logValue(req.path) }, "route constraint failed");
    req.reply(m.status);
    return;
  }
  req.bindings = m.bindings;
  req.hostInfo = m.hostInfo;
  req.pathInfo = m.pathInfo;
  if (res !== undefined) watchBody(listener, req, raw!);
  spawnRequest(m.handler, m.opts, new ServerExchange(listener, req, raw, res, socket, head), m.pattern);
}

function rate(value: unknown, fn: string): number {
  if (value === undefined) return 1024;
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) throw badarg(`${fn}: minBodyRate must be a number of bytes per second >= 0 (0: off), got ${describe(value)}`);
  return value;
}

/** Ranch's default backlog: a reconnect storm fills Node's 511 within milliseconds, and a SYN dropped then waits a second for its retransmit. */
const DEFAULT_BACKLOG = 1024;

/** The accept queue's length: a whole number > 0. */
function backlog(value: unknown, fn: string): number {
  const n = positive(value, `${fn}: backlog must be a whole number > 0`, DEFAULT_BACKLOG);
  if (!Number.isInteger(n)) throw badarg(`${fn}: backlog must be a whole number > 0, got ${describe(value)}`);
  return n;
}

interface Binding {
  readonly port: number;
  readonly host: string;
  readonly backlog: number;
  readonly limits: Limits;
}

function checkOptions(fn: string, name: unknown, transport: TransportOptions, protocol: ProtocolOptions): Binding {
  if (typeof name !== "string" || name.length === 0) throw badarg(`${fn}: name must be a non-empty string, got ${describe(name)}`);
  if (listeners.has(name)) throw new CorralError("ERR_NAME_TAKEN", `${fn}: a listener named ${JSON.stringify(name)} is already running`);
  if (typeof transport !== "object" || transport === null) throw badarg(`${fn}: transport options must be { port, host? }, got ${describe(transport)}`);
  const { port, host = "127.0.0.1" } = transport;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw badarg(`${fn}: invalid port ${describe(port)}`);
  if (typeof host !== "string") throw badarg(`${fn}: invalid host ${describe(host)}`);
  if (typeof protocol !== "object" || protocol === null || typeof protocol.dispatch !== "object" || !Array.isArray(protocol.dispatch?.hosts)) {
    throw badarg(`${fn}: protocol options need a dispatch from compileRoutes()`);
  }
  const limits: Limits = {
    shutdownTimeout: limit(protocol.shutdownTimeout, `${fn}: shutdownTimeout must be a number > 0`, 5000),
    requestTimeout: limit(protocol.requestTimeout, `${fn}: requestTimeout must be a number > 0`, 5000),
    bodyTimeout: limit(protocol.bodyTimeout, `${fn}: bodyTimeout must be a number > 0`, 300_000),
    minBodyRate: rate(protocol.minBodyRate, fn),
    minBodyRateGrace: limit(protocol.minBodyRateGrace, `${fn}: minBodyRateGrace must be a number > 0`, 10_000),
    keepAliveTimeout: limit(protocol.keepAliveTimeout, `${fn}: keepAliveTimeout must be a number > 0`, 5000),
    maxHeaderSize: limit(protocol.maxHeaderSize, `${fn}: maxHeaderSize must be a number > 0`, 16_384),
    maxBodySize: limit(protocol.maxBodySize, `${fn}: maxBodySize must be a number > 0`, DEFAULT_MAX_BODY_SIZE),
    maxConnections: limit(transport.maxConnections, `${fn}: maxConnections must be a number > 0`, 65_536),
  };
  return { port, host, backlog: backlog(transport.backlog, fn), limits };
}

async function listen(name: string, server: Server, scheme: "http" | "https", at: Binding, protocol: ProtocolOptions): Promise<Listener> {
  const { port, host, limits } = at;
  server.headersTimeout = limits.requestTimeout;
  server.requestTimeout = Math.max(limits.bodyTimeout, limits.requestTimeout + 1);
  server.keepAliveTimeout = limits.keepAliveTimeout;
  server.maxConnections = limits.maxConnections;
  const listener = new ListenerState(name, server, scheme, host, protocol, limits);
  listeners.set(name, listener);
  if (limits.minBodyRate > 0) listener.bodySweep = setInterval(() => sweepBodies(listener), BODY_SWEEP_MS).unref();
  server.on("request", (raw: IncomingMessage, res: ServerResponse) => onRequest(listener, raw, res, undefined, undefined));
  server.on("upgrade", (raw: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on("error", ignoreSocketError);
    onRequest(listener, raw, undefined, socket, head);
  });
  server.on("clientError", (err: Error & { code?: string }, socket: Duplex) => clientError(listener, err, socket));
  listener.firstReads = takeFirstReads(server, scheme === "https" ? "secureConnection" : "connection", {
    maxHeaderSize: limits.maxHeaderSize,
    requestTimeout: limits.requestTimeout,
    onUpgradeHead: (socket, head) => onUpgradeHead(listener, socket, head),
    onClientError: (err, socket) => clientError(listener, err, socket),
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, at.backlog, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    listener.firstReads?.stop();
    clearInterval(listener.bodySweep);
    listeners.delete(name);
    throw err;
  }
  listener.port = (server.address() as AddressInfo).port;
  listener.logger.debug({ listener: name, scheme, host, port: listener.port }, "listening");
  return listener;
}

/** @internal Every running listener, and its open WebSocket ports (observe/). */
export function runningListeners(): Iterable<Listener & { readonly ports: PortSet<WsPort> }> {
  return listeners.values();
}

/** A broken client socket is that client's problem: log at debug, never crash; answer if it can still hear. */
function clientError(listener: ListenerState, err: Error & { code?: string }, socket: Duplex): void {
  listener.logger.debug({ listener: listener.name, err: err.message, code: err.code }, "client error");
  if (!socket.writable) return void socket.destroy();
  const status = err.code === "HPE_HEADER_OVERFLOW" ? 431 : err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400;
  socket.end(`HTTP/1.1 ${status} ${status === 431 ? "Request Header Fields Too Large" : status === 408 ? "Request Timeout" : "Bad Request"}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
}

/** A running listener by name (its port, its open WebSocket connections), or undefined. */
export function listenerInfo(name: string): Listener | undefined {
  return listeners.get(name);
}

/** Cowboy's start_clear: an HTTP/1.1 listener for the dispatch, WebSockets included. */
export function startClear(name: string, transport: TransportOptions, protocol: ProtocolOptions): Promise<Listener> {
  const at = checkOptions("startClear", name, transport, protocol);
  const server = createServer({ maxHeaderSize: at.limits.maxHeaderSize, connectionsCheckingInterval: 1000 });
  return listen(name, server, "http", at, protocol);
}

/** Cowboy's start_tls: the same over TLS (wss:// for WebSockets). */
export function startTls(name: string, transport: TlsTransportOptions, protocol: ProtocolOptions): Promise<Listener> {
  const at = checkOptions("startTls", name, transport, protocol);
  const { key, cert, ca, passphrase, pfx, secureContext, requestCert, rejectUnauthorized } = transport;
  if (secureContext === undefined && pfx === undefined && (key === undefined || cert === undefined)) {
    throw badarg("startTls: give key and cert (or pfx, or a secureContext)");
  }
  const tls: TlsOptions = { key, cert, ca, passphrase, pfx, requestCert: requestCert ?? false, rejectUnauthorized: rejectUnauthorized ?? false };
  if (secureContext !== undefined) tls.SNICallback = (_servername, cb) => cb(null, secureContext);
  const server = createHttpsServer({ ...tls, maxHeaderSize: at.limits.maxHeaderSize, connectionsCheckingInterval: 1000 }) as unknown as Server;
  return listen(name, server, "https", at, protocol);
}

/**
 * Stops accepting, closes every WebSocket with 1001 (each runs terminate once), lets HTTP
 * requests in flight finish, and destroys whatever is left after shutdownTimeout.
 */
export function stopListener(name: string): Promise<void> {
  const listener = listeners.get(name);
  if (listener === undefined) return Promise.reject(new CorralError("ERR_UNKNOWN_NAME", `stopListener: no listener named ${JSON.stringify(name)}`));
  return (listener.stopping ??= stop(listener));
}

// The node's stop (a permanent supervisor ended) stops every listener as stopListener does.
setStopHook(STOP_LISTENERS, () => Promise.all([...listeners.keys()].map(stopListener)));

/** Resolves once every one of pids has ended (DOWN), or after ms. */
function ended(pids: readonly Pid[], ms: number): Promise<void> {
  if (pids.length === 0) return Promise.resolve();
  return new Promise((resolve) => {
    spawn(async (ctx) => {
      const refs = new Set<Ref>(pids.map((pid) => ctx.monitor(pid)));
      const deadline = Date.now() + ms;
      while (refs.size > 0) {
        const down = await ctx.receive(isDown, Math.max(0, deadline - Date.now()));
        if (down === undefined) break;
        refs.delete(down.ref);
      }
      resolve();
    });
  });
}

async function stop(listener: ListenerState): Promise<void> {
  const server = listener.server;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  // node:http stops checking its connections' deadlines at close(): so do the first reads.
  listener.firstReads?.stop();
  const connections: Pid[] = [];
  for (const port of listener.ports.all()) {
    if (port.pid === null) port.sendClose(1001, undefined);
    else {
      connections.push(port.pid);
      exit(port.pid, "shutdown");
    }
  }
  const stopped = Date.now();
  for (const callback of [...listener.onStop]) callback();
  listener.onStop.clear();
  server.closeIdleConnections();
  // Keep-alive connections become idle as their last request finishes: close them as they do.
  const sweeper = setInterval(() => server.closeIdleConnections(), 50);
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), listener.limits.shutdownTimeout);
  });
  if ((await Promise.race([closed, deadline])) === "timeout") {
    for (const port of listener.ports.all()) port.destroy();
    server.closeAllConnections();
    listener.firstReads?.destroyWaiting();
    await closed;
  }
  clearTimeout(timer);
  // A socket's end can be seen before its process ran terminate: the stop is done once they all have.
  await ended(connections, Math.max(0, listener.limits.shutdownTimeout - (Date.now() - stopped)));
  clearInterval(sweeper);
  clearInterval(listener.bodySweep);
  listener.bodies.clear();
  listeners.delete(listener.name);
}
