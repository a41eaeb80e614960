/**
 * call, cast, replyTo and multiCall (gen_server:call/cast/reply/multi_call) between real
 * processes of one node: answers now and later, every way a call fails and how fast, the
 * late answer that must reach nobody, casts, and that nothing (process, timer, monitor) is
 * left behind once a call has settled.
 */
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import {
  answer,
  call,
  CallError,
  cast,
  CorralError,
  exit,
  isAlive,
  isCall,
  multiCall,
  ok,
  processCount,
  processes,
  processInfo,
  register,
  replyTo,
  self,
  send,
  sendAfter,
  spawn,
  spawnLink,
  startSupervisor,
  stop,
  stopSupervisor,
  timerCount,
  unregister,
  whichChildren,
  type ExitReason,
  type From,
  Pid,
  type ProcessBehavior,
  type Result,
} from "../../src/index.js";
import { leakCheck, testProcess, type LeakCheck } from "../../src/testing.js";
import { captureLogs, deadPid, settle, sleep, until } from "../support/helpers.js";

const { records: logs } = captureLogs();

let leaks: LeakCheck;
beforeEach(() => {
  leaks = leakCheck();
});
afterEach(async () => {
  await leaks.assert();
});

// ---------------------------------------------------------------------------------------
// A server whose requests say what to do, and that records what reached which callback.

type Req =
  | { op: "echo"; v: unknown }
  | { op: "count" }
  | { op: "hold" }
  | { op: "later"; ms: number; v: unknown }
  | { op: "delegate"; to: Pid }
  | { op: "asyncReply"; ms: number; v: unknown }
  | { op: "asyncAnswer"; ms: number; v: unknown }
  | { op: "asyncThrow"; ms: number }
  | { op: "crash"; message: string }
  | { op: "stop"; reason?: ExitReason }
  | { op: "replyThenCrash" }
  | { op: "twice" }
  | { op: "hibernate"; v: unknown }
  | { op: "killCaller" };

interface SrvState {
  n: number;
  held: From[];
  /** What reached each callback, in order: "call:<op>", "info:<json>", "cast:<json>". */
  log: string[];
  froms: From[];
}

/** "At once": far below the 2000 ms timeouts those calls are given, with room for a busy machine. */
const AT_ONCE = 250;

const show = (v: unknown): string => (typeof v === "string" ? v : JSON.stringify(v));

class Server implements ProcessBehavior<SrvState, unknown, SrvState> {
  init(s: SrvState): SrvState {
    return s;
  }

  handleCall(request: unknown, from: From, s: SrvState): Result<SrvState> | Promise<Result<SrvState>> {
    const req = request as Req;
    s.log.push(`call:${req.op ?? show(req)}`);
    s.froms.push(from);
    switch (req.op) {
      case "echo":
        return answer(req.v, s);
      case "count":
        s.n++;
        return answer(s.n, s);
      case "hold":
        s.held.push(from);
        return ok(s);
      case "later":
        s.held.push(from);
        sendAfter(req.ms, self(), { release: req.v });
        return ok(s);
      case "delegate":
        send(req.to, { answerFor: from });
        return ok(s);
      case "asyncReply":
        return sleep(req.ms).then(() => {
          replyTo(from, req.v);
          return ok(s);
        });
      case "asyncAnswer":
        return sleep(req.ms).then(() => answer(req.v, s));
      case "asyncThrow":
        return sleep(req.ms).then(() => {
          throw new Error("async boom");
        });
      case "crash":
        throw new Error(req.message);
      case "stop":
        return stop(s, req.reason);
      case "replyThenCrash":
        replyTo(from, "answered first");
        throw new Error("crashed after answering");
      case "twice":
        replyTo(from, "first");
        replyTo(from, "second");
        return ok(s);
      case "hibernate":
        return answer(req.v, s, { hibernate: true });
      case "killCaller":
        exit(from.pid, "kill");
        return ok(s);
      default:
        return answer({ unknown: request }, s);
    }
  }

  handleCast(msg: unknown, s: SrvState): Result<SrvState> {
    s.log.push(`cast:${show(msg)}`);
    return ok(s);
  }

