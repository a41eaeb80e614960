import { CorralError, badarg, describe } from "../runtime/errors.js";
import type { StateStore } from "../runtime/hibernate.js";
import type { Logger } from "../runtime/log.js";
import type { Pid, Ref } from "../runtime/pid.js";
import { spawnActor, type Actor, type ExitReason, type Process } from "../runtime/process.js";
import { isThenable, type HibernateOption, type Ok, type Stop } from "../runtime/result.js";
import { cancelTimer, sendAfter } from "../runtime/timers.js";
import { checkFrame, ReceivedFrame, type Frame, type InFrame } from "./frames.js";
import type { HttpOk, PartialReq, Req } from "./req.js";

/* ---------------------------------------------------------------- the behaviour */

/** Cowboy's cowboy_websocket behaviour: the callbacks a WebSocket handler module exports. */
export interface WebSocketHandler<S, Opts = unknown, Info = unknown> {
  /** Runs in the short-lived request process: self() here is not the connection's pid. */
  init(req: Req, opts: Opts): InitResult<S> | PromiseLike<InitResult<S>>;
  /** Runs in the connection process after the 101, before the first frame is read. */
  websocketInit?(state: S): CallResult<S>;
  websocketHandle(frame: InFrame, state: S): CallResult<S>;
  /** Every message sent to the connection's pid. */
  websocketInfo?(info: Info, state: S): CallResult<S>;
  terminate?(reason: TerminateReason, req: PartialReq, state: S): void;
}

/** Cowboy's {cowboy_websocket, Req, State, Opts}. */
export interface Upgrade<S> {
  readonly type: "upgrade";
  readonly req: Req;
  readonly state: S;
  readonly opts: WebSocketOptions | undefined;
}

export type InitResult<S> = Upgrade<S> | HttpOk<S>;

export function upgrade<S>(req: Req, state: S, opts?: WebSocketOptions): Upgrade<S> {
  return { type: "upgrade", req, state, opts };
}

export interface Reply<S> {
  readonly type: "reply";
  readonly frames: Frame | readonly Frame[];
  readonly state: S;
  readonly hibernate?: boolean;
}

export interface Commands<S> {
  readonly type: "commands";
  readonly commands: readonly Command[];
  readonly state: S;
  readonly hibernate?: boolean;
}

export type WebSocketResult<S> = Ok<S> | Reply<S> | Commands<S> | Stop<S>;
export type CallResult<S> = WebSocketResult<S> | PromiseLike<WebSocketResult<S>>;

/** Cowboy's {reply, Frames, State}: the frames go out in one socket write. */
export function reply<S>(frames: Frame | readonly Frame[], state: S, opts?: HibernateOption): Reply<S> {
  return { type: "reply", frames, state, hibernate: opts?.hibernate === true };
}

/** Cowboy's {Commands, State}: run in list order. */
export function commands<S>(cmds: readonly Command[], state: S, opts?: HibernateOption): Commands<S> {
  return { type: "commands", commands: cmds, state, hibernate: opts?.hibernate === true };
}

export type Command =
  | Frame
  | { readonly active: boolean }
  | { readonly deflate: boolean }
  | { readonly setOptions: { readonly idleTimeout?: number; readonly maxFrameSize?: number } }
  | { readonly shutdownReason: unknown };

export type TerminateReason =
  | "normal"
  | "stop"
  | "timeout"
  | "remote"
  | "shutdown"
  | { readonly remote: { readonly code: number; readonly reason: string } }
  | { readonly error: "badencoding" | "badframe" | "badsize" | "closed" | "backpressure" | (string & {}) }
  | { readonly crash: Error }
  | { readonly shutdown: unknown };

