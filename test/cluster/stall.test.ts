/**
 * Redis frozen with SIGSTOP (every connection stays open, nothing answers) for longer than
 * nodeTimeoutMs: a node cannot tell "the other node died" from "Redis froze". Two nodes (the
 * test process and a child) run heartbeatMs 100, nodeTimeoutMs 600. Within the bounds every
 * message sent each way during the freeze arrives exactly once and in order; past them each
 * one not delivered is counted in `dropped` and one warn line per burst says how many.
 * Every freeze is undone in a finally.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { clusterInfo, nodes, Pid, send, startCluster, type ClusterInfo } from "../../src/index.js";
import { captureLogs, type LogRecord } from "../support/helpers.js";
import { collector, ensureBuilt, isDownMsg, RUN, sleep, startNode, stopNodes, until, within, type ChildNode, type Collector } from "../support/cluster.js";
import { haveRedis, startRedis, type RedisServer } from "../support/redis.js";

const enabled = haveRedis();

const HEARTBEAT = 100;
const TIMEOUT = 600;

const range = (n: number, from = 0): number[] => Array.from({ length: n }, (_, i) => from + i);

/** The seq numbers of the { tag, seq } messages in msgs, in arrival order. */
function seqs(msgs: readonly unknown[], tag: string): number[] {
  return msgs.filter((m) => (m as { tag?: unknown } | null)?.tag === tag).map((m) => (m as { seq: number }).seq);
}

/** The cluster's drop reports among log records. */
const dropLines = (records: readonly LogRecord[]): LogRecord[] => records.filter((r) => r.level === 40 && /signals for other nodes dropped/.test(r.msg));

/** The same, from a child node's stdout (pino JSON lines). */
function childDropLines(output: string): LogRecord[] {
  const records: LogRecord[] = [];
  for (const line of output.split("\n")) {
    try {
      records.push(JSON.parse(line) as LogRecord);
    } catch {
      // not a log line, or one still being written
    }
  }
  return dropLines(records);
}

interface Pair {
  redis: RedisServer;
  b: ChildNode;
  me: string;
  logs: LogRecord[];
}

/** A fresh redis-server, the test process as one node and a child (`<tag>b-…`) as the other, once each sees the other. */
async function startPair(tag: string, opts: Record<string, number>): Promise<Pair> {
  await ensureBuilt();
  const logs = captureLogs().records;
  const redis = await startRedis();
  // one name for this process in every describe: its pids carry it
  const me = `s-${RUN}@127.0.0.1`;
  await within(startCluster({ redis: redis.url, node: me, heartbeatMs: HEARTBEAT, nodeTimeoutMs: TIMEOUT, ...opts }), 10_000, "startCluster in the test process");
  const b = await startNode({ redis: redis.url, node: `${tag}b-${RUN}@127.0.0.1`, heartbeatMs: HEARTBEAT, nodeTimeoutMs: TIMEOUT, ...opts });
  await until(() => nodes().includes(b.name) || undefined, 5_000, "the test node to see b");
  await until(async () => ((await b.call<string[]>("nodes")).includes(me) ? true : undefined), 5_000, "b to see the test node");
  return { redis, b, me, logs };
}

/** Monitors both ways (a collector here on a process at b, one at b on `here`), in place once this resolves. */
async function monitorBothWays(b: ChildNode, here: Collector, there: string): Promise<{ watcher: Collector; bWatch: string }> {
  const watcher = collector();
  await watcher.run((ctx) => {
    ctx.monitor(Pid.parse(there));
    send(Pid.parse(there), { sync: "w" });
  });
  const bWatch = await b.spawn();
  await b.call("monitor", { pid: bWatch, target: String(here.pid), sync: "bw" });
  await b.waitReceived(there, (m) => m.some((x) => (x as { sync?: string } | null)?.sync === "w"), 5_000, "the monitor from here to be in place");
  await here.waitFor((m) => (m as { sync?: string } | null)?.sync === "bw", 5_000, "the monitor from b to be in place");
  return { watcher, bWatch };
}

const info = (): ClusterInfo => clusterInfo()!;

