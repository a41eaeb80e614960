import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { spawnRequest, type Exchange } from "../actors/request.js";
import type { ResolvedWebSocketOptions, WebSocketPort } from "../actors/websocket.js";
import { CorralError, badarg, describe } from "../runtime/errors.js";
import { runtimeLogger, type Logger } from "../runtime/log.js";
import { exit } from "../runtime/process.js";
import { completeUpgrade, type WsPort } from "./port.js";
import { HttpReq } from "./req.js";
import { matchRoute, type Dispatch } from "./router.js";

export interface TransportOptions {
  /** 0 picks a free port; listener.port tells which. */
  readonly port: number;
  /** Default 127.0.0.1: exposing a server is a choice. */
  readonly host?: string;
}

export interface ProtocolOptions {
  readonly dispatch: Dispatch;
  /** Default: the runtime's pino logger. */
  readonly logger?: Logger;
  /** How long stopListener waits for connections to close before destroying them. Default 5000 ms. */
  readonly shutdownTimeout?: number;
}

export interface Listener {
  readonly name: string;
  readonly port: number;
  readonly host: string;
  /** Open WebSocket connections. */
  readonly connections: number;
}

class ListenerState implements Listener {
  readonly name: string;
  readonly server: Server;
  readonly dispatch: Dispatch;
  readonly logger: Logger;
  readonly shutdownTimeout: number;
  readonly ports = new Set<WsPort>();
  port = 0;
  host: string;
  stopping = false;

  constructor(name: string, server: Server, host: string, opts: ProtocolOptions) {
    this.name = name;
    this.server = server;
    this.host = host;
    this.dispatch = opts.dispatch;
    this.logger = opts.logger ?? runtimeLogger();
    this.shutdownTimeout = opts.shutdownTimeout ?? 5000;
  }

  get connections(): number {
    return this.ports.size;
  }
}

const listeners = new Map<string, ListenerState>();

/** What a request process needs from the server for one request. */
class ServerExchange implements Exchange {
  readonly req: HttpReq;
  readonly offeredProtocols: readonly string[];
  private readonly listener: ListenerState;
  private readonly raw: IncomingMessage;
  private readonly socket: Duplex | undefined;
  private readonly head: Buffer | undefined;

  constructor(listener: ListenerState, req: HttpReq, raw: IncomingMessage, socket: Duplex | undefined, head: Buffer | undefined) {
    this.listener = listener;
    this.req = req;
    this.raw = raw;
    this.socket = socket;
    this.head = head;
    this.offeredProtocols = req.parseHeader("sec-websocket-protocol") ?? [];
  }

  get logger(): Logger {
    return this.listener.logger;
  }

  handshakeError(): { status: number; headers: Record<string, string> } | undefined {
    const req = this.req;
    const connection = (req.headers["connection"] ?? "").toLowerCase().split(",").map((t) => t.trim());
    const isUpgrade = this.socket !== undefined && connection.includes("upgrade") && (req.headers["upgrade"] ?? "").toLowerCase() === "websocket";
    if (!isUpgrade) return { status: 426, headers: { connection: "upgrade", upgrade: "websocket" } };
    if (req.method !== "GET" || req.headers["sec-websocket-key"] === undefined || req.headers["sec-websocket-version"] !== "13") {
      return { status: 400, headers: {} };
    }
    return undefined;
  }

  chosenProtocol(): string | undefined {
    const v = this.req.respHeaders.get("sec-websocket-protocol");
    return v === undefined ? undefined : String(v);
  }

  upgrade(opts: ResolvedWebSocketOptions, done: (port: WebSocketPort | null) => void): void {
    const listener = this.listener;
    if (listener.stopping) {
      this.socket!.destroy();
      done(null);
      return;
    }
    completeUpgrade(this.req, this.raw, this.socket!, this.head!, opts, (port) => listener.ports.delete(port), (port) => {
      if (port !== null) listener.ports.add(port);
      done(port);
    });
  }
}

function onRequest(listener: ListenerState, raw: IncomingMessage, res: ServerResponse | undefined, socket: Duplex | undefined, head: Buffer | undefined): void {
  const req = new HttpReq(raw, res !== undefined ? { res } : { socket: socket! }, "http", listener.port);
  const m = matchRoute(listener.dispatch, req.host, req.path);
  if ("status" in m) {
    req.reply(m.status);
    return;
  }
  req.bindings = m.bindings;
  req.hostInfo = m.hostInfo;
  req.pathInfo = m.pathInfo;
  spawnRequest(m.handler, m.opts, new ServerExchange(listener, req, raw, socket, head), m.pattern);
}

function checkTransport(opts: TransportOptions): { port: number; host: string } {
  if (typeof opts !== "object" || opts === null) throw badarg(`startClear: transport options must be { port, host? }, got ${describe(opts)}`);
  const { port, host = "127.0.0.1" } = opts;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw badarg(`startClear: invalid port ${describe(port)}`);
  if (typeof host !== "string") throw badarg(`startClear: invalid host ${describe(host)}`);
  return { port, host };
}

/** Cowboy's start_clear: an HTTP/1.1 listener for the dispatch, WebSockets included. */
export async function startClear(name: string, transport: TransportOptions, protocol: ProtocolOptions): Promise<Listener> {
  if (typeof name !== "string" || name.length === 0) throw badarg(`startClear: name must be a non-empty string, got ${describe(name)}`);
  if (listeners.has(name)) throw new CorralError("ERR_NAME_TAKEN", `startClear: a listener named ${JSON.stringify(name)} is already running`);
  const { port, host } = checkTransport(transport);
  if (typeof protocol !== "object" || protocol === null || typeof protocol.dispatch !== "object" || !Array.isArray(protocol.dispatch?.hosts)) {
    throw badarg("startClear: protocol options need a dispatch from compileRoutes()");
  }
  const server = createServer();
  const listener = new ListenerState(name, server, host, protocol);
  listeners.set(name, listener);
  server.on("request", (raw: IncomingMessage, res: ServerResponse) => onRequest(listener, raw, res, undefined, undefined));
  server.on("upgrade", (raw: IncomingMessage, socket: Duplex, head: Buffer) => onRequest(listener, raw, undefined, socket, head));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    listeners.delete(name);
    throw err;
  }
  listener.port = (server.address() as AddressInfo).port;
  listener.logger.debug({ listener: name, host, port: listener.port }, "listening");
  return listener;
}

/**
 * Stops accepting, closes every WebSocket with 1001 (each runs terminate once), lets HTTP
 * requests in flight finish, and destroys whatever is left after shutdownTimeout.
 */
export async function stopListener(name: string): Promise<void> {
  const listener = listeners.get(name);
  if (listener === undefined) throw new CorralError("ERR_UNKNOWN_NAME", `stopListener: no listener named ${JSON.stringify(name)}`);
  listener.stopping = true;
  const closed = new Promise<void>((resolve) => listener.server.close(() => resolve()));
  for (const port of listener.ports) if (port.pid !== null) exit(port.pid, "shutdown");
  listener.server.closeIdleConnections();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), listener.shutdownTimeout);
  });
  if ((await Promise.race([closed, deadline])) === "timeout") {
    for (const port of listener.ports) port.destroy();
    listener.server.closeAllConnections();
    await closed;
  }
  clearTimeout(timer);
  listeners.delete(name);
}
