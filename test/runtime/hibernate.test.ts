import { pino } from "pino";
import { afterEach, describe, expect, test, vi } from "vitest";
import {
  Pid,
  cancelTimer,
  demonitor,
  exit,
  frozenSize,
  isAlive,
  makeRef,
  monitor,
  ok,
  processCount,
  processes,
  processInfo,
  self,
  send,
  spawn,
  startTimer,
  stop,
  timerCount,
  type ExitReason,
  type ProcessBehavior,
  type ProcessInfo,
  type Ref,
  type StateStore,
} from "../../src/index.js";
import { captureLogs, settle, sleep, until, type LogRecord } from "../support/helpers.js";

// ---------------------------------------------------------------------------------------
// helpers

interface Call<S> {
  msg: unknown;
  state: S;
  /** processInfo(self()) while the callback ran. */
  info: ProcessInfo | undefined;
}

/**
 * A fresh behaviour (fresh object: the one-warning-per-behaviour rule is per behaviour) that
 * records every call. Messages: "h" → ok(state, { hibernate: true }); "stop" → stop(state);
 * a function → called with the state (a probe run inside the process, sent by probe); anything else → ok(state).
 */
function recorder<S>(opts: { hibernateAll?: boolean; initHibernate?: boolean } = {}) {
  const calls: Call<S>[] = [];
  const terminated: { reason: ExitReason; state: S }[] = [];
  const behaviour: ProcessBehavior<S, unknown, S> = {
    init: (s) => (opts.initHibernate === true ? ok(s, { hibernate: true }) : s),
    handleInfo(msg, state) {
      calls.push({ msg, state, info: processInfo(self()) });
      if (typeof msg === "function") (msg as (s: S) => void)(state);
      if (msg === "stop") return stop(state);
      return msg === "h" || opts.hibernateAll === true ? ok(state, { hibernate: true }) : ok(state);
    },
    terminate(reason, state) {
      terminated.push({ reason, state });
    },
  };
  return { behaviour, calls, terminated };
}

/** Sends a probe to run inside a local process: send's type refuses a function as the message, since another node's pid could not take it. */
function probe<S>(pid: Pid, fn: (s: S) => unknown): void {
  send(pid, fn as unknown);
}

async function hibernated(pid: Pid, what = "the process to hibernate"): Promise<void> {
  await until(() => processInfo(pid)?.hibernated === true, 2000, what);
}

/** The state the n-th call (0-based) saw, once it has happened. */
async function nthState<S>(calls: Call<S>[], n: number): Promise<S> {
  await until(() => calls.length > n, 2000, `call #${n}`);
  return calls[n]!.state;
}

function warnings(records: LogRecord[]): LogRecord[] {
  return records.filter((r) => r.level === 40);
}

/** A StateStore that records what the runtime asks of it. */
class RecordingStore implements StateStore {
  readonly calls: { op: "put" | "take" | "delete"; pid: Pid; state?: unknown }[] = [];
  readonly held = new Map<Pid, unknown>();
  put(pid: Pid, state: unknown): void {
    this.calls.push({ op: "put", pid, state });
    this.held.set(pid, state);
  }
  take(pid: Pid): unknown {
    const state = this.held.get(pid);
    this.held.delete(pid);
    this.calls.push({ op: "take", pid, state });
    return state;
  }
  delete(pid: Pid): void {
    this.calls.push({ op: "delete", pid });
    this.held.delete(pid);
  }
  ops(): string[] {
    return this.calls.map((c) => c.op);
  }
}

/** A second, independent copy of the runtime, for tests whose failure wedges the scheduler. */
async function freshRuntime(): Promise<typeof import("../../src/index.js")> {
  vi.resetModules();
  const rt = await import("../../src/index.js");
  expect(rt.Pid).not.toBe(Pid); // really a separate copy
  rt.setLogger(pino({ level: "silent" }));
  return rt;
}

/**
 * Runs fn while collecting uncaught exceptions (with a listener of our own installed, vitest
 * leaves them to us instead of failing the whole run).
 */
async function collectingUncaught(fn: (errors: unknown[]) => Promise<void>): Promise<void> {
  const errors: unknown[] = [];
  const onUncaught = (err: unknown): void => {
    errors.push(err);
  };
  process.on("uncaughtException", onUncaught);
  try {
    await fn(errors);
  } finally {
    process.off("uncaughtException", onUncaught);
  }
}

afterEach(async () => {
  for (const p of processes()) exit(p, "kill");
  await until(() => processCount() === 0, 2000, "every process to end");
});

// ---------------------------------------------------------------------------------------

