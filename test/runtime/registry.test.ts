import { afterEach, describe, expect, test } from "vitest";
import {
  CorralError,
  exit,
  isAlive,
  isDown,
  monitor,
  ok,
  processCount,
  processes,
  processInfo,
  register,
  registered,
  self,
  send,
  spawn,
  stop,
  unregister,
  whereis,
  type DownMessage,
  type Pid,
  type ProcessBehavior,
  type ReceiveContext,
} from "../../src/index.js";
import { captureLogs, settle, sleep, until, expectCode, deadPid } from "../support/helpers.js";

// ---------------------------------------------------------------------------------------
// helpers

/** Records messages; "stop" ends it normally, "crash" makes it throw. */
const sinkBehaviour: ProcessBehavior<unknown[], unknown, unknown[]> = {
  init: (got) => got,
  handleInfo(msg, got) {
    if (msg === "stop") return stop(got);
    if (msg === "crash") throw new Error("asked to crash");
    got.push(msg);
    return ok(got);
  },
};

function sink(name?: string): { pid: Pid; got: unknown[] } {
  const got: unknown[] = [];
  const pid = spawn(sinkBehaviour, got, name === undefined ? undefined : { name });
  return { pid, got };
}



afterEach(async () => {
  for (const p of processes()) exit(p, "kill");
  await until(() => processCount() === 0, 2000, "every process to end");
  for (const name of registered()) if (name.startsWith("reg.")) throw new Error(`name ${name} leaked`);
});

// ---------------------------------------------------------------------------------------

describe("register / whereis / unregister", () => {
  test("register makes whereis find the pid; unregister forgets it", async () => {
    const { pid } = sink();
    expect(whereis("reg.alpha")).toBeUndefined();
    register("reg.alpha", pid);
    expect(whereis("reg.alpha")).toBe(pid);
    expect(registered()).toContain("reg.alpha");
    expect(processInfo(pid)!.registeredName).toBe("reg.alpha");
    unregister("reg.alpha");
    expect(whereis("reg.alpha")).toBeUndefined();
    expect(registered()).not.toContain("reg.alpha");
    expect(processInfo(pid)!.registeredName).toBeUndefined();
    // The process itself is untouched by unregister.
    expect(isAlive(pid)).toBe(true);
  });

  test("unregistering a name that is not registered throws ERR_UNKNOWN_NAME", () => {
    expectCode(() => unregister("reg.never"), "ERR_UNKNOWN_NAME");
    const { pid } = sink();
    register("reg.once", pid);
    unregister("reg.once");
    expectCode(() => unregister("reg.once"), "ERR_UNKNOWN_NAME");
  });

  test("after unregister the process may take another name, and the old one is free", () => {
    const a = sink();
    const b = sink();
    register("reg.first", a.pid);
    unregister("reg.first");
    register("reg.second", a.pid);
    expect(whereis("reg.second")).toBe(a.pid);
    register("reg.first", b.pid);
    expect(whereis("reg.first")).toBe(b.pid);
    expect(processInfo(a.pid)!.registeredName).toBe("reg.second");
    expect(processInfo(b.pid)!.registeredName).toBe("reg.first");
    unregister("reg.first");
    unregister("reg.second");
  });

  test("registered() lists every registered name", () => {
    const names = ["reg.l1", "reg.l2", "reg.l3"];
    const pids = names.map((n) => sink(n).pid);
    const all = registered();
    for (const n of names) expect(all).toContain(n);
    expect(new Set(all).size).toBe(all.length);
    names.forEach((n, i) => expect(whereis(n)).toBe(pids[i]));
    unregister("reg.l2");
    expect(registered()).not.toContain("reg.l2");
    expect(registered()).toContain("reg.l1");
    expect(registered()).toContain("reg.l3");
  });

  test("a process can register itself by self() inside its callback", async () => {
    let resolve!: (v: string | undefined) => void;
    const seen = new Promise<string | undefined>((r) => (resolve = r));
    const pid = spawn({
      init: () => {
        register("reg.myself", self());
        resolve(processInfo(self())!.registeredName);
        return {};
      },
      handleInfo: (_m: unknown, s: object) => ok(s),
    });
    expect(await seen).toBe("reg.myself");
    expect(whereis("reg.myself")).toBe(pid);
  });
});

