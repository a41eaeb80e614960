import { afterEach, beforeEach, describe, expect, test } from "vitest";
import {
  CorralError,
  demonitor,
  exit,
  isAlive,
  isDown,
  isExit,
  join,
  link,
  monitor,
  ok,
  Pid,
  processCount,
  processes,
  processInfo,
  Ref,
  self,
  send,
  spawn,
  spawnLink,
  spawnMonitor,
  stop,
  trapExit,
  unlink,
  whereis,
  type DownMessage,
  type ExitMessage,
  type ExitReason,
  type ProcessBehavior,
  type ProcessInfo,
  type SpawnOptions,
} from "../../src/index.js";
import { captureLogs, settle, until, type LogRecord } from "../support/helpers.js";

// ---------------------------------------------------------------------------------------
// Helpers: an "agent" process that runs test code inside itself (a job is a function run
// synchronously in handleInfo, so self(), link(), monitor() … see it as the caller) and
// keeps every other message in an inbox.

class Job {
  constructor(
    readonly fn: () => unknown,
    readonly resolve: (v: unknown) => void,
    readonly reject: (e: unknown) => void,
  ) {}
}

interface Agent {
  readonly pid: Pid;
  readonly inbox: unknown[];
  /** Runs fn inside the agent; a returned promise holds the agent's mailbox until it settles. */
  run<T>(fn: () => T): Promise<Awaited<T>>;
  downs(): DownMessage[];
  exits(): ExitMessage[];
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === "object" && v !== null && typeof (v as { then?: unknown }).then === "function";
}

function agent(opts?: SpawnOptions): Agent {
  const inbox: unknown[] = [];
  const behaviour: ProcessBehavior<null, unknown, undefined> = {
    init: () => null,
    handleInfo(msg, s) {
      if (!(msg instanceof Job)) {
        inbox.push(msg);
        return ok(s);
      }
      let out: unknown;
      try {
        out = msg.fn();
      } catch (err) {
        msg.reject(err);
        return ok(s);
      }
      if (isThenable(out)) {
        return Promise.resolve(out).then(
          (v) => {
            msg.resolve(v);
            return ok(s);
          },
          (err: unknown) => {
            msg.reject(err);
            return ok(s);
          },
        );
      }
      msg.resolve(out);
      return ok(s);
    },
  };
  const pid = spawn(behaviour, undefined, opts);
  return {
    pid,
    inbox,
    run<T>(fn: () => T): Promise<Awaited<T>> {
      return new Promise<Awaited<T>>((resolve, reject) => {
        send(pid, new Job(fn, resolve as (v: unknown) => void, reject));
      });
    },
    downs: () => inbox.filter(isDown),
    exits: () => inbox.filter(isExit),
  };
}

/** A callback process that idles until it gets "stop" (or a { stop: reason }). */
function idler(opts?: SpawnOptions): Pid {
  return spawn(
    {
      init: () => null,
      handleInfo: (msg: unknown, s: null) => {
        if (msg === "stop") return stop(s);
        if (typeof msg === "object" && msg !== null && "stop" in msg) return stop(s, (msg as { stop: ExitReason }).stop);
        if (msg === "throw") throw new Error("idler told to throw");
        return ok(s);
      },
    },
    undefined,
    opts,
  );
}

function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

function errorOf(fn: () => unknown): CorralError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CorralError);
    return err as CorralError;
  }
  throw new Error("expected a CorralError, nothing was thrown");
}

async function kill(...pids: Pid[]): Promise<void> {
  for (const p of pids) exit(p, "kill");
  await until(() => pids.every((p) => !isAlive(p)), 2000, "killed processes to end");
}

/** Spawns a monitoring agent for pid and returns a promise of the DOWN reason. */
async function watch(pid: Pid): Promise<{ reason: Promise<ExitReason>; watcher: Agent }> {
  const watcher = agent();
  const ref = await watcher.run(() => monitor(pid));
  const reason = (async () => {
    await until(() => watcher.downs().some((d) => d.ref === ref), 2500, `DOWN from ${pid}`);
    const r = watcher.downs().find((d) => d.ref === ref)!.reason;
    exit(watcher.pid, "kill");
    return r;
  })();
  return { reason, watcher };
}

function crashReports(records: LogRecord[]): LogRecord[] {
  return records.filter((r) => r.msg === "process crashed");
}

function crashError(reason: ExitReason): Error {
  expect(typeof reason).toBe("object");
  expect(reason).toHaveProperty("crash");
  const err = (reason as { crash: unknown }).crash;
  expect(err).toBeInstanceOf(Error);
  return err as Error;
}

let baseline = 0;
let logs: LogRecord[] = [];
beforeEach(() => {
  logs = captureLogs().records;
  baseline = processCount();
});
afterEach(async () => {
  await until(() => processCount() === baseline, 2500, "the test's processes to end");
});

// ---------------------------------------------------------------------------------------

