// cowboy_handler: the request process that runs init, then replies, upgrades (cowboy_websocket) or loops (cowboy_loop).
import { CorralError, describe } from "../runtime/errors.js";
import { limit } from "../runtime/validate.js";
import type { Logger } from "../runtime/log.js";
import type { Pid, Ref } from "../runtime/pid.js";
import { currentProcess, spawnProcess, type ProcessLoop, type Process } from "../runtime/process.js";
import { applyResult, isThenable } from "../runtime/result.js";
import type { ExitReason } from "../runtime/signals.js";
import { cancelTimer, sendAfter } from "../runtime/timers.js";
import { terminateReasonOf } from "./close.js";
import type { Loop, LoopHandler } from "./loop.js";
import { logValue, RequestError, type HttpOk, type PartialReq, type Req } from "./req.js";
import {
  resolveWebSocketOptions,
  spawnConnection,
  type ResolvedWebSocketOptions,
  type TerminateReason,
  type Upgrade,
  type WebSocketHandler,
  type WebSocketPort,
} from "./websocket.js";

/**
 * What a handler of any kind may declare about the opts its routes give it: they reach init on
 * every request, so a bad one is better refused once, when the routes are compiled.
 */
export interface RouteOptsCheck {
  /**
   * Runs once per route, in compileRoutes, with the route's opts (undefined when it gives
   * none). Throw to refuse them, naming the option: compileRoutes then fails with ERR_BADARG
   * naming the route and your message.
   */
  checkOpts?(opts: unknown): void;
}

/** Cowboy's plain HTTP handler (cowboy_handler): init replies and returns ok. */
export interface HttpHandler<S = unknown, Opts = unknown> extends RouteOptsCheck {
  init(req: Req, opts: Opts): HttpOk<S> | PromiseLike<HttpOk<S>>;
  terminate?(reason: TerminateReason, req: PartialReq, state: S): void;
}

/** Anything a route may name: init decides what the request becomes. */
export interface Handler<Opts = unknown> extends RouteOptsCheck {
  init(req: Req, opts: Opts): unknown;
  terminate?(reason: TerminateReason, req: PartialReq, state: never): void;
}

/**
 * @internal What the server hands a request process: the Req and the ways to answer that
 * only the server can do (the handshake belongs to src/server, which owns ws and the socket).
 */
export interface Exchange {
  readonly req: Req;
  /**
   * cowboy_websocket:upgrade: refuses the request (426, 400, 403) or writes the 101 with the
   * Req's response headers and returns the port; null when it was refused or the socket died first.
   */
  upgrade(opts: ResolvedWebSocketOptions, handler: string): WebSocketPort | null;
  /** Calls back once if the client goes away before the response is complete. */
  onClientGone(callback: () => void): void;
  /** Ends a streamed response, if one is open. */
  endStream(): void;
  /** Cuts the connection when a response started and cannot be completed (a crash mid-stream); a complete one is left alone. */
  abort(): void;
  readonly logger: Logger;
  /** Calls back when the listener stops, before it waits for requests in flight (a bullet session ends with it); returns the cancel. */
  onListenerStop?(callback: () => void): () => void;
}


/** The runtime's own messages to a looping request process. */
const LOOP_TIMEOUT = Symbol("loop timeout");
const CLIENT_GONE = Symbol("client gone");

/**
 * The request process: runs init, then answers, upgrades, or fails with 500; a loop handler
 * keeps it alive (cowboy_loop). self() inside init is this process, not a WebSocket
 * connection's (Cowboy #1041).
 */
class Request implements ProcessLoop {
  readonly receiveLoop = false;
  readonly name: string;
  readonly logger: Logger;
  private readonly handler: Handler;
  private readonly opts: unknown;
  readonly exchange: Exchange;
  private state: unknown = undefined;
  /** terminate already ran for the handler (plain HTTP), or belongs to the connection now. */
  private done = false;
  /** Set once init returned loop(...): messages go to handler.info. */
  private looping = false;
  private loopTimeout = Infinity;
  private loopTimer: Ref | null = null;
  /** Why a loop is ending, for terminate. */
  private ending: TerminateReason | undefined = undefined;

  constructor(handler: Handler, opts: unknown, exchange: Exchange, name: string) {
    this.handler = handler;
    this.opts = opts;
    this.exchange = exchange;
    this.name = name;
    this.logger = exchange.logger;
  }

  start(p: Process): PromiseLike<unknown> | void {
    let r: unknown;
    try {
      r = this.handler.init(this.exchange.req, this.opts);
    } catch (err) {
      return this.failed(p, err);
    }
    if (isThenable(r)) return r.then((v) => this.initDone(p, v), (err: unknown) => this.failed(p, err));
    return this.initDone(p, r);
  }

  /**
   * init or info threw or rejected. The client's fault (a RequestError: body too large, cut
   * off or too slow, a malformed header or query string) is answered with its status and
   * ends the request quietly, as Cowboy's request_error; anything else is a crash.
   */
  private failed(p: Process, err: unknown): void {
    if (!(err instanceof RequestError)) throw err;
    const req = this.exchange.req;
    this.logger.debug({ handler: this.name, code: err.code, status: err.status, reason: logValue(err.message) }, "request refused: the client's fault");
    if (!req.replied) req.reply(err.status);
    else this.exchange.abort();
    this.done = true;
    this.handler.terminate?.({ error: err.reason }, req, (this.looping ? p.liveState() : this.state) as never);
    p.stopSelf("normal");
  }

