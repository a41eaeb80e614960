import { afterEach, beforeEach, describe, expect, test } from "vitest";
import {
  countChildren,
  deleteChild,
  restartChild,
  startChild,
  startSupervisor,
  stopSupervisor,
  terminateChild,
  whichChildren,
  type ChildSpec,
  type StartSupervisorOptions,
  type SupervisorSpec,
} from "../../src/behaviors/supervisor.js";
import {
  exit,
  isAlive,
  isDown,
  monitor,
  ok,
  processCount,
  processInfo,
  send,
  spawn,
  spawnLink,
  stop,
  type DownMessage,
  type ExitReason,
  type Pid,
  type ProcessBehavior,
} from "../../src/index.js";
import { captureLogs, settle, sleep, until, type LogRecord } from "../support/helpers.js";

// ---------------------------------------------------------------------------------------
// A worker that records its end in a shared event list, and children built from it

interface WorkerArg {
  readonly events: string[];
  readonly name: string;
  /** Trapping exits: "honour" stops on the EXIT, "ignore" keeps running (only "kill" ends it). */
  readonly trap?: "honour" | "ignore";
}

/** "crash" throws, "normal" stops normally, "shutdown" stops with { shutdown: "done" }. */
const WORKER: ProcessBehavior<WorkerArg, unknown, WorkerArg> = {
  init: (arg) => ok(arg),
  handleInfo(msg, st) {
    if (msg === "crash") throw new Error(`${st.name} crashed`);
    if (msg === "normal") return stop(st);
    if (msg === "shutdown") return stop(st, { shutdown: "done" });
    if (st.trap === "honour" && typeof msg === "object" && msg !== null && "type" in msg && msg.type === "EXIT" && "reason" in msg) {
      return stop(st, msg.reason as ExitReason);
    }
    return ok(st);
  },
  terminate(reason, st) {
    st.events.push(`stop ${st.name} ${kind(reason)}`);
  },
};

function kind(reason: ExitReason): string {
  if (typeof reason === "string") return reason;
  return "crash" in reason ? "crash" : "shutdown*";
}

/** A child spec whose start records "start <id>" and spawnLinks a WORKER. */
function worker(events: string[], id: string, extra: Partial<ChildSpec> & { trap?: "honour" | "ignore" } = {}): ChildSpec {
  const { trap, ...spec } = extra;
  return {
    id,
    start: () => {
      events.push(`start ${id}`);
      return spawnLink(WORKER, { events, name: id, trap }, { trapExit: trap !== undefined });
    },
    ...spec,
  };
}

// ---------------------------------------------------------------------------------------
// Bookkeeping: every test's supervisors are stopped and the process count comes back

let logs: LogRecord[];
let baseline: number;
let started: Pid[];

beforeEach(() => {
  logs = captureLogs().records;
  baseline = processCount();
  started = [];
});

afterEach(async () => {
  for (const pid of started) if (isAlive(pid)) await stopSupervisor(pid).catch(() => undefined);
  await until(() => processCount() === baseline, 2000, "the process count to return to its baseline");
});

function sup(spec: SupervisorSpec, opts?: StartSupervisorOptions): Pid {
  const pid = startSupervisor(spec, opts);
  started.push(pid);
  return pid;
}

/** Resolves with the reason pid exits with (a monitor from a small process). */
function watch(pid: Pid): Promise<ExitReason> {
  return new Promise((resolve) => {
    spawn(async (ctx) => {
      const ref = monitor(pid);
      const down = await ctx.receive((m): m is DownMessage => isDown(m) && m.ref === ref);
      resolve(down.reason);
    });
  });
}

/** Starts a supervisor (unlinked) from a process that monitors it before it runs: even an exit in init is seen. */
function startWatched(spec: SupervisorSpec): Promise<{ pid: Pid; down: Promise<ExitReason> }> {
  return new Promise((resolve) => {
    spawn(async (ctx) => {
      const pid = startSupervisor(spec, { link: false });
      const ref = monitor(pid);
      const down = ctx.receive((m): m is DownMessage => isDown(m) && m.ref === ref).then((d) => d.reason);
      resolve({ pid, down });
      await down;
    });
  });
}

