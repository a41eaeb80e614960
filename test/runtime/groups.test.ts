import { afterEach, describe, expect, test } from "vitest";
import {
  broadcast,
  exit,
  isAlive,
  isDown,
  join,
  leave,
  members,
  monitor,
  ok,
  processCount,
  processes,
  processInfo,
  self,
  send,
  spawn,
  stop,
  whichGroups,
  type Pid,
  type ProcessBehavior,
} from "../../src/index.js";
import { captureLogs, settle, sleep, until, expectCode } from "../support/helpers.js";

// ---------------------------------------------------------------------------------------
// helpers

/** Records messages. {join: g} joins g (default pid), {leave: g} leaves it, "stop" / "crash" end it. */
type Cmd = { join: string } | { leave: string; reply: (left: boolean) => void };

function isCmd(m: unknown): m is Cmd {
  return typeof m === "object" && m !== null && ("join" in m || "leave" in m);
}

const memberBehaviour: ProcessBehavior<unknown[], unknown, unknown[]> = {
  init: (got) => got,
  handleInfo(msg, got) {
    if (msg === "stop") return stop(got);
    if (msg === "crash") throw new Error("asked to crash");
    if (isCmd(msg)) {
      if ("join" in msg) join(msg.join);
      else msg.reply(leave(msg.leave));
      return ok(got);
    }
    got.push(msg);
    return ok(got);
  },
};

function member(): { pid: Pid; got: unknown[] } {
  const got: unknown[] = [];
  return { pid: spawn(memberBehaviour, got), got };
}


afterEach(async () => {
  for (const p of processes()) exit(p, "kill");
  await until(() => processCount() === 0, 2000, "every process to end");
  expect(whichGroups()).toEqual([]);
});

// ---------------------------------------------------------------------------------------

describe("join / members / whichGroups", () => {
  test("join(group) with no pid joins the calling process", async () => {
    const m = member();
    send(m.pid, { join: "grp.self" });
    await until(() => members("grp.self").length === 1, 2000, "the process to join");
    expect(members("grp.self")).toEqual([m.pid]);
    expect(members("grp.self")[0]).toBe(m.pid);
    expect(whichGroups()).toContain("grp.self");
    expect(processInfo(m.pid)!.groups).toEqual(["grp.self"]);
  });

  test("join(group, pid) joins another process; members lists them in join order", () => {
    const [a, b, c] = [member(), member(), member()];
    join("grp.order", b.pid);
    join("grp.order", a.pid);
    join("grp.order", c.pid);
    expect(members("grp.order")).toEqual([b.pid, a.pid, c.pid]);
    // Leaving and re-joining puts a process at the end.
    expect(leave("grp.order", b.pid)).toBe(true);
    expect(members("grp.order")).toEqual([a.pid, c.pid]);
    join("grp.order", b.pid);
    expect(members("grp.order")).toEqual([a.pid, c.pid, b.pid]);
  });

  test("join outside a process without a pid throws ERR_BADARG (and so does leave)", () => {
    expectCode(() => join("grp.nobody"), "ERR_BADARG");
    expectCode(() => leave("grp.nobody"), "ERR_BADARG");
    expect(members("grp.nobody")).toEqual([]);
    expect(whichGroups()).not.toContain("grp.nobody");
  });

  test("a group name that is not a non-empty string, or a pid that is not a Pid, throws ERR_BADARG", () => {
    const m = member();
    for (const bad of ["", 7, null, {}]) {
      expectCode(() => join(bad as unknown as string, m.pid), "ERR_BADARG");
      expectCode(() => leave(bad as unknown as string, m.pid), "ERR_BADARG");
      expectCode(() => members(bad as unknown as string), "ERR_BADARG");
      expectCode(() => broadcast(bad as unknown as string, "x"), "ERR_BADARG");
    }
    for (const bad of [null, "<nonode@nohost.1>", 3, {}]) {
      expectCode(() => join("grp.badpid", bad as unknown as Pid), "ERR_BADARG");
    }
    expect(processInfo(m.pid)!.groups).toEqual([]);
    expect(members("grp.badpid")).toEqual([]);
  });

  test("joining twice is one membership", async () => {
    const m = member();
    join("grp.twice", m.pid);
    join("grp.twice", m.pid);
    send(m.pid, { join: "grp.twice" });
    await settle();
    expect(members("grp.twice")).toEqual([m.pid]);
    expect(processInfo(m.pid)!.groups).toEqual(["grp.twice"]);
    expect(broadcast("grp.twice", "once")).toBe(1);
    await until(() => m.got.length === 1, 2000, "the broadcast");
    await sleep(5);
    expect(m.got).toEqual(["once"]);
    // One leave undoes it.
    expect(leave("grp.twice", m.pid)).toBe(true);
    expect(members("grp.twice")).toEqual([]);
    expect(leave("grp.twice", m.pid)).toBe(false);
    expect(whichGroups()).not.toContain("grp.twice");
  });

  test("whichGroups lists exactly the groups with members", () => {
    const a = member();
    const b = member();
    join("grp.w1", a.pid);
    join("grp.w2", a.pid);
    join("grp.w2", b.pid);
    join("grp.w3", b.pid);
    expect([...whichGroups()].sort()).toEqual(["grp.w1", "grp.w2", "grp.w3"]);
    leave("grp.w1", a.pid);
    expect([...whichGroups()].sort()).toEqual(["grp.w2", "grp.w3"]);
    leave("grp.w2", a.pid);
    expect([...whichGroups()].sort()).toEqual(["grp.w2", "grp.w3"]);
    leave("grp.w2", b.pid);
    expect(whichGroups()).toEqual(["grp.w3"]);
    leave("grp.w3", b.pid);
    expect(whichGroups()).toEqual([]);
    expect(members("grp.w1")).toEqual([]);
  });

  test("processInfo(pid).groups lists the process's groups in join order", () => {
    const m = member();
    join("grp.i3", m.pid);
    join("grp.i1", m.pid);
    join("grp.i2", m.pid);
    expect(processInfo(m.pid)!.groups).toEqual(["grp.i3", "grp.i1", "grp.i2"]);
    leave("grp.i1", m.pid);
    expect(processInfo(m.pid)!.groups).toEqual(["grp.i3", "grp.i2"]);
    // A snapshot: changing it changes nothing.
    const info = processInfo(m.pid)!;
    (info.groups as string[]).push("grp.fake");
    expect(processInfo(m.pid)!.groups).toEqual(["grp.i3", "grp.i2"]);
    expect(members("grp.fake")).toEqual([]);
  });
});

