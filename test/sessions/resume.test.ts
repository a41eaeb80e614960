/**
 * A session outlives its transports: frames in both directions arrive exactly once and in
 * order while the test kills the TCP connection (and switches transport) mid-stream; the pid
 * and the handler's callbacks stay those of one session; the resume window, the outbox limit
 * and hibernation hold while the client is away.
 */
import { describe, expect, test } from "vitest";
import { isAlive, processCount, processInfo, send, timerCount } from "../../src/index.js";
import { sleep, until } from "../support/helpers.js";
import { settledHeap } from "../support/measure.js";
import { EventStream, http, jsonOf, KINDS, post, SessionClient, UpgradeRefused, WsPeer, type Kind } from "../support/session-client.js";
import { harness, session, terminated, transportUp } from "./harness.js";
import type { Seen } from "./handler.js";

const WINDOW = 1000;
const h = harness({ resumeWindowMs: WINDOW, heartbeatMs: 200 });

/** A small seeded PRNG, so a failing run can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const range = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i + 1}`);

/**
 * The stress: the handler streams `s1…sN` from a timer while the test sends `p1…pN` to its
 * pid and the client sends `c1…cN`; meanwhile the client's transport is killed `drops` times
 * and reopened on kinds[i]. Every number must arrive once, in order, both ways.
 */
async function stress(kinds: readonly Kind[], seed: number): Promise<{ c: SessionClient; s: Seen }> {
  const N = 120;
  const random = prng(seed);
  const c = h.client({ ackEvery: 16, ackDelayMs: 30 });
  await c.connect(kinds[0]!);
  const s = await session(h.rec);
  const pid = s.pid!;
  send(pid, { stream: N, everyMs: 4 });
  let pushed = 0;
  let sent = 0;
  const feeder = setInterval(() => {
    if (pushed < N) send(pid, { push: `p${++pushed}` });
    if (sent < N) c.send(`c${++sent}`);
  }, 3);
  try {
    for (let i = 1; i < kinds.length; i++) {
      await sleep(40 + random() * 60);
      c.drop();
      await sleep(random() * 40);
      await c.connect(kinds[i]!);
    }
    await until(() => pushed === N && sent === N, 5000, "the feeder to finish");
  } finally {
    clearInterval(feeder);
  }
  await c.waitDelivered(2 * N, 5000);
  await until(() => s.got.length >= N, 5000, `the handler to get ${N} client frames (has ${s.got.length})`);
  await sleep(50);
  const got = (prefix: string): string[] => c.delivered.filter((d): d is string => typeof d === "string" && d.startsWith(prefix));
  expect(got("s")).toEqual(range("s", N));
  expect(got("p")).toEqual(range("p", N));
  expect(c.delivered).toHaveLength(2 * N);
  expect(s.got).toEqual(range("c", N));
  expect(c.violations).toEqual([]);
  // The server resends only what the request's ack did not cover.
  expect(c.duplicates).toBe(0);
  expect(s.pid).toBe(pid);
  expect(isAlive(pid)).toBe(true);
  expect([s.inits, s.websocketInits, s.terminates]).toEqual([1, 1, []]);
  expect(h.rec.sessions).toHaveLength(1);
  expect(c.connections).toBe(kinds.length);
  return { c, s };
}

describe.each(KINDS)("over %s", (kind) => {
  test("exactly once, in order, both ways, while the TCP connection is killed six times mid-stream; one pid, one init, one websocketInit", async () => {
    const { c, s } = await stress(Array(7).fill(kind) as Kind[], 17);
    await c.close(1000, "done");
    await terminated(s);
    expect(s.terminates).toEqual([{ remote: { code: 1000, reason: "done" } }]);
  });
});