async function pidOf(supPid: Pid, id: string): Promise<Pid> {
  const row = (await whichChildren(supPid)).find((c) => c.id === id);
  if (row === undefined || typeof row.pid !== "object") throw new Error(`child ${id} is not running`);
  return row.pid;
}

async function pids(supPid: Pid): Promise<Array<Pid | "restarting" | undefined>> {
  return (await whichChildren(supPid)).map((c) => c.pid);
}

const reports = (msg: string): LogRecord[] => logs.filter((r) => r.msg === msg);

// ---------------------------------------------------------------------------------------

describe("startup and shutdown", () => {
  test("starts children in order and stops them in reverse order", async () => {
    const events: string[] = [];
    const s = sup({ children: ["a", "b", "c"].map((id) => worker(events, id)) });
    const rows = await whichChildren(s);
    expect(rows.map((r) => r.id)).toEqual(["a", "b", "c"]);
    expect(rows.every((r) => typeof r.pid === "object" && isAlive(r.pid))).toBe(true);
    expect(processInfo(s)?.trapExit).toBe(true);
    expect(processInfo(s)?.behaviour).toBe("Supervisor");

    const down = watch(s);
    await stopSupervisor(s);
    expect(await down).toBe("shutdown");
    expect(events).toEqual(["start a", "start b", "start c", "stop c shutdown", "stop b shutdown", "stop a shutdown"]);
  });

  test("a child failing to start stops those started and ends the supervisor naming it", async () => {
    const events: string[] = [];
    const failing: ChildSpec = {
      id: "b",
      start: () => {
        events.push("start b");
        throw new Error("no database");
      },
    };
    const a: Pid[] = [];
    const first: ChildSpec = { id: "a", start: () => (a[0] = worker(events, "a").start()) };
    const { down } = await startWatched({ children: [first, failing, worker(events, "c")] });
    const reason = await down;
    expect(reason).toMatchObject({ shutdown: { failedToStartChild: "b" } });
    const inner = (reason as { shutdown: { reason: Error } }).shutdown.reason;
    expect(inner.message).toBe("no database");
    // a is stopped before it ever ran, so it has no terminate to record; c never starts.
    expect(events).toEqual(["start a", "start b"]);
    expect(isAlive(a[0]!)).toBe(false);
    expect(reports("child failed to start")[0]).toMatchObject({ childId: "b", errorContext: "start_error", level: 50 });
  });

  test("start returning something other than a Pid is a start failure", async () => {
    const { down } = await startWatched({ children: [{ id: "odd", start: () => "not a pid" as unknown as Pid }] });
    const reason = await down;
    expect(reason).toMatchObject({ shutdown: { failedToStartChild: "odd" } });
    expect((reason as { shutdown: { reason: Error } }).shutdown.reason.message).toMatch(/start returned "not a pid"; expected a Pid/);
  });

  test("bad specs throw where they are given", () => {
    const start = (): Pid => spawn(WORKER, { events: [], name: "a" });
    expect(() => startSupervisor({ strategy: "one_for_some" as "one_for_one", children: [] })).toThrow(/strategy must be/);
    expect(() => startSupervisor({ children: [{ id: "a", start }, { id: "a", start }] })).toThrow(/duplicate child id "a"/);
    expect(() => startSupervisor({ children: [{ id: "a", start, shutdown: -1 }] })).toThrow(/child "a": shutdown must be/);
    expect(() => startSupervisor({ children: [{ id: "a", start, restart: "always" as "permanent" }] })).toThrow(/restart must be/);
    expect(() => startSupervisor({ intensity: 1.5, children: [] })).toThrow(/intensity must be an integer/);
    expect(() => startSupervisor({ children: [] }, { link: true })).toThrow(/needs a calling process/);
  });

  test("registers under a name and answers calls by it", async () => {
    const events: string[] = [];
    const s = sup({ children: [worker(events, "a")] }, { name: "test_sup" });
    expect(await countChildren("test_sup")).toEqual({ specs: 1, active: 1, supervisors: 0, workers: 1 });
    await stopSupervisor("test_sup");
    expect(isAlive(s)).toBe(false);
  });
});

