/**
 * Process groups (pg) across three nodes and a late joiner: the test process and two forked
 * nodes, then a fourth that starts when the memberships already exist; on each transport.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { broadcast, join, leave, members, Pid, whichGroups } from "../../src/index.js";
import { collector, launchNode, RUN, sleep, startNode, startTrio, stopTrio, transports, until, within, type ChildNode, type Trio } from "../support/cluster.js";

const opts = { heartbeatMs: 100, nodeTimeoutMs: 600 };
const sorted = (xs: readonly unknown[]): string[] => xs.map(String).sort();

describe.each(transports())("groups across nodes over %s", (kind) => {
  let trio: Trio | undefined;
  let b: ChildNode;
  let c: ChildNode;

  beforeAll(async () => {
    trio = await startTrio("g", opts, kind);
    ({ b, c } = trio);
  }, 150_000);

  afterAll(() => stopTrio(trio), 30_000);

  /** Waits until every node lists exactly these members of group. */
  async function allSee(group: string, expected: readonly string[], extra: ChildNode[] = [], ms = 3_000): Promise<void> {
    const want = [...expected].sort();
    await until(() => (JSON.stringify(sorted(members(group))) === JSON.stringify(want) ? true : undefined), ms, `members(${group}) here to be ${want.join(" ")} (is ${sorted(members(group)).join(" ")})`);
    for (const n of [b, c, ...extra]) {
      await until(
        async () => (JSON.stringify(sorted(await n.call<string[]>("members", { group }))) === JSON.stringify(want) ? true : undefined),
        ms,
        `members(${group}) at ${n.name} to be ${want.join(" ")}`,
      );
    }
  }

  test("members lists pids of every node, on every node; whichGroups knows the group everywhere", async () => {
    const t1 = collector();
    const [b1, b2, c1] = [await b.spawn(), await b.spawn(), await c.spawn()];
    join("room", t1.pid);
    await b.call("join", { group: "room", pid: b1 });
    await b.call("join", { group: "room", pid: b2 });
    await c.call("join", { group: "room", pid: c1 });
    await allSee("room", [String(t1.pid), b1, b2, c1]);
    for (const p of members("room")) expect(p).toBeInstanceOf(Pid);
    // our own member is our very own live pid
    expect(members("room").find((p) => p.equals(t1.pid))).toBe(t1.pid);
    expect(whichGroups()).toContain("room");
    expect(await b.call("whichGroups")).toContain("room");
    expect(await c.call("whichGroups")).toContain("room");

    // broadcast from here, except one of b's: the others get it exactly once, the count is the total
    expect(broadcast("room", { hi: "all", from: t1.pid }, { except: Pid.parse(b1) })).toBe(3);
    await t1.waitFor((m) => typeof m === "object" && m !== null && (m as { hi?: string }).hi === "all", 3_000, "our member to get the broadcast");
    await b.waitReceived(b2, (m) => m.length >= 1, 3_000, "b2 to get the broadcast");
    await c.waitReceived(c1, (m) => m.length >= 1, 3_000, "c1 to get the broadcast");
    await sleep(300);
    expect(await b.received(b1)).toEqual([]);
    expect(await b.received(b2)).toEqual([{ hi: "all", from: { $pid: String(t1.pid), local: false, same: false } }]);
    expect(await c.received(c1)).toEqual([{ hi: "all", from: { $pid: String(t1.pid), local: false, same: false } }]);
    expect(t1.msgs.filter((m) => (m as { hi?: string }).hi === "all")).toHaveLength(1);

    // broadcast from b, except our (remote to b) member
    expect(await b.call("broadcast", { group: "room", msg: "from b", except: String(t1.pid) })).toBe(3);
    await b.waitReceived(b1, (m) => m.includes("from b"), 3_000, "b1 to get b's broadcast");
    await b.waitReceived(b2, (m) => m.includes("from b"), 3_000, "b2 to get b's broadcast");
    await c.waitReceived(c1, (m) => m.includes("from b"), 3_000, "c1 to get b's broadcast");
    await sleep(300);
    expect(t1.msgs).not.toContain("from b");
    expect((await c.received(c1)).filter((m) => m === "from b")).toHaveLength(1);

    // broadcast to a group nobody is in: 0
    expect(broadcast(`empty-${RUN}`, "nobody")).toBe(0);
  });

  test("a node that starts later sees the existing memberships once startCluster resolved", async () => {
    const t1 = collector();
    const b1 = await b.spawn();
    const c1 = await c.spawn();
    join("late", t1.pid);
    await b.call("join", { group: "late", pid: b1 });
    await c.call("join", { group: "late", pid: c1 });
    await allSee("late", [String(t1.pid), b1, c1]);

    const d = launchNode(trio!.transport.options(`gd-${RUN}@127.0.0.1`, opts));
    const r = await within(d.started, 15_000, "the late node to start");
    expect(r.ok).toBe(true);
    d.name = `gd-${RUN}@127.0.0.1`;
    // at once, no waiting
    expect(sorted(await d.call<string[]>("members", { group: "late" }))).toEqual([String(t1.pid), b1, c1].sort());
    expect(await d.call("whichGroups")).toContain("late");
    expect(await d.call("whichGroups")).toContain("room");

    // its broadcast reaches all three nodes
    expect(await d.call("broadcast", { group: "late", msg: "from d" })).toBe(3);
    await t1.waitFor((m) => m === "from d", 3_000, "d's broadcast here");
    await b.waitReceived(b1, (m) => m.includes("from d"), 3_000, "d's broadcast at b");
    await c.waitReceived(c1, (m) => m.includes("from d"), 3_000, "d's broadcast at c");

    // and its own members are seen by the others
    const d1 = await d.spawn();
    await d.call("join", { group: "late", pid: d1 });
    await allSee("late", [String(t1.pid), b1, c1, d1], [d]);
    expect(broadcast("late", "to four")).toBe(4);
    await d.waitReceived(d1, (m) => m.includes("to four"), 3_000, "our broadcast at d");
    await d.quit();
  }, 30_000);

  test("leave and process exit remove a member everywhere", async () => {
    const t1 = collector();
    const t2 = collector();
    const [b1, b2] = [await b.spawn(), await b.spawn()];
    const c1 = await c.spawn();
    for (const p of [t1.pid, t2.pid]) join("churn", p);
    for (const p of [b1, b2]) await b.call("join", { group: "churn", pid: p });
    await c.call("join", { group: "churn", pid: c1 });
    await allSee("churn", [String(t1.pid), String(t2.pid), b1, b2, c1]);

    expect(await b.call("leave", { group: "churn", pid: b2 })).toBe(true);
    await allSee("churn", [String(t1.pid), String(t2.pid), b1, c1]);

    expect(leave("churn", t2.pid)).toBe(true);
    await allSee("churn", [String(t1.pid), b1, c1]);

    await c.call("stop", { pid: c1 });
    await allSee("churn", [String(t1.pid), b1]);

    await t1.stop();
    await allSee("churn", [b1]);

    expect(broadcast("churn", "last one")).toBe(1);
    await b.waitReceived(b1, (m) => m.includes("last one"), 3_000, "the last member to get it");

    await b.call("crash", { pid: b1, message: "gone" });
    await allSee("churn", []);
    expect(whichGroups()).not.toContain("churn");
    expect(await c.call("whichGroups")).not.toContain("churn");
    expect(broadcast("churn", "nobody")).toBe(0);
  }, 30_000);

  test("joining twice is one membership across the cluster too", async () => {
    const b1 = await b.spawn();
    await b.call("join", { group: "twice", pid: b1 });
    await b.call("join", { group: "twice", pid: b1 });
    await allSee("twice", [b1]);
    expect(broadcast("twice", "once")).toBe(1);
    await b.waitReceived(b1, (m) => m.includes("once"), 3_000, "the message");
    await sleep(200);
    expect((await b.received(b1)).filter((m) => m === "once")).toHaveLength(1);
  });

  test("a node killed with SIGKILL: its members leave every group (as Erlang pg)", async () => {
    const t1 = collector();
    const e = await startNode(trio!.transport.options(`ge-${RUN}@127.0.0.1`, opts));
    const [e1, e2] = [await e.spawn(), await e.spawn()];
    join("mortal", t1.pid);
    await e.call("join", { group: "mortal", pid: e1 });
    await e.call("join", { group: "mortal", pid: e2 });
    await allSee("mortal", [String(t1.pid), e1, e2]);
    await e.kill("SIGKILL");
    await allSee("mortal", [String(t1.pid)], [], opts.nodeTimeoutMs + opts.heartbeatMs + 1_000);
    expect(broadcast("mortal", "alone")).toBe(1);
  }, 30_000);

  test("broadcast order: a node's broadcasts reach each member in the order sent", async () => {
    const c1 = await c.spawn();
    const b1 = await b.spawn();
    await c.call("join", { group: "ordered", pid: c1 });
    await b.call("join", { group: "ordered", pid: b1 });
    await allSee("ordered", [c1, b1]);
    for (let i = 0; i < 200; i++) expect(broadcast("ordered", { i })).toBe(2);
    const atC = await c.waitReceived(c1, (m) => m.length >= 200, 5_000, "200 broadcasts at c");
    const atB = await b.waitReceived(b1, (m) => m.length >= 200, 5_000, "200 broadcasts at b");
    expect(atC).toEqual(Array.from({ length: 200 }, (_, i) => ({ i })));
    expect(atB).toEqual(Array.from({ length: 200 }, (_, i) => ({ i })));
  });
});