  handleInfo(msg: unknown, s: SrvState): Result<SrvState> {
    s.log.push(`info:${show(msg)}`);
    const release = (msg as { release?: unknown } | null)?.release;
    if (release !== undefined) {
      for (const from of s.held.splice(0)) replyTo(from, release);
    }
    return ok(s);
  }
}

/** The same callbacks without handleCall and handleCast: a plain gen_server-less process. */
class InfoOnly implements ProcessBehavior<SrvState, unknown, SrvState> {
  init(s: SrvState): SrvState {
    return s;
  }
  handleInfo(msg: unknown, s: SrvState): Result<SrvState> {
    s.log.push(`info:${show(msg)}`);
    return ok(s);
  }
}

/** A server that holds every call, answering none (a slow callee). */
class Holder extends Server {
  override handleCall(request: unknown, from: From, s: SrvState): Result<SrvState> {
    s.log.push(`held:${show(request)}`);
    s.held.push(from);
    return ok(s);
  }
}

function startServer(opts: { name?: string; plain?: boolean; holds?: boolean } = {}): { pid: Pid; s: SrvState } {
  const s: SrvState = { n: 0, held: [], log: [], froms: [] };
  const behaviour = opts.plain === true ? new InfoOnly() : opts.holds === true ? new Holder() : new Server();
  const pid = spawn(behaviour, s, opts.name === undefined ? undefined : { name: opts.name });
  return { pid, s };
}

/** Ends a server and waits until it is gone. */
async function end(...pids: Pid[]): Promise<void> {
  for (const pid of pids) if (isAlive(pid)) exit(pid, "kill");
  await until(() => pids.every((p) => !isAlive(p)), 2000, "the servers to end");
}

/** The rejection of p, which must be a CallError (and so a CorralError). */
async function rejection(p: Promise<unknown>): Promise<CallError> {
  try {
    const v = await p;
    throw new Error(`expected the call to reject, it resolved with ${show(v)}`);
  } catch (err) {
    expect(err).toBeInstanceOf(CallError);
    expect(err).toBeInstanceOf(CorralError);
    return err as CallError;
  }
}

/** The rejection of p as a CorralError of any class (bad arguments are plain CorralErrors). */
async function corralRejection(p: Promise<unknown>): Promise<CorralError> {
  try {
    const v = await p;
    throw new Error(`expected a rejection, got ${show(v)}`);
  } catch (err) {
    expect(err).toBeInstanceOf(CorralError);
    return err as CorralError;
  }
}

async function timed<T>(f: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = performance.now();
  const value = await f();
  return { value, ms: performance.now() - t0 };
}

/** Every live process's handled-message count, to prove that nobody got anything. */
function handledCounts(): Map<Pid, number> {
  const m = new Map<Pid, number>();
  for (const pid of processes()) m.set(pid, processInfo(pid)!.messagesHandled);
  return m;
}

/** A process that runs fn inside handleInfo (so a call it makes is a call from a process) and records every other message. */
class Runner implements ProcessBehavior<{ inbox: unknown[] }, unknown, { inbox: unknown[] }> {
  init(s: { inbox: unknown[] }): { inbox: unknown[] } {
    return s;
  }
  handleInfo(msg: unknown, s: { inbox: unknown[] }): Result<{ inbox: unknown[] }> | Promise<Result<{ inbox: unknown[] }>> {
    if (msg instanceof Job) return Promise.resolve(msg.fn()).then(msg.resolve, msg.reject).then(() => ok(s));
    s.inbox.push(msg);
    return ok(s);
  }
}

class Job {
  constructor(
    readonly fn: () => unknown,
    readonly resolve: (v: unknown) => void,
    readonly reject: (e: unknown) => void,
  ) {}
}

interface Caller {
  readonly pid: Pid;
  /** Messages the process got that were not jobs. */
  readonly inbox: unknown[];
  /** Runs fn inside the process's handleInfo; the handleInfo awaits what fn returns (the mailbox waits). */
  run<T>(fn: () => Promise<T> | T): Promise<T>;
}

function startCaller(): Caller {
  const s = { inbox: [] as unknown[] };
  const pid = spawn(new Runner(), s);
  return {
    pid,
    inbox: s.inbox,
    run: <T>(fn: () => Promise<T> | T) => new Promise<T>((resolve, reject) => send(pid, new Job(fn, resolve as (v: unknown) => void, reject))),
  };
}