describe("strategies", () => {
  /** Starts a, b, c under the strategy, crashes b, and returns what happened after the crash. */
  async function crashB(strategy: SupervisorSpec["strategy"]) {
    const events: string[] = [];
    const s = sup({ strategy, children: ["a", "b", "c"].map((id) => worker(events, id)) });
    const before = await pids(s);
    events.length = 0;
    send(await pidOf(s, "b"), "crash");
    return { s, events, before };
  }

  test("one_for_one restarts only the child that exited", async () => {
    const { s, events, before } = await crashB("one_for_one");
    await until(() => events.length === 2, 2000, "b to restart");
    expect(events).toEqual(["stop b crash", "start b"]);
    const after = await pids(s);
    expect(after[0]).toBe(before[0]);
    expect(after[1]).not.toBe(before[1]);
    expect(after[2]).toBe(before[2]);
    const report = reports("child terminated")[0];
    expect(report).toMatchObject({ supervisor: s.toString(), childId: "b", errorContext: "child_terminated", level: 50 });
    expect(report?.["reason"]).toMatch(/crash: Error: b crashed/);
  });

  test("one_for_all stops the others in reverse order, then starts all in order", async () => {
    const { s, events, before } = await crashB("one_for_all");
    await until(() => events.length === 6, 2000, "all to restart");
    await settle();
    expect(events).toEqual(["stop b crash", "stop c shutdown", "stop a shutdown", "start a", "start b", "start c"]);
    const after = await pids(s);
    for (let i = 0; i < 3; i++) expect(after[i]).not.toBe(before[i]);
    expect(reports("child did not shut down cleanly")).toEqual([]);
  });

  test("rest_for_one restarts the child and those started after it", async () => {
    const { s, events, before } = await crashB("rest_for_one");
    await until(() => events.length === 4, 2000, "b and c to restart");
    await settle();
    expect(events).toEqual(["stop b crash", "stop c shutdown", "start b", "start c"]);
    const after = await pids(s);
    expect(after[0]).toBe(before[0]);
    expect(after[1]).not.toBe(before[1]);
    expect(after[2]).not.toBe(before[2]);
  });

  test("a child that dies on its own while a restart shuts it down counts once, its EXIT consumed", async () => {
    const events: string[] = [];
    // z's crash shuts down x (slow: ignores shutdown for 100 ms) and then y; y crashes meanwhile.
    const s = sup({
      strategy: "one_for_all",
      children: [worker(events, "y"), worker(events, "x", { trap: "ignore", shutdown: 100 }), worker(events, "z")],
    });
    const y = await pidOf(s, "y");
    send(await pidOf(s, "z"), "crash");
    await until(() => events.includes("stop z crash"));
    send(y, "crash");
    await until(() => events.filter((e) => e.startsWith("start")).length === 6, 2000, "all to restart");
    await settle();
    expect(isAlive(s)).toBe(true); // intensity 1: a second restart would have ended it
    expect((await pids(s)).every((p) => typeof p === "object" && isAlive(p))).toBe(true);
    const errors = reports("child did not shut down cleanly");
    expect(errors.map((r) => [r["childId"], r["reason"]])).toEqual([
      ["x", "killed"],
      ["y", "{ crash: Error: y crashed }"],
    ]);
  });
});

describe("restart types", () => {
  test("permanent restarts even after a normal exit", async () => {
    const events: string[] = [];
    const s = sup({ children: [worker(events, "p")] });
    const before = await pidOf(s, "p");
    send(before, "normal");
    await until(() => events.length === 3);
    expect(events).toEqual(["start p", "stop p normal", "start p"]);
    expect(await pidOf(s, "p")).not.toBe(before);
  });

  test("transient restarts after a crash, not after normal or { shutdown }", async () => {
    const events: string[] = [];
    const s = sup({ intensity: 10, children: [worker(events, "t", { restart: "transient" })] });
    send(await pidOf(s, "t"), "crash");
    await until(() => events.length === 3);
    expect(events.slice(1)).toEqual(["stop t crash", "start t"]);

    send(await pidOf(s, "t"), "normal");
    await until(() => events.length === 4);
    await settle();
    expect(await whichChildren(s)).toEqual([{ id: "t", pid: undefined, type: "worker" }]);

    await restartChild(s, "t");
    send(await pidOf(s, "t"), "shutdown");
    await until(() => events.length === 6);
    await settle();
    expect(events.slice(3)).toEqual(["stop t normal", "start t", "stop t shutdown*"]);
    expect((await whichChildren(s))[0]?.pid).toBeUndefined();
    expect(reports("child terminated")).toHaveLength(1);
  });

  test("temporary never restarts and leaves the child list", async () => {
    const events: string[] = [];
    const s = sup({ children: [worker(events, "keep"), worker(events, "tmp", { restart: "temporary" })] });
    send(await pidOf(s, "tmp"), "crash");
    await until(() => events.includes("stop tmp crash"));
    await settle();
    expect((await whichChildren(s)).map((c) => c.id)).toEqual(["keep"]);
    expect(events.filter((e) => e === "start tmp")).toHaveLength(1);
    expect(reports("child terminated")[0]).toMatchObject({ childId: "tmp", restart: "temporary" });
  });
});