describe("spawn with a callback behaviour", () => {
  test("init gets the argument, its plain return is the state, handleInfo threads the state", async () => {
    const seen: [unknown, number][] = [];
    let initArg: unknown;
    const pid = spawn(
      {
        init: (arg: { start: number }) => {
          initArg = arg;
          return arg.start;
        },
        handleInfo: (msg: unknown, n: number) => {
          seen.push([msg, n]);
          return msg === "done" ? stop(n) : ok(n + 1);
        },
      },
      { start: 10 },
    );
    send(pid, "a");
    send(pid, "b");
    send(pid, "done");
    await until(() => !isAlive(pid));
    expect(initArg).toEqual({ start: 10 });
    expect(seen).toEqual([
      ["a", 10],
      ["b", 11],
      ["done", 12],
    ]);
  });

  test("init may return ok(state)", async () => {
    const states: unknown[] = [];
    const pid = spawn({
      init: () => ok({ n: 1 }),
      handleInfo: (_msg: unknown, s: { n: number }) => {
        states.push(s);
        return stop(s);
      },
    });
    send(pid, "x");
    await until(() => !isAlive(pid));
    expect(states).toEqual([{ n: 1 }]);
  });

  test("init may return ok(state, { hibernate: true }) and the state survives", async () => {
    const states: unknown[] = [];
    const pid = spawn({
      init: () => ok({ n: 1, list: [1, 2, 3] }, { hibernate: true }),
      handleInfo: (_msg: unknown, s: { n: number; list: number[] }) => {
        states.push(s);
        return stop(s);
      },
    });
    await until(() => processInfo(pid)?.hibernated === true);
    expect(processInfo(pid)?.status).toBe("hibernated");
    send(pid, "x");
    await until(() => !isAlive(pid));
    expect(states).toEqual([{ n: 1, list: [1, 2, 3] }]);
  });

  test("init may return stop(state, reason): the process ends with that reason", async () => {
    const handled: unknown[] = [];
    const watcher = agent();
    const { pid, ref } = await watcher.run(() =>
      spawnMonitor({
        init: () => stop(null, { shutdown: "not today" }),
        handleInfo: (msg: unknown, s: null) => {
          handled.push(msg);
          return ok(s);
        },
      }),
    );
    send(pid, "never handled");
    await until(() => watcher.downs().length === 1);
    expect(watcher.downs()).toEqual([{ type: "DOWN", ref, pid, reason: { shutdown: "not today" } }]);
    expect(handled).toEqual([]);
    await kill(watcher.pid);
  });

  test("handleInfo may return ok(state, { hibernate: true }): hibernated between messages, state kept", async () => {
    type S = { count: number; tags: Set<string>; when: Date; seen: number[] };
    let final: S | undefined;
    const pid = spawn({
      init: (): S => ({ count: 0, tags: new Set<string>(), when: new Date(0), seen: [] }),
      handleInfo: (msg: unknown, s: S) => {
        if (msg === "stop") return stop(s);
        s.tags.add(String(msg));
        return ok({ ...s, count: s.count + 1, seen: [...s.seen, s.count] }, { hibernate: true });
      },
      terminate: (_r: ExitReason, s: S) => {
        final = s;
      },
    });
    let handled = 0;
    for (const m of ["a", "b", "c"]) {
      send(pid, m);
      handled++;
      await until(() => processInfo(pid)?.messagesHandled === handled && processInfo(pid)?.hibernated === true);
      expect(processInfo(pid)).toMatchObject({ hibernated: true, status: "hibernated" });
    }
    send(pid, "stop");
    await until(() => !isAlive(pid));
    expect(final).toEqual({ count: 3, tags: new Set(["a", "b", "c"]), when: new Date(0), seen: [0, 1, 2] });
    expect(final?.when).toBeInstanceOf(Date);
  });

  test("stop(state) ends the process with reason normal; terminate gets the reason and the state", async () => {
    const terminated: [ExitReason, unknown][] = [];
    const pid = spawn({
      init: () => 0,
      handleInfo: (msg: unknown, n: number) => (msg === "stop" ? stop(n + 100) : ok(n + 1)),
      terminate: (reason: ExitReason, n: number) => {
        terminated.push([reason, n]);
      },
    });
    const { reason } = await watch(pid);
    send(pid, "x");
    send(pid, "stop");
    expect(await reason).toBe("normal");
    expect(terminated).toEqual([["normal", 101]]);
  });

  test("plain objects shaped like results are accepted", async () => {
    const seen: unknown[] = [];
    const pid = spawn({
      init: () => ({ type: "ok", state: 5 }) as const,
      handleInfo: (msg: unknown, n: number) => {
        seen.push(n);
        return msg === "stop" ? ({ type: "stop", state: n, reason: "shutdown" } as const) : ({ type: "ok", state: n * 2 } as const);
      },
    });
    const { reason } = await watch(pid);
    send(pid, "x");
    send(pid, "stop");
    expect(await reason).toBe("shutdown");
    expect(seen).toEqual([5, 10]);
  });

  test("a class instance behaviour works and is named after its class", async () => {
    class Counter implements ProcessBehavior<number, string, number> {
      init(start: number): number {
        return start;
      }
      handleInfo(msg: string, n: number) {
        return msg === "stop" ? stop(n) : ok(n + 1);
      }
    }
    const pid = spawn(new Counter(), 3);
    await settle();
    expect(processInfo(pid)?.behaviour).toBe("Counter");
    send(pid, "stop");
    await until(() => !isAlive(pid));
  });

  test("self() inside init, handleInfo and terminate is the process's own pid", async () => {
    const seen: Pid[] = [];
    const pid = spawn({
      init: () => {
        seen.push(self());
        return null;
      },
      handleInfo: (_m: unknown, s: null) => {
        seen.push(self());
        return stop(s);
      },
      terminate: () => {
        seen.push(self());
      },
    });
    send(pid, "go");
    await until(() => !isAlive(pid));
    expect(seen).toHaveLength(3);
    for (const p of seen) expect(p).toBe(pid);
  });
});

describe("spawn with an async function", () => {
  test("gets ctx.self and the argument, takes messages with receive, ends normally when it returns", async () => {
    const got: unknown[] = [];
    let selfSeen: Pid | undefined;
    let ctxSelf: Pid | undefined;
    const pid = spawn(
      async (ctx, arg: string) => {
        selfSeen = self();
        ctxSelf = ctx.self;
        got.push(arg);
        got.push(await ctx.receive());
        got.push(await ctx.receive());
      },
      "hello",
    );
    const { reason } = await watch(pid);
    send(pid, 1);
    send(pid, 2);
    expect(await reason).toBe("normal");
    expect(got).toEqual(["hello", 1, 2]);
    expect(selfSeen).toBe(pid);
    expect(ctxSelf).toBe(pid);
  });

  test("a synchronous function that returns at once ends normally", async () => {
    let ran = false;
    const pid = spawn(() => {
      ran = true;
    });
    const { reason } = await watch(pid);
    expect(await reason).toBe("normal");
    expect(ran).toBe(true);
  });
});

