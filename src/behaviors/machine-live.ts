// gen_statem's loop for one connection: the xstate actor, its timeouts on the runtime's timers, and what its actions produce per callback.
import { createActor, type Actor as XActor, type AnyStateMachine, type EventObject, type Snapshot } from "xstate";
import { CorralError, describe } from "../runtime/errors.js";
import { runtimeLogger } from "../runtime/log.js";
import type { Pid, Ref } from "../runtime/pid.js";
import { currentProcess, self, send } from "../runtime/process.js";
import type { Ok } from "../runtime/result.js";
import { cancelTimer, sendAfter } from "../runtime/timers.js";
import { close, type CloseFrame } from "./frames.js";
import { pendingDelays, scheduleDelays, type Hibernated, type SavedDelay } from "./machine-hibernate.js";
import type { Command, WebSocketResult } from "./websocket.js";

declare const machineStateBrand: unique symbol;
/** A machine handler's connection state: the live actor, or its persisted snapshot while hibernated. Opaque. */
export interface MachineState {
  readonly [machineStateBrand]: "MachineState";
}

/** The runtime message that wakes a hibernated machine whose delay is due. */
export const WAKE = Symbol("machine wake");
/** The runtime message that returns what actions produced outside a callback (a promise settled). */
export const FLUSH = Symbol("machine flush");

/** One xstate timeout on the runtime's wheel; the message sendAfter delivers is the timer itself. */
export class MachineTimer {
  fn: (() => void) | null;
  ref: Ref | null = null;
  constructor(fn: () => void) {
    this.fn = fn;
  }
}

/** What one machineHandler(...) call fixes for all its connections. */
export class Spec {
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

/** Connection → its live machine, by actor system (what action helpers are given). */
const connections = new WeakMap<object, Live>();

/** The live machine an action runs in, for the action helper named; they work only in a connection's machine. */
export function liveFor(system: unknown, helper: string): Live {
  const live = connections.get(system as object);
  if (live === undefined) {
    throw new CorralError(
      "ERR_NOT_IN_PROCESS",
      `${helper}(): this machine is not running as a connection; use it in a machine given to machineHandler(...)`,
    );
  }
  return live;
}

export function hibernatedOk(state: Hibernated): Ok<MachineState> {
  return { type: "ok", state: state as unknown as MachineState, hibernate: true };
}

function machineLog(pid: Pid, machineId: string): (...args: unknown[]) => void {
  return (...args) => runtimeLogger().info({ pid: pid.toString(), machine: machineId, log: args.length === 1 ? args[0] : args }, "machine log");
}

/**
 * The live machine of one connection: the xstate actor, the xstate clock (its timeouts are
 * runtime timers aimed at the connection's pid), and what actions produced this callback.
 */
export class Live {
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
    const due: MachineTimer[] = (this.dueNow = []);
    try {
      scheduleDelays(this.actor, delays);
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

  /** Whether the machine, as it stands, has a transition for event (a call it cannot take is refused, not dropped). */
  can(event: EventObject): boolean {
    return this.actor.getSnapshot().can(event);
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
    const now = performance.now();
    const delays = pendingDelays(this.actor, now);
    if (!Array.isArray(delays)) {
      this.spec.warnOnce(`a delayed event between actors outside the machine's tree (${describe(delays.eventType)}) cannot be persisted; the machine stays live`);
      return null;
    }
    const snapshot = this.actor.getPersistedSnapshot();
    this.detach();
    const wake = delays.length === 0 ? null : sendAfter(Math.max(0, Math.ceil(delays[0]!.due - now)), this.pid, WAKE);
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

/** A new live machine for this connection, started inside a callback so its entry actions' frames are that callback's. */
export function startLive(spec: Spec, opts: { input?: unknown; snapshot?: Snapshot<unknown> }, delays?: readonly SavedDelay[]): Live {
  const live = new Live(self(), spec);
  live.inCallback = true;
  try {
    live.start(opts);
    if (delays !== undefined && live.failure === null) live.rearm(delays);
  } finally {
    live.inCallback = false;
  }
  return live;
}

/** Brings a hibernated machine back: the actor from its snapshot, then its delays re-armed. */
export function wakeUp(spec: Spec, h: Hibernated): Live {
  if (h.wake !== null) cancelTimer(h.wake);
  return startLive(spec, { snapshot: h.snapshot }, h.delays);
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
