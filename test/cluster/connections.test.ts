/**
 * The IPC transport's connections between nodes (src/cluster/connection.ts): signals go from
 * worker to worker over each pair's own socket, never through the primary (they cross while
 * the primary's event loop is blocked); a local process that is not a node of the cluster is
 * closed without a word whatever it sends first (garbage, a wrong cookie, a frame without its
 * kind, nothing at all), and the cluster goes on; a worker's socket is gone with it, however
 * it ends. The primary is this process; the nodes are its node:cluster workers
 * (test/support/cluster-node.mjs, the built package).
 */
import { existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { dirname } from "node:path";
import { serialize } from "node:v8";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startClusterPrimary } from "../../src/index.js";
import { ensureBuilt, killAllNodes, RUN, startNode, until, type ChildNode } from "../support/cluster.js";

beforeAll(() => ensureBuilt(), 150_000);
afterAll(() => killAllNodes(), 30_000);

/** The Unix socket a process listens on for other nodes: its fds' socket inodes, found listening in /proc/net/unix. */
function nodeSocketOf(pid: number): string {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m !== null) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  // Num RefCount Protocol Flags Type St Inode Path; flags 00010000: listening.
  for (const line of readFileSync("/proc/net/unix", "utf8").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 8 && f[3] === "00010000" && inodes.has(f[6]!) && f[7]!.endsWith("/node.sock")) return f[7]!;
  }
  throw new Error(`no node socket listening in process ${pid}`);
}

/** Connects, writes what is given, and resolves with how long the node took to close the socket (or rejects past ms). */
function closedAfter(path: string, bytes: Buffer[], ms: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket: Socket = connect(path);
    const t0 = Date.now();
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the node kept the socket open for ${ms} ms`));
    }, ms);
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(Date.now() - t0);
    });
    socket.on("connect", () => {
      for (const b of bytes) socket.write(b);
    });
  });
}

function frame(kind: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h.writeUInt32BE(payload.length + 1, 0);
  h[4] = kind;
  return Buffer.concat([h, payload]);
}

describe("connections between workers", () => {
  let b: ChildNode;
  let v: ChildNode;

  beforeAll(async () => {
    startClusterPrimary();
    [b, v] = await Promise.all([startNode({ ipc: true, node: `cb-${RUN}@127.0.0.1` }), startNode({ ipc: true, node: `cv-${RUN}@127.0.0.1` })]);
    await until(async () => ((await b.call<string[]>("nodes")).includes(v.name) ? true : undefined), 3_000, "b to see v");
  }, 30_000);

  afterAll(() => Promise.allSettled([b?.quit(), v?.quit()]), 30_000);

  test("signals cross between two workers while the primary's event loop is blocked", async () => {
    const atB = await b.spawn();
    const atV = await v.spawn();
    // A timer at b sends to v, whose collector echoes back to b: a round trip the primary never sees.
    await b.call("sendAfter", { to: atV, ms: 100, msg: { replyTo: { $pid: atB }, n: 1 } });
    const until1 = Date.now() + 1_000;
    while (Date.now() < until1);
    const blockedUntil = Date.now();
    const got = await b.waitReceived(atB, (m) => m.length === 1, 3_000, "the echo at b");
    expect(got).toEqual([{ echo: { replyTo: { $pid: atB, local: true, same: true }, n: 1 }, by: { $pid: atV, local: false, same: false } }]);
    const [at] = await b.call<number[]>("receivedAt", { pid: atB });
    expect(at).toBeLessThan(blockedUntil);
  });

  test("a local process that is no node of the cluster is closed whatever it says first; the cluster goes on", async () => {
    const path = nodeSocketOf(v.child.pid!);
    // An HTTP request: its first four bytes announce a frame far longer than a HELLO may be.
    expect(await closedAfter(path, [Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n")], 2_000)).toBeLessThan(1_000);
    // A well-formed HELLO whose cookie is not the cluster's.
    expect(await closedAfter(path, [frame(0, serialize([randomBytes(32), b.name, 99]))], 2_000)).toBeLessThan(1_000);
    // A HELLO whose fields are not a HELLO's.
    expect(await closedAfter(path, [frame(0, serialize({ node: b.name }))], 2_000)).toBeLessThan(1_000);
    // A frame without its kind byte.
    expect(await closedAfter(path, [Buffer.alloc(8)], 2_000)).toBeLessThan(1_000);
    // A frame of signals before any HELLO.
    expect(await closedAfter(path, [frame(1, serialize([[], false]))], 2_000)).toBeLessThan(1_000);
    // Nothing at all: closed once the HELLO is overdue (5 s).
    const silent = await closedAfter(path, [], 8_000);
    expect(silent).toBeGreaterThanOrEqual(4_500);

    const atV = await v.spawn();
    await b.call("send", { to: atV, msg: "still here" });
    expect(await v.waitReceived(atV, (m) => m.length === 1, 3_000, "b's message at v")).toEqual(["still here"]);
    expect(await b.call("nodes")).toEqual([v.name]);
    expect(await v.call("info")).toMatchObject({ dropped: 0, nodes: [b.name] });
  }, 20_000);

  test("a worker's socket is removed when it stops and when it is killed", async () => {
    const w = await startNode({ ipc: true, node: `cw-${RUN}@127.0.0.1` });
    const path = nodeSocketOf(w.child.pid!);
    expect(existsSync(path)).toBe(true);
    await w.call("stopCluster");
    expect(existsSync(dirname(path))).toBe(false);
    await w.kill();

    const k = await startNode({ ipc: true, node: `ck-${RUN}@127.0.0.1` });
    const kPath = nodeSocketOf(k.child.pid!);
    expect(existsSync(kPath)).toBe(true);
    await k.kill("SIGKILL");
    await until(async () => (existsSync(dirname(kPath)) ? undefined : true), 3_000, "the killed worker's socket directory to go");
  }, 30_000);
});