describe("spawnLink and spawnMonitor", () => {
  test("both need a calling process: ERR_NOT_IN_PROCESS outside one, and nothing is spawned", () => {
    const before = processCount();
    expect(errorOf(() => spawnLink(async () => {})).code).toBe("ERR_NOT_IN_PROCESS");
    expect(errorOf(() => spawnMonitor(async () => {})).code).toBe("ERR_NOT_IN_PROCESS");
    expect(errorOf(() => spawnLink({ init: () => 0, handleInfo: (_m: unknown, s: number) => ok(s) })).code).toBe(
      "ERR_NOT_IN_PROCESS",
    );
    expect(processCount()).toBe(before);
  });

  test("spawnMonitor returns { pid, ref } and one DOWN with that ref follows", async () => {
    const a = agent();
    const { pid, ref } = await a.run(() =>
      spawnMonitor({ init: () => null, handleInfo: (_m: unknown, s: null) => stop(s, { shutdown: "done" }) }),
    );
    expect(pid).toBeInstanceOf(Pid);
    expect(ref).toBeInstanceOf(Ref);
    expect(processInfo(pid)?.monitoredBy).toEqual([a.pid]);
    send(pid, "go");
    await until(() => a.downs().length === 1);
    await settle(5);
    expect(a.downs()).toEqual([{ type: "DOWN", ref, pid, reason: { shutdown: "done" } }]);
    expect(a.downs()[0]!.ref).toBe(ref);
    expect(a.downs()[0]!.pid).toBe(pid);
    expect(isAlive(a.pid)).toBe(true);
    await kill(a.pid);
  });

  test("spawnLink links before the child runs: the child's crash kills the caller", async () => {
    const a = agent();
    const { reason } = await watch(a.pid);
    const child = await a.run(() => {
      const c = spawnLink({
        init: () => {
          throw new Error("child init failed");
        },
        handleInfo: (_m: unknown, s: null) => ok(s),
      });
      expect(processInfo(c)?.links).toEqual([self()]);
      return c;
    });
    const r = await reason;
    expect(crashError(r).message).toBe("child init failed");
    expect(isAlive(child)).toBe(false);
  });

  test("spawnLink with a trapping caller turns the child's exit into an EXIT message", async () => {
    const a = agent({ trapExit: true });
    const child = await a.run(() => spawnLink(async (ctx) => void (await ctx.receive())));
    expect(processInfo(a.pid)?.links).toEqual([child]);
    send(child, "go");
    await until(() => a.exits().length === 1);
    expect(a.exits()).toEqual([{ type: "EXIT", from: child, reason: "normal" }]);
    expect(processInfo(a.pid)?.links).toEqual([]);
    await kill(a.pid);
  });
});

describe("crashes", () => {
  test("a throw in handleInfo ends the process with { crash: the Error } and logs one crash report", async () => {
    const boom = new Error("boom");
    const pid = spawn({
      init: () => null,
      handleInfo: (_m: unknown, _s: null): never => {
        throw boom;
      },
    });
    const { reason } = await watch(pid);
    send(pid, { hello: "world" });
    const r = await reason;
    expect(r).toEqual({ crash: boom });
    expect(crashError(r)).toBe(boom);
    await settle();
    const reports = crashReports(logs);
    expect(reports).toHaveLength(1);
    const rep = reports[0]!;
    expect(rep.level).toBe(50);
    expect(rep.pid).toBe(pid.toString());
    expect(rep.behaviour).toBe("process");
    expect(rep.err).toMatchObject({ message: "boom" });
    expect(String((rep.err as { stack?: unknown }).stack)).toContain("boom");
    expect(String(rep.message)).toContain("world");
  });

  test("the crash report names the behaviour", async () => {
    class Fragile implements ProcessBehavior<null> {
      init(): null {
        return null;
      }
      handleInfo(): never {
        throw new TypeError("fragile");
      }
    }
    const pid = spawn(new Fragile());
    send(pid, "x");
    await until(() => !isAlive(pid));
    await settle();
    const reports = crashReports(logs);
    expect(reports).toHaveLength(1);
    expect(reports[0]!.behaviour).toBe("Fragile");
    expect(reports[0]!.err).toMatchObject({ message: "fragile" });
  });

  test("a rejected promise from handleInfo is a crash too", async () => {
    const err = new RangeError("late failure");
    const pid = spawn({
      init: () => null,
      handleInfo: async (_m: unknown, _s: null) => {
        await settle(1);
        throw err;
      },
    });
    const { reason } = await watch(pid);
    send(pid, "x");
    expect(crashError(await reason)).toBe(err);
    await settle();
    expect(crashReports(logs)).toHaveLength(1);
  });

  test.each([
    ["a string", "oops"],
    ["a number", 42],
    ["an object", { code: 7 }],
    ["undefined", undefined],
  ])("throwing %s is wrapped in an Error", async (_what, thrown) => {
    const pid = spawn({
      init: () => null,
      handleInfo: (_m: unknown, _s: null): never => {
        throw thrown;
      },
    });
    const { reason } = await watch(pid);
    send(pid, "x");
    const err = crashError(await reason);
    expect(err.message).toContain(String(typeof thrown === "object" ? JSON.stringify(thrown) : thrown));
    expect(err.cause).toBe(thrown);
    await settle();
    expect(crashReports(logs)).toHaveLength(1);
  });

  test("a throw in init is a crash", async () => {
    const a = agent();
    const { pid, ref } = await a.run(() =>
      spawnMonitor({
        init: (): null => {
          throw new Error("init failed");
        },
        handleInfo: (_m: unknown, s: null) => ok(s),
      }),
    );
    await until(() => a.downs().length === 1);
    const down = a.downs()[0]!;
    expect(down.ref).toBe(ref);
    expect(down.pid).toBe(pid);
    expect(crashError(down.reason).message).toBe("init failed");
    await settle();
    expect(crashReports(logs)).toHaveLength(1);
    await kill(a.pid);
  });

  test.each([
    ["a number", 42, "42"],
    ["undefined", undefined, "undefined"],
    ["a string", "ok", '"ok"'],
    ["a bare state", { count: 1 }, '{"count":1}'],
  ])("handleInfo returning %s crashes with ERR_BAD_RESULT naming the value", async (_what, value, shown) => {
    const pid = spawn({
      init: () => null,
      handleInfo: () => value as unknown as ReturnType<typeof ok<null>>,
    });
    const { reason } = await watch(pid);
    send(pid, "x");
    const err = crashError(await reason);
    expect(err).toBeInstanceOf(CorralError);
    expect((err as CorralError).code).toBe("ERR_BAD_RESULT");
    expect(err.message).toContain(shown);
    await settle();
    expect(crashReports(logs)).toHaveLength(1);
  });

  test("an async handleInfo resolving to a bad value crashes with ERR_BAD_RESULT", async () => {
    const pid = spawn({
      init: () => null,
      handleInfo: async () => 1234 as unknown as ReturnType<typeof ok<null>>,
    });
    const { reason } = await watch(pid);
    send(pid, "x");
    const err = crashError(await reason);
    expect((err as CorralError).code).toBe("ERR_BAD_RESULT");
    expect(err.message).toContain("1234");
  });

  test("stop with an invalid reason crashes with ERR_BAD_RESULT", async () => {
    const pid = spawn({
      init: () => null,
      handleInfo: (_m: unknown, s: null) => stop(s, "bogus" as unknown as ExitReason),
    });
    const { reason } = await watch(pid);
    send(pid, "x");
    const err = crashError(await reason);
    expect((err as CorralError).code).toBe("ERR_BAD_RESULT");
    expect(err.message).toContain("bogus");
  });
});