describe("hibernate: evict when idle, restore on the next message", () => {
  test("ok(state, { hibernate: true }) evicts the state; the next message restores it before the callback", async () => {
    const { records } = captureLogs();
    type S = { count: number; items: string[]; nested: { deep: { x: number } }; note: string };
    const rec = recorder<S>();
    // Large enough to be worth evicting (small states stay as they are; see below).
    const original: S = { count: 1, items: ["a", "b"], nested: { deep: { x: 42 } }, note: "n".repeat(200) };
    const pid = spawn(rec.behaviour, original);
    send(pid, "h");
    await hibernated(pid);
    const info = processInfo(pid)!;
    expect(info.hibernated).toBe(true);
    expect(info.status).toBe("hibernated");
    expect(info.messageQueueLen).toBe(0);

    send(pid, { wake: "up" });
    const woken = await nthState(rec.calls, 1);
    // The callback got the message and the restored state...
    expect(rec.calls[1]!.msg).toEqual({ wake: "up" });
    expect(woken).toEqual({ count: 1, items: ["a", "b"], nested: { deep: { x: 42 } }, note: "n".repeat(200) });
    // ...restored from its evicted form, not the object that was kept live...
    expect(woken).not.toBe(original);
    // ...and by the time the callback ran, the process was awake.
    expect(rec.calls[1]!.info!.hibernated).toBe(false);
    expect(rec.calls[1]!.info!.status).toBe("running");
    await settle();
    expect(processInfo(pid)!.hibernated).toBe(false);
    expect(processInfo(pid)!.status).toBe("waiting");
    // A serializable state: no warning.
    expect(warnings(records)).toEqual([]);
  });

  test("hibernate is one-shot: a later ok(state) without it leaves the process live", async () => {
    const rec = recorder<{ n: number }>();
    const pid = spawn(rec.behaviour, { n: 0 });
    send(pid, "h");
    await hibernated(pid);
    send(pid, "plain");
    await nthState(rec.calls, 1);
    await settle();
    await sleep(10);
    expect(processInfo(pid)!.hibernated).toBe(false);
    expect(processInfo(pid)!.status).toBe("waiting");
    // The state is live now: the next call sees the very same object.
    send(pid, "plain again");
    const third = await nthState(rec.calls, 2);
    expect(third).toBe(rec.calls[1]!.state);
    // And it can hibernate again.
    send(pid, "h");
    await hibernated(pid, "the second hibernation");
    send(pid, "plain");
    expect(await nthState(rec.calls, 4)).toEqual({ n: 0 });
  });

  test("mutations made by the hibernating callback are what gets restored", async () => {
    const rec = recorder<{ log: string[] }>();
    const pid = spawn(rec.behaviour, { log: [] });
    probe(pid, (s: { log: string[] }) => s.log.push("before"));
    send(pid, "h");
    await hibernated(pid);
    probe(pid, (s: { log: string[] }) => s.log.push("after"));
    send(pid, "h");
    await until(() => rec.calls.length === 4, 2000, "four calls");
    await hibernated(pid);
    send(pid, "peek");
    expect(await nthState(rec.calls, 4)).toEqual({ log: ["before", "after"] });
  });

  test("init may hibernate: ok(state, { hibernate: true }) from init", async () => {
    const rec = recorder<{ fromInit: boolean; pad: string }>({ initHibernate: true });
    const original = { fromInit: true, pad: "p".repeat(300) };
    const pid = spawn(rec.behaviour, original);
    await hibernated(pid, "hibernation after init");
    send(pid, "x");
    const s = await nthState(rec.calls, 0);
    expect(s).toEqual({ fromInit: true, pad: "p".repeat(300) });
    expect(s).not.toBe(original);
  });

  test("a state smaller than its serialized form would be is kept as it is (hibernated, not copied)", async () => {
    const rec = recorder<{ heartbeat: number }>();
    const original = { heartbeat: 5000 };
    const pid = spawn(rec.behaviour, original);
    send(pid, "h");
    await hibernated(pid);
    expect(frozenSize(pid)).toBe(0);
    send(pid, "x");
    expect(await nthState(rec.calls, 1)).toBe(original);
  });

  test("a small state with a symbol key is kept as it is too: the symbol-keyed value is still there", async () => {
    const tag = Symbol("tag");
    const rec = recorder<{ heartbeat: number; [tag]: string }>();
    const original = { heartbeat: 5000, [tag]: "kept" };
    const pid = spawn(rec.behaviour, original);
    send(pid, "h");
    await hibernated(pid);
    expect(frozenSize(pid)).toBe(0);
    send(pid, "x");
    const state = await nthState(rec.calls, 1);
    expect(state).toBe(original);
    expect(state[tag]).toBe("kept");
  });

  test("an async handleInfo may hibernate", async () => {
    const calls: unknown[] = [];
    const behaviour: ProcessBehavior<{ v: number }, unknown, { v: number }> = {
      init: (s) => s,
      async handleInfo(msg, s) {
        calls.push(s);
        await sleep(2);
        return msg === "h" ? ok({ v: s.v + 1 }, { hibernate: true }) : ok(s);
      },
    };
    const pid = spawn(behaviour, { v: 1 });
    send(pid, "h");
    await hibernated(pid);
    send(pid, "x");
    await until(() => calls.length === 2, 2000, "the second call");
    expect(calls[1]).toEqual({ v: 2 });
  });

  test("a plain { type: 'ok', state, hibernate: true } object hibernates too", async () => {
    const calls: unknown[] = [];
    const behaviour: ProcessBehavior<{ p: number }, unknown, { p: number }> = {
      init: (s) => s,
      handleInfo: (msg, s) => {
        calls.push(s);
        return msg === "h" ? { type: "ok", state: s, hibernate: true } : { type: "ok", state: s };
      },
    };
    const pid = spawn(behaviour, { p: 5 });
    send(pid, "h");
    await hibernated(pid);
    send(pid, "x");
    await until(() => calls.length === 2, 2000, "the second call");
    expect(calls[1]).toEqual({ p: 5 });
  });

  test("primitive and empty states survive hibernation", async () => {
    for (const initial of [42, "text", 0n, null, undefined, true, {}, []] as unknown[]) {
      const rec = recorder<unknown>();
      const pid = spawn(rec.behaviour, initial);
      send(pid, "h");
      await hibernated(pid);
      send(pid, "x");
      expect(await nthState(rec.calls, 1)).toStrictEqual(initial);
      exit(pid, "kill");
    }
  });

  test("a process with more mail queued does not hibernate between messages, only once idle", async () => {
    const store = new RecordingStore();
    const rec = recorder<{ k: number }>({ hibernateAll: true });
    const pid = spawn(rec.behaviour, { k: 1 }, { stateStore: store });
    await settle();
    for (let i = 0; i < 5; i++) send(pid, i);
    await hibernated(pid);
    expect(rec.calls).toHaveLength(5);
    // Every one of the five asked to hibernate, but the state was evicted once, at the end.
    expect(store.ops()).toEqual(["put"]);
    for (const c of rec.calls) expect(c.state).toBe(rec.calls[0]!.state);
    for (const c of rec.calls) expect(c.info!.hibernated).toBe(false);
  });

  // Erlang: the result of the LAST callback decides; a later plain ok/noreply keeps the
  // process awake. Here HIBERNATE_NEXT (process.ts requestHibernate) survives a following
  // ok(state) without hibernate when that message was already queued: applyResult only ever
  // sets the flag, and endTurn acts on it once the mailbox is empty, so the process
  // hibernates although the last callback did not ask for it.
  test("ok(state, {hibernate}) followed by a queued message answered with plain ok(state) leaves the process live", async () => {
    const store = new RecordingStore();
    const rec = recorder<{ k: number }>();
    const pid = spawn(rec.behaviour, { k: 1 }, { stateStore: store });
    await settle();
    send(pid, "h");
    send(pid, "plain");
    await until(() => rec.calls.length === 2, 2000, "both calls");
    await settle();
    await sleep(10);
    expect(store.ops()).toEqual([]);
    expect(processInfo(pid)!.hibernated).toBe(false);
  });
});

