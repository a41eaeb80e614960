/**
 * A message that cannot cross to another node: send to a remote pid throws a CorralError
 * ERR_BADARG at the call, naming what could not cross and where, instead of the cluster
 * dropping it later. This test process is one node, a forked process (the built package) the
 * other, on each transport.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { clusterInfo, CorralError, nodes, Pid, send } from "../../src/index.js";
import { joinHere, RUN, startNode, startTransport, stopNodes, transports, until, type ChildNode } from "../support/cluster.js";

function tick(): number {
  return 1;
}

class Point {
  constructor(
    readonly x: number,
    readonly y: number,
  ) {}
}

describe.each(transports())("send to another node's pid over %s: what cannot cross fails at the call", (kind) => {
  let b: ChildNode;

  beforeAll(async () => {
    const t = await startTransport(kind);
    await joinHere(t, `port-${RUN}@127.0.0.1`);
    b = await startNode(t.options(`portb-${RUN}@127.0.0.1`));
    await until(() => nodes().includes(b.name) || undefined, 5_000, "the test node to see b");
  }, 150_000);

  afterAll(() => stopNodes([b]), 30_000);

  test.each<[string, unknown, string]>([
    ["a function", tick, "msg is a function (tick)"],
    ["a symbol", Symbol("tag"), "msg is a symbol (Symbol(tag))"],
    ["a function deep inside", { a: [1, { f: tick }] }, "msg.a[1].f is a function (tick)"],
    ["a function in a Map", new Map([["k", tick]]), 'msg.get("k") is a function (tick)'],
    ["a Promise", { pending: Promise.resolve(1) }, "msg.pending is a Promise"],
    ["a WeakMap", [new WeakMap()], "msg[0] is a WeakMap"],
    ["an Error whose cause is a function", { err: new Error("x", { cause: tick }) }, "msg.err.cause is a function (tick)"],
    ["a Blob (a host object)", { file: new Blob(["x"]) }, "msg.file is a Blob"],
    ["a Proxy", { p: new Proxy({ a: 1 }, {}) }, "msg.p is a Proxy"],
  ])("%s: ERR_BADARG naming it; nothing dropped; the next message arrives", async (_what, msg, names) => {
    const there = await b.spawn();
    const pid = Pid.parse(there);
    const dropped = clusterInfo()!.dropped;
    let thrown: unknown;
    try {
      send(pid, msg);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(CorralError);
    expect((thrown as CorralError).code).toBe("ERR_BADARG");
    expect((thrown as CorralError).message).toContain(`send to ${there}: ${names}, which cannot cross to another node`);
    send(pid, { n: 1 });
    const got = await b.waitReceived(there, (m) => m.length > 0, 5_000, "the message after the refused one");
    expect(got).toEqual([{ n: 1 }]);
    expect(clusterInfo()!.dropped).toBe(dropped);
  });

  test("what v8 can serialize still crosses: an Error, a class instance (as plain data), a Date", async () => {
    const there = await b.spawn();
    send(Pid.parse(there), { err: new Error("fine"), point: new Point(1, 2), at: new Date(0) });
    const [got] = (await b.waitReceived(there, (m) => m.length > 0, 5_000, "the message")) as [{ err: { $error: { message: string } }; point: unknown; at: Date }];
    expect(got.err.$error.message).toBe("fine");
    expect(got.point).toEqual({ x: 1, y: 2 });
    expect(got.at.getTime()).toBe(0);
  });
});