describe("restart intensity", () => {
  test("more restarts than intensity within the period: everything stops, the supervisor exits shutdown", async () => {
    const events: string[] = [];
    const s = sup({ children: [worker(events, "a"), worker(events, "b")] }); // defaults: 1 restart in 5000 ms
    const down = watch(s);
    send(await pidOf(s, "a"), "crash");
    await until(() => events.filter((e) => e === "start a").length === 2);
    send(await pidOf(s, "a"), "crash");
    expect(await down).toBe("shutdown");
    expect(events.slice(-2)).toEqual(["stop a crash", "stop b shutdown"]);
    expect(reports("reached max restart intensity")[0]).toMatchObject({ supervisor: s.toString(), childId: "a", level: 50 });
    await until(() => processCount() === baseline);
  });

  test("restarts older than the period no longer count", async () => {
    const events: string[] = [];
    const s = sup({ intensity: 1, periodMs: 100, children: [worker(events, "a")] });
    for (let i = 2; i <= 4; i++) {
      send(await pidOf(s, "a"), "crash");
      await until(() => events.filter((e) => e === "start a").length === i);
      await sleep(150);
    }
    expect(isAlive(s)).toBe(true);
  });

  test("a failing restart is tried again, counting against intensity, until the supervisor gives up", async () => {
    const events: string[] = [];
    let starts = 0;
    const flaky: ChildSpec = {
      id: "f",
      start: () => {
        if (++starts > 1) throw new Error("still broken");
        return spawnLink(WORKER, { events, name: "f" });
      },
    };
    const s = sup({ intensity: 3, children: [flaky] });
    const down = watch(s);
    send(await pidOf(s, "f"), "crash");
    expect(await down).toBe("shutdown");
    expect(starts).toBe(4); // the first start, then 3 restarts allowed; the 4th restart exceeds
    expect(reports("child failed to restart")).toHaveLength(3);
  });

  test("a failing restart that succeeds on the next try recovers", async () => {
    const events: string[] = [];
    let starts = 0;
    const flaky: ChildSpec = {
      id: "f",
      start: () => {
        if (++starts === 2) throw new Error("once");
        return spawnLink(WORKER, { events, name: "f" });
      },
    };
    const s = sup({ intensity: 5, children: [flaky] });
    send(await pidOf(s, "f"), "crash");
    await until(() => starts === 3);
    const pid = await pidOf(s, "f");
    expect(isAlive(pid)).toBe(true);
  });
});

