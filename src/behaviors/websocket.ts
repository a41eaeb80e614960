// cowboy_websocket: the behavior (its callbacks, results, commands and options) and the connection process's loop.
import { CallMessage, refuseUnhandled } from "../runtime/call.js";
import { CorralError, badarg, describe } from "../runtime/errors.js";
import { flag, knownKeys, limit } from "../runtime/validate.js";
import type { StateStore } from "../runtime/hibernate.js";
import type { Logger } from "../runtime/log.js";
import type { Pid } from "../runtime/pid.js";
import { spawnProcess, type ProcessLoop, type Process } from "../runtime/process.js";
import { isThenable, type HibernateOption, type Ok, type Stop } from "../runtime/result.js";
import { closeCodeFor, terminateReasonOf } from "./close.js";
import { closeCodes, countOne, terminateReasons } from "../runtime/stats.js";
import type { SystemMessage } from "../runtime/messages.js";
import type { ExitReason } from "../runtime/signals.js";
import { checkFrame, inboundCost, ReceivedFrame, type Frame, type InFrame } from "./frames.js";
import type { HttpOk, PartialReq, Req } from "./req.js";
import type { RouteOptsCheck } from "./request.js";

/* ---------------------------------------------------------------- the behavior */

/**
 * Cowboy's cowboy_websocket behaviour: the callbacks a WebSocket handler module exports.
 * S is the connection's state, Opts what its routes give init, Info what the app sends its pid.
 */
export interface WebSocketHandler<S, Opts = unknown, Info = unknown> extends RouteOptsCheck {
  /** Runs in the short-lived request process: self() here is not the connection's pid. */
  init(req: Req, opts: Opts): InitResult<S> | PromiseLike<InitResult<S>>;
  /** Runs in the connection process after the 101, before the first frame is read. */
  websocketInit?(state: S): CallResult<S>;
  websocketHandle(frame: InFrame, state: S): CallResult<S>;
  /**
   * Every message sent to the connection's pid: yours (Info), or one of the runtime's own
   * (SystemMessage: a timer's timeout, a monitor's DOWN, a trapped EXIT, a call to answer).
   */
  websocketInfo?(info: Info | SystemMessage, state: S): CallResult<S>;
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
  /** Close with 1008 when more than this many bytes wait to be written (replies, pongs, every frame). Default 4 MiB. */
  readonly maxBufferedAmount?: number;
  /**
   * Stop reading the socket while the received frames waiting in the mailbox hold more than
   * this many bytes (after inflating; characters for text); read again once it is down to a
   * quarter. Default 1 MiB.
   */
  readonly maxQueuedBytes?: number;
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
  readonly maxQueuedBytes: number;
  readonly stateStore: StateStore | undefined;
  readonly allowedOrigins: ReadonlySet<string> | undefined;
}

export const DEFAULT_MAX_BUFFERED_AMOUNT = 4 * 1024 * 1024;
export const DEFAULT_MAX_QUEUED_BYTES = 1024 * 1024;

const KNOWN_OPTIONS = new Set(["idleTimeout", "maxFrameSize", "compress", "validateUtf8", "reqFilter", "maxBufferedAmount", "maxQueuedBytes", "stateStore", "allowedOrigins"]);

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
  if (opts === undefined) return (defaults ??= Object.freeze(resolveGiven(undefined)));
  return resolveGiven(opts);
}

/** The options of an upgrade that gives none, resolved once. */
let defaults: ResolvedWebSocketOptions | undefined;

function resolveGiven(opts: WebSocketOptions | undefined): ResolvedWebSocketOptions {
  if (opts !== undefined && (typeof opts !== "object" || opts === null)) throw badarg(`websocket options: expected an object, got ${describe(opts)}`);
  if (opts !== undefined) knownKeys(opts, KNOWN_OPTIONS, "websocket options");
  const reqFilter = opts?.reqFilter;
  if (reqFilter !== undefined && typeof reqFilter !== "function") throw badarg(`websocket option reqFilter: expected a function, got ${describe(reqFilter)}`);
  return {
    idleTimeout: limit(opts?.idleTimeout, "websocket option idleTimeout: expected a number > 0 or Infinity", 60_000),
    maxFrameSize: limit(opts?.maxFrameSize, "websocket option maxFrameSize: expected a number > 0 or Infinity", 1_000_000),
    compress: flag(opts?.compress, "websocket option compress: expected a boolean", false),
    validateUtf8: flag(opts?.validateUtf8, "websocket option validateUtf8: expected a boolean", true),
    reqFilter,
    maxBufferedAmount: limit(opts?.maxBufferedAmount, "websocket option maxBufferedAmount: expected a number > 0 or Infinity", DEFAULT_MAX_BUFFERED_AMOUNT),
    maxQueuedBytes: limit(opts?.maxQueuedBytes, "websocket option maxQueuedBytes: expected a number > 0 or Infinity", DEFAULT_MAX_QUEUED_BYTES),
    stateStore: opts?.stateStore,
    allowedOrigins: originsOf(opts?.allowedOrigins),
  };
}