describe("leave", () => {
  test("leave(group) inside a process removes the caller and returns true; a non-member gets false", async () => {
    const m = member();
    join("grp.l", m.pid);
    const results: boolean[] = [];
    send(m.pid, { leave: "grp.l", reply: (left: boolean) => results.push(left) });
    send(m.pid, { leave: "grp.l", reply: (left: boolean) => results.push(left) });
    send(m.pid, { leave: "grp.never", reply: (left: boolean) => results.push(left) });
    await until(() => results.length === 3, 2000, "three leaves");
    expect(results).toEqual([true, false, false]);
    expect(members("grp.l")).toEqual([]);
    expect(processInfo(m.pid)!.groups).toEqual([]);
  });

  test("leave only affects the given group and the given process", () => {
    const a = member();
    const b = member();
    join("grp.x", a.pid);
    join("grp.y", a.pid);
    join("grp.x", b.pid);
    expect(leave("grp.x", a.pid)).toBe(true);
    expect(members("grp.x")).toEqual([b.pid]);
    expect(members("grp.y")).toEqual([a.pid]);
    expect(processInfo(a.pid)!.groups).toEqual(["grp.y"]);
    expect(processInfo(b.pid)!.groups).toEqual(["grp.x"]);
  });
});

describe("broadcast", () => {
  test("every member receives the message once; the count delivered is returned", async () => {
    const ms = [member(), member(), member(), member()];
    for (const m of ms) join("grp.b", m.pid);
    const outsider = member();
    join("grp.other", outsider.pid);
    expect(broadcast("grp.b", { hello: 1 })).toBe(4);
    await until(() => ms.every((m) => m.got.length === 1), 2000, "every member to receive it");
    await sleep(5);
    for (const m of ms) expect(m.got).toEqual([{ hello: 1 }]);
    expect(outsider.got).toEqual([]);
  });

  test("broadcast with { except } skips that member and counts only the others", async () => {
    const ms = [member(), member(), member()];
    for (const m of ms) join("grp.e", m.pid);
    expect(broadcast("grp.e", "hi", { except: ms[1]!.pid })).toBe(2);
    await until(() => ms[0]!.got.length === 1 && ms[2]!.got.length === 1, 2000, "the others to receive it");
    await sleep(5);
    expect(ms[1]!.got).toEqual([]);
    // except naming a non-member skips nobody
    const outsider = member();
    expect(broadcast("grp.e", "all", { except: outsider.pid })).toBe(3);
    await until(() => ms.every((m) => m.got.includes("all")), 2000, "everyone to get 'all'");
  });

  test("a member broadcasting with except: its own pid (a chat room) does not hear itself", async () => {
    const got: Record<string, unknown[]> = { a: [], b: [], c: [] };
    let resolve!: (n: number) => void;
    const sent = new Promise<number>((r) => (resolve = r));
    const chatty: ProcessBehavior<unknown[], unknown, unknown[]> = {
      init: (g) => {
        join("grp.chat");
        return g;
      },
      handleInfo(msg, g) {
        if (msg === "speak") {
          resolve(broadcast("grp.chat", "hello from a", { except: self() }));
          return ok(g);
        }
        g.push(msg);
        return ok(g);
      },
    };
    const a = spawn(chatty, got["a"]!);
    spawn(chatty, got["b"]!);
    spawn(chatty, got["c"]!);
    await until(() => members("grp.chat").length === 3, 2000, "all three to join");
    expect(members("grp.chat")[0]).toBe(a);
    send(a, "speak");
    expect(await sent).toBe(2);
    await until(() => got["b"]!.length === 1 && got["c"]!.length === 1, 2000, "b and c to hear it");
    await sleep(5);
    expect(got["a"]).toEqual([]);
    expect(got["b"]).toEqual(["hello from a"]);
  });

  test("broadcast to an empty or unknown group delivers nothing and returns 0", () => {
    expect(broadcast("grp.empty", "x")).toBe(0);
    expect(members("grp.empty")).toEqual([]);
    const m = member();
    join("grp.emptied", m.pid);
    leave("grp.emptied", m.pid);
    expect(broadcast("grp.emptied", "x")).toBe(0);
    expect(whichGroups()).not.toContain("grp.empty");
  });

  test("broadcast preserves per-sender order to each member", async () => {
    const ms = [member(), member()];
    for (const m of ms) join("grp.seq", m.pid);
    for (let i = 0; i < 20; i++) expect(broadcast("grp.seq", i)).toBe(2);
    await until(() => ms.every((m) => m.got.length === 20), 2000, "all 20 to arrive");
    for (const m of ms) expect(m.got).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });
});

