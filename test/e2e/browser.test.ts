/**
 * The demo page in a real browser: Debian's Chromium, headless, driven by playwright-core.
 *
 * The server runs in-process (startClear with the demo's own handlers and page), with the
 * guide's heartbeat shortened to 300 ms so the timer push shows up quickly. What the test
 * does is what a visitor does: click, type, read the logs, and look at the page at a desktop
 * and a phone width.
 *
 * Without Chromium the test fails under CI (process.env.CI) and is skipped, with the reason
 * in its name, elsewhere. CHROMIUM_PATH overrides /usr/bin/chromium; E2E_SCREENSHOT_DIR keeps
 * the screenshots (otherwise they go to a temporary directory removed afterwards).
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pino } from "pino";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { broadcastHandler } from "../../app/demo/broadcast.js";
import { chatHandler } from "../../app/demo/chat.js";
import { echoHandler } from "../../app/demo/echo.js";
import { guideHandler } from "../../app/demo/guide.js";
import { PRIV_DIR } from "../../app/demo/routes.js";
import { statsHandler } from "../../app/demo/stats.js";
import { compileRoutes, startClear, staticDir, staticFile, stopListener, type Dispatch } from "../../src/index.js";

const CHROMIUM = process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium";
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const IN_CI = Boolean(process.env["CI"]);
const NAME = "browser-e2e";
const HEARTBEAT = 300;
/** How long any one expectation waits for the page (the guide's greeting alone takes 1 s). */
const WAIT = 5_000;

/** The demo's routes as demoDispatch builds them, but with a short heartbeat. */
function dispatch(): Dispatch {
  return compileRoutes([
    {
      host: "_",
      paths: [
        ["/", staticFile(`${PRIV_DIR}index.html`, { charset: "utf-8" })],
        ["/websocket", guideHandler, { heartbeat: HEARTBEAT }],
        ["/echo", echoHandler],
        ["/chat", chatHandler],
        ["/broadcast", broadcastHandler],
        ["/api/stats", statsHandler, { listener: NAME }],
        ["/static/[...]", staticDir(`${PRIV_DIR}static`, { charset: "utf-8" })],
      ],
    },
  ]);
}

/** Width and height from a PNG's IHDR chunk; throws unless the bytes are a PNG. */
function pngSize(buf: Buffer): { width: number; height: number } {
  const magic = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  if (buf.length < 24 || !buf.subarray(0, 8).equals(magic) || buf.toString("latin1", 12, 16) !== "IHDR") {
    throw new Error(`not a PNG (${buf.length} bytes)`);
  }
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
}

if (!HAVE_CHROMIUM && IN_CI) {
  test("browser e2e needs Chromium", () => {
    throw new Error(
      `Chromium is not at ${CHROMIUM}, and CI is set: the browser test must run in CI. ` +
        "Install it (apt-get install -y --no-install-recommends chromium, as .ci/run does) or set CHROMIUM_PATH.",
    );
  });
}

if (!HAVE_CHROMIUM && !IN_CI) {
  console.warn(`browser.test.ts: skipped, no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH); under CI this fails instead.`);
}

