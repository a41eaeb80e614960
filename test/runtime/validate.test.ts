/**
 * The validation kit (src/runtime/validate.ts) and the exact errors its call sites throw at
 * the API edge: one check of each kind, the same ERR_BADARG messages as before the kit.
 */
import { createMachine } from "xstate";
import { describe, expect, test } from "vitest";
import { CorralError, frozenSize, join, machineHandler, register, registerGlobal, startCluster, startSupervisor, staticDir } from "../../src/index.js";
import { checkPid, flag, knownKeys, limit, positive, toError } from "../../src/runtime/validate.js";

/** The error f throws, which must be a CorralError ERR_BADARG. */
function badarg(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(CorralError);
    expect((err as CorralError).code).toBe("ERR_BADARG");
    return (err as Error).message;
  }
  throw new Error("expected a throw");
}

async function rejected(p: Promise<unknown>): Promise<string> {
  const err: unknown = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CorralError);
  expect((err as CorralError).code).toBe("ERR_BADARG");
  return (err as Error).message;
}

describe("the kit", () => {
  test("positive: a finite number > 0, the fallback for undefined", () => {
    expect(positive(2, "f: x must be a positive number", 1)).toBe(2);
    expect(positive(undefined, "f: x must be a positive number", 1)).toBe(1);
    for (const bad of [0, -1, NaN, Infinity, "1", null]) expect(badarg(() => positive(bad, "f: x must be a positive number", 1))).toMatch(/^f: x must be a positive number, got /);
    expect(badarg(() => positive(undefined, "f: x must be a positive number"))).toBe("f: x must be a positive number, got undefined");
  });

  test("limit: a number > 0 or Infinity, the fallback for undefined", () => {
    expect(limit(Infinity, "f: x must be a number > 0", 1)).toBe(Infinity);
    expect(limit(undefined, "f: x must be a number > 0", 1)).toBe(1);
    for (const bad of [0, -Infinity, NaN, "1", null]) expect(badarg(() => limit(bad, "f: x must be a number > 0", 1))).toMatch(/^f: x must be a number > 0, got /);
    expect(badarg(() => limit(-1, "f: x must be a number > 0", 1))).toBe("f: x must be a number > 0, got -1");
  });

  test("flag: a boolean, the fallback for undefined", () => {
    expect(flag(false, "f: x must be a boolean", true)).toBe(false);
    expect(flag(undefined, "f: x must be a boolean", true)).toBe(true);
    expect(badarg(() => flag(null, "f: x must be a boolean", true))).toBe("f: x must be a boolean, got null");
    expect(badarg(() => flag(undefined, "f: x must be a boolean"))).toBe("f: x must be a boolean, got undefined");
  });

  test("knownKeys names the first unknown key", () => {
    knownKeys({ a: 1 }, new Set(["a", "b"]), "f");
    expect(badarg(() => knownKeys({ a: 1, c: 2 }, new Set(["a"]), "f"))).toBe('f: unknown option "c"');
  });

  test("checkPid returns the pid, or names the function", () => {
    expect(badarg(() => checkPid("<0.1>", "f"))).toBe('f: expected a Pid, got "<0.1>"');
  });

  test("toError keeps an Error, wraps anything else with it as the cause", () => {
    const e = new Error("x");
    expect(toError(e)).toBe(e);
    const wrapped = toError({ a: 1 });
    expect(wrapped.message).toBe('non-error thrown: {"a":1}');
    expect(wrapped.cause).toEqual({ a: 1 });
    expect(toError(7, "start threw").message).toBe("start threw 7");
  });
});

describe("the call sites keep their messages", () => {
  test("pid checks", async () => {
    const notPid = { id: 1 } as never;
    expect(badarg(() => register("x", notPid))).toBe('register: expected a Pid, got {"id":1}');
    expect(badarg(() => join("g", notPid))).toBe('join: expected a Pid, got {"id":1}');
    expect(badarg(() => frozenSize(notPid))).toBe('frozenSize: expected a Pid, got {"id":1}');
    expect(await rejected(registerGlobal("x", notPid))).toBe('registerGlobal: expected a Pid, got {"id":1}');
  });

  test("option checks", async () => {
    expect(badarg(() => startSupervisor({ children: [], periodMs: 0 }))).toBe("startSupervisor: periodMs must be a number > 0, got 0");
    expect(badarg(() => startSupervisor({ children: [] }, { link: "no" as never }))).toBe('startSupervisor: link must be a boolean, got "no"');
    expect(badarg(() => staticDir("/tmp", { nosniff: 1 as never }))).toBe("staticDir: nosniff must be true or false, got 1");
    expect(await rejected(startCluster({ redis: "redis://127.0.0.1:1", heartbeatMs: Infinity }))).toBe("startCluster: heartbeatMs must be a positive number, got Infinity");
    const machine = createMachine({});
    expect(badarg(() => machineHandler(machine, { hibernate: "yes" } as never))).toBe('machineHandler option hibernate: expected a boolean, got "yes"');
    expect(badarg(() => machineHandler(machine, { nope: 1 } as never))).toBe('machineHandler: unknown option "nope"');
  });
});
