/**
 * `corral --workers N` as a user runs it: the built CLI (dist/app/cli.js) as a primary with
 * worker processes sharing one port, each a cluster node, meeting through the primary (node:cluster
 * IPC, nothing else running) or, with --redis, in a redis-server this file starts on a free
 * 127.0.0.1 port. Talked to over HTTP and WebSockets; workers are found as the primary's child
 * processes in /proc (Linux).
 *
 * dist/ is built when src/ or app/ is newer, one build at a time across test files
 * (test/support/dist.ts).
 */
import { readdirSync, readFileSync } from "node:fs";
import { get } from "node:http";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import WebSocket from "ws";
import { haveRedis, startRedis, stopAllRedis } from "../support/redis.js";
import { cliChildren, LISTENING, listening, runCli, type Cli } from "../support/cli.js";
import { connectClient, wsUrl, type Client } from "../support/client.js";
import { ensureBuilt, freePort, until, within } from "../support/dist.js";

/** The longest any single step may take. */
const WAIT = 5_000;
/** A killed worker's restart: the backoff, a fresh Node process, and (Redis) startCluster waiting out the dead node's liveness key. */
const RESTART_WAIT = 15_000;

/** The pids of the living children of ppid, read from /proc. */
function childPids(ppid: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue;
    }
    // "pid (comm) state ppid …": comm may hold spaces and parentheses, so read after the last ")".
    const [state, parent] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(parent) === ppid && state !== "Z") found.push(Number(entry));
  }
  return found;
}

/** A process's CPU time so far (user + system), ms, from /proc/<pid>/stat (whole clock ticks). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) * 10;
}

/** The JSON log lines the CLI and its workers printed. */
function logLines(cli: Cli): Record<string, unknown>[] {
  return cli.stdout().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
}

interface Stats {
  readonly connections: number;
  readonly node?: string;
  readonly nodes?: string[];
}

/** GET /api/stats on a connection of its own (no keep-alive), so successive calls spread over the workers. */
function stats(url: string, ms = WAIT): Promise<Stats> {
  return within(
    new Promise<Stats>((resolve, reject) => {
      const req = get(new URL("/api/stats", url), { agent: false }, (res) => {
        let body = "";
        res.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
        res.on("end", () => {
          try {
            resolve(JSON.parse(body) as Stats);
          } catch (err) {
            reject(err);
          }
        });
        res.on("error", reject);
      });
      req.on("error", reject);
      req.setTimeout(ms, () => req.destroy(new Error(`GET /api/stats: no answer within ${ms} ms`)));
    }),
    ms + 1000,
    "GET /api/stats",
  );
}

/** Asks /api/stats until every node in `want` answered (or, with a number, that many distinct nodes); each node's latest answer. */
async function statsByNode(url: string, want: number | readonly string[]): Promise<Map<string, Stats>> {
  const seen = new Map<string, Stats>();
  const done = (): boolean => (typeof want === "number" ? seen.size >= want : want.every((n) => seen.has(n)));
  return until(
    async () => {
      const s = await stats(url, 2000).catch(() => undefined);
      if (s?.node !== undefined) seen.set(s.node, s);
      return done() ? seen : undefined;
    },
    RESTART_WAIT,
    () => `/api/stats answers from ${typeof want === "number" ? `${want} nodes` : want.join(", ")} (seen: ${[...seen.keys()].join(", ")})`,
  );
}

/** A chat client, with the name it connected with. */
interface ChatClient extends Client {
  readonly name: string;
}

const sockets = new Set<WebSocket>();

async function connect(url: string, name: string): Promise<ChatClient> {
  const client = await connectClient(url, WAIT);
  sockets.add(client.ws);
  return { ...client, name };
}

/**
 * Opens chat clients one by one until both workers hold some; the node that gained a
 * connection (by /api/stats) is the one that took it. Returns the clients by node. The workers
 * accept on one shared socket, where an idle moment's connections go to whichever wakes first,
 * so each client connects while one worker in turn (of pids) is paused with SIGSTOP.
 */
async function chatOnBothWorkers(url: string, nodes: readonly string[], prefix: string, pids: readonly number[]): Promise<Map<string, ChatClient[]>> {
  const byNode = new Map<string, ChatClient[]>(nodes.map((n) => [n, []]));
  let counts = await statsByNode(url, nodes);
  for (let i = 0; i < 12 && [...byNode.values()].some((list) => list.length === 0); i++) {
    const name = `${prefix}${i}`;
    const paused = pids[i % pids.length]!;
    process.kill(paused, "SIGSTOP");
    let client: ChatClient;
    try {
      client = await connect(wsUrl(url, `/chat?name=${name}`), name);
      await client.waitFor((t) => t === JSON.stringify({ type: "welcome", name }), `${name}'s welcome`);
    } finally {
      process.kill(paused, "SIGCONT");
    }
    const before = counts;
    counts = await statsByNode(url, nodes);
    const gained = nodes.filter((n) => counts.get(n)!.connections > before.get(n)!.connections);
    expect(gained, `the node that took ${name}`).toHaveLength(1);
    byNode.get(gained[0]!)!.push(client);
  }
  expect([...byNode.values()].map((list) => list.length > 0), "chat clients on both workers").toEqual([true, true]);
  return byNode;
}

