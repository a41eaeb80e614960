// cowboy_websocket:upgrade: whether a request becomes a WebSocket, and the 101 that makes it one.
import { hash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocket, WebSocketServer, type ServerOptions } from "ws";
import type { ResolvedWebSocketOptions } from "../behaviors/websocket.js";
import type { Logger } from "../runtime/log.js";
import type { PortSet } from "./idle.js";
import { WsPort } from "./port.js";
import { logValue } from "../behaviors/req.js";
import { headerLines, type HttpReq } from "./req.js";
import { attachSocket, forgetPeername, parseSubprotocols, setProtocol } from "./ws-internals.js";

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
  if (opts.allowedOrigins === undefined) return undefined;
  const origin = req.headers["origin"];
  if (origin !== undefined && !opts.allowedOrigins.has(origin.toLowerCase())) return { status: 403, headers: {} };
  return undefined;
}

/** Whether a comma-separated header value lists `token` (given in lower case), in any case. */
export function hasToken(value: string, token: string): boolean {
  // The usual header is the one token alone: no pieces to cut.
  if (value.length === token.length && value.toLowerCase() === token) return true;
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

/**
 * The 'error' listener of a socket nobody else listens to: until the 101 (init may take its
 * time), or after an answer that ends it. A reset then ends that socket (it destroys itself
 * on an error), not the node, as an 'error' event without a listener would; the request
 * process finds it destroyed (the upgrade returns null, a reply is dropped). ws has its own
 * listener once the socket is handed over, and completeUpgrade takes this one off.
 */
export function ignoreSocketError(): void {}

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
    // ws joins its lines with CRLF: the Req's lines go in as one, without the last CRLF.
    const extra = upgrading === null ? "" : headerLines(upgrading.respHeaders, "sec-websocket-protocol");
    if (extra !== "") headers.push(extra.slice(0, -2));
  });
  return wss;
}

function onUpgraded(ws: WebSocket): void {
  upgraded = ws as WsPort;
}

/** RFC 6455's key: 16 bytes in base64, as ws checks it. */
const KEY = /^[+/0-9A-Za-z]{22}==$/;
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/**
 * Completes the handshake and returns the port, or null when it was refused or the socket
 * died first. The usual request gets its 101 written here, byte for byte as ws writes it,
 * and the socket goes to a port as ws's handleUpgrade would hand it over; anything ws would
 * refuse or negotiate (a malformed key or subprotocol list, a permessage-deflate offer with
 * compress on) goes through ws's handleUpgrade, which answers it as it always has.
 */
export function completeUpgrade(req: HttpReq, raw: IncomingMessage | undefined, socket: Duplex, head: Buffer, opts: ResolvedWebSocketOptions, ports: PortSet<WsPort>): WsPort | null {
  if (!socket.readable || !socket.writable) return null;
  const port = writeSwitch(req, socket, head, opts) ?? wsUpgrade(req, raw, socket, head, opts);
  if (port === null) return null;
  req.replied = true;
  socket.off("error", ignoreSocketError);
  forgetPeername(socket);
  port.open(ports.group(opts.idleTimeout), opts);
  return port;
}

/** The 101 for a request ws would accept without negotiating: undefined when ws must decide. */
function writeSwitch(req: HttpReq, socket: Duplex, head: Buffer, opts: ResolvedWebSocketOptions): WsPort | undefined {
  const headers = req.headers;
  const key = headers["sec-websocket-key"]!;
  if (!KEY.test(key) || (opts.compress && headers["sec-websocket-extensions"] !== undefined)) return undefined;
  let protocol = "";
  const offered = headers["sec-websocket-protocol"];
  if (offered !== undefined) {
    if (parseSubprotocols(offered) === undefined) return undefined;
    const chosen = req.respHeaders.get("sec-websocket-protocol");
    if (chosen !== undefined) protocol = String(chosen);
  }
  let text = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${hash("sha1", key + GUID, "base64")}\r\n`;
  if (protocol !== "") text += `Sec-WebSocket-Protocol: ${protocol}\r\n`;
  if (req.respHeaders.size > 0) text += headerLines(req.respHeaders, "sec-websocket-protocol");
  const wss = serverFor(opts);
  const port = new WsPort(null, undefined, wss.options);
  if (protocol !== "") setProtocol(port, protocol);
  socket.write(`${text}\r\n`);
  attachSocket(port, socket, head, wss.options);
  return port;
}

/**
 * ws's own handshake: without a verifyClient ws decides within the call, so the answer is
 * known when it returns. A head read by head.ts has no IncomingMessage: without verifyClient
 * and a path, ws reads only the method and the headers of the one it is given.
 */
function wsUpgrade(req: HttpReq, raw: IncomingMessage | undefined, socket: Duplex, head: Buffer, opts: ResolvedWebSocketOptions): WsPort | null {
  upgrading = req;
  try {
    serverFor(opts).handleUpgrade(raw ?? ({ method: req.method, headers: req.headers } as IncomingMessage), socket, head, onUpgraded);
  } finally {
    upgrading = null;
  }
  const port = upgraded;
  upgraded = null;
  return port;
}