/** The 4th element of Cowboy's upgrade tuple. Infinity disables a limit. */
export interface WebSocketOptions {
  /** Close with 1000 after this many ms without receiving a byte. Default 60000. */
  readonly idleTimeout?: number;
  /** Largest payload accepted (frame, reassembled message, inflated message); above → 1009. Default 1,000,000. */
  readonly maxFrameSize?: number;
  /** Negotiate permessage-deflate. Default false. */
  readonly compress?: boolean;
  /** Invalid UTF-8 in text frames and close reasons → 1007. Default true; false passes it through. */
  readonly validateUtf8?: boolean;
  /** Builds what terminate gets instead of the default filtered Req. */
  readonly reqFilter?: (req: Req) => PartialReq;
  /** Close with 1008 when more than this many bytes wait to be written. Default 4 MiB. */
  readonly maxBufferedAmount?: number;
  /** Where hibernated state goes (default: a v8-serialized buffer). */
  readonly stateStore?: StateStore;
  /**
   * Origins a browser may open this WebSocket from (e.g. "https://example.com"); any other
   * Origin gets 403 before the upgrade (cross-site WebSocket hijacking). Requests without an
   * Origin header (non-browser clients) pass. Default: any origin, as in Cowboy.
   */
  readonly allowedOrigins?: readonly string[];
}

export interface ResolvedWebSocketOptions {
  readonly idleTimeout: number;
  readonly maxFrameSize: number;
  readonly compress: boolean;
  readonly validateUtf8: boolean;
  readonly reqFilter: ((req: Req) => PartialReq) | undefined;
  readonly maxBufferedAmount: number;
  readonly stateStore: StateStore | undefined;
  readonly allowedOrigins: ReadonlySet<string> | undefined;
}

export const DEFAULT_MAX_BUFFERED_AMOUNT = 4 * 1024 * 1024;

function limit(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || Number.isNaN(value) || value <= 0) throw badarg(`websocket option ${name}: expected a number > 0 or Infinity, got ${describe(value)}`);
  return value;
}

function flag(value: unknown, name: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") throw badarg(`websocket option ${name}: expected a boolean, got ${describe(value)}`);
  return value;
}

const KNOWN_OPTIONS = new Set(["idleTimeout", "maxFrameSize", "compress", "validateUtf8", "reqFilter", "maxBufferedAmount", "stateStore", "allowedOrigins"]);

/** Origins compare as browsers send them: scheme://host[:port], lower-case, no trailing slash. */
function originsOf(value: unknown): ReadonlySet<string> | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || !value.every((o) => typeof o === "string" && /^[a-z][a-z0-9+.-]*:\/\/[^/]+$/i.test(o.replace(/\/$/, "")))) {
    throw badarg(`websocket option allowedOrigins: expected a list like ["https://example.com"], got ${describe(value)}`);
  }
  return new Set(value.map((o: string) => o.replace(/\/$/, "").toLowerCase()));
}

/** Validates the options once, where init hands them over. */
export function resolveWebSocketOptions(opts: WebSocketOptions | undefined): ResolvedWebSocketOptions {
  if (opts !== undefined && (typeof opts !== "object" || opts === null)) throw badarg(`websocket options: expected an object, got ${describe(opts)}`);
  for (const key of Object.keys(opts ?? {})) if (!KNOWN_OPTIONS.has(key)) throw badarg(`websocket options: unknown option ${JSON.stringify(key)}`);
  const reqFilter = opts?.reqFilter;
  if (reqFilter !== undefined && typeof reqFilter !== "function") throw badarg(`websocket option reqFilter: expected a function, got ${describe(reqFilter)}`);
  return {
    idleTimeout: limit(opts?.idleTimeout, "idleTimeout", 60_000),
    maxFrameSize: limit(opts?.maxFrameSize, "maxFrameSize", 1_000_000),
    compress: flag(opts?.compress, "compress", false),
    validateUtf8: flag(opts?.validateUtf8, "validateUtf8", true),
    reqFilter,
    maxBufferedAmount: limit(opts?.maxBufferedAmount, "maxBufferedAmount", DEFAULT_MAX_BUFFERED_AMOUNT),
    stateStore: opts?.stateStore,
    allowedOrigins: originsOf(opts?.allowedOrigins),
  };
}

/* ---------------------------------------------------------------- the port */

/**
 * The connection's socket, as the actor sees it. src/server implements it with ws; the
 * port delivers ReceivedFrame and PortClosed messages to the connection's pid.
 */