/**
 * A pair for one describe: started before its tests, stopped after, with Redis thawed and
 * the child continued first, whatever a test left frozen.
 */
function usePair(tag: string, opts: Record<string, number>): () => Pair {
  let pair: Pair | undefined;
  beforeAll(async () => {
    pair = await startPair(tag, opts);
  }, 150_000);
  afterAll(async () => {
    pair?.redis.thaw();
    pair?.b.child.kill("SIGCONT");
    await stopNodes([pair?.b]);
  }, 30_000);
  return () => pair!;
}

describe.skipIf(!enabled)("the stall options", () => {
  test("are checked at startCluster, before anything connects", async () => {
    const at = { redis: "redis://127.0.0.1:1", node: `s-${RUN}@127.0.0.1` };
    const refused = async (opts: Record<string, unknown>) => (await startCluster({ ...at, ...opts }).catch((e: Error & { code?: string }) => e)) as Error & { code?: string };
    const low = await refused({ heartbeatMs: 100, nodeTimeoutMs: 600, stallTimeoutMs: 500 });
    expect([low.code, low.message]).toEqual(["ERR_BADARG", "startCluster: stallTimeoutMs (500) must be at least nodeTimeoutMs (600)"]);
    for (const bad of [0, -1, Number.NaN, "1000"]) {
      expect((await refused({ stallTimeoutMs: bad })).message).toMatch(/^startCluster: stallTimeoutMs must be a positive number/);
      expect((await refused({ maxBufferedBytes: bad })).message).toMatch(/^startCluster: maxBufferedBytes must be a positive number/);
    }
  });
});

describe.skipIf(!enabled)("Redis frozen for longer than nodeTimeoutMs, within the bounds", () => {
  const pair = usePair("sw", { stallTimeoutMs: 20_000 });

  test("every message sent each way during a 2.5 s freeze arrives exactly once and in order; nobody is declared down; nothing dropped", async () => {
    const { redis, b, logs } = pair();
    const me = collector();
    const atB = await b.spawn();
    const { watcher, bWatch } = await monitorBothWays(b, me, atB);
    const a0 = info();
    const b0 = await b.call<ClusterInfo>("info");
    const logsBefore = logs.length;
    const PER = 15;
    const ROUNDS = 10;
    const ALL = PER * ROUNDS;
    let during: { ms: number; stalled: boolean; bStalled: boolean; nodesHere: string[]; nodesThere: string[] };
    redis.freeze();
    const t0 = Date.now();
    try {
      // sends right at the freeze go into the stalled socket; later ones wait in the buffer
      for (let r = 0; r < ROUNDS; r++) {
        for (const seq of range(PER, r * PER)) send(Pid.parse(atB), { tag: "a", seq });
        await b.call("sendSeq", { to: String(me.pid), n: PER, tag: "b", from: r * PER });
        await sleep(250);
      }
      during = { ms: Date.now() - t0, stalled: info().stalled, bStalled: (await b.call<ClusterInfo>("info")).stalled, nodesHere: nodes(), nodesThere: await b.call<string[]>("nodes") };
    } finally {
      redis.thaw();
    }
    await until(() => seqs(me.msgs, "b").length >= ALL || undefined, 15_000, () => `b's ${ALL} messages here (have ${seqs(me.msgs, "b").length}; ${JSON.stringify(info())})`).catch(() => undefined);
    await b.waitReceived(atB, (m) => seqs(m, "a").length >= ALL, 15_000, `the ${ALL} messages at b`).catch(() => undefined);
    await sleep(500);
    const a1 = info();
    const b1 = await b.call<ClusterInfo>("info");
    const report = `here: ${seqs(me.msgs, "b").length}/${ALL} from b, dropped +${a1.dropped - a0.dropped}; b: ${seqs(await b.received(atB), "a").length}/${ALL} from here, dropped +${b1.dropped - b0.dropped}`;
    expect(seqs(me.msgs, "b"), report).toEqual(range(ALL));
    expect(seqs(await b.received(atB), "a"), report).toEqual(range(ALL));
    expect(during.ms).toBeGreaterThan(3 * TIMEOUT);
    expect(during).toMatchObject({ stalled: true, bStalled: true, nodesHere: [b.name], nodesThere: [pair().me] });
    expect([a1.dropped - a0.dropped, b1.dropped - b0.dropped, a1.buffered, b1.buffered, a1.stalled, b1.stalled]).toEqual([0, 0, 0, 0, false, false]);
    expect(watcher.msgs.filter(isDownMsg)).toEqual([]);
    expect((await b.received(bWatch)).filter(isDownMsg)).toEqual([]);
    const said = logs.slice(logsBefore);
    expect(said.filter((r) => /node down/.test(r.msg))).toEqual([]);
    expect(said.filter((r) => r.level === 40 && /has not echoed/.test(r.msg))).toHaveLength(1);
    expect(dropLines(said)).toEqual([]);
  }, 60_000);
});

