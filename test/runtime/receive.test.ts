import { performance } from "node:perf_hooks";
import { afterEach, beforeEach, describe, expect, expectTypeOf, test } from "vitest";
import {
  CorralError,
  exit,
  isAlive,
  isDown,
  isExit,
  self,
  monitor,
  ok,
  processCount,
  processInfo,
  send,
  sendAfter,
  spawn,
  spawnLink,
  spawnMonitor,
  stop,
  timerCount,
  trapExit,
  type DownMessage,
  type ExitMessage,
  type ExitReason,
  type Pid,
  type ReceiveContext,
} from "../../src/index.js";
import { captureLogs, settle, sleep, until, type LogRecord } from "../support/helpers.js";

type Tagged = { tag: string; n: number };
const isTagged = (tag: string) => (m: unknown): m is Tagged =>
  typeof m === "object" && m !== null && (m as { tag?: unknown }).tag === tag;
const isNumber = (m: unknown): m is number => typeof m === "number";

/**
 * Runs an async-function process and gives back what it returned (or threw), plus its exit
 * reason as seen by a monitor. The body gets the context.
 */
function run<T>(body: (ctx: ReceiveContext) => Promise<T>): {
  pid: Pid;
  result: Promise<{ value?: T; error?: unknown }>;
  reason: Promise<ExitReason>;
} {
  let settleResult!: (r: { value?: T; error?: unknown }) => void;
  const result = new Promise<{ value?: T; error?: unknown }>((r) => (settleResult = r));
  let settleReason!: (r: ExitReason) => void;
  const reason = new Promise<ExitReason>((r) => (settleReason = r));
  let child: Pid | undefined;
  // A monitoring parent: spawnMonitor needs a calling process.
  spawn(async (ctx) => {
    const { pid, ref } = spawnMonitor(async (c: ReceiveContext) => {
      try {
        const value = await body(c);
        settleResult({ value });
        return value;
      } catch (error) {
        settleResult({ error });
        throw error;
      }
    });
    child = pid;
    const down = await ctx.receive((m): m is DownMessage => isDown(m) && m.ref === ref);
    settleReason(down.reason);
  });
  // The parent runs asynchronously: the child pid is known once it has.
  return {
    get pid(): Pid {
      if (child === undefined) throw new Error("child not started yet");
      return child;
    },
    result,
    reason,
  };
}

async function started(r: { pid: Pid }): Promise<Pid> {
  let pid: Pid | undefined;
  await until(() => {
    try {
      pid = r.pid;
      return true;
    } catch {
      return false;
    }
  });
  return pid!;
}

let baseline = 0;
let timersBefore = 0;
let logs: LogRecord[] = [];
beforeEach(() => {
  logs = captureLogs().records;
  baseline = processCount();
  timersBefore = timerCount();
});
afterEach(async () => {
  await until(() => processCount() === baseline, 2500, "the test's processes to end");
  await until(() => timerCount() === timersBefore, 2500, "the test's timers to go");
});