describe("links", () => {
  test("a crash propagates over a link: the linked process dies with the same reason", async () => {
    const a = agent();
    const b = idler();
    await a.run(() => link(b));
    expect(processInfo(a.pid)?.links).toEqual([b]);
    expect(processInfo(b)?.links).toEqual([a.pid]);
    const { reason } = await watch(a.pid);
    send(b, "throw");
    const r = await reason;
    expect(crashError(r).message).toBe("idler told to throw");
    expect(isAlive(b)).toBe(false);
  });

  test("a crash that kills linked processes is reported once, by the crashing process", async () => {
    const a = agent();
    const b = agent();
    const c = idler();
    await a.run(() => link(c));
    await b.run(() => link(c));
    send(c, "throw");
    await until(() => !isAlive(a.pid) && !isAlive(b.pid) && !isAlive(c));
    await settle();
    const reports = crashReports(logs);
    expect(reports).toHaveLength(1);
    expect(reports[0]!.pid).toBe(c.toString());
  });

  test("links are two-way: the linker's exit kills the linked process", async () => {
    const a = agent();
    const b = idler();
    await a.run(() => link(b));
    const { reason } = await watch(b);
    exit(a.pid, { shutdown: "a is gone" });
    expect(await reason).toEqual({ shutdown: "a is gone" });
  });

  test("exits propagate along a chain of links", async () => {
    const a = agent();
    const b = agent();
    const c = idler();
    await a.run(() => link(b.pid));
    await b.run(() => link(c));
    const wa = await watch(a.pid);
    const wb = await watch(b.pid);
    send(c, { stop: "shutdown" });
    expect(await wb.reason).toBe("shutdown");
    expect(await wa.reason).toBe("shutdown");
  });

  test("a normal exit does not kill a linked process", async () => {
    const a = agent();
    const b = idler();
    await a.run(() => link(b));
    send(b, "stop");
    await until(() => !isAlive(b));
    await settle(5);
    expect(isAlive(a.pid)).toBe(true);
    expect(processInfo(a.pid)?.links).toEqual([]);
    expect(a.inbox).toEqual([]);
    await kill(a.pid);
  });

  test("trapExit(true) returns the previous value and turns exit signals into EXIT messages", async () => {
    const a = agent();
    const flags = await a.run(() => [trapExit(true), trapExit(true)]);
    expect(flags).toEqual([false, true]);
    expect(processInfo(a.pid)?.trapExit).toBe(true);
    const b = idler();
    const c = idler();
    await a.run(() => {
      link(b);
      link(c);
    });
    send(b, "throw");
    send(c, { stop: { shutdown: 1 } });
    await until(() => a.exits().length === 2);
    expect(isAlive(a.pid)).toBe(true);
    const fromB = a.exits().find((m) => m.from === b)!;
    const fromC = a.exits().find((m) => m.from === c)!;
    expect(fromB.type).toBe("EXIT");
    expect(crashError(fromB.reason).message).toBe("idler told to throw");
    expect(fromC).toEqual({ type: "EXIT", from: c, reason: { shutdown: 1 } });
    expect(await a.run(() => trapExit(false))).toBe(true);
    expect(processInfo(a.pid)?.trapExit).toBe(false);
    await kill(a.pid);
  });

  test("a trapping process gets EXIT normal from a linked process that ends normally", async () => {
    const a = agent({ trapExit: true });
    const b = idler();
    await a.run(() => link(b));
    send(b, "stop");
    await until(() => a.exits().length === 1);
    expect(a.exits()[0]).toEqual({ type: "EXIT", from: b, reason: "normal" });
    await kill(a.pid);
  });

  test("trapExit outside a process throws ERR_NOT_IN_PROCESS; a non-boolean throws ERR_BADARG", async () => {
    expect(errorOf(() => trapExit(true)).code).toBe("ERR_NOT_IN_PROCESS");
    const a = agent();
    const err = await a.run(() => errorOf(() => trapExit("yes" as unknown as boolean)));
    expect(err.code).toBe("ERR_BADARG");
    await kill(a.pid);
  });

  test("link to a dead pid throws ERR_NOPROC when not trapping", async () => {
    const dead = idler();
    await kill(dead);
    const a = agent();
    const err = await a.run(() => errorOf(() => link(dead)));
    expect(err.code).toBe("ERR_NOPROC");
    expect(isAlive(a.pid)).toBe(true);
    await kill(a.pid);
  });

  test("link to a dead pid gives EXIT noproc when trapping", async () => {
    const dead = idler();
    await kill(dead);
    const a = agent({ trapExit: true });
    await a.run(() => link(dead));
    await until(() => a.exits().length === 1);
    expect(a.exits()[0]).toEqual({ type: "EXIT", from: dead, reason: "noproc" });
    expect(isAlive(a.pid)).toBe(true);
    await kill(a.pid);
  });

  test("link to self is a no-op", async () => {
    const a = agent();
    await a.run(() => link(self()));
    expect(processInfo(a.pid)?.links).toEqual([]);
    await settle();
    expect(a.inbox).toEqual([]);
    await kill(a.pid);
  });

  test("link outside a process throws ERR_NOT_IN_PROCESS", async () => {
    const b = idler();
    expect(errorOf(() => link(b)).code).toBe("ERR_NOT_IN_PROCESS");
    expect(processInfo(b)?.links).toEqual([]);
    await kill(b);
  });

  test("unlink removes the link both ways", async () => {
    const a = agent();
    const b = idler();
    await a.run(() => link(b));
    await a.run(() => unlink(b));
    expect(processInfo(a.pid)?.links).toEqual([]);
    expect(processInfo(b)?.links).toEqual([]);
    send(b, "throw");
    await until(() => !isAlive(b));
    await settle(5);
    expect(isAlive(a.pid)).toBe(true);
    await kill(a.pid);
  });

  test('"kill" cannot be trapped and becomes "killed" for links and monitors', async () => {
    let terminated = 0;
    const target = spawn(
      {
        init: () => null,
        handleInfo: (_m: unknown, s: null) => ok(s),
        terminate: () => {
          terminated++;
        },
      },
      undefined,
      { trapExit: true },
    );
    const linked = agent({ trapExit: true });
    await linked.run(() => link(target));
    const { reason } = await watch(target);
    exit(target, "kill");
    expect(await reason).toBe("killed");
    await until(() => linked.exits().length === 1);
    expect(linked.exits()[0]).toEqual({ type: "EXIT", from: target, reason: "killed" });
    expect(terminated).toBe(0);
    await kill(linked.pid);
  });

  test('a process killed from inside another process also ends with "killed"', async () => {
    const target = idler({ trapExit: true });
    const { reason } = await watch(target);
    const a = agent();
    await a.run(() => exit(target, "kill"));
    expect(await reason).toBe("killed");
    expect(isAlive(a.pid)).toBe(true);
    await kill(a.pid);
  });
});