describe.skipIf(!enabled)("Redis frozen with more to send than maxBuffered", () => {
  const MAX = 50;
  const pair = usePair("sm", { stallTimeoutMs: 20_000, maxBuffered: MAX });

  test("the first maxBuffered each way arrive in order; the rest are counted in dropped and one warn line each side says how many", async () => {
    const { redis, b, logs } = pair();
    const me = collector();
    const atB = await b.spawn();
    const N = MAX + 30;
    const a0 = info();
    const b0 = await b.call<ClusterInfo>("info");
    const logsBefore = logs.length;
    const outBefore = b.output().length;
    redis.freeze();
    try {
      // once both see the stall, every send waits in the buffer (none is in the socket)
      await until(() => info().stalled || undefined, 5_000, "this node to see Redis stall");
      await until(async () => ((await b.call<ClusterInfo>("info")).stalled ? true : undefined), 5_000, "b to see Redis stall");
      for (const seq of range(N)) send(Pid.parse(atB), { tag: "a", seq });
      await b.call("sendSeq", { to: String(me.pid), n: N, tag: "b" });
      expect(info().buffered).toBe(MAX);
      expect((await b.call<ClusterInfo>("info")).buffered).toBe(MAX);
      await sleep(2 * TIMEOUT);
    } finally {
      redis.thaw();
    }
    await until(() => seqs(me.msgs, "b").length >= MAX || undefined, 15_000, `b's ${MAX} messages here`);
    await b.waitReceived(atB, (m) => seqs(m, "a").length >= MAX, 15_000, `the ${MAX} messages at b`);
    await sleep(1_500);
    const delivered = { here: seqs(me.msgs, "b"), atB: seqs(await b.received(atB), "a") };
    expect(delivered).toEqual({ here: range(MAX), atB: range(MAX) });
    const dropped = { here: info().dropped - a0.dropped, b: (await b.call<ClusterInfo>("info")).dropped - b0.dropped };
    expect(dropped).toEqual({ here: N - MAX, b: N - MAX });
    expect(dropLines(logs.slice(logsBefore)).map((r) => r["dropped"])).toEqual([N - MAX]);
    expect(childDropLines(b.output().slice(outBefore)).map((r) => r["dropped"])).toEqual([N - MAX]);
    expect(nodes()).toEqual([b.name]);
  }, 60_000);
});

