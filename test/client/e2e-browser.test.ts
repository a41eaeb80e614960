/**
 * corral/client in a real browser (Debian's Chromium, headless, driven by playwright-core)
 * against the real server: the page loads the client file as served by `staticFile`, and
 * opens a session on a `bullet()` route (test/support/session-app.ts is the handler) with
 * the default transport list, so each transport is reached the way a page reaches it: the
 * one before it fails.
 *
 * - WebSocket is broken with `page.routeWebSocket`, whose handler closes the page's socket
 *   before it says anything (Playwright routes WebSockets by patching the page's
 *   `WebSocket`; `page.route` does not see them).
 * - The event stream is broken with `page.route`, which aborts its request (the client reads
 *   it with `fetch`, which `page.route` sees) as a network error.
 *
 * On each transport, server push flows (a timer stream and app code's `send(pid)`) while the
 * page sends its own numbered frames, and the session's relay process is killed mid-stream:
 * the browser finds its transport gone by itself (a WebSocket closed, a stream cut, a poll
 * answered 503) and resumes, every number once. One more test takes the browser offline
 * and back (the page's offline and online events).
 *
 * Without Chromium the test fails under CI (process.env.CI) and is skipped elsewhere, as the
 * other browser tests do; CHROMIUM_PATH overrides /usr/bin/chromium.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";
import type { CloseInfo, Connection, ConnectOptions, TransportName } from "corral/client";
import { bullet, exit, processes, processInfo, send, staticFile, type HttpHandler, type Pid } from "../../src/index.js";
import { leakCheck, testServer, type LeakCheck, type TestServer } from "../../src/testing.js";
import { until } from "../support/helpers.js";
import { newLog, sessionApp, type AppMessage, type SessionLog } from "../support/session-app.js";

const CHROMIUM = process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium";
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const IN_CI = Boolean(process.env["CI"]);
const CLIENT_FILE = fileURLToPath(new URL("../../client/corral-client.js", import.meta.url));

/** What the page keeps of its one connection (binary frames as arrays of bytes, to cross into the test). */
interface Recorded {
  conn: Connection;
  messages: (string | number[])[];
  events: string[];
  closes: CloseInfo[];
}
interface PageApi {
  start(options: Pick<ConnectOptions, "transports">): void;
  pump(every: number): void;
  stopPump(): number;
  r: Recorded;
}

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>corral/client, end to end</title>
<script type="module">
import { connect } from "/corral-client.js";
let pumping, sent = 0;
window.start = (options) => {
  const r = { messages: [], events: [], closes: [] };
  r.conn = connect("/live", {
    ...options,
    backoff: { initialMs: 20, maxMs: 100 },
    onopen: () => r.events.push("open"),
    onmessage: (d) => r.messages.push(typeof d === "string" ? d : Array.from(d)),
    ondisconnect: () => r.events.push("disconnect"),
    onreconnect: () => r.events.push("reconnect"),
    onclose: (info) => { r.events.push("close"); r.closes.push(info); },
  });
  window.r = r;
};
window.pump = (every) => { pumping = setInterval(() => window.r.conn.send("c:" + ++sent), every); };
window.stopPump = () => { clearInterval(pumping); return sent; };
</script>`;

const page200: HttpHandler = {
  init(req) {
    req.reply(200, { "content-type": "text/html; charset=utf-8" }, PAGE);
    return { type: "ok", req, state: null };
  },
};

const numbered = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i + 1}`);

if (!HAVE_CHROMIUM && IN_CI) {
  test("the client's end-to-end browser test needs Chromium", () => {
    throw new Error(`Chromium is not at ${CHROMIUM}, and CI is set. Install it or set CHROMIUM_PATH.`);
  });
}