/** Closes the clients and waits until no worker counts a connection any more. */
async function closeAll(url: string, nodes: readonly string[], clients: readonly ChatClient[]): Promise<void> {
  for (const c of clients) c.ws.close(1000);
  await within(Promise.all(clients.map((c) => c.closed)), WAIT, "the chat sockets to close");
  await until(async () => [...(await statsByNode(url, nodes)).values()].every((s) => s.connections === 0), WAIT, "every worker to count 0 connections");
}

beforeAll(async () => {
  await ensureBuilt();
}, 150_000);

afterAll(async () => {
  for (const ws of sockets) ws.terminate();
  const left = [...cliChildren];
  for (const child of left) {
    for (const pid of child.pid === undefined ? [] : childPids(child.pid)) process.kill(pid, "SIGKILL");
    child.kill("SIGKILL");
  }
  await within(
    Promise.all(left.map((child) => new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once("exit", () => resolve()))))),
    WAIT,
    "the CLI processes to end",
  );
  await stopAllRedis();
});

/** Over IPC (the default: nothing else to run) and, when this machine has a redis-server, through Redis. */
const MODES: ("ipc" | "redis")[] = haveRedis() ? ["ipc", "redis"] : ["ipc"];

describe.each(MODES)("corral --workers 2 (nodes meet over %s)", (mode) => {
  let cli: Cli;
  let url = "";
  let port = 0;
  /** The workers' node names, as /api/stats reports them. */
  let nodes: string[] = [];

  beforeAll(async () => {
    const redis = mode === "redis" ? ["--redis", (await startRedis()).url] : [];
    port = await freePort();
    cli = runCli(["--workers", "2", "--port", String(port), ...redis, "--log-level", "info"]);
    // Two Node processes start and join the cluster before the line is printed.
    url = await listening(cli, 2 * WAIT);
  }, 30_000);

  afterAll(async () => {
    if (cli.child.exitCode === null && cli.child.signalCode === null) {
      cli.child.kill("SIGTERM");
      await within(cli.exited, WAIT, "the CLI to exit");
    }
  });

  test("prints the URL once, and both workers answer /api/stats as nodes of one cluster", async () => {
    expect(url).toBe(`http://127.0.0.1:${port}/`);
    expect(cli.stdout().match(LISTENING)).toHaveLength(1);
    expect(childPids(cli.child.pid!)).toHaveLength(2);
    const byNode = await statsByNode(url, 2);
    nodes = [...byNode.keys()].sort();
    expect(nodes[0]).toMatch(/^corral-\d+-[0-9a-f]{6}-w1@/);
    expect(nodes[1]).toMatch(/^corral-\d+-[0-9a-f]{6}-w2@/);
    // Each sees the other, and the fields of the single-node demo are all there.
    expect(byNode.get(nodes[0]!)!.nodes).toEqual([nodes[1]]);
    expect(byNode.get(nodes[1]!)!.nodes).toEqual([nodes[0]]);
    for (const s of byNode.values()) {
      for (const field of ["processes", "connections", "hibernated", "mailbox", "uptime"]) expect(Number.isInteger((s as unknown as Record<string, unknown>)[field]), field).toBe(true);
    }
    // Each worker joined the cluster under its own name, through the transport asked for.
    const joined = logLines(cli).filter((l) => l["msg"] === "cluster: joined");
    expect(joined.map((l) => l["node"]).sort()).toEqual(nodes);
    for (const l of joined) expect(mode === "redis" ? l["redis"] : l["transport"]).toEqual(mode === "redis" ? expect.stringMatching(/^redis:\/\//) : "ipc");
  });

  test("a chat line and POST /broadcast reach chat clients on both workers", async () => {
    const byNode = await chatOnBothWorkers(url, nodes, "ann", childPids(cli.child.pid!));
    const all = [...byNode.values()].flat();
    const speaker = byNode.get(nodes[0]!)![0]!;
    speaker.ws.send("howdy from w1");
    const said = JSON.stringify({ type: "said", from: speaker.name, text: "howdy from w1" });
    await Promise.all(all.map((c, i) => c.waitFor((t) => t === said, `the chat line at client ${i}`)));

    const res = await fetch(new URL("/broadcast", url), { method: "POST", body: "round-up at noon" });
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ reached: all.length });
    const sent = JSON.stringify({ type: "broadcast", text: "round-up at noon" });
    await Promise.all(all.map((c, i) => c.waitFor((t) => t === sent, `the broadcast at client ${i}`)));

    await closeAll(url, nodes, all);
  });

  test("the workers accept connections themselves: 1 000 WebSocket handshakes cost the primary under 25 µs of CPU each", async () => {
    // Round-robin (node:cluster's default) had the primary accept each one and pass its handle over IPC: about 75 µs each.
    const before = cpuMs(cli.child.pid!);
    const open: WebSocket[] = [];
    for (let i = 0; i < 1000; i += 50) {
      const batch = Array.from({ length: 50 }, () => new WebSocket(wsUrl(url, "/echo")));
      await within(Promise.all(batch.map((ws) => new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject)))), WAIT, "50 handshakes");
      open.push(...batch);
    }
    const spent = cpuMs(cli.child.pid!) - before;
    for (const ws of open) ws.terminate();
    expect(spent).toBeLessThan(25);
  });

  test("a worker killed with SIGKILL is restarted; its members are gone from the group for the other; the service keeps answering", async () => {
    const before = childPids(cli.child.pid!);
    expect(before).toHaveLength(2);
    // Chat clients on both workers: members of one group across the two nodes.
    const clients = await chatOnBothWorkers(url, nodes, "bo", childPids(cli.child.pid!));
    process.kill(before[0]!, "SIGKILL");
    // The survivor answers while its sibling is down and coming back. A connection the dying
    // worker had accepted is lost, hence short tries.
    let last: unknown;
    await until(
      async () => (await stats(url, 1000).catch((err: unknown) => void (last = err)))?.node !== undefined,
      WAIT,
      () => `an answer from the surviving worker (last error: ${String(last)}):\n${cli.stdout()}${cli.stderr()}`,
    );
    const restarted = await until(
      async () => logLines(cli).find((l) => l["msg"] === "worker restarted"),
      RESTART_WAIT,
      () => `the primary's "worker restarted" line:\n${cli.stdout()}${cli.stderr()}`,
    );
    const died = logLines(cli).find((l) => l["msg"] === "worker died; restarting it");
    expect(died?.["exit"]).toBe("SIGKILL");
    const victim = died?.["node"] as string;
    const newNode = restarted["node"] as string;
    expect(nodes).toContain(victim);
    // Over Redis the dead node's name stays claimed until its key expires; over IPC the new run keeps it.
    expect(newNode).toBe(mode === "redis" ? victim.replace(/-w(\d)@/, "-w$1-2@") : victim);
    const survivorClients = clients.get(nodes.find((n) => n !== victim)!)!;
    // The killed node's members left the group on the survivor: a broadcast reaches only the survivor's clients.
    await until(
      async () => {
        const res = await fetch(new URL("/broadcast", url), { method: "POST", body: "after the kill" }).catch(() => undefined);
        return res?.status === 202 && ((await res.json()) as { reached: number }).reached === survivorClients.length;
      },
      RESTART_WAIT,
      () => `a broadcast to reach only the survivor's ${survivorClients.length} clients`,
      200,
    );
    for (const c of clients.get(victim)!) expect((await within(c.closed, WAIT, "a socket of the killed worker to close")).code).toBe(1006);
    await closeAll(url, [nodes.find((n) => n !== victim)!], survivorClients);
    const after = childPids(cli.child.pid!);
    expect(after).toHaveLength(2);
    expect(after).not.toContain(before[0]);
    expect(after).toContain(before[1]);

    const survivor = nodes.find((n) => n !== died?.["node"])!;
    nodes = [survivor, newNode].sort();
    // Both answer, and the survivor sees the new node (through Redis the killed one is dropped after its heartbeat timeout).
    const byNode = await statsByNode(url, nodes);
    expect(byNode.get(newNode)!.nodes).toContain(survivor);
    await until(async () => {
      const s = (await statsByNode(url, [survivor])).get(survivor)!;
      return s.nodes!.includes(newNode) && (mode === "ipc" || !s.nodes!.includes(died?.["node"] as string));
    }, RESTART_WAIT, "the survivor to see the new node and lose the killed one");

    // Chat still crosses workers, the restarted one included.
    const chat = await chatOnBothWorkers(url, nodes, "cy", childPids(cli.child.pid!));
    const res = await fetch(new URL("/broadcast", url), { method: "POST", body: "still here" });
    expect(await res.json()).toEqual({ reached: [...chat.values()].flat().length });
    const sent = JSON.stringify({ type: "broadcast", text: "still here" });
    await Promise.all([...chat.values()].flat().map((c, i) => c.waitFor((t) => t === sent, `the broadcast at client ${i}`)));
    await closeAll(url, nodes, [...chat.values()].flat());
  }, 60_000);

  test.skipIf(mode !== "ipc")("a worker whose event loop stops (SIGSTOP) is cut off after the node timeout, killed and restarted under its name; the other sees it down, then back", async () => {
    const before = childPids(cli.child.pid!);
    expect(before).toHaveLength(2);
    const restartsBefore = logLines(cli).filter((l) => l["msg"] === "worker restarted").length;
    const t0 = Date.now();
    process.kill(before[0]!, "SIGSTOP");
    const cut = await until(
      async () => logLines(cli).find((l) => l["msg"] === "cluster primary: a worker's node is cut off and the worker killed"),
      RESTART_WAIT,
      () => `the primary's cut-off line:\n${cli.stdout()}${cli.stderr()}`,
    );
    // The default nodeTimeoutMs (5 s), counted from the worker's last heartbeat (one a second, so up to 1 s before the stop).
    expect(Date.now() - t0).toBeGreaterThanOrEqual(3_900);
    expect(cut["pid"]).toBe(before[0]);
    expect(cut["why"]).toMatch(/^no heartbeat for \d+ ms$/);
    const victim = cut["node"] as string;
    const survivor = nodes.find((n) => n !== victim)!;
    await until(async () => ((await statsByNode(url, [survivor])).get(survivor)!.nodes!.includes(victim) ? undefined : true), WAIT, "the survivor to lose the stopped node");
    await until(async () => logLines(cli).filter((l) => l["msg"] === "worker restarted").length > restartsBefore || undefined, RESTART_WAIT, "the stopped worker's restart");
    const died = logLines(cli).filter((l) => l["msg"] === "worker died; restarting it").at(-1);
    expect(died).toMatchObject({ node: victim, exit: "SIGKILL" });
    const after = childPids(cli.child.pid!);
    expect(after).toHaveLength(2);
    expect(after).not.toContain(before[0]);
    await until(async () => ((await statsByNode(url, [survivor])).get(survivor)!.nodes!.includes(victim) ? true : undefined), RESTART_WAIT, "the survivor to see the restarted node");
  }, 60_000);

  test("SIGTERM: chat sockets on both workers close with 1001, every process exits, the primary with 0", async () => {
    const byNode = await chatOnBothWorkers(url, nodes, "dot", childPids(cli.child.pid!));
    const workers = childPids(cli.child.pid!);
    cli.child.kill("SIGTERM");
    for (const [node, list] of byNode) {
      for (const c of list) expect((await within(c.closed, WAIT, `a chat socket on ${node} to close`)).code, node).toBe(1001);
    }
    expect(await within(cli.exited, 2 * WAIT, "the CLI to exit")).toBe(0);
    expect(workers.filter((pid) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    }), "workers still alive").toEqual([]);
    // Each worker logged its graceful stop under its node's name.
    const stopped = logLines(cli).filter((l) => l["msg"] === "shutting down" && l["node"] !== undefined).map((l) => l["node"]);
    expect(stopped.sort()).toEqual(nodes);
    expect(cli.stderr()).toBe("");
  }, 30_000);
});

