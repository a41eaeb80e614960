/**
 * State-machine handlers: an xstate v5 machine as a WebSocket handler (API.md §6), Erlang's
 * gen_statem the TypeScript way.
 *
 * - Frames and infos become machine events (`ws.text`, `ws.binary`, `ws.ping`, `ws.pong`;
 *   an info that is an object with a string `type` goes in as is, anything else as `ws.info`).
 * - Actions talk to the connection through the helpers below (wsReply, wsCommands, wsClose,
 *   wsStop, wsHibernate, sendToPid); what they produce during one callback leaves as that
 *   callback's commands, in one socket write.
 * - Delays (`after`, delayed raise/sendTo) run on the runtime's timers through an xstate
 *   `clock` that aims sendAfter at the connection's own pid: they die with the connection.
 * - Hibernation persists `getPersistedSnapshot()` plus the pending delays (absolute due
 *   times) as plain data; the actor is dropped and rebuilt on the next message, and the
 *   delays are re-armed with the time that was left (xstate does not, statelyai/xstate#5331).
 * - A final state closes with 1000 (or its output's `code`); an error in the machine is a
 *   crash: 1011, terminate, one crash report.
 */
import {
  createActor,
  type ActionArgs,
  type ActionFunction,
  type Actor as XActor,
  type AnyActorRef,
  type AnyStateMachine,
  type ContextFrom,
  type EventObject,
  type InputFrom,
  type MachineContext,
  type ParameterizedObject,
  type Snapshot,
} from "xstate";
import { CorralError, badarg, describe } from "../runtime/errors.js";
import { runtimeLogger } from "../runtime/log.js";
import type { Pid, Ref } from "../runtime/pid.js";
import { currentProcess, self, send } from "../runtime/process.js";
import { isThenable, type Ok } from "../runtime/result.js";
import { cancelTimer, sendAfter } from "../runtime/timers.js";
import { close, type CloseFrame, type Frame, type InFrame } from "./frames.js";
import type { PartialReq, Req } from "./req.js";
import {
  resolveWebSocketOptions,
  upgrade,
  type CallResult,
  type Command,
  type InitResult,
  type TerminateReason,
  type WebSocketHandler,
  type WebSocketOptions,
  type WebSocketResult,
} from "./websocket.js";

/* ---------------------------------------------------------------- events */

/** A text frame from the client. */
export interface WsTextEvent {
  readonly type: "ws.text";
  readonly data: string;
}
/** A binary frame from the client. */
export interface WsBinaryEvent {
  readonly type: "ws.binary";
  readonly data: Uint8Array;
}
/** A ping from the client (already answered with a pong by the connection). */
export interface WsPingEvent {
  readonly type: "ws.ping";
  readonly data: Uint8Array;
}
/** A pong from the client. */
export interface WsPongEvent {
  readonly type: "ws.pong";
  readonly data: Uint8Array;
}
/** Every frame event. */
export type WsFrameEvent = WsTextEvent | WsBinaryEvent | WsPingEvent | WsPongEvent;
/** A message sent to the connection's pid that is not an object with a string `type`. */
export interface WsInfoEvent<T = unknown> {
  readonly type: "ws.info";
  readonly data: T;
}
/** The events a machine handler sends its machine, besides infos that are events already. */
export type WsEvent<Info = unknown> = WsFrameEvent | WsInfoEvent<Info>;

/** The frame types' event names. */
const FRAME_EVENT = { text: "ws.text", binary: "ws.binary", ping: "ws.ping", pong: "ws.pong" } as const;

/* ---------------------------------------------------------------- options */

/** What a final state's output may name: the close frame's code and reason. */
export interface MachineOutput {
  readonly code?: number;
  readonly reason?: string;
}

