// erlang:hibernate/3: a process's state leaves the live heap while it waits, and comes back with the next message.
import { performance } from "node:perf_hooks";
import { deserialize, serialize } from "node:v8";
import { markByIndex, restoreByIndex } from "./external.js";
import { runtimeLogger } from "./log.js";
import { Pid, Ref } from "./pid.js";
import { BUSY, DEAD, EVICT_PENDING, FROZEN_BYTES, HIBERNATED, QUEUED, RUNNING, SHORT_BITS, SHORT_SHIFT, SWEEP_LISTED, TICK_BITS, TICK_SHIFT, WAIT_BITS, WAIT_SHIFT } from "./flags.js";
import { stats } from "./stats.js";
import type { ProcessLoop, Process } from "./process.js";
import { checkPid } from "./validate.js";

/**
 * Where hibernated state goes instead of the default in-process buffer: an LRU, a file, a
 * database. `take` returns what `put` stored for that pid; `delete` drops it when a
 * hibernated process dies without waking.
 */
export interface StateStore {
  put(pid: Pid, state: unknown): void;
  take(pid: Pid): unknown;
  delete(pid: Pid): void;
}

/**
 * A state evicted from the live heap that held pids or refs: its v8-serialized bytes, plus
 * those pids and refs, kept by identity (v8 would turn them into plain objects and a timer
 * ref could no longer be cancelled). A state without any is kept as the bare byte string,
 * and the process's FROZEN_BYTES flag says so.
 */
class FrozenState {
  constructor(
    /** The serialized bytes as a one-byte string: no Buffer or ArrayBuffer objects per process. */
    readonly bytes: string,
    readonly specials: (Pid | Ref)[],
  ) {}
}

/**
 * Below this estimated size a state stays as it is: a frozen state costs its bytes plus a
 * wrapper, more than a handful of fields, and serializing it every time would be pure cost.
 */
const SMALL_STATE = 192;

/**
 * Walks a state and decides whether v8 serialization gives it back unchanged. Class
 * instances and null-prototype objects would come back as plain objects, Errors lose their
 * own properties, functions and symbols cannot be cloned: such a state stays live. Sets
 * `hasSpecials` when a pid or ref needs carrying across.
 */
class Scan {
  readonly seen = new Set<object>();
  hasSpecials = false;
  /** A rough count of the live bytes, to tell a small state from one worth evicting. */
  size = 0;

  evictable(v: unknown): boolean {
    if (typeof v !== "object") {
      this.size += typeof v === "string" ? 16 + v.length : 8;
      return typeof v !== "function" && typeof v !== "symbol";
    }
    if (v === null || this.seen.has(v)) return true;
    this.seen.add(v);
    this.size += ArrayBuffer.isView(v) ? 64 + v.byteLength : 32;
    if (v instanceof Pid || v instanceof Ref) {
      this.hasSpecials = true;
      return true;
    }
    const proto: unknown = Object.getPrototypeOf(v);
    if (proto === Object.prototype || proto === Array.prototype) {
      if (Object.getOwnPropertySymbols(v).length > 0) return false;
      // for-in covers an array's elements and any extra properties it carries.
      for (const key in v) if (!this.evictable((v as Record<string, unknown>)[key])) return false;
      return true;
    }
    if (proto === Map.prototype) {
      for (const [k, val] of v as Map<unknown, unknown>) if (!this.evictable(k) || !this.evictable(val)) return false;
      return true;
    }
    if (proto === Set.prototype) {
      for (const item of v as Set<unknown>) if (!this.evictable(item)) return false;
      return true;
    }
    return proto === Date.prototype || proto === RegExp.prototype || proto === ArrayBuffer.prototype || ArrayBuffer.isView(v);
  }
}

/**
 * The common state of a pushing connection ({ heartbeat: 5000 }): a plain object of a few
 * primitives, known small without a Scan and the Set it allocates. Anything else says false.
 */
