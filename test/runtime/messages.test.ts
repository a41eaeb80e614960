/**
 * The runtime's own messages are what their types say: a real timeout, DOWN, EXIT and call
 * carry the `type` that SystemMessage's union narrows by, each guard (and isSystemMessage)
 * knows them, and the app's look-alikes are not mistaken for them. A ProcessBehavior's
 * handleInfo never sees a call (its type leaves "call" out); a receive loop does.
 */
import { describe, expect, test } from "vitest";
import {
  call,
  exit,
  isCall,
  isDown,
  isExit,
  isSystemMessage,
  isTimeout,
  monitor,
  ok,
  replyTo,
  self,
  send,
  spawn,
  spawnLink,
  startTimer,
  stop,
  trapExit,
  type Pid,
  type ProcessBehavior,
  type SystemMessage,
} from "../../src/index.js";
import { until } from "../support/helpers.js";

const GUARDS = { timeout: isTimeout, DOWN: isDown, EXIT: isExit, call: isCall } as const;

/** The guards that accept msg, by the type each one is for. */
function guardsFor(msg: unknown): string[] {
  return Object.entries(GUARDS)
    .filter(([, guard]) => guard(msg))
    .map(([type]) => type);
}

describe("system messages", () => {
  test("a process gets a real timeout, DOWN and EXIT in handleInfo, and each is told apart by its type", async () => {
    const seen: unknown[] = [];
    const calls: unknown[] = [];
    const watcher: ProcessBehavior<null, "go", undefined> = {
      init: () => {
        trapExit(true);
        return null;
      },
      handleInfo(msg, state) {
        if (msg === "go") {
          startTimer(1, self(), "beat");
          const shortLived = spawn(async () => {});
          monitor(shortLived);
          spawnLink({ init: () => stop(null), handleInfo: (_m: unknown, s: null) => ok(s) });
          return ok(state);
        }
        seen.push(msg);
        return ok(state);
      },
      handleCall(request, from, state) {
        calls.push(request);
        replyTo(from, "answered");
        return ok(state);
      },
    };
    const pid = spawn(watcher);
    send(pid, "go");
    await until(() => seen.length === 3, 2000, "a timeout, a DOWN and an EXIT");
    expect(await call(pid, "ping")).toBe("answered");
    expect(calls).toEqual(["ping"]);
    const types = seen.map((m) => (m as SystemMessage).type).sort();
    expect(types).toEqual(["DOWN", "EXIT", "timeout"]);
    for (const msg of seen) {
      expect(isSystemMessage(msg)).toBe(true);
      expect(guardsFor(msg)).toEqual([(msg as SystemMessage).type]);
    }
    exit(pid, "kill");
  });

  test("a receive loop takes a real call as a CallMessage", async () => {
    let taken: unknown;
    const pid: Pid = spawn(async (ctx) => {
      const msg = await ctx.receive(isCall);
      taken = msg;
      replyTo(msg.from, msg.request);
    });
    expect(await call(pid, { n: 1 })).toEqual({ n: 1 });
    expect(isSystemMessage(taken)).toBe(true);
    expect(guardsFor(taken)).toEqual(["call"]);
    expect((taken as SystemMessage).type).toBe("call");
  });

  test("the app's own messages are not taken for the runtime's, even when they borrow a type", () => {
    const lookAlikes: unknown[] = [
      "timeout",
      null,
      42,
      { type: "timeout", msg: "no ref" },
      { type: "timeout", ref: "not a Ref", msg: 1 },
      { type: "DOWN", pid: "no ref" },
      { type: "EXIT", reason: "normal" },
      { type: "call", from: { pid: null, caller: null }, request: 1 },
      { type: "tick" },
    ];
    for (const msg of lookAlikes) {
      expect(isSystemMessage(msg), JSON.stringify(msg)).toBe(false);
      expect(guardsFor(msg), JSON.stringify(msg)).toEqual([]);
    }
  });
});
