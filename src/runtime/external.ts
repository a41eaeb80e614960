// Erlang's external term format, on v8 serialization: how pids and refs survive hibernation and the wire.
import { Pid, pidOf, Ref } from "./pid.js";

/**
 * Erlang's external term format, on v8 serialization: what hibernation stores and what a
 * cluster transport puts on the wire. v8 keeps plain data, Maps, Sets, Dates, Errors and
 * typed arrays; pids and refs, which it would flatten, are replaced by markers first.
 */

/**
 * Marks where a pid or ref stood: the value is its index in a list kept beside the value
 * (hibernation, where they are kept by identity) or [kind, node, id] (the wire).
 */
const SPECIAL = "\u0000corral.special";

/** Marks a runtime record (a call, a cast, a call's reply): [tag, ...fields], each field marked in turn. */
const RECORD = "\u0000corral.record";

/** A class whose instances keep their class across nodes: how to take one apart and build it again. */
interface RecordKind {
  readonly tag: number;
  fields(v: object): unknown[];
  make(fields: unknown[]): object;
}

const recordKinds = new Map<object, RecordKind>();
const recordTags: RecordKind[] = [];

/**
 * @internal Lets the instances of cls cross to another node as themselves (v8 would make them
 * plain objects): fields takes one apart, make builds it from the fields that arrived.
 */
export function wireRecord<T extends object>(cls: { prototype: T }, fields: (v: T) => unknown[], make: (fields: unknown[]) => T): void {
  const kind: RecordKind = { tag: recordTags.length, fields: fields as (v: object) => unknown[], make };
  recordTags.push(kind);
  recordKinds.set(cls.prototype, kind);
}

type Marker = (special: Pid | Ref) => object;
type Unmarker = (mark: unknown) => Pid | Ref | undefined;

/** Copies a value, replacing each pid and ref with a marker; shared and cyclic references stay shared. */
function markSpecials(v: unknown, copies: Map<object, unknown>, marker: Marker): unknown {
  if (typeof v !== "object" || v === null) return v;
  const done = copies.get(v);
  if (done !== undefined) return done;
  if (v instanceof Pid || v instanceof Ref) {
    const mark = marker(v);
    copies.set(v, mark);
    return mark;
  }
  if (Array.isArray(v)) {
    const out: unknown[] = new Array(v.length);
    copies.set(v, out);
    for (let i = 0; i < v.length; i++) out[i] = markSpecials(v[i], copies, marker);
    return out;
  }
  if (v instanceof Map) {
    const out = new Map<unknown, unknown>();
    copies.set(v, out);
    for (const [k, val] of v) out.set(markSpecials(k, copies, marker), markSpecials(val, copies, marker));
    return out;
  }
  if (v instanceof Set) {
    const out = new Set<unknown>();
    copies.set(v, out);
    for (const item of v) out.add(markSpecials(item, copies, marker));
    return out;
  }
  const proto: unknown = Object.getPrototypeOf(v);
  if (proto !== Object.prototype) {
    const kind = recordKinds.get(proto as object);
    if (kind === undefined) return v;
    const mark = { [RECORD]: [kind.tag, ...(markSpecials(kind.fields(v), copies, marker) as unknown[])] };
    copies.set(v, mark);
    return mark;
  }
  const out: Record<string, unknown> = {};
  copies.set(v, out);
  for (const key in v) out[key] = markSpecials((v as Record<string, unknown>)[key], copies, marker);
  return out;
}

function specialOf(v: unknown, unmarker: Unmarker): Pid | Ref | undefined {
  if (typeof v !== "object" || v === null || !(SPECIAL in v)) return undefined;
  return unmarker((v as Record<string, unknown>)[SPECIAL]);
}

/** The record a marker stands for, built from its restored fields; undefined for anything else. */
function recordOf(v: object, unmarker: Unmarker, seen: Set<object>): object | undefined {
  if (!(RECORD in v)) return undefined;
  const mark = (v as Record<string, unknown>)[RECORD];
  if (!Array.isArray(mark)) return undefined;
  const kind = recordTags[mark[0] as number];
  if (kind === undefined) return undefined;
  return kind.make(restoreSpecials(mark.slice(1), unmarker, seen) as unknown[]);
}