describe("monitors", () => {
  test("exactly one DOWN { type, ref, pid, reason } per monitor", async () => {
    const a = agent();
    const target = idler();
    const [r1, r2] = await a.run(() => [monitor(target), monitor(target)]);
    expect(r1).toBeInstanceOf(Ref);
    expect(r1!.equals(r2)).toBe(false);
    expect(processInfo(target)?.monitoredBy).toEqual([a.pid, a.pid]);
    expect(processInfo(a.pid)?.monitors).toHaveLength(2);
    send(target, { stop: { shutdown: "bye" } });
    await until(() => a.downs().length === 2);
    await settle(10);
    expect(a.downs()).toHaveLength(2);
    for (const d of a.downs()) {
      expect(d).toEqual({ type: "DOWN", ref: d.ref, pid: target, reason: { shutdown: "bye" } });
      expect(d.pid).toBe(target);
    }
    expect(new Set(a.downs().map((d) => d.ref))).toEqual(new Set([r1, r2]));
    expect(processInfo(a.pid)?.monitors).toEqual([]);
    expect(isAlive(a.pid)).toBe(true);
    await kill(a.pid);
  });

  test("a monitored process's crash reaches the monitor; the monitor does not die", async () => {
    const a = agent();
    const target = idler();
    const ref = await a.run(() => monitor(target));
    send(target, "throw");
    await until(() => a.downs().length === 1);
    expect(a.downs()[0]!.ref).toBe(ref);
    expect(crashError(a.downs()[0]!.reason).message).toBe("idler told to throw");
    expect(isAlive(a.pid)).toBe(true);
    await kill(a.pid);
  });

  test("a message sent just before dying arrives before the DOWN and the EXIT", async () => {
    const watcher = agent();
    const linked = agent({ trapExit: true });
    const dying = spawn({
      init: () => null,
      handleInfo: (_m: unknown, _s: null): never => {
        send(watcher.pid, "last words");
        send(linked.pid, "last words");
        throw new Error("dead");
      },
    });
    await watcher.run(() => monitor(dying));
    await linked.run(() => link(dying));
    send(dying, "go");
    await until(() => watcher.inbox.length === 2 && linked.inbox.length === 2);
    expect(watcher.inbox[0]).toBe("last words");
    expect(isDown(watcher.inbox[1])).toBe(true);
    expect(linked.inbox[0]).toBe("last words");
    expect(isExit(linked.inbox[1])).toBe(true);
    await kill(watcher.pid, linked.pid);
  });

  test("monitoring a dead pid delivers DOWN noproc at once", async () => {
    const dead = idler();
    await kill(dead);
    const a = agent();
    const [ref, queued] = await a.run(() => {
      const r = monitor(dead);
      return [r, processInfo(self())?.messageQueueLen] as const;
    });
    expect(queued).toBe(1);
    await until(() => a.downs().length === 1);
    await settle(5);
    expect(a.downs()).toEqual([{ type: "DOWN", ref, pid: dead, reason: "noproc" }]);
    await kill(a.pid);
  });

  test("monitor outside a process throws ERR_NOT_IN_PROCESS", async () => {
    const b = idler();
    expect(errorOf(() => monitor(b)).code).toBe("ERR_NOT_IN_PROCESS");
    expect(errorOf(() => demonitor(new Ref())).code).toBe("ERR_NOT_IN_PROCESS");
    await kill(b);
  });

  test("demonitor stops the monitor: no DOWN comes", async () => {
    const a = agent();
    const target = idler();
    const ref = await a.run(() => monitor(target));
    expect(await a.run(() => demonitor(ref))).toBe(true);
    expect(processInfo(target)?.monitoredBy).toEqual([]);
    expect(processInfo(a.pid)?.monitors).toEqual([]);
    expect(await a.run(() => demonitor(ref))).toBe(false);
    send(target, { stop: "shutdown" });
    await until(() => !isAlive(target));
    await settle(10);
    expect(a.downs()).toEqual([]);
    await kill(a.pid);
  });

  test("demonitor with { flush: true } removes a DOWN already queued", async () => {
    const a = agent();
    const target = idler();
    const gate = deferred();
    let ref: Ref | undefined;
    // The first job monitors and then holds a's mailbox until the gate opens.
    const holding = a.run(() => {
      ref = monitor(target);
      return gate.promise;
    });
    await until(() => ref !== undefined);
    const flushed = a.run(() => {
      const active = demonitor(ref!, { flush: true });
      return { active, left: processInfo(self())?.messageQueueLen };
    });
    exit(target, "shutdown");
    await until(() => !isAlive(target));
    expect(processInfo(a.pid)?.messageQueueLen).toBe(2); // the flush job, then the DOWN
    gate.resolve();
    await holding;
    const out = await flushed;
    expect(out.left).toBe(0);
    await settle(5);
    expect(a.downs()).toEqual([]);
    expect(a.inbox).toEqual([]);
    await kill(a.pid);
  });

  test("demonitor without flush leaves a queued DOWN in the mailbox", async () => {
    const dead = idler();
    await kill(dead);
    const a = agent();
    const ref = await a.run(() => {
      const r = monitor(dead);
      demonitor(r);
      return r;
    });
    await until(() => a.downs().length === 1);
    expect(a.downs()[0]!.ref).toBe(ref);
    await kill(a.pid);
  });

  test("demonitor with flush also removes a noproc DOWN", async () => {
    const dead = idler();
    await kill(dead);
    const a = agent();
    const left = await a.run(() => {
      demonitor(monitor(dead), { flush: true });
      return processInfo(self())?.messageQueueLen;
    });
    expect(left).toBe(0);
    await settle(5);
    expect(a.inbox).toEqual([]);
    await kill(a.pid);
  });

  test("a monitor held by a process that dies is removed from its target", async () => {
    const a = agent();
    const target = idler();
    await a.run(() => monitor(target));
    expect(processInfo(target)?.monitoredBy).toEqual([a.pid]);
    await kill(a.pid);
    expect(processInfo(target)?.monitoredBy).toEqual([]);
    await kill(target);
  });
});

