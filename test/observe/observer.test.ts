/**
 * The observer route over real HTTP and a real ws client: the page and its files with their
 * headers, who may open it, the updates its socket pushes (the process table paged, sorted and
 * filtered, a process's detail), and the actions, off unless asked for and logged when on.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import WebSocket from "ws";
import { compileRoutes, exit, join, observer, register, send, spawn, startClear, stopListener, type Pid } from "../../src/index.js";
import { captureLogs, until } from "../support/helpers.js";

const NAME = "observer-test";
let base = "";
const spawned: Pid[] = [];

interface Row {
  pid: string;
  name: string | null;
  behaviour: string;
  mailbox: number;
  handled: number;
  groups: string[];
}
interface Update {
  type: "update";
  summary: { processes: number; connections: number };
  series: { processes: number[] };
  table: { total: number; matched: number; exact: boolean; offset: number; sampled: number; rows: Row[] };
  listeners: { name: string; connections: number; conns: { pid: string | null; transport: string }[] }[];
  groups: { name: string; members: number }[];
}

beforeAll(async () => {
  const dispatch = compileRoutes([
    {
      host: "_",
      paths: [
        ["/observer", observer()],
        ["/closed", observer({ allow: (req) => req.peer.address === "10.1.2.3" })],
        ["/actions", observer({ actions: true })],
      ],
    },
  ]);
  const l = await startClear(NAME, { port: 0, host: "127.0.0.1" }, { dispatch });
  base = `127.0.0.1:${l.port}`;
});

afterAll(async () => {
  for (const pid of spawned) exit(pid, "kill");
  await stopListener(NAME);
});

/** A process that waits for nothing and keeps what it is sent in its mailbox (a receive loop that never receives). */
function idle(): Pid {
  const pid = spawn(async () => {
    await new Promise<void>(() => {});
  });
  spawned.push(pid);
  return pid;
}

/** Opens the observer's socket; resolves with it and a reader of the next message matching a test. */
async function open(path = "/observer"): Promise<{ ws: WebSocket; next: <T>(pred: (m: Record<string, unknown>) => boolean) => Promise<T> }> {
  const ws = new WebSocket(`ws://${base}${path}`, { origin: `http://${base}` });
  const inbox: Record<string, unknown>[] = [];
  const waiting: { pred: (m: Record<string, unknown>) => boolean; resolve: (m: unknown) => void }[] = [];
  ws.on("message", (data) => {
    const m = JSON.parse(String(data)) as Record<string, unknown>;
    const i = waiting.findIndex((w) => w.pred(m));
    if (i < 0) return void inbox.push(m);
    // What came before the awaited message is stale for whoever awaits next.
    inbox.length = 0;
    waiting.splice(i, 1)[0]!.resolve(m);
  });
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  const next = <T>(pred: (m: Record<string, unknown>) => boolean): Promise<T> => {
    const i = inbox.findIndex(pred);
    if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0] as T);
    inbox.length = 0;
    return new Promise<T>((resolve, reject) => {
      waiting.push({ pred, resolve: resolve as (m: unknown) => void });
      setTimeout(() => reject(new Error("no such message within 8 s")), 8000);
    });
  };
  return { ws, next };
}

const isUpdate = (m: Record<string, unknown>): boolean => m["type"] === "update";

describe("the page and its files", () => {
  test("the page, its script and its style, with a strict CSP on the page", async () => {
    const page = await fetch(`http://${base}/observer`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const csp = page.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain("unsafe-inline");
    const html = await page.text();
    expect(html).toContain('src="?asset=observer.js"');
    expect(html).not.toMatch(/<script>[^<]/);
    const js = await fetch(`http://${base}/observer?asset=observer.js`);
    expect(js.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect(await js.text()).toContain("new WebSocket");
    const css = await fetch(`http://${base}/observer?asset=observer.css`);
    expect(css.headers.get("content-type")).toBe("text/css; charset=utf-8");
    expect((await fetch(`http://${base}/observer?asset=../package.json`)).status).toBe(404);
    expect((await fetch(`http://${base}/observer`, { method: "POST" })).status).toBe(405);
  });

  test("a peer that allow refuses gets 403, for the page and for the socket", async () => {
    const page = await fetch(`http://${base}/closed`);
    expect(page.status).toBe(403);
    expect(await page.text()).not.toContain("<html");
    expect((await fetch(`http://${base}/closed?asset=observer.js`)).status).toBe(403);
    const ws = new WebSocket(`ws://${base}/closed`);
    const status = await new Promise<number>((resolve) => ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0)));
    expect(status).toBe(403);
  });

  test("a WebSocket opened by another site's page is refused, even from loopback", async () => {
    const ws = new WebSocket(`ws://${base}/observer`, { origin: "http://evil.example" });
    const status = await new Promise<number>((resolve) => ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0)));
    expect(status).toBe(403);
  });

  test("options are checked where they are given", () => {
    expect(() => observer({ allow: "yes" } as never)).toThrow(/allow must be a function/);
    expect(() => observer({ actions: 1 } as never)).toThrow(/actions must be a boolean/);
    expect(() => observer({ sample: 5 } as never)).toThrow(/sample/);
  });
});