export interface WebSocketPort {
  /** Starts delivering to pid. Reading stays paused until resume(). */
  attach(pid: Pid): void;
  /** Sends a frame; the frames of one turn of the run loop leave in one socket write. */
  send(frame: Exclude<Frame, { type: "close" }>, compress: boolean): void;
  /** Sends a close frame (empty when code is undefined); the socket ends after it. */
  close(code: number | undefined, reason: string | undefined): void;
  /** Drops the socket without a close frame. */
  destroy(): void;
  pause(): void;
  resume(): void;
  /** Reading stopped because the mailbox passed its high-water mark (inbound flow control). */
  readonly throttled: boolean;
  /** The mailbox drained: reading may go on. */
  unthrottle(): void;
  setMaxFrameSize(bytes: number): void;
  /** Bytes queued but not yet written to the socket. */
  readonly bufferedAmount: number;
  /** performance.now() when bytes last arrived. */
  readonly lastActivity: number;
}

/**
 * @internal The port's word that the connection is over: the client closed, the socket
 * broke, or a frame was bad. `settle` is the transport's own answer (echo the close, send
 * 1002…), held back until the connection reaches this point of its mailbox, so the replies
 * to frames that came before it go out first, as in Cowboy.
 */
export class PortClosed {
  constructor(
    readonly reason: TerminateReason,
    readonly settle: (() => void) | undefined = undefined,
  ) {}
}

/* ---------------------------------------------------------------- the connection process */

/** A throttled socket is read again once the mailbox is down to this. */
const MAILBOX_LOW_WATER = 256;

/** The runtime's own message: time to look at the idle clock. */
const IDLE_CHECK = Symbol("idle check");

/** Cowboy's close codes by terminate reason (COWBOY.md); undefined: nothing to send. */
function closeCodeFor(reason: TerminateReason): number | "destroy" | undefined {
  if (typeof reason === "string") {
    if (reason === "stop" || reason === "timeout") return 1000;
    if (reason === "shutdown") return 1001;
    return undefined;
  }
  if ("crash" in reason) return 1011;
  if ("shutdown" in reason) return 1001;
  if ("error" in reason && reason.error === "backpressure") return 1008;
  return undefined;
}

function fromExit(reason: ExitReason): TerminateReason {
  if (typeof reason === "string") return reason === "shutdown" ? "shutdown" : { error: reason };
  if ("crash" in reason) return reason;
  return { shutdown: reason.shutdown };
}

function defaultFilter(req: Req): PartialReq {
  const { method, version, scheme, host, port, path, qs, peer } = req;
  return { method, version, scheme, host, port, path, qs, peer };
}

/**
 * One WebSocket connection (cowboy_websocket's loop): frames and infos in arrival order,
 * results turned into socket writes, every way out gathered in terminate.
 */
class Connection<S> implements Actor {
  readonly receiveLoop = false;
  readonly name: string;
  readonly logger: Logger;
  private readonly handler: WebSocketHandler<S, unknown, unknown>;
  private readonly port: WebSocketPort;
  private readonly req: PartialReq;
  private idleTimeout: number;
  private readonly maxBufferedAmount: number;
  private idleTimer: Ref | null = null;
  private deflate: boolean;
  /** Why the connection is ending, once known; terminate reads it. */
  private ending: TerminateReason | undefined = undefined;
  private closeSent = false;
  private shutdownReason: unknown = undefined;
  private active = true;

  constructor(
    handler: WebSocketHandler<S, unknown, unknown>,
    name: string,
    port: WebSocketPort,
    req: Req,
    opts: ResolvedWebSocketOptions,
    logger: Logger,
  ) {
    this.handler = handler;
    this.name = name;
    this.logger = logger;
    this.port = port;
    this.req = (opts.reqFilter ?? defaultFilter)(req);
    this.idleTimeout = opts.idleTimeout;
    this.maxBufferedAmount = opts.maxBufferedAmount;
    this.deflate = opts.compress;
  }

