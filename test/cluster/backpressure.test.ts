/**
 * A node's memory against a worker that stops reading its connection: what the writer holds
 * for it (written and not taken) is bounded by maxBufferedBytes (1 MiB here); past it the
 * writer tells the primary, which cuts the worker's node off (noconnection for every other
 * node) and kills the worker, long before the heartbeat timeout (60 s here) would. The nodes
 * are node:cluster workers of this process (test/support/cluster-node.mjs, the built package).
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startClusterPrimary } from "../../src/index.js";
import { captureLogs, type LogRecord } from "../support/helpers.js";
import { ensureBuilt, killAllNodes, RUN, startNode, until, type ChildNode } from "../support/cluster.js";

const MAX = 1024 * 1024;

beforeAll(() => ensureBuilt(), 150_000);
afterAll(() => killAllNodes(), 30_000);

describe("a worker that does not read what another node writes to it", () => {
  let b: ChildNode;
  let logs: LogRecord[];

  beforeAll(async () => {
    const captured = captureLogs();
    logs = captured.records;
    startClusterPrimary({ logger: captured.logger, heartbeatMs: 1_000, nodeTimeoutMs: 60_000, maxBufferedBytes: MAX });
    b = await startNode({ ipc: true, node: `bb-${RUN}@127.0.0.1` });
  }, 30_000);

  afterAll(() => b?.quit(), 30_000);

  test("past maxBufferedBytes it is cut off: the sender's monitor fires with noconnection, the worker is killed, the sender goes on", async () => {
    const v = await startNode({ ipc: true, node: `bv-${RUN}@127.0.0.1` });
    await until(async () => ((await b.call<string[]>("nodes")).includes(v.name) ? true : undefined), 3_000, "b to see v");
    const atV = await v.spawn();
    const watcher = await b.spawn();
    const ref = await b.call<{ $ref: string }>("monitor", { pid: watcher, target: atV, sync: "m" });
    await v.waitReceived(atV, (m) => m.length === 1, 3_000, "the sync at v");

    void v.attempt("block", { ms: 20_000 }, 25_000);
    // About 4 MB of signals for v, whose event loop no longer reads its channel.
    const t0 = Date.now();
    await b.call("sendSeq", { to: atV, n: 200_000, tag: "flood" }, 10_000);
    const got = await b.waitReceived(watcher, (m) => m.length >= 1, 10_000, "DOWN at b");
    expect(got).toEqual([{ type: "DOWN", ref, pid: { $pid: atV, local: false, same: false }, reason: "noconnection" }]);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(await v.exited).toBe("SIGKILL");
    const cut = logs.filter((r) => r.msg === "cluster primary: a worker's node is cut off and the worker killed");
    expect(cut).toHaveLength(1);
    expect(cut[0]).toMatchObject({ level: 50, node: v.name, pid: v.child.pid, by: b.name });
    expect((cut[0] as LogRecord & { why: string }).why).toMatch(new RegExp(`^\\d+ bytes written to it and not read \\(maxBufferedBytes ${MAX}\\)$`));
    expect(await b.call("nodes")).toEqual([]);
    expect(await b.call("info")).toMatchObject({ connected: true });
  }, 40_000);
});