describe("send by name", () => {
  test("send('name', m) reaches the registered process, in order", async () => {
    const s = sink("reg.mailbox");
    for (let i = 0; i < 5; i++) send("reg.mailbox", i);
    send(s.pid, "by pid");
    await until(() => s.got.length === 6, 2000, "six messages");
    expect(s.got).toEqual([0, 1, 2, 3, 4, "by pid"]);
  });

  test("send to an unknown name throws ERR_UNKNOWN_NAME", () => {
    expectCode(() => send("reg.nobody", "x"), "ERR_UNKNOWN_NAME");
  });

  test("send to a name whose process ended throws ERR_UNKNOWN_NAME (unlike a send to a dead pid)", async () => {
    const s = sink("reg.ends");
    send("reg.ends", "stop");
    await until(() => !isAlive(s.pid), 2000, "the process to stop");
    expectCode(() => send("reg.ends", "x"), "ERR_UNKNOWN_NAME");
    expect(() => send(s.pid, "x")).not.toThrow();
  });
});

describe("register errors", () => {
  test("registering a taken name throws ERR_NAME_TAKEN and leaves the holder in place", () => {
    const a = sink("reg.taken");
    const b = sink();
    expectCode(() => register("reg.taken", b.pid), "ERR_NAME_TAKEN");
    expect(whereis("reg.taken")).toBe(a.pid);
    expect(processInfo(b.pid)!.registeredName).toBeUndefined();
    // Even the holder itself cannot take its own name twice.
    expect(() => register("reg.taken", a.pid)).toThrow(CorralError);
    expect(whereis("reg.taken")).toBe(a.pid);
  });

  test("registering a dead pid throws ERR_NOPROC and registers nothing", async () => {
    const dead = await deadPid();
    expectCode(() => register("reg.dead", dead), "ERR_NOPROC");
    expect(whereis("reg.dead")).toBeUndefined();
    expect(registered()).not.toContain("reg.dead");
  });

  test("a second name for the same process throws ERR_BADARG; the first name stays", () => {
    const a = sink("reg.one");
    expectCode(() => register("reg.two", a.pid), "ERR_BADARG");
    expect(whereis("reg.one")).toBe(a.pid);
    expect(whereis("reg.two")).toBeUndefined();
    expect(processInfo(a.pid)!.registeredName).toBe("reg.one");
  });

  test("a name that is not a non-empty string, or a pid that is not a Pid, throws ERR_BADARG", () => {
    const a = sink();
    for (const bad of ["", 42, null, undefined, {}, Symbol("n")]) {
      expectCode(() => register(bad as unknown as string, a.pid), "ERR_BADARG");
    }
    for (const bad of [undefined, null, "<nonode@nohost.1>", 1, {}]) {
      expectCode(() => register("reg.badpid", bad as unknown as Pid), "ERR_BADARG");
    }
    expect(whereis("reg.badpid")).toBeUndefined();
    expect(processInfo(a.pid)!.registeredName).toBeUndefined();
  });
});

describe("names and process lifetime", () => {
  for (const how of ["stop", "kill", "crash"] as const) {
    test(`a name is freed when its process ends (${how}), before the DOWN arrives, and can be re-registered`, async () => {
      captureLogs(); // a crash logs a report; keep it out of the output
      const target = sink("reg.freed");
      let resolve!: (v: { down: DownMessage; whereisAtDown: Pid | undefined; reRegistered: boolean }) => void;
      const result = new Promise<{ down: DownMessage; whereisAtDown: Pid | undefined; reRegistered: boolean }>((r) => (resolve = r));
      let ready = false;
      const watcher = spawn(async (ctx) => {
        monitor(target.pid);
        ready = true;
        const down = (await ctx.receive(isDown)) as DownMessage;
        const whereisAtDown = whereis("reg.freed");
        let reRegistered = false;
        try {
          register("reg.freed", ctx.self);
          reRegistered = true;
        } catch {
          reRegistered = false;
        }
        resolve({ down, whereisAtDown, reRegistered });
        await ctx.receive((m) => m === "done");
      });
      await until(() => ready, 2000, "the watcher to monitor");
      if (how === "kill") exit(target.pid, "kill");
      else send("reg.freed", how);
      const r = await result;
      expect(r.down.pid).toBe(target.pid);
      expect(r.whereisAtDown).toBeUndefined();
      expect(r.reRegistered).toBe(true);
      expect(whereis("reg.freed")).toBe(watcher);
      expect(processInfo(watcher)!.registeredName).toBe("reg.freed");
      send(watcher, "done");
      await until(() => !isAlive(watcher), 2000, "the watcher to end");
      expect(whereis("reg.freed")).toBeUndefined();
      expect(registered()).not.toContain("reg.freed");
    });
  }

  test("an async-function process's name is freed when the function returns", async () => {
    const pid = spawn(async (ctx) => {
      await ctx.receive((m) => m === "go");
    }, undefined, { name: "reg.fn" });
    expect(whereis("reg.fn")).toBe(pid);
    send("reg.fn", "go");
    await until(() => !isAlive(pid), 2000, "the process to return");
    expect(whereis("reg.fn")).toBeUndefined();
  });
});