export interface MachineHandlerOptions<TMachine extends AnyStateMachine, Opts = unknown> {
  /**
   * The machine's input, picked from the Req in init (the short-lived request process:
   * self() is not the connection there). May reply (`req.reply(401)`) to refuse the
   * upgrade; may return a promise.
   */
  readonly input?: (req: Req, opts: Opts) => InputFrom<TMachine> | PromiseLike<InputFrom<TMachine>>;
  /** The upgrade's options (idleTimeout, maxFrameSize, …), fixed or per request. */
  readonly websocket?: WebSocketOptions | ((req: Req, opts: Opts) => WebSocketOptions | undefined);
  /**
   * Hibernate after every event: the actor is dropped and its persisted snapshot evicted
   * until the next message. Default false (ask per event with the wsHibernate() action).
   */
  readonly hibernate?: boolean;
  /** Runs once when the connection ends, with the machine's last context (undefined if it never started). */
  readonly terminate?: (reason: TerminateReason, req: PartialReq, context: ContextFrom<TMachine> | undefined) => void;
}

const KNOWN_OPTIONS = new Set(["input", "websocket", "hibernate", "terminate"]);

/* ---------------------------------------------------------------- connection state */

declare const machineStateBrand: unique symbol;
/** A machine handler's connection state: the live actor, or its persisted snapshot while hibernated. Opaque. */
export interface MachineState {
  readonly [machineStateBrand]: "MachineState";
}

/** Between init (request process) and websocketInit (connection process). Plain data. */
interface Starting {
  readonly starting: true;
  readonly input: unknown;
}

/** A delay that was pending when the machine hibernated; actors named by their id path from the root. */
interface SavedDelay {
  readonly source: readonly string[];
  readonly target: readonly string[];
  readonly event: EventObject;
  readonly id: string;
  /** performance.now() ms when it is due. */
  readonly due: number;
}

/** A hibernated machine: plain data (and one Ref, which hibernation keeps by identity). */
interface Hibernated {
  readonly snapshot: Snapshot<unknown>;
  readonly delays: readonly SavedDelay[];
  /** The timer that wakes the connection when the first delay is due. */
  readonly wake: Ref | null;
}

/** The runtime message that wakes a hibernated machine whose delay is due. */
const WAKE = Symbol("machine wake");
/** The runtime message that returns what actions produced outside a callback (a promise settled). */
const FLUSH = Symbol("machine flush");

/** One xstate timeout on the runtime's wheel; the message sendAfter delivers is the timer itself. */
class MachineTimer {
  fn: (() => void) | null;
  ref: Ref | null = null;
  constructor(fn: () => void) {
    this.fn = fn;
  }
}

/** Connection → its live machine, by actor system (what action helpers are given). */
const connections = new WeakMap<object, Live>();

function hibernatedOk(state: Hibernated): Ok<MachineState> {
  return { type: "ok", state: state as unknown as MachineState, hibernate: true };
}

function machineLog(pid: Pid, machineId: string): (...args: unknown[]) => void {
  return (...args) => runtimeLogger().info({ pid: pid.toString(), machine: machineId, log: args.length === 1 ? args[0] : args }, "machine log");
}

/**
 * The live machine of one connection: the xstate actor, the xstate clock (its timeouts are
 * runtime timers aimed at the connection's pid), and what actions produced this callback.
 */
class Live {
  actor!: XActor<AnyStateMachine>;
  /** Frames and commands the actions produced since the last callback returned. */
  out: Command[] | null = null;
  /** A close frame is in `out`: nothing more to do for this connection. */
  closing = false;
  hibernateNext = false;
  /** True while a connection callback runs; actions outside one (a promise settled) queue a FLUSH. */
  inCallback = false;
  flushQueued = false;
  failure: { readonly error: unknown } | null = null;
  detached = false;
  /** While re-arming on wake: delays already due are collected here and fired after. */
  dueNow: MachineTimer[] | null = null;
  /** ok(this), built once: the hot path returns it without allocating. */
  readonly okResult: Ok<MachineState>;