describe("selective receive", () => {
  test("unmatched messages stay queued in order and are received later", async () => {
    const r = run(async (ctx) => {
      const first = await ctx.receive(isTagged("c"));
      const rest = [await ctx.receive(), await ctx.receive(), await ctx.receive()];
      return { first, rest };
    });
    const pid = await started(r);
    send(pid, "a");
    send(pid, { tag: "b", n: 1 });
    send(pid, { tag: "c", n: 2 });
    send(pid, "d");
    const { value } = await r.result;
    expect(value).toEqual({ first: { tag: "c", n: 2 }, rest: ["a", { tag: "b", n: 1 }, "d"] });
    expect(await r.reason).toBe("normal");
  });

  test("messages queued before the receive are scanned oldest first", async () => {
    const r = run(async (ctx) => {
      // Wait for the go signal first: everything else stays in the mailbox meanwhile.
      await ctx.receive((m) => m === "go");
      const out: unknown[] = [];
      out.push(await ctx.receive(isNumber));
      out.push(await ctx.receive(isNumber));
      out.push(await ctx.receive((m) => m === "x"));
      out.push(await ctx.receive());
      out.push(await ctx.receive());
      return out;
    });
    const pid = await started(r);
    for (const m of ["x", 1, "y", 2, 3]) send(pid, m);
    await until(() => processInfo(pid)?.messageQueueLen === 5);
    send(pid, "go");
    const { value } = await r.result;
    expect(value).toEqual([1, 2, "x", "y", 3]);
  });

  test("the mailbox length shows what a waiting receive left unmatched", async () => {
    const r = run(async (ctx) => ctx.receive((m) => m === "wanted"));
    const pid = await started(r);
    send(pid, 1);
    send(pid, 2);
    await settle();
    expect(isAlive(pid)).toBe(true);
    expect(processInfo(pid)?.messageQueueLen).toBe(2);
    send(pid, "wanted");
    expect((await r.result).value).toBe("wanted");
  });

  test("a message sent while waiting is matched directly by the pattern", async () => {
    const tested: unknown[] = [];
    const r = run(async (ctx) =>
      ctx.receive((m) => {
        tested.push(m);
        return m === 3;
      }),
    );
    const pid = await started(r);
    await settle();
    send(pid, 1);
    send(pid, 2);
    send(pid, 3);
    send(pid, 4);
    expect((await r.result).value).toBe(3);
    expect(tested).toEqual([1, 2, 3]);
  });

  test("a message already in the mailbox is received at once", async () => {
    const r = run(async (ctx) => {
      send(ctx.self, "to myself");
      return ctx.receive(undefined, 0);
    });
    expect((await r.result).value).toBe("to myself");
  });

  test("receive without a pattern takes messages in arrival order", async () => {
    const r = run(async (ctx) => {
      const out: unknown[] = [];
      for (let i = 0; i < 100; i++) out.push(await ctx.receive());
      return out;
    });
    const pid = await started(r);
    for (let i = 0; i < 100; i++) send(pid, i);
    expect((await r.result).value).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  test("DOWN and EXIT messages are received with isDown / isExit", async () => {
    const r = run(async (ctx) => {
      trapExit(true);
      const linked = spawnLink(async () => {
        throw new Error("linked child failed");
      });
      const watched = spawnMonitor(async (c: ReceiveContext) => void (await c.receive()));
      send(watched.pid, "end");
      const down = await ctx.receive(isDown);
      const ex = await ctx.receive(isExit);
      return { down, ex, linked, watched };
    });
    const { value, error } = await r.result;
    expect(error).toBeUndefined();
    expect(value!.down).toEqual({ type: "DOWN", ref: value!.watched.ref, pid: value!.watched.pid, reason: "normal" });
    expect(value!.ex.from).toBe(value!.linked);
    expect((value!.ex.reason as { crash: Error }).crash.message).toBe("linked child failed");
  });
  test("selective receive matches a model mailbox over thousands of mixed receives", async () => {
    // A small deterministic PRNG so a failure replays.
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    const N = 5000;
    const ops: { mod: number; rem: number }[] = [];
    for (let i = 0; i < 3000; i++) {
      const mod = rand(4) === 0 ? 0 : 2 + rand(6); // 0 = no pattern
      ops.push({ mod, rem: mod === 0 ? 0 : rand(mod) });
    }
    // The model: a plain array, oldest first.
    const model = Array.from({ length: N }, (_, i) => i);
    const expected: (number | undefined)[] = [];
    for (const { mod, rem } of ops) {
      const i = mod === 0 ? 0 : model.findIndex((m) => m % mod === rem);
      expected.push(i < 0 || model.length === 0 ? undefined : model.splice(i, 1)[0]);
    }
    const r = run(async (ctx) => {
      await ctx.receive((m) => m === "go");
      const out: (number | undefined)[] = [];
      for (const { mod, rem } of ops) {
        const m = await ctx.receive(mod === 0 ? undefined : (x: unknown) => (x as number) % mod === rem, 0);
        out.push(m as number | undefined);
      }
      const rest: unknown[] = [];
      for (;;) {
        const m = await ctx.receive(undefined, 0);
        if (m === undefined) break;
        rest.push(m);
      }
      return { out, rest };
    });
    const pid = await started(r);
    for (let i = 0; i < N; i++) send(pid, i);
    send(pid, "go");
    const { value } = await r.result;
    expect(value!.out).toEqual(expected);
    expect(value!.rest).toEqual(model);
  });

  // A process blocked in receive is "waiting" (Erlang's process_info status), as an idle
  // callback process is. An async-function process holds its BUSY flag for its whole life
  // (process.ts, Process.hold via ReceiveLoop.start), so processInfo reports "runnable".
  test("a process blocked in receive has status waiting", async () => {
    const r = run(async (ctx) => ctx.receive());
    const pid = await started(r);
    await settle();
    try {
      expect(processInfo(pid)?.status).toBe("waiting");
    } finally {
      send(pid, "done");
      await r.reason;
    }
  });

  // The pattern is the receiver's code; a bug in it must not blow up whoever sends.
  // Process.deliver runs the waiting receive's pattern (receive.ts, Waiter.offer) synchronously
  // inside the sender's send(): a throw there crashes the receiver, never the sender.
  test("a pattern that throws does not throw in the sender's send() (outside a process)", async () => {
    const r = run(async (ctx) => ctx.receive((m) => (m as { x: { y: number } }).x.y === 1));
    const pid = await started(r);
    await settle();
    try {
      expect(() => send(pid, { x: null })).not.toThrow();
    } finally {
      exit(pid, "kill");
      await r.reason;
    }
  });

  test("a pattern that throws does not crash the sending process", async () => {
    const r = run(async (ctx) => ctx.receive((m) => (m as { x: { y: number } }).x.y === 1));
    const receiver = await started(r);
    await settle();
    const sender = spawn({
      init: () => null,
      handleInfo: (_m: unknown, s: null) => {
        send(receiver, { x: null });
        return ok(s);
      },
    });
    try {
      send(sender, "go");
      await until(() => processInfo(sender)?.messagesHandled === 1 || !isAlive(sender));
      await settle();
      expect(isAlive(sender)).toBe(true);
      // The message is not lost: either the receiver crashed on its own pattern or it is still queued.
      expect(!isAlive(receiver) || processInfo(receiver)?.messageQueueLen === 1).toBe(true);
    } finally {
      exit(sender, "kill");
      exit(receiver, "kill");
      await r.reason;
    }
  });
});

describe("receive with a timeout", () => {
  test("resolves undefined after about the timeout when nothing matches", async () => {
    const r = run(async (ctx) => {
      const t0 = performance.now();
      const got = await ctx.receive((m) => m === "never", 100);
      return { got, elapsed: performance.now() - t0 };
    });
    const pid = await started(r);
    send(pid, "not this one");
    const { value } = await r.result;
    expect(value!.got).toBeUndefined();
    expect(value!.elapsed).toBeGreaterThanOrEqual(95);
    expect(value!.elapsed).toBeLessThan(1500);
  });

  test("a message arriving after the timeout is still queued and received later", async () => {
    const r = run(async (ctx) => {
      const first = await ctx.receive(undefined, 30);
      const second = await ctx.receive(undefined, 2000);
      return [first, second];
    });
    const pid = await started(r);
    await sleep(80);
    send(pid, "late");
    expect((await r.result).value).toEqual([undefined, "late"]);
  });

  test("a match before the timeout wins; the timer is cancelled and nothing stray arrives", async () => {
    const r = run(async (ctx) => {
      const got = await ctx.receive(isNumber, 150);
      const timersAfterMatch = timerCount();
      await sleep(250);
      const leftover = processInfo(ctx.self)?.messageQueueLen;
      const poll = await ctx.receive(undefined, 0);
      return { got, timersAfterMatch, leftover, poll };
    });
    const pid = await started(r);
    await settle();
    send(pid, 7);
    const { value } = await r.result;
    expect(value).toEqual({ got: 7, timersAfterMatch: timersBefore, leftover: 0, poll: undefined });
  });

  test("timeout 0 polls: a match comes back, otherwise undefined without waiting", async () => {
    const r = run(async (ctx) => {
      const empty = await ctx.receive(undefined, 0);
      send(ctx.self, "a");
      send(ctx.self, 5);
      const noMatch = await ctx.receive((m) => m === "zzz", 0);
      const num = await ctx.receive(isNumber, 0);
      const any = await ctx.receive(undefined, 0);
      const timers = timerCount();
      return { empty, noMatch, num, any, timers };
    });
    const { value } = await r.result;
    expect(value).toEqual({ empty: undefined, noMatch: undefined, num: 5, any: "a", timers: timersBefore });
  });

  test("a poll resolves before a timer that is already due", async () => {
    const r = run(async (ctx) => {
      sendAfter(0, ctx.self, "timer");
      return ctx.receive((m) => m === "timer", 0);
    });
    expect((await r.result).value).toBeUndefined();
  });

  test("Infinity waits like no timeout", async () => {
    const r = run(async (ctx) => ctx.receive(undefined, Infinity));
    const pid = await started(r);
    await sleep(30);
    expect(timerCount()).toBe(timersBefore);
    send(pid, "finally");
    expect((await r.result).value).toBe("finally");
  });

  test("a process that dies while waiting in a timed receive leaves no timer behind", async () => {
    const r = run(async (ctx) => ctx.receive(undefined, 60_000));
    const pid = await started(r);
    await until(() => timerCount() === timersBefore + 1);
    exit(pid, "shutdown");
    expect(await r.reason).toBe("shutdown");
    expect(timerCount()).toBe(timersBefore);
  });

  test("bad arguments throw ERR_BADARG", async () => {
    const r = run(async (ctx) => {
      const codes: unknown[] = [];
      for (const call of [
        () => ctx.receive("x" as unknown as (m: unknown) => boolean),
        () => ctx.receive(undefined, -1),
        () => ctx.receive(undefined, Number.NaN),
        () => ctx.receive(undefined, "10" as unknown as number),
      ]) {
        try {
          await call();
          codes.push("no throw");
        } catch (err) {
          codes.push(err instanceof CorralError ? err.code : err);
        }
      }
      return codes;
    });
    expect((await r.result).value).toEqual(["ERR_BADARG", "ERR_BADARG", "ERR_BADARG", "ERR_BADARG"]);
  });
});

describe("type narrowing", () => {
  test("a type-guard pattern narrows the received type", async () => {
    const r = run(async (ctx) => {
      send(ctx.self, { tag: "t", n: 41 });
      send(ctx.self, 1);
      send(ctx.self, { type: "DOWN", ref: null, pid: null, reason: "normal" });
      const t = await ctx.receive(isTagged("t"));
      expectTypeOf(t).toEqualTypeOf<Tagged>();
      const n = await ctx.receive(isNumber, 100);
      expectTypeOf(n).toEqualTypeOf<number | undefined>();
      const plain = await ctx.receive((m): boolean => m !== null);
      expectTypeOf(plain).toEqualTypeOf<unknown>();
      const down = await ctx.receive(isDown, 0);
      expectTypeOf(down).toEqualTypeOf<DownMessage | undefined>();
      const ex = await ctx.receive(isExit, 0);
      expectTypeOf(ex).toEqualTypeOf<ExitMessage | undefined>();
      return t.n + (n ?? 0);
    });
    expect((await r.result).value).toBe(42);
  });

  test("a typed context narrows its messages", async () => {
    type Msg = { kind: "add"; by: number } | { kind: "get"; reply: (n: number) => void };
    let total: number | undefined;
    const pid = spawn(async (ctx: ReceiveContext<Msg>) => {
      let sum = 0;
      for (;;) {
        const m = await ctx.receive();
        expectTypeOf(m).toEqualTypeOf<Msg>();
        if (m.kind === "add") sum += m.by;
        else return m.reply(sum);
      }
    });
    send(pid, { kind: "add", by: 2 } satisfies Msg);
    send(pid, { kind: "add", by: 3 } satisfies Msg);
    send(pid, { kind: "get", reply: (n: number) => (total = n) } satisfies Msg);
    await until(() => !isAlive(pid));
    expect(total).toBe(5);
  });
});

describe("how an async-function process ends", () => {
  test("returning ends it with reason normal", async () => {
    const r = run(async (ctx) => ctx.receive());
    send(await started(r), "bye");
    expect(await r.reason).toBe("normal");
    expect(logs.filter((l) => l.msg === "process crashed")).toEqual([]);
  });

  test("throwing after an await ends it with { crash: the Error } and one crash report", async () => {
    const boom = new Error("async boom");
    const r = run(async (ctx) => {
      await ctx.receive();
      throw boom;
    });
    const pid = await started(r);
    send(pid, "trigger");
    const reason = await r.reason;
    expect(reason).toEqual({ crash: boom });
    expect((reason as { crash: Error }).crash).toBe(boom);
    await settle();
    const reports = logs.filter((l) => l.msg === "process crashed");
    expect(reports).toHaveLength(1);
    expect(reports[0]!.pid).toBe(pid.toString());
    expect(reports[0]!.err).toMatchObject({ message: "async boom" });
  });

  test("throwing before the first await is a crash too", async () => {
    const r = run(async () => {
      throw new Error("early");
    });
    expect(((await r.reason) as { crash: Error }).crash.message).toBe("early");
  });

  test("a non-Error rejection is wrapped in an Error", async () => {
    const r = run(async () => {
      await settle(1);
      throw "plain string";
    });
    const reason = (await r.reason) as { crash: Error };
    expect(reason.crash).toBeInstanceOf(Error);
    expect(reason.crash.message).toContain("plain string");
    expect(reason.crash.cause).toBe("plain string");
  });

  test("the name of the function names the behaviour in processInfo and crash reports", async () => {
    const gate = { open: false };
    const pid = spawn(async function namedWorker(ctx) {
      await ctx.receive();
      gate.open = true;
      throw new Error("named");
    });
    await settle();
    expect(processInfo(pid)?.behaviour).toBe("namedWorker");
    send(pid, "go");
    await until(() => !isAlive(pid));
    await settle();
    const reports = logs.filter((l) => l.msg === "process crashed");
    expect(reports).toHaveLength(1);
    expect(reports[0]!.behaviour).toBe("namedWorker");
  });
});

describe("concurrent receives", () => {
  test("a second receive while one is pending throws ERR_BADARG; the first still works", async () => {
    const r = run(async (ctx) => {
      const first = ctx.receive();
      let code: unknown = "no throw";
      try {
        await ctx.receive();
      } catch (err) {
        code = err instanceof CorralError ? err.code : err;
      }
      return { code, first: await first };
    });
    const pid = await started(r);
    await settle();
    send(pid, "one");
    expect((await r.result).value).toEqual({ code: "ERR_BADARG", first: "one" });
    expect(await r.reason).toBe("normal");
  });

  test("a second receive while a timed one is pending also throws", async () => {
    const r = run(async (ctx) => {
      const first = ctx.receive(undefined, 50);
      let code: unknown = "no throw";
      try {
        await ctx.receive(undefined, 0);
      } catch (err) {
        code = err instanceof CorralError ? err.code : err;
      }
      return { code, first: await first };
    });
    expect((await r.result).value).toEqual({ code: "ERR_BADARG", first: undefined });
  });
});

describe("receive and the other process kinds", () => {
  test("an async-function process and a callback process talk both ways", async () => {
    const echo = spawn({
      init: () => 0,
      handleInfo: (msg: unknown, n: number) => {
        if (msg === "stop") return stop(n);
        const { from, body } = msg as { from: Pid; body: unknown };
        send(from, { echo: body, n });
        return ok(n + 1);
      },
    });
    const r = run(async (ctx) => {
      const out: unknown[] = [];
      for (const body of ["a", "b", "c"]) {
        send(echo, { from: ctx.self, body });
        out.push(await ctx.receive(undefined, 2000));
      }
      send(echo, "stop");
      return out;
    });
    expect((await r.result).value).toEqual([
      { echo: "a", n: 0 },
      { echo: "b", n: 1 },
      { echo: "c", n: 2 },
    ]);
    await until(() => !isAlive(echo));
  });

  test("monitor() in the synchronous part, then receive the DOWN", async () => {
    const target = spawn(async (c: ReceiveContext) => void (await c.receive()));
    const r = run(async (ctx) => {
      const ref = monitor(target);
      send(target, "go");
      const down = await ctx.receive((m): m is DownMessage => isDown(m) && m.ref === ref, 2000);
      return down;
    });
    const down = (await r.result).value;
    expect(down).toMatchObject({ type: "DOWN", pid: target, reason: "normal" });
  });
});

describe("the receive context acts as its process after an await", () => {
  test("ctx.monitor, ctx.spawnLink, ctx.trapExit and ctx.exit work after a receive", async () => {
    const seen: unknown[] = [];
    const done = new Promise<void>((resolve) => {
      spawn(async (ctx) => {
        await ctx.receive((m) => m === "go");
        expect(() => self()).toThrow(/outside a process/);
        expect(ctx.trapExit(true)).toBe(false);
        const child = ctx.spawnLink(async (c) => {
          await c.receive();
          throw new Error("child failed");
        });
        const ref = ctx.monitor(child);
        send(child, "die");
        const down = await ctx.receive(isDown);
        const exitMsg = await ctx.receive(isExit);
        seen.push(down.ref === ref, exitMsg.from === child, (exitMsg.reason as { crash: Error }).crash.message);
        const victim = spawn(async (c) => void (await c.receive()));
        const r2 = ctx.monitor(victim);
        ctx.exit(victim, "shutdown");
        const d2 = await ctx.receive((m) => isDown(m) && m.ref === r2);
        seen.push((d2 as { reason: unknown }).reason);
        resolve();
      }, undefined, { name: "ctx-user" });
    });
    captureLogs();
    send("ctx-user", "go");
    await done;
    expect(seen).toEqual([true, true, "child failed", "shutdown"]);
  });
});