// ---------------------------------------------------------------------------------------

describe("call: answers", () => {
  test("answer(value, state) answers at once; the state carries on; the call's process is gone when the promise settles", async () => {
    const { pid, s } = startServer();
    const base = processCount();
    const timers = timerCount();
    expect(await call(pid, { op: "count" })).toBe(1);
    // Right when the await returns: the call's own process and its timer are gone already.
    expect(processCount()).toBe(base);
    expect(timerCount()).toBe(timers);
    expect(await call(pid, { op: "count" })).toBe(2);
    expect(await call<{ a: number[] }>(pid, { op: "echo", v: { a: [1, 2] } })).toEqual({ a: [1, 2] });
    expect(s.log).toEqual(["call:count", "call:count", "call:echo"]);
    // The callee is not left monitored by the finished calls.
    expect(processInfo(pid)!.monitoredBy).toEqual([]);
    expect(processCount()).toBe(base);
    await end(pid);
  });

  test("a local answer is the very value the callee gave (no copy)", async () => {
    const { pid } = startServer();
    const v = { big: new Map([[1, 2]]) };
    expect(await call(pid, { op: "echo", v })).toBe(v);
    await end(pid);
  });

  test("ok(state) now, replyTo later from the callee's own handleInfo (its timer fired)", async () => {
    const { pid, s } = startServer();
    const { value, ms } = await timed(() => call(pid, { op: "later", ms: 40, v: "done later" }, 1000));
    expect(value).toBe("done later");
    expect(ms).toBeGreaterThanOrEqual(35);
    expect(s.log).toEqual(["call:later", 'info:{"release":"done later"}']);
    await end(pid);
  });

  test("replyTo from another process: the callee hands `from` to a worker, which answers", async () => {
    const { pid } = startServer();
    let workerSawFrom: From | undefined;
    const worker = spawn(async (ctx) => {
      const msg = (await ctx.receive()) as { answerFor: From };
      workerSawFrom = msg.answerFor;
      replyTo(msg.answerFor, { by: ctx.self });
    });
    const got = await call<{ by: Pid }>(pid, { op: "delegate", to: worker }, 1000);
    expect(got.by).toBe(worker);
    expect(workerSawFrom!.caller).toBeNull();
    await until(() => !isAlive(worker), 1000, "the worker to end");
    await end(pid);
  });

  test("replyTo from outside any process (app code holding `from`)", async () => {
    const { pid, s } = startServer();
    const pending = call(pid, { op: "hold" }, 1000);
    await until(() => s.held.length === 1, 1000, "the call to reach the server");
    replyTo(s.held[0]!, "from app code");
    expect(await pending).toBe("from app code");
    await end(pid);
  });

  test("an async handleCall: replyTo after an await, or answer(...) as the promise's value", async () => {
    const { pid } = startServer();
    expect(await call(pid, { op: "asyncReply", ms: 10, v: "replied after await" }, 1000)).toBe("replied after await");
    expect(await call(pid, { op: "asyncAnswer", ms: 10, v: "answered after await" }, 1000)).toBe("answered after await");
    await end(pid);
  });

  test("a second answer is dropped: the caller gets the first, nobody gets the second", async () => {
    const { pid } = startServer();
    const caller = startCaller();
    expect(await caller.run(() => call(pid, { op: "twice" }, 1000))).toBe("first");
    await settle();
    expect(caller.inbox).toEqual([]);
    expect(processInfo(pid)!.messageQueueLen).toBe(0);
    await end(pid, caller.pid);
  });

  test("an answer sent before the callee crashes wins over its DOWN", async () => {
    const { pid } = startServer();
    expect(await call(pid, { op: "replyThenCrash" }, 1000)).toBe("answered first");
    await until(() => !isAlive(pid), 1000, "the server to crash");
  });

  test("a call to a registered name; a name re-registered to another process is asked at call time", async () => {
    const a = startServer({ name: "call-test-calc" });
    expect(await call("call-test-calc", { op: "echo", v: "by name" })).toBe("by name");
    expect(a.s.log).toEqual(["call:echo"]);
    unregister("call-test-calc");
    const b = startServer();
    register("call-test-calc", b.pid);
    expect(await call("call-test-calc", { op: "echo", v: "b now" })).toBe("b now");
    expect(b.s.log).toEqual(["call:echo"]);
    expect(a.s.log).toEqual(["call:echo"]);
    await end(a.pid, b.pid);
  });

  test("answer(v, s, { hibernate: true }) answers and hibernates; the next call wakes it with its state", async () => {
    const { pid } = startServer();
    expect(await call(pid, { op: "count" })).toBe(1);
    expect(processInfo(pid)!.status).toBe("waiting");
    expect(await call(pid, { op: "hibernate", v: "zzz" })).toBe("zzz");
    await until(() => processInfo(pid)?.status === "hibernated", 1000, "the server to hibernate");
    expect(processInfo(pid)!.hibernated).toBe(true);
    expect(await call(pid, { op: "count" })).toBe(2);
    expect(processInfo(pid)!.status).toBe("waiting");
    await end(pid);
  });

  test("an async-function process takes a call with ctx.receive(isCall), leaving other messages queued", async () => {
    const seen: unknown[] = [];
    const pid = spawn(async (ctx) => {
      const c = await ctx.receive(isCall);
      seen.push(c.request);
      replyTo(c.from, (c.request as number) * 2);
      seen.push(await ctx.receive());
    });
    send(pid, "queued before the call");
    expect(await call(pid, 21, 1000)).toBe(42);
    await until(() => !isAlive(pid), 1000, "the process to end");
    expect(seen).toEqual([21, "queued before the call"]);
  });

  test("isCall is true only for a real call: an object shaped like one is a plain message", async () => {
    const { pid: anyPid } = startServer();
    expect(isCall({ type: "call", from: { pid: anyPid, caller: null }, request: 1 })).toBe(false);
    expect(isCall(null)).toBe(false);
    const { pid, s } = startServer();
    send(pid, { type: "call", request: "forged" });
    await until(() => s.log.length === 1, 1000, "the forged call to arrive");
    expect(s.log).toEqual(['info:{"type":"call","request":"forged"}']);
    await end(pid, anyPid);
  });
});