describe("hibernate: what round-trips", () => {
  test("Map, Set, Date, RegExp, typed arrays, ArrayBuffer, Buffer, bigint, nested, shared references and cycles", async () => {
    const { records } = captureLogs();
    const build = () => {
      const shared = { tag: "shared" };
      const cyc: { name: string; self?: unknown; peers: unknown[] } = { name: "cyc", peers: [] };
      cyc.self = cyc;
      cyc.peers.push(cyc, shared);
      return {
        map: new Map<unknown, unknown>([
          ["k", 1],
          [2, { v: [1, 2] }],
          [shared, "object key"],
        ]),
        set: new Set<unknown>([1, "two", shared]),
        date: new Date(1_700_000_000_123),
        re: /ab+c/gi,
        u8: new Uint8Array([1, 2, 255]),
        f64: new Float64Array([1.5, -0, NaN]),
        i32: new Int32Array([-1, 2 ** 31 - 1]),
        big64: new BigInt64Array([-(2n ** 63n), 42n]),
        ab: new Uint8Array([9, 8]).buffer,
        buf: Buffer.from("héllo"),
        big: 2n ** 100n,
        nested: { a: { b: { c: [1, { d: "deep" }] } } },
        sharedA: shared,
        sharedB: shared,
        cyc,
        nums: [NaN, -0, Infinity, -Infinity, Number.MAX_SAFE_INTEGER],
        sparse: [1, , 3],
        undef: undefined,
        nil: null,
        text: "ünïcødé ✓ 🎉",
        bool: true,
      };
    };
    type S = ReturnType<typeof build>;
    const rec = recorder<S>();
    const original = build();
    const pid = spawn(rec.behaviour, original);
    send(pid, "h");
    await hibernated(pid);
    send(pid, "x");
    const r = await nthState(rec.calls, 1);
    expect(r).not.toBe(original);
    expect(r).toEqual(build());

    expect(r.map).toBeInstanceOf(Map);
    expect(r.map.get("k")).toBe(1);
    expect(r.map.get(2)).toEqual({ v: [1, 2] });
    expect([...r.map.keys()][2]).toBe(r.sharedA);
    expect(r.map.get(r.sharedA)).toBe("object key");
    expect(r.set).toBeInstanceOf(Set);
    expect(r.set.has("two")).toBe(true);
    expect(r.set.has(r.sharedA)).toBe(true);
    expect(r.date).toBeInstanceOf(Date);
    expect(r.date.getTime()).toBe(1_700_000_000_123);
    expect(r.re).toBeInstanceOf(RegExp);
    expect(r.re.source).toBe("ab+c");
    expect(r.re.flags).toBe("gi");
    expect(r.u8).toBeInstanceOf(Uint8Array);
    expect(Array.from(r.u8)).toEqual([1, 2, 255]);
    expect(r.f64).toBeInstanceOf(Float64Array);
    expect(Object.is(r.f64[1], -0)).toBe(true);
    expect(Number.isNaN(r.f64[2])).toBe(true);
    expect(r.i32).toBeInstanceOf(Int32Array);
    expect(Array.from(r.i32)).toEqual([-1, 2 ** 31 - 1]);
    expect(r.big64).toBeInstanceOf(BigInt64Array);
    expect(Array.from(r.big64)).toEqual([-(2n ** 63n), 42n]);
    expect(r.ab).toBeInstanceOf(ArrayBuffer);
    expect(Array.from(new Uint8Array(r.ab))).toEqual([9, 8]);
    expect(Buffer.isBuffer(r.buf)).toBe(true);
    expect(r.buf.toString("utf8")).toBe("héllo");
    expect(typeof r.big).toBe("bigint");
    expect(r.big).toBe(2n ** 100n);
    expect(r.nested).toEqual({ a: { b: { c: [1, { d: "deep" }] } } });
    // Shared references and cycles keep their identity within the state.
    expect(r.sharedA).toBe(r.sharedB);
    expect(r.sharedA).not.toBe(original.sharedA);
    expect(r.cyc.self).toBe(r.cyc);
    expect(r.cyc.peers[0]).toBe(r.cyc);
    expect(r.cyc.peers[1]).toBe(r.sharedA);
    expect(Number.isNaN(r.nums[0])).toBe(true);
    expect(Object.is(r.nums[1], -0)).toBe(true);
    expect(r.nums.slice(2)).toEqual([Infinity, -Infinity, Number.MAX_SAFE_INTEGER]);
    expect(r.sparse).toHaveLength(3);
    expect(1 in r.sparse).toBe(false);
    expect("undef" in r).toBe(true);
    expect(r.undef).toBeUndefined();
    expect(r.nil).toBeNull();
    expect(r.text).toBe("ünïcødé ✓ 🎉");
    expect(warnings(records)).toEqual([]);
  });

  // v8 would hand back a plain-prototype object and an Error without its own properties:
  // such states are never evicted, so they stay exactly as they were.
  test("Errors and null-prototype objects keep the state live and untouched", async () => {
    const dict = Object.create(null) as Record<string, number>;
    dict["toString"] = 2;
    const err = new TypeError("typed");
    const rec1 = recorder<{ dict: Record<string, number> }>();
    const rec2 = recorder<{ e: TypeError }>();
    const state1 = { dict };
    const state2 = { e: err };
    const p1 = spawn(rec1.behaviour, state1);
    const p2 = spawn(rec2.behaviour, state2);
    for (const p of [p1, p2]) send(p, "h");
    await settle(5);
    expect(processInfo(p1)?.hibernated).toBe(false);
    expect(processInfo(p2)?.hibernated).toBe(false);
    for (const p of [p1, p2]) send(p, "x");
    const r1 = await nthState(rec1.calls, 1);
    const r2 = await nthState(rec2.calls, 1);
    expect(r1).toBe(state1);
    expect(Object.getPrototypeOf(r1.dict)).toBeNull();
    expect(r2.e).toBe(err);
  });

  // hibernate.ts Scan.evictable accepts any Error whose prototype is a built-in error's, but v8
  // serialization keeps only name/message/stack/cause: own properties such as Node's err.code,
  // err.errno, err.syscall are silently dropped, so the state comes back changed ("State is
  // never lost"). Such an error should either stay live or have its own properties carried.
  test("an Error's own properties (err.code) survive hibernation", async () => {
    const rec = recorder<{ lastError: Error & { code?: string; errno?: number } }>();
    const err = Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET", errno: -104 });
    const pid = spawn(rec.behaviour, { lastError: err });
    send(pid, "h");
    await until(() => processInfo(pid)?.hibernated === true, 500).catch(() => undefined);
    send(pid, "x");
    const r = await nthState(rec.calls, 1);
    expect(r.lastError.message).toBe("read ECONNRESET");
    expect(r.lastError.code).toBe("ECONNRESET");
    expect(r.lastError.errno).toBe(-104);
  });
});