describe("spawn(..., { name })", () => {
  test("registers the name before the process runs", async () => {
    const log: string[] = [];
    let resolve!: () => void;
    const handled = new Promise<void>((r) => (resolve = r));
    const behaviour: ProcessBehavior<{ seenInInit: boolean }, unknown, string> = {
      init(name) {
        log.push("init");
        return { seenInInit: whereis(name) === self() && processInfo(self())!.registeredName === name };
      },
      handleInfo(msg, s) {
        log.push(`msg:${String(msg)}`);
        expect(s.seenInInit).toBe(true);
        resolve();
        return ok(s);
      },
    };
    const pid = spawn(behaviour, "reg.early", { name: "reg.early" });
    // Synchronously after spawn, before init has run:
    expect(log).toEqual([]);
    expect(whereis("reg.early")).toBe(pid);
    expect(processInfo(pid)!.registeredName).toBe("reg.early");
    // A message sent by name now waits for the process.
    send("reg.early", "hello");
    await handled;
    expect(log).toEqual(["init", "msg:hello"]);
  });

  test("spawning with a taken name throws ERR_NAME_TAKEN and starts nothing", async () => {
    const holder = sink("reg.busy");
    const before = processCount();
    let initRan = false;
    let thrown: unknown;
    try {
      spawn({ init: () => { initRan = true; return 0; }, handleInfo: (_m: unknown, s: number) => ok(s) }, undefined, { name: "reg.busy" });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(CorralError);
    expect((thrown as CorralError).code).toBe("ERR_NAME_TAKEN");
    await settle();
    await sleep(5);
    expect(initRan).toBe(false);
    expect(processCount()).toBe(before);
    expect(whereis("reg.busy")).toBe(holder.pid);
  });

  test("spawning with an invalid name throws ERR_BADARG and starts nothing", async () => {
    const before = processCount();
    let initRan = false;
    expect(() => spawn({ init: () => { initRan = true; return 0; }, handleInfo: (_m: unknown, s: number) => ok(s) }, undefined, { name: "" })).toThrow(CorralError);
    await settle();
    expect(initRan).toBe(false);
    expect(processCount()).toBe(before);
  });
});

describe("register race", () => {
  test("processes racing for one name in the same tick: exactly one wins", async () => {
    for (let round = 0; round < 5; round++) {
      const contenders = 8;
      const results: { pid: Pid; won: boolean; code: string | undefined }[] = [];
      let resolve!: () => void;
      const allDone = new Promise<void>((r) => (resolve = r));
      const racer = async (ctx: ReceiveContext): Promise<void> => {
        try {
          register("reg.race", ctx.self);
          results.push({ pid: ctx.self, won: true, code: undefined });
        } catch (err) {
          results.push({ pid: ctx.self, won: false, code: (err as CorralError).code });
        }
        if (results.length === contenders) resolve();
        await ctx.receive((m) => m === "quit");
      };
      const pids: Pid[] = [];
      for (let i = 0; i < contenders; i++) pids.push(spawn(racer));
      await allDone;
      const winners = results.filter((r) => r.won);
      expect(winners).toHaveLength(1);
      expect(results.filter((r) => !r.won).every((r) => r.code === "ERR_NAME_TAKEN")).toBe(true);
      expect(whereis("reg.race")).toBe(winners[0]!.pid);
      for (const p of pids) send(p, "quit");
      await until(() => pids.every((p) => !isAlive(p)), 2000, "the racers to end");
      expect(whereis("reg.race")).toBeUndefined();
    }
  });
});
