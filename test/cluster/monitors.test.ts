/**
 * Monitors, links and exit signals across nodes, on each transport (Redis with the default
 * heartbeat and node timeout: a graceful stopCluster must be seen at once, not after the 5 s
 * timeout; IPC, where the primary sees a worker's exit at once).
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { exit, isAlive, monitor, nodes, Pid, processInfo, Ref, send, spawn, type DownMessage, type ExitMessage, type ReceiveContext } from "../../src/index.js";
import {
  collector,
  isDownMsg,
  isExitMsg,
  joinHere,
  RUN,
  sleep,
  startNode,
  startTransport,
  stopNodes,
  transports,
  until,
  type ChildNode,
  type Collector,
  type Transport,
} from "../support/cluster.js";

/** The DOWN messages a collector got for this ref (or any). */
const downs = (c: Collector, ref?: Ref): DownMessage[] => c.msgs.filter((m): m is DownMessage => isDownMsg(m) && (ref === undefined || m.ref.equals(ref)));
const exits = (c: Collector): ExitMessage[] => c.msgs.filter(isExitMsg) as ExitMessage[];

describe.each(transports())("monitors and links across nodes over %s", (kind) => {
  let t: Transport;
  let b: ChildNode;
  const ME = `m-${RUN}@127.0.0.1`;

  beforeAll(async () => {
    t = await startTransport(kind);
    await joinHere(t, ME);
    b = await startNode(t.options(`mb-${RUN}@127.0.0.1`));
    await until(() => nodes().includes(b.name) || undefined, 5_000, "b to be seen");
  }, 150_000);

  afterAll(async () => {
    await stopNodes([b]);
  }, 30_000);

  let syncN = 0;
  /**
   * Runs fn (a monitor/link/unlink of a process on node n) inside c, which then sends { sync } to
   * that process; waits until it arrived there. Signals from one process to another keep their
   * order (as in Erlang), so the monitor/link is in place at the other end from then on.
   */
  async function localDo<T>(c: Collector, there: string, fn: (ctx: ReceiveContext, p: Pid) => T, n: ChildNode = b): Promise<T> {
    const sync = `s${++syncN}`;
    const p = Pid.parse(there);
    const out = await c.run((ctx) => {
      const r = fn(ctx, p);
      send(p, { sync });
      return r;
    });
    await n.waitReceived(there, (m) => m.some((x) => (x as { sync?: string } | null)?.sync === sync), 5_000, `the sync message ${sync}`);
    return out;
  }

  /** The same from b's side: b's process pid monitors/links our collector target. */
  async function remoteDo<T>(cmd: "monitor" | "link", pid: string, target: Collector, n: ChildNode = b): Promise<T> {
    const sync = `r${++syncN}`;
    const out = await n.call<T>(cmd, { pid, target: String(target.pid), sync });
    await target.waitFor((x) => (x as { sync?: string } | null)?.sync === sync, 5_000, `the sync message ${sync}`);
    return out;
  }

  /** Monitors a fresh process on b from a fresh collector here. */
  async function watched(): Promise<{ me: Collector; there: string; ref: Ref }> {
    const me = collector();
    const there = await b.spawn();
    const ref = await localDo(me, there, (ctx, p) => ctx.monitor(p));
    expect(ref).toBeInstanceOf(Ref);
    return { me, there, ref };
  }

  async function oneDown(me: Collector, ref: Ref, what: string): Promise<DownMessage> {
    const d = await me.waitFor<DownMessage>((m) => isDownMsg(m) && m.ref.equals(ref), 5_000, what);
    await sleep(300); // exactly one
    expect(downs(me, ref)).toHaveLength(1);
    return d;
  }

  test("monitor a remote pid that ends normally: exactly one DOWN, reason normal", async () => {
    const { me, there, ref } = await watched();
    await b.call("stop", { pid: there });
    const d = await oneDown(me, ref, "DOWN normal");
    expect(d.type).toBe("DOWN");
    expect(d.ref).toBeInstanceOf(Ref);
    expect(d.ref.equals(ref)).toBe(true);
    expect(d.pid).toBeInstanceOf(Pid);
    expect(String(d.pid)).toBe(there);
    expect(d.reason).toBe("normal");
  });

  test("monitor a remote pid that crashes: DOWN { crash: Error } with its message", async () => {
    const { me, there, ref } = await watched();
    await b.call("crash", { pid: there, message: "remote boom" });
    const d = await oneDown(me, ref, "DOWN crash");
    const reason = d.reason as { crash: Error };
    expect(reason).toHaveProperty("crash");
    expect(reason.crash).toBeInstanceOf(Error);
    expect(reason.crash.message).toBe("remote boom");
  });

  test("exit(remotePid, { shutdown: x }) ends it; the DOWN carries { shutdown: x }", async () => {
    const { me, there, ref } = await watched();
    exit(Pid.parse(there), { shutdown: { why: "test", n: 1 } });
    const d = await oneDown(me, ref, "DOWN shutdown");
    expect(d.reason).toEqual({ shutdown: { why: "test", n: 1 } });
    expect(await b.call("alive", { pid: there })).toBe(false);
  });

  test('exit(remotePid, "kill") kills even a trapping process: DOWN "killed"', async () => {
    const me = collector();
    const there = await b.spawn({ trap: true });
    const ref = await localDo(me, there, (ctx, p) => ctx.monitor(p));
    exit(Pid.parse(there), "kill");
    const d = await oneDown(me, ref, "DOWN killed");
    expect(d.reason).toBe("killed");
  });

  test('exit(remotePid, "normal") does not end a process that does not trap exits', async () => {
    const { me, there, ref } = await watched();
    exit(Pid.parse(there), "normal");
    await sleep(500);
    expect(await b.call("alive", { pid: there })).toBe(true);
    expect(downs(me, ref)).toHaveLength(0);
  });

  test("an exit signal from a process here reaches a trapping remote process as an EXIT message", async () => {
    const me = collector();
    const there = await b.spawn({ trap: true });
    await me.run((ctx) => ctx.exit(Pid.parse(there), { shutdown: "go" }));
    const got = await b.waitReceived(there, (m) => m.length >= 1, 5_000, "the EXIT message");
    expect(got[0]).toEqual({ type: "EXIT", from: { $pid: String(me.pid), local: false, same: false }, reason: { shutdown: "go" } });
    expect(await b.call("alive", { pid: there })).toBe(true);
  });

  test("messages and then an exit signal from one process reach a trapping remote process in that order", async () => {
    const me = collector();
    const there = await b.spawn({ trap: true });
    await me.run((ctx) => {
      const p = Pid.parse(there);
      for (let i = 0; i < 100; i++) send(p, { i });
      ctx.exit(p, { shutdown: "after the messages" });
    });
    const got = await b.waitReceived(there, (m) => m.length >= 101, 5_000, "100 messages and the EXIT");
    expect(got.slice(0, 100)).toEqual(Array.from({ length: 100 }, (_, i) => ({ i })));
    expect(got[100]).toEqual({ type: "EXIT", from: { $pid: String(me.pid), local: false, same: false }, reason: { shutdown: "after the messages" } });
  });

  test("monitor a dead remote pid: DOWN noproc at once", async () => {
    const there = await b.spawn();
    await b.call("stop", { pid: there });
    await until(async () => ((await b.call<boolean>("alive", { pid: there })) ? undefined : true), 5_000, "the process to end");
    const me = collector();
    const ref = await me.run((ctx) => ctx.monitor(Pid.parse(there)));
    const d = await oneDown(me, ref, "DOWN noproc");
    expect(d.reason).toBe("noproc");
    expect(String(d.pid)).toBe(there);
  });

  test("monitor a pid of an unknown node: DOWN noconnection at once", async () => {
    const me = collector();
    const ghost = Pid.parse(`<ghost-${RUN}@nowhere.7>`);
    const t0 = Date.now();
    const ref = await me.run((ctx) => ctx.monitor(ghost));
    const d = await oneDown(me, ref, "DOWN noconnection");
    expect(d.reason).toBe("noconnection");
    expect(d.pid.equals(ghost)).toBe(true);
    // "at once": well before any heartbeat timeout (5 s here); oneDown's 300 ms included
    expect(Date.now() - t0).toBeLessThan(1_300);
  });

  test("monitor(remotePid) as self() inside a spawned function, then a selective receive", async () => {
    const there = await b.spawn();
    const got: unknown[] = [];
    const pid = spawn(async (ctx) => {
      monitor(Pid.parse(there));
      send(Pid.parse(there), { sync: "fn" });
      got.push(await ctx.receive(isDownMsg, 5_000));
    });
    await b.waitReceived(there, (m) => m.length === 1, 5_000, "the sync message");
    await b.call("stop", { pid: there });
    await until(() => got.length === 1 || undefined, 5_000, "the DOWN in the receive loop");
    expect(got[0]).toMatchObject({ type: "DOWN", reason: "normal" });
    await until(() => !isAlive(pid) || undefined, 2_000, "the watcher to end");
  });

  test("demonitor(ref): no DOWN when the remote process ends afterwards", async () => {
    const { me, there, ref } = await watched();
    expect(await me.run((ctx) => ctx.demonitor(ref))).toBe(true);
    await b.call("crash", { pid: there, message: "unwatched" });
    await until(async () => ((await b.call<boolean>("alive", { pid: there })) ? undefined : true), 5_000, "the process to end");
    await sleep(500);
    expect(downs(me)).toHaveLength(0);
    expect(await me.run((ctx) => ctx.demonitor(ref))).toBe(false);
  });

  test("a remote node monitors a pid here: DOWN with our reason there", async () => {
    const mine = collector();
    const watcher = await b.spawn();
    const ref = await remoteDo<{ $ref: string }>("monitor", watcher, mine);
    expect(typeof ref.$ref).toBe("string");
    exit(mine.pid, { shutdown: "from the test" });
    const got = await b.waitReceived(watcher, (m) => m.length >= 1, 5_000, "DOWN at b");
    await sleep(300);
    const all = await b.received(watcher);
    expect(all).toHaveLength(1);
    expect(got[0]).toEqual({ type: "DOWN", ref, pid: { $pid: String(mine.pid), local: false, same: false }, reason: { shutdown: "from the test" } });
  });

  test("link here → remote: the remote crash kills the local process with the same reason", async () => {
    const local = collector();
    const watcher = collector();
    const lref = await watcher.run((ctx) => ctx.monitor(local.pid));
    const there = await b.spawn();
    await localDo(local, there, (ctx, p) => ctx.link(p));
    await b.call("crash", { pid: there, message: "linked boom" });
    const d = await watcher.waitFor<DownMessage>((m) => isDownMsg(m) && m.ref.equals(lref), 5_000, "the linked local process to die");
    expect((d.reason as { crash: Error }).crash).toBeInstanceOf(Error);
    expect((d.reason as { crash: Error }).crash.message).toBe("linked boom");
    expect(isAlive(local.pid)).toBe(false);
  });

  test("link remote → here: a local crash kills the linked remote process", async () => {
    const local = collector();
    const there = await b.spawn();
    const watcherThere = await b.spawn();
    const ref = await b.call<{ $ref: string }>("monitor", { pid: watcherThere, target: there });
    await remoteDo("link", there, local);
    local.crash("local boom");
    const got = await b.waitReceived(watcherThere, (m) => m.length >= 1, 5_000, "the linked remote process to die");
    expect(got[0]).toMatchObject({ type: "DOWN", ref, pid: { $pid: there }, reason: { crash: { $error: { message: "local boom" } } } });
    expect(await b.call("alive", { pid: there })).toBe(false);
  });

  test("processInfo lists links and monitors across nodes, and forgets them with the remote end", async () => {
    const local = collector();
    const there = await b.spawn();
    const watcherThere = await b.spawn();
    await localDo(local, there, (ctx, p) => ctx.link(p));
    const ref = await localDo(local, watcherThere, (ctx, p) => ctx.monitor(p));
    const info = processInfo(local.pid)!;
    expect(info.links.map(String)).toEqual([there]);
    expect(info.monitors).toEqual([ref]);
    await remoteDo("monitor", there, local);
    expect(processInfo(local.pid)!.monitoredBy.map(String)).toEqual([there]);
    await b.call("stop", { pid: watcherThere });
    await local.waitFor((m) => isDownMsg(m) && m.ref.equals(ref), 5_000, "the DOWN of the monitored remote process");
    expect(processInfo(local.pid)!.monitors).toEqual([]);
    expect(processInfo(local.pid)!.links.map(String)).toEqual([there]);
  });

  test("link is both ways: linked from here, a local exit kills the remote process", async () => {
    const local = collector();
    const there = await b.spawn();
    await localDo(local, there, (ctx, p) => ctx.link(p));
    exit(local.pid, { shutdown: "both ways" });
    await until(async () => ((await b.call<boolean>("alive", { pid: there })) ? undefined : true), 5_000, "the remote end of the link to die");
  });

  test("trapExit: a remote exit arrives as { type: EXIT, from, reason } and the process lives", async () => {
    const local = collector({ trap: true });
    const there = await b.spawn();
    await localDo(local, there, (ctx, p) => ctx.link(p));
    await b.call("exit", { target: there, reason: { shutdown: "trapped" } });
    const e = await local.waitFor<ExitMessage>(isExitMsg, 5_000, "the EXIT message");
    expect(e.type).toBe("EXIT");
    expect(e.from).toBeInstanceOf(Pid);
    expect(String(e.from)).toBe(there);
    expect(e.reason).toEqual({ shutdown: "trapped" });
    expect(isAlive(local.pid)).toBe(true);
  });

  test("trapExit: a linked remote process that ends normally gives EXIT normal; a non-trapping one survives it", async () => {
    const trapping = collector({ trap: true });
    const plain = collector();
    const there = await b.spawn();
    await localDo(trapping, there, (ctx, p) => ctx.link(p));
    await localDo(plain, there, (ctx, p) => ctx.link(p));
    await b.call("stop", { pid: there });
    const e = await trapping.waitFor<ExitMessage>(isExitMsg, 5_000, "EXIT normal");
    expect(e.reason).toBe("normal");
    await sleep(300);
    expect(isAlive(plain.pid)).toBe(true);
  });

  test("a remote trapping process gets EXIT from a local crash", async () => {
    const local = collector();
    const there = await b.spawn({ trap: true });
    await remoteDo("link", there, local);
    local.crash("seen as EXIT");
    const got = await b.waitReceived(there, (m) => m.length >= 1, 5_000, "the EXIT at b");
    expect(got[0]).toMatchObject({ type: "EXIT", from: { $pid: String(local.pid) }, reason: { crash: { $error: { message: "seen as EXIT" } } } });
    expect(await b.call("alive", { pid: there })).toBe(true);
  });

  test("unlink: a remote crash no longer reaches the local process", async () => {
    const local = collector();
    const there = await b.spawn();
    await localDo(local, there, (ctx, p) => ctx.link(p));
    await localDo(local, there, (ctx, p) => ctx.unlink(p));
    await b.call("crash", { pid: there, message: "unlinked" });
    await until(async () => ((await b.call<boolean>("alive", { pid: there })) ? undefined : true), 5_000, "the remote process to end");
    await sleep(300);
    expect(isAlive(local.pid)).toBe(true);
  });

  test("link to a dead remote pid: a trapping process gets EXIT noproc", async () => {
    const there = await b.spawn();
    await b.call("stop", { pid: there });
    await until(async () => ((await b.call<boolean>("alive", { pid: there })) ? undefined : true), 5_000, "the process to end");
    const local = collector({ trap: true });
    await local.run((ctx) => ctx.link(Pid.parse(there)));
    const e = await local.waitFor<ExitMessage>(isExitMsg, 5_000, "EXIT noproc");
    expect(e.reason).toBe("noproc");
    expect(String(e.from)).toBe(there);
  });

  test("link to a pid of an unknown node: a trapping process gets EXIT noconnection", async () => {
    const local = collector({ trap: true });
    const ghost = Pid.parse(`<ghost-${RUN}@nowhere.9>`);
    await local.run((ctx) => ctx.link(ghost));
    const e = await local.waitFor<ExitMessage>(isExitMsg, 2_000, "EXIT noconnection");
    expect(e.reason).toBe("noconnection");
    expect(exits(local)).toHaveLength(1);
  });

  test('a linked remote process killed with exit(pid, "kill") takes the local one down with "killed"', async () => {
    const local = collector();
    const watcher = collector();
    const lref = await watcher.run((ctx) => ctx.monitor(local.pid));
    const there = await b.spawn();
    await localDo(local, there, (ctx, p) => ctx.link(p));
    exit(Pid.parse(there), "kill");
    const d = await watcher.waitFor<DownMessage>((m) => isDownMsg(m) && m.ref.equals(lref), 5_000, "the linked local process to die");
    expect(d.reason).toBe("killed");
  });

  // Redis: with the default heartbeatMs (1000) and nodeTimeoutMs (5000); IPC: as soon as the primary sees the exit.
  const killBound = kind === "redis" ? 5_000 + 1_000 + 500 : 500;
  test(`SIGKILL: DOWN noconnection within ${killBound} ms`, async () => {
    const v = await startNode(t.options(`mv-${RUN}@127.0.0.1`));
    await until(() => nodes().includes(v.name) || undefined, 5_000, "v to be seen");
    const there = await v.spawn();
    const me = collector();
    const ref = await localDo(me, there, (ctx, p) => ctx.monitor(p), v);
    const t0 = Date.now();
    await v.kill("SIGKILL");
    const d = await me.waitFor<DownMessage>((m) => isDownMsg(m) && m.ref.equals(ref), 9_000, "DOWN after SIGKILL");
    const elapsed = Date.now() - t0;
    expect(d.reason).toBe("noconnection");
    expect(elapsed, `DOWN ${elapsed} ms after SIGKILL`).toBeLessThanOrEqual(killBound);
  }, 30_000);

  test("graceful stopCluster of a node: its pids are DOWN noconnection here at once, links fire, nodes() drops it", async () => {
    const d = await startNode(t.options(`md-${RUN}@127.0.0.1`));
    await until(() => nodes().includes(d.name) || undefined, 5_000, "d to be seen");
    const there = await d.spawn();
    const other = await d.spawn();
    const me = collector();
    const ref = await localDo(me, there, (ctx, p) => ctx.monitor(p), d);
    const linked = collector();
    const lref = await me.run((ctx) => ctx.monitor(linked.pid));
    await localDo(linked, other, (ctx, p) => ctx.link(p), d);
    const trapping = collector({ trap: true });
    await localDo(trapping, other, (ctx, p) => ctx.link(p), d);

    await d.call("stopCluster", {}, 5_000);
    const t0 = Date.now();
    const down = await me.waitFor<DownMessage>((m) => isDownMsg(m) && m.ref.equals(ref), 5_000, "DOWN after stopCluster");
    const elapsed = Date.now() - t0;
    expect(down.reason).toBe("noconnection");
    expect(String(down.pid)).toBe(there);
    // nodeTimeoutMs is 5 s here: "at once" means it did not wait for the timeout
    expect(elapsed, `DOWN came ${elapsed} ms after stopCluster resolved`).toBeLessThan(1_000);
    const ld = await me.waitFor<DownMessage>((m) => isDownMsg(m) && m.ref.equals(lref), 2_000, "the linked process to die");
    expect(ld.reason).toBe("noconnection");
    const e = await trapping.waitFor<ExitMessage>(isExitMsg, 2_000, "EXIT noconnection");
    expect(e.reason).toBe("noconnection");
    expect(String(e.from)).toBe(other);
    await until(() => !nodes().includes(d.name) || undefined, 1_000, "nodes() to drop d");
    await sleep(300);
    expect(downs(me, ref)).toHaveLength(1);
    await d.quit();
  });
});