  constructor(
    readonly pid: Pid,
    readonly spec: Spec,
  ) {
    this.okResult = { type: "ok", state: this as unknown as MachineState, hibernate: false };
  }

  /* -- xstate's clock: timeouts are runtime timers to our own pid, so they die with us */

  setTimeout(fn: () => void, ms: number): MachineTimer {
    const t = new MachineTimer(fn);
    if (this.dueNow !== null && ms <= 0) this.dueNow.push(t);
    else t.ref = sendAfter(ms, this.pid, t);
    return t;
  }

  clearTimeout(t: unknown): void {
    if (!(t instanceof MachineTimer)) return;
    t.fn = null;
    if (t.ref !== null) cancelTimer(t.ref);
    t.ref = null;
  }

  /* -- the actor's observer: errors and completion that happen outside a callback ask for a FLUSH */

  error(err: unknown): void {
    if (this.failure === null) this.failure = { error: err };
    this.wantFlush();
  }

  complete(): void {
    if (this.actor.getSnapshot().status === "done") this.wantFlush();
  }

  /* -- lifecycle */

  start(opts: { input?: unknown; snapshot?: Snapshot<unknown> }): void {
    const { machine } = this.spec;
    this.actor = createActor(machine, { ...opts, clock: this, logger: machineLog(this.pid, machine.id) });
    connections.set(this.actor.system, this);
    this.actor.subscribe(this);
    this.actor.start();
  }

  /** Puts back the delays that were pending at hibernation, with the time that was left. */
  rearm(delays: readonly SavedDelay[]): void {
    if (delays.length === 0) return;
    const root = this.actor as AnyActorRef;
    const scheduler = this.actor.system.scheduler;
    const now = performance.now();
    const due: MachineTimer[] = (this.dueNow = []);
    try {
      for (const d of delays) {
        const source = resolvePath(root, d.source);
        const target = resolvePath(root, d.target);
        if (source === undefined || target === undefined) continue;
        // Known to xstate's scheduler again, so leaving the state cancels it as before.
        scheduler.schedule(source, target, d.event, Math.max(0, Math.ceil(d.due - now)), d.id);
      }
    } finally {
      this.dueNow = null;
    }
    for (const t of due) {
      const fn = t.fn;
      if (fn === null) continue;
      t.fn = null;
      fn();
    }
  }

  /** Sends one event and turns what the actions produced into the callback's result. */
  dispatch(event: EventObject): WebSocketResult<MachineState> {
    this.inCallback = true;
    try {
      this.actor.send(event);
    } finally {
      this.inCallback = false;
    }
    return this.finish();
  }

  fire(t: MachineTimer): WebSocketResult<MachineState> {
    const fn = t.fn;
    if (fn === null) return this.okResult;
    t.fn = null;
    t.ref = null;
    this.inCallback = true;
    try {
      fn();
    } finally {
      this.inCallback = false;
    }
    return this.finish();
  }

  /** The callback's result: a crash, a close for a final state, the frames, and maybe hibernation. */
  finish(): WebSocketResult<MachineState> {
    if (this.failure !== null) throw this.failure.error;
    let out = this.out;
    const snap = this.actor.getSnapshot();
    if (snap.status === "done") {
      this.out = null;
      if (!this.closing) (out ??= []).push(closeFor(snap.output));
      this.closing = true;
      return { type: "commands", commands: out ?? [], state: this as unknown as MachineState, hibernate: false };
    }
    // As the runtime does: hibernation happens only with an empty mailbox (more mail would wake it at once).
    const sleep = (this.hibernateNext || this.spec.hibernate) && !this.closing;
    this.hibernateNext = false;
    if (sleep && (currentProcess()?.queueLength ?? 0) === 0) {
      const frozen = this.freeze();
      if (frozen !== null) {
        this.out = null;
        return out === null ? hibernatedOk(frozen) : { type: "commands", commands: out, state: frozen as unknown as MachineState, hibernate: true };
      }
    }
    if (out === null) return this.okResult;
    this.out = null;
    return { type: "commands", commands: out, state: this as unknown as MachineState, hibernate: false };
  }