describe("shutdown", () => {
  test("a child that ignores shutdown is killed after its timeout", async () => {
    const events: string[] = [];
    const s = sup({ children: [worker(events, "stubborn", { trap: "ignore", shutdown: 100 })] });
    const child = await pidOf(s, "stubborn");
    const down = watch(child);
    const t0 = Date.now();
    await terminateChild(s, "stubborn");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(50);
    expect(await down).toBe("killed");
    expect(reports("child did not shut down cleanly")[0]).toMatchObject({ childId: "stubborn", reason: "killed" });
  });

  test("a trapping child that honours shutdown ends cleanly before its timeout", async () => {
    const events: string[] = [];
    const s = sup({ children: [worker(events, "polite", { trap: "honour", shutdown: 2000 })] });
    const t0 = Date.now();
    await terminateChild(s, "polite");
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(events).toEqual(["start polite", "stop polite shutdown"]);
    expect(reports("child did not shut down cleanly")).toEqual([]);
  });

  test("brutal_kill kills at once", async () => {
    const events: string[] = [];
    const s = sup({ children: [worker(events, "b", { trap: "ignore", shutdown: "brutal_kill" })] });
    const down = watch(await pidOf(s, "b"));
    await terminateChild(s, "b");
    expect(await down).toBe("killed");
    expect(reports("child did not shut down cleanly")).toEqual([]);
  });

  test("an EXIT from the parent shuts the tree down with the parent's reason", async () => {
    const events: string[] = [];
    const { parent, s } = await new Promise<{ parent: Pid; s: Pid }>((resolve) => {
      spawn(async (ctx) => {
        resolve({ parent: ctx.self, s: sup({ children: [worker(events, "a"), worker(events, "b")] }) });
        await ctx.receive();
      });
    });
    await whichChildren(s);
    expect(processInfo(s)?.links).toContain(parent);
    const down = watch(s);
    exit(parent, { shutdown: "bye" });
    expect(await down).toEqual({ shutdown: "bye" });
    expect(events.slice(2)).toEqual(["stop b shutdown", "stop a shutdown"]);
  });

  test("link: false inside a process gives the supervisor no parent", async () => {
    const events: string[] = [];
    const { parent, s } = await new Promise<{ parent: Pid; s: Pid }>((resolve) => {
      spawn(async (ctx) => {
        resolve({ parent: ctx.self, s: sup({ children: [worker(events, "a")] }, { link: false }) });
        await ctx.receive();
      });
    });
    exit(parent, "shutdown");
    await until(() => !isAlive(parent));
    await settle();
    expect(isAlive(s)).toBe(true);
  });
});

describe("nested supervisors", () => {
  test("a subtree restarts its own children, and the whole tree stops from the top", async () => {
    const events: string[] = [];
    const subSpec: SupervisorSpec = { children: [worker(events, "x"), worker(events, "y")] };
    const top = sup({
      children: [{ id: "sub", type: "supervisor", start: () => startSupervisor(subSpec) }, worker(events, "z")],
    });
    const sub = await pidOf(top, "sub");
    expect(processInfo(sub)?.links).toContain(top);
    expect(await countChildren(top)).toEqual({ specs: 2, active: 2, supervisors: 1, workers: 1 });

    send(await pidOf(sub, "x"), "crash");
    await until(() => events.filter((e) => e === "start x").length === 2);
    expect(await pidOf(top, "sub")).toBe(sub);

    events.length = 0;
    await stopSupervisor(top);
    expect(events).toEqual(["stop z shutdown", "stop y shutdown", "stop x shutdown"]);
    expect(isAlive(sub)).toBe(false);
    expect(reports("child did not shut down cleanly")).toEqual([]);
  });

  test("a subtree that exceeds its intensity is restarted by its parent", async () => {
    const events: string[] = [];
    const subSpec: SupervisorSpec = { intensity: 0, children: [worker(events, "x")] };
    const top = sup({ children: [{ id: "sub", type: "supervisor", start: () => startSupervisor(subSpec) }] });
    const sub = await pidOf(top, "sub");
    send(await pidOf(sub, "x"), "crash");
    await until(() => events.filter((e) => e === "start x").length === 2);
    const sub2 = await pidOf(top, "sub");
    expect(sub2).not.toBe(sub);
    expect(isAlive(await pidOf(sub2, "x"))).toBe(true);
    expect(reports("child terminated").map((r) => r["childId"])).toEqual(["x", "sub"]);
  });
});

