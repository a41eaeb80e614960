// Erlang's external term format, on v8 serialization: how pids and refs survive hibernation and the wire.
import { types } from "node:util";
import { serialize } from "node:v8";
import { describe } from "./errors.js";
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

/** A part of a message that cannot cross, found by the walk; checkPortable turns it into its TypeError. */
class Refused {
  constructor(
    readonly value: unknown,
    readonly what: string,
    readonly cause?: unknown,
  ) {}
}

/**
 * Checks that v can cross to another node and tells whether it holds pids, refs or records.
 * Throws a TypeError saying what cannot cross and where ("msg.a[2] is a function (f)").
 */
export function checkPortable(v: unknown): boolean {
  try {
    return holds(v, 0, null);
  } catch (err) {
    if (!(err instanceof Refused)) throw err;
    const where = locate(v, err.value, "msg", new Set()) ?? "a part of msg";
    throw new TypeError(`${where} is ${err.what}, which cannot cross to another node`, err.cause === undefined ? undefined : { cause: err.cause });
  }
}

function holds(v: unknown, depth: number, seen: Set<object> | null): boolean {
  const type = typeof v;
  if (type === "function") throw new Refused(v, `a function (${(v as () => void).name || "anonymous"})`);
  if (type === "symbol") throw new Refused(v, `a symbol (${String(v)})`);
  if (type !== "object" || v === null) return false;
  const o = v as object;
  if (o instanceof Pid || o instanceof Ref) return true;
  const kind = recordKinds.get(Object.getPrototypeOf(o) as object);
  if (kind !== undefined) {
    holds(kind.fields(o), depth + 1, seen);
    return true;
  }
  if (ArrayBuffer.isView(o) || o instanceof ArrayBuffer || o instanceof Date || o instanceof RegExp) return false;
  // v8 refuses a Proxy whatever it wraps, and it can pass for the plain object it wraps.
  if (types.isProxy(o)) throw new Refused(o, "a Proxy");
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
    const proto: unknown = Object.getPrototypeOf(o);
    const plain = proto === Object.prototype || proto === null || Array.isArray(o);
    // v8 copies own properties only; a host object's prototype may list its methods.
    for (const key in o) if ((plain || Object.hasOwn(o, key)) && holds((o as Record<string, unknown>)[key], depth + 1, seen)) found = true;
    // v8 copies an Error's cause too, which is not enumerable.
    if (o instanceof Error && Object.hasOwn(o, "cause") && holds(o.cause, depth + 1, seen)) found = true;
    // What the walk cannot see (a Promise, a WeakMap, a host object such as a Blob), v8 decides.
    if (!plain) refusedByV8(o);
  }
  return found;
}

/** Throws Refused when v8 cannot serialize o. */
function refusedByV8(o: object): void {
  try {
    serialize(o);
  } catch (err) {
    const name = o.constructor?.name || Object.prototype.toString.call(o).slice(8, -1);
    throw new Refused(o, `${/^[AEIOU]/.test(name) ? "an" : "a"} ${name}`, err);
  }
}

/** The path from msg to target ("msg.a[2]"), walked as holds walks; only when a message was refused. */
function locate(v: unknown, target: unknown, path: string, seen: Set<object>): string | undefined {
  if (v === target) return path;
  if (typeof v !== "object" || v === null || seen.has(v)) return undefined;
  seen.add(v);
  if (v instanceof Map) {
    let i = 0;
    for (const [k, x] of v) {
      const found = locate(k, target, `${path} key #${i}`, seen) ?? locate(x, target, `${path}.get(${describe(k)})`, seen);
      if (found !== undefined) return found;
      i++;
    }
  } else if (v instanceof Set) {
    let i = 0;
    for (const x of v) {
      const found = locate(x, target, `${path} item #${i++}`, seen);
      if (found !== undefined) return found;
    }
  } else {
    for (const key in v) {
      if (!Object.hasOwn(v, key)) continue;
      const step = Array.isArray(v) ? `[${key}]` : /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
      const found = locate((v as Record<string, unknown>)[key], target, path + step, seen);
      if (found !== undefined) return found;
    }
    if (v instanceof Error && Object.hasOwn(v, "cause")) return locate(v.cause, target, `${path}.cause`, seen);
  }
  return undefined;
}