describe("hibernate: pids and refs come back as the same objects", () => {
  test("pids, refs, a monitor, a live timer, a Map keyed by pids: identity preserved and still usable", async () => {
    const peer = spawn(async (ctx) => {
      await ctx.receive((m) => m === "quit");
    });
    const dead = spawn(async () => {});
    await until(() => !isAlive(dead), 2000, "the short-lived process to end");
    const plainRef = makeRef();

    type S = {
      me: Pid;
      peer: Pid;
      dead: Pid;
      ref: Ref;
      timer: Ref;
      mon: Ref;
      byPid: Map<Pid, string>;
      pidSet: Set<Pid>;
      byRef: Map<Ref, number>;
      list: Pid[];
      nested: { deep: { pid: Pid; ref: Ref } };
      when: Date;
      bytes: Uint8Array;
    };
    const rec = recorder<S>();
    const wrapped: ProcessBehavior<S, unknown, null> = {
      init: () => {
        const me = self();
        return {
          me,
          peer,
          dead,
          ref: plainRef,
          timer: startTimer(5000, me, "late"),
          mon: monitor(peer),
          byPid: new Map([
            [peer, "peer"],
            [me, "me"],
          ]),
          pidSet: new Set([peer, dead]),
          byRef: new Map([[plainRef, 7]]),
          list: [peer, peer, me],
          nested: { deep: { pid: peer, ref: plainRef } },
          when: new Date(5),
          bytes: new Uint8Array([4, 5, 6]),
        };
      },
      handleInfo: (msg, s) => rec.behaviour.handleInfo(msg, s),
    };
    const pid = spawn(wrapped, null);
    send(pid, "h");
    await hibernated(pid);
    const original = rec.calls[0]!.state;
    const timersBefore = timerCount();

    let results: { sameMe: boolean; cancelled: number | false; demonitored: boolean } | undefined;
    probe(pid, (s: S) => {
      results = { sameMe: s.me === self(), cancelled: cancelTimer(s.timer), demonitored: demonitor(s.mon) };
    });
    const r = await nthState(rec.calls, 1);
    expect(r).not.toBe(original); // it really was evicted

    expect(r.me).toBe(pid);
    expect(r.peer).toBe(peer);
    expect(r.dead).toBe(dead);
    expect(r.ref).toBe(plainRef);
    expect(r.timer).toBe(original.timer);
    expect(r.mon).toBe(original.mon);
    expect(r.byPid.get(peer)).toBe("peer");
    expect(r.byPid.get(pid)).toBe("me");
    expect([...r.byPid.keys()]).toEqual([peer, pid]);
    expect([...r.byPid.keys()][0]).toBe(peer);
    expect(r.pidSet.has(peer)).toBe(true);
    expect(r.pidSet.has(dead)).toBe(true);
    expect(r.byRef.get(plainRef)).toBe(7);
    expect(r.list[0]).toBe(peer);
    expect(r.list[1]).toBe(peer);
    expect(r.list[2]).toBe(pid);
    expect(r.nested.deep.pid).toBe(peer);
    expect(r.nested.deep.ref).toBe(plainRef);
    expect(r.when.getTime()).toBe(5);
    expect(Array.from(r.bytes)).toEqual([4, 5, 6]);

    // The refs still work: the timer is cancellable, the monitor is still active.
    expect(results!.sameMe).toBe(true);
    expect(typeof results!.cancelled).toBe("number");
    expect(results!.cancelled as number).toBeGreaterThan(0);
    expect(results!.cancelled as number).toBeLessThanOrEqual(5000);
    expect(results!.demonitored).toBe(true);
    expect(timerCount()).toBe(timersBefore - 1);
    expect(processInfo(pid)!.monitors).toEqual([]);
    send(peer, "quit");
  });

  test("the same pid reached through several paths is one object after waking", async () => {
    const peer = spawn(async (ctx) => {
      await ctx.receive((m) => m === "quit");
    });
    type S = { a: Pid; holder: { b: Pid }; m: Map<string, Pid> };
    const rec = recorder<S>();
    const pid = spawn(rec.behaviour, { a: peer, holder: { b: peer }, m: new Map([["c", peer]]) });
    send(pid, "h");
    await hibernated(pid);
    send(pid, "x");
    const r = await nthState(rec.calls, 1);
    expect(r.a).toBe(peer);
    expect(r.holder.b).toBe(peer);
    expect(r.m.get("c")).toBe(peer);
    send(peer, "quit");
  });
});