  /**
   * The plain-data form: the persisted snapshot and the pending delays with their due
   * times; the actor is stopped (its runtime timers cancelled) and dropped, and one runtime
   * timer wakes the connection when the first delay is due. Null when a delay's actors
   * cannot be named (it stays live).
   */
  freeze(): Hibernated | null {
    const actor = this.actor;
    const scheduled = actor.system.getSnapshot()._scheduledEvents;
    const delays: SavedDelay[] = [];
    const wallNow = Date.now();
    const now = performance.now();
    let first = Infinity;
    for (const key in scheduled) {
      const s = scheduled[key]!;
      const source = pathOf(s.source, actor);
      const target = pathOf(s.target, actor);
      if (source === null || target === null) {
        this.spec.warnOnce(`a delayed event between actors outside the machine's tree (${describe(s.event.type)}) cannot be persisted; the machine stays live`);
        return null;
      }
      const due = now + (s.startedAt + s.delay - wallNow);
      if (due < first) first = due;
      delays.push({ source, target, event: s.event, id: s.id, due });
    }
    // In due order, so delays that are overdue at the wake-up fire in the order they were due.
    if (delays.length > 1) delays.sort((a, b) => a.due - b.due);
    const snapshot = actor.getPersistedSnapshot();
    this.detach();
    const wake = delays.length === 0 ? null : sendAfter(Math.max(0, Math.ceil(first - now)), this.pid, WAKE);
    return { snapshot, delays, wake };
  }

  /** Stops the actor; its clock's timers go with it. Actions can no longer reach the connection. */
  detach(): void {
    if (this.detached) return;
    this.detached = true;
    this.actor.stop();
  }

  /* -- what action helpers call */

  push(item: Command | readonly Command[] | undefined): void {
    if (this.detached || this.closing || item === undefined) return;
    const out = (this.out ??= []);
    if (isCommandList(item)) {
      for (const c of item) {
        out.push(c);
        if (isClose(c)) {
          this.closing = true;
          break;
        }
      }
    } else {
      out.push(item);
      if (isClose(item)) this.closing = true;
    }
    this.wantFlush();
  }

  hibernate(): void {
    this.hibernateNext = true;
    this.wantFlush();
  }

  private wantFlush(): void {
    if (this.inCallback || this.flushQueued || this.detached) return;
    this.flushQueued = true;
    send(this.pid, FLUSH);
  }
}

function isCommandList(v: Command | readonly Command[]): v is readonly Command[] {
  return Array.isArray(v);
}

function isClose(c: Command): c is CloseFrame {
  return (c as { type?: unknown }).type === "close";
}

/** A final state's close frame: 1000, or the code (and reason) its output names. */
function closeFor(output: unknown): CloseFrame {
  if (typeof output === "object" && output !== null) {
    const { code, reason } = output as { code?: unknown; reason?: unknown };
    if (typeof code === "number") return close(code, typeof reason === "string" ? reason : undefined);
  }
  return close(1000);
}

/** The ids from the root down to ref; null when ref is not in the root's tree. */
function pathOf(ref: AnyActorRef, root: AnyActorRef): string[] | null {
  const path: string[] = [];
  let r: AnyActorRef | undefined = ref;
  while (r !== root) {
    if (r === undefined) return null;
    path.push(r.id);
    r = r._parent;
  }
  return path.reverse();
}

function resolvePath(root: AnyActorRef, path: readonly string[]): AnyActorRef | undefined {
  let r: AnyActorRef | undefined = root;
  for (const id of path) {
    const children: Record<string, AnyActorRef | undefined> | undefined = (r.getSnapshot() as { children?: Record<string, AnyActorRef | undefined> }).children;
    r = children?.[id];
    if (r === undefined) return undefined;
  }
  return r;
}