/** Puts the pids, refs and records back where their markers stand, in place. */
function restoreSpecials(v: unknown, unmarker: Unmarker, seen: Set<object>): unknown {
  const special = specialOf(v, unmarker);
  if (special !== undefined) return special;
  if (typeof v !== "object" || v === null || seen.has(v)) return v;
  const record = recordOf(v, unmarker, seen);
  if (record !== undefined) return record;
  seen.add(v);
  const proto: unknown = Object.getPrototypeOf(v);
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = restoreSpecials(v[i], unmarker, seen);
  } else if (v instanceof Map) {
    const entries = Array.from(v);
    v.clear();
    for (const [k, val] of entries) v.set(restoreSpecials(k, unmarker, seen), restoreSpecials(val, unmarker, seen));
  } else if (v instanceof Set) {
    const items = Array.from(v);
    v.clear();
    for (const item of items) v.add(restoreSpecials(item, unmarker, seen));
  } else if (proto === Object.prototype) {
    const o = v as Record<string, unknown>;
    for (const key in o) o[key] = restoreSpecials(o[key], unmarker, seen);
  }
  return v;
}

/** Hibernation: pids and refs by their index in `specials`, which keeps them by identity. */
export function markByIndex(v: unknown, specials: (Pid | Ref)[]): unknown {
  return markSpecials(v, new Map(), (special) => ({ [SPECIAL]: specials.push(special) - 1 }));
}

export function restoreByIndex(v: unknown, specials: (Pid | Ref)[]): unknown {
  return restoreSpecials(v, (mark) => (typeof mark === "number" ? specials[mark] : undefined), new Set());
}

const PID = 0;
const REF = 1;

/** The wire: each marker names its pid or ref by node and id. */
export function markForWire(v: unknown): unknown {
  return markSpecials(v, new Map(), (special) => ({ [SPECIAL]: [special instanceof Pid ? PID : REF, special.node, special.id] }));
}

/** In place; a pid of this node comes back as the live pid itself. */
export function restoreFromWire(v: unknown): unknown {
  return restoreSpecials(
    v,
    (mark) => {
      if (!Array.isArray(mark) || mark.length !== 3) return undefined;
      const node = String(mark[1]);
      const id = Number(mark[2]);
      return mark[0] === PID ? pidOf(node, id) : new Ref(node, id);
    },
    new Set(),
  );
}

/** Past this depth a walk tracks what it has seen, so cycles end; shallow data allocates nothing. */
const TRACK_DEPTH = 16;

/**
 * Checks that v can cross to another node and tells whether it holds pids, refs or records. Throws a
 * TypeError naming a function or symbol; anything subtler v8 refuses is caught when sent.
 */
export function checkPortable(v: unknown): boolean {
  return holds(v, 0, null);
}

function holds(v: unknown, depth: number, seen: Set<object> | null): boolean {
  const type = typeof v;
  if (type === "function" || type === "symbol") throw new TypeError(`a ${type} cannot cross to another node`);
  if (type !== "object" || v === null) return false;
  const o = v as object;
  if (o instanceof Pid || o instanceof Ref) return true;
  const kind = recordKinds.get(Object.getPrototypeOf(o) as object);
  if (kind !== undefined) {
    holds(kind.fields(o), depth + 1, seen);
    return true;
  }
  if (ArrayBuffer.isView(o) || o instanceof ArrayBuffer || o instanceof Date || o instanceof RegExp) return false;
  if (depth >= TRACK_DEPTH) {
    seen ??= new Set();
    if (seen.has(o)) return false;
    seen.add(o);
  }
  let found = false;
  if (o instanceof Map) {
    for (const [k, x] of o) {
      const inKey = holds(k, depth + 1, seen);
      if (holds(x, depth + 1, seen) || inKey) found = true;
    }
  } else if (o instanceof Set) {
    for (const x of o) if (holds(x, depth + 1, seen)) found = true;
  } else {
    for (const key in o) if (holds((o as Record<string, unknown>)[key], depth + 1, seen)) found = true;
  }
  return found;
}