describe("exit/2", () => {
  test("from outside a process: exit(pid, reason) ends it with that reason", async () => {
    const terminated: ExitReason[] = [];
    const pid = spawn({
      init: () => null,
      handleInfo: (_m: unknown, s: null) => ok(s),
      terminate: (r: ExitReason) => {
        terminated.push(r);
      },
    });
    const { reason } = await watch(pid);
    exit(pid, "shutdown");
    expect(await reason).toBe("shutdown");
    expect(terminated).toEqual(["shutdown"]);
  });

  test("from inside a process: the reason object reaches monitors unchanged", async () => {
    const pid = idler();
    const { reason } = await watch(pid);
    const a = agent();
    const why = { shutdown: { detail: [1, 2] } };
    await a.run(() => exit(pid, why));
    expect(await reason).toBe(why);
    expect(isAlive(a.pid)).toBe(true);
    await kill(a.pid);
  });

  test("an exit signal with reason { crash } kills a non-trapping process with it", async () => {
    const pid = idler();
    const { reason } = await watch(pid);
    const err = new Error("injected");
    exit(pid, { crash: err });
    expect(crashError(await reason)).toBe(err);
  });

  test('exit(pid, "normal") from another process is ignored by a non-trapping process', async () => {
    const pid = idler();
    const a = agent();
    await a.run(() => exit(pid, "normal"));
    await settle(10);
    expect(isAlive(pid)).toBe(true);
    await kill(pid, a.pid);
  });

  test('exit(pid, "normal") reaches a trapping process as an EXIT message from the sender', async () => {
    const target = agent({ trapExit: true });
    const a = agent();
    await a.run(() => exit(target.pid, "normal"));
    await until(() => target.exits().length === 1);
    expect(target.exits()[0]).toEqual({ type: "EXIT", from: a.pid, reason: "normal" });
    expect(isAlive(target.pid)).toBe(true);
    await kill(target.pid, a.pid);
  });

  test('exit(self(), "normal") ends the caller with reason normal; its links survive', async () => {
    const a = agent();
    const buddy = idler();
    await a.run(() => link(buddy));
    const { reason } = await watch(a.pid);
    void a.run(() => exit(self(), "normal"));
    expect(await reason).toBe("normal");
    await settle(5);
    expect(isAlive(buddy)).toBe(true);
    await kill(buddy);
  });

  test('exit(self(), "normal") while trapping exits is an EXIT message to self', async () => {
    const a = agent({ trapExit: true });
    await a.run(() => exit(self(), "normal"));
    await until(() => a.exits().length === 1);
    expect(a.exits()[0]).toEqual({ type: "EXIT", from: a.pid, reason: "normal" });
    expect(isAlive(a.pid)).toBe(true);
    await kill(a.pid);
  });

  test("exit(self(), reason) in a callback ends the process after that callback", async () => {
    const log: string[] = [];
    const pid = spawn({
      init: () => null,
      handleInfo: (msg: unknown, s: null) => {
        log.push(String(msg));
        if (msg === "quit") {
          exit(self(), { shutdown: "self" });
          log.push("after exit");
        }
        return ok(s);
      },
    });
    const { reason } = await watch(pid);
    send(pid, "a");
    send(pid, "quit");
    send(pid, "b");
    expect(await reason).toEqual({ shutdown: "self" });
    expect(log).toEqual(["a", "quit", "after exit"]);
  });

  test.each([
    ["an unknown string", "bogus"],
    ["a number", 1],
    ["null", null],
    ["undefined", undefined],
    ["a crash without an Error", { crash: "nope" }],
    ["an object with extra keys", { shutdown: 1, extra: 2 }],
    ["an unknown key", { because: "reasons" }],
  ])("exit with an invalid reason (%s) throws ERR_BADARG and does nothing", async (_what, bad) => {
    const pid = idler();
    expect(errorOf(() => exit(pid, bad as unknown as ExitReason)).code).toBe("ERR_BADARG");
    await settle(3);
    expect(isAlive(pid)).toBe(true);
    await kill(pid);
  });

  test("exit with a non-pid throws ERR_BADARG", () => {
    expect(errorOf(() => exit("<nonode@nohost.1>" as unknown as Pid, "kill")).code).toBe("ERR_BADARG");
  });

  test("exit to a dead pid is a no-op", async () => {
    const pid = idler();
    await kill(pid);
    expect(() => exit(pid, "shutdown")).not.toThrow();
  });

  test("an exit signal ends a process whose callback is still pending", async () => {
    const gate = deferred();
    const pid = spawn({
      init: () => null,
      handleInfo: async (_m: unknown, s: null) => {
        await gate.promise;
        return ok(s);
      },
    });
    const { reason } = await watch(pid);
    send(pid, "block");
    await until(() => processInfo(pid)?.messagesHandled === 1);
    exit(pid, "shutdown");
    expect(await reason).toBe("shutdown");
    gate.resolve();
    await settle(3);
  });
});