describe("hibernate: states that cannot be evicted stay live", () => {
  test("a state holding a function stays live, unchanged, with one warning per behaviour across processes and messages", async () => {
    const { records } = captureLogs();
    type S = { onEvent: () => string; n: number };
    const rec = recorder<S>();
    const states: S[] = [];
    const pids: Pid[] = [];
    for (let i = 0; i < 5; i++) {
      const s: S = { onEvent: () => `cb${i}`, n: i };
      states.push(s);
      pids.push(spawn(rec.behaviour, s));
    }
    for (let round = 0; round < 3; round++) {
      for (const p of pids) send(p, "h");
      await until(() => rec.calls.length === 5 * (round + 1), 2000, `round ${round}`);
      await settle();
    }
    for (const p of pids) {
      expect(processInfo(p)!.hibernated).toBe(false);
      expect(processInfo(p)!.status).toBe("waiting");
    }
    // Every call saw the very object its process started with.
    for (const c of rec.calls) {
      const i = (c.state as S).n;
      expect(c.state).toBe(states[i]);
      expect(c.state.onEvent()).toBe(`cb${i}`);
    }
    await until(() => warnings(records).length >= 1, 2000, "the warning");
    await sleep(5);
    expect(warnings(records)).toHaveLength(1);
    expect(pids.map(String)).toContain(warnings(records)[0]!["pid"]);
  });

  test("class instances (top level, or nested in a Map) and symbol keys stay live too; a second behaviour warns once more", async () => {
    const { records } = captureLogs();
    class Counter {
      n = 0;
      inc(): number {
        return ++this.n;
      }
    }
    const rec = recorder<unknown>();
    const counter = new Counter();
    const inMap = { m: new Map<string, unknown>([["c", new Counter()]]) };
    // Big enough to be worth evicting: a state small enough to be kept as it is loses nothing to its symbol.
    const withSymbol = { [Symbol("tag")]: 1, plain: "x".repeat(400) };
    const date = Object.assign(new (class Stamp extends Date {})(0), {});
    const pids = [counter, inMap, withSymbol, date].map((s) => spawn(rec.behaviour, s));
    for (const p of pids) send(p, "h");
    await until(() => rec.calls.length === 4, 2000, "four calls");
    await settle();
    for (const p of pids) expect(processInfo(p)!.hibernated).toBe(false);
    probe(pids[0]!, (s: Counter) => s.inc());
    send(pids[0]!, "h");
    probe(pids[0]!, (s: Counter) => s.inc());
    await until(() => rec.calls.length === 7, 2000, "three more calls");
    for (let i = 0; i < 4; i++) expect(rec.calls[i]!.state).toBe([counter, inMap, withSymbol, date][i]);
    expect(counter.n).toBe(2);
    expect(counter).toBeInstanceOf(Counter);
    expect(warnings(records)).toHaveLength(1);

    // Another behaviour: its own single warning.
    const rec2 = recorder<Counter>();
    const q1 = spawn(rec2.behaviour, new Counter());
    const q2 = spawn(rec2.behaviour, new Counter());
    send(q1, "h");
    send(q2, "h");
    send(q1, "h");
    await until(() => rec2.calls.length === 3, 2000, "the second behaviour's calls");
    await settle();
    expect(warnings(records)).toHaveLength(2);
  });

  // hibernate.ts Scan.evictable only walks an array's elements, not its other own properties;
  // v8 serialize then throws DataCloneError on a function-valued property. The throw escapes
  // evictState → Process.endTurn → Process.run → scheduler drain() as an uncaught exception,
  // and `due` in scheduler.ts stays true, so no process in the runtime ever runs again.
  test("an array with a function-valued property stays live instead of crashing the runtime", async () => {
    const rt = await freshRuntime();
    await collectingUncaught(async (errors) => {
      type S = { list: string[] & { onChange?: () => string } };
      const seen: S[] = [];
      const behaviour: ProcessBehavior<S, unknown, S> = {
        init: (s) => s,
        handleInfo(msg, s) {
          seen.push(s);
          return msg === "h" ? rt.ok(s, { hibernate: true }) : rt.ok(s);
        },
      };
      const list = Object.assign(["a", "b"], { onChange: () => "changed" });
      const original: S = { list };
      const pid = rt.spawn(behaviour, original);
      rt.send(pid, "h");
      await until(() => seen.length === 1, 1000, "the first call");
      await sleep(20);
      expect(errors).toEqual([]);
      expect(rt.processInfo(pid)?.hibernated).toBe(false);
      rt.send(pid, "x");
      await until(() => seen.length === 2, 1000, "the second call");
      expect(seen[1]).toBe(original);
      expect(seen[1]!.list.onChange!()).toBe("changed");
      rt.exit(pid, "kill");
    });
  });
});

