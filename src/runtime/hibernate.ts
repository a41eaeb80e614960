// erlang:hibernate/3: a process's state leaves the live heap while it waits, and comes back with the next message.
import { performance } from "node:perf_hooks";
import { deserialize, serialize } from "node:v8";
import { markByIndex, restoreByIndex } from "./external.js";
import { runtimeLogger } from "./log.js";
import { Pid, Ref } from "./pid.js";
import { BUSY, DEAD, EPOCH_BITS, EPOCH_SHIFT, EVICT_PENDING, FROZEN_BYTES, HIBERNATED, QUEUED, QUICK_BITS, QUICK_SHIFT, RUNNING, SWEEP_LISTED } from "./flags.js";
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

/** @internal Moves a process's state out of the live heap; false when it must stay live. */
export function evictState(p: Process): boolean {
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

/** @internal Brings a hibernated state back before the next callback. */
export function restoreState(p: Process): void {
  if (p.stateStore !== undefined) {
    p.state = p.stateStore.take(p.pid);
  } else if (p.flags & FROZEN_BYTES) {
    p.flags &= ~FROZEN_BYTES;
    p.state = thaw(p.state as string);
  } else if (p.state instanceof FrozenState) {
    p.state = restoreByIndex(thaw(p.state.bytes), p.state.specials);
  } else {
    // A state kept as it was cost nothing to evict: no reason to wait before the next one.
    return;
  }
  countWake(p);
}

/* ---------------------------------------------------------------- when to evict */

/*
 * Evicting and restoring a state costs a serialization each way (about 30 us for a 2 KB
 * state): a process woken every second and evicted after each message pays it every second
 * and saves little memory. So, as Erlang's hibernate_after, a process whose evicted state
 * keeps coming back soon (RESTLESS_AFTER wakes in a row, each within QUICK_EPOCHS of its
 * eviction) is evicted only once it has had no message for QUIET_EPOCHS - 1 to QUIET_EPOCHS
 * epochs; one sweep, armed only while such processes wait, does it. Time is counted in
 * coarse epochs kept in three flag bits (mod 8): no field per process.
 */

/** The policy's clock tick, in ms. */
const EPOCH_MS = 1000;
/** A wake within this many epochs of the eviction (under 2 to 3 s) is a quick one. */
const QUICK_EPOCHS = 2;
/** After this many quick wakes in a row, hibernate waits for a quiet period. */
const RESTLESS_AFTER = 4;
/** A restless process is evicted at the start of the QUIET_EPOCHS-th epoch after its last request: after 2 to 3 s without a message. */
const QUIET_EPOCHS = 3;

function epochNow(): number {
  return Math.floor(performance.now() / EPOCH_MS);
}

function countWake(p: Process): void {
  const f = p.flags;
  const slept = (epochNow() - ((f & EPOCH_BITS) >>> EPOCH_SHIFT)) & 7;
  const quick = slept <= QUICK_EPOCHS ? Math.min(((f & QUICK_BITS) >>> QUICK_SHIFT) + 1, RESTLESS_AFTER) : 0;
  p.flags = (f & ~QUICK_BITS) | (quick << QUICK_SHIFT);
}

/**
 * @internal A callback asked to hibernate and the mailbox is empty: evict now, or, for a
 * restless process, after a quiet period.
 */
export function hibernate(p: Process): void {
  if ((p.flags & QUICK_BITS) >>> QUICK_SHIFT < RESTLESS_AFTER) hibernateNow(p);
  else defer(p);
}

/** @internal Evicts the state now (false when it must stay live) and marks the process hibernated. */
export function hibernateNow(p: Process): boolean {
  if (!evictState(p)) return false;
  p.flags = (p.flags & ~(EPOCH_BITS | SWEEP_LISTED | EVICT_PENDING)) | HIBERNATED | ((epochNow() & 7) << EPOCH_SHIFT);
  stats.hibernations++;
  return true;
}

/** The processes waiting for a quiet period, grouped by the epoch they were listed in, oldest first. */
class QuietGroup {
  readonly procs: Process[] = [];
  constructor(readonly epoch: number) {}
}

const quiet: QuietGroup[] = [];
let sweepTimer: NodeJS.Timeout | null = null;

function defer(p: Process): void {
  const e = epochNow();
  const bits = (e & 7) << EPOCH_SHIFT;
  const f = p.flags | EVICT_PENDING;
  // Already listed this epoch: a process asking at every message is listed once per epoch.
  if ((f & (SWEEP_LISTED | EPOCH_BITS)) === (SWEEP_LISTED | bits)) {
    p.flags = f;
    return;
  }
  p.flags = (f & ~EPOCH_BITS) | SWEEP_LISTED | bits;
  let group = quiet[quiet.length - 1];
  if (group === undefined || group.epoch !== e) quiet.push((group = new QuietGroup(e)));
  group.procs.push(p);
  if (sweepTimer === null) armSweep();
}

function armSweep(): void {
  const due = (quiet[0]!.epoch + QUIET_EPOCHS) * EPOCH_MS - performance.now();
  sweepTimer = setTimeout(sweep, Math.max(0, due) + 1);
  sweepTimer.unref();
}

/** Evicts the listed processes whose epoch is QUIET_EPOCHS old and that had no message since their request. */
function sweep(): void {
  sweepTimer = null;
  const now = epochNow();
  while (quiet.length > 0 && quiet[0]!.epoch <= now - QUIET_EPOCHS) {
    const group = quiet.shift()!;
    const bits = SWEEP_LISTED | ((group.epoch & 7) << EPOCH_SHIFT);
    for (const p of group.procs) {
      const f = p.flags;
      // Listed again in a later epoch: that entry decides.
      if ((f & (SWEEP_LISTED | EPOCH_BITS)) !== bits) continue;
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
  }
  if (quiet.length > 0) armSweep();
}

/** The bytes a hibernated process holds in place of its state: 0 when live, in a StateStore, small enough to stay as it was, or not alive. */
export function frozenSize(pid: Pid): number {
  const p = checkPid(pid, "frozenSize").proc;
  if (p === null || !p.hibernated) return 0;
  if (p.flags & FROZEN_BYTES) return (p.state as string).length;
  return p.state instanceof FrozenState ? p.state.bytes.length : 0;
}
