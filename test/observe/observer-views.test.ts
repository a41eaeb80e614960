/**
 * The observer's views beyond the process table, over real HTTP and a real ws client: the
 * supervisors as a tree with their restart history, the next timers due and a process's own,
 * a machine handler's current state, and a bullet session's WebSocket transport in its
 * connection row and its detail.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import WebSocket from "ws";
import { setup } from "xstate";
import {
  bullet,
  cancelTimer,
  compileRoutes,
  exit,
  machineHandler,
  observer,
  send,
  sendAfter,
  spawn,
  spawnLink,
  startClear,
  startSupervisor,
  startTimer,
  stopListener,
  stopSupervisor,
  Pid,
  processCount,
  whichGroups,
  type WsEvent,
} from "../../src/index.js";
import { SessionClient } from "../support/session-client.js";
import { until } from "../support/dist.js";
import { captureLogs } from "../support/helpers.js";
import { recorder, testHandler } from "../sessions/handler.js";
import { openObserver, type ObserverClient } from "../support/observer-client.js";

const NAME = "observer-views-test";
let base = "";
let port = 0;
const spawned: Pid[] = [];

interface Restart {
  at: number;
  childId: string;
  reason: string;
}
interface SupNode {
  pid: string;
  name: string | null;
  strategy: string;
  intensity: number;
  restarts: Restart[];
  childCount: number;
  children: { id: string; pid: string | null; type: string; supervisor: SupNode | null }[];
}
interface Update {
  type: "update";
  node: string;
  self: string;
  supervisors: SupNode[];
  timers: { count: number; next: { inMs: number; dest: string; kind: string }[] };
  listeners: { name: string; conns: { pid: string | null; session: SessionView | null }[] }[];
  sessions: SessionView[];
}
interface SessionView {
  pid: string | null;
  transport: string | null;
  awayMs: number | null;
  windowLeftMs: number | null;
  outboxFrames: number;
  outboxBytes: number;
  sent: number;
  acked: number;
  received: number;
  resumeWindowMs: number;
}
interface Detail {
  pid: string;
  alive: boolean;
  machine: string | null;
  timers: { count: number; nextInMs: number | null };
  supervisor: { strategy: string; childCount: number; children: { id: string }[]; restarts: Restart[] } | null;
  session: SessionView | null;
}

/** A machine that waits, and works once told to. */
const switchMachine = setup({ types: { events: {} as WsEvent } }).createMachine({
  initial: "idle",
  states: {
    idle: { on: { "ws.text": { target: "busy" } } },
    busy: {},
  },
});

beforeAll(async () => {
  // The crash the supervisor test causes is reported; kept in memory, not printed.
  captureLogs();
  const dispatch = compileRoutes([
    {
      host: "_",
      paths: [
        ["/observer", observer()],
        ["/machine", machineHandler(switchMachine)],
        ["/live", bullet(testHandler(recorder()), { resumeWindowMs: 5000, heartbeatMs: 1000 })],
      ],
    },
  ]);
  const l = await startClear(NAME, { port: 0, host: "127.0.0.1" }, { dispatch });
  port = l.port;
  base = `127.0.0.1:${l.port}`;
});

afterAll(async () => {
  for (const pid of spawned) exit(pid, "kill");
  await stopListener(NAME);
});

/** A process that waits for nothing. */
function idle(): Pid {
  const pid = spawn(async () => {
    await new Promise<void>(() => {});
  });
  spawned.push(pid);
  return pid;
}

function open(): Promise<ObserverClient> {
  return openObserver(base);
}

/** The detail of pid, asked until it passes a test. */
async function detailUntil(o: Awaited<ReturnType<typeof open>>, pid: string, pred: (d: Detail) => boolean, what: string): Promise<Detail> {
  return until(
    async () => {
      const got = o.next<{ detail: Detail }>((m) => m["type"] === "detail" && (m["detail"] as Detail).pid === pid);
      o.ask({ type: "detail", pid });
      const d = (await got).detail;
      return pred(d) ? d : undefined;
    },
    4000,
    what,
  );
}