describe("hibernate: a custom StateStore", () => {
  test("put on hibernate, take on wake, delete when a hibernated process is killed", async () => {
    const store = new RecordingStore();
    const rec = recorder<{ v: number[] }>();
    const original = { v: [1, 2, 3] };
    const pid = spawn(rec.behaviour, original, { stateStore: store });
    send(pid, "h");
    await hibernated(pid);
    expect(processInfo(pid)!.status).toBe("hibernated");
    expect(store.ops()).toEqual(["put"]);
    expect(store.calls[0]!.pid).toBe(pid);
    expect(store.calls[0]!.state).toEqual({ v: [1, 2, 3] });
    expect(store.held.has(pid)).toBe(true);

    send(pid, "x");
    const woken = await nthState(rec.calls, 1);
    expect(store.ops()).toEqual(["put", "take"]);
    expect(store.calls[1]!.pid).toBe(pid);
    // The callback gets exactly what take() returned.
    expect(woken).toBe(store.calls[1]!.state);
    expect(woken).toEqual({ v: [1, 2, 3] });
    expect(rec.calls[1]!.info!.hibernated).toBe(false);

    send(pid, "h");
    await hibernated(pid, "the second hibernation");
    expect(store.ops()).toEqual(["put", "take", "put"]);
    exit(pid, "kill");
    await until(() => !isAlive(pid), 2000, "the kill");
    expect(store.ops()).toEqual(["put", "take", "put", "delete"]);
    expect(store.calls[3]!.pid).toBe(pid);
    expect(store.held.size).toBe(0);
  });

  test("a store takes states the default cannot serialize: evicted, no warning, same object back", async () => {
    const { records } = captureLogs();
    const store = new RecordingStore();
    class Session {
      constructor(readonly id: string) {}
      hello(): string {
        return `hi ${this.id}`;
      }
    }
    type S = { session: Session; cb: () => number };
    const rec = recorder<S>();
    const original: S = { session: new Session("s1"), cb: () => 7 };
    const pid = spawn(rec.behaviour, original, { stateStore: store });
    send(pid, "h");
    await hibernated(pid);
    expect(store.calls[0]!.state).toBe(original);
    send(pid, "x");
    const woken = await nthState(rec.calls, 1);
    expect(woken).toBe(original);
    expect(woken.session.hello()).toBe("hi s1");
    expect(woken.cb()).toBe(7);
    expect(warnings(records)).toEqual([]);
  });

  test("a store is not touched by a process that never hibernates", async () => {
    const store = new RecordingStore();
    const rec = recorder<{ z: number }>();
    const pid = spawn(rec.behaviour, { z: 1 }, { stateStore: store });
    for (let i = 0; i < 3; i++) send(pid, i);
    await until(() => rec.calls.length === 3, 2000, "three calls");
    exit(pid, "kill");
    await until(() => !isAlive(pid), 2000, "the kill");
    expect(store.ops()).toEqual([]);
  });
});