/* ---------------------------------------------------------------- the port */

/**
 * The connection's socket, as the connection process sees it. src/server implements it with ws; the
 * port delivers ReceivedFrame and PortClosed messages to the connection's pid.
 */
export interface WebSocketPort {
  /** Starts delivering to pid. Nothing is read before startReading(). */
  attach(pid: Pid): void;
  /** Reading starts, unless pauseReading() came first. */
  startReading(): void;
  /** Sends a frame: written at once, unless corked. */
  sendFrame(frame: Exclude<Frame, { type: "close" }>): void;
  /** Holds the frames sent from now on until flush(), or at the latest until this turn of the event loop ends: they leave in one socket write. */
  cork(): void;
  /** Writes what cork() held. */
  flush(): void;
  /** Compress the data frames sent from now on (with permessage-deflate negotiated); starts as the compress option. */
  setDeflate(on: boolean): void;
  /** Sends a close frame (empty when code is undefined); the socket ends after it. Only the first is sent. */
  sendClose(code: number | undefined, reason: string | undefined): void;
  /** Drops the socket without a close frame. */
  destroy(): void;
  /** The handler's {active: false}. */
  pauseReading(): void;
  /** The handler's {active: true}. */
  resumeReading(): void;
  /**
   * The connection took a message from its mailbox, `bytes` of it a received frame's
   * (inboundCost; 0 for anything else), `queueLength` left: inbound flow control reads
   * again once the mailbox is down to its low-water marks.
   */
  taken(bytes: number, queueLength: number): void;
  setMaxFrameSize(bytes: number): void;
  /**
   * After this many ms without receiving a byte, the port delivers PortClosed("timeout");
   * Infinity: never. The port starts with the upgrade's idleTimeout.
   */
  setIdleTimeout(ms: number): void;
  /** Bytes queued but not yet written to the socket. */
  readonly bufferedAmount: number;
  /** True for a session's port (bullet), whose ends are not WebSocket closes in the metrics. */
  readonly isSession?: boolean;
  /** A session's port takes its own messages (its transport's DOWN) before the handler sees them: true when it took msg. */
  intercept?(msg: unknown): boolean;
}

/**
 * @internal The port's word that the connection is over: the client closed, the socket
 * broke, a frame was bad, or nothing came for the idle timeout. `settle` is the transport's
 * own answer (echo the close, send 1002…), held back until the connection reaches this
 * point of its mailbox, so the replies to frames that came before it go out first, as in
 * Cowboy.
 */
export class PortClosed {
  constructor(
    readonly reason: TerminateReason,
    readonly settle: (() => void) | undefined = undefined,
  ) {}
}

/* ---------------------------------------------------------------- the connection process */

/** Between the fields of a packed Req: HTTP/1.1 allows no line feed in any of them. */
const SEP = "\n";

/**
 * The default filtered Req, packed into one flat string (about a fifth of the memory of
 * the objects) until terminate asks for it: "method version scheme" (empty for an upgrade's usual
 * GET, HTTP/1.1, http), host, port, path?qs, peer address, peer port. A field that holds a
 * separator keeps the object form.
 */
function packReq(req: Req): string | PartialReq {
  const { method, version, scheme, host, port, path, qs, peer } = req;
  const usual = method === "GET" && version === "HTTP/1.1" && scheme === "http";
  if (
    host.includes(SEP) ||
    path.includes(SEP) ||
    path.includes("?") ||
    qs.includes(SEP) ||
    peer.address.includes(SEP) ||
    (!usual && (!packable(method) || !packable(version)))
  ) {
    return { method, version, scheme, host, port, path, qs, peer: { address: peer.address, port: peer.port } };
  }
  const head = usual ? "" : `${method} ${version} ${scheme}`;
  // join makes one flat string; concatenation would keep a tree of pieces for as long as the connection lives.
  return [head, host, port, qs === "" ? path : `${path}?${qs}`, peer.address, peer.port].join(SEP);
}

/** A method or version that can share the packed head with the others. */
function packable(token: string): boolean {
  return token !== "" && !token.includes(" ") && !token.includes(SEP);
}

function unpackReq(packed: string): PartialReq {
  const [head, host, port, url, address, peerPort] = packed.split(SEP) as [string, string, string, string, string, string];
  const [method, version, scheme]: [string, string, "http" | "https"] = head === "" ? ["GET", "HTTP/1.1", "http"] : (head.split(" ") as [string, string, "http" | "https"]);
  const q = url.indexOf("?");
  const path = q < 0 ? url : url.slice(0, q);
  const qs = q < 0 ? "" : url.slice(q + 1);
  return { method, version, scheme, host, port: Number(port), path, qs, peer: { address, port: Number(peerPort) } };
}

