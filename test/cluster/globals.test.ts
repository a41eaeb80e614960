/**
 * Cluster-wide names: registerGlobal / unregisterGlobal / whereisGlobal / sendGlobal /
 * registeredGlobal, across the test process and forked nodes, on each transport: the table in
 * Redis (heartbeatMs 100, nodeTimeoutMs 600), or in the node:cluster primary (this process).
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { CorralError, exit, isAlive, Pid, registeredGlobal, registerGlobal, sendGlobal, spawn, unregisterGlobal, whereisGlobal } from "../../src/index.js";
import { collector, RUN, startNode, startTrio, stopTrio, transports, until, within, type ChildNode, type Trio } from "../support/cluster.js";

const opts = { heartbeatMs: 100, nodeTimeoutMs: 600 };

async function rejection(p: Promise<unknown>, what: string): Promise<CorralError> {
  const r = await within(
    p.then(
      () => undefined,
      (err: unknown) => err,
    ),
    5_000,
    what,
  );
  expect(r, `${what} should reject`).toBeInstanceOf(CorralError);
  return r as CorralError;
}

describe.each(transports())("global names over %s", (kind) => {
  let trio: Trio | undefined;
  let b: ChildNode;
  let c: ChildNode;

  beforeAll(async () => {
    trio = await startTrio("n", opts, kind);
    ({ b, c } = trio);
  }, 150_000);

  afterAll(() => stopTrio(trio), 30_000);

  test("a name registered on one node is found, listed and sent to from every node", async () => {
    const here = collector();
    await within(registerGlobal("svc", here.pid), 5_000, "registerGlobal");
    expect(await whereisGlobal("svc")).toBe(here.pid);
    expect(await registeredGlobal()).toContain("svc");
    expect(await b.call("whereisGlobal", { name: "svc" })).toBe(String(here.pid));
    expect(await c.call("registeredGlobal")).toContain("svc");

    await b.call("sendGlobal", { name: "svc", msg: { via: "name", from: "b" } });
    await c.call("sendGlobal", { name: "svc", msg: { via: "name", from: "c" } });
    await sendGlobal("svc", { via: "name", from: "here" });
    await until(() => here.msgs.length === 3 || undefined, 5_000, "three messages by name");
    expect(here.msgs).toEqual(expect.arrayContaining([{ via: "name", from: "b" }, { via: "name", from: "c" }, { via: "name", from: "here" }]));

    // a name held on b, seen here as b's pid
    const atB = await b.spawn();
    await b.call("registerGlobal", { name: "svc-b", pid: atB });
    const found = await whereisGlobal("svc-b");
    expect(found).toBeInstanceOf(Pid);
    expect(String(found)).toBe(atB);
    await sendGlobal("svc-b", { hello: "b", replyTo: here.pid });
    await b.waitReceived(atB, (m) => m.length === 1, 5_000, "a message by name at b");
    await here.waitFor((m) => typeof m === "object" && m !== null && "echo" in m, 5_000, "b's echo");
  });

  test("a name held by a live process anywhere is refused: ERR_NAME_TAKEN, here and there", async () => {
    const atB = await b.spawn();
    await b.call("registerGlobal", { name: "taken", pid: atB });
    const here = collector();
    const err = await rejection(registerGlobal("taken", here.pid), "registerGlobal of a taken name");
    expect(err.code).toBe("ERR_NAME_TAKEN");
    const atC = await c.spawn();
    const r = await c.attempt("registerGlobal", { name: "taken", pid: atC });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe("ERR_NAME_TAKEN");
    // the holder is unchanged
    expect(String(await whereisGlobal("taken"))).toBe(atB);
  });

  test("only one of many concurrent registrations of a name wins", async () => {
    for (let round = 0; round < 5; round++) {
      const name = `race-${round}`;
      const here = collector();
      const [atB, atC] = [await b.spawn(), await c.spawn()];
      const results = await Promise.all([
        registerGlobal(name, here.pid).then(
          () => ({ ok: true as const, who: String(here.pid) }),
          (e: CorralError) => ({ ok: false as const, code: e.code }),
        ),
        b.attempt("registerGlobal", { name, pid: atB }).then((x) => (x.ok ? { ok: true as const, who: atB } : { ok: false as const, code: x.error.code })),
        c.attempt("registerGlobal", { name, pid: atC }).then((x) => (x.ok ? { ok: true as const, who: atC } : { ok: false as const, code: x.error.code })),
      ]);
      const winners = results.filter((r) => r.ok);
      expect(winners, `round ${round}: ${JSON.stringify(results)}`).toHaveLength(1);
      for (const r of results) if (!r.ok) expect(r.code).toBe("ERR_NAME_TAKEN");
      expect(String(await whereisGlobal(name))).toBe((winners[0] as { who: string }).who);
      expect(await b.call("whereisGlobal", { name })).toBe((winners[0] as { who: string }).who);
    }
  });

  test("registerGlobal takes only a live local pid", async () => {
    const atB = await b.spawn();
    const err1 = await rejection(registerGlobal("remote-pid", Pid.parse(atB)), "registerGlobal with a remote pid");
    expect(err1.code).not.toBe("ERR_NAME_TAKEN");
    const dead = spawn(async () => {});
    await until(() => !isAlive(dead) || undefined, 2_000, "the process to end");
    await rejection(registerGlobal("dead-pid", dead), "registerGlobal with a dead pid");
    expect(await whereisGlobal("remote-pid")).toBeUndefined();
    expect(await whereisGlobal("dead-pid")).toBeUndefined();
  });

  test("unregisterGlobal releases it; sendGlobal to an unknown name rejects ERR_UNKNOWN_NAME", async () => {
    const here = collector();
    await registerGlobal("short", here.pid);
    await unregisterGlobal("short");
    expect(await whereisGlobal("short")).toBeUndefined();
    expect(await b.call("whereisGlobal", { name: "short" })).toBeNull();
    expect(await registeredGlobal()).not.toContain("short");
    const err = await rejection(sendGlobal("short", "x"), "sendGlobal to an unregistered name");
    expect(err.code).toBe("ERR_UNKNOWN_NAME");
    const r = await b.attempt("sendGlobal", { name: `never-${RUN}`, msg: "x" });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe("ERR_UNKNOWN_NAME");
    // free again for anyone
    const atC = await c.spawn();
    await c.call("registerGlobal", { name: "short", pid: atC });
    expect(String(await whereisGlobal("short"))).toBe(atC);
  });

  test("a name is released when its process ends (here, and on another node)", async () => {
    const here = collector();
    await registerGlobal("mortal-here", here.pid);
    exit(here.pid, { shutdown: "done" });
    await until(async () => ((await whereisGlobal("mortal-here")) === undefined ? true : undefined), 3_000, "the name to be released here");
    await until(async () => ((await b.call("whereisGlobal", { name: "mortal-here" })) === null ? true : undefined), 3_000, "b to see it released");
    const next = collector();
    await registerGlobal("mortal-here", next.pid);
    expect(await whereisGlobal("mortal-here")).toBe(next.pid);

    const atB = await b.spawn();
    await b.call("registerGlobal", { name: "mortal-b", pid: atB });
    expect(String(await whereisGlobal("mortal-b"))).toBe(atB);
    await b.call("crash", { pid: atB, message: "bye" });
    await until(async () => ((await whereisGlobal("mortal-b")) === undefined ? true : undefined), 3_000, "b's name to be released");
    expect(await registeredGlobal()).not.toContain("mortal-b");
    const mine = collector();
    await registerGlobal("mortal-b", mine.pid);
    expect(await whereisGlobal("mortal-b")).toBe(mine.pid);
  });

  test("a name whose local holder has ended can be taken again at once", async () => {
    const first = collector();
    await registerGlobal("at-once", first.pid);
    await first.stop();
    await until(() => !isAlive(first.pid) || undefined, 2_000, "the holder to end");
    const second = collector();
    await within(registerGlobal("at-once", second.pid), 5_000, "registerGlobal after the holder ended");
    expect(await whereisGlobal("at-once")).toBe(second.pid);
  });

  test("names are released when their node is killed (SIGKILL), within the node timeout", async () => {
    const v = await startNode(trio!.transport.options(`nv-${RUN}@127.0.0.1`, opts));
    const p1 = await v.spawn();
    const p2 = await v.spawn();
    await v.call("registerGlobal", { name: "on-victim-1", pid: p1 });
    await v.call("registerGlobal", { name: "on-victim-2", pid: p2 });
    expect(String(await whereisGlobal("on-victim-1"))).toBe(p1);
    expect(await c.call("registeredGlobal")).toEqual(expect.arrayContaining(["on-victim-1", "on-victim-2"]));
    const t0 = Date.now();
    await v.kill("SIGKILL");
    await until(async () => ((await whereisGlobal("on-victim-1")) === undefined ? true : undefined), opts.nodeTimeoutMs + opts.heartbeatMs + 1_500, "the dead node's name to be released");
    const elapsed = Date.now() - t0;
    expect(elapsed).toBeLessThan(opts.nodeTimeoutMs + opts.heartbeatMs + 1_500);
    await until(async () => ((await c.call<string[]>("registeredGlobal")).includes("on-victim-2") ? undefined : true), 2_000, "c to see the names gone");
    expect(await registeredGlobal()).not.toContain("on-victim-1");
    const err = await rejection(sendGlobal("on-victim-2", "x"), "sendGlobal to a name of a dead node");
    expect(err.code).toBe("ERR_UNKNOWN_NAME");
    const mine = collector();
    await registerGlobal("on-victim-1", mine.pid);
    expect(await whereisGlobal("on-victim-1")).toBe(mine.pid);
  }, 30_000);

  test("a name of a node that stopped gracefully is released at once", async () => {
    const v = await startNode(trio!.transport.options(`ng-${RUN}@127.0.0.1`, opts));
    const p1 = await v.spawn();
    await v.call("registerGlobal", { name: "graceful", pid: p1 });
    await v.call("stopCluster");
    await until(async () => ((await whereisGlobal("graceful")) === undefined ? true : undefined), 1_000, "the name to be released after stopCluster");
    await v.quit();
  });

  test("two names for one process are both released when it ends", async () => {
    const here = collector();
    await registerGlobal("alias-1", here.pid);
    await registerGlobal("alias-2", here.pid);
    expect(await whereisGlobal("alias-1")).toBe(here.pid);
    expect(await whereisGlobal("alias-2")).toBe(here.pid);
    await here.stop();
    await until(async () => ((await whereisGlobal("alias-1")) === undefined && (await whereisGlobal("alias-2")) === undefined ? true : undefined), 3_000, "both names to be released");
  });
});