describe("call: from inside a process", () => {
  test("a process calls from an async handleInfo and awaits the answer there; from.caller is its pid", async () => {
    const { pid, s } = startServer();
    const caller = startCaller();
    const got = await caller.run(async () => {
      const first = await call<number>(pid, { op: "count" }, 1000);
      return first + 100;
    });
    expect(got).toBe(101);
    expect(s.froms[0]!.caller).toBe(caller.pid);
    expect(s.froms[0]!.pid).not.toBe(caller.pid);
    expect(caller.inbox).toEqual([]);
    await end(pid, caller.pid);
  });

  test("from.caller is null when app code outside any process calls", async () => {
    const { pid, s } = startServer();
    await call(pid, { op: "count" });
    expect(s.froms[0]!.caller).toBeNull();
    expect(s.froms[0]!.pid).not.toBe(pid);
    await end(pid);
  });

  test("a process calling itself rejects ERR_BADARG at once, spawning nothing", async () => {
    const caller = startCaller();
    const base = processCount();
    const timers = timerCount();
    const { value: err, ms } = await timed(() => caller.run(() => corralRejection(call(self(), "me?", 5000))));
    expect(err.code).toBe("ERR_BADARG");
    expect(ms).toBeLessThan(AT_ONCE);
    expect(processCount()).toBe(base);
    expect(timerCount()).toBe(timers);
    await settle();
    expect(caller.inbox).toEqual([]);
    await end(caller.pid);
  });
});