/** What every connection of one route shares: one object instead of four fields each. */
interface ConnectionSpec {
  readonly handler: WebSocketHandler<unknown, unknown, unknown>;
  readonly name: string;
  readonly logger: Logger;
  readonly maxBufferedAmount: number;
}

/** The last spec made for each handler, reused while name, logger and limit stay the same. */
const specs = new WeakMap<object, ConnectionSpec>();

function specFor(handler: WebSocketHandler<unknown, unknown, unknown>, name: string, logger: Logger, maxBufferedAmount: number): ConnectionSpec {
  const known = specs.get(handler);
  if (known !== undefined && known.name === name && known.logger === logger && known.maxBufferedAmount === maxBufferedAmount) return known;
  const spec = { handler, name, logger, maxBufferedAmount };
  specs.set(handler, spec);
  return spec;
}

/** The filtered Req, why the connection is ending and the handler's shutdownReason: read at the end only. */
class ExitNote {
  reason: TerminateReason | undefined = undefined;
  shutdownReason: unknown = undefined;
  constructor(readonly req: PartialReq | string) {}
}

/**
 * One WebSocket connection (cowboy_websocket's loop): frames and infos in arrival order,
 * results turned into socket writes, every way out gathered in terminate.
 */
class Connection<S> implements ProcessLoop {
  private readonly spec: ConnectionSpec;
  private readonly port: WebSocketPort;
  /** What terminate gets (the reqFilter's result, or the default one packed by packReq), in an ExitNote once one is needed. */
  private cold: PartialReq | string | ExitNote;

  constructor(spec: ConnectionSpec, port: WebSocketPort, req: Req, opts: ResolvedWebSocketOptions) {
    this.spec = spec;
    this.port = port;
    this.cold = opts.reqFilter === undefined ? packReq(req) : opts.reqFilter(req);
  }

  get receiveLoop(): boolean {
    return false;
  }

  get name(): string {
    return this.spec.name;
  }

  get logger(): Logger {
    return this.spec.logger;
  }

  private get handler(): WebSocketHandler<S, unknown, unknown> {
    return this.spec.handler as WebSocketHandler<S, unknown, unknown>;
  }

  start(p: Process, state: unknown): PromiseLike<unknown> | void {
    p.state = state;
    this.port.attach(p.pid);
    const handler = this.handler;
    const init = handler.websocketInit;
    if (init === undefined) {
      this.port.startReading();
      return;
    }
    const r = init.call(handler, state as S);
    if (isThenable(r)) return r.then((v) => this.afterInit(p, v));
    this.afterInit(p, r);
  }

  /** Reading starts only now, so websocketInit can answer {active: false} first. */
  private afterInit(p: Process, r: unknown): void {
    this.apply(p, r, "websocketInit");
    if (!this.ending) this.port.startReading();
  }

  handle(p: Process, msg: unknown): PromiseLike<unknown> | void {
    const handler = this.handler;
    let r: CallResult<S>;
    let callback: string;
    if (msg instanceof ReceivedFrame) {
      this.port.taken(inboundCost(msg), p.queueLength);
      callback = "websocketHandle";
      if (msg.type === "ping") {
        // Answered here, not by ws on arrival, so the pong follows the replies to earlier frames.
        this.port.sendFrame({ type: "pong", data: msg.data as Uint8Array });
        // A client that pings and never reads must not make the server buffer its pongs.
        if (this.checkBackpressure(p)) return;
      }
      r = handler.websocketHandle(msg as InFrame, p.state as S);
    } else if (msg instanceof PortClosed) {
      msg.settle?.();
      this.end(p, msg.reason);
      return;
    } else {
      this.port.taken(0, p.queueLength);
      if (this.port.intercept?.(msg) === true) return;
      const info = handler.websocketInfo;
      if (info === undefined) {
        if (msg instanceof CallMessage) refuseUnhandled(msg.from, this.name);
        return;
      }
      callback = "websocketInfo";
      r = info.call(handler, msg, p.state as S);
    }
    if (isThenable(r)) return r.then((v) => this.apply(p, v, callback));
    this.apply(p, r, callback);
  }