  start(p: Process, state: unknown): PromiseLike<unknown> | void {
    p.state = state;
    this.port.attach(p.pid);
    this.armIdle(p, this.idleTimeout);
    const init = this.handler.websocketInit;
    if (init === undefined) {
      this.port.resume();
      return;
    }
    const r = init.call(this.handler, state as S);
    if (isThenable(r)) return r.then((v) => this.afterInit(p, v));
    this.afterInit(p, r);
  }

  /** Reading starts only now, so websocketInit can answer {active: false} first. */
  private afterInit(p: Process, r: unknown): void {
    this.apply(p, r, "websocketInit");
    if (this.active && this.ending === undefined) this.port.resume();
  }

  handle(p: Process, msg: unknown): PromiseLike<unknown> | void {
    if (this.port.throttled && p.queueLength <= MAILBOX_LOW_WATER) this.port.unthrottle();
    let r: CallResult<S>;
    let callback: string;
    if (msg instanceof ReceivedFrame) {
      callback = "websocketHandle";
      // Answered here, not by ws on arrival, so the pong follows the replies to earlier frames.
      if (msg.type === "ping") this.port.send({ type: "pong", data: msg.data as Uint8Array }, false);
      r = this.handler.websocketHandle(msg as InFrame, p.state as S);
    } else if (msg instanceof PortClosed) {
      msg.settle?.();
      this.end(p, msg.reason);
      return;
    } else if (msg === IDLE_CHECK) {
      this.checkIdle(p);
      return;
    } else {
      const info = this.handler.websocketInfo;
      if (info === undefined) return;
      callback = "websocketInfo";
      r = info.call(this.handler, msg, p.state as S);
    }
    if (isThenable(r)) return r.then((v) => this.apply(p, v, callback));
    this.apply(p, r, callback);
  }

  /** Applies a callback's result: new state, frames and commands in order, hibernate. */
  private apply(p: Process, r: unknown, callback: string): void {
    if (this.ending !== undefined) return;
    if (typeof r !== "object" || r === null || !("state" in r)) throw badResult(this.name, callback, r);
    const result = r as WebSocketResult<S>;
    switch (result.type) {
      case "ok":
        p.state = result.state;
        break;
      case "reply":
        p.state = result.state;
        this.run(p, Array.isArray(result.frames) ? (result.frames as readonly Frame[]) : [result.frames as Frame], callback);
        break;
      case "commands":
        p.state = result.state;
        if (!Array.isArray(result.commands)) throw badResult(this.name, callback, r);
        this.run(p, result.commands, callback);
        break;
      case "stop":
        p.state = result.state;
        this.end(p, "stop");
        return;
      default:
        throw badResult(this.name, callback, r);
    }
    if (result.hibernate === true && this.ending === undefined) p.requestHibernate();
  }

  /** Runs commands in list order; checked first, so a bad one sends nothing. */
  private run(p: Process, cmds: readonly Command[], callback: string): void {
    let last = cmds.length;
    for (let i = 0; i < cmds.length; i++) {
      const kind = checkCommand(cmds[i], this.name, callback);
      if (kind === "close") {
        last = i + 1;
        break;
      }
    }
    const port = this.port;
    for (let i = 0; i < last; i++) {
      const cmd = cmds[i]!;
      if ("type" in cmd) {
        if (cmd.type === "close") {
          port.close(cmd.code, cmd.reason);
          this.closeSent = true;
          this.end(p, "stop");
          return;
        }
        port.send(cmd, this.deflate);
      } else if ("active" in cmd) {
        this.active = cmd.active;
        if (cmd.active) port.resume();
        else port.pause();
      } else if ("deflate" in cmd) {
        this.deflate = cmd.deflate;
      } else if ("setOptions" in cmd) {
        this.setOptions(p, cmd.setOptions);
      } else {
        this.shutdownReason = cmd.shutdownReason;
      }
    }
    if (port.bufferedAmount > this.maxBufferedAmount) this.end(p, { error: "backpressure" });
  }

  private setOptions(p: Process, opts: { readonly idleTimeout?: number; readonly maxFrameSize?: number }): void {
    if (opts.maxFrameSize !== undefined) this.port.setMaxFrameSize(opts.maxFrameSize);
    if (opts.idleTimeout !== undefined) {
      this.idleTimeout = opts.idleTimeout;
      this.armIdle(p, opts.idleTimeout);
    }
  }