function smallAndFlat(state: unknown): boolean {
  // Symbol keys need no check: a state kept as it is loses nothing.
  if (typeof state !== "object" || state === null || Object.getPrototypeOf(state) !== Object.prototype) return false;
  let size = 32;
  for (const key in state) {
    const v: unknown = (state as Record<string, unknown>)[key];
    const type = typeof v;
    if (type === "string") size += 16 + (v as string).length;
    else if (type === "number" || type === "boolean" || type === "undefined" || v === null) size += 8;
    else return false;
    if (size >= SMALL_STATE) return false;
  }
  return true;
}

/**
 * Serializes a state: null when serialization would change or lose it, the state itself
 * when it is too small to be worth evicting.
 */
function freezeState(state: unknown): FrozenState | string | null | typeof KEEP {
  if (smallAndFlat(state)) return KEEP;
  const scan = new Scan();
  if (!scan.evictable(state)) return null;
  if (scan.size < SMALL_STATE) return KEEP;
  try {
    if (!scan.hasSpecials) return serialize(state).toString("latin1");
    const specials: (Pid | Ref)[] = [];
    return new FrozenState(serialize(markByIndex(state, specials)).toString("latin1"), specials);
  } catch {
    // Whatever the scan missed that v8 refuses: the state stays live, never lost.
    return null;
  }
}

/** freezeState's answer for a state small enough to stay as it is. */
const KEEP = Symbol("keep");

function thaw(bytes: string): unknown {
  return deserialize(Buffer.from(bytes, "latin1"));
}

/** Behaviours already warned about a state that cannot be evicted: one warning each. */
const warned = new WeakSet<ProcessLoop>();

/** Moves a process's state out of the live heap; false when it must stay live. */
function evictState(p: Process): boolean {
  if (p.stateStore !== undefined) {
    p.stateStore.put(p.pid, p.state);
    p.state = undefined;
    return true;
  }
  const state = p.state;
  if (typeof state !== "object" || state === null) return true;
  const frozen = freezeState(state);
  if (frozen === KEEP) return true;
  if (frozen === null) {
    if (!warned.has(p.loop)) {
      warned.add(p.loop);
      runtimeLogger().warn(
        { pid: p.pid.toString(), behaviour: p.loop.name },
        "hibernate: state holds functions, symbols or class instances that v8 serialization would lose; it stays live (give the process a StateStore to evict it anyway)",
      );
    }
    return false;
  }
  p.state = frozen;
  if (typeof frozen === "string") p.flags |= FROZEN_BYTES;
  return true;
}

/** Brings a hibernated state back before the next callback; false when it had stayed as it was. */
function restoreState(p: Process): boolean {
  if (p.stateStore !== undefined) {
    p.state = p.stateStore.take(p.pid);
  } else if (p.flags & FROZEN_BYTES) {
    p.flags &= ~FROZEN_BYTES;
    p.state = thaw(p.state as string);
  } else if (p.state instanceof FrozenState) {
    p.state = restoreByIndex(thaw(p.state.bytes), p.state.specials);
  } else {
    return false;
  }
  return true;
}

/* ---------------------------------------------------------------- when to evict */

/*
 * Evicting and restoring a state costs a serialization each way (about 30 us for a 2 KB
 * state): a process that gets a message every second and is evicted after each one pays
 * that every second, and leaves the garbage of both. So, as Erlang's hibernate_after, the
 * gap between a hibernate request and the next message sets how long the next request
 * waits without a message before it evicts: 1.5 times the gap and a tick, so a process
 * with steady traffic keeps its state live while one that falls silent is evicted soon
 * after. Gaps from LONG_GAP to MAX_GAP ticks (0.5 to 5 s: a pushing connection's) defer
 * the next request at once; shorter ones only from the SHORT_RUN-th in a row (a few quick
 * exchanges still hibernate each time); longer ones and a state kept as it is anyway evict
 * at once, unless the process has a timer of its own due in 0.5 to 4 s: then the request
 * waits as for a gap of that length (a first one included). The request's tick, the wait and the run of short gaps live in
 * the process's flag bits (no field per process); one sweep per tick, armed only while
 * requests wait, evicts those whose time has come.
 */