test("exactly once, in order, both ways, when each reconnect switches transport", async () => {
  const kinds: Kind[] = ["websocket", "eventsource", "longpoll", "websocket", "longpoll", "eventsource", "websocket", "eventsource", "websocket"];
  const { c, s } = await stress(kinds, 42);
  await c.close(4000, "switched enough");
  await terminated(s);
  expect(s.terminates).toEqual([{ remote: { code: 4000, reason: "switched enough" } }]);
});

test("exactly once when the session opens on a fallback and switches from there", async () => {
  const { c } = await stress(["longpoll", "websocket", "eventsource", "longpoll", "eventsource", "websocket"], 7);
  await c.close();
});

describe("the resume window", () => {
  test("a client back within the window resumes, and each drop starts a whole window again", async () => {
    const c = h.client();
    await c.connect("websocket");
    const s = await session(h.rec);
    for (let i = 0; i < 3; i++) {
      c.drop();
      await sleep(WINDOW * 0.6);
      await c.connect(i % 2 === 0 ? "eventsource" : "websocket");
    }
    send(s.pid!, { push: "still the same session" });
    await c.waitDelivered(1);
    expect(s.terminates).toEqual([]);
    expect(h.rec.sessions).toHaveLength(1);
  });

  test("then it expires: terminate(\"timeout\") once, at the window; the id is gone on every transport (404, nothing else said); no process or timer left", async () => {
    const procs = processCount();
    const timers = timerCount();
    const c = h.client();
    await c.connect("websocket");
    const s = await session(h.rec);
    // A timer of the handler's, still running when the window ends.
    send(s.pid!, { stream: 10_000, everyMs: 20 });
    await c.waitDelivered(3);
    expect(timerCount()).toBe(timers + 1);
    const sid = c.sid!;
    c.drop();
    const droppedAt = Date.now();
    await sleep(WINDOW - 200);
    expect(s.terminates).toEqual([]);
    await terminated(s, 1000);
    const after = Date.now() - droppedAt;
    expect(after).toBeGreaterThanOrEqual(WINDOW - 50);
    expect(after).toBeLessThan(WINDOW + 400);
    expect(s.terminates).toEqual(["timeout"]);
    await until(() => !isAlive(s.pid!), 1000, "the session process to end");
    await until(() => processCount() === procs && timerCount() === timers, 1000, "processes and timers back to the baseline");

    const q = `sid=${sid}&ack=${c.inSeq}`;
    const none = { error: "no such session" };
    const es = await http(h.server.port, `/live?t=es&${q}`, { headers: { accept: "text/event-stream" } });
    expect([es.status, jsonOf(es)]).toEqual([404, none]);
    const poll = await http(h.server.port, `/live?t=poll&${q}`);
    expect([poll.status, jsonOf(poll)]).toEqual([404, none]);
    const p = await post(h.server.port, "/live", sid, [["t", 1, "late"]]);
    expect([p.status, jsonOf(p)]).toEqual([404, none]);
    const ws = await WsPeer.open(h.server.wsUrl(`/live?${q}`)).catch((e: unknown) => e);
    expect(ws).toBeInstanceOf(UpgradeRefused);
    expect((ws as UpgradeRefused).status).toBe(404);
    expect(s.terminates).toEqual(["timeout"]);
    expect(h.rec.sessions).toHaveLength(1);
  });

  test("a client that never comes after its first request: the session ends at the window", async () => {
    const ws = await WsPeer.open(h.server.wsUrl("/live"));
    await ws.nextPacket();
    const s = await session(h.rec);
    ws.destroy();
    await sleep(WINDOW - 200);
    expect(s.terminates).toEqual([]);
    await terminated(s, 1000);
    expect(s.terminates).toEqual(["timeout"]);
  });

  test("resumeWindowMs: 0 ends a session as soon as its WebSocket drops", async () => {
    await h.serve({ resumeWindowMs: 0, heartbeatMs: 200 });
    const c = h.client();
    await c.connect("websocket");
    const s = await session(h.rec);
    c.drop();
    await terminated(s, 500);
    expect(s.terminates).toEqual(["timeout"]);
  });
});