/** An info as an event: an object with a string type goes in as is (xstate's own `xstate.*` names excepted). */
function infoEvent(info: unknown): EventObject {
  if (typeof info === "object" && info !== null) {
    const type = (info as { type?: unknown }).type;
    if (typeof type === "string" && !type.startsWith("xstate.")) return info as EventObject;
  }
  const event: WsInfoEvent = { type: "ws.info", data: info };
  return event;
}

function isHibernated(state: unknown): state is Hibernated {
  return typeof state === "object" && state !== null && "snapshot" in state && "delays" in state;
}

function isStarting(state: unknown): state is Starting {
  return typeof state === "object" && state !== null && (state as { starting?: unknown }).starting === true;
}

/* ---------------------------------------------------------------- the handler */

/** What one machineHandler(...) call fixes for all its connections. */
class Spec {
  private warned = false;
  constructor(
    readonly machine: AnyStateMachine,
    readonly hibernate: boolean,
  ) {}

  warnOnce(msg: string): void {
    if (this.warned) return;
    this.warned = true;
    runtimeLogger().warn({ machine: this.machine.id }, `machineHandler: ${msg}`);
  }
}

/** Brings a hibernated machine back: the actor from its snapshot, then its delays re-armed. */
function wakeUp(spec: Spec, h: Hibernated): Live {
  if (h.wake !== null) cancelTimer(h.wake);
  const live = new Live(self(), spec);
  live.inCallback = true;
  try {
    live.start({ snapshot: h.snapshot });
    if (live.failure === null) live.rearm(h.delays);
  } finally {
    live.inCallback = false;
  }
  return live;
}

/** The live machine for a callback, waking it if it sleeps. */
function liveOf(spec: Spec, state: unknown, callback: string): Live {
  if (state instanceof Live) return state;
  if (isHibernated(state)) return wakeUp(spec, state);
  throw new CorralError("ERR_BAD_RESULT", `machineHandler(${spec.machine.id}).${callback}: the connection state is not a machine's (${describe(state)})`);
}

/**
 * Turns an xstate v5 machine into a WebSocketHandler: frames and infos become events, the
 * machine's actions send frames (wsReply, …), its delays run on the runtime's timers, and
 * hibernation persists its snapshot. The machine starts in websocketInit: the initial
 * state's entry actions are the connection's first words.
 */