describe("hibernate and terminate", () => {
  test("terminate of a hibernated process sees the real state", async () => {
    type S = { name: string; tags: Set<string>; at: Date; note: string };
    const rec = recorder<S>();
    // Large enough to be serialized (a small state stays as it is), so terminate needs the thaw.
    const original: S = { name: "sleepy", tags: new Set(["a", "b"]), at: new Date(99), note: "n".repeat(400) };
    const pid = spawn(rec.behaviour, original);
    send(pid, "h");
    await hibernated(pid);
    expect(frozenSize(pid)).toBeGreaterThan(400);
    exit(pid, "shutdown");
    await until(() => rec.terminated.length === 1, 2000, "terminate");
    expect(rec.terminated[0]!.reason).toBe("shutdown");
    const s = rec.terminated[0]!.state;
    // A thawed copy, not the object the process held before it slept.
    expect(s).not.toBe(original);
    expect(s.name).toBe("sleepy");
    expect(s.tags).toBeInstanceOf(Set);
    expect([...s.tags]).toEqual(["a", "b"]);
    expect(s.at).toBeInstanceOf(Date);
    expect(s.at.getTime()).toBe(99);
    expect(s.note).toBe("n".repeat(400));
  });

  test("terminate of a hibernated process with a StateStore sees what the store gives back", async () => {
    const store = new RecordingStore();
    const rec = recorder<{ w: number }>();
    const original = { w: 3 };
    const pid = spawn(rec.behaviour, original, { stateStore: store });
    send(pid, "h");
    await hibernated(pid);
    exit(pid, "shutdown");
    await until(() => rec.terminated.length === 1, 2000, "terminate");
    expect(rec.terminated[0]!.state).toBe(original);
    expect(store.ops()).toContain("take");
    expect(store.held.size).toBe(0);
  });

  test("stop(state) after waking: terminate gets the state the callback returned", async () => {
    const rec = recorder<{ q: number[] }>();
    const pid = spawn(rec.behaviour, { q: [1] });
    send(pid, "h");
    await hibernated(pid);
    send(pid, "stop");
    await until(() => !isAlive(pid), 2000, "the stop");
    expect(rec.terminated).toHaveLength(1);
    expect(rec.terminated[0]!.reason).toBe("normal");
    expect(rec.terminated[0]!.state).toBe(rec.calls[1]!.state);
    expect(rec.terminated[0]!.state).toEqual({ q: [1] });
  });
});