describe.skipIf(!enabled)("Redis frozen for longer than stallTimeoutMs", () => {
  const STALL_TIMEOUT = 1_500;
  const pair = usePair("ss", { stallTimeoutMs: STALL_TIMEOUT });

  test("the nodes give up on each other; every message not delivered is counted, one warn line per burst; then they meet again", async () => {
    const { redis, b, logs } = pair();
    const me = collector();
    const atB = await b.spawn();
    const { watcher, bWatch } = await monitorBothWays(b, me, atB);
    const a0 = info();
    const b0 = await b.call<ClusterInfo>("info");
    const logsBefore = logs.length;
    const outBefore = b.output().length;
    const N = 100;
    const lines: { here: unknown[]; b: unknown[] } = { here: [], b: [] };
    redis.freeze();
    try {
      // 40 each way at once (into the stalled socket: delivered after the thaw), 40 once the stall is seen (buffered)
      for (const seq of range(40)) send(Pid.parse(atB), { tag: "a", seq });
      await b.call("sendSeq", { to: String(me.pid), n: 40, tag: "b" });
      await until(() => info().stalled || undefined, 5_000, "this node to see Redis stall");
      await until(async () => ((await b.call<ClusterInfo>("info")).stalled ? true : undefined), 5_000, "b to see Redis stall");
      for (const seq of range(40, 40)) send(Pid.parse(atB), { tag: "a", seq });
      await b.call("sendSeq", { to: String(me.pid), n: 40, tag: "b", from: 40 });
      // past stallTimeoutMs both give up: the buffered ones are dropped in one burst
      await until(() => (nodes().length === 0 ? true : undefined), 5_000, "this node to give up on b");
      await until(async () => ((await b.call<string[]>("nodes")).length === 0 ? true : undefined), 5_000, "b to give up on this node");
      await until(() => dropLines(logs.slice(logsBefore)).length === 1 || undefined, 5_000, "the drop line here");
      await until(() => childDropLines(b.output().slice(outBefore)).length === 1 || undefined, 5_000, "the drop line at b");
      // sends to a node that is not up are dropped too, and said in the next line
      for (const seq of range(20, 80)) send(Pid.parse(atB), { tag: "a", seq });
      await b.call("sendSeq", { to: String(me.pid), n: 20, tag: "b", from: 80 });
      await until(() => dropLines(logs.slice(logsBefore)).length === 2 || undefined, 5_000, "the second drop line here");
      await until(() => childDropLines(b.output().slice(outBefore)).length === 2 || undefined, 5_000, "the second drop line at b");
      lines.here = dropLines(logs.slice(logsBefore)).map((r) => r["dropped"]);
      lines.b = childDropLines(b.output().slice(outBefore)).map((r) => r["dropped"]);
    } finally {
      redis.thaw();
    }
    await until(() => nodes().includes(b.name) || undefined, 10_000, "this node to meet b again");
    await until(async () => ((await b.call<string[]>("nodes")).includes(pair().me) ? true : undefined), 10_000, "b to meet this node again");
    await sleep(1_000);

    const got = { here: seqs(me.msgs, "b"), atB: seqs(await b.received(atB), "a") };
    const dropped = { here: info().dropped - a0.dropped, b: (await b.call<ClusterInfo>("info")).dropped - b0.dropped };
    const report = JSON.stringify({ delivered: { here: got.here.length, atB: got.atB.length }, dropped, lines });
    // what arrived is a prefix, once each, in order; everything else is counted, and the lines add up to it
    expect(got.atB, report).toEqual(range(got.atB.length));
    expect(got.here, report).toEqual(range(got.here.length));
    expect(dropped.here + got.atB.length, report).toBe(N);
    expect(dropped.b + got.here.length, report).toBe(N);
    expect(lines.here, report).toEqual([dropped.here - 20, 20]);
    expect(lines.b, report).toEqual([dropped.b - 20, 20]);
    // Erlang's view of it: the other node was lost, so monitors fired with noconnection
    expect(watcher.msgs.filter(isDownMsg).map((d) => d.reason)).toEqual(["noconnection"]);
    expect((await b.received(bWatch)).filter(isDownMsg).map((d) => (d as { reason: unknown }).reason)).toEqual(["noconnection"]);
    // both lost each other: neither ends the new meeting again
    expect(logs.slice(logsBefore).filter((r) => /had lost this one/.test(r.msg))).toEqual([]);

    // and messages flow both ways again
    send(Pid.parse(atB), "after");
    await b.call("send", { to: String(me.pid), msg: "after" });
    await me.waitFor((m) => m === "after", 5_000, "b's message after the thaw");
    await b.waitReceived(atB, (m) => m.includes("after"), 5_000, "the message after the thaw at b");
  }, 60_000);
});

