// erlang:hibernate/3: a process's state leaves the live heap while it waits, and comes back with the next message.
import { deserialize, serialize } from "node:v8";
import { markByIndex, restoreByIndex } from "./external.js";
import { runtimeLogger } from "./log.js";
import { Pid, Ref } from "./pid.js";
import { FROZEN_BYTES } from "./flags.js";
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
  }
}

/** The bytes a hibernated process holds in place of its state: 0 when live, in a StateStore, small enough to stay as it was, or not alive. */
export function frozenSize(pid: Pid): number {
  const p = checkPid(pid, "frozenSize").proc;
  if (p === null || !p.hibernated) return 0;
  if (p.flags & FROZEN_BYTES) return (p.state as string).length;
  return p.state instanceof FrozenState ? p.state.bytes.length : 0;
}
