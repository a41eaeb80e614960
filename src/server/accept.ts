// Ranch's acceptor handing a connection to its protocol (cowboy_http:init): a new connection's first read decides who parses it.
//
// The usual WebSocket upgrade arrives whole in the connection's first read: head.ts reads it
// and the listener routes it at once, without node:http's parser, IncomingMessage and socket
// listeners. Anything else (another request, a head split over reads, bytes after it, a
// malformed one) goes to node:http with the bytes read put back, as if it had had the socket
// from the start: its limits, timeouts and answers stay its own.
import type { Server } from "node:http";
import type { Socket } from "node:net";
import { parseUpgradeHead, type UpgradeHead } from "./head.js";
import { ignoreSocketError } from "./upgrade.js";

/** How often connections that have sent nothing yet are checked against requestTimeout: node:http's connectionsCheckingInterval in corral. */
const CHECK_MS = 1000;

/** What the listener does with a connection's first read. */
export interface FirstReadTarget {
  readonly maxHeaderSize: number;
  readonly requestTimeout: number;
  /** The head of a usual upgrade, read whole; the socket is paused, its errors ignored until the 101. */
  onUpgradeHead(socket: Socket, head: UpgradeHead): void;
  /** What node:http's 'clientError' does: the listener's own handler. */
  onClientError(err: Error & { code?: string }, socket: Socket): void;
}

/** The error node:http gives a connection that sent no complete head within headersTimeout. */
function timeoutError(): Error & { code: string } {
  return Object.assign(new Error("Request timeout"), { code: "ERR_HTTP_REQUEST_TIMEOUT" });
}

/**
 * Takes node:http's connection listener off `server` and reads each new connection's first
 * chunk in its place. Undefined when the server is not built as this node's http and https
 * servers are (one listener on the event): node:http keeps every connection then.
 */
export function takeFirstReads(server: Server, event: "connection" | "secureConnection", target: FirstReadTarget): FirstReads | undefined {
  const own = server.listeners(event);
  if (own.length !== 1) return undefined;
  const http = own[0] as (this: Server, socket: Socket) => void;
  server.removeListener(event, http);
  const reads = new FirstReads(server, http, target);
  server.on(event, (socket: Socket) => reads.accept(socket));
  return reads;
}

/** The connections of one listener that have not sent anything yet, and what to do with their first read. */
export class FirstReads {
  /** Each waiting socket and when it was accepted (ms). */
  private readonly waiting = new Map<Socket, number>();
  private readonly server: Server;
  private readonly http: (this: Server, socket: Socket) => void;
  private readonly target: FirstReadTarget;
  private readonly check: NodeJS.Timeout;
  /** Socket listeners, made once per listener: `this` is the socket. */
  private readonly onData: (this: Socket, chunk: Buffer) => void;
  private readonly onEnd: (this: Socket) => void;
  private readonly onError: (this: Socket, err: Error) => void;

  constructor(server: Server, http: (this: Server, socket: Socket) => void, target: FirstReadTarget) {
    this.server = server;
    this.http = http;
    this.target = target;
    const reads = this;
    this.onData = function (chunk) {
      reads.firstRead(this, chunk);
    };
    this.onEnd = function () {
      // A client that leaves without a byte: node:http ends its side too (no half-open HTTP).
      reads.release(this);
      this.on("error", ignoreSocketError);
      this.end();
    };
    this.onError = function (err) {
      reads.release(this);
      this.on("error", ignoreSocketError);
      target.onClientError(err, this);
    };
    this.check = setInterval(() => this.checkTimeouts(), CHECK_MS).unref();
  }

  accept(socket: Socket): void {
    this.waiting.set(socket, Date.now());
    socket.on("data", this.onData);
    socket.on("end", this.onEnd);
    socket.on("error", this.onError);
  }

  private release(socket: Socket): void {
    this.waiting.delete(socket);
    socket.removeListener("data", this.onData);
    socket.removeListener("end", this.onEnd);
    socket.removeListener("error", this.onError);
  }

  private firstRead(socket: Socket, chunk: Buffer): void {
    this.release(socket);
    // Nothing more is read until the handshake hands the socket over (or node:http takes it).
    socket.pause();
    const head = parseUpgradeHead(chunk, this.target.maxHeaderSize);
    if (head !== undefined) {
      socket.on("error", ignoreSocketError);
      this.target.onUpgradeHead(socket, head);
      return;
    }
    // node:http's listener leaves a paused socket paused: resumed after it, the socket hands it
    // the chunk put back (next tick) before any later read, which its parser may take from the handle itself.
    socket.unshift(chunk);
    this.http.call(this.server, socket);
    socket.resume();
  }

  /** node:http's headersTimeout for a connection that sent nothing: 408 through the listener's clientError, as node does. */
  private checkTimeouts(): void {
    const now = Date.now();
    const limit = this.target.requestTimeout;
    // A waiting socket leaves the map at its first read, its end or its error: each one here is still open.
    for (const [socket, since] of this.waiting) {
      if (now - since <= limit) continue;
      this.release(socket);
      socket.on("error", ignoreSocketError);
      this.target.onClientError(timeoutError(), socket);
    }
  }

  /**
   * The listener stops: node:http stops checking its connections' deadlines then, and
   * destroys those that sent nothing at shutdownTimeout (destroyWaiting).
   */
  stop(): void {
    clearInterval(this.check);
  }

  destroyWaiting(): void {
    for (const socket of this.waiting.keys()) socket.destroy();
    this.waiting.clear();
  }
}
