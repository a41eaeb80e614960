/**
 * The observer page in headless Chromium (Debian's, driven by playwright-core, as
 * test/e2e/browser.test.ts): a WebSocket client connects to a route whose handler can be held
 * busy, and the page must show its connection process appear, its mailbox grow while it is
 * flooded, and its row go when it closes; the plots must move. The page's screenshot is
 * attached to the test's output (vitest's attachments); E2E_SCREENSHOT_DIR keeps a copy.
 *
 * Without Chromium the test fails under CI (process.env.CI) and is skipped elsewhere.
 */
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pino } from "pino";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import WebSocket from "ws";
import { cancelTimer, compileRoutes, exit, observer, send, spawn, spawnLink, startClear, startSupervisor, startTimer, stopListener, stopSupervisor, upgrade, whichChildren, Pid, type WebSocketHandler } from "../../src/index.js";
import { captureLogs } from "../support/helpers.js";

const CHROMIUM = process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium";
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const IN_CI = Boolean(process.env["CI"]);
const NAME = "observer-browser";
const WAIT = 8_000;

/** Releases the /flood handler once it is holding its mailbox. */
let release: () => void = () => {};

/** "hold" makes the callback return a promise that settles on release(): meanwhile its mailbox fills. */
const flood: WebSocketHandler<null> = {
  init: (req) => upgrade(req, null),
  websocketHandle(frame, state) {
    if (frame.type === "text" && frame.data === "hold") return new Promise((resolve) => (release = () => resolve({ type: "ok", state })));
    return { type: "ok", state };
  },
};

if (!HAVE_CHROMIUM && IN_CI) {
  test("the observer's browser test needs Chromium", () => {
    throw new Error(`Chromium is not at ${CHROMIUM}, and CI is set: install it or set CHROMIUM_PATH.`);
  });
}

