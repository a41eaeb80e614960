import { deserialize, serialize } from "node:v8";
import { Pid, pidOf, Ref } from "./pid.js";

/**
 * Erlang's external term format, on v8 serialization: what hibernation stores and what a
 * cluster transport puts on the wire. v8 keeps plain data, Maps, Sets, Dates, Errors and
 * typed arrays; pids and refs, which it would flatten, are carried beside the value.
 */

/** Marks where a pid or ref stood; the value is its index in `specials`. */
const SPECIAL = "\u0000corral.special";

/** Copies a state, replacing each pid and ref with a marker; shared and cyclic references stay shared. */
export function markSpecials(v: unknown, copies: Map<object, unknown>, specials: (Pid | Ref)[]): unknown {
  if (typeof v !== "object" || v === null) return v;
  const done = copies.get(v);
  if (done !== undefined) return done;
  if (v instanceof Pid || v instanceof Ref) {
    const marker = { [SPECIAL]: specials.push(v) - 1 };
    copies.set(v, marker);
    return marker;
  }
  if (Array.isArray(v)) {
    const out: unknown[] = new Array(v.length);
    copies.set(v, out);
    for (let i = 0; i < v.length; i++) out[i] = markSpecials(v[i], copies, specials);
    return out;
  }
  if (v instanceof Map) {
    const out = new Map<unknown, unknown>();
    copies.set(v, out);
    for (const [k, val] of v) out.set(markSpecials(k, copies, specials), markSpecials(val, copies, specials));
    return out;
  }
  if (v instanceof Set) {
    const out = new Set<unknown>();
    copies.set(v, out);
    for (const item of v) out.add(markSpecials(item, copies, specials));
    return out;
  }
  if (Object.getPrototypeOf(v) !== Object.prototype) return v;
  const out: Record<string, unknown> = {};
  copies.set(v, out);
  for (const key in v) out[key] = markSpecials((v as Record<string, unknown>)[key], copies, specials);
  return out;
}

function specialOf(v: unknown, specials: (Pid | Ref)[]): Pid | Ref | undefined {
  if (typeof v !== "object" || v === null || !(SPECIAL in v)) return undefined;
  return specials[(v as Record<string, number>)[SPECIAL]!];
}

/** Puts the pids and refs back where their markers stand, in place. */
export function restoreSpecials(v: unknown, specials: (Pid | Ref)[], seen: Set<object>): unknown {
  const special = specialOf(v, specials);
  if (special !== undefined) return special;
  if (typeof v !== "object" || v === null || seen.has(v)) return v;
  seen.add(v);
  const proto: unknown = Object.getPrototypeOf(v);
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = restoreSpecials(v[i], specials, seen);
  } else if (v instanceof Map) {
    const entries = Array.from(v);
    v.clear();
    for (const [k, val] of entries) v.set(restoreSpecials(k, specials, seen), restoreSpecials(val, specials, seen));
  } else if (v instanceof Set) {
    const items = Array.from(v);
    v.clear();
    for (const item of items) v.add(restoreSpecials(item, specials, seen));
  } else if (proto === Object.prototype) {
    const o = v as Record<string, unknown>;
    for (const key in o) o[key] = restoreSpecials(o[key], specials, seen);
  }
  return v;
}

/** Whether a pid or ref stands anywhere in v: only then is a marked copy worth making. */
function holdsSpecials(v: unknown, seen: Set<object>): boolean {
  if (typeof v !== "object" || v === null || seen.has(v)) return false;
  if (v instanceof Pid || v instanceof Ref) return true;
  seen.add(v);
  if (v instanceof Map) {
    for (const [k, val] of v) if (holdsSpecials(k, seen) || holdsSpecials(val, seen)) return true;
    return false;
  }
  if (v instanceof Set) {
    for (const item of v) if (holdsSpecials(item, seen)) return true;
    return false;
  }
  if (ArrayBuffer.isView(v)) return false;
  for (const key in v) if (holdsSpecials((v as Record<string, unknown>)[key], seen)) return true;
  return false;
}

const PID = 0;
const REF = 1;

/** Erlang's term_to_binary: throws v8's DataCloneError for what cannot cross (functions, symbols). */
export function termToBinary(term: unknown): Buffer {
  if (typeof term !== "object" || term === null || !holdsSpecials(term, new Set())) return serialize([term]);
  const specials: (Pid | Ref)[] = [];
  const marked = markSpecials(term, new Map(), specials);
  const names: (string | number)[] = [];
  for (const s of specials) names.push(s instanceof Pid ? PID : REF, s.node, s.id);
  return serialize([marked, names]);
}

/** Erlang's binary_to_term: a pid of this node comes back as the live pid itself. */
export function binaryToTerm(bytes: Uint8Array): unknown {
  const [value, names] = deserialize(bytes) as [unknown, (string | number)[] | undefined];
  if (names === undefined) return value;
  const specials: (Pid | Ref)[] = [];
  for (let i = 0; i + 2 < names.length; i += 3) {
    const node = String(names[i + 1]);
    const id = Number(names[i + 2]);
    specials.push(names[i] === PID ? pidOf(node, id) : new Ref(node, id));
  }
  return restoreSpecials(value, specials, new Set());
}