  private initDone(p: Process, r: unknown): PromiseLike<unknown> | void {
    const type = typeof r === "object" && r !== null ? (r as { type?: unknown }).type : undefined;
    if (type === "upgrade") return this.upgrade(p, r as Upgrade<unknown>);
    if (type === "loop") return this.startLoop(p, r as Loop<unknown>);
    if (type !== "ok" || !("state" in (r as object))) {
      throw new CorralError("ERR_BAD_RESULT", `${this.name}.init returned ${describe(r)}; expected upgrade(req, state, opts?) or { type: "ok", req, state }`);
    }
    this.state = (r as HttpOk<unknown>).state;
    const req = this.exchange.req;
    if (!req.replied) req.reply(204);
    else this.exchange.endStream();
    this.done = true;
    this.handler.terminate?.("normal", req, this.state as never);
    p.stopSelf("normal");
  }

  private upgrade(p: Process, r: Upgrade<unknown>): void {
    const handler = this.handler as unknown as WebSocketHandler<unknown, unknown, unknown>;
    if (typeof handler.websocketHandle !== "function") {
      throw new CorralError("ERR_BAD_RESULT", `${this.name}.init returned upgrade(...) but the handler has no websocketHandle`);
    }
    this.state = r.state;
    const opts = resolveWebSocketOptions(r.opts);
    // From here terminate belongs to the connection, or (a refusal) does not run, as in cowboy_websocket:upgrade.
    this.done = true;
    const port = this.exchange.upgrade(opts, this.name);
    if (port !== null) spawnConnection(handler, this.name, r.state, port, this.exchange.req, opts, this.logger);
    p.stopSelf("normal");
  }

  private startLoop(p: Process, r: Loop<unknown>): void {
    const handler = this.handler as unknown as LoopHandler;
    if (typeof handler.info !== "function") {
      throw new CorralError("ERR_BAD_RESULT", `${this.name}.init returned loop(...) but the handler has no info callback`);
    }
    const timeout = limit(r.opts?.timeout ?? Infinity, "loop: timeout must be a number of ms > 0");
    this.looping = true;
    this.loopTimeout = timeout;
    p.state = r.state;
    this.exchange.onClientGone(() => p.deliver(CLIENT_GONE));
    this.armLoopTimer(p);
    if (r.opts?.hibernate === true) p.requestHibernate();
  }

  private armLoopTimer(p: Process): void {
    if (this.loopTimer !== null) cancelTimer(this.loopTimer);
    this.loopTimer = this.loopTimeout === Infinity ? null : sendAfter(this.loopTimeout, p.pid, LOOP_TIMEOUT);
  }

  /** A message for a looping request: the runtime's own, or the handler's info. */
  handle(p: Process, msg: unknown): PromiseLike<unknown> | void {
    if (!this.looping) return;
    if (msg === CLIENT_GONE) return this.endLoop(p, { error: "closed" });
    if (msg === LOOP_TIMEOUT) return this.endLoop(p, "timeout");
    this.armLoopTimer(p);
    const req = this.exchange.req;
    let r: unknown;
    try {
      r = (this.handler as unknown as LoopHandler).info(msg, req, p.state);
    } catch (err) {
      return this.failed(p, err);
    }
    if (isThenable(r)) return r.then((v) => this.afterInfo(p, v), (err: unknown) => this.failed(p, err));
    this.afterInfo(p, r);
  }

  private afterInfo(p: Process, r: unknown): void {
    applyResult(p, r, "info");
    if (p.exitSignal !== undefined) this.ending = "stop";
  }

  private endLoop(p: Process, reason: TerminateReason): void {
    this.ending = reason;
    p.stopSelf("normal");
  }

  /** The end of a request process: answer what was left unanswered, then terminate with the reason. */
  terminate(p: Process, reason: ExitReason): void {
    if (this.done) return;
    const req = this.exchange.req;
    const crashed = typeof reason === "object" && "crash" in reason;
    if (this.looping && !crashed && reason !== "killed") {
      // A loop that ends normally: whatever it did not send yet becomes 204 or the end of its stream.
      if (!req.replied) req.reply(204);
      else this.exchange.endStream();
    } else if (!req.replied) {
      req.reply(crashed ? 500 : 503);
    } else {
      // The status is out and the body cannot be finished truthfully: the client must see it cut.
      this.exchange.abort();
    }
    if (reason === "killed") return;
    const why = this.ending ?? terminateReasonOf(reason);
    this.handler.terminate?.(why, req, (this.looping ? p.liveState() : this.state) as never);
  }
}

/** @internal The exchange of the request process running now (a handler's init), if it is one. */
export function currentExchange(): Exchange | undefined {
  const loop = currentProcess()?.loop;
  return loop instanceof Request ? loop.exchange : undefined;
}

/** @internal Spawns the request process for one matched request. */
export function spawnRequest(handler: Handler, opts: unknown, exchange: Exchange, name: string): Pid {
  return spawnProcess(new Request(handler, opts, exchange, name), undefined, undefined).pid;
}