describe.skipIf(!HAVE_CHROMIUM)("the observer page in headless Chromium", () => {
  let base = "";
  let browser: Browser | undefined;
  let shotDir = "";
  const pageErrors: string[] = [];

  beforeAll(async () => {
    const dispatch = compileRoutes([
      {
        host: "_",
        paths: [
          ["/observer", observer()],
          ["/closed", observer({ allow: (req) => req.peer.address === "10.9.8.7" })],
          ["/flood", flood],
        ],
      },
    ]);
    const l = await startClear(NAME, { port: 0, host: "127.0.0.1" }, { dispatch, logger: pino({ level: "silent" }) });
    base = `http://127.0.0.1:${l.port}`;
    shotDir = await mkdtemp(path.join(tmpdir(), "corral-observer-"));
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      timeout: 15_000,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking", "--no-proxy-server", "--no-first-run"],
    });
  }, 30_000);

  afterAll(async () => {
    release();
    await browser?.close().catch(() => {});
    await stopListener(NAME);
    await rm(shotDir, { recursive: true, force: true });
  }, 30_000);

  async function openObserver(): Promise<Page> {
    const page = await browser!.newPage({ viewport: { width: 1400, height: 1000 } });
    page.setDefaultTimeout(WAIT);
    page.on("pageerror", (err) => pageErrors.push(`pageerror: ${err.message}`));
    page.on("console", (msg) => {
      // A failed load is reported below with its URL.
      if (msg.type() === "error" && !msg.text().startsWith("Failed to load resource")) pageErrors.push(`console: ${msg.text()}`);
    });
    page.on("response", (res) => {
      // The browser's own request for a favicon is not the page's doing.
      if (res.status() >= 400 && new URL(res.url()).pathname !== "/favicon.ico") pageErrors.push(`${res.status()} ${res.url()}`);
    });
    const res = await page.goto(`${base}/observer`);
    expect(res?.status()).toBe(200);
    return page;
  }

  /** The table's rows as [pid, behaviour, mailbox]. (Page scripts are strings: the project's tsconfig has no DOM types.) */
  async function rows(page: Page): Promise<[string, string, number][]> {
    const script = `Array.from(document.querySelectorAll("#proc-rows > tr"), (tr) => [tr.cells[0].textContent, tr.cells[2].textContent, Number(tr.cells[4].textContent)])`;
    return (await page.evaluate(script)) as [string, string, number][];
  }

  const plotPixels = (page: Page, name: string): Promise<string> => page.evaluate(`document.getElementById("plot-${name}").toDataURL()`) as Promise<string>;

  test("a connection appears, its mailbox grows under a flood, its row goes when it closes; the plots move", async ({ annotate }) => {
    const page = await openObserver();
    await expect.poll(() => page.textContent("#link"), { timeout: WAIT }).toBe("live");
    await expect.poll(async () => (await rows(page)).length, { timeout: WAIT }).toBeGreaterThan(0);
    const plotBefore = await plotPixels(page, "processes");

    await page.fill("#filter", "/flood");
    await expect.poll(async () => (await rows(page)).length, { timeout: WAIT }).toBe(0);

    const client = new WebSocket(`${base.replace("http", "ws")}/flood`);
    await new Promise((resolve, reject) => {
      client.once("open", resolve);
      client.once("error", reject);
    });
    await expect.poll(async () => (await rows(page)).map((r) => r[1]), { timeout: WAIT }).toEqual(["/flood"]);
    const pid = (await rows(page))[0]![0];
    await expect.poll(() => page.textContent("#v-connections"), { timeout: WAIT }).toBe("2");

    client.send("hold");
    for (let i = 0; i < 300; i++) client.send(`flood ${i}`);
    await expect.poll(async () => (await rows(page))[0]?.[2] ?? 0, { timeout: WAIT }).toBeGreaterThanOrEqual(300);

    // The detail of the flooded process, on click.
    await page.click(`#proc-rows tr[data-pid="${pid}"]`);
    await expect.poll(() => page.textContent("#detail-pid"), { timeout: WAIT }).toBe(pid);
    expect(await page.textContent("#detail-queue")).toContain("flood 0");
    // Actions were not asked for: no kill button.
    expect(await page.isVisible("#kill")).toBe(false);

    await page.fill("#filter", "");
    const shot = path.join(shotDir, "observer.png");
    await page.screenshot({ path: shot, fullPage: true });
    await annotate("the observer page, a connection flooded", { path: shot, contentType: "image/png" });
    const keep = process.env["E2E_SCREENSHOT_DIR"];
    if (keep !== undefined) {
      await mkdir(keep, { recursive: true });
      await copyFile(shot, path.join(keep, "observer.png"));
    }

    release();
    client.close();
    await page.fill("#filter", "/flood");
    await expect.poll(async () => (await rows(page)).length, { timeout: WAIT }).toBe(0);

    // A point a second: the processes plot is drawn again with new points.
    await expect.poll(() => plotPixels(page, "processes"), { timeout: WAIT }).not.toBe(plotBefore);
    expect(pageErrors).toEqual([]);
    await page.close();
  }, 60_000);

  test("the supervisor tree with a restart, the next timers, the nodes; a supervisor's detail lists its children and restarts", async () => {
    // The crash below is reported; kept in memory, not printed.
    captureLogs();
    const worker = () => spawnLink(async (ctx) => {
      if ((await ctx.receive()) === "crash") throw new Error("boom in the browser test");
    });
    const sup = startSupervisor({ strategy: "one_for_one", intensity: 3, children: [{ id: "crashy", start: worker }] }, { name: "browser-sup" });
    const sleeper = spawn(async () => void (await new Promise(() => {})));
    const timer = startTimer(45_000, sleeper, "wake");
    const page = await openObserver();
    try {
      const tree = `#sup-tree li[data-pid="${String(sup)}"]`;
      await expect.poll(() => page.textContent(tree).catch(() => ""), { timeout: WAIT }).toContain("browser-sup — one_for_one, at most 3 restarts");
      expect(await page.textContent(tree)).toContain("crashy");
      await expect.poll(() => page.textContent("#timer-rows"), { timeout: WAIT }).toContain(String(sleeper));
      expect(await page.textContent("#timer-rows")).toContain("timeout");
      expect(await page.textContent("#node-rows")).toContain("(this node)");
      expect(await page.textContent("#node-rows")).toContain("viewing");

      const child = (await whichChildren(sup))[0]!.pid;
      if (!(child instanceof Pid)) throw new Error(`the child is not running: ${String(child)}`);
      send(child, "crash");
      await expect.poll(() => page.textContent(`${tree} .restarts`).catch(() => ""), { timeout: WAIT }).toContain("last: crashy");
      expect(await page.textContent(`${tree} .restarts`)).toContain("boom in the browser test");

      await page.fill("#filter", "browser-sup");
      await page.click(`#proc-rows tr[data-pid="${String(sup)}"]`);
      await expect.poll(() => page.isVisible("#detail-sup"), { timeout: WAIT }).toBe(true);
      expect(await page.textContent("#detail-children")).toContain("crashy");
      expect(await page.textContent("#detail-restarts")).toContain("crashy: { crash: Error: boom in the browser test }");
      expect(await page.textContent("#detail-fields")).toContain("one_for_one");
      expect(pageErrors).toEqual([]);
    } finally {
      await page.close();
      cancelTimer(timer);
      exit(sleeper, "kill");
      await stopSupervisor(sup);
    }
  }, 60_000);

  test("a peer that allow refuses gets 403 in the browser too", async () => {
    const page = await browser!.newPage();
    const res = await page.goto(`${base}/closed`);
    expect(res?.status()).toBe(403);
    expect(await page.locator("#proc-table").count()).toBe(0);
    await page.close();
  });
});