describe.skipIf(!HAVE_CHROMIUM)(HAVE_CHROMIUM ? "corral/client in headless Chromium, against bullet()" : `corral/client in headless Chromium, against bullet() (skipped: no Chromium at ${CHROMIUM}; CI is not set)`, () => {
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let server: TestServer;
  let log: SessionLog;
  let leaks: LeakCheck;
  let pageErrors: string[];

  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      timeout: 15_000,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update", "--disable-quic", "--disable-sync", "--no-proxy-server", "--no-first-run"],
    });
  }, 30_000);
  afterAll(async () => {
    await browser?.close();
  });

  beforeEach(async () => {
    leaks = leakCheck();
    log = newLog();
    server = await testServer(
      [
        ["/", page200],
        ["/corral-client.js", staticFile(CLIENT_FILE, { charset: "utf-8" })],
        ["/live", bullet(sessionApp(log), { heartbeatMs: 250, resumeWindowMs: 3000 })],
      ],
      // A browser keeps idle connections open; the listener need not wait for them.
      { shutdownTimeout: 100 },
    );
    context = await browser.newContext();
    page = await context.newPage();
    pageErrors = [];
    page.on("pageerror", (e) => pageErrors.push(e.message));
  });
  afterEach(async () => {
    await context.close();
    await server.stop();
    await leaks.assert();
  });

  const load = async () => {
    await page.goto(server.url("/"));
    await page.waitForFunction(() => "start" in globalThis);
  };
  const start = (options: Pick<ConnectOptions, "transports"> = {}) => page.evaluate((o) => (globalThis as unknown as PageApi).start(o), options);
  const recorded = () =>
    page.evaluate(() => {
      const { r } = globalThis as unknown as PageApi;
      return { messages: r.messages, events: r.events, closes: r.closes, state: r.conn.state, transport: r.conn.transport };
    });
  const when = (pred: string, timeout = 5000) => page.waitForFunction(pred, undefined, { timeout, polling: 10 });
  const texts = (messages: (string | number[])[], prefix: string) => messages.filter((m): m is string => typeof m === "string" && m.startsWith(prefix));
  /** The session's relay processes: its WebSocket connection, event stream or held poll. */
  const relays = (): Pid[] => processes().filter((p) => processInfo(p)?.behaviour === "/live");
  const killRelay = async () => {
    await until(() => relays().length > 0, 3000, "a relay to kill");
    exit(relays()[0]!, "kill");
  };

  for (const [transport, broken] of [
    ["websocket", []],
    ["eventsource", ["websocket"]],
    ["longpoll", ["websocket", "eventsource"]],
  ] as const satisfies readonly (readonly [TransportName, readonly TransportName[]])[]) {
    const how = broken.length === 0 ? "" : ` (${broken.join(" and ")} broken by the page's routes)`;
    test(`${transport}${how}: echo, server push flowing, a relay killed twice mid-stream and resumed; every number once, in order, both ways`, async () => {
      let wsRouted = 0;
      let esAborted = 0;
      if (broken.includes("websocket" as never)) {
        await page.routeWebSocket(
          (url) => url.pathname === "/live",
          (ws) => {
            wsRouted++;
            void ws.close({ code: 1011, reason: "no WebSocket here" });
          },
        );
      }
      if (broken.includes("eventsource" as never)) {
        await page.route(
          (url) => url.searchParams.get("t") === "es",
          (route) => {
            esAborted++;
            return route.abort("connectionreset");
          },
        );
      }
      await load();
      await start();
      await when("window.r.conn.state === 'open'");
      expect((await recorded()).transport).toBe(transport);
      if (broken.includes("websocket" as never)) expect(wsRouted).toBeGreaterThan(0);
      if (broken.includes("eventsource" as never)) expect(esAborted).toBeGreaterThan(0);

      // Echo, text and binary.
      await page.evaluate(() => {
        const { r } = globalThis as unknown as PageApi;
        r.conn.send("hello");
        r.conn.send(new Uint8Array([0, 1, 254, 255]));
      });
      await when("window.r.messages.length === 2");
      expect((await recorded()).messages).toEqual(["hello", [0, 1, 254, 255]]);

      // Push both ways while the relay dies twice; slower on long-poll, where the relay is a poll held only while nothing is waiting.
      const pid = log.pids[0]!;
      const every = transport === "longpoll" ? 40 : 10;
      await page.evaluate((ms) => {
        const { r, pump } = globalThis as unknown as PageApi;
        r.conn.send(`stream:${ms}`);
        pump(ms);
      }, every);
      let p = 0;
      const pushing = setInterval(() => send<AppMessage>(pid, { push: `p:${++p}` }), every);
      try {
        for (let i = 1; i <= 2; i++) {
          const heard = log.got.length;
          await until(() => log.got.length >= heard + 10 && p >= 10 * i, 5000, `traffic before kill ${i}`);
          await killRelay();
          await when(`window.r.events.filter((e) => e === "reconnect").length === ${i}`);
        }
        const heard = log.got.length;
        await until(() => log.got.length >= heard + 10, 5000, "traffic after the last resume");
      } finally {
        clearInterval(pushing);
      }
      const c = await page.evaluate(() => (globalThis as unknown as PageApi).stopPump());
      send<AppMessage>(pid, { halt: true });
      await when(`window.r.messages.some((m) => typeof m === "string" && m.startsWith("s-end:")) && window.r.messages.filter((m) => typeof m === "string" && m.startsWith("p:")).length === ${p}`);
      await until(() => log.got.length === c, 5000, "every frame from the page");

      const r = await recorded();
      const last = Number(texts(r.messages, "s-end:")[0]!.slice("s-end:".length));
      expect(last).toBeGreaterThan(10);
      expect(texts(r.messages, "s:")).toEqual(numbered("s:", last).map((s) => `${s}:${String(pid)}`));
      expect(texts(r.messages, "p:")).toEqual(numbered("p:", p));
      expect(log.got).toEqual(numbered("c:", c));
      expect(r.messages).toHaveLength(2 + last + p + 1);
      expect(r.events).toEqual(["open", "disconnect", "reconnect", "disconnect", "reconnect"]);
      expect(r.transport).toBe(transport);
      expect(log).toMatchObject({ inits: 1, websocketInits: 1, pids: [pid], terminates: [] });

      await page.evaluate(() => (globalThis as unknown as PageApi).r.conn.close(4000, "done"));
      await until(() => log.terminates.length === 1, 3000, "terminate");
      expect(log.terminates).toEqual([{ remote: { code: 4000, reason: "done" } }]);
      expect(pageErrors).toEqual([]);
    }, 30_000);
  }

  test("the browser offline, then online: the session resumes on its pid; frames sent offline arrive once", async () => {
    await load();
    await start();
    await when("window.r.conn.state === 'open'");
    const pid = log.pids[0]!;
    await context.setOffline(true);
    await when("window.r.conn.state === 'reconnecting'");
    send<AppMessage>(pid, { push: "while offline" });
    await page.evaluate(() => {
      const { r } = globalThis as unknown as PageApi;
      for (let i = 1; i <= 5; i++) r.conn.send(`c:${i}`);
    });
    await context.setOffline(false);
    await when("window.r.events.includes('reconnect') && window.r.messages.length === 1");
    await until(() => log.got.length === 5, 3000, "the frames sent offline");
    expect(log.got).toEqual(numbered("c:", 5));
    const r = await recorded();
    expect(r.messages).toEqual(["while offline"]);
    expect(r.events).toEqual(["open", "disconnect", "reconnect"]);
    expect(log).toMatchObject({ inits: 1, websocketInits: 1, pids: [pid], terminates: [] });
    await page.evaluate(() => (globalThis as unknown as PageApi).r.conn.close());
    await until(() => log.terminates.length === 1, 3000, "terminate");
  });
});