/** The policy's clock tick, in ms. */
const TICK_MS = 125;
/** A gap of this many ticks or more (0.5 s) defers the next eviction at once. */
const LONG_GAP = 4;
/** Above this gap (5 s), evicting at once costs little per second: the next request does. */
const MAX_GAP = 40;
/** Shorter gaps defer the next eviction from the SHORT_RUN-th in a row (SHORT_BITS counts to it). */
const SHORT_RUN = 4;
/** The sweep's wheel: one slot per tick, more than the longest wait (1.5 * MAX_GAP + 1, within WAIT_BITS). */
const SLOTS = 64;

/** Timers due within this many ticks (4 s) of a request defer it like a gap of that length. */
const TIMER_GAP = 32;
/** The timers on a process's list looked at for the next one due: the latest armed first. */
const TIMERS_SEEN = 4;

function tickNow(): number {
  return Math.floor(performance.now() / TICK_MS);
}

/** A timer on a process's own list, as timers.ts arms it: due in whole ms of performance.now(). */
interface ArmedTimer {
  readonly due: number;
  readonly next: ArmedTimer | null;
}

/**
 * The wait a timer of the process's own sets for a request that would evict at once (the
 * guide's handler re-arms its push timer before it asks to hibernate): evicting before a
 * timer due in LONG_GAP to TIMER_GAP ticks would be undone when it fires. 0: no such timer.
 */
function timerWait(p: Process, nowMs: number): number {
  let t = p.timers as unknown as ArmedTimer | null;
  let first = Infinity;
  for (let k = 0; t !== null && k < TIMERS_SEEN; k++, t = t.next) if (t.due < first) first = t.due;
  const gap = Math.floor((first - nowMs) / TICK_MS);
  return gap >= LONG_GAP && gap < TIMER_GAP ? ((gap * 3 + 1) >> 1) + 1 : 0;
}

/**
 * @internal A message for a process whose last callback asked to hibernate: the state comes
 * back if it was evicted, and the gap since that request sets the wait of the next one.
 */
export function wake(p: Process): void {
  if (p.flags & HIBERNATED) {
    p.flags &= ~HIBERNATED;
    stats.wakes++;
    // A state kept as it was cost nothing to evict: nothing to learn.
    if (!restoreState(p)) return;
  }
  const f = p.flags;
  const gap = (tickNow() - ((f & TICK_BITS) >>> TICK_SHIFT)) & 255;
  const run = (f & SHORT_BITS) >>> SHORT_SHIFT;
  const short = gap < LONG_GAP;
  const wait = gap <= MAX_GAP && (!short || run === SHORT_RUN - 1) ? ((gap * 3 + 1) >> 1) + 1 : 0;
  const nextRun = short ? Math.min(run + 1, SHORT_RUN - 1) : 0;
  p.flags = (f & ~(EVICT_PENDING | WAIT_BITS | SHORT_BITS)) | (wait << WAIT_SHIFT) | (nextRun << SHORT_SHIFT);
}