describe("long-polling between polls", () => {
  // The protocol counts a poll transport as dropped only once a poll is not renewed within heartbeatMs + 5 s.
  /** A session opened on a WebSocket, then served by a poll that took over: its sid, the session, the first poll's answer. */
  async function polling(): Promise<{ sid: string; s: Seen }> {
    const ws = await WsPeer.open(h.server.wsUrl("/live"));
    const [, sid] = (await ws.nextPacket()) as [string, string];
    const s = await session(h.rec);
    const held = http(h.server.port, `/live?t=poll&sid=${sid}&ack=0`);
    await ws.closed();
    send(s.pid!, { push: "one" });
    expect(jsonOf(await held)).toEqual([["t", 1, "one"]]);
    return { sid, s };
  }

  test("resumeWindowMs: 0 (no resume) still serves a long-polling client, poll after poll", async () => {
    await h.serve({ resumeWindowMs: 0, heartbeatMs: 200 });
    const { sid, s } = await polling();
    // The next poll follows the answer after a moment (a client's turn around, a few ms).
    await sleep(20);
    const next = http(h.server.port, `/live?t=poll&sid=${sid}&ack=1`);
    await sleep(20);
    send(s.pid!, { push: "two" });
    const a = await next;
    expect([a.status, jsonOf(a)]).toEqual([200, [["t", 2, "two"]]]);
    expect(s.terminates).toEqual([]);
  });

  test("a poll renewed a little after resumeWindowMs (well within heartbeatMs + 5 s) finds its session", async () => {
    await h.serve({ resumeWindowMs: 100, heartbeatMs: 200 });
    const { sid, s } = await polling();
    // A client that takes 250 ms to poll again (a slow network, a busy page).
    await sleep(250);
    const again = await http(h.server.port, `/live?t=poll&sid=${sid}&ack=1`, { timeoutMs: 1000 });
    expect(again.status).toBe(200);
    expect(s.terminates).toEqual([]);
  });
});