describe("dynamic children", () => {
  test("startChild, terminateChild, restartChild, deleteChild, whichChildren, countChildren", async () => {
    const events: string[] = [];
    const s = sup({ children: [worker(events, "a")] });

    const b = await startChild(s, worker(events, "b"));
    expect(await whichChildren(s)).toEqual([
      { id: "a", pid: await pidOf(s, "a"), type: "worker" },
      { id: "b", pid: b, type: "worker" },
    ]);
    await expect(startChild(s, worker(events, "b"))).rejects.toMatchObject({ code: "ERR_ALREADY_STARTED", pid: b });
    await expect(restartChild(s, "b")).rejects.toMatchObject({ code: "ERR_RUNNING" });
    await expect(deleteChild(s, "b")).rejects.toMatchObject({ code: "ERR_RUNNING" });

    await terminateChild(s, "b");
    expect(isAlive(b)).toBe(false);
    await settle();
    expect((await whichChildren(s))[1]).toEqual({ id: "b", pid: undefined, type: "worker" });
    expect(await countChildren(s)).toEqual({ specs: 2, active: 1, supervisors: 0, workers: 2 });
    await expect(startChild(s, worker(events, "b"))).rejects.toMatchObject({ code: "ERR_ALREADY_PRESENT" });

    const b2 = await restartChild(s, "b");
    expect(isAlive(b2)).toBe(true);
    await terminateChild(s, "b");
    await deleteChild(s, "b");
    expect((await whichChildren(s)).map((c) => c.id)).toEqual(["a"]);

    await expect(terminateChild(s, "b")).rejects.toMatchObject({ code: "ERR_NOT_FOUND" });
    await expect(restartChild(s, "b")).rejects.toMatchObject({ code: "ERR_NOT_FOUND" });
    await expect(deleteChild(s, "b")).rejects.toMatchObject({ code: "ERR_NOT_FOUND" });
    expect(events).toEqual(["start a", "start b", "stop b shutdown", "start b", "stop b shutdown"]);
  });

  test("a dynamic child is stopped first, and a terminated temporary child is forgotten", async () => {
    const events: string[] = [];
    const s = sup({ children: [worker(events, "a")] });
    await startChild(s, worker(events, "tmp", { restart: "temporary" }));
    await terminateChild(s, "tmp");
    expect((await whichChildren(s)).map((c) => c.id)).toEqual(["a"]);
    await startChild(s, worker(events, "late"));
    await stopSupervisor(s);
    expect(events.slice(-2)).toEqual(["stop late shutdown", "stop a shutdown"]);
  });

  test("startChild rejects a spec that fails to start or is malformed, adding nothing", async () => {
    const s = sup({ children: [] });
    const broken: ChildSpec = { id: "x", start: () => { throw new Error("nope"); } };
    await expect(startChild(s, broken)).rejects.toMatchObject({ code: "ERR_START_FAILED", message: /"x" failed to start: nope/ });
    await expect(startChild(s, { id: "", start: broken.start })).rejects.toMatchObject({ code: "ERR_BADARG" });
    expect(await countChildren(s)).toEqual({ specs: 0, active: 0, supervisors: 0, workers: 0 });
  });

  test("calls keep their order", async () => {
    const events: string[] = [];
    const s = sup({ children: [] });
    const added = startChild(s, worker(events, "a"));
    const rows = whichChildren(s);
    await added;
    expect((await rows).map((r) => r.id)).toEqual(["a"]);
  });

  test("calls to a dead supervisor, a non-supervisor or an unknown name reject clearly", async () => {
    const s = sup({ children: [] });
    await stopSupervisor(s);
    await expect(whichChildren(s)).rejects.toMatchObject({ name: "CorralError", code: "ERR_NOPROC", message: /supervisor <.*> is not alive/ });
    await expect(terminateChild(s, "a")).rejects.toMatchObject({ code: "ERR_NOPROC" });
    await expect(countChildren("no_such_sup")).rejects.toMatchObject({ code: "ERR_NOPROC" });

    const plain = spawn(WORKER, { events: [], name: "plain" });
    await expect(whichChildren(plain)).rejects.toMatchObject({ code: "ERR_BADARG", message: /is not a supervisor/ });
    exit(plain, "kill");
  });

  test("a call pending when the supervisor dies rejects with its exit reason", async () => {
    const events: string[] = [];
    const s = sup({ children: [worker(events, "slow", { trap: "ignore", shutdown: "infinity" })] });
    const child = await pidOf(s, "slow");
    const pending = terminateChild(s, "slow");
    await until(() => processInfo(child)?.messageQueueLen === 0 && (processInfo(child)?.messagesHandled ?? 0) > 0);
    exit(s, "kill");
    await expect(pending).rejects.toMatchObject({ code: "ERR_NOPROC", message: /exited with reason killed before replying/ });
    exit(child, "kill"); // unlinked for its shutdown, so the kill did not reach it
  });
});