describe("hibernate: Buffers next to pids", () => {
  // hibernate.ts restoreSpecials walks every non-Map/Set/Array object with for...in and
  // writes each key back. On a Buffer, for...in also yields Buffer.prototype's enumerable
  // members, among them the getter-only `parent`; assigning it throws TypeError. So a state
  // holding both a Buffer and a pid (or any Ref, e.g. a timer) cannot wake: the throw escapes
  // Process.run (wake is outside its try) into the scheduler as an uncaught exception, the
  // message is lost, and the scheduler stays wedged. (Even without the throw, the loop would
  // copy prototype members onto the Buffer as own properties.)
  test("a state holding a Buffer and a pid wakes intact", async () => {
    const rt = await freshRuntime();
    await collectingUncaught(async (errors) => {
      type S = { peer: unknown; frame: Buffer };
      const seen: S[] = [];
      const behaviour: ProcessBehavior<S, unknown, S> = {
        init: (s) => s,
        handleInfo(msg, s) {
          seen.push(s);
          return msg === "h" ? rt.ok(s, { hibernate: true }) : rt.ok(s);
        },
      };
      const peer = rt.spawn(async (ctx) => {
        await ctx.receive((m) => m === "quit");
      });
      const pid = rt.spawn(behaviour, { peer, frame: Buffer.from("hello") });
      rt.send(pid, "h");
      await until(() => rt.processInfo(pid)?.hibernated === true, 1000, "hibernation");
      rt.send(pid, "x");
      await sleep(20);
      expect(errors).toEqual([]);
      await until(() => seen.length === 2, 1000, "the woken call");
      const s = seen[1]!;
      expect(s.peer).toBe(peer);
      expect(Buffer.isBuffer(s.frame)).toBe(true);
      expect(s.frame.toString()).toBe("hello");
      expect(Object.keys(s.frame)).toEqual(["0", "1", "2", "3", "4"]);
      rt.exit(pid, "kill");
      rt.send(peer, "quit");
    });
  });
});

describe("frozenSize", () => {
  test("is the serialized size while hibernated, with or without pids in the state, and 0 once awake", async () => {
    const plain = { pad: "p".repeat(2000) };
    const rec = recorder<typeof plain>();
    const pid = spawn(rec.behaviour, plain);
    expect(frozenSize(pid)).toBe(0);
    send(pid, "h");
    await hibernated(pid);
    const size = frozenSize(pid);
    expect(size).toBeGreaterThan(2000);
    expect(size).toBeLessThan(2100);
    send(pid, "x");
    expect(await nthState(rec.calls, 1)).toEqual(plain);
    expect(frozenSize(pid)).toBe(0);

    const withPid = recorder<{ pad: string; me: Pid | null }>();
    const other = spawn(withPid.behaviour, { pad: "q".repeat(2000), me: pid });
    send(other, "h");
    await hibernated(other);
    expect(frozenSize(other)).toBeGreaterThan(2000);
  });

  test("is 0 for a dead pid and throws for anything that is not a pid", async () => {
    const rec = recorder<{ pad: string }>();
    const pid = spawn(rec.behaviour, { pad: "p".repeat(2000) });
    send(pid, "stop");
    await until(() => !isAlive(pid), 2000, "the process to end");
    expect(frozenSize(pid)).toBe(0);
    expect(() => frozenSize({ a: 1 } as unknown as Pid)).toThrow(/frozenSize: expected a Pid/);
  });
});
