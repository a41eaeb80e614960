/**
 * What only the IPC transport has: its options; a worker whose primary did not start, or
 * forks it without v8 serialization; startClusterPrimary in a worker; and a cluster of
 * workers alone, with this process as their primary without being a node (the shape of
 * `corral --workers N`). The nodes are node:cluster workers of this process
 * (test/support/cluster-node.mjs, the built package).
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { clusterInfo, CorralError, nodes, startCluster, startClusterPrimary, type ClusterOptions } from "../../src/index.js";
import { ensureBuilt, killAllNodes, launchNode, RUN, sleep, startNode, until, within, type ChildNode } from "../support/cluster.js";

async function badarg(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CorralError);
  expect((err as CorralError).code).toBe("ERR_BADARG");
  return (err as Error).message;
}

beforeAll(() => ensureBuilt(), 150_000);
afterAll(() => killAllNodes(), 30_000);

describe("startCluster({ ipc: true }): options", () => {
  test("the Redis transport's options, both transports at once, a bad ipc, an unknown option: ERR_BADARG, and nothing starts", async () => {
    expect(await badarg(startCluster({ ipc: true, heartbeatMs: 100 } as unknown as ClusterOptions))).toBe("startCluster: heartbeatMs is an option of the Redis transport, not of ipc");
    expect(await badarg(startCluster({ ipc: true, prefix: "x" } as unknown as ClusterOptions))).toBe("startCluster: prefix is an option of the Redis transport, not of ipc");
    expect(await badarg(startCluster({ ipc: true, redis: "redis://127.0.0.1:1" } as unknown as ClusterOptions))).toBe("startCluster: give redis or ipc, not both");
    expect(await badarg(startCluster({ ipc: "yes" } as unknown as ClusterOptions))).toBe('startCluster: ipc must be true, got "yes"');
    expect(await badarg(startCluster({ ipc: true, nodes: 2 } as unknown as ClusterOptions))).toBe('startCluster: unknown option "nodes"');
    expect(await badarg(startCluster({ redis: "redis://127.0.0.1:1", ipc2: true } as unknown as ClusterOptions))).toBe('startCluster: unknown option "ipc2"');
    expect(await badarg(startCluster({} as unknown as ClusterOptions))).toMatch(/^startCluster: expected \{ redis: "redis:\/\/host:port", \.\.\. \} or \{ ipc: true, \.\.\. \}/);
    expect(() => startClusterPrimary({ log: true } as never)).toThrow('startClusterPrimary: unknown option "log"');
    expect(clusterInfo()).toBeUndefined();
  });
});

describe("a worker and its primary", () => {
  // First in the file: no primary runs in this process yet.
  test("a primary that did not call startClusterPrimary: startCluster rejects with ERR_CLUSTER_CONNECT naming startClusterPrimary, within 5 s", async () => {
    const n = launchNode({ ipc: true, node: `lone-${RUN}@127.0.0.1` }, { primary: "none" });
    const t0 = Date.now();
    const r = await within(n.started, 15_000, "startCluster to settle with no primary");
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error.code).toBe("ERR_CLUSTER_CONNECT");
    expect(r.error.message).toContain("startClusterPrimary()");
    expect(Date.now() - t0).toBeLessThan(7_000);
    await n.kill();
  }, 20_000);

  test("a worker forked without v8 serialization is refused with ERR_BADARG naming startClusterPrimary", async () => {
    const n = launchNode({ ipc: true, node: `json-${RUN}@127.0.0.1` }, { primary: "json" });
    const r = await within(n.started, 15_000, "startCluster to settle over a JSON channel");
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error.code).toBe("ERR_BADARG");
    expect(r.error.message).toContain("startClusterPrimary() before cluster.fork()");
    await n.kill();
  });

  test("startClusterPrimary in a worker: ERR_BADARG", async () => {
    const n = await startNode({ ipc: true, node: `w-${RUN}@127.0.0.1` });
    const r = await n.attempt("startClusterPrimary");
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatchObject({ code: "ERR_BADARG", message: "startClusterPrimary: this process is a node:cluster worker; call it in the primary" });
    await n.quit();
  });
});

describe("workers alone: this process is their primary but no node", () => {
  let b: ChildNode;
  let c: ChildNode;

  beforeAll(async () => {
    startClusterPrimary();
    [b, c] = await Promise.all([startNode({ ipc: true, node: `ab-${RUN}@127.0.0.1` }), startNode({ ipc: true, node: `ac-${RUN}@127.0.0.1` })]);
  }, 30_000);

  afterAll(() => Promise.allSettled([b?.quit(), c?.quit()]), 30_000);

  test("the workers see each other, not this process; messages, calls, groups and global names cross between them", async () => {
    expect(clusterInfo()).toBeUndefined();
    expect(nodes()).toEqual([]);
    expect(await b.call("nodes")).toEqual([c.name]);
    expect(await c.call("nodes")).toEqual([b.name]);
    expect(await b.call("info")).toMatchObject({ node: b.name, transport: "ipc", connected: true, stalled: false, buffered: 0 });

    const atC = await c.spawn();
    await b.call("send", { to: atC, msg: { hello: "c", map: new Map([[1, new Uint8Array([7])]]) } });
    expect(await c.waitReceived(atC, (m) => m.length === 1, 5_000, "b's message at c")).toEqual([{ hello: "c", map: new Map([[1, new Uint8Array([7])]]) }]);

    const server = await c.call<string>("server");
    expect(await b.call("call", { to: server, request: "ping", ms: 3_000 })).toEqual({ echo: "ping", node: c.name, caller: null });

    const atB = await b.spawn();
    await b.call("join", { group: "alone", pid: atB });
    await c.call("join", { group: "alone", pid: atC });
    await until(async () => ((await c.call<string[]>("members", { group: "alone" })).length === 2 ? true : undefined), 3_000, "c to see both members");
    expect(await c.call("broadcast", { group: "alone", msg: "to both" })).toBe(2);
    await b.waitReceived(atB, (m) => m.includes("to both"), 3_000, "the broadcast at b");

    await b.call("registerGlobal", { name: "alone-svc", pid: atB });
    expect(await c.call("whereisGlobal", { name: "alone-svc" })).toBe(atB);
    const taken = await c.attempt("registerGlobal", { name: "alone-svc", pid: atC });
    expect(taken.ok ? undefined : taken.error.code).toBe("ERR_NAME_TAKEN");
  });

  test("a worker killed with SIGKILL: the other's monitor and link fire with noconnection at once, its names and members are gone", async () => {
    const v = await startNode({ ipc: true, node: `av-${RUN}@127.0.0.1` });
    await until(async () => ((await b.call<string[]>("nodes")).includes(v.name) ? true : undefined), 3_000, "b to see v");
    const atV = await v.spawn();
    await v.call("registerGlobal", { name: "on-v", pid: atV });
    await v.call("join", { group: "with-v", pid: atV });
    const watcher = await b.spawn({ trap: true });
    const ref = await b.call<{ $ref: string }>("monitor", { pid: watcher, target: atV, sync: "m" });
    await b.call("link", { pid: watcher, target: atV, sync: "l" });
    await v.waitReceived(atV, (m) => m.length === 2, 3_000, "both syncs at v");
    expect(await c.call("members", { group: "with-v" })).toEqual([atV]);

    const t0 = Date.now();
    await v.kill("SIGKILL");
    const got = await b.waitReceived(watcher, (m) => m.length >= 2, 3_000, "DOWN and EXIT at b");
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(got).toEqual(
      expect.arrayContaining([
        { type: "DOWN", ref, pid: { $pid: atV, local: false, same: false }, reason: "noconnection" },
        { type: "EXIT", from: { $pid: atV, local: false, same: false }, reason: "noconnection" },
      ]),
    );
    expect(await b.call("nodes")).toEqual([c.name]);
    expect(await c.call("whereisGlobal", { name: "on-v" })).toBeNull();
    expect(await c.call("members", { group: "with-v" })).toEqual([]);
    // freed in the primary's table too, not only out of sight: another node takes it
    const atC = await c.spawn();
    await c.call("registerGlobal", { name: "on-v", pid: atC });
    expect(await b.call("whereisGlobal", { name: "on-v" })).toBe(atC);
    await sleep(200);
    expect(await b.received(watcher)).toHaveLength(2);
  });

  test("stopCluster on a worker: the other sees it down at once; it joins again under its name", async () => {
    const atC = await c.spawn();
    const watcher = await b.spawn();
    await b.call("monitor", { pid: watcher, target: atC, sync: "s" });
    await c.waitReceived(atC, (m) => m.length === 1, 3_000, "the sync at c");
    await c.call("stopCluster");
    const got = await b.waitReceived(watcher, (m) => m.length >= 1, 1_000, "DOWN at b after stopCluster");
    expect(got[0]).toMatchObject({ type: "DOWN", reason: "noconnection" });
    expect(await b.call("nodes")).toEqual([]);
    // A new n: the same channel, the same name, met again.
    const again = launchNode({ ipc: true, node: c.name });
    const r = await within(again.started, 10_000, "a node under c's name to start");
    expect(r.ok).toBe(true);
    await until(async () => ((await b.call<string[]>("nodes")).includes(c.name) ? true : undefined), 3_000, "b to see c's name again");
    await again.quit();
  });
});
