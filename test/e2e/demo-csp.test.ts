/**
 * The demo page under its Content-Security-Policy, in headless Chromium: the demo's own routes
 * (demoDispatch, the headers included), every panel used once, and no violation reported
 * except by the two canaries the test plants on purpose (an inline script and a socket to
 * another origin), which prove the policy is enforced and the listener hears it.
 *
 * Like browser.test.ts: without Chromium it fails under CI and is skipped elsewhere.
 */
import { existsSync } from "node:fs";
import { pino } from "pino";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { demoDispatch, PAGE_CSP } from "../../app/demo/routes.js";
import { startClear, stopListener } from "../../src/index.js";

const CHROMIUM = process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium";
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const NAME = "demo-csp-e2e";
const WAIT = 5_000;

/** What the page reports: each violation as "directive blocked-uri", each console error. */
interface Reports {
  readonly violations: string[];
  readonly errors: string[];
}

test.runIf(!HAVE_CHROMIUM && Boolean(process.env["CI"]))("the CSP browser test needs Chromium under CI", () => {
  throw new Error(`Chromium is not at ${CHROMIUM}; install it or set CHROMIUM_PATH`);
});

describe.skipIf(!HAVE_CHROMIUM)("the demo page under its CSP, in headless Chromium", () => {
  let base = "";
  let browser: Browser | undefined;

  beforeAll(async () => {
    const listener = await startClear(NAME, { port: 0, host: "127.0.0.1" }, { dispatch: demoDispatch(NAME), logger: pino({ level: "silent" }) });
    base = `http://127.0.0.1:${listener.port}`;
    browser = await chromium.launch({ executablePath: CHROMIUM, timeout: 15_000, args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-proxy-server"] });
  }, 30_000);

  afterAll(async () => {
    await browser?.close().catch(() => {});
    await stopListener(NAME);
  }, 30_000);

  /** A new page on the demo, with every CSP violation and console error kept. */
  async function open(): Promise<{ page: Page; reports: Reports }> {
    const page = await (await browser!.newContext()).newPage();
    page.setDefaultTimeout(WAIT);
    const reports: Reports = { violations: [], errors: [] };
    await page.exposeFunction("reportViolation", (v: string) => reports.violations.push(v));
    // Runs before the page's own script, outside its CSP (an init script is the browser's, not the page's).
    await page.addInitScript(`document.addEventListener("securitypolicyviolation", (e) => reportViolation(e.effectiveDirective + " " + e.blockedURI));`);
    page.on("console", (msg) => msg.type() === "error" && reports.errors.push(msg.text()));
    page.on("pageerror", (err) => reports.errors.push(`pageerror: ${err.message}`));
    const res = await page.goto(`${base}/`);
    expect(res?.status()).toBe(200);
    return { page, reports };
  }

  const lines = async (page: Page, list: string): Promise<string[]> =>
    (await page.$$eval(`${list} > li`, (items) => items.map((li) => (li.lastChild?.textContent ?? "")))) as string[];

  async function join(page: Page, name: string): Promise<void> {
    await page.fill("#chat-name", name);
    await page.click("#chat-join-button");
    await expect.poll(() => lines(page, "#chat-log"), { timeout: WAIT }).toContain(`you are ${name}`);
  }

  test("GET / carries the policy; the assets nosniff", async () => {
    const page = await fetch(`${base}/`);
    expect(page.headers.get("content-security-policy")).toBe(PAGE_CSP);
    for (const directive of ["default-src 'self'", "connect-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"]) {
      expect(PAGE_CSP.split("; ")).toContain(directive);
    }
    expect(PAGE_CSP).not.toMatch(/unsafe-inline|unsafe-eval|\*/);
    expect(page.headers.get("x-content-type-options")).toBe("nosniff");
    const html = await page.text();
    // Nothing inline for the policy to refuse: no <script> body, no style attribute or element, no on* handler.
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=/i);
    expect((await fetch(`${base}/static/app.js`)).headers.get("x-content-type-options")).toBe("nosniff");
    // The session client the page imports, from its own origin.
    const client = await fetch(`${base}/static/corral-client.js`);
    expect(client.status).toBe(200);
    expect(client.headers.get("content-type")).toMatch(/^text\/javascript/);
    expect(client.headers.get("x-content-type-options")).toBe("nosniff");
    expect(await client.text()).toMatch(/^export function connect\(/m);
  });

  test("stats, the guide's session on each transport, a drop, chat with presence, broadcast, the game and /echo work, with no violation", async () => {
    const { page: alice, reports } = await open();
    const bobOpen = await open();
    const bob = bobOpen.page;

    await expect.poll(() => alice.textContent("#stat-processes"), { timeout: WAIT }).toMatch(/^\d+$/);

    await alice.click("#guide-connect");
    await expect.poll(() => lines(alice, "#guide-log"), { timeout: WAIT }).toContain("Hello!");
    await alice.fill("#guide-text", "under a policy");
    await alice.click("#guide-send");
    await expect.poll(() => lines(alice, "#guide-log"), { timeout: WAIT }).toContain("That's what she said! under a policy");

    await join(alice, "alice");
    await join(bob, "bob");
    await expect.poll(() => lines(alice, "#chat-log"), { timeout: WAIT }).toContain("bob joined");
    await expect.poll(() => alice.textContent("#chat-here"), { timeout: WAIT }).toBe("2 here");
    await bob.fill("#chat-text", "hi alice");
    await bob.press("#chat-text", "Enter");
    await expect.poll(() => lines(alice, "#chat-log"), { timeout: WAIT }).toContain("bob: hi alice");
    await bob.fill("#broadcast-text", "from the form");
    await bob.click("#broadcast-send");
    await expect.poll(() => lines(alice, "#chat-log"), { timeout: WAIT }).toContain("broadcast: from the form");
    await bob.click("#chat-leave");
    await expect.poll(() => lines(alice, "#chat-log"), { timeout: WAIT }).toContain("bob left");
    await expect.poll(() => alice.textContent("#chat-here"), { timeout: WAIT }).toBe("1 here");

    await alice.click("#game-connect");
    await expect.poll(() => alice.textContent("#game-phase"), { timeout: WAIT }).toBe("Your move.");
    await alice.click("#game-board .cell >> nth=0");
    await expect.poll(() => alice.$$eval("#game-board .cell", (cells) => cells.filter((c) => c.textContent === "O").length), { timeout: WAIT }).toBe(1);

    // The fallbacks: the switch reconnects the open panels on an event stream, then on long-polls, and the drop button resumes them.
    const hellos = async (): Promise<number> => (await lines(alice, "#guide-log")).filter((l) => l === "Hello!").length;
    for (const [transport, greeted] of [["eventsource", 2], ["longpoll", 3]] as const) {
      await alice.selectOption("#transport", transport);
      await expect.poll(() => alice.textContent("#guide-transport"), { timeout: WAIT }).toBe(transport);
      await expect.poll(hellos, { timeout: WAIT }).toBe(greeted);
      expect(await alice.textContent("#game-transport")).toBe(transport);
    }
    await alice.click("#drop");
    await expect.poll(() => alice.textContent("#guide-status"), { timeout: WAIT }).toBe("dropped");
    await alice.click("#drop");
    await expect.poll(() => alice.textContent("#guide-status"), { timeout: WAIT }).toBe("connected");
    await alice.fill("#guide-text", "polled under a policy");
    await alice.click("#guide-send");
    await expect.poll(() => lines(alice, "#guide-log"), { timeout: WAIT }).toContain("That's what she said! polled under a policy");

    // /echo from the page's own origin: connect-src lets it through.
    const echoed = await alice.evaluate(`new Promise((resolve, reject) => {
      const ws = new WebSocket(location.origin.replace("http", "ws") + "/echo");
      ws.onopen = () => ws.send("round the corral");
      ws.onmessage = (e) => { resolve(e.data); ws.close(); };
      ws.onerror = () => reject(new Error("echo socket failed"));
    })`);
    expect(echoed).toBe("round the corral");
    expect(reports.violations).toEqual([]);
    expect(bobOpen.reports.violations).toEqual([]);
    expect(bobOpen.reports.errors).toEqual([]);

    // The canaries: an inline script and a socket to another origin are refused, and reported.
    await alice.evaluate(`{ const s = document.createElement("script"); s.textContent = "window.inlineRan = true"; document.body.append(s); }`);
    await alice.evaluate(`{ try { new WebSocket("ws://127.0.0.2:9/echo"); } catch {} }`);
    await expect.poll(() => reports.violations.length, { timeout: WAIT }).toBe(2);
    expect(reports.violations.sort()).toEqual(["connect-src ws://127.0.0.2:9/echo", "script-src-elem inline"]);
    expect(await alice.evaluate("window.inlineRan === true")).toBe(false);
    // The console's only errors are the canaries' refusals.
    expect(reports.errors.filter((e) => !/Content Security Policy/.test(e))).toEqual([]);
  }, 60_000);
});