test("--workers with --node and no Redis: the workers are <NAME>-w1, ... over IPC", async () => {
  const cli = runCli(["--workers", "1", "--node", "named@127.0.0.1", "--port", "0", "--log-level", "warn"]);
  const url = await listening(cli, 2 * WAIT);
  const s = await stats(url);
  expect(s.node).toBe("named-w1@127.0.0.1");
  expect(s.nodes).toEqual([]);
  cli.child.kill("SIGTERM");
  expect(await within(cli.exited, WAIT, "the CLI to exit")).toBe(0);
});

describe.skipIf(!haveRedis())("Redis out of reach", () => {
  test.each([
    ["--workers 2", ["--workers", "2"]],
    ["one node", []],
  ])("%s: exit 1 with one clear line, nothing listening", async (_, extra) => {
    const closed = await freePort();
    const cli = runCli([...extra, "--port", "0", "--redis", `redis://127.0.0.1:${closed}`, "--log-level", "warn"]);
    expect(await within(cli.exited, 2 * WAIT, "the CLI to exit")).toBe(1);
    expect(cli.stderr()).toBe(`corral: cannot reach Redis at redis://127.0.0.1:${closed}: connect ECONNREFUSED 127.0.0.1:${closed}\n`);
    expect(cli.stdout()).not.toContain("listening on");
  });
});