describe("groups and process lifetime", () => {
  for (const how of ["stop", "kill", "crash"] as const) {
    test(`a process that ends (${how}) leaves all its groups, before its DOWN arrives`, async () => {
      captureLogs(); // a crash logs a report
      const dying = member();
      const stays = member();
      join("grp.d1", dying.pid);
      join("grp.d2", dying.pid);
      join("grp.d1", stays.pid);
      let resolve!: (v: { membersAtDown: Pid[]; groupsAtDown: string[] }) => void;
      const atDown = new Promise<{ membersAtDown: Pid[]; groupsAtDown: string[] }>((r) => (resolve = r));
      let ready = false;
      const watcher = spawn(async (ctx) => {
        monitor(dying.pid);
        ready = true;
        await ctx.receive(isDown);
        resolve({ membersAtDown: members("grp.d1"), groupsAtDown: whichGroups() });
        await ctx.receive((m) => m === "done");
      });
      await until(() => ready, 2000, "the watcher to monitor");
      if (how === "kill") exit(dying.pid, "kill");
      else send(dying.pid, how);
      const r = await atDown;
      expect(r.membersAtDown).toEqual([stays.pid]);
      expect(r.groupsAtDown).not.toContain("grp.d2");
      expect(members("grp.d1")).toEqual([stays.pid]);
      expect(members("grp.d2")).toEqual([]);
      expect(whichGroups()).toEqual(["grp.d1"]);
      expect(broadcast("grp.d1", "x")).toBe(1);
      expect(broadcast("grp.d2", "x")).toBe(0);
      send(watcher, "done");
      await until(() => !isAlive(watcher), 2000, "the watcher to end");
    });
  }

  test("many processes in many groups: when they all end, no group is left", async () => {
    const ms = Array.from({ length: 50 }, () => member());
    ms.forEach((m, i) => {
      join(`grp.many.${i % 5}`, m.pid);
      join("grp.many.all", m.pid);
    });
    expect(members("grp.many.all")).toHaveLength(50);
    for (let k = 0; k < 5; k++) expect(members(`grp.many.${k}`)).toHaveLength(10);
    for (const m of ms.slice(0, 25)) exit(m.pid, "kill");
    await until(() => members("grp.many.all").length === 25, 2000, "half to leave");
    expect(members("grp.many.all")).toEqual(ms.slice(25).map((m) => m.pid));
    for (const m of ms.slice(25)) send(m.pid, "stop");
    await until(() => ms.every((m) => !isAlive(m.pid)), 2000, "all to end");
    expect(whichGroups()).toEqual([]);
  });
});
