/**
 * A node killed with SIGKILL (no goodbye). Through Redis the others find out from the missing
 * heartbeats: every node here runs with heartbeatMs 100 and nodeTimeoutMs 600, so DOWN
 * noconnection must come within 600 ms + one heartbeat of the kill (plus a little scheduling
 * slack). Over IPC the primary sees the worker's exit and tells every node at once.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { isAlive, nodes, Pid, send, type DownMessage, type ExitMessage } from "../../src/index.js";
import {
  collector,
  isDownMsg,
  isExitMsg,
  joinHere,
  launchNode,
  RUN,
  sleep,
  startNode,
  startTransport,
  stopNodes,
  transports,
  until,
  within,
  type ChildNode,
  type Transport,
} from "../support/cluster.js";

const HEARTBEAT = 100;
const TIMEOUT = 600;

describe.each(transports())("a node killed with SIGKILL, over %s", (kind) => {
  let t: Transport;
  let observer: ChildNode;
  const ME = `k-${RUN}@127.0.0.1`;
  const opts = { heartbeatMs: HEARTBEAT, nodeTimeoutMs: TIMEOUT };
  /** Redis: nodeTimeoutMs + a heartbeat, and 300 ms for two busy CPUs; IPC: the primary's news, and the same slack. */
  const BOUND = kind === "redis" ? TIMEOUT + HEARTBEAT + 300 : 300;
  const node = (name: string) => t.options(name, opts);

  beforeAll(async () => {
    t = await startTransport(kind);
    await joinHere(t, ME, opts);
    observer = await startNode(node(`ko-${RUN}@127.0.0.1`));
  }, 150_000);

  afterAll(async () => {
    await stopNodes([observer]);
  }, 30_000);

  test("monitors get DOWN noconnection and links fire within the node timeout, here and on a third node", async () => {
    const victim = await startNode(node(`kv-${RUN}@127.0.0.1`));
    await until(() => nodes().includes(victim.name) || undefined, 5_000, "the victim to be seen");
    await until(async () => ((await observer.call<string[]>("nodes")).includes(victim.name) ? true : undefined), 5_000, "the observer to see the victim");
    const [p1, p2, p3, p4] = [await victim.spawn(), await victim.spawn(), await victim.spawn(), await victim.spawn()];

    // each monitor/link is followed by a message from the same process: once that has arrived,
    // the monitor/link is in place at the victim (signals between two processes keep their order)
    const synced = (p: string, sync: string) =>
      victim.waitReceived(p, (m) => m.some((x) => (x as { sync?: string } | null)?.sync === sync), 5_000, `sync ${sync}`);
    const me = collector();
    const ref = await me.run((ctx) => {
      const r = ctx.monitor(Pid.parse(p1));
      send(Pid.parse(p1), { sync: "m" });
      return r;
    });
    const linked = collector();
    const lref = await me.run((ctx) => ctx.monitor(linked.pid));
    await linked.run((ctx) => (ctx.link(Pid.parse(p2)), send(Pid.parse(p2), { sync: "l" })));
    const trapping = collector({ trap: true });
    await trapping.run((ctx) => (ctx.link(Pid.parse(p3)), send(Pid.parse(p3), { sync: "t" })));

    const oWatch = await observer.spawn();
    const oRef = await observer.call<{ $ref: string }>("monitor", { pid: oWatch, target: p4, sync: "om" });
    const oTrap = await observer.spawn({ trap: true });
    await observer.call("link", { pid: oTrap, target: p4, sync: "ol" });
    await Promise.all([synced(p1, "m"), synced(p2, "l"), synced(p3, "t"), synced(p4, "om"), synced(p4, "ol")]);

    // nothing yet, after a few heartbeats
    await sleep(3 * HEARTBEAT);
    expect(me.msgs).toHaveLength(0);
    expect(isAlive(linked.pid)).toBe(true);

    const t0 = Date.now();
    await victim.kill("SIGKILL");
    const d = await me.waitFor<DownMessage>((m) => isDownMsg(m) && m.ref.equals(ref), 5_000, "DOWN after SIGKILL");
    const elapsed = Date.now() - t0;
    expect(d.reason).toBe("noconnection");
    expect(String(d.pid)).toBe(p1);
    expect(elapsed, `DOWN came ${elapsed} ms after the SIGKILL (${kind}; nodeTimeoutMs ${TIMEOUT}, heartbeatMs ${HEARTBEAT} for Redis)`).toBeLessThanOrEqual(BOUND);

    const ld = await me.waitFor<DownMessage>((m) => isDownMsg(m) && m.ref.equals(lref), BOUND, "the linked local process to die");
    expect(ld.reason).toBe("noconnection");
    const e = await trapping.waitFor<ExitMessage>(isExitMsg, BOUND, "EXIT noconnection");
    expect(e.reason).toBe("noconnection");
    expect(String(e.from)).toBe(p3);
    expect(isAlive(trapping.pid)).toBe(true);

    // the third node saw it too, on its own clock
    const oGot = await observer.waitReceived(oWatch, (m) => m.length >= 1, BOUND + 1_000, "DOWN at the observer");
    expect(oGot[0]).toEqual({ type: "DOWN", ref: oRef, pid: { $pid: p4, local: false, same: false }, reason: "noconnection" });
    const oExit = await observer.waitReceived(oTrap, (m) => m.length >= 1, BOUND + 1_000, "EXIT at the observer");
    expect(oExit[0]).toEqual({ type: "EXIT", from: { $pid: p4, local: false, same: false }, reason: "noconnection" });

    // nodes() forgets it
    await until(() => !nodes().includes(victim.name) || undefined, 1_000, "nodes() to drop the victim");
    await until(async () => (!(await observer.call<string[]>("nodes")).includes(victim.name) ? true : undefined), 2_000, "the observer's nodes() to drop the victim");

    // exactly one DOWN per monitor
    await sleep(3 * HEARTBEAT);
    expect(me.msgs.filter((m) => isDownMsg(m) && m.ref.equals(ref))).toHaveLength(1);
    expect(await observer.received(oWatch)).toHaveLength(1);
  }, 30_000);

  test("a monitor set on a pid of the dead node afterwards gets DOWN noconnection at once", async () => {
    const victim = await startNode(node(`kv2-${RUN}@127.0.0.1`));
    const p = await victim.spawn();
    await until(() => nodes().includes(victim.name) || undefined, 5_000, "the victim to be seen");
    await victim.kill("SIGKILL");
    await until(() => !nodes().includes(victim.name) || undefined, BOUND + 1_000, "nodes() to drop the victim");
    const me = collector();
    const t0 = Date.now();
    const ref = await me.run((ctx) => ctx.monitor(Pid.parse(p)));
    const d = await me.waitFor<DownMessage>((m) => isDownMsg(m) && m.ref.equals(ref), 2_000, "DOWN for a pid of a dead node");
    expect(d.reason).toBe("noconnection");
    expect(Date.now() - t0).toBeLessThan(500);
  });

  test("a node that was down may start again under its name", async () => {
    const name = `kv3-${RUN}@127.0.0.1`;
    const first = await startNode(node(name));
    await until(() => nodes().includes(name) || undefined, 5_000, "the first incarnation to be seen");
    await first.kill("SIGKILL");
    await until(() => !nodes().includes(name) || undefined, BOUND + 1_000, "nodes() to drop it");
    // after the timeout nothing holds the name any more
    await sleep(HEARTBEAT);
    const again = await startNode(node(name));
    await until(() => nodes().includes(name) || undefined, 5_000, "the second incarnation to be seen");
    const me = collector();
    const p = await again.spawn();
    await again.call("send", { to: String(me.pid), msg: { from: { $pid: p } } });
    await me.waitFor((m) => typeof m === "object" && m !== null && "from" in m, 5_000, "a message from the second incarnation");
    await again.quit();
  }, 30_000);

  test("a pid of a node's previous incarnation does not reach a process of its new incarnation", async () => {
    const name = `kv5-${RUN}@127.0.0.1`;
    const first = await startNode(node(name));
    const old = [await first.spawn(), await first.spawn()];
    await until(() => nodes().includes(name) || undefined, 5_000, "the first incarnation to be seen");
    await first.kill("SIGKILL");
    await until(() => !nodes().includes(name) || undefined, BOUND + 1_000, "nodes() to drop it");
    await sleep(HEARTBEAT);
    const again = await startNode(node(name));
    const fresh = [await again.spawn(), await again.spawn()];
    await until(() => nodes().includes(name) || undefined, 5_000, "the second incarnation to be seen");
    // The old processes are dead: a message to one must not land in a new process that
    // happens to have the same printed id, and a monitor on one is DOWN at once.
    for (const p of old) send(Pid.parse(p), { to: "the old incarnation" });
    const me = collector();
    const refs = [];
    for (const p of old) refs.push(await me.run((ctx) => ctx.monitor(Pid.parse(p))));
    await sleep(500);
    for (const p of fresh) expect(await again.received(p), `a new process ${p} got a message meant for the old ${old.join(" ")}`).toEqual([]);
    for (const ref of refs) {
      const d = me.msgs.find((m) => isDownMsg(m) && m.ref.equals(ref)) as DownMessage | undefined;
      expect(d, `no DOWN for a monitor of an old-incarnation pid (old ${old.join(" ")}, new ${fresh.join(" ")})`).toBeDefined();
      expect(["noproc", "noconnection"]).toContain(d!.reason);
    }
    await again.quit();
  }, 30_000);

  test("a node that dies is not seen as a live node by one that starts later", async () => {
    const victim = await startNode(node(`kv4-${RUN}@127.0.0.1`));
    await until(() => nodes().includes(victim.name) || undefined, 5_000, "the victim to be seen");
    await victim.kill("SIGKILL");
    await sleep(TIMEOUT + 2 * HEARTBEAT + 300);
    const late = launchNode(node(`kl-${RUN}@127.0.0.1`));
    const r = await within(late.started, 15_000, "the late node to start");
    expect(r.ok).toBe(true);
    const seen = await late.call<string[]>("nodes");
    expect(seen).not.toContain(victim.name);
    expect(seen).toContain(ME);
    await late.quit();
  }, 30_000);
});