describe("terminate", () => {
  function recorder(log: [ExitReason, unknown][]): ProcessBehavior<{ n: number }, unknown> {
    return {
      init: () => ({ n: 0 }),
      handleInfo: (msg, s) => {
        if (msg === "throw") throw new Error("thrown");
        if (typeof msg === "object" && msg !== null && "stop" in msg) return stop(s, (msg as { stop: ExitReason }).stop);
        return ok({ n: s.n + 1 });
      },
      terminate: (reason, s) => {
        log.push([reason, s]);
      },
    };
  }

  test("runs once, with the reason and the current state, on stop", async () => {
    const log: [ExitReason, unknown][] = [];
    const pid = spawn(recorder(log));
    send(pid, "x");
    send(pid, { stop: { shutdown: "x" } });
    await until(() => !isAlive(pid));
    await settle(5);
    expect(log).toEqual([[{ shutdown: "x" }, { n: 1 }]]);
  });

  test("runs once on a crash, with { crash }", async () => {
    const log: [ExitReason, unknown][] = [];
    const pid = spawn(recorder(log));
    send(pid, "throw");
    await until(() => !isAlive(pid));
    await settle(5);
    expect(log).toHaveLength(1);
    expect(crashError(log[0]![0]).message).toBe("thrown");
    expect(log[0]![1]).toEqual({ n: 0 });
  });

  test("runs once when a linked process's exit kills it", async () => {
    const log: [ExitReason, unknown][] = [];
    const pid = spawn(recorder(log));
    const a = agent();
    await a.run(() => link(pid));
    exit(a.pid, "shutdown");
    await until(() => !isAlive(pid));
    await settle(5);
    expect(log).toEqual([["shutdown", { n: 0 }]]);
  });

  test("runs with the state restored when the process is hibernated", async () => {
    const log: [ExitReason, unknown][] = [];
    const pid = spawn({
      init: () => ok({ items: ["a", "b"] }, { hibernate: true }),
      handleInfo: (_m: unknown, s: { items: string[] }) => ok(s),
      terminate: (reason: ExitReason, s: { items: string[] }) => {
        log.push([reason, s]);
      },
    });
    await until(() => processInfo(pid)?.hibernated === true);
    exit(pid, "shutdown");
    await until(() => !isAlive(pid));
    expect(log).toEqual([["shutdown", { items: ["a", "b"] }]]);
  });

  test('does not run for "kill"', async () => {
    const log: [ExitReason, unknown][] = [];
    const pid = spawn(recorder(log));
    send(pid, "x");
    await until(() => processInfo(pid)?.messagesHandled === 1);
    exit(pid, "kill");
    await until(() => !isAlive(pid));
    await settle(5);
    expect(log).toEqual([]);
  });

  test("a throwing terminate is logged, not fatal: the exit reason stays the original one", async () => {
    const pid = spawn({
      init: () => null,
      handleInfo: (_m: unknown, s: null) => stop(s, { shutdown: "planned" }),
      terminate: () => {
        throw new Error("terminate blew up");
      },
    });
    const a = agent({ trapExit: true });
    await a.run(() => link(pid));
    const { reason } = await watch(pid);
    send(pid, "go");
    expect(await reason).toEqual({ shutdown: "planned" });
    await until(() => a.exits().length === 1);
    expect(a.exits()[0]!.reason).toEqual({ shutdown: "planned" });
    await settle();
    const threw = logs.filter((r) => r.msg === "terminate threw");
    expect(threw).toHaveLength(1);
    expect(threw[0]!.pid).toBe(pid.toString());
    expect(threw[0]!.err).toMatchObject({ message: "terminate blew up" });
    expect(crashReports(logs)).toHaveLength(0);
    expect(isAlive(a.pid)).toBe(true);
    await kill(a.pid);
  });

  test("stop(state, { shutdown: x }) reaches monitors as the reason", async () => {
    const pid = idler();
    const { reason } = await watch(pid);
    const x = { why: "maintenance" };
    send(pid, { stop: { shutdown: x } });
    const r = await reason;
    expect(r).toEqual({ shutdown: x });
    expect((r as { shutdown: unknown }).shutdown).toBe(x);
  });
});

