/**
 * Cross-node messaging: this test process is one node (startCluster before any pid exists),
 * two forked processes (test/support/cluster-node.mjs, the built package) are the others; on
 * each transport: a real redis-server of this file's own, and node:cluster's IPC with the test
 * process as the primary.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  clusterInfo,
  makeRef,
  nodeName,
  nodes,
  Pid,
  Ref,
  send,
  sendAfter,
  spawn,
  startTimer,
  type ClusterInfo,
} from "../../src/index.js";
import { collector, launchNode, RUN, startTrio, stopTrio, transports, until, within, type ChildNode, type EncodedPid, type Trio } from "../support/cluster.js";

describe.each(transports())("cluster messaging over %s", (kind) => {
  let trio: Trio | undefined;
  let info: ClusterInfo;
  let ME: string;
  let before: { info: ClusterInfo | undefined; nodes: string[] };
  let b: ChildNode;
  let c: ChildNode;

  beforeAll(async () => {
    // Before startCluster: a single node, no cluster.
    before = { info: clusterInfo(), nodes: nodes() };
    trio = await startTrio("t", {}, kind);
    ({ info, me: ME, b, c } = trio);
  }, 150_000);

  afterAll(() => stopTrio(trio), 30_000);

  test("before startCluster there is no cluster: clusterInfo() undefined, nodes() empty", () => {
    expect(before.info).toBeUndefined();
    expect(before.nodes).toEqual([]);
  });

  test("startCluster names the node; pids carry the name; clusterInfo and nodes() describe the cluster", async () => {
    expect(info.node).toBe(ME);
    expect(info.transport).toBe(kind);
    expect(nodeName()).toBe(ME);
    expect(info.connected).toBe(true);
    const pid = spawn(async () => {});
    expect(String(pid).startsWith(`<${ME}.`)).toBe(true);
    expect(pid.node).toBe(ME);
    const now = clusterInfo()!;
    expect(now.node).toBe(ME);
    expect(now.connected).toBe(true);
    for (const k of ["sent", "received", "buffered", "dropped"] as const) expect(typeof now[k]).toBe("number");
    expect([...nodes()].sort()).toEqual([b.name, c.name].sort());
    expect([...now.nodes].sort()).toEqual([b.name, c.name].sort());
    await until(async () => ((await b.call<string[]>("nodes")).length === 2 ? true : undefined), 5_000, "b to see two others");
    expect([...(await b.call<string[]>("nodes"))].sort()).toEqual([ME, c.name].sort());
    const bInfo = await b.call<ClusterInfo>("info");
    expect(bInfo.node).toBe(b.name);
    expect(bInfo.connected).toBe(true);
  });

  test("a generated node name is corral-<os pid>-<hex>@<host>", async () => {
    const n = launchNode(trio!.transport.options());
    const r = await within(n.started, 15_000, "a node with a generated name to start");
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const name = String(r.info["node"]);
    expect(name).toMatch(/^corral-\d+-[0-9a-f]+@\S+$/);
    expect(name.startsWith(`corral-${n.child.pid}-`)).toBe(true);
    await until(() => nodes().includes(name) || undefined, 5_000, "the generated node to be seen");
    await n.quit();
    await until(() => !nodes().includes(name) || undefined, 5_000, "the generated node to be gone");
  });

  test("a node name held by a live node is refused: ERR_NODE_NAME_TAKEN", async () => {
    const n = launchNode(trio!.transport.options(b.name));
    const r = await within(n.started, 15_000, "the duplicate node's startCluster to settle");
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error.name).toBe("CorralError");
    expect(r.error.code).toBe("ERR_NODE_NAME_TAKEN");
    await n.kill();
    // and the original is untouched
    const pid = await b.spawn();
    send(Pid.parse(pid), "still here");
    await b.waitReceived(pid, (m) => m.includes("still here"), 5_000, "b to still receive");
  });

  test("two nodes starting at once under one new name: exactly one wins, the other gets ERR_NODE_NAME_TAKEN", async () => {
    const name = `twin-${RUN}@127.0.0.1`;
    const twins = [launchNode(trio!.transport.options(name)), launchNode(trio!.transport.options(name))];
    const results = await Promise.all(twins.map((t) => within(t.started, 15_000, "a twin's startCluster to settle")));
    const winners = results.filter((r) => r.ok);
    expect(winners, JSON.stringify(results)).toHaveLength(1);
    const loser = results.find((r) => !r.ok);
    expect(loser && !loser.ok ? loser.error.code : undefined).toBe("ERR_NODE_NAME_TAKEN");
    await Promise.all(twins.map((t) => t.quit()));
    await until(() => !nodes().includes(name) || undefined, 5_000, "the twin to be gone after stopCluster");
  });

  test("send to a pid of another node: plain data, Map, Set, Date, Error, typed arrays, pids and refs survive both ways", async () => {
    const me = collector();
    const there = await b.spawn();
    const ref = makeRef();
    const when = new Date(Date.UTC(2024, 1, 29, 12, 0, 0));
    const msg = {
      replyTo: me.pid,
      pid: me.pid,
      them: Pid.parse(there),
      ref,
      map: new Map<unknown, unknown>([
        ["k", 1],
        [2, { deep: [1, 2, 3] }],
      ]),
      set: new Set(["a", "b"]),
      when,
      err: new Error("boom"),
      bytes: new Uint8Array([1, 2, 255]),
      floats: new Float64Array([1.5, -2]),
      nested: { list: [null, true, "x", 42, 1.25], big: 10n },
      pidKeys: new Map<unknown, string>([[me.pid, "mine"]]),
      pidSet: new Set([me.pid]),
      pids: [me.pid, ref, me.pid],
    };
    send(Pid.parse(there), msg);

    // What b got: its own pid came back as its very own live Pid object; ours is remote.
    const got = (await b.waitReceived(there, (m) => m.length >= 1, 5_000, "the message at b"))[0] as Record<string, unknown>;
    expect(got["pid"]).toEqual({ $pid: String(me.pid), local: false, same: false });
    expect(got["them"]).toEqual({ $pid: there, local: true, same: true } satisfies EncodedPid);
    expect(got["ref"]).toEqual({ $ref: String(ref) });
    expect(got["map"]).toEqual(
      new Map<unknown, unknown>([
        ["k", 1],
        [2, { deep: [1, 2, 3] }],
      ]),
    );
    expect(got["set"]).toEqual(new Set(["a", "b"]));
    expect(got["when"]).toEqual(when);
    expect(got["err"]).toMatchObject({ $error: { message: "boom", isError: true } });
    expect(got["bytes"]).toEqual(new Uint8Array([1, 2, 255]));
    expect(got["floats"]).toEqual(new Float64Array([1.5, -2]));
    expect(got["nested"]).toEqual({ list: [null, true, "x", 42, 1.25], big: 10n });

    // The echo back to us: our pid is our very own live Pid object again, the ref equals ours.
    const echo = (await me.waitFor<{ echo: typeof msg; by: Pid }>((m) => typeof m === "object" && m !== null && "echo" in m, 5_000, "b's echo")).echo;
    expect(echo.pid).toBe(me.pid);
    expect(echo.replyTo).toBe(me.pid);
    expect(echo.them).toBeInstanceOf(Pid);
    expect(String(echo.them)).toBe(there);
    expect(echo.ref).toBeInstanceOf(Ref);
    expect(echo.ref.equals(ref)).toBe(true);
    expect(String(echo.ref)).toBe(String(ref));
    expect(echo.map).toBeInstanceOf(Map);
    expect(echo.map.get("k")).toBe(1);
    expect(echo.map.get(2)).toEqual({ deep: [1, 2, 3] });
    expect(echo.set).toEqual(new Set(["a", "b"]));
    expect(echo.when).toBeInstanceOf(Date);
    expect(echo.when.getTime()).toBe(when.getTime());
    expect(echo.err).toBeInstanceOf(Error);
    expect(echo.err.message).toBe("boom");
    expect(echo.bytes).toBeInstanceOf(Uint8Array);
    expect([...echo.bytes]).toEqual([1, 2, 255]);
    expect(echo.floats).toBeInstanceOf(Float64Array);
    expect([...echo.floats]).toEqual([1.5, -2]);
    expect(echo.nested).toEqual({ list: [null, true, "x", 42, 1.25], big: 10n });
    // pids as Map keys and Set members come back as our live pid: lookups by identity work
    expect(echo.pidKeys.get(me.pid)).toBe("mine");
    expect(echo.pidSet.has(me.pid)).toBe(true);
    expect(echo.pids[0]).toBe(me.pid);
    expect(echo.pids[2]).toBe(me.pid);
    expect((echo.pids[1] as Ref).equals(ref)).toBe(true);
  });

  test("a node sends us its own pids and refs: they arrive as Pid and Ref of that node", async () => {
    const me = collector();
    const there = await b.spawn();
    await b.call("send", { to: String(me.pid), msg: { from: { $pid: there }, ref: { $newRef: true }, me: { $pid: String(me.pid) } } });
    const m = await me.waitFor<{ from: Pid; ref: Ref; me: Pid }>((x) => typeof x === "object" && x !== null && "from" in x, 5_000, "b's message");
    expect(m.from).toBeInstanceOf(Pid);
    expect(m.from.node).toBe(b.name);
    expect(String(m.from)).toBe(there);
    expect(m.ref).toBeInstanceOf(Ref);
    expect(m.ref.node).toBe(b.name);
    expect(m.me).toBe(me.pid);
  });

  test("between two other nodes too (b → c), with a pid of a third node inside", async () => {
    const atC = await c.spawn();
    const atB = await b.spawn();
    const me = collector();
    await b.call("send", { to: atC, msg: { hello: "c", b: { $pid: atB }, t: { $pid: String(me.pid) }, c: { $pid: atC } } });
    const got = (await c.waitReceived(atC, (m) => m.length === 1, 5_000, "b's message at c"))[0];
    expect(got).toEqual({
      hello: "c",
      b: { $pid: atB, local: false, same: false },
      t: { $pid: String(me.pid), local: false, same: false },
      c: { $pid: atC, local: true, same: true },
    });
  });

  test("Pid.parse(String(pid)) round-trips across nodes", async () => {
    const there = await b.spawn();
    const p = Pid.parse(there);
    expect(p.node).toBe(b.name);
    expect(String(p)).toBe(there);
    expect(Pid.parse(String(p)).equals(p)).toBe(true);
    const me = collector();
    // b parses our printed pid and sends to it; the parsed pid reaches us.
    await b.call("send", { to: String(me.pid), msg: "via a parsed pid" });
    await me.waitFor((m) => m === "via a parsed pid", 5_000, "a send to a parsed pid");
    // our parse of our own printed pid is the live object
    expect(Pid.parse(String(me.pid))).toBe(me.pid);
  });

  test("10,000 messages from one sender arrive in order, both ways", async () => {
    const N = 10_000;
    const me = collector();
    const there = await b.spawn();
    const dest = Pid.parse(there);
    spawn(async () => {
      for (let i = 0; i < N; i++) send(dest, { tag: "t→b", seq: i });
    });
    await b.call("sendSeq", { to: String(me.pid), n: N, tag: "b→t" });

    await until(() => me.msgs.length >= N || undefined, 20_000, `${N} messages from b (have ${me.msgs.length})`, 20);
    const mine = me.msgs as { tag: string; seq: number }[];
    expect(mine.length).toBe(N);
    const badHere = mine.findIndex((m, i) => m.tag !== "b→t" || m.seq !== i);
    expect(badHere, `first out-of-order message here: ${JSON.stringify(mine[badHere])}`).toBe(-1);

    const got = (await b.waitReceived(there, (m) => m.length >= N, 20_000, `${N} messages from us`)) as { tag: string; seq: number }[];
    expect(got.length).toBe(N);
    const badThere = got.findIndex((m, i) => m.tag !== "t→b" || m.seq !== i);
    expect(badThere, `first out-of-order message at b: ${JSON.stringify(got[badThere])}`).toBe(-1);
  }, 60_000);

  test("two senders on one node to one receiver: each sender's order kept", async () => {
    const there = await c.spawn();
    await Promise.all([b.call("sendSeq", { to: there, n: 2000, tag: "x" }), b.call("sendSeq", { to: there, n: 2000, tag: "y" })]);
    const got = (await c.waitReceived(there, (m) => m.length >= 4000, 15_000, "4000 messages")) as { tag: string; seq: number }[];
    expect(got.length).toBe(4000);
    for (const tag of ["x", "y"]) {
      const seqs = got.filter((m) => m.tag === tag).map((m) => m.seq);
      expect(seqs).toEqual(Array.from({ length: 2000 }, (_, i) => i));
    }
  }, 30_000);

  test("local sends never touch the transport: clusterInfo().sent and received unchanged", async () => {
    const a = collector();
    // let any remote traffic from earlier tests settle
    await new Promise((r) => setTimeout(r, 200));
    const { sent, received } = clusterInfo()!;
    for (let i = 0; i < 1000; i++) send(a.pid, { i, pid: a.pid, map: new Map([[i, i]]) });
    await until(() => a.msgs.length === 1000 || undefined, 5_000, "1000 local messages");
    // Local delivery is by reference, not through serialization: the very same object.
    const obj = { same: true };
    send(a.pid, obj);
    await until(() => a.msgs.length === 1001 || undefined, 2_000, "one more local message");
    expect(a.msgs[1000]).toBe(obj);
    expect(clusterInfo()!.sent).toBe(sent);
    expect(clusterInfo()!.received).toBe(received);
  });

  test("remote sends are counted: sent here, received there", async () => {
    const there = await b.spawn();
    const bBefore = await b.call<ClusterInfo>("info");
    const sent0 = clusterInfo()!.sent;
    for (let i = 0; i < 5; i++) send(Pid.parse(there), i);
    await b.waitReceived(there, (m) => m.length === 5, 5_000, "5 messages");
    expect(clusterInfo()!.sent - sent0).toBeGreaterThanOrEqual(5);
    const bAfter = await b.call<ClusterInfo>("info");
    expect(bAfter.received - bBefore.received).toBeGreaterThanOrEqual(5);
  });

  test("a node that starts later lists the live nodes in startCluster's ClusterInfo and nodes() at once", async () => {
    const late = launchNode(trio!.transport.options(`late-${RUN}@127.0.0.1`));
    const r = await within(late.started, 15_000, "the late node to start");
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect([...(r.info["nodes"] as string[])].sort()).toEqual([ME, b.name, c.name].sort());
    expect([...(await late.call<string[]>("nodes"))].sort()).toEqual([ME, b.name, c.name].sort());
    await late.quit();
  });

  test.runIf(kind === "redis")("prefix: clusters with different prefixes on one Redis do not see each other", async () => {
    const other = launchNode(trio!.transport.options(b.name, { prefix: `other${RUN.replace(/-/g, "")}` }));
    const r = await within(other.started, 15_000, "a node of another prefix to start");
    // the name b holds in the default prefix is free in another one
    expect(r.ok, r.ok ? "" : `${r.error.code} ${r.error.message}`).toBe(true);
    expect(await other.call("nodes")).toEqual([]);
    await new Promise((res) => setTimeout(res, 300));
    expect([...nodes()].sort()).toEqual([b.name, c.name].sort());
    await other.quit();
  });

  test("startCluster after a pid exists is refused with a CorralError (pids already carry the old name)", async () => {
    const n = launchNode(trio!.transport.options(`early-${RUN}@127.0.0.1`), { spawnFirst: true });
    const r = await within(n.started, 15_000, "startCluster to settle");
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.name).toBe("CorralError");
    await n.kill();
    expect(nodes()).not.toContain(`early-${RUN}@127.0.0.1`);
  });

  test("a large message (1 MB) crosses intact", async () => {
    const there = await b.spawn();
    const big = new Uint8Array(1 << 20);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    const me = collector();
    send(Pid.parse(there), { replyTo: me.pid, big });
    const echo = await me.waitFor<{ echo: { big: Uint8Array } }>((m) => typeof m === "object" && m !== null && "echo" in m, 10_000, "the echo of 1 MB");
    expect(echo.echo.big.length).toBe(big.length);
    expect(Buffer.from(echo.echo.big).equals(Buffer.from(big))).toBe(true);
  });

  test("a message that cannot be serialized (a function inside) neither takes the node down nor disturbs later messages", async () => {
    const there = await b.spawn();
    send(Pid.parse(there), { n: 1 });
    let threw: unknown;
    try {
      send(Pid.parse(there), { n: 2, f: () => 1 });
    } catch (err) {
      threw = err;
    }
    if (threw !== undefined) expect(threw).toBeInstanceOf(Error);
    send(Pid.parse(there), { n: 3 });
    const got = await b.waitReceived(there, (m) => m.some((x) => (x as { n?: number }).n === 3), 5_000, "the message after the bad one");
    expect(got[0]).toEqual({ n: 1 });
    expect(got.filter((x) => (x as { n?: number }).n === 3)).toHaveLength(1);
    expect(clusterInfo()!.connected).toBe(true);
  });

  test("timers address remote pids too: sendAfter / startTimer here to a pid of another node", async () => {
    const there = await b.spawn();
    sendAfter(30, Pid.parse(there), { timer: "sendAfter" });
    const ref = startTimer(30, Pid.parse(there), "tick");
    const got = await b.waitReceived(there, (m) => m.length >= 2, 5_000, "both timer messages");
    expect(got).toContainEqual({ timer: "sendAfter" });
    expect(got).toContainEqual({ type: "timeout", ref: { $ref: String(ref) }, msg: "tick" });
  });

  test("timers address remote pids too: sendAfter on another node to a pid here", async () => {
    const me = collector();
    await b.call("sendAfter", { to: String(me.pid), ms: 30, msg: "from b's timer" });
    await me.waitFor((m) => m === "from b's timer", 5_000, "b's timer message here");
  });

  test("a message to a dead remote pid is dropped silently, as in Erlang", async () => {
    const there = await b.spawn();
    await b.call("stop", { pid: there });
    await until(async () => ((await b.call<boolean>("alive", { pid: there })) ? undefined : true), 5_000, "the process to end");
    expect(() => send(Pid.parse(there), "into the void")).not.toThrow();
    expect(() => send(Pid.parse(`<ghost-${RUN}@nowhere.1>`), "to an unknown node")).not.toThrow();
  });
});