  /** Applies a callback's result: new state, frames and commands in order, hibernate. */
  private apply(p: Process, r: unknown, callback: string): void {
    if (this.ending) return;
    if (typeof r !== "object" || r === null || !("state" in r)) throw badResult(this.name, callback, r);
    const result = r as WebSocketResult<S>;
    switch (result.type) {
      case "ok":
        p.state = result.state;
        break;
      case "reply":
        p.state = result.state;
        if (Array.isArray(result.frames)) this.run(p, result.frames as readonly Frame[], callback);
        else this.runOne(p, result.frames as Frame, callback);
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
    if (this.ending) return;
    // The last message of the turn: what it held back goes out now, in one write.
    if (p.queueLength === 0) this.port.flush();
    if (result.hibernate === true) p.requestHibernate();
  }

  /** A reply of one frame, the common case: no list to walk. */
  private runOne(p: Process, frame: Frame, callback: string): void {
    checkCommand(frame, this.name, callback);
    if (p.queueLength > 0) this.port.cork();
    this.runCommand(p, frame);
    this.checkBackpressure(p);
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
    if (last > 1 || p.queueLength > 0) this.port.cork();
    for (let i = 0; i < last; i++) if (this.runCommand(p, cmds[i]!)) return;
    this.checkBackpressure(p);
  }

  /** Cowboy's 1008: more is waiting to be written than the connection may hold. True when that ended it. */
  private checkBackpressure(p: Process): boolean {
    if (this.port.bufferedAmount <= this.spec.maxBufferedAmount) return false;
    this.end(p, { error: "backpressure" });
    return true;
  }

  /** One checked command; true when it was a close frame, which ends the connection. */
  private runCommand(p: Process, cmd: Command): boolean {
    const port = this.port;
    if ("type" in cmd) {
      if (cmd.type === "close") {
        port.sendClose(cmd.code, cmd.reason);
        this.end(p, "stop");
        return true;
      }
      port.sendFrame(cmd);
    } else if ("active" in cmd) {
      if (cmd.active) port.resumeReading();
      else port.pauseReading();
    } else if ("deflate" in cmd) {
      port.setDeflate(cmd.deflate);
    } else if ("setOptions" in cmd) {
      const opts = cmd.setOptions;
      if (opts.maxFrameSize !== undefined) port.setMaxFrameSize(opts.maxFrameSize);
      if (opts.idleTimeout !== undefined) port.setIdleTimeout(opts.idleTimeout);
    } else {
      this.note().shutdownReason = cmd.shutdownReason;
    }
    return false;
  }

  /** end() ran: results and hibernation are ignored from then on. */
  private get ending(): boolean {
    const cold = this.cold;
    return cold instanceof ExitNote && cold.reason !== undefined;
  }

  private note(): ExitNote {
    const cold = this.cold;
    return cold instanceof ExitNote ? cold : (this.cold = new ExitNote(cold));
  }

  /** Every way out comes here first: remember why, then let the runtime end the process. */
  private end(p: Process, reason: TerminateReason): void {
    if (this.ending) return;
    const note = this.note();
    note.reason = reason;
    p.stopSelf(note.shutdownReason === undefined ? "normal" : { shutdown: note.shutdownReason });
  }

  /** The close paths, gathered: the frame Cowboy sends for the reason, then the handler's terminate. */
  terminate(p: Process, exit: ExitReason): void {
    const cold = this.cold;
    const note = cold instanceof ExitNote ? cold : undefined;
    const reason = note?.reason ?? terminateReasonOf(exit);
    const code = exit === "killed" ? undefined : closeCodeFor(reason);
    if (exit === "killed") this.port.destroy();
    else if (code !== undefined) this.port.sendClose(code, undefined);
    countEnd(reason, code, this.port.isSession === true);
    if (exit === "killed") return;
    const filtered = note === undefined ? (cold as PartialReq | string) : note.req;
    const req = typeof filtered === "string" ? unpackReq(filtered) : filtered;
    this.handler.terminate?.(reason, req, p.liveState() as S);
  }
}


/** The terminate reasons a metric labels by name; any other error is "error:other", so labels stay few. */
const KNOWN_ERRORS = new Set(["badencoding", "badframe", "badsize", "closed", "backpressure"]);

/** Counts a connection's end once: its terminate reason, and for a WebSocket the close code it ended with. */
function countEnd(reason: TerminateReason, sent: number | undefined, session: boolean): void {
  let label: string;
  let code = sent;
  if (typeof reason === "string") {
    label = reason;
    if (reason === "remote") code = 1005;
  } else if ("remote" in reason) {
    label = "remote";
    code = reason.remote.code;
  } else if ("error" in reason) label = KNOWN_ERRORS.has(reason.error) ? `error:${reason.error}` : "error:other";
  else label = "crash" in reason ? "crash" : "shutdown";
  countOne(terminateReasons, label);
  if (!session) countOne(closeCodes, code ?? 1006);
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
  const spec = specFor(handler as WebSocketHandler<unknown, unknown, unknown>, name, logger, opts.maxBufferedAmount);
  const conn = new Connection<S>(spec, port, req, opts);
  return spawnProcess(conn, state, { stateStore: opts.stateStore }).pid;
}
