import { CorralError, describe } from "../runtime/errors.js";
import type { Logger } from "../runtime/log.js";
import type { Pid } from "../runtime/pid.js";
import { spawnActor, type Actor, type ExitReason, type Process } from "../runtime/process.js";
import type { HttpOk, PartialReq, Req } from "./req.js";
import {
  resolveWebSocketOptions,
  spawnConnection,
  type ResolvedWebSocketOptions,
  type TerminateReason,
  type Upgrade,
  type WebSocketHandler,
  type WebSocketPort,
} from "./websocket.js";

/** Cowboy's plain HTTP handler (cowboy_handler): init replies and returns ok. */
export interface HttpHandler<S = unknown, Opts = unknown> {
  init(req: Req, opts: Opts): HttpOk<S> | PromiseLike<HttpOk<S>>;
  terminate?(reason: TerminateReason, req: PartialReq, state: S): void;
}

/** Anything a route may name: init decides what the request becomes. */
export interface Handler<Opts = unknown> {
  init(req: Req, opts: Opts): unknown;
  terminate?(reason: TerminateReason, req: PartialReq, state: never): void;
}

/**
 * @internal What the server hands a request process: the Req and the ways to answer that
 * only the server can do (the handshake belongs to src/server, which owns ws and the socket).
 */
export interface Exchange {
  readonly req: Req;
  /** 426 or 400 when the request cannot become a WebSocket (COWBOY.md, Handshake). */
  handshakeError(): { status: number; headers: Record<string, string> } | undefined;
  /** Writes the 101 with the Req's response headers, then gives the port (null if the socket died first). */
  upgrade(opts: ResolvedWebSocketOptions, done: (port: WebSocketPort | null) => void): void;
  /** The subprotocols the client offered, for the missing-subprotocol warning. */
  readonly offeredProtocols: readonly string[];
  /** The response header the handler set for the subprotocol, if any. */
  chosenProtocol(): string | undefined;
  readonly logger: Logger;
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === "object" && v !== null && typeof (v as { then?: unknown }).then === "function";
}

/**
 * The short-lived request process: runs init, then answers, upgrades, or fails with 500.
 * self() inside init is this process, not the connection's (Cowboy #1041).
 */
class Request implements Actor {
  readonly receiveLoop = false;
  readonly name: string;
  readonly logger: Logger;
  private readonly handler: Handler;
  private readonly opts: unknown;
  private readonly exchange: Exchange;
  private state: unknown = undefined;
  /** terminate already ran for the handler (plain HTTP), or belongs to the connection now. */
  private done = false;

  constructor(handler: Handler, opts: unknown, exchange: Exchange, name: string) {
    this.handler = handler;
    this.opts = opts;
    this.exchange = exchange;
    this.name = name;
    this.logger = exchange.logger;
  }

  start(p: Process): PromiseLike<unknown> | void {
    const r = this.handler.init(this.exchange.req, this.opts);
    if (isThenable(r)) return r.then((v) => this.initDone(p, v));
    return this.initDone(p, r);
  }

  private initDone(p: Process, r: unknown): PromiseLike<unknown> | void {
    const type = typeof r === "object" && r !== null ? (r as { type?: unknown }).type : undefined;
    if (type === "upgrade") return this.upgrade(p, r as Upgrade<unknown>);
    if (type !== "ok" || !("state" in (r as object))) {
      throw new CorralError("ERR_BAD_RESULT", `${this.name}.init returned ${describe(r)}; expected upgrade(req, state, opts?) or { type: "ok", req, state }`);
    }
    this.state = (r as HttpOk<unknown>).state;
    const req = this.exchange.req;
    if (!req.replied) req.reply(204);
    this.done = true;
    this.handler.terminate?.("normal", req, this.state as never);
    p.stopSelf("normal");
  }

  private upgrade(p: Process, r: Upgrade<unknown>): PromiseLike<unknown> | void {
    const handler = this.handler as unknown as WebSocketHandler<unknown, unknown, unknown>;
    if (typeof handler.websocketHandle !== "function") {
      throw new CorralError("ERR_BAD_RESULT", `${this.name}.init returned upgrade(...) but the handler has no websocketHandle`);
    }
    this.state = r.state;
    const opts = resolveWebSocketOptions(r.opts);
    const ex = this.exchange;
    const refused = ex.handshakeError();
    if (refused !== undefined) {
      // As cowboy_websocket:upgrade: the refusal is the answer, terminate does not run.
      this.done = true;
      ex.req.reply(refused.status, refused.headers);
      p.stopSelf("normal");
      return;
    }
    if (ex.offeredProtocols.length > 0 && ex.chosenProtocol() === undefined) {
      this.logger.warn(
        { handler: this.name, offered: ex.offeredProtocols },
        "the client offered subprotocols and init chose none: browsers will fail this connection (set the sec-websocket-protocol response header in init)",
      );
    }
    this.done = true;
    return new Promise<void>((resolve) => {
      ex.upgrade(opts, (port) => {
        if (port !== null) spawnConnection(handler, this.name, r.state, port, ex.req, opts, this.logger);
        p.stopSelf("normal");
        resolve();
      });
    });
  }

  /** init crashed or the process was stopped: 500 if nothing was sent, and terminate with the reason. */
  terminate(_p: Process, reason: ExitReason): void {
    if (this.done) return;
    const req = this.exchange.req;
    if (!req.replied) req.reply(typeof reason === "object" && "crash" in reason ? 500 : 503);
    if (reason === "killed") return;
    const why: TerminateReason =
      typeof reason === "string" ? (reason === "shutdown" ? "shutdown" : { error: reason }) : "crash" in reason ? reason : { shutdown: reason.shutdown };
    this.handler.terminate?.(why, req, this.state as never);
  }

  handle(): void {
    // Messages sent to a request process (e.g. to the pid seen in init) are dropped, as its mailbox is never read.
  }
}

/** @internal Spawns the request process for one matched request. */
export function spawnRequest(handler: Handler, opts: unknown, exchange: Exchange, name: string): Pid {
  return spawnActor(new Request(handler, opts, exchange, name), undefined, undefined).pid;
}
