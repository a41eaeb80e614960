// cowboy_websocket:upgrade: whether a request becomes a WebSocket, and the 101 that makes it one.
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocket, WebSocketServer, type ServerOptions } from "ws";
import type { ResolvedWebSocketOptions } from "../behaviors/websocket.js";
import type { Logger } from "../runtime/log.js";
import type { PortSet } from "./idle.js";
import { WsPort } from "./port.js";
import { logValue } from "../behaviors/req.js";
import type { HttpReq } from "./req.js";
import { forgetPeername } from "./ws-internals.js";

/** A refusal: the status and headers the client gets instead of the 101. */
export interface Refusal {
  readonly status: number;
  readonly headers: Record<string, string>;
}

/**
 * Checks the request as cowboy_websocket:upgrade does (docs/websocket.md, The handshake):
 * not an upgrade → 426; a bad method, key or version → 400; an Origin the route does not
 * allow → 403 (corral's addition). Undefined: it may become a WebSocket.
 */
export function refuseUpgrade(req: HttpReq, hasSocket: boolean, opts: ResolvedWebSocketOptions): Refusal | undefined {
  const connection = req.headers["connection"] ?? "";
  const isUpgrade = hasSocket && req.version === "HTTP/1.1" && hasToken(connection, "upgrade") && (req.headers["upgrade"] ?? "").toLowerCase() === "websocket";
  if (!isUpgrade) {
    // node keeps a connection alive when the response names "upgrade" only: say close when the client did.
    const close = hasToken(connection, "close") || (req.version !== "HTTP/1.1" && !hasToken(connection, "keep-alive"));
    return { status: 426, headers: { connection: close ? "upgrade, close" : "upgrade", upgrade: "websocket" } };
  }
  if (req.method !== "GET" || req.headers["sec-websocket-key"] === undefined || req.headers["sec-websocket-version"] !== "13") {
    return { status: 400, headers: {} };
  }
  const origin = req.header("origin");
  if (opts.allowedOrigins !== undefined && origin !== undefined && !opts.allowedOrigins.has(origin.toLowerCase())) return { status: 403, headers: {} };
  return undefined;
}

/** Whether a comma-separated header value lists `token` (given in lower case), in any case. */
export function hasToken(value: string, token: string): boolean {
  for (let start = 0; start <= value.length; ) {
    let end = value.indexOf(",", start);
    if (end < 0) end = value.length;
    if (value.slice(start, end).trim().toLowerCase() === token) return true;
    start = end + 1;
  }
  return false;
}

/** Cowboy picks no subprotocol by itself, and neither does a browser forgive none: say so once per such upgrade. */
export function warnNoSubprotocol(req: HttpReq, handler: string, logger: Logger): void {
  if (req.headers["sec-websocket-protocol"] === undefined || req.respHeaders.get("sec-websocket-protocol") !== undefined) return;
  const offered = req.parseHeader("sec-websocket-protocol") ?? [];
  if (offered.length === 0) return;
  logger.warn(
    { handler, offered: logValue(offered) },
    "the client offered subprotocols and init chose none: browsers will fail this connection (set the sec-websocket-protocol response header in init)",
  );
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
    // The connection process answers pings itself, in frame order (docs/websocket.md, pings).
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
export function completeUpgrade(req: HttpReq, raw: IncomingMessage, socket: Duplex, head: Buffer, opts: ResolvedWebSocketOptions, ports: PortSet<WsPort>): WsPort | null {
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
  forgetPeername(socket);
  port.open(ports.group(opts.idleTimeout), opts);
  return port;
}