describe("the socket's updates", () => {
  test("counts, plots, listeners and a page of processes, sorted and filtered on request", async () => {
    const a = idle();
    const b = idle();
    register("observer-test-b", b);
    join("observer-test-group", b);
    const { ws, next } = await open();
    const first = await next<Update>(isUpdate);
    expect(first.summary.processes).toBeGreaterThanOrEqual(3);
    expect(first.table.total).toBe(first.summary.processes);
    expect(first.table.exact).toBe(true);
    expect(first.listeners.find((l) => l.name === NAME)?.connections).toBeGreaterThanOrEqual(1);
    expect(first.listeners.find((l) => l.name === NAME)?.conns.some((c) => c.transport === "ws" && c.pid !== null)).toBe(true);
    expect(first.groups).toContainEqual({ name: "observer-test-group", members: 1 });

    // Flood a with messages: sorted by mailbox, largest first, it is the top row.
    for (let i = 0; i < 25; i++) send(a, { n: i });
    ws.send(JSON.stringify({ type: "query", sort: "mailbox", desc: true, limit: 2 }));
    const sorted = await next<Update>((m) => isUpdate(m) && (m as unknown as Update).table.rows[0]?.pid === String(a));
    expect(sorted.table.rows[0]!.mailbox).toBe(25);
    expect(sorted.table.rows.length).toBe(2);
    for (let i = 1; i < sorted.table.rows.length; i++) expect(sorted.table.rows[i - 1]!.mailbox).toBeGreaterThanOrEqual(sorted.table.rows[i]!.mailbox);

    // A filter on the registered name leaves that one process.
    ws.send(JSON.stringify({ type: "query", filter: "observer-test-b" }));
    const filtered = await next<Update>((m) => isUpdate(m) && (m as unknown as Update).table.matched === 1);
    expect(filtered.table.rows.map((r) => r.pid)).toEqual([String(b)]);
    expect(filtered.table.rows[0]!.groups).toEqual(["observer-test-group"]);

    // Paging: offset past the first row.
    ws.send(JSON.stringify({ type: "query", offset: 1, limit: 1 }));
    const paged = await next<Update>((m) => isUpdate(m) && (m as unknown as Update).table.offset === 1);
    expect(paged.table.rows.length).toBe(1);

    // The detail of one process, on request.
    ws.send(JSON.stringify({ type: "detail", pid: String(a) }));
    const d = await next<{ detail: { alive: boolean; mailbox: number; queue: string[] } }>((m) => m["type"] === "detail");
    expect(d.detail.alive).toBe(true);
    expect(d.detail.mailbox).toBe(25);
    expect(d.detail.queue[0]).toBe("{ n: 0 }");

    // A second a push comes without being asked, with the plots' points.
    const pushed = await next<Update>(isUpdate);
    expect(pushed.series.processes.length).toBeGreaterThan(0);
    ws.close();
  });

  test("past 10 000 processes the table is a rolling sample, and a sorted top once found stays", async () => {
    const many: Pid[] = [];
    for (let i = 0; i < 30_000; i++) many.push(idle());
    // The newest process is in the third window of 10 000; the two after it do not read it.
    const flooded = many.at(-1)!;
    for (let i = 0; i < 40; i++) send(flooded, i);
    const { ws, next } = await open();
    ws.send(JSON.stringify({ type: "query", sort: "mailbox", desc: true, limit: 1 }));
    const found = await next<Update>((m) => isUpdate(m) && (m as unknown as Update).table.rows[0]?.pid === String(flooded));
    expect(found.table.exact).toBe(false);
    expect(found.table.total).toBeGreaterThan(30_000);
    expect(found.table.sampled).toBeGreaterThanOrEqual(10_000);
    expect(found.table.rows[0]!.mailbox).toBe(40);
    // The next updates read other windows; the row shown before is read again with them.
    for (let i = 0; i < 2; i++) {
      const later = await next<Update>((m) => isUpdate(m) && (m as unknown as Update).table.rows.length === 1);
      expect(later.table.rows[0]!.pid).toBe(String(flooded));
    }
    ws.close();
    for (const pid of many) exit(pid, "kill");
    await until(() => many.every((pid) => pid.proc === null), 5000, "the sample's processes to end");
  }, 30_000);

  test("actions are off by default: kill is refused and the process lives", async () => {
    const victim = idle();
    const { ws, next } = await open();
    ws.send(JSON.stringify({ type: "kill", pid: String(victim) }));
    const res = await next<{ ok: boolean; error: string }>((m) => m["type"] === "action");
    expect(res.ok).toBe(false);
    expect(res.error).toMatch(/actions are off/);
    expect(victim.proc).not.toBeNull();
    ws.close();
  });

  test("with actions: true, kill and send work and each is logged with who asked", async () => {
    const { records } = captureLogs();
    const victim = idle();
    const { ws, next } = await open("/actions");
    ws.send(JSON.stringify({ type: "send", pid: String(victim), message: '{"hello":1}' }));
    expect((await next<{ ok: boolean }>((m) => m["type"] === "action")).ok).toBe(true);
    expect(victim.proc?.queueLength).toBe(1);
    ws.send(JSON.stringify({ type: "send", pid: String(victim), message: "not json" }));
    expect((await next<{ ok: boolean }>((m) => m["type"] === "action")).ok).toBe(false);
    ws.send(JSON.stringify({ type: "kill", pid: String(victim) }));
    expect((await next<{ ok: boolean }>((m) => m["type"] === "action")).ok).toBe(true);
    await until(() => victim.proc === null, 2000, "the killed process to end");
    const logged = records.filter((r) => String(r["msg"]).startsWith("observer:"));
    expect(logged.map((r) => r["msg"])).toEqual(["observer: send", "observer: kill"]);
    expect(logged[1]!["pid"]).toBe(String(victim));
    expect(String(logged[1]!["by"])).toMatch(/^127\.0\.0\.1:\d+$/);
    ws.close();
  });
});