describe.skipIf(!enabled)("a node's own process frozen (SIGSTOP) for longer than nodeTimeoutMs", () => {
  const pair = usePair("sp", { stallTimeoutMs: 20_000 });

  test("the other node lost it, so it ends its links and monitors to that node too (noconnection), as a disconnect does both ways; sends after are counted", async () => {
    const { b } = pair();
    const me = collector();
    const atB = await b.spawn();
    const { watcher, bWatch } = await monitorBothWays(b, me, atB);
    const a0 = info();
    b.child.kill("SIGSTOP");
    try {
      await until(() => (nodes().length === 0 ? true : undefined), 5_000, "this node to lose the frozen one");
      send(Pid.parse(atB), "while b is lost");
      expect(info().dropped - a0.dropped).toBe(1);
    } finally {
      b.child.kill("SIGCONT");
    }
    expect(watcher.msgs.filter(isDownMsg).map((d) => d.reason)).toEqual(["noconnection"]);
    // b kept this node (its own stall paused the clock) until this node told it that it had been lost
    await b.waitReceived(bWatch, (m) => m.some(isDownMsg), 5_000, "b's monitor on a pid here to fire");
    expect((await b.received(bWatch)).filter(isDownMsg).map((d) => (d as { reason: unknown }).reason)).toEqual(["noconnection"]);
    await until(() => nodes().includes(b.name) || undefined, 5_000, "this node to meet b again");
    await b.call("send", { to: String(me.pid), msg: "after" });
    await me.waitFor((m) => m === "after", 5_000, "b's message after it ran again");
  }, 60_000);
});

describe.skipIf(!enabled)("Redis frozen with more bytes to send than maxBufferedBytes", () => {
  const BYTES = 8 * 1024;
  const pair = usePair("sy", { stallTimeoutMs: 20_000, maxBufferedBytes: BYTES });

  test("what fits in the bytes arrives in order; the rest is counted, with its cause", async () => {
    const { redis, b, logs } = pair();
    const atB = await b.spawn();
    const a0 = info();
    const logsBefore = logs.length;
    const pad = "x".repeat(1000);
    let during: ClusterInfo;
    redis.freeze();
    try {
      await until(() => info().stalled || undefined, 5_000, "this node to see Redis stall");
      for (const seq of range(20)) send(Pid.parse(atB), { tag: "a", seq, pad });
      during = info();
    } finally {
      redis.thaw();
    }
    // about 1 KB each: 8 fit in 8 KiB
    expect(during.bufferedBytes).toBeLessThanOrEqual(BYTES);
    expect(during.buffered).toBeGreaterThanOrEqual(5);
    expect(during.buffered).toBeLessThan(20);
    await b.waitReceived(atB, (m) => seqs(m, "a").length >= during.buffered, 10_000, "the buffered messages at b");
    await sleep(1_500);
    expect(seqs(await b.received(atB), "a")).toEqual(range(during.buffered));
    expect(info().dropped - a0.dropped).toBe(20 - during.buffered);
    expect(info().bufferedBytes).toBe(0);
    expect(dropLines(logs.slice(logsBefore)).map((r) => [r["dropped"], r["causes"]])).toEqual([[20 - during.buffered, { "maxBufferedBytes reached": 20 - during.buffered }]]);
  }, 60_000);
});

describe.skipIf(!enabled)("a node killed (SIGKILL) while others still count it up", () => {
  const pair = usePair("sk", {});

  test("sends to it before it is declared lost reach no subscriber: each is counted, and said in one warn line", async () => {
    const { b, logs } = pair();
    const atB = await b.spawn();
    const a0 = info();
    const logsBefore = logs.length;
    await b.kill("SIGKILL");
    await sleep(50);
    expect(nodes()).toEqual([b.name]);
    for (const seq of range(10)) send(Pid.parse(atB), { tag: "a", seq });
    await until(() => (nodes().length === 0 ? true : undefined), 5_000, "this node to lose b");
    await until(() => dropLines(logs.slice(logsBefore)).length > 0 || undefined, 3_000, "the drop line");
    expect(info().dropped - a0.dropped).toBe(10);
    expect(dropLines(logs.slice(logsBefore)).map((r) => [r["dropped"], r["causes"]])).toEqual([[10, { "node not subscribed": 10 }]]);
  }, 30_000);
});