export function machineHandler<TMachine extends AnyStateMachine, Opts = unknown>(
  machine: TMachine,
  options: MachineHandlerOptions<TMachine, Opts> = {},
): WebSocketHandler<MachineState, Opts> {
  const m = machine as unknown as { transition?: unknown; getInitialSnapshot?: unknown; getPersistedSnapshot?: unknown; id?: unknown };
  if (typeof machine !== "object" || machine === null || typeof m.transition !== "function" || typeof m.getInitialSnapshot !== "function" || typeof m.getPersistedSnapshot !== "function") {
    throw badarg(`machineHandler: expected an xstate v5 machine (createMachine or setup(...).createMachine), got ${describe(machine)}`);
  }
  if (typeof options !== "object" || options === null) throw badarg(`machineHandler: options must be an object, got ${describe(options)}`);
  for (const key of Object.keys(options)) if (!KNOWN_OPTIONS.has(key)) throw badarg(`machineHandler: unknown option ${JSON.stringify(key)}`);
  const { input, websocket, terminate } = options;
  if (input !== undefined && typeof input !== "function") throw badarg(`machineHandler option input: expected a function (req, opts) => input, got ${describe(input)}`);
  if (terminate !== undefined && typeof terminate !== "function") throw badarg(`machineHandler option terminate: expected a function, got ${describe(terminate)}`);
  if (websocket !== undefined && typeof websocket !== "function") {
    if (typeof websocket !== "object" || websocket === null) throw badarg(`machineHandler option websocket: expected WebSocketOptions or a function returning them, got ${describe(websocket)}`);
    resolveWebSocketOptions(websocket); // a bad option throws here, where it is given
  }
  if (options.hibernate !== undefined && typeof options.hibernate !== "boolean") throw badarg(`machineHandler option hibernate: expected a boolean, got ${describe(options.hibernate)}`);
  const spec = new Spec(machine, options.hibernate === true);

  const upgraded = (req: Req, opts: Opts, value: unknown): InitResult<MachineState> => {
    const starting: Starting = { starting: true, input: value };
    const state = starting as unknown as MachineState;
    // input replied (a refusal): answer HTTP, no upgrade.
    if (req.replied) return { type: "ok", req, state };
    const wsOpts = typeof websocket === "function" ? websocket(req, opts) : websocket;
    return upgrade(req, state, wsOpts);
  };

  return {
    init(req, opts): InitResult<MachineState> | PromiseLike<InitResult<MachineState>> {
      const value = input === undefined ? undefined : input(req, opts);
      if (isThenable(value)) return Promise.resolve(value).then((v) => upgraded(req, opts, v));
      return upgraded(req, opts, value);
    },

    websocketInit(state): CallResult<MachineState> {
      if (!isStarting(state)) return liveOf(spec, state, "websocketInit").finish();
      const live = new Live(self(), spec);
      live.inCallback = true;
      try {
        live.start({ input: state.input });
      } finally {
        live.inCallback = false;
      }
      return live.finish();
    },

    websocketHandle(frame: InFrame, state): CallResult<MachineState> {
      return liveOf(spec, state, "websocketHandle").dispatch({ type: FRAME_EVENT[frame.type], data: frame.data } as WsFrameEvent);
    },

    websocketInfo(info, state): CallResult<MachineState> {
      if (info instanceof MachineTimer) {
        // A timeout of the live actor; one of an actor since dropped (hibernation) is stale.
        if (state instanceof Live) return state.fire(info);
        return isHibernated(state) ? hibernatedOk(state) : { type: "ok", state };
      }
      if (info === FLUSH || info === WAKE) {
        if (state instanceof Live) {
          if (info === FLUSH) state.flushQueued = false;
          return state.finish();
        }
        // A wake-up rebuilds the actor (firing what is due); a late flush for a dropped actor has nothing.
        if (info === FLUSH && isHibernated(state)) return hibernatedOk(state);
        return liveOf(spec, state, "websocketInfo").finish();
      }
      return liveOf(spec, state, "websocketInfo").dispatch(infoEvent(info));
    },

    terminate(reason, req, state): void {
      let context: unknown = undefined;
      if (state instanceof Live) {
        context = (state.actor?.getSnapshot() as { context?: unknown } | undefined)?.context;
        if (state.actor !== undefined) state.detach();
      } else if (isHibernated(state)) {
        context = (state.snapshot as { context?: unknown }).context;
        if (state.wake !== null) cancelTimer(state.wake);
      }
      terminate?.(reason, req, context as ContextFrom<TMachine> | undefined);
    },
  };
}

/* ---------------------------------------------------------------- action helpers */

/** An expression an action helper evaluates when the action runs, typed by where it is used. */
export type MachineExpr<
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TParams extends ParameterizedObject["params"] | undefined,
  TEvent extends EventObject,
  R,
> = (args: ActionArgs<TContext, TExpressionEvent, TEvent>, params: TParams) => R;

/** The action type every helper returns: the machine's context and events flow in from where it is used. */
export type MachineAction<
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TParams extends ParameterizedObject["params"] | undefined,
  TEvent extends EventObject,
> = ActionFunction<TContext, TExpressionEvent, TEvent, TParams, never, never, never, never, never>;

