/**
 * The observer across nodes: the test process is one node (with the page's listener), two
 * forked nodes the others, over node:cluster's IPC. One runs an observer agent (it called
 * observer(); test/observe/observer-node.mjs) and a supervisor; the other does not. The page on
 * this node asks for the other nodes' views through the cluster, by a call to their agent.
 */
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { compileRoutes, nodeName, nodes, observer, startClear, stopListener } from "../../src/index.js";
import { joinHere, RUN, startNode, startTransport, stopNodes, until, type ChildNode } from "../support/cluster.js";
import { openObserver, type ObserverClient } from "../support/observer-client.js";

const NAME = "observer-cluster-test";
const PRELOAD = pathToFileURL(new URL("./observer-node.mjs", import.meta.url).pathname).href;
let base = "";
let b: ChildNode | undefined;
let c: ChildNode | undefined;

interface SupNode {
  pid: string;
  name: string | null;
  restarts: { childId: string; reason: string }[];
  children: { id: string; pid: string | null }[];
}
interface Update {
  type: "update";
  node: string;
  self: string;
  unavailable?: string;
  nodes: { name: string; self: boolean; up: boolean; observer: boolean }[];
  summary?: { processes: number };
  supervisors?: SupNode[];
  table?: { total: number; rows: { pid: string; name: string | null }[] };
}
interface Detail {
  pid: string;
  alive: boolean;
  name: string | null;
  supervisor: { children: { id: string }[] } | null;
}

beforeAll(async () => {
  const transport = await startTransport("ipc");
  await joinHere(transport, `obs-${RUN}@127.0.0.1`);
  const before = process.env["NODE_OPTIONS"];
  process.env["NODE_OPTIONS"] = `${before ?? ""} --import ${PRELOAD}`.trim();
  try {
    b = await startNode(transport.options(`obsb-${RUN}@127.0.0.1`));
  } finally {
    if (before === undefined) delete process.env["NODE_OPTIONS"];
    else process.env["NODE_OPTIONS"] = before;
  }
  c = await startNode(transport.options(`obsc-${RUN}@127.0.0.1`));
  await until(() => nodes().length === 2 || undefined, 5_000, "this node to see both others");
  const dispatch = compileRoutes([
    {
      host: "_",
      paths: [
        ["/observer", observer()],
        ["/actions", observer({ actions: true })],
      ],
    },
  ]);
  const l = await startClear(NAME, { port: 0, host: "127.0.0.1" }, { dispatch });
  base = `127.0.0.1:${l.port}`;
}, 150_000);

afterAll(async () => {
  await stopListener(NAME).catch(() => undefined);
  await stopNodes([b, c]);
}, 30_000);

function open(path = "/observer"): Promise<ObserverClient> {
  return openObserver(base, path, 6000);
}

const isUpdate = (m: Record<string, unknown>): boolean => m["type"] === "update";

describe("the observer across the cluster", () => {
  test("the page lists the nodes, and which answer it; another node's views come from that node", async () => {
    const o = await open();
    try {
      // The agent's group membership reaches this node with the cluster's own messages.
      const first = await until(
        async () => {
          const u = await o.next<Update>(isUpdate);
          return u.nodes.find((n) => n.name === b!.name)?.observer === true ? u : undefined;
        },
        10_000,
        "node b's observer agent to be seen here",
      );
      expect(first.node).toBe(nodeName());
      expect(first.nodes.find((n) => n.self)!.name).toBe(nodeName());
      expect(first.nodes.find((n) => n.name === c!.name)).toMatchObject({ up: true, observer: false });

      o.ask({ type: "query", node: b!.name, sort: "pid", limit: 100 });
      const there = await o.next<Update>((m) => isUpdate(m) && m["node"] === b!.name);
      expect(there.self).toBe(nodeName());
      expect(there.unavailable).toBeUndefined();
      // Its table and its supervisors are that node's: every pid is one of b's.
      expect(there.table!.rows.length).toBeGreaterThan(0);
      for (const r of there.table!.rows) expect(r.pid.startsWith(`<${b!.name}.`)).toBe(true);
      expect(there.table!.total).toBe(there.summary!.processes);
      const sup = there.supervisors!.find((s) => s.name === "remote-sup");
      expect(sup).toBeDefined();
      expect(sup!.pid.startsWith(`<${b!.name}.`)).toBe(true);
      expect(sup!.children.map((x) => x.id)).toEqual(["remote-worker"]);
      // The next updates keep coming from there, a second apart.
      const later = await o.next<Update>(isUpdate);
      expect(later.node).toBe(b!.name);

      // A remote process's detail, asked through the same agent.
      o.ask({ type: "detail", pid: sup!.pid });
      const d = (await o.next<{ detail: Detail }>((m) => m["type"] === "detail")).detail;
      expect(d).toMatchObject({ pid: sup!.pid, alive: true, name: "remote-sup" });
      expect(d.supervisor!.children.map((x) => x.id)).toEqual(["remote-worker"]);

      // A node without an agent: the page is told why, and still lists the nodes.
      o.ask({ type: "query", node: c!.name });
      const none = await o.next<Update>((m) => isUpdate(m) && m["node"] === c!.name);
      expect(none.unavailable).toContain("no observer on");
      expect(none.nodes.map((n) => n.name).sort()).toEqual([nodeName(), b!.name, c!.name].sort());

      // And back to this node.
      o.ask({ type: "query", node: "" });
      const home = await o.next<Update>((m) => isUpdate(m) && m["node"] === nodeName());
      expect(home.unavailable).toBeUndefined();
      expect(home.supervisors!.some((s) => s.name === "remote-sup")).toBe(false);
    } finally {
      o.ws.close();
    }
  }, 40_000);

  test("with actions on, kill reaches a process on another node; its supervisor there restarts it, and the page shows that restart", async () => {
    const o = await open("/actions");
    try {
      o.ask({ type: "query", node: b!.name });
      const there = await until(
        async () => {
          const u = await o.next<Update>((m) => isUpdate(m) && m["node"] === b!.name);
          return u.supervisors?.some((s) => s.name === "remote-sup") === true ? u : undefined;
        },
        10_000,
        "node b's supervisor in the page",
      );
      const sup = there.supervisors!.find((s) => s.name === "remote-sup")!;
      const worker = sup.children[0]!.pid!;
      expect(worker.startsWith(`<${b!.name}.`)).toBe(true);
      o.ask({ type: "kill", pid: worker });
      expect(await o.next<{ ok: boolean }>((m) => m["type"] === "action")).toMatchObject({ ok: true });
      const after = await until(
        async () => {
          const u = await o.next<Update>((m) => isUpdate(m) && m["node"] === b!.name);
          const s = u.supervisors?.find((x) => x.name === "remote-sup");
          return s !== undefined && s.restarts.length > 0 ? s : undefined;
        },
        10_000,
        "the restart on node b",
      );
      expect(after.restarts.map((r) => [r.childId, r.reason])).toEqual([["remote-worker", "killed"]]);
      expect(after.children[0]!.pid).not.toBe(worker);
      expect(after.children[0]!.pid!.startsWith(`<${b!.name}.`)).toBe(true);
    } finally {
      o.ws.close();
    }
  }, 40_000);
});