describe("observer views", () => {
  test("outside a cluster no observer agent is started: a pid made before startCluster would fix the node's name", async () => {
    const before = processCount();
    observer();
    // The plots' point a second is where a node in a cluster starts its agent.
    await new Promise((r) => setTimeout(r, 1300));
    expect(processCount()).toBe(before);
    expect(whichGroups()).not.toContain("corral:observer");
  });

  test("supervisors as a tree: a nested supervisor under its parent, not as a root; each restart kept with its child and reason", async () => {
    const worker = (): Pid => spawnLink(async (ctx) => {
      const m = await ctx.receive();
      if (m === "crash") throw new Error("boom from the observer test");
    });
    const top = startSupervisor(
      {
        strategy: "one_for_one",
        intensity: 5,
        periodMs: 10_000,
        children: [
          { id: "inner", type: "supervisor", start: () => startSupervisor({ strategy: "one_for_all", children: [{ id: "leaf", start: worker }] }) },
          { id: "crashy", start: worker },
        ],
      },
      { name: "obs-top-sup" },
    );
    const o = await open();
    try {
      const first = await o.next<Update>((m) => m["type"] === "update" && (m as unknown as Update).supervisors.some((s) => s.pid === String(top)));
      const root = first.supervisors.find((s) => s.pid === String(top))!;
      expect(root).toMatchObject({ name: "obs-top-sup", strategy: "one_for_one", intensity: 5, childCount: 2, restarts: [] });
      expect(root.children.map((c) => [c.id, c.type])).toEqual([
        ["inner", "supervisor"],
        ["crashy", "worker"],
      ]);
      const inner = root.children[0]!.supervisor!;
      expect(inner).toMatchObject({ strategy: "one_for_all", childCount: 1 });
      expect(inner.children.map((c) => c.id)).toEqual(["leaf"]);
      expect(inner.children[0]!.pid).toMatch(/^<.+\.\d+>$/);
      // The inner supervisor is in the tree once, under its parent.
      expect(first.supervisors.some((s) => s.pid === inner.pid)).toBe(false);

      const crashy = root.children[1]!.pid!;
      const before = Date.now();
      send(Pid.parse(crashy), "crash");
      const after = await o.next<Update>((m) => m["type"] === "update" && ((m as unknown as Update).supervisors.find((s) => s.pid === String(top))?.restarts.length ?? 0) > 0);
      const restarted = after.supervisors.find((s) => s.pid === String(top))!;
      expect(restarted.restarts).toHaveLength(1);
      expect(restarted.restarts[0]).toMatchObject({ childId: "crashy" });
      expect(restarted.restarts[0]!.reason).toContain("boom from the observer test");
      expect(restarted.restarts[0]!.at).toBeGreaterThanOrEqual(before);
      const again = restarted.children.find((c) => c.id === "crashy")!.pid;
      expect(again).not.toBe(crashy);

      // The supervisor's own detail: its strategy, children and the same restart.
      const d = await detailUntil(o, String(top), (x) => x.supervisor !== null, "the supervisor's detail");
      expect(d.supervisor!.children.map((c) => c.id)).toEqual(["inner", "crashy"]);
      expect(d.supervisor!.restarts.map((r) => r.childId)).toEqual(["crashy"]);
    } finally {
      o.ws.close();
      await stopSupervisor(top);
    }
    const gone = await open();
    try {
      const u = await gone.next<Update>((m) => m["type"] === "update");
      expect(u.supervisors.some((s) => s.pid === String(top))).toBe(false);
    } finally {
      gone.ws.close();
    }
  });

  test("timers: the next due, soonest first, with their kind; a process's detail counts its own and the first due", async () => {
    const p = idle();
    // Armed out of order, so the heap's array order is not the order they are due in.
    const delays = [40_000, 10_000, 35_000, 20_000, 50_000, 15_000];
    const refs = delays.map((ms, i) => (i === 4 ? sendAfter(ms, p, "a message") : startTimer(ms, p, `timeout ${i}`)));
    const o = await open();
    try {
      const u = await o.next<Update>((m) => m["type"] === "update");
      expect(u.timers.count).toBeGreaterThanOrEqual(delays.length);
      const mine = u.timers.next.filter((t) => t.dest === String(p));
      expect(mine).toHaveLength(delays.length);
      const sorted = [...delays].sort((x, y) => x - y);
      mine.forEach((t, i) => {
        expect(t.inMs).toBeLessThanOrEqual(sorted[i]!);
        expect(t.inMs).toBeGreaterThan(sorted[i]! - 2000);
        expect(t.kind).toBe(sorted[i] === 50_000 ? "message" : "timeout");
      });
      // Soonest first across every timer listed.
      const due = u.timers.next.map((t) => t.inMs);
      expect(due).toEqual([...due].sort((x, y) => x - y));

      const d = await detailUntil(o, String(p), () => true, "the process's detail");
      expect(d.timers.count).toBe(delays.length);
      expect(d.timers.nextInMs).toBeGreaterThan(8_000);
      expect(d.timers.nextInMs).toBeLessThanOrEqual(10_000);
      for (const r of refs) cancelTimer(r);
      const none = await detailUntil(o, String(p), (x) => x.timers.count === 0, "no timers left");
      expect(none.timers.nextInMs).toBeNull();
    } finally {
      o.ws.close();
    }
  });

  test("a machine handler's current state, in its detail, moves with the machine", async () => {
    const o = await open();
    const client = new WebSocket(`ws://${base}/machine`);
    try {
      await new Promise((resolve, reject) => {
        client.once("open", resolve);
        client.once("error", reject);
      });
      // The machine's connection: the one listed connection whose detail has a machine state.
      const pid = await until(
        async () => {
          const u = await o.next<Update>((m) => m["type"] === "update");
          for (const c of u.listeners.find((l) => l.name === NAME)?.conns ?? []) {
            if (c.pid === null) continue;
            const got = o.next<{ detail: Detail }>((m) => m["type"] === "detail" && (m["detail"] as Detail).pid === c.pid);
            o.ask({ type: "detail", pid: c.pid });
            if ((await got).detail.machine !== null) return c.pid;
          }
          return undefined;
        },
        4000,
        "the machine connection in the listener's list",
      );
      expect((await detailUntil(o, pid, () => true, "idle")).machine).toBe("idle");
      client.send("go");
      expect((await detailUntil(o, pid, (d) => d.machine === "busy", "busy")).machine).toBe("busy");
    } finally {
      client.close();
      o.ws.close();
    }
  });

  test("a bullet session: its transport's row and detail, its own detail, and the sessions list with its resume state, attached and away", async () => {
    const o = await open();
    const session = new SessionClient(port, "/live");
    try {
      await session.connect("websocket");
      session.send("echo:one");
      session.send("echo:two");
      await session.waitDelivered(2);
      const u = await o.next<Update>((m) => m["type"] === "update" && (m as unknown as Update).sessions.some((s) => s.received === 2 && s.sent >= 2));
      const rows = u.listeners.find((l) => l.name === NAME)!.conns.filter((c) => c.session !== null);
      expect(rows).toHaveLength(1);
      const listed = u.sessions.filter((s) => s.transport !== null);
      expect(listed).toHaveLength(1);
      const sessionPid = listed[0]!.pid!;
      expect(listed[0]).toMatchObject({ transport: "websocket", awayMs: null, windowLeftMs: null, received: 2, resumeWindowMs: 5000 });
      // the transport's row names the session's process, not its own
      expect(rows[0]!.session).toMatchObject({ pid: sessionPid, transport: "websocket", resumeWindowMs: 5000 });
      expect(rows[0]!.pid).not.toBe(sessionPid);
      const d = await detailUntil(o, rows[0]!.pid!, () => true, "the transport's detail");
      expect(d.session).toMatchObject({ pid: sessionPid, transport: "websocket" });
      // The observer's own connection is no session.
      expect(u.listeners.find((l) => l.name === NAME)!.conns.filter((c) => c.session === null).length).toBeGreaterThanOrEqual(1);
      // The client drops: the session is away, its window running down, what it sent unacknowledged in the outbox.
      session.drop();
      const away = await o.next<Update>((m) => m["type"] === "update" && (m as unknown as Update).sessions.some((s) => s.pid === sessionPid && s.transport === null));
      const gone = away.sessions.find((s) => s.pid === sessionPid)!;
      expect(gone.awayMs).toBeGreaterThanOrEqual(0);
      expect(gone.windowLeftMs).toBeGreaterThan(0);
      expect(gone.windowLeftMs! + gone.awayMs!).toBeLessThanOrEqual(5000 + 6000);
      expect(gone.outboxFrames).toBe(gone.sent - gone.acked);
      const own = await detailUntil(o, sessionPid, (x) => x.session !== null && x.session.transport === null, "the session's own detail, away");
      expect(own.session).toMatchObject({ pid: sessionPid, transport: null, received: 2 });
    } finally {
      session.dispose();
      o.ws.close();
    }
  });
});