describe("while the client is away", () => {
  test("more than outboxLimit unacknowledged frames end the session with { error: \"backpressure\" }, at once", async () => {
    await h.serve({ resumeWindowMs: WINDOW, heartbeatMs: 200, outboxLimit: 50 });
    const c = h.client();
    await c.connect("websocket");
    const s = await session(h.rec);
    c.drop();
    await sleep(50);
    send(s.pid!, { pushMany: 50, prefix: "x" });
    await sleep(100);
    expect(s.terminates).toEqual([]);
    const t0 = Date.now();
    send(s.pid!, { push: "one too many" });
    await terminated(s, 500);
    expect(Date.now() - t0).toBeLessThan(WINDOW / 2);
    expect(s.terminates).toEqual([{ error: "backpressure" }]);
    await expect(c.connect("eventsource")).rejects.toThrow();
    expect(c.refused?.status).toBe(404);
  });

  test("the handler closes while the client is away: its resume, on any transport, gets the frames it lacks and the close; the next one 404", async () => {
    await h.serve({ resumeWindowMs: WINDOW, heartbeatMs: 200 });
    for (const [i, kind] of (["eventsource", "websocket", "longpoll"] as const).entries()) {
      const c = h.client();
      await c.connect("websocket");
      const s = await session(h.rec, i);
      c.drop();
      await sleep(50);
      send(s.pid!, { push: "last words" });
      send(s.pid!, { close: 4001, reason: "gone fishing" });
      await terminated(s);
      expect(s.terminates).toEqual(["stop"]);
      await c.connect(kind);
      expect(await c.waitClosed()).toEqual({ code: 4001, reason: "gone fishing" });
      expect(c.delivered).toEqual(["last words"]);
      expect((await http(h.server.port, `/live?t=poll&sid=${c.sid!}&ack=1`)).status).toBe(404);
    }
  });

  test("up to outboxLimit frames wait for the client and all arrive once it is back", async () => {
    await h.serve({ resumeWindowMs: WINDOW, heartbeatMs: 200, outboxLimit: 50 });
    const c = h.client();
    await c.connect("websocket");
    const s = await session(h.rec);
    c.drop();
    await sleep(50);
    send(s.pid!, { pushMany: 50, prefix: "x" });
    await sleep(100);
    await c.connect("longpoll");
    await c.waitDelivered(50);
    expect(c.delivered).toEqual(range("x", 50));
    expect(s.terminates).toEqual([]);
  });

  test("an outbox flood while away ends the session and frees what it held", async () => {
    await h.serve({ resumeWindowMs: WINDOW, heartbeatMs: 200, outboxLimit: 1000 });
    const c = h.client();
    await c.connect("websocket");
    const s = await session(h.rec);
    c.drop();
    await sleep(50);
    const before = await settledHeap();
    const big = "y".repeat(10_000);
    // 2000 frames of 10 kB each, all distinct strings: 20 MB if the session kept them.
    for (let i = 0; i < 200; i++) send(s.pid!, { pushMany: 10, prefix: `${big}${i}:` });
    await terminated(s, 2000);
    expect(s.terminates).toEqual([{ error: "backpressure" }]);
    // The process is gone, and with it everything the session kept.
    await until(() => !isAlive(s.pid!), 1000, "the session process to end");
    const after = await settledHeap();
    expect(after - before).toBeLessThan(2_000_000);
  });

  test("hibernation: a session hibernates while away, wakes for each message, and the client gets everything once back", async () => {
    const c = h.client();
    await c.connect("websocket");
    const s = await session(h.rec);
    c.send("one");
    c.send("hibernate");
    await until(() => processInfo(s.pid!)?.hibernated === true, 1000, "the session to hibernate");
    c.drop();
    for (let i = 1; i <= 3; i++) {
      send(s.pid!, { push: `while away ${i}`, hibernate: true });
      await until(() => processInfo(s.pid!)?.hibernated === true && processInfo(s.pid!)?.messageQueueLen === 0, 1000, "the session to hibernate again");
    }
    send(s.pid!, { report: true });
    await c.connect("eventsource");
    await c.waitDelivered(4);
    expect(c.delivered).toEqual(["while away 1", "while away 2", "while away 3", "got 2, sent 0"]);
    expect(s.terminates).toEqual([]);
  });
});

describe("taking over", () => {
  test("a resume while the previous transport is still open ends the old one (an event stream), and frames go to the new one", async () => {
    const ws = await WsPeer.open(h.server.wsUrl("/live"));
    const [, sid] = (await ws.nextPacket()) as [string, string];
    const s = await session(h.rec);
    ws.destroy();
    const es = await EventStream.open(h.server.port, `/live?t=es&sid=${sid}&ack=0`);
    expect((await es.next())[0]).toBe("hello");
    const ws2 = await WsPeer.open(h.server.wsUrl(`/live?sid=${sid}&ack=0`));
    expect((await ws2.nextPacket())[0]).toBe("hello");
    await es.closed();
    send(s.pid!, { push: "to the new one" });
    expect((await ws2.next()).data.toString()).toBe("to the new one");
    expect(es.events).toHaveLength(1);
    ws2.ws.close(1000);
    await ws2.closed();
  });

  test("a held poll, taken over by a WebSocket, is answered with [] at once", async () => {
    const ws = await WsPeer.open(h.server.wsUrl("/live"));
    const [, sid] = (await ws.nextPacket()) as [string, string];
    await session(h.rec);
    ws.destroy();
    const poll = http(h.server.port, `/live?t=poll&sid=${sid}&ack=0`);
    await transportUp();
    const ws2 = await WsPeer.open(h.server.wsUrl(`/live?sid=${sid}&ack=0`));
    const a = await poll;
    expect([a.status, jsonOf(a)]).toEqual([200, []]);
    ws2.ws.close(1000);
    await ws2.closed();
  });
});
