/**
 * Redis faults: unreachable at start, and killed (SIGKILL) while the cluster runs, then
 * restarted empty on the same port. This node: maxBuffered 20, heartbeatMs 200,
 * nodeTimeoutMs 5000 (the outages here are shorter than that, so no node is declared down).
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { clusterInfo, nodes, Pid, registerGlobal, send, startCluster, whereisGlobal, members, join, type ClusterInfo } from "../../src/index.js";
import { captureLogs, type LogRecord } from "../support/helpers.js";
import { collector, ensureBuilt, isDownMsg, killAllNodes, launchNode, RUN, sleep, startNode, stopNodes, until, within, type ChildNode } from "../support/cluster.js";
import { haveRedis, startRedis, stopAllRedis, type RedisServer } from "../support/redis.js";
import { freePort } from "../support/dist.js";

const enabled = haveRedis();

const MAX_BUFFERED = 20;
const opts = { heartbeatMs: 200, nodeTimeoutMs: 5_000 };

describe.skipIf(!enabled)("Redis unreachable at start", () => {
  beforeAll(async () => {
    await ensureBuilt();
  }, 150_000);

  test("startCluster rejects once with ERR_CLUSTER_CONNECT naming the URL, and leaves nothing running", async () => {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    const n = launchNode({ redis: url, node: `fu-${RUN}@127.0.0.1` }, { disconnectOnError: true });
    const t0 = Date.now();
    const r = await within(n.started, 15_000, "startCluster to settle with Redis unreachable");
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(r.error.name).toBe("CorralError");
    expect(r.error.code).toBe("ERR_CLUSTER_CONNECT");
    expect(r.error.message).toContain(url);
    // Nothing (a reconnecting client, a heartbeat timer) keeps the process alive afterwards.
    const code = await within(n.exited, 5_000, "the node process to end by itself after the failed start").catch((e: Error) => e.message);
    expect(code, n.output()).toBe(0);
  }, 30_000);
});

describe.skipIf(!enabled)("Redis lost while running", () => {
  let redis: RedisServer;
  let b: ChildNode;
  let logs: LogRecord[];
  const ME = `f-${RUN}@127.0.0.1`;
  let atB: string;

  beforeAll(async () => {
    await ensureBuilt();
    logs = captureLogs().records;
    redis = await startRedis();
    await within(startCluster({ redis: redis.url, node: ME, maxBuffered: MAX_BUFFERED, ...opts }), 10_000, "startCluster in the test process");
    b = await startNode({ redis: redis.url, node: `fb-${RUN}@127.0.0.1`, ...opts });
    await until(() => nodes().includes(b.name) || undefined, 5_000, "b to be seen");
    atB = await b.spawn();
  }, 150_000);

  afterAll(async () => {
    await stopNodes([b]);
  }, 30_000);

  async function outage(): Promise<void> {
    await redis.kill();
    await until(() => (clusterInfo()!.connected ? undefined : true), 5_000, "clusterInfo().connected to turn false");
  }

  async function recover(): Promise<void> {
    await redis.restart();
    await until(() => (clusterInfo()!.connected ? true : undefined), 10_000, "clusterInfo().connected to turn true again");
  }

  test("while Redis is down: local sends work and stay off Redis; remote sends are buffered, then delivered in order after the restart", async () => {
    const me = collector();
    const watcher = collector();
    await watcher.run((ctx) => ctx.monitor(Pid.parse(atB)));
    send(Pid.parse(atB), { phase: "before" });
    await b.waitReceived(atB, (m) => m.length === 1, 5_000, "a message before the outage");
    await b.call("clear", { pid: atB });

    await outage();
    const during: ClusterInfo = clusterInfo()!;
    expect(during.connected).toBe(false);

    // local work carries on
    for (let i = 0; i < 100; i++) send(me.pid, { local: i });
    await until(() => me.msgs.length === 100 || undefined, 1_000, "100 local messages during the outage");
    expect(clusterInfo()!.sent).toBe(during.sent);
    expect(clusterInfo()!.buffered).toBe(0);

    // remote sends are held
    for (let i = 0; i < 15; i++) send(Pid.parse(atB), { phase: "outage", seq: i });
    expect(clusterInfo()!.buffered).toBe(15);
    expect(clusterInfo()!.dropped).toBe(during.dropped);

    await sleep(300);
    await recover();
    let have: unknown[] = [];
    const got = await until(
      async () => {
        have = await b.received(atB);
        return have.length >= 15 ? have : undefined;
      },
      10_000,
      () => `the 15 buffered messages at b after the restart (have ${JSON.stringify(have)}; clusterInfo here ${JSON.stringify(clusterInfo())})`,
      20,
    );
    expect(got).toEqual(Array.from({ length: 15 }, (_, i) => ({ phase: "outage", seq: i })));
    await until(() => (clusterInfo()!.buffered === 0 ? true : undefined), 2_000, "the buffer to be empty");
    expect(clusterInfo()!.dropped).toBe(during.dropped);

    // the outage (shorter than nodeTimeoutMs) did not make anybody DOWN
    await sleep(500);
    expect(watcher.msgs.filter(isDownMsg)).toEqual([]);
    expect(nodes()).toContain(b.name);

    // and traffic flows both ways again
    await b.call("send", { to: String(me.pid), msg: "back from b" });
    await me.waitFor((m) => m === "back from b", 5_000, "a message from b after the restart");
  }, 60_000);

  test("beyond maxBuffered remote sends are dropped, counted in clusterInfo().dropped and logged", async () => {
    await b.call("clear", { pid: atB });
    const before = clusterInfo()!;
    await outage();
    const logsBefore = logs.length;
    for (let i = 0; i < MAX_BUFFERED + 10; i++) send(Pid.parse(atB), { phase: "overflow", seq: i });
    const during = clusterInfo()!;
    expect(during.buffered).toBe(MAX_BUFFERED);
    expect(during.dropped - before.dropped).toBe(10);
    // one warn line for the burst, once its window (a second) is over, with the count
    const loud = () => logs.slice(logsBefore).filter((r) => r.level >= 40 && /dropped/.test(r.msg));
    await until(() => loud().length > 0 || undefined, 3_000, () => `a warn line about the drops (have ${JSON.stringify(logs.slice(logsBefore))})`);
    expect(loud().map((r) => [r.level, r["dropped"], r["causes"]])).toEqual([[40, 10, { "maxBuffered reached": 10 }]]);

    // a full buffer for a while (still well within nodeTimeoutMs): only sends count as dropped
    await sleep(500);
    expect(clusterInfo()!.dropped - before.dropped).toBe(10);
    expect(clusterInfo()!.buffered).toBe(MAX_BUFFERED);

    await recover();
    let have: unknown[] = [];
    const got = await until(
      async () => {
        have = await b.received(atB);
        return have.length >= MAX_BUFFERED ? have : undefined;
      },
      10_000,
      () => `the ${MAX_BUFFERED} buffered messages at b (have ${JSON.stringify(have)}; clusterInfo here ${JSON.stringify(clusterInfo())})`,
      20,
    );
    await sleep(500);
    expect(await b.received(atB)).toEqual(Array.from({ length: MAX_BUFFERED }, (_, i) => ({ phase: "overflow", seq: i })));
    expect(got.length).toBe(MAX_BUFFERED);
    expect(clusterInfo()!.dropped - before.dropped, `warn/error records: ${JSON.stringify(logs.slice(logsBefore).filter((r) => r.level >= 40))}`).toBe(10);
    expect(clusterInfo()!.buffered).toBe(0);
  }, 60_000);

  test("the other node buffers too: b's sends to us during the outage arrive after the restart", async () => {
    const me = collector();
    await outage();
    await until(async () => ((await b.call<ClusterInfo>("info")).connected ? undefined : true), 5_000, "b to notice the outage");
    await b.call("sendSeq", { to: String(me.pid), n: 5, tag: "b-outage" });
    expect((await b.call<ClusterInfo>("info")).buffered).toBe(5);
    await recover();
    await until(() => me.msgs.length >= 5 || undefined, 10_000, () => `b's buffered messages here (have ${JSON.stringify(me.msgs)}; clusterInfo here ${JSON.stringify(clusterInfo())})`);
    expect(me.msgs).toEqual(Array.from({ length: 5 }, (_, i) => ({ tag: "b-outage", seq: i })));
  }, 60_000);

  test("buffered sends survive Redis restarts after outages of different lengths (no silent loss)", async () => {
    const report: string[] = [];
    for (const [round, ms] of [100, 400, 700, 1_000, 1_300, 1_600].entries()) {
      await b.call("clear", { pid: atB });
      const before = clusterInfo()!;
      await outage();
      for (let i = 0; i < 10; i++) send(Pid.parse(atB), { round, i });
      await sleep(ms);
      await recover();
      let have: unknown[] = [];
      await until(
        async () => {
          have = await b.received(atB);
          return have.length >= 10 ? true : undefined;
        },
        5_000,
        () => "",
        20,
      ).catch(() => undefined);
      const info = clusterInfo()!;
      report.push(`outage ${ms} ms: ${have.length}/10 delivered (sent +${info.sent - before.sent}, dropped +${info.dropped - before.dropped}, buffered ${info.buffered})`);
    }
    expect(report.filter((line) => !line.includes(" 10/10 ")), report.join("\n")).toEqual([]);
  }, 90_000);

  test("after Redis restarts empty, the cluster's state comes back: nodes, global names, group members", async () => {
    const mine = collector();
    await registerGlobal("keeps", mine.pid);
    join("keeps", mine.pid);
    const there = await b.spawn();
    await b.call("registerGlobal", { name: "keeps-b", pid: there });
    await b.call("join", { group: "keeps", pid: there });
    await until(() => (members("keeps").length === 2 ? true : undefined), 3_000, "both members");

    await outage();
    await sleep(300);
    await recover();

    await until(() => (nodes().includes(b.name) ? true : undefined), 5_000, "nodes() to list b again");
    await until(async () => (String(await whereisGlobal("keeps-b")) === there ? true : undefined), 5_000, "b's global name to be known again");
    expect(await whereisGlobal("keeps")).toBe(mine.pid);
    await until(async () => (String(await b.call("whereisGlobal", { name: "keeps" })) === String(mine.pid) ? true : undefined), 5_000, "b to find our name");
    expect(members("keeps").map(String).sort()).toEqual([String(mine.pid), there].sort());
    // a node that starts now sees all of it
    const late = await startNode({ redis: redis.url, node: `fl-${RUN}@127.0.0.1`, ...opts });
    expect((await late.call<string[]>("members", { group: "keeps" })).sort()).toEqual([String(mine.pid), there].sort());
    expect(await late.call("whereisGlobal", { name: "keeps-b" })).toBe(there);
    await late.quit();
  }, 60_000);
});

describe.skipIf(!enabled)("Redis away for longer than nodeTimeoutMs", () => {
  let redis: RedisServer;
  let b: ChildNode;
  // timeouts short enough for a quick test, long enough that a loaded machine's pauses do not cut nodes off
  const fast = { heartbeatMs: 200, nodeTimeoutMs: 1_200 };

  beforeAll(async () => {
    await ensureBuilt();
    redis = await startRedis();
  }, 150_000);

  afterAll(async () => {
    await Promise.allSettled([b?.quit()]);
    await killAllNodes();
    await stopAllRedis();
  }, 30_000);

  test("after a long outage the nodes find each other again and messages flow both ways", async () => {
    // this describe runs in the same test process as the one above, whose cluster is stopped:
    // the test talks to two child nodes here
    b = await startNode({ redis: redis.url, node: `lb-${RUN}@127.0.0.1`, ...fast });
    const c = await startNode({ redis: redis.url, node: `lc-${RUN}@127.0.0.1`, ...fast });
    await until(async () => ((await b.call<string[]>("nodes")).includes(c.name) ? true : undefined), 5_000, "b to see c");
    await redis.kill();
    await until(async () => ((await b.call<ClusterInfo>("info")).connected ? undefined : true), 5_000, "b to notice the outage");
    await sleep(fast.nodeTimeoutMs + 500);
    await redis.restart();
    await until(async () => ((await b.call<string[]>("nodes")).includes(c.name) ? true : undefined), 10_000, "b to see c again after the restart");
    await until(async () => ((await c.call<string[]>("nodes")).includes(b.name) ? true : undefined), 10_000, "c to see b again after the restart");
    const atB = await b.spawn();
    const atC = await c.spawn();
    await b.call("send", { to: atC, msg: "b to c" });
    await c.call("send", { to: atB, msg: "c to b" });
    await c.waitReceived(atC, (m) => m.includes("b to c"), 5_000, "b's message at c");
    await b.waitReceived(atB, (m) => m.includes("c to b"), 5_000, "c's message at b");
    await c.quit();
  }, 60_000);
});