  /** One timer per connection, re-armed from the port's clock: received bytes cost no timer work. */
  private armIdle(p: Process, ms: number): void {
    if (this.idleTimer !== null) cancelTimer(this.idleTimer);
    this.idleTimer = ms === Infinity ? null : sendAfter(ms, p.pid, IDLE_CHECK);
  }

  private checkIdle(p: Process): void {
    this.idleTimer = null;
    if (this.idleTimeout === Infinity) return;
    const idle = performance.now() - this.port.lastActivity;
    if (idle >= this.idleTimeout) this.end(p, "timeout");
    else this.armIdle(p, Math.ceil(this.idleTimeout - idle));
  }

  /** Every way out comes here first: remember why, then let the runtime end the process. */
  private end(p: Process, reason: TerminateReason): void {
    if (this.ending !== undefined) return;
    this.ending = reason;
    p.stopSelf(this.shutdownReason === undefined ? "normal" : { shutdown: this.shutdownReason });
  }

  /** The close paths, gathered: the frame Cowboy sends for the reason, then the handler's terminate. */
  terminate(p: Process, exit: ExitReason): void {
    const reason = this.ending ?? fromExit(exit);
    const code = exit === "killed" ? "destroy" : closeCodeFor(reason);
    if (code === "destroy") this.port.destroy();
    else if (code !== undefined && !this.closeSent) this.port.close(code, undefined);
    if (exit !== "killed") this.handler.terminate?.(reason, this.req, p.liveState() as S);
  }
}


function badResult(name: string, callback: string, value: unknown): CorralError {
  return new CorralError(
    "ERR_BAD_RESULT",
    `${name}.${callback} returned ${describe(value)}; expected ok(state), reply(frames, state), commands(cmds, state) or stop(state)`,
  );
}

function badCommand(name: string, callback: string, value: unknown): CorralError {
  return new CorralError("ERR_BAD_RESULT", `${name}.${callback}: invalid command ${describe(value)}`);
}

/** Validates one command; returns "close" for a close frame (the list ends there). */
function checkCommand(cmd: unknown, name: string, callback: string): "close" | "other" {
  if (typeof cmd !== "object" || cmd === null) throw badCommand(name, callback, cmd);
  if ("type" in cmd) {
    try {
      checkFrame(cmd as Frame);
    } catch (err) {
      throw new CorralError("ERR_BAD_RESULT", `${name}.${callback}: ${(err as Error).message}`);
    }
    return (cmd as Frame).type === "close" ? "close" : "other";
  }
  const keys = Object.keys(cmd);
  if (keys.length !== 1) throw badCommand(name, callback, cmd);
  const value = (cmd as Record<string, unknown>)[keys[0]!];
  switch (keys[0]) {
    case "active":
    case "deflate":
      if (typeof value !== "boolean") throw badCommand(name, callback, cmd);
      return "other";
    case "shutdownReason":
      return "other";
    case "setOptions": {
      if (typeof value !== "object" || value === null) throw badCommand(name, callback, cmd);
      for (const [k, v] of Object.entries(value)) {
        if ((k !== "idleTimeout" && k !== "maxFrameSize") || typeof v !== "number" || Number.isNaN(v) || v <= 0) {
          throw badCommand(name, callback, cmd);
        }
      }
      return "other";
    }
    default:
      throw badCommand(name, callback, cmd);
  }
}

/**
 * @internal Starts the connection process for an upgraded request; the request process
 * ends after this. websocketInit runs before the port reads a frame.
 */
export function spawnConnection<S>(
  handler: WebSocketHandler<S, unknown, unknown>,
  name: string,
  state: S,
  port: WebSocketPort,
  req: Req,
  opts: ResolvedWebSocketOptions,
  logger: Logger,
): Pid {
  const conn = new Connection(handler, name, port, req, opts, logger);
  return spawnActor(conn, state, { stateStore: opts.stateStore }).pid;
}