describe("call: failures, and how fast", () => {
  test("an unregistered name rejects ERR_NOPROC at once, long before the timeout", async () => {
    const base = processCount();
    const { value: err, ms } = await timed(() => rejection(call("call-test-nobody", "hi", 2000)));
    expect(err.code).toBe("ERR_NOPROC");
    expect(err.message).toContain("call-test-nobody");
    expect(ms).toBeLessThan(AT_ONCE);
    expect(processCount()).toBe(base);
  });

  test('a pid of another node, with no cluster running: ERR_CALL_EXIT "noconnection" at once', async () => {
    const { value: err, ms } = await timed(() => rejection(call(Pid.parse("<elsewhere@127.0.0.1.7>"), "hi", 2000)));
    expect(err.code).toBe("ERR_CALL_EXIT");
    expect(err.reason).toBe("noconnection");
    expect(ms).toBeLessThan(AT_ONCE);
  });

  test("a dead pid rejects ERR_NOPROC at once", async () => {
    const dead = await deadPid();
    const base = processCount();
    const timers = timerCount();
    const { value: err, ms } = await timed(() => rejection(call(dead, "hi", 2000)));
    expect(err.code).toBe("ERR_NOPROC");
    expect(err.reason).toBeUndefined();
    expect(ms).toBeLessThan(AT_ONCE);
    expect(processCount()).toBe(base);
    expect(timerCount()).toBe(timers);
  });

  test("a callee that throws in handleCall: ERR_CALL_EXIT with reason { crash } at once", async () => {
    const { pid } = startServer();
    const { value: err, ms } = await timed(() => rejection(call(pid, { op: "crash", message: "boom in handleCall" }, 2000)));
    expect(err.code).toBe("ERR_CALL_EXIT");
    const reason = err.reason as { crash: Error };
    expect(reason.crash).toBeInstanceOf(Error);
    expect(reason.crash.message).toBe("boom in handleCall");
    expect(ms).toBeLessThan(AT_ONCE);
    expect(isAlive(pid)).toBe(false);
    expect(logs.some((r) => r.msg === "process crashed")).toBe(true);
  });

  test("an async handleCall that rejects: ERR_CALL_EXIT with { crash }", async () => {
    const { pid } = startServer();
    const err = await rejection(call(pid, { op: "asyncThrow", ms: 5 }, 2000));
    expect(err.code).toBe("ERR_CALL_EXIT");
    expect((err.reason as { crash: Error }).crash.message).toBe("async boom");
  });

  test('a callee that stops normally without answering: ERR_CALL_EXIT "normal"', async () => {
    const { pid } = startServer();
    const { value: err, ms } = await timed(() => rejection(call(pid, { op: "stop" }, 2000)));
    expect(err.code).toBe("ERR_CALL_EXIT");
    expect(err.reason).toBe("normal");
    expect(ms).toBeLessThan(AT_ONCE);
  });

  test("a callee that stops with { shutdown } or is killed while the call waits: its reason", async () => {
    const a = startServer();
    const errA = await rejection(call(a.pid, { op: "stop", reason: { shutdown: "bye" } }, 2000));
    expect(errA.reason).toEqual({ shutdown: "bye" });

    const b = startServer();
    const pending = call(b.pid, { op: "hold" }, 2000);
    await until(() => b.s.held.length === 1, 1000, "the call to reach b");
    exit(b.pid, "kill");
    const errB = await rejection(pending);
    expect(errB.code).toBe("ERR_CALL_EXIT");
    expect(errB.reason).toBe("killed");
  });

  test("an async-function callee that ends without answering: ERR_CALL_EXIT normal", async () => {
    const pid = spawn(async (ctx) => {
      await ctx.receive(isCall);
    });
    const err = await rejection(call(pid, "ignored", 2000));
    expect(err.code).toBe("ERR_CALL_EXIT");
    expect(err.reason).toBe("normal");
  });

  test("the call's own process killed by the callee: the call rejects ERR_CALL_EXIT killed", async () => {
    const { pid } = startServer();
    const err = await rejection(call(pid, { op: "killCaller" }, 2000));
    expect(err.code).toBe("ERR_CALL_EXIT");
    expect(err.reason).toBe("killed");
    await end(pid);
  });

  test("a process whose behaviour has no handleCall refuses: ERR_CALL_UNHANDLED at once; it lives on, handleInfo never sees the call", async () => {
    const { pid, s } = startServer({ plain: true });
    const { value: err, ms } = await timed(() => rejection(call(pid, "anyone?", 2000)));
    expect(err.code).toBe("ERR_CALL_UNHANDLED");
    expect(err.message).toMatch(/handleCall/);
    expect(ms).toBeLessThan(AT_ONCE);
    expect(isAlive(pid)).toBe(true);
    expect(s.log).toEqual([]);
    // The test process of corral/testing is such a process too.
    const probe = testProcess();
    expect((await rejection(call(probe.pid, "probe?", 2000))).code).toBe("ERR_CALL_UNHANDLED");
    expect(probe.messages).toEqual([]);
    await probe.stop();
    await end(pid);
  });
});