describe("introspection", () => {
  test("isAlive is true from spawn until the exit, then false", async () => {
    const pid = idler();
    expect(isAlive(pid)).toBe(true);
    await settle();
    expect(isAlive(pid)).toBe(true);
    send(pid, "stop");
    await until(() => !isAlive(pid));
    expect(isAlive(pid)).toBe(false);
    expect(errorOf(() => isAlive("nope" as unknown as Pid)).code).toBe("ERR_BADARG");
  });

  test("processes() and processCount() list live processes only", async () => {
    const start = processCount();
    expect(processes()).toHaveLength(start);
    const pids = [idler(), idler(), idler()];
    expect(processCount()).toBe(start + 3);
    const all = processes();
    expect(all).toHaveLength(start + 3);
    for (const p of pids) expect(all).toContain(p);
    for (const p of all) expect(isAlive(p)).toBe(true);
    send(pids[1]!, "stop");
    await until(() => !isAlive(pids[1]!));
    expect(processCount()).toBe(start + 2);
    expect(processes()).not.toContain(pids[1]);
    await kill(pids[0]!, pids[2]!);
    expect(processCount()).toBe(start);
  });

  test("processInfo reports every field", async () => {
    const name = `info-test-${Date.now()}`;
    const target = agent({ name, trapExit: true });
    const other = idler();
    const watcher = agent();
    await target.run(() => {
      link(other);
      monitor(other);
      join("room-1");
    });
    const wref = await watcher.run(() => monitor(target.pid));
    send(target.pid, "m1");
    send(target.pid, "m2");
    await until(() => target.inbox.length === 2);
    const info = processInfo(target.pid) as ProcessInfo;
    expect(info).toBeDefined();
    expect(info.pid).toBe(target.pid);
    expect(info.status).toBe("waiting");
    expect(info.messageQueueLen).toBe(0);
    expect(info.registeredName).toBe(name);
    expect(whereis(name)).toBe(target.pid);
    expect(info.links).toEqual([other]);
    expect(info.monitors).toHaveLength(1);
    expect(info.monitors[0]).toBeInstanceOf(Ref);
    expect(info.monitoredBy).toEqual([watcher.pid]);
    expect(info.groups).toEqual(["room-1"]);
    expect(info.trapExit).toBe(true);
    expect(info.hibernated).toBe(false);
    expect(info.messagesHandled).toBe(3); // one job, two messages
    expect(processInfo(watcher.pid)?.monitors).toEqual([wref]);
    expect(processInfo(other)?.registeredName).toBeUndefined();
    expect(processInfo(other)?.groups).toEqual([]);
    expect(processInfo(other)?.trapExit).toBe(false);
    await kill(target.pid, other, watcher.pid);
    expect(whereis(name)).toBeUndefined();
  });

  test("processInfo status: runnable before running, running inside its callback, waiting when idle", async () => {
    const pid = idler();
    expect(processInfo(pid)?.status).toBe("runnable");
    await settle();
    expect(processInfo(pid)?.status).toBe("waiting");
    const a = agent();
    const inside = await a.run(() => processInfo(self())?.status);
    expect(inside).toBe("running");
    await kill(pid, a.pid);
  });

  test("processInfo messageQueueLen counts queued messages while the mailbox is held", async () => {
    const a = agent();
    const gate = deferred();
    const held = a.run(() => gate.promise);
    await until(() => processInfo(a.pid)?.messagesHandled === 1);
    send(a.pid, 1);
    send(a.pid, 2);
    send(a.pid, 3);
    expect(processInfo(a.pid)?.messageQueueLen).toBe(3);
    gate.resolve();
    await held;
    await until(() => a.inbox.length === 3);
    expect(processInfo(a.pid)?.messageQueueLen).toBe(0);
    expect(processInfo(a.pid)?.messagesHandled).toBe(4);
    await kill(a.pid);
  });

  test("processInfo is undefined for a dead pid", async () => {
    const pid = idler();
    await kill(pid);
    expect(processInfo(pid)).toBeUndefined();
    expect(processInfo(Pid.parse(pid.toString()))).toBeUndefined();
  });
});

describe("send and spawn options", () => {
  test("a send to a dead pid is dropped silently", async () => {
    const pid = idler();
    await kill(pid);
    expect(() => send(pid, "into the void")).not.toThrow();
    expect(() => send(Pid.parse("<nonode@nohost.999999999>"), "x")).not.toThrow();
  });

  test("spawn with a name that is taken throws ERR_NAME_TAKEN and spawns nothing", async () => {
    const name = `taken-${Date.now()}`;
    const first = idler({ name });
    const before = processCount();
    expect(errorOf(() => idler({ name })).code).toBe("ERR_NAME_TAKEN");
    expect(processCount()).toBe(before);
    expect(whereis(name)).toBe(first);
    await kill(first);
  });

  test("send to a registered name reaches the process; an unknown name throws ERR_UNKNOWN_NAME", async () => {
    const name = `named-${Date.now()}`;
    const a = agent({ name });
    send(name, "by name");
    await until(() => a.inbox.length === 1);
    expect(a.inbox).toEqual(["by name"]);
    expect(errorOf(() => send(`${name}-nobody`, "x")).code).toBe("ERR_UNKNOWN_NAME");
    await kill(a.pid);
  });
});

describe("self() and bad spawn arguments", () => {
  test("self() outside a process throws ERR_NOT_IN_PROCESS with a message about capturing the pid", () => {
    const err = errorOf(() => self());
    expect(err.code).toBe("ERR_NOT_IN_PROCESS");
    expect(err.message).toMatch(/self\(\)/);
    expect(err.message).toMatch(/captur/i);
  });

  test("self() after an await inside a process throws the same clear error", async () => {
    let caught: unknown;
    let before: Pid | undefined;
    const pid = spawn(async () => {
      before = self();
      await settle(1);
      try {
        self();
      } catch (err) {
        caught = err;
      }
    });
    await until(() => !isAlive(pid));
    expect(before).toBe(pid);
    expect(caught).toBeInstanceOf(CorralError);
    expect((caught as CorralError).code).toBe("ERR_NOT_IN_PROCESS");
  });

  test.each<[string, unknown]>([
    ["a number", 42],
    ["null", null],
    ["undefined", undefined],
    ["a string", "spawn me"],
    ["an empty object", {}],
    ["an object without handleInfo", { init: () => 0 }],
    ["an object without init", { handleInfo: () => ok(0) }],
    ["an object whose handleInfo is not a function", { init: () => 0, handleInfo: 1 }],
  ])("spawn(%s) throws ERR_BADARG and spawns nothing", (_what, bad) => {
    const before = processCount();
    expect(errorOf(() => spawn(bad as unknown as ProcessBehavior<number>)).code).toBe("ERR_BADARG");
    expect(processCount()).toBe(before);
  });
});