/** @internal A callback asked to hibernate and the mailbox is empty: evict now, or once the process's wait passes without a message. */
export function hibernate(p: Process): void {
  const f = p.flags;
  const nowMs = performance.now();
  const now = Math.floor(nowMs / TICK_MS);
  const tick = (now & 255) << TICK_SHIFT;
  let wait = (f & WAIT_BITS) >>> WAIT_SHIFT;
  if (wait === 0 && p.timers !== null) wait = timerWait(p, nowMs);
  if (wait === 0 || keptAsIs(p)) {
    p.flags = (f & ~TICK_BITS) | tick;
    hibernateNow(p);
    return;
  }
  p.flags = (f & ~(TICK_BITS | WAIT_BITS)) | tick | (wait << WAIT_SHIFT) | EVICT_PENDING | SWEEP_LISTED;
  // One entry per process: the sweep moves it on to the latest request's due tick when it gets there.
  if (f & SWEEP_LISTED) return;
  wheel[(now + wait) % SLOTS]!.push(p);
  if (listed++ === 0) {
    // The wheel was empty: it turns from this tick, not from the last sweep's.
    swept = now;
    sweepTimer ??= setInterval(sweep, TICK_MS).unref();
  }
}

/** A state evictState would keep as it is: nothing to gain by waiting. */
function keptAsIs(p: Process): boolean {
  const state = p.state;
  return p.stateStore === undefined && (typeof state !== "object" || state === null || smallAndFlat(state));
}

/** @internal Evicts the state now and marks the process hibernated; false when it must stay live. */
export function hibernateNow(p: Process): boolean {
  if (!evictState(p)) return false;
  p.flags = (p.flags & ~EVICT_PENDING) | HIBERNATED;
  stats.hibernations++;
  return true;
}

/** The processes whose request is due in each tick (mod SLOTS); a process has at most one entry (SWEEP_LISTED). */
const wheel = Array.from({ length: SLOTS }, (): Process[] => []);
let listed = 0;
/** The last tick swept. */
let swept = 0;
/** One interval, not a timer per process; unref'd, and cleared once nothing waits. */
let sweepTimer: NodeJS.Timeout | null = null;

/** Evicts the processes whose wait has passed since their request without a message. */
function sweep(): void {
  const now = tickNow();
  // A late timer catches up, a slot at a time (at most a turn of the wheel).
  for (let t = Math.max(swept + 1, now - SLOTS + 1); t <= now; t++) {
    const procs = wheel[t % SLOTS]!;
    if (procs.length === 0) continue;
    wheel[t % SLOTS] = [];
    let kept = 0;
    for (const p of procs) {
      const f = p.flags;
      // Asked again since: its latest request is due later, on the wheel until then.
      const ahead = (((f & TICK_BITS) >>> TICK_SHIFT) + ((f & WAIT_BITS) >>> WAIT_SHIFT) - t) & 255;
      if ((f & (EVICT_PENDING | DEAD)) === EVICT_PENDING && ahead !== 0 && ahead < SLOTS) {
        wheel[(t + ahead) % SLOTS]!.push(p);
        kept++;
        continue;
      }
      p.flags = f & ~SWEEP_LISTED;
      // A message since (handled, queued or in hand) cleared EVICT_PENDING or holds the process.
      if ((f & (EVICT_PENDING | DEAD | QUEUED | RUNNING | BUSY | HIBERNATED)) !== EVICT_PENDING || p.queueLength > 0) continue;
      try {
        hibernateNow(p);
      } catch (err) {
        // A StateStore's put threw: the state stays live, as it would have in the process's own turn.
        p.flags &= ~EVICT_PENDING;
        (p.loop.logger ?? runtimeLogger()).error({ pid: p.pid.toString(), behaviour: p.loop.name, err }, "hibernate: the state store's put threw");
      }
    }
    listed -= procs.length - kept;
  }
  swept = now;
  if (listed === 0 && sweepTimer !== null) {
    clearInterval(sweepTimer);
    sweepTimer = null;
  }
}

/** The bytes a hibernated process holds in place of its state: 0 when live, in a StateStore, small enough to stay as it was, or not alive. */
export function frozenSize(pid: Pid): number {
  const p = checkPid(pid, "frozenSize").proc;
  if (p === null || !p.hibernated) return 0;
  if (p.flags & FROZEN_BYTES) return (p.state as string).length;
  return p.state instanceof FrozenState ? p.state.bytes.length : 0;
}
