// gen_statem: an xstate v5 machine as a WebSocketHandler (init, handle_event with frames and infos as events, terminate).
/*
 * - Frames and infos become machine events (`ws.text`, `ws.binary`, `ws.ping`, `ws.pong`;
 *   an info that is an object with a string `type` goes in as is, anything else as `ws.info`).
 * - Actions talk to the connection through the helpers of machine-actions.ts (wsReply,
 *   wsCommands, wsClose, wsStop, wsHibernate, sendToPid); what they produce during one
 *   callback leaves as that callback's commands, in one socket write (machine-live.ts).
 * - Delays (`after`, delayed raise/sendTo) run on the runtime's timers through an xstate
 *   `clock` that aims sendAfter at the connection's own pid: they die with the connection.
 * - Hibernation persists `getPersistedSnapshot()` plus the pending delays (absolute due
 *   times) as plain data; the actor is dropped and rebuilt on the next message, and the
 *   delays are re-armed with the time that was left (machine-hibernate.ts).
 * - A final state closes with 1000 (or its output's `code`); an error in the machine is a
 *   crash: 1011, terminate, one crash report. The guide is docs/machines.md.
 */
import type { AnyStateMachine, ContextFrom, EventObject, InputFrom } from "xstate";
import { CallMessage, refuseUnhandled } from "../runtime/call.js";
import { CorralError, badarg, describe } from "../runtime/errors.js";
import { isThenable } from "../runtime/result.js";
import type { SystemMessage } from "../runtime/messages.js";
import { cancelTimer } from "../runtime/timers.js";
import { flag, knownKeys } from "../runtime/validate.js";
import type { InFrame } from "./frames.js";
import { isHibernated } from "./machine-hibernate.js";
import { FLUSH, Live, MachineTimer, Spec, WAKE, hibernatedOk, startLive, wakeUp, type MachineState } from "./machine-live.js";
import type { PartialReq, Req } from "./req.js";
import {
  resolveWebSocketOptions,
  upgrade,
  type CallResult,
  type InitResult,
  type TerminateReason,
  type WebSocketHandler,
  type WebSocketOptions,
} from "./websocket.js";

export type { MachineState } from "./machine-live.js";
export { sendToPid, wsClose, wsCommands, wsHibernate, wsReply, wsStop, type MachineAction, type MachineExpr } from "./machine-actions.js";

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
/**
 * The events a machine handler sends its machine, besides the app's infos that are events
 * already: frames, `ws.info`, and the runtime's own messages (SystemMessage: "timeout",
 * "DOWN", "EXIT", "call"), which are objects with a string type and so events as they are.
 */
export type WsEvent<Info = unknown> = WsFrameEvent | WsInfoEvent<Info> | SystemMessage;

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

const KNOWN_OPTIONS: ReadonlySet<string> = new Set(["input", "websocket", "hibernate", "terminate"]);

/* ---------------------------------------------------------------- the handler */

/** Between init (request process) and websocketInit (connection process). Plain data. */
interface Starting {
  readonly starting: true;
  readonly input: unknown;
}

function isStarting(state: unknown): state is Starting {
  return typeof state === "object" && state !== null && (state as { starting?: unknown }).starting === true;
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
  knownKeys(options, KNOWN_OPTIONS, "machineHandler");
  const { input, websocket, terminate } = options;
  if (input !== undefined && typeof input !== "function") throw badarg(`machineHandler option input: expected a function (req, opts) => input, got ${describe(input)}`);
  if (terminate !== undefined && typeof terminate !== "function") throw badarg(`machineHandler option terminate: expected a function, got ${describe(terminate)}`);
  if (websocket !== undefined && typeof websocket !== "function") {
    if (typeof websocket !== "object" || websocket === null) throw badarg(`machineHandler option websocket: expected WebSocketOptions or a function returning them, got ${describe(websocket)}`);
    resolveWebSocketOptions(websocket); // a bad option throws here, where it is given
  }
  const spec = new Spec(machine, flag(options.hibernate, "machineHandler option hibernate: expected a boolean", false));

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
      return startLive(spec, { input: state.input }).finish();
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
      const live = liveOf(spec, state, "websocketInfo");
      if (info instanceof CallMessage && !live.can(info)) {
        refuseUnhandled(info.from, `machine ${JSON.stringify(spec.machine.id)} (no transition for a "call" event here)`);
        return live.finish();
      }
      return live.dispatch(infoEvent(info));
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
