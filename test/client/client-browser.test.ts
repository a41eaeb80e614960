/**
 * corral/client in a real browser (Debian's Chromium, headless, driven by playwright-core),
 * loaded as it is from a page (`<script type="module">`, a URL relative to the page), against
 * the protocol peer: the browser's own WebSocket, fetch's streams for text/event-stream,
 * long-polling, a resume, a 404 the browser's WebSocket cannot see, and the browser's
 * offline and online events.
 *
 * Without Chromium the test fails under CI (process.env.CI) and is skipped elsewhere, as the
 * demo's browser test does; CHROMIUM_PATH overrides /usr/bin/chromium.
 */
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";
import type { CloseInfo, Connection, ConnectOptions } from "corral/client";
import { Peer, until } from "./peer.js";

const CHROMIUM = process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium";
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const IN_CI = Boolean(process.env["CI"]);
const CLIENT = readFileSync(fileURLToPath(new URL("../../client/corral-client.js", import.meta.url)), "utf8");

/** What the page keeps of its one connection (binary frames as arrays of bytes, to cross into the test). */
interface Recorded {
  conn: Connection;
  messages: (string | number[])[];
  events: string[];
  closes: CloseInfo[];
}
interface PageApi {
  start(options: Pick<ConnectOptions, "transports" | "backoff">): void;
  r: Recorded;
}

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>corral/client</title>
<script type="module">
import { connect } from "./corral-client.js";
window.start = (options) => {
  const r = { messages: [], events: [], closes: [] };
  r.conn = connect("live", {
    ...options,
    onopen: () => r.events.push("open:" + r.conn.state),
    onmessage: (d) => r.messages.push(typeof d === "string" ? d : Array.from(d)),
    ondisconnect: () => r.events.push("disconnect:" + r.conn.state),
    onreconnect: () => r.events.push("reconnect:" + r.conn.state),
    onclose: (info) => { r.events.push("close:" + r.conn.state); r.closes.push(info); },
  });
  window.r = r;
};
</script>`;

if (!HAVE_CHROMIUM && IN_CI) {
  test("the client's browser test needs Chromium", () => {
    throw new Error(`Chromium is not at ${CHROMIUM}, and CI is set. Install it or set CHROMIUM_PATH.`);
  });
}

describe.skipIf(!HAVE_CHROMIUM)(HAVE_CHROMIUM ? "corral/client in headless Chromium" : `corral/client in headless Chromium (skipped: no Chromium at ${CHROMIUM}; CI is not set)`, () => {
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let peer: Peer;

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
    peer = await Peer.start();
    peer.files.set("/index.html", { type: "text/html; charset=utf-8", body: PAGE });
    peer.files.set("/corral-client.js", { type: "text/javascript; charset=utf-8", body: CLIENT });
    context = await browser.newContext();
    page = await context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(peer.url.replace(/live$/, "index.html"));
    await page.waitForFunction(() => "start" in globalThis);
    expect(errors).toEqual([]);
  });
  afterEach(async () => {
    await context.close();
    await peer.stop();
  });

  const start = (options: Pick<ConnectOptions, "transports" | "backoff"> = {}) => page.evaluate((o) => (globalThis as unknown as PageApi).start(o), options);
  const recorded = () => page.evaluate(() => {
    const { r } = globalThis as unknown as PageApi;
    return { messages: r.messages, events: r.events, closes: r.closes, state: r.conn.state, transport: r.conn.transport };
  });
  const when = (pred: string) => page.waitForFunction(pred, undefined, { timeout: 5000 });
  const send = (data: string | number[]) => page.evaluate((d) => (globalThis as unknown as PageApi).r.conn.send(typeof d === "string" ? d : new Uint8Array(d)), data);

  for (const [transport, refused] of [
    ["websocket", []],
    ["eventsource", ["websocket"]],
    ["longpoll", ["websocket", "eventsource"]],
  ] as const) {
    test(`${transport}: text and binary both ways, from a page`, async () => {
      for (const k of refused) peer.refuse[k] = 400;
      peer.echo = true;
      await start();
      await send("hello");
      await send([0, 1, 254, 255]);
      await send("[not a packet]");
      await when("window.r.messages.length === 3");
      const r = await recorded();
      expect(r.messages).toEqual(["hello", [0, 1, 254, 255], "[not a packet]"]);
      expect(r.transport).toBe(transport);
      expect(r.events).toEqual(["open:open"]);
      expect(peer.violations).toEqual([]);
    });
  }

  test("a dropped WebSocket: resumed, frames sent while away delivered, none twice", async () => {
    await start({ backoff: { initialMs: 200, maxMs: 200 } });
    await when("window.r.conn.state === 'open'");
    const s = peer.only();
    peer.push(s, "one");
    await when("window.r.messages.length === 1");
    peer.cut(s);
    await when("window.r.events.includes('disconnect:reconnecting')");
    await send("sent while away");
    peer.push(s, "two");
    await when("window.r.events.includes('reconnect:open') && window.r.messages.length === 2");
    await until(() => s.received.length === 1, 3000, "the frame sent while away");
    expect(s.received).toEqual(["sent while away"]);
    expect((await recorded()).messages).toEqual(["one", "two"]);
    expect(peer.requests.filter((q) => q.kind === "websocket")[1]).toMatchObject({ sid: s.id, ack: 1 });
    expect(peer.violations).toEqual([]);
  });

  test("a 404 the browser's WebSocket cannot see, the fetch behind EventSource can: onclose 4404", async () => {
    await start({ backoff: { initialMs: 10, maxMs: 10 } });
    await when("window.r.conn.state === 'open'");
    peer.forget(peer.only());
    await when("window.r.closes.length === 1");
    const r = await recorded();
    expect(r.closes).toEqual([{ code: 4404, reason: "no such session" }]);
    expect(r.state).toBe("closed");
    expect(peer.requests.map((q) => q.kind)).toEqual(["websocket", "websocket", "eventsource"]);
  });

  test("the browser going offline pauses the session; online resumes it", async () => {
    await start({ backoff: { initialMs: 10, maxMs: 10 } });
    await when("window.r.conn.state === 'open'");
    const s = peer.only();
    await context.setOffline(true);
    await when("window.r.conn.state === 'reconnecting'");
    await send("written offline");
    // Offline requests never reach the peer: count what the page tries instead.
    const tries: string[] = [];
    page.on("request", (q) => tries.push(q.url()));
    page.on("websocket", (w) => tries.push(w.url()));
    await page.waitForTimeout(300);
    expect(tries).toEqual([]);
    await context.setOffline(false);
    await when("window.r.events.includes('reconnect:open')");
    await until(() => s.received.length === 1, 3000, "the frame written offline");
    expect(s.received).toEqual(["written offline"]);
    expect((await recorded()).events).toEqual(["open:open", "disconnect:reconnecting", "reconnect:open"]);
  });
});