function liveFor(system: unknown, helper: string): Live {
  const live = connections.get(system as object);
  if (live === undefined) {
    throw new CorralError(
      "ERR_NOT_IN_PROCESS",
      `${helper}(): this machine is not running as a connection; use it in a machine given to machineHandler(...)`,
    );
  }
  return live;
}

/**
 * Sends frames to the client: a frame, a list, or an expression of the context and event
 * (returning undefined sends nothing). They leave when the current callback returns, in
 * one socket write with the rest of its frames.
 */
export function wsReply<
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TParams extends ParameterizedObject["params"] | undefined,
  TEvent extends EventObject,
>(
  frames: Frame | readonly Frame[] | MachineExpr<TContext, TExpressionEvent, TParams, TEvent, Frame | readonly Frame[] | undefined>,
): MachineAction<TContext, TExpressionEvent, TParams, TEvent> {
  return function wsReply(args, params) {
    const live = liveFor(args.system, "wsReply");
    live.push(typeof frames === "function" ? frames(args, params) : frames);
  };
}

/** Runs connection commands (Cowboy's): frames, { active }, { deflate }, { setOptions }, { shutdownReason }. */
export function wsCommands<
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TParams extends ParameterizedObject["params"] | undefined,
  TEvent extends EventObject,
>(
  cmds: Command | readonly Command[] | MachineExpr<TContext, TExpressionEvent, TParams, TEvent, Command | readonly Command[] | undefined>,
): MachineAction<TContext, TExpressionEvent, TParams, TEvent> {
  return function wsCommands(args, params) {
    const live = liveFor(args.system, "wsCommands");
    live.push(typeof cmds === "function" ? cmds(args, params) : cmds);
  };
}

/** Closes the connection with this code and reason (after the frames sent before it); terminate gets "stop". */
export function wsClose<
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TParams extends ParameterizedObject["params"] | undefined,
  TEvent extends EventObject,
>(code?: number, reason?: string): MachineAction<TContext, TExpressionEvent, TParams, TEvent> {
  const frame = close(code, reason);
  return function wsClose(args) {
    liveFor(args.system, "wsClose").push(frame);
  };
}

const STOP_FRAME = close(1000);

/** Cowboy's stop: closes with 1000 once the frames sent before it are out; terminate gets "stop". */
export function wsStop<
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TParams extends ParameterizedObject["params"] | undefined,
  TEvent extends EventObject,
>(): MachineAction<TContext, TExpressionEvent, TParams, TEvent> {
  return function wsStop(args) {
    liveFor(args.system, "wsStop").push(STOP_FRAME);
  };
}

/**
 * Hibernates the connection after this event: the actor is dropped, its persisted snapshot
 * and pending delays evicted from the heap until the next message (or the first delay).
 */
export function wsHibernate<
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TParams extends ParameterizedObject["params"] | undefined,
  TEvent extends EventObject,
>(): MachineAction<TContext, TExpressionEvent, TParams, TEvent> {
  return function wsHibernate(args) {
    liveFor(args.system, "wsHibernate").hibernate();
  };
}

/**
 * Erlang's `!` from an action: sends msg to a pid or registered name (each may be an
 * expression of the context and event). Works in any machine, connection or not.
 */
export function sendToPid<
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TParams extends ParameterizedObject["params"] | undefined,
  TEvent extends EventObject,
  M = unknown,
>(
  dest: Pid | string | MachineExpr<TContext, TExpressionEvent, TParams, TEvent, Pid | string>,
  msg: M | MachineExpr<TContext, TExpressionEvent, TParams, TEvent, M>,
): MachineAction<TContext, TExpressionEvent, TParams, TEvent> {
  return function sendToPid(args, params) {
    const to = typeof dest === "function" ? dest(args, params) : dest;
    const value = typeof msg === "function" ? (msg as MachineExpr<TContext, TExpressionEvent, TParams, TEvent, M>)(args, params) : msg;
    send(to, value);
  };
}