describe.skipIf(!HAVE_CHROMIUM)(
  HAVE_CHROMIUM ? "the demo page in headless Chromium" : `the demo page in headless Chromium (skipped: no Chromium at ${CHROMIUM}; CI is not set)`,
  () => {
    let base = "";
    let browser: Browser | undefined;
    let shotDir = "";
    let keepShots = false;
    const contexts: BrowserContext[] = [];
    /** Uncaught page errors and console errors, from every page: there should be none. */
    const pageErrors: string[] = [];

    async function openPage(options: Parameters<Browser["newContext"]>[0] = {}): Promise<Page> {
      if (browser === undefined) throw new Error("no browser");
      const context = await browser.newContext(options);
      contexts.push(context);
      const page = await context.newPage();
      page.setDefaultTimeout(WAIT);
      page.on("pageerror", (err) => pageErrors.push(`pageerror: ${err.message}`));
      page.on("console", (msg) => {
        // A failed load is reported below with its URL.
        if (msg.type() === "error" && !msg.text().startsWith("Failed to load resource")) pageErrors.push(`console: ${msg.text()}`);
      });
      page.on("requestfailed", (req) => pageErrors.push(`request failed: ${req.url()} ${req.failure()?.errorText ?? ""}`));
      page.on("response", (res) => {
        // The demo has no favicon; the browser's own request for one is not the page's doing.
        if (res.status() >= 400 && new URL(res.url()).pathname !== "/favicon.ico") pageErrors.push(`${res.status()} ${res.url()}`);
      });
      const res = await page.goto(`${base}/`);
      expect(res?.status()).toBe(200);
      return page;
    }

    /** The log lines of a list, without their clock prefix. */
    // (Page scripts are strings: the project's tsconfig has no DOM types.)
    async function lines(page: Page, list: string): Promise<string[]> {
      const script = `Array.from(document.querySelectorAll(${JSON.stringify(`${list} > li`)}), (li) =>
        Array.from(li.childNodes).filter((n) => !(n.classList && n.classList.contains("t"))).map((n) => n.textContent).join(""))`;
      return (await page.evaluate(script)) as string[];
    }

    async function joinChat(page: Page, name: string): Promise<void> {
      await page.fill("#chat-name", name);
      await page.click("#chat-join-button");
      await expect.poll(() => page.textContent("#chat-status"), { timeout: WAIT }).toBe("joined");
      await expect.poll(() => lines(page, "#chat-log"), { timeout: WAIT }).toContain(`you are ${name}`);
    }

    async function say(page: Page, text: string): Promise<void> {
      await page.fill("#chat-text", text);
      await page.press("#chat-text", "Enter");
    }

    const stat = async (page: Page, id: string): Promise<string> => ((await page.textContent(`#stat-${id}`)) ?? "").trim();

    beforeAll(async () => {
      const listener = await startClear(NAME, { port: 0, host: "127.0.0.1" }, { dispatch: dispatch(), logger: pino({ level: "silent" }) });
      base = `http://127.0.0.1:${listener.port}`;
      keepShots = process.env["E2E_SCREENSHOT_DIR"] !== undefined;
      shotDir = keepShots ? path.resolve(process.env["E2E_SCREENSHOT_DIR"]!) : await mkdtemp(path.join(tmpdir(), "corral-shots-"));
      await mkdir(shotDir, { recursive: true });
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        timeout: 15_000,
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-dev-shm-usage",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-quic",
          "--disable-sync",
          "--no-proxy-server",
          "--no-first-run",
        ],
      });
    }, 30_000);

    afterAll(async () => {
      for (const context of contexts) await context.close().catch(() => {});
      await browser?.close().catch(() => {});
      await stopListener(NAME);
      if (!keepShots && shotDir !== "") await rm(shotDir, { recursive: true, force: true });
    }, 30_000);

    test("guide, chat, broadcast, stats; screenshots at desktop and phone widths", async () => {
      const alice = await openPage({ viewport: { width: 1280, height: 900 } });

      // The stats panel fills in from /api/stats.
      for (const id of ["processes", "connections", "hibernated"]) {
        await expect.poll(() => stat(alice, id), { timeout: WAIT }).toMatch(/^\d+$/);
      }
      await expect.poll(() => stat(alice, "uptime"), { timeout: WAIT }).toMatch(/^\d+(s|m)$/);

      // The guide's handler: connect, the greeting, an answer, the timer's push.
      expect(await alice.textContent("#guide-status")).toBe("disconnected");
      expect(await alice.isDisabled("#guide-send")).toBe(true);
      await alice.click("#guide-connect");
      await expect.poll(() => alice.textContent("#guide-status"), { timeout: WAIT }).toBe("connected");
      expect(await alice.isDisabled("#guide-connect")).toBe(true);
      expect(await alice.isEnabled("#guide-text")).toBe(true);
      await expect.poll(() => lines(alice, "#guide-log"), { timeout: WAIT }).toContain("Hello!");
      await alice.fill("#guide-text", "howdy from Chromium");
      await alice.click("#guide-send");
      expect(await alice.inputValue("#guide-text")).toBe("");
      await expect.poll(() => lines(alice, "#guide-log"), { timeout: WAIT }).toContain("That's what she said! howdy from Chromium");
      expect(await lines(alice, "#guide-log")).toContain("howdy from Chromium"); // the outgoing line
      await expect.poll(async () => (await lines(alice, "#guide-log")).filter((l) => l === "How' you doin'?").length, { timeout: WAIT }).toBeGreaterThanOrEqual(2);

      // The chat: two visitors, each sees the other join and speak.
      await joinChat(alice, "alice");
      const bob = await openPage({ viewport: { width: 1280, height: 900 } });
      await joinChat(bob, "bob");
      await expect.poll(() => lines(alice, "#chat-log"), { timeout: WAIT }).toContain("bob joined");
      await say(bob, "hi alice");
      await expect.poll(() => lines(alice, "#chat-log"), { timeout: WAIT }).toContain("bob: hi alice");
      await expect.poll(() => lines(bob, "#chat-log"), { timeout: WAIT }).toContain("bob: hi alice");
      await say(alice, "hi bob");
      await expect.poll(() => lines(bob, "#chat-log"), { timeout: WAIT }).toContain("alice: hi bob");
      expect(await alice.inputValue("#chat-text")).toBe("");

      // POST /broadcast from app code (here: the test) reaches both pages.
      const res = await fetch(`${base}/broadcast`, { method: "POST", body: "yeehaw, everyone" });
      expect(res.status).toBe(202);
      expect(await res.json()).toEqual({ reached: 2 });
      for (const page of [alice, bob]) {
        await expect.poll(() => lines(page, "#chat-log"), { timeout: WAIT }).toContain("broadcast: yeehaw, everyone");
      }
      // ...and so does the page's own broadcast form.
      await bob.fill("#broadcast-text", "from the form");
      await bob.click("#broadcast-send");
      await expect.poll(() => lines(alice, "#chat-log"), { timeout: WAIT }).toContain("broadcast: from the form");
      await expect.poll(() => bob.inputValue("#broadcast-text"), { timeout: WAIT }).toBe("");

      // Three WebSockets are open (alice's guide and chat, bob's chat): the stats say so.
      await expect.poll(async () => Number(await stat(alice, "connections")), { timeout: WAIT }).toBeGreaterThanOrEqual(2);
      expect(Number(await stat(alice, "processes"))).toBeGreaterThanOrEqual(3);

      // The desktop screenshot, with everything on show.
      const desktopFile = path.join(shotDir, "desktop-1280.png");
      await alice.screenshot({ path: desktopFile, fullPage: true });
      const desktop = pngSize(await readFile(desktopFile));
      expect(desktop.width).toBe(1280);
      expect(desktop.height).toBeGreaterThanOrEqual(900);

      // A phone: the same page at 390x844, joined, with no sideways scrolling.
      const phone = await openPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
      await phone.click("#guide-connect");
      await expect.poll(() => lines(phone, "#guide-log"), { timeout: WAIT }).toContain("Hello!");
      await joinChat(phone, "carol");
      await expect.poll(() => lines(alice, "#chat-log"), { timeout: WAIT }).toContain("carol joined");
      await say(alice, "welcome, carol");
      await expect.poll(() => lines(phone, "#chat-log"), { timeout: WAIT }).toContain("alice: welcome, carol");
      await expect.poll(() => stat(phone, "connections"), { timeout: WAIT }).toMatch(/^\d+$/);
      const overflow = (await phone.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")) as number;
      expect(overflow, "the page scrolls sideways at 390 px").toBeLessThanOrEqual(0);
      const phoneFile = path.join(shotDir, "phone-390.png");
      await phone.screenshot({ path: phoneFile, fullPage: true });
      const phoneShot = pngSize(await readFile(phoneFile));
      expect(phoneShot.width).toBe(390 * 2);
      expect(phoneShot.height).toBeGreaterThanOrEqual(844 * 2);

      // Leaving: the guide's Disconnect closes with 1000, bob's Leave tells alice.
      await alice.click("#guide-disconnect");
      await expect.poll(() => lines(alice, "#guide-log"), { timeout: WAIT }).toContain("closed (1000)");
      expect(await alice.textContent("#guide-status")).toBe("disconnected");
      expect(await alice.isEnabled("#guide-connect")).toBe(true);
      await bob.click("#chat-leave");
      await expect.poll(() => lines(bob, "#chat-log"), { timeout: WAIT }).toContain("left the room");
      await expect.poll(() => lines(alice, "#chat-log"), { timeout: WAIT }).toContain("bob left");
      expect(await bob.textContent("#chat-status")).toBe("not joined");

      expect(pageErrors).toEqual([]);
    }, 60_000);
  },
);
