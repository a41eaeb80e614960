// erlang:error(badarg): the argument checks every API edge shares, each failing with ERR_BADARG.
import { badarg, describe } from "./errors.js";
import { Pid } from "./pid.js";

// Each check takes the message up to ", got …" (the call site's own words) and adds the value it got.

/** A finite number > 0; undefined gives the fallback when there is one. */
export function positive(value: unknown, message: string, fallback?: number): number {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) throw badarg(`${message}, got ${describe(value)}`);
  return value;
}

/** A limit: a number > 0, or Infinity for none; undefined gives the fallback when there is one. */
export function limit(value: unknown, message: string, fallback?: number): number {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== "number" || Number.isNaN(value) || value <= 0) throw badarg(`${message}, got ${describe(value)}`);
  return value;
}

/** A boolean; undefined gives the fallback when there is one. */
export function flag(value: unknown, message: string, fallback?: boolean): boolean {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== "boolean") throw badarg(`${message}, got ${describe(value)}`);
  return value;
}

/** Options objects name only known keys: a typo fails where it is written, not silently later. */
export function knownKeys(options: object, known: ReadonlySet<string>, fn: string): void {
  for (const key of Object.keys(options)) if (!known.has(key)) throw badarg(`${fn}: unknown option ${JSON.stringify(key)}`);
}

/** The pid argument of fn, checked. */
export function checkPid(pid: unknown, fn: string): Pid {
  if (!(pid instanceof Pid)) throw badarg(`${fn}: expected a Pid, got ${describe(pid)}`);
  return pid;
}

/** What was thrown, as an Error (a thrown non-Error becomes the cause of one that describes it). */
export function toError(thrown: unknown, what = "non-error thrown:"): Error {
  return thrown instanceof Error ? thrown : new Error(`${what} ${describe(thrown)}`, { cause: thrown });
}