describe("call: the timeout, and the answer that comes too late", () => {
  test("ERR_CALL_TIMEOUT after timeoutMs; a late replyTo from app code reaches nobody", async () => {
    const { pid, s } = startServer();
    const base = processCount();
    const timers = timerCount();
    const { value: err, ms } = await timed(() => rejection(call(pid, { op: "hold" }, 80)));
    expect(err.code).toBe("ERR_CALL_TIMEOUT");
    expect(err.message).toContain("80 ms");
    expect(ms).toBeGreaterThanOrEqual(75);
    expect(ms).toBeLessThan(300);
    expect(processCount()).toBe(base);
    expect(timerCount()).toBe(timers);

    const before = handledCounts();
    replyTo(s.held[0]!, "too late");
    await settle(5);
    expect(handledCounts()).toEqual(before);
    for (const p of processes()) expect(processInfo(p)!.messageQueueLen).toBe(0);
    expect(processCount()).toBe(base);
    await end(pid);
  });

  test("called from inside a process: after the timeout, the callee's late answer is no stray message in the caller's mailbox or anyone else's", async () => {
    const { pid, s } = startServer();
    const caller = startCaller();
    const probe = testProcess();
    const base = processCount();
    const timers = timerCount();
    const err = await caller.run(() => rejection(call(pid, { op: "hold" }, 60)));
    expect(err.code).toBe("ERR_CALL_TIMEOUT");
    expect(s.froms[0]!.caller).toBe(caller.pid);
    expect(processCount()).toBe(base);
    expect(timerCount()).toBe(timers);

    const before = handledCounts();
    // The callee answers late, from its own handleInfo.
    send(pid, { release: "late answer" });
    await until(() => s.log.length === 2, 1000, "the release to reach the server");
    await settle(5);
    const after = handledCounts();
    for (const [p, n] of before) expect(after.get(p), `messages handled by ${String(p)}`).toBe(p === pid ? n + 1 : n);
    expect(caller.inbox).toEqual([]);
    expect(probe.messages).toEqual([]);
    expect(processInfo(caller.pid)!.messageQueueLen).toBe(0);
    expect(processCount()).toBe(base);
    await probe.stop();
    await end(pid, caller.pid);
  });

  test("timeoutMs Infinity: no timer is armed while the call waits, and the answer still comes", async () => {
    const { pid, s } = startServer();
    const timers = timerCount();
    const pending = call(pid, { op: "hold" }, Infinity);
    await until(() => s.held.length === 1, 1000, "the call to reach the server");
    expect(timerCount()).toBe(timers);
    replyTo(s.held[0]!, "no hurry");
    expect(await pending).toBe("no hurry");
    // And a callee that dies still ends an infinite call.
    const again = call(pid, { op: "hold" }, Infinity);
    await until(() => s.held.length === 2, 1000, "the second call to reach the server");
    exit(pid, "kill");
    expect((await rejection(again)).code).toBe("ERR_CALL_EXIT");
  });

  test("the default timeout is 5000 ms: a call left pending holds one timer", async () => {
    const { pid, s } = startServer();
    const timers = timerCount();
    const pending = call(pid, { op: "hold" });
    await until(() => s.held.length === 1, 1000, "the call to reach the server");
    expect(timerCount()).toBe(timers + 1);
    // Well after the 80–200 ms timeouts of the other tests, and before 5000.
    await sleep(250);
    replyTo(s.held[0]!, "in time");
    expect(await pending).toBe("in time");
    expect(timerCount()).toBe(timers);
    await end(pid);
  });
});

