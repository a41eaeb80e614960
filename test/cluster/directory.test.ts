/**
 * The session directory (docs/sessions.md, Clusters): every node's is in the cluster-wide
 * group as soon as its cluster runs, before any bullet request; it comes back when killed and
 * when the cluster stops and starts again; a relay whose owner's directory ended before
 * answering gets 503, not 404. This test process (A) and a child node (B), over Redis and IPC.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { bullet, exit, members, nodeName, stopCluster, type Pid } from "../../src/index.js";
import { testServer, type TestServer } from "../../src/testing.js";
import { newLog, sessionApp, type SessionLog } from "../support/session-app.js";
import { joinHere, RUN, sleep, startNode, startTransport, stopNodes, transports, until, type ChildNode, type Transport } from "../support/cluster.js";

const DIRECTORIES = "corral.bullet.directories";
const HEARTBEAT = 250;
const WINDOW = 5000;
const ROUTE = { heartbeatMs: HEARTBEAT, resumeWindowMs: WINDOW };
/** Long enough for B to be blocked a moment without being declared lost. */
const TIMING = { heartbeatMs: 100, nodeTimeoutMs: 3000 };

type Packet = [string, ...unknown[]];

/** A session's first poll at port: its id, from the hello packet. */
async function openSession(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/d?t=poll`);
  expect(res.status).toBe(200);
  const hello = ((await res.json()) as Packet[])[0]!;
  expect(hello[0]).toBe("hello");
  return hello[1] as string;
}

/** A resume by poll at port: its status and, when 200, its packets. */
async function resume(port: number, sid: string): Promise<{ status: number; packets: Packet[] | null }> {
  const res = await fetch(`http://127.0.0.1:${port}/d?t=poll&sid=${encodeURIComponent(sid)}&ack=0&hello=1`);
  if (res.status !== 200) {
    await res.body?.cancel();
    return { status: res.status, packets: null };
  }
  return { status: 200, packets: (await res.json()) as Packet[] };
}

/** The client closes its session, at whichever node. */
async function closeSession(port: number, sid: string): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${port}/d?sid=${encodeURIComponent(sid)}`, { method: "POST", body: '[["c",1000,""]]' });
  await res.body?.cancel();
}

describe.each(transports())("the session directory, over %s", (kind) => {
  let t: Transport;
  let b: ChildNode | undefined;
  let server: TestServer;
  let log: SessionLog;
  let portB: number;
  const here = `da-${RUN}@127.0.0.1`;

  const mine = (): Pid[] => members(DIRECTORIES).filter((p) => p.node === nodeName());
  const bs = (): Pid[] => members(DIRECTORIES).filter((p) => p.node === b!.name);
  /** B's view of the group, as B prints its pids. */
  const onB = (): Promise<string[]> => b!.call<string[]>("members", { group: DIRECTORIES });

  beforeAll(async () => {
    t = await startTransport(kind);
    await joinHere(t, here, TIMING);
    log = newLog();
    // The route is compiled and served, and asked nothing before the first test looks.
    server = await testServer([["/d", bullet(sessionApp(log), ROUTE)]], { shutdownTimeout: 100 });
    b = await startNode(t.options(`db-${RUN}-${kind}@127.0.0.1`, TIMING));
    portB = await b.call<number>("serveBullet", { path: "/d", options: ROUTE });
  }, 150_000);

  afterAll(async () => {
    await server?.stop();
    await stopNodes([b]);
  }, 30_000);

  test("each node's directory is in the group once its cluster runs, before any bullet request; the first resume of a session opened here lands on B and is served", async () => {
    // B started after this node: its startCluster resolved once this node had told it its members.
    expect((await onB()).length).toBe(2);
    expect(mine()).toHaveLength(1);
    expect(bs()).toHaveLength(1);
    const sid = await openSession(server.port);
    const r = await resume(portB, sid);
    expect(r.status).toBe(200);
    expect(r.packets![0]).toEqual(["hello", sid, 0, HEARTBEAT, WINDOW]);
    await closeSession(portB, sid);
  });

  test("the directory killed: a new one takes its place on every node, this node's sessions carry on, B reaches them through it", async () => {
    const sid = await openSession(server.port);
    const terminates = log.terminates.length;
    const [old] = mine();
    const oldOnB = await onB();
    exit(old!, "kill");
    await until(() => (mine().length === 1 && !mine()[0]!.equals(old!)) || undefined, 2000, "a new directory here");
    const now = mine()[0]!;
    await until(async () => {
      const list = await onB();
      return (list.length === 2 && list.filter((p) => oldOnB.includes(p)).length === 1) || undefined;
    }, 3000, "B to see the new directory in place of the old one");
    expect(now.equals(old!)).toBe(false);
    expect(log.terminates.length).toBe(terminates);
    const r = await resume(portB, sid);
    expect(r.status).toBe(200);
    expect(r.packets![0]).toEqual(["hello", sid, 0, HEARTBEAT, WINDOW]);
    await closeSession(portB, sid);
  });

  test("a relay whose owner's directory ended before answering gets 503 (the client tries again), and its retry is served by the next directory", async () => {
    const sid = await openSession(portB);
    const [dirB] = bs();
    // B stops reading for a moment (its node timeout is longer): the kill and the relay's call reach it in that order, its directory gone before it answers.
    const blocked = b!.call("block", { ms: 1500 });
    await sleep(300);
    exit(dirB!, "kill");
    const first = await resume(server.port, sid);
    await blocked;
    expect(first.status).toBe(503);
    await until(() => (bs().length === 1 && !bs()[0]!.equals(dirB!)) || undefined, 3000, "B's next directory here");
    const again = await resume(server.port, sid);
    expect(again.status).toBe(200);
    expect(again.packets![0]).toEqual(["hello", sid, 0, HEARTBEAT, WINDOW]);
    await closeSession(server.port, sid);
  });

  test("the cluster stopped and started again: the directory goes with it and comes back; a session opened before is resumed on B", async () => {
    const sid = await openSession(server.port);
    await stopCluster();
    await until(() => mine().length === 0 || undefined, 2000, "the directory to end with the cluster");
    await joinHere(t, here, TIMING);
    expect(mine()).toHaveLength(1);
    await until(async () => ((await onB()).length === 2 && bs().length === 1) || undefined, 3000, "each node to see the other's directory again");
    const r = await resume(portB, sid);
    expect(r.status).toBe(200);
    expect(r.packets![0]).toEqual(["hello", sid, 0, HEARTBEAT, WINDOW]);
    await closeSession(portB, sid);
  });
});
