/**
 * A worker whose event loop is blocked over IPC: its channel stays open, so only its missing
 * heartbeat tells. The primary (this process, heartbeatMs 100, nodeTimeoutMs 1000) cuts its
 * node off (every other node sees its pids go DOWN with noconnection) and kills the worker;
 * a worker busy for less than the timeout is left alone. The nodes are node:cluster workers
 * of this process (test/support/cluster-node.mjs, the built package).
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startClusterPrimary } from "../../src/index.js";
import { ensureBuilt, killAllNodes, RUN, sleep, startNode, until, type ChildNode } from "../support/cluster.js";

const HEARTBEAT = 100;
const TIMEOUT = 1_000;

beforeAll(() => ensureBuilt(), 150_000);
afterAll(() => killAllNodes(), 30_000);

describe("a hung worker (its event loop blocked)", () => {
  let b: ChildNode;

  beforeAll(async () => {
    startClusterPrimary({ heartbeatMs: HEARTBEAT, nodeTimeoutMs: TIMEOUT });
    b = await startNode({ ipc: true, node: `hb-${RUN}@127.0.0.1` });
  }, 30_000);

  afterAll(() => b?.quit(), 30_000);

  test("startClusterPrimary's timing options are checked: ERR_BADARG", () => {
    // Started already (beforeAll): a later call checks its options, then does nothing.
    expect(() => startClusterPrimary({ heartbeatMs: 0 })).toThrow("startClusterPrimary: heartbeatMs must be a positive number, got 0");
    expect(() => startClusterPrimary({ heartbeatMs: 500, nodeTimeoutMs: 600 })).toThrow("startClusterPrimary: nodeTimeoutMs (600) must be at least twice heartbeatMs (500)");
    expect(() => startClusterPrimary({ maxBufferedBytes: -1 })).toThrow("startClusterPrimary: maxBufferedBytes must be a positive number or Infinity, got -1");
  });

  test("blocked past nodeTimeoutMs: the other node's monitor fires with noconnection within the timeout and a heartbeat, and the worker is killed", async () => {
    const v = await startNode({ ipc: true, node: `hv-${RUN}@127.0.0.1` });
    await until(async () => ((await b.call<string[]>("nodes")).includes(v.name) ? true : undefined), 3_000, "b to see v");
    const atV = await v.spawn();
    const watcher = await b.spawn();
    const ref = await b.call<{ $ref: string }>("monitor", { pid: watcher, target: atV, sync: "m" });
    await v.waitReceived(atV, (m) => m.length === 1, 3_000, "the sync at v");

    const t0 = Date.now();
    void v.attempt("block", { ms: 60_000 }, 65_000);
    const got = await b.waitReceived(watcher, (m) => m.length >= 1, TIMEOUT + 3_000, "DOWN at b");
    const took = Date.now() - t0;
    expect(got).toEqual([{ type: "DOWN", ref, pid: { $pid: atV, local: false, same: false }, reason: "noconnection" }]);
    // Its last heartbeat may have left up to one heartbeat before the block.
    expect(took).toBeGreaterThanOrEqual(TIMEOUT - HEARTBEAT - 50);
    expect(took).toBeLessThan(TIMEOUT + 2 * HEARTBEAT + 1_000);
    expect(await v.exited).toBe("SIGKILL");
    expect(await b.call("nodes")).toEqual([]);
  });

  test("the primary's own event loop held up past nodeTimeoutMs: no worker is cut off for the heartbeats it could not read", async () => {
    const v = await startNode({ ipc: true, node: `hp-${RUN}@127.0.0.1` });
    await until(async () => ((await b.call<string[]>("nodes")).includes(v.name) ? true : undefined), 3_000, "b to see v");
    const end = Date.now() + 2 * TIMEOUT;
    while (Date.now() < end);
    await sleep(3 * HEARTBEAT);
    expect(await b.call("nodes")).toEqual([v.name]);
    expect(await v.call("nodes")).toEqual([b.name]);
    expect(v.child.exitCode).toBeNull();
    expect(b.child.exitCode).toBeNull();
    await v.quit();
  });

  test("busy for less than nodeTimeoutMs: nobody is cut off, and what was sent meanwhile arrives", async () => {
    const v = await startNode({ ipc: true, node: `hw-${RUN}@127.0.0.1` });
    await until(async () => ((await b.call<string[]>("nodes")).includes(v.name) ? true : undefined), 3_000, "b to see v");
    const atV = await v.spawn();
    const blocked = v.call("block", { ms: TIMEOUT / 2 }, 5_000);
    await b.call("send", { to: atV, msg: "while busy" });
    await blocked;
    await v.waitReceived(atV, (m) => m.includes("while busy"), 3_000, "the message at v");
    await sleep(2 * TIMEOUT);
    expect(await b.call("nodes")).toEqual([v.name]);
    expect(v.child.exitCode).toBeNull();
    await v.quit();
  });
});