describe("call: bad arguments", () => {
  test.each([
    ["0", 0],
    ["-1", -1],
    ["NaN", Number.NaN],
    ["a string", "100"],
    ["null", null],
    ["-Infinity", -Infinity],
  ])("timeoutMs %s rejects ERR_BADARG (no throw, nothing spawned)", async (_, bad) => {
    const { pid, s } = startServer();
    const base = processCount();
    let p: Promise<unknown> | undefined;
    expect(() => {
      p = call(pid, { op: "count" }, bad as number);
    }).not.toThrow();
    const err = await corralRejection(p!);
    expect(err.code).toBe("ERR_BADARG");
    expect(err.message).toMatch(/timeoutMs/);
    expect(processCount()).toBe(base);
    await settle();
    expect(s.log).toEqual([]);
    await end(pid);
  });

  test.each([
    ["a number", 42],
    ["undefined", undefined],
    ["an object", { pid: 1 }],
  ])("a destination that is %s rejects ERR_BADARG", async (_, bad) => {
    const err = await corralRejection(call(bad as unknown as Pid, "x", 100));
    expect(err.code).toBe("ERR_BADARG");
  });

  test("replyTo with something that is not a from throws ERR_BADARG", () => {
    for (const bad of [null, undefined, {}, { pid: "x" }, "from"]) {
      let thrown: unknown;
      try {
        replyTo(bad as unknown as From, 1);
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(CorralError);
      expect((thrown as CorralError).code).toBe("ERR_BADARG");
    }
  });
});

describe("call: order", () => {
  test("a send then a call to the same process: the callee sees the send first", async () => {
    const { pid, s } = startServer();
    send(pid, "sent first");
    cast(pid, "cast second");
    expect(await call(pid, { op: "echo", v: 3 })).toBe(3);
    send(pid, "sent after");
    await until(() => s.log.length === 4, 1000, "the last send");
    expect(s.log).toEqual(["info:sent first", "cast:cast second", "call:echo", "info:sent after"]);
    await end(pid);
  });

  test("calls made in a row reach the callee in that order", async () => {
    const { pid } = startServer();
    const answers = await Promise.all([1, 2, 3, 4, 5].map(() => call<number>(pid, { op: "count" })));
    expect(answers).toEqual([1, 2, 3, 4, 5]);
    await end(pid);
  });
});

describe("multiCall", () => {
  test("answering, slow, dead, crashing, refusing and unknown dests: one deadline for all, each outcome in its place", async () => {
    const a = startServer();
    const b = startServer({ name: "call-test-multi-b" });
    const slow1 = startServer({ holds: true });
    const slow2 = startServer({ holds: true });
    const slow3 = startServer({ holds: true });
    const crashing = spawn({
      init: () => null,
      handleInfo: (_m: unknown, st: null) => ok(st),
      handleCall: () => {
        throw new Error("multi boom");
      },
    } satisfies ProcessBehavior<null>);
    const plain = startServer({ plain: true });
    const dead = await deadPid();
    const base = processCount();
    const timers = timerCount();

    const dests: (Pid | string)[] = [a.pid, "call-test-multi-b", slow1.pid, dead, crashing, slow2.pid, plain.pid, "call-test-multi-nobody", slow3.pid];
    const { value: r, ms } = await timed(() => multiCall<number>(dests, { op: "count" }, 150));

    // One deadline: about 150 ms for the three slow dests together, not 450.
    expect(ms).toBeGreaterThanOrEqual(145);
    expect(ms).toBeLessThan(380);
    expect(r.replies).toEqual([
      { dest: a.pid, value: 1 },
      { dest: "call-test-multi-b", value: 1 },
    ]);
    const failed = r.failed.map((f) => ({ dest: f.dest, code: f.error.code, isCallError: f.error instanceof CallError }));
    expect(failed).toEqual([
      { dest: slow1.pid, code: "ERR_CALL_TIMEOUT", isCallError: true },
      { dest: dead, code: "ERR_NOPROC", isCallError: true },
      { dest: crashing, code: "ERR_CALL_EXIT", isCallError: true },
      { dest: slow2.pid, code: "ERR_CALL_TIMEOUT", isCallError: true },
      { dest: plain.pid, code: "ERR_CALL_UNHANDLED", isCallError: true },
      { dest: "call-test-multi-nobody", code: "ERR_NOPROC", isCallError: true },
      { dest: slow3.pid, code: "ERR_CALL_TIMEOUT", isCallError: true },
    ]);
    expect(((r.failed[2]!.error as CallError).reason as { crash: Error }).crash.message).toBe("multi boom");
    // Slow dests got the call (and hold it): they were not skipped.
    expect(slow1.s.held).toHaveLength(1);
    expect(slow2.s.held).toHaveLength(1);
    expect(processCount()).toBe(base - 1); // the crashing one is gone, every call's process too
    expect(timerCount()).toBe(timers);
    await end(a.pid, b.pid, slow1.pid, slow2.pid, slow3.pid, plain.pid);
  });

  test("no dests: nothing to wait for; a bad timeout rejects ERR_BADARG; a Set of dests works", async () => {
    expect(await multiCall([], "x", 100)).toEqual({ replies: [], failed: [] });
    const err = await corralRejection(multiCall([], "x", 0));
    expect(err.code).toBe("ERR_BADARG");
    const a = startServer();
    expect((await multiCall(new Set([a.pid]), { op: "echo", v: "set" }, 500)).replies).toEqual([{ dest: a.pid, value: "set" }]);
    await end(a.pid);
  });

  test("dests that are not an iterable of pids and names reject ERR_BADARG (a lone name too)", async () => {
    for (const bad of [42, {}, null, "calc"]) {
      const err = await corralRejection(multiCall(bad as unknown as Pid[], "x", 100));
      expect(err.code).toBe("ERR_BADARG");
    }
  });
});

describe("cast", () => {
  test("a cast goes to handleCast, not handleInfo; the state carries on", async () => {
    const { pid, s } = startServer();
    expect(cast(pid, { hello: 1 })).toBeUndefined();
    cast(pid, "two");
    await until(() => s.log.length === 2, 1000, "the casts");
    expect(s.log).toEqual(['cast:{"hello":1}', "cast:two"]);
    await end(pid);
  });

  test("a cast by name", async () => {
    const { pid, s } = startServer({ name: "call-test-cast-name" });
    cast("call-test-cast-name", "by name");
    await until(() => s.log.length === 1, 1000, "the cast");
    expect(s.log).toEqual(["cast:by name"]);
    await end(pid);
  });

  test("without handleCast the process gets the message itself in handleInfo (a testProcess, an async function too)", async () => {
    const { pid, s } = startServer({ plain: true });
    const msg = { plain: true };
    cast(pid, msg);
    await until(() => s.log.length === 1, 1000, "the cast");
    expect(s.log).toEqual(['info:{"plain":true}']);

    const probe = testProcess();
    cast(probe.pid, msg);
    expect(await probe.next(1000)).toBe(msg);

    let got: unknown;
    const fn = spawn(async (ctx) => {
      got = await ctx.receive();
    });
    cast(fn, "to a function");
    await until(() => !isAlive(fn), 1000, "the function process to take it and end");
    expect(got).toBe("to a function");
    await probe.stop();
    await end(pid);
  });

  test("a cast to a dead pid or an unregistered name is silent and reaches nobody; a bad destination throws ERR_BADARG", async () => {
    const dead = await deadPid();
    const probe = testProcess();
    const base = processCount();
    const before = handledCounts();
    expect(() => cast(dead, "into the void")).not.toThrow();
    expect(() => cast("call-test-cast-nobody", "into the void")).not.toThrow();
    await settle(5);
    expect(handledCounts()).toEqual(before);
    expect(probe.messages).toEqual([]);
    expect(processCount()).toBe(base);
    let thrown: unknown;
    try {
      cast(42 as unknown as Pid, "x");
    } catch (err) {
      thrown = err;
    }
    expect((thrown as CorralError).code).toBe("ERR_BADARG");
    await probe.stop();
  });
});

describe("the supervisor's calls go through call", () => {
  test("whichChildren answers; a direct call to a supervisor is refused ERR_BADARG and the supervisor lives on", async () => {
    const sup = startSupervisor({
      children: [{ id: "w", start: () => spawnLink(new Server(), { n: 0, held: [], log: [], froms: [] }) }],
    });
    const children = await whichChildren(sup);
    expect(children.map((c) => c.id)).toEqual(["w"]);
    const err = await corralRejection(call(sup, { op: "whichChildren" }, 1000));
    expect(err.code).toBe("ERR_BADARG");
    expect(isAlive(sup)).toBe(true);
    expect((await whichChildren(sup)).length).toBe(1);
    await stopSupervisor(sup);
    expect(isAlive(sup)).toBe(false);
  });
});
