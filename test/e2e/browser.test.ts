/**
 * The demo page in a real browser: Debian's Chromium, headless, driven by playwright-core.
 *
 * The server runs in-process (startClear with the demo's own routes, demoDispatch), with the
 * guide's heartbeat shortened to 300 ms so the timer push shows up quickly. What the test
 * does is what a visitor does: click, type, read the logs, and look at the page at a desktop
 * and a phone width; then the page's sessions on each transport (the switch), dropped and
 * resumed (the drop button), and on a browser without WebSocket.
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
import { demoDispatch } from "../../app/demo/routes.js";
import { startClear, stopListener } from "../../src/index.js";

const CHROMIUM = process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium";
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const IN_CI = Boolean(process.env["CI"]);
const NAME = "browser-e2e";
const HEARTBEAT = 300;
/**
 * The sessions' heartbeat. A long-poll resume carries no hello, so the client sees an idle
 * session (the game, waiting for a move) back only when its first poll is answered: at the
 * latest after a heartbeat, 25 s by default. Short here, so that the test does not wait for it.
 */
const SESSION_HEARTBEAT = 1500;
/** A pid as the page shows it: <node.id>. */
const PID = /^<[^<>\s]+\.\d+>$/;
/** How long any one expectation waits for the page (the guide's greeting alone takes 1 s). */
const WAIT = 5_000;

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

    /** What each page asked the server for: the URLs of its WebSockets and of its other requests. */
    const traffic = new WeakMap<Page, { sockets: string[]; requests: string[] }>();

    /** A new page on the demo; initScript runs before the page's own scripts (outside its CSP). */
    async function openPage(options: Parameters<Browser["newContext"]>[0] = {}, initScript?: string): Promise<Page> {
      if (browser === undefined) throw new Error("no browser");
      const context = await browser.newContext(options);
      contexts.push(context);
      const page = await context.newPage();
      page.setDefaultTimeout(WAIT);
      if (initScript !== undefined) await page.addInitScript(initScript);
      const seen = { sockets: [] as string[], requests: [] as string[] };
      traffic.set(page, seen);
      page.on("websocket", (ws) => seen.sockets.push(ws.url()));
      page.on("request", (req) => seen.requests.push(req.url()));
      page.on("pageerror", (err) => pageErrors.push(`pageerror: ${err.message}`));
      page.on("console", (msg) => {
        // A failed load is reported below with its URL.
        if (msg.type() === "error" && !msg.text().startsWith("Failed to load resource")) pageErrors.push(`console: ${msg.text()}`);
      });
      page.on("requestfailed", (req) => {
        // The session client cancels its own event streams and polls when a session drops or closes.
        if (req.failure()?.errorText === "net::ERR_ABORTED" && new URL(req.url()).pathname.startsWith("/live/")) return;
        pageErrors.push(`request failed: ${req.url()} ${req.failure()?.errorText ?? ""}`);
      });
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
      const listener = await startClear(NAME, { port: 0, host: "127.0.0.1" }, { dispatch: demoDispatch(NAME, { guideHeartbeat: HEARTBEAT, sessionHeartbeatMs: SESSION_HEARTBEAT }), logger: pino({ level: "silent" }) });
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
      // A session over the best transport, with its pid from the server's first frame.
      expect(await alice.textContent("#guide-transport")).toBe("websocket");
      await expect.poll(() => alice.textContent("#guide-pid"), { timeout: WAIT }).toMatch(PID);
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
      expect(await alice.textContent("#guide-pid")).toBe("–");
      expect(await alice.isEnabled("#guide-connect")).toBe(true);
      await bob.click("#chat-leave");
      await expect.poll(() => lines(bob, "#chat-log"), { timeout: WAIT }).toContain("left the room");
      await expect.poll(() => lines(alice, "#chat-log"), { timeout: WAIT }).toContain("bob left");
      expect(await bob.textContent("#chat-status")).toBe("not joined");

      expect(pageErrors).toEqual([]);
    }, 60_000);

    /** The texts of a chat log's lines from name, in the order they arrived. */
    const from = async (page: Page, name: string): Promise<string[]> => (await lines(page, "#chat-log")).filter((l) => l.startsWith(`${name}: `)).map((l) => l.slice(name.length + 2));

    for (const transport of ["websocket", "eventsource", "longpoll"] as const) {
      test(`on ${transport}${transport === "websocket" ? "" : " (forced by the switch)"}: the guide, a chat between two pages, the game, and a drop: what was said meanwhile arrives once, in order`, async () => {
        const errorsBefore = pageErrors.length;
        const alice = await openPage({ viewport: { width: 1280, height: 900 } });
        const bob = await openPage({ viewport: { width: 1280, height: 900 } });
        if (transport !== "websocket") for (const page of [alice, bob]) await page.selectOption("#transport", transport);

        // The guide: its greeting, an answer, its pushes, over the transport shown.
        await alice.click("#guide-connect");
        await expect.poll(() => alice.textContent("#guide-status"), { timeout: WAIT }).toBe("connected");
        expect(await alice.textContent("#guide-transport")).toBe(transport);
        await expect.poll(() => alice.textContent("#guide-pid"), { timeout: WAIT }).toMatch(PID);
        await expect.poll(() => lines(alice, "#guide-log"), { timeout: WAIT }).toContain("Hello!");
        await alice.fill("#guide-text", `over ${transport}`);
        await alice.click("#guide-send");
        await expect.poll(() => lines(alice, "#guide-log"), { timeout: WAIT }).toContain(`That's what she said! over ${transport}`);
        await expect.poll(async () => (await lines(alice, "#guide-log")).filter((l) => l === "How' you doin'?").length, { timeout: WAIT }).toBeGreaterThanOrEqual(2);

        // The chat, both ways.
        await joinChat(alice, `alice-${transport}`);
        await joinChat(bob, `bob-${transport}`);
        for (const page of [alice, bob]) expect(await page.textContent("#chat-transport")).toBe(transport);
        await expect.poll(() => lines(alice, "#chat-log"), { timeout: WAIT }).toContain(`bob-${transport} joined`);
        await say(alice, "hello bob");
        await expect.poll(() => from(bob, `alice-${transport}`), { timeout: WAIT }).toEqual(["hello bob"]);
        await say(bob, "hello alice");
        await expect.poll(() => from(alice, `bob-${transport}`), { timeout: WAIT }).toEqual(["hello alice"]);

        // The game: a move, and the server's answer.
        await alice.click("#game-connect");
        await expect.poll(() => alice.textContent("#game-phase"), { timeout: WAIT }).toBe("Your move.");
        expect(await alice.textContent("#game-transport")).toBe(transport);
        await alice.click("#game-board .cell >> nth=0");
        await expect.poll(() => alice.$$eval("#game-board .cell", (cells) => cells.map((c) => c.textContent).join("").length), { timeout: WAIT }).toBe(2);

        // Drop: alice's transports close, her sessions stay; bob talks meanwhile, and hears himself.
        const pids = { guide: await alice.textContent("#guide-pid"), chat: await alice.textContent("#chat-pid"), game: await alice.textContent("#game-pid") };
        for (const pid of Object.values(pids)) expect(pid).toMatch(PID);
        await alice.click("#drop");
        for (const panel of ["guide", "chat", "game"]) {
          await expect.poll(() => alice.textContent(`#${panel}-status`), { timeout: WAIT }).toBe("dropped");
          expect(await alice.textContent(`#${panel}-transport`)).toBe("–");
        }
        const pushesBefore = (await lines(alice, "#guide-log")).filter((l) => l === "How' you doin'?").length;
        expect(await alice.textContent("#drop")).toBe("Resume");
        const said = ["one", "two", "three", "four", "five"];
        for (const line of said) await say(bob, line);
        await expect.poll(() => from(bob, `bob-${transport}`), { timeout: WAIT }).toEqual(["hello alice", ...said]);
        // Long enough for the guide to push twice while alice is away: none of it reaches her yet.
        await new Promise((r) => setTimeout(r, 3 * HEARTBEAT));
        expect(await from(alice, `bob-${transport}`)).toEqual(["hello alice"]);
        expect((await lines(alice, "#guide-log")).filter((l) => l === "How' you doin'?").length).toBe(pushesBefore);
        // Bob's page sees nobody leave: alice's session is still a member.
        expect(await lines(bob, "#chat-log")).not.toContain(`alice-${transport} left`);

        // Resume: the same sessions (same pids) on the same kind of transport, and everything said meanwhile, once, in order.
        await alice.click("#drop");
        for (const panel of ["guide", "chat", "game"]) {
          await expect.poll(() => alice.textContent(`#${panel}-transport`), { timeout: WAIT }).toBe(transport);
        }
        expect(await alice.textContent("#chat-status")).toBe("joined");
        expect({ guide: await alice.textContent("#guide-pid"), chat: await alice.textContent("#chat-pid"), game: await alice.textContent("#game-pid") }).toEqual(pids);
        await expect.poll(() => from(alice, `bob-${transport}`), { timeout: WAIT }).toEqual(["hello alice", ...said]);
        await expect.poll(async () => (await lines(alice, "#guide-log")).filter((l) => l === "How' you doin'?").length, { timeout: WAIT }).toBeGreaterThan(pushesBefore + 1);
        expect(await lines(alice, "#chat-log")).toContain(`resumed over ${transport}, same pid`);
        // And on, both ways: nothing said twice.
        await say(alice, "back");
        await expect.poll(() => from(bob, `alice-${transport}`), { timeout: WAIT }).toEqual(["hello bob", "back"]);
        await say(bob, "welcome back");
        await expect.poll(() => from(alice, `bob-${transport}`), { timeout: WAIT }).toEqual(["hello alice", ...said, "welcome back"]);
        expect(await from(alice, `alice-${transport}`)).toEqual(["hello bob", "back"]);

        // The transport the page showed is the one it used.
        const seen = traffic.get(alice)!;
        const live = (url: string): boolean => new URL(url).pathname.startsWith("/live/");
        const query = (url: string): string | null => new URL(url).searchParams.get("t");
        if (transport === "websocket") {
          expect(seen.sockets.filter(live).length).toBeGreaterThanOrEqual(6); // three sessions, each opened and resumed
          expect(seen.requests.filter((u) => live(u) && query(u) !== null)).toEqual([]);
        } else {
          expect(seen.sockets.filter(live)).toEqual([]);
          expect(seen.requests.filter((u) => live(u) && query(u) === (transport === "eventsource" ? "es" : "poll")).length).toBeGreaterThanOrEqual(6);
        }

        for (const page of [alice, bob]) await page.click("#chat-leave");
        expect(pageErrors.slice(errorsBefore)).toEqual([]);
      }, 60_000);
    }

    test("with no WebSocket in the browser at all, the page falls back by itself; the switch reconnects open panels", async () => {
      const errorsBefore = pageErrors.length;
      const page = await openPage({}, "delete window.WebSocket;");
      expect(await page.evaluate("typeof WebSocket")).toBe("undefined");
      await page.click("#guide-connect");
      await expect.poll(() => page.textContent("#guide-status"), { timeout: WAIT }).toBe("connected");
      expect(await page.textContent("#guide-transport")).toBe("eventsource");
      await expect.poll(() => lines(page, "#guide-log"), { timeout: WAIT }).toContain("Hello!");
      const first = await page.textContent("#guide-pid");
      expect(first).toMatch(PID);

      // Long-polling by the switch: the open panel starts a new session (a new pid) on it.
      await page.selectOption("#transport", "longpoll");
      await expect.poll(() => page.textContent("#guide-transport"), { timeout: WAIT }).toBe("longpoll");
      await expect.poll(() => page.textContent("#guide-pid"), { timeout: WAIT }).toMatch(PID);
      expect(await page.textContent("#guide-pid")).not.toBe(first);
      await expect.poll(async () => (await lines(page, "#guide-log")).filter((l) => l === "Hello!").length, { timeout: WAIT }).toBe(2);
      expect(await lines(page, "#guide-log")).toContain("closed (1000)");
      await page.fill("#guide-text", "polled");
      await page.click("#guide-send");
      await expect.poll(() => lines(page, "#guide-log"), { timeout: WAIT }).toContain("That's what she said! polled");
      expect(pageErrors.slice(errorsBefore)).toEqual([]);
    }, 30_000);
  },
);
