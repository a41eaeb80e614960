/**
 * corral/client in Node against a strict protocol peer (./peer.ts: node:http and ws, speaking the
 * session protocol as written), before any corral server: open and fallback, sequence numbers,
 * resend and deduplication across a drop, acks, the heartbeat watchdog, backoff, the end of a
 * session from either side, one POST in flight, the page's online/offline/pagehide/pageshow.
 */
import { WebSocket } from "ws";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { connect, type CloseInfo, type Connection, type ConnectOptions } from "corral/client";
import { Peer, sleep, until, type Session } from "./peer.js";

let peer: Peer;
const conns: Connection[] = [];

beforeEach(async () => {
  peer = await Peer.start();
});

afterEach(async () => {
  for (const c of conns.splice(0)) if (c.state !== "closed") c.close();
  vi.restoreAllMocks();
  await peer.stop();
});

interface Recorded {
  conn: Connection;
  messages: (string | Uint8Array)[];
  /** Every callback, in order, with the state it saw: "open:open", "disconnect:reconnecting", … */
  events: string[];
  closes: CloseInfo[];
}

/** connect() with ws's WebSocket and every callback recorded. */
function open(options: ConnectOptions = {}, url = peer.url): Recorded {
  const r: Recorded = { conn: undefined as unknown as Connection, messages: [], events: [], closes: [] };
  const note = (what: string) => r.events.push(`${what}:${r.conn.state}`);
  r.conn = connect(url, {
    WebSocket,
    onopen: () => note("open"),
    onmessage: (d) => r.messages.push(d),
    ondisconnect: () => note("disconnect"),
    onreconnect: () => note("reconnect"),
    onclose: (info) => {
      note("close");
      r.closes.push(info);
    },
    ...options,
  });
  conns.push(r.conn);
  return r;
}

const opened = (r: Recorded) => until(() => r.conn.state === "open", 3000, "the session to open");
const session = async (): Promise<Session> => {
  await until(() => peer.sessions.size === 1, 3000, "a session on the peer");
  return peer.only();
};
const kinds = () => peer.requests.map((q) => q.kind);

describe("opening", () => {
  test("WebSocket first: text, text that reads as a packet, and binary, both ways", async () => {
    peer.echo = true;
    const r = open();
    expect(r.conn.state).toBe("connecting");
    expect(r.conn.transport).toBeNull();
    const bytes = Buffer.from([0, 1, 2, 255]);
    r.conn.send("hello");
    r.conn.send('["t", 99, "not a packet"]');
    r.conn.send(bytes);
    bytes[0] = 42; // sent while connecting: the client kept a copy, not this buffer
    await until(() => r.messages.length === 3, 3000, "the echoes");
    expect(r.messages[0]).toBe("hello");
    expect(r.messages[1]).toBe('["t", 99, "not a packet"]');
    expect(r.messages[2]).toBeInstanceOf(Uint8Array);
    expect([...(r.messages[2] as Uint8Array)]).toEqual([0, 1, 2, 255]);
    expect(r.conn.transport).toBe("websocket");
    expect(r.events).toEqual(["open:open"]);
    expect(kinds()).toEqual(["websocket"]);
    const [t1, t2, b] = peer.only().received;
    expect([t1, t2]).toEqual(["hello", '["t", 99, "not a packet"]']);
    expect([...(b as Buffer)]).toEqual([0, 1, 2, 255]);
    expect(peer.violations).toEqual([]);
  });

  test("an http: URL and a ws: URL reach the same route, the query kept", async () => {
    const a = open({}, `${peer.url}?room=1`);
    await opened(a);
    const b = open({}, `${peer.url.replace("http:", "ws:")}?room=2`);
    await opened(b);
    const c = open({ transports: ["longpoll"] }, `${peer.url.replace("http:", "ws:")}?room=3`);
    await opened(c);
    expect(peer.sessions.size).toBe(3);
    expect(peer.requests.filter((q) => q.sid === null).map((q) => q.kind)).toEqual(["websocket", "websocket", "longpoll"]);
  });

  test("falls back to EventSource (read with fetch) when the upgrade is refused; binary goes as base64", async () => {
    peer.refuse.websocket = 400;
    peer.echo = true;
    const r = open();
    r.conn.send(new Uint8Array([7, 8, 9]));
    r.conn.send("text");
    await until(() => r.messages.length === 2, 3000, "the echoes");
    expect(r.conn.transport).toBe("eventsource");
    expect(kinds().slice(0, 2)).toEqual(["websocket", "eventsource"]);
    expect([...(r.messages[0] as Uint8Array)]).toEqual([7, 8, 9]);
    expect(r.messages[1]).toBe("text");
    const posted = peer.requests.filter((q) => q.kind === "post").flatMap((q) => q.body ?? []);
    expect(posted).toContainEqual(["b", 1, Buffer.from([7, 8, 9]).toString("base64")]);
    expect(posted).toContainEqual(["t", 2, "text"]);
    expect(r.events).toEqual(["open:open"]);
    expect(peer.violations).toEqual([]);
  });

  test("falls back to long-polling when the EventSource request fails too", async () => {
    peer.refuse.websocket = 400;
    peer.refuse.eventsource = 400;
    peer.echo = true;
    const r = open();
    for (let i = 0; i < 5; i++) r.conn.send(`m${i}`);
    await until(() => r.messages.length === 5, 3000, "the echoes");
    expect(r.messages).toEqual(["m0", "m1", "m2", "m3", "m4"]);
    expect(r.conn.transport).toBe("longpoll");
    expect(kinds().slice(0, 3)).toEqual(["websocket", "eventsource", "longpoll"]);
    // Each poll acknowledges in its query what the client has by then.
    const acks = peer.requests.filter((q) => q.kind === "longpoll" && q.sid !== null).map((q) => q.ack ?? -1);
    expect(acks).toEqual([...acks].sort((x, y) => x - y));
    await until(() => peer.only().clientAck === 5, 3000, "a poll to acknowledge all 5");
    expect(peer.violations).toEqual([]);
  });

  test("the transports option picks and orders them", async () => {
    const r = open({ transports: ["longpoll", "websocket"] });
    await opened(r);
    expect(r.conn.transport).toBe("longpoll");
    expect(new Set(kinds())).toEqual(new Set(["longpoll"]));
  });
});

describe("a drop mid-stream", () => {
  test("WebSocket: the client resends what the server lacks (and only that), and drops frames it already has", async () => {
    peer.resendOld = 3; // on the resume the peer sends 3 frames the client had again, explicitly numbered
    const r = open({ backoff: { initialMs: 200, maxMs: 200 } });
    await opened(r);
    const s = await session();
    for (let i = 1; i <= 5; i++) peer.push(s, `s${i}`);
    for (let i = 1; i <= 5; i++) r.conn.send(`c${i}`);
    await until(() => r.messages.length === 5 && s.received.length === 5, 3000, "5 frames each way");
    // Frames lost in transit: the peer stops taking them in, then the transport drops.
    peer.mute = true;
    r.conn.send("c6");
    r.conn.send(new Uint8Array([6]));
    await sleep(50);
    peer.mute = false;
    peer.cut(s);
    await until(() => r.events.includes("disconnect:reconnecting"), 3000, "the drop to be noticed");
    r.conn.send("c8 (sent while away)");
    peer.push(s, "s6 (sent while away)");
    await until(() => r.events.includes("reconnect:open"), 3000, "the resume");
    await until(() => s.received.length === 8 && r.messages.length === 6, 3000, "everything after the resume");
    expect(s.received.map((d) => (typeof d === "string" ? d : [...d].join()))).toEqual(["c1", "c2", "c3", "c4", "c5", "c6", "6", "c8 (sent while away)"]);
    expect(s.duplicates).toBe(0); // frames 1-5, which the server had, were not sent again
    expect(r.messages).toEqual(["s1", "s2", "s3", "s4", "s5", "s6 (sent while away)"]);
    const resume = peer.requests.filter((q) => q.kind === "websocket")[1]!;
    expect(resume).toMatchObject({ sid: s.id, ack: 5 });
    expect(r.events).toEqual(["open:open", "disconnect:reconnecting", "reconnect:open"]);
    expect(r.conn.transport).toBe("websocket");
    expect(peer.violations).toEqual([]);
  });

  test("EventSource: the same over the stream and POST", async () => {
    peer.resendOld = 2;
    const r = open({ transports: ["eventsource"], backoff: { initialMs: 200, maxMs: 200 } });
    await opened(r);
    const s = await session();
    for (let i = 1; i <= 3; i++) peer.push(s, `s${i}`);
    r.conn.send("c1");
    await until(() => r.messages.length === 3 && s.received.length === 1, 3000, "frames each way");
    peer.cut(s);
    await until(() => r.events.includes("disconnect:reconnecting"), 3000, "the drop");
    r.conn.send("c2");
    peer.push(s, "s4");
    await until(() => r.messages.length === 4 && s.received.length === 2, 3000, "the resume");
    expect(r.messages).toEqual(["s1", "s2", "s3", "s4"]);
    expect(s.received).toEqual(["c1", "c2"]);
    expect(s.duplicates).toBe(0);
    expect(peer.requests.filter((q) => q.kind === "eventsource")[1]).toMatchObject({ sid: s.id, ack: 3 });
    expect(peer.violations).toEqual([]);
  });

  test("long-poll: a resume's first poll asks for hello, so a server that still holds the old poll answers it as a resume; the client resends and goes on", async () => {
    const r = open({ transports: ["longpoll"] });
    await opened(r);
    const s = await session();
    r.conn.send("c1");
    await until(() => s.received.length === 1, 3000, "c1");
    peer.pollAbortIsDrop = false; // the peer will take the client's next transport for the old one
    peer.refuse.post = 503; // the next POST fails: the client drops the transport
    r.conn.send("c2");
    await until(() => r.events.includes("disconnect:reconnecting"), 3000, "the drop");
    delete peer.refuse.post;
    await until(() => r.events.includes("reconnect:open"), 3000, "the resume");
    await until(() => s.received.length === 2, 3000, "c2 after the resume");
    expect(s.received).toEqual(["c1", "c2"]);
    expect(s.duplicates).toBe(0); // c1 was acknowledged (the POST's answer), so not sent again
    expect(r.conn.state).toBe("open");
    // Only the resume's first poll asked for hello (a new session's first poll gets one anyway).
    const polls = peer.requests.filter((q) => q.kind === "longpoll");
    expect(polls.filter((q) => q.hello).map((q) => polls.indexOf(q) > 0 && q.sid === s.id)).toEqual([true]);
    peer.push(s, "s1");
    await until(() => r.messages.length === 1, 3000, "s1");
    expect(peer.violations).toEqual([]);
  });

  test("a reconnect starts at the transport that worked; after a whole round fails, at the top again", async () => {
    peer.refuse.websocket = 400;
    const r = open({ backoff: { initialMs: 10, maxMs: 20 } });
    await opened(r);
    expect(r.conn.transport).toBe("eventsource");
    const s = await session();
    peer.requests.length = 0;
    peer.cut(s);
    await until(() => r.events.includes("reconnect:open"), 3000, "the resume");
    expect(kinds()[0]).toBe("eventsource"); // not WebSocket again
    // Now every transport fails for a while: a round from EventSource, then rounds from the top.
    peer.refuse.eventsource = 503;
    peer.refuse.longpoll = 503;
    peer.requests.length = 0;
    peer.cut(s);
    await until(() => kinds().filter((k) => k === "websocket").length >= 2, 3000, "rounds from the top");
    expect(kinds().slice(0, 5)).toEqual(["eventsource", "longpoll", "websocket", "eventsource", "longpoll"]);
    delete peer.refuse.websocket;
    await until(() => r.conn.transport === "websocket", 3000, "WebSocket once it is allowed");
  });
});

describe("acks and heartbeats", () => {
  for (const transport of ["websocket", "eventsource"] as const) {
    test(`${transport}: acknowledged after 64 frames at once, and 1 s after fewer`, async () => {
      const r = open({ transports: [transport] });
      await opened(r);
      const s = await session();
      const acks = () => (transport === "websocket" ? s.acks : peer.requests.filter((q) => q.kind === "post").flatMap((q) => (q.body ?? []).filter((p) => Array.isArray(p) && p[0] === "a").map((p) => (p as [string, number])[1])));
      for (let i = 1; i <= 64; i++) peer.push(s, `f${i}`);
      await until(() => acks().includes(64), 500, "the ack of 64 frames, well before 1 s");
      for (let i = 65; i <= 67; i++) peer.push(s, `f${i}`);
      const t0 = Date.now();
      await until(() => acks().includes(67), 3000, "the ack of 3 more");
      const waited = Date.now() - t0;
      expect(waited).toBeGreaterThanOrEqual(900);
      expect(waited).toBeLessThan(1800);
      expect(r.messages).toHaveLength(67);
      expect(s.clientAck).toBe(67);
    });
  }

  test("WebSocket: a silent server is asked (['h']) and, still silent after 2 × heartbeatMs + 1 s, left for a resume", async () => {
    const r = open({ heartbeatMs: 150 });
    await opened(r);
    const s = await session();
    await sleep(1500); // no traffic, but the server answers the client's heartbeats
    expect(r.events).toEqual(["open:open"]);
    expect(s.pings).toBeGreaterThanOrEqual(5);
    peer.mute = true;
    const t0 = Date.now();
    await until(() => r.events.includes("disconnect:reconnecting"), 5000, "the watchdog");
    const waited = Date.now() - t0;
    expect(waited).toBeGreaterThanOrEqual(2 * 150 + 1000 - 160); // silence since the last answer, at most one heartbeat before t0
    expect(waited).toBeLessThan(2 * 150 + 1000 + 500);
    peer.mute = false;
    await until(() => r.events.includes("reconnect:open"), 3000, "the resume");
  });

  test("EventSource: the server's heartbeats keep it open; silence longer than 2 × its heartbeat + 1 s drops it", async () => {
    peer.heartbeatMs = 100;
    const r = open({ transports: ["eventsource"] });
    await opened(r);
    await sleep(1500);
    expect(r.events).toEqual(["open:open"]);
    peer.mute = true;
    const t0 = Date.now();
    await until(() => r.events.includes("disconnect:reconnecting"), 5000, "the watchdog");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2 * 100 + 1000 - 110);
    expect(Date.now() - t0).toBeLessThan(2 * 100 + 1000 + 500);
  });

  test("a transport that does not say hello within heartbeatMs + 1 s has failed to open: the next one is tried", async () => {
    peer.mute = true;
    const r = open({ heartbeatMs: 200, transports: ["websocket", "longpoll"] });
    await until(() => kinds().includes("longpoll"), 3000, "the fallback");
    const [ws, poll] = peer.requests;
    expect(poll!.at - ws!.at).toBeGreaterThanOrEqual(1150);
    expect(poll!.at - ws!.at).toBeLessThan(1700);
    expect(r.conn.state).toBe("connecting");
  });
});

describe("backoff", () => {
  /** Gaps between the starts of rounds, with every transport refused (one transport: one request a round). */
  async function gaps(n: number, backoff: { initialMs: number; maxMs: number }): Promise<number[]> {
    peer.refuse.longpoll = 503;
    open({ transports: ["longpoll"], backoff });
    await until(() => peer.requests.length > n, 10_000, `${n + 1} tries`);
    const at = peer.requests.map((q) => q.at);
    return at.slice(1, n + 1).map((t, i) => t - at[i]!);
  }
  const caps = (n: number, initialMs: number, maxMs: number) => Array.from({ length: n }, (_, i) => Math.min(maxMs, initialMs * 2 ** i));

  test("each wait is within [0, cap], the cap doubling from initialMs to maxMs (full jitter)", async () => {
    const g = await gaps(8, { initialMs: 40, maxMs: 160 });
    const cap = caps(8, 40, 160);
    // The slack is for a loaded machine's late timers; without the cap the waits would reach seconds.
    for (let i = 0; i < g.length; i++) expect(g[i], `wait ${i}: ${g.join(", ")}`).toBeLessThanOrEqual(cap[i]! + 150);
  });

  test("the cap is reached (random just under 1)", async () => {
    vi.spyOn(Math, "random").mockReturnValue(0.999);
    const g = await gaps(6, { initialMs: 60, maxMs: 240 });
    const cap = caps(6, 60, 240);
    for (let i = 0; i < g.length; i++) {
      expect(g[i], `wait ${i}: ${g.join(", ")}`).toBeGreaterThanOrEqual(cap[i]! * 0.999 - 2);
      expect(g[i], `wait ${i}: ${g.join(", ")}`).toBeLessThanOrEqual(cap[i]! + 150);
    }
  });

  test("random 0: every retry at once", async () => {
    vi.spyOn(Math, "random").mockReturnValue(0);
    const g = await gaps(6, { initialMs: 1000, maxMs: 5000 });
    for (const x of g) expect(x).toBeLessThan(100);
  });

  test("the backoff starts from initialMs again once the session opened", async () => {
    vi.spyOn(Math, "random").mockReturnValue(0.999);
    peer.refuse.websocket = 503;
    const r = open({ transports: ["websocket"], backoff: { initialMs: 50, maxMs: 5000 } });
    await until(() => peer.requests.length === 4, 3000, "4 refused tries (waits of 50, 100, 200 ms)");
    delete peer.refuse.websocket;
    await opened(r);
    const s = await session();
    peer.requests.length = 0;
    const t0 = Date.now();
    peer.cut(s);
    await until(() => peer.requests.length > 0, 3000, "the first reconnect");
    const first = peer.requests[0]!.at - t0;
    expect(first).toBeGreaterThanOrEqual(45); // 50 × 0.999, not 800
    expect(first).toBeLessThan(150);
  });
});

describe("the end of a session", () => {
  test("the server's ['c', code, reason]: onclose once, then nothing", async () => {
    const r = open();
    await opened(r);
    const s = await session();
    peer.end(s, 4000, "done here");
    await until(() => r.closes.length === 1, 3000, "onclose");
    expect(r.closes).toEqual([{ code: 4000, reason: "done here" }]);
    expect(r.conn.state).toBe("closed");
    expect(r.conn.transport).toBeNull();
    const n = peer.requests.length;
    await sleep(300);
    expect(peer.requests.length).toBe(n);
    expect(r.events).toEqual(["open:open", "close:closed"]);
  });

  test("a resume the server answers with 404: onclose({ code: 4404 }) and no more tries", async () => {
    const r = open({ backoff: { initialMs: 10, maxMs: 10 } });
    await opened(r);
    const s = await session();
    peer.forget(s);
    await until(() => r.closes.length === 1, 3000, "onclose");
    expect(r.closes).toEqual([{ code: 4404, reason: "no such session" }]);
    // WebSocket cannot tell a 404 from a failure; the EventSource request can.
    expect(kinds()).toEqual(["websocket", "websocket", "eventsource"]);
    await sleep(200);
    expect(kinds()).toHaveLength(3);
    expect(r.events).toEqual(["open:open", "disconnect:reconnecting", "close:closed"]);
  });

  test("away longer than the resume window: onclose({ code: 4408 }) without asking", async () => {
    peer.resumeWindowMs = 0;
    peer.heartbeatMs = 100;
    vi.spyOn(Math, "random").mockReturnValue(0.999);
    const r = open({ transports: ["websocket"], backoff: { initialMs: 100, maxMs: 400 } });
    await opened(r);
    peer.refuse.websocket = 503;
    peer.cut(peer.only());
    await until(() => r.closes.length === 1, 8000, "onclose");
    expect(r.closes).toEqual([{ code: 4408, reason: "resume window passed" }]);
    // window 0 + 2 × 100 + 5 s of grace from the drop: tries at 100, 300, 700, 1100, … ms, then the end
    const tries = peer.requests.filter((q) => q.sid !== null);
    expect(tries.length).toBeGreaterThanOrEqual(12);
    expect(tries.length).toBeLessThanOrEqual(16);
  }, 10_000);

  test("conn.close(code, reason) on WebSocket: frames sent before it arrive first, then ['c', code, reason]", async () => {
    const r = open();
    await opened(r);
    const s = await session();
    r.conn.send("last words");
    r.conn.close(4001, "bye");
    expect(r.conn.state).toBe("closed");
    expect(r.closes).toEqual([{ code: 4001, reason: "bye" }]);
    r.conn.send("after the end"); // dropped
    r.conn.close(); // nothing more
    await until(() => s.closedWith !== null, 3000, "the close packet");
    expect(s.closedWith).toEqual([4001, "bye"]);
    expect(s.received).toEqual(["last words"]);
    await sleep(100);
    expect(r.closes).toHaveLength(1);
    expect(kinds()).toEqual(["websocket"]);
  });

  test("conn.close() on the fallbacks waits for the POST in flight, then posts the rest and ['c']", async () => {
    peer.postDelayMs = 150;
    const r = open({ transports: ["eventsource"] });
    await opened(r);
    const s = await session();
    r.conn.send("a");
    await until(() => peer.postsInFlight === 1, 3000, "a POST in flight");
    r.conn.send("b");
    r.conn.close(1000, "");
    expect(r.closes).toEqual([{ code: 1000, reason: "" }]);
    await until(() => s.closedWith !== null, 3000, "the close packet");
    expect(s.received).toEqual(["a", "b"]);
    expect(peer.maxPostsInFlight).toBe(1);
    expect(peer.requests.filter((q) => q.kind === "post").map((q) => q.body)).toEqual([[["t", 1, "a"]], [["t", 2, "b"], ["c", 1000, ""]]]);
  });

  test("conn.close() while reconnecting still tells the server, by POST", async () => {
    const r = open({ transports: ["eventsource"], backoff: { initialMs: 5000, maxMs: 5000 } });
    vi.spyOn(Math, "random").mockReturnValue(0.999);
    await opened(r);
    const s = await session();
    peer.cut(s);
    await until(() => r.conn.state === "reconnecting", 3000, "the drop");
    r.conn.send("never sent: the session ends first");
    r.conn.close(4002, "gone");
    await until(() => s.closedWith !== null, 3000, "the close packet");
    expect(s.closedWith).toEqual([4002, "gone"]);
    expect(s.received).toEqual([]);
    expect(peer.violations).toEqual([]);
  });

  test("conn.close() before the session opened: onclose, and nothing reaches the server", async () => {
    peer.mute = true;
    const r = open();
    await until(() => peer.requests.length === 1, 3000, "the first try");
    r.conn.close();
    expect(r.closes).toEqual([{ code: 1000, reason: "" }]);
    expect(r.events).toEqual(["close:closed"]);
    await sleep(200);
    expect(kinds()).toEqual(["websocket"]);
  });
});

describe("POST", () => {
  test("one in flight at a time; what waits meanwhile goes in the next, in order", async () => {
    peer.refuse.websocket = 400;
    peer.postDelayMs = 50;
    const r = open();
    await opened(r);
    const s = await session();
    for (let i = 0; i < 30; i++) {
      r.conn.send(`m${i}`);
      await sleep(3);
    }
    await until(() => s.received.length === 30, 3000, "all 30");
    expect(s.received).toEqual(Array.from({ length: 30 }, (_, i) => `m${i}`));
    expect(peer.maxPostsInFlight).toBe(1);
    expect(peer.requests.filter((q) => q.kind === "post").length).toBeLessThan(15);
    expect(s.duplicates).toBe(0);
  });

  test("413: a batch is split until it fits; a frame that can never fit ends the session with 1009", async () => {
    peer.maxPostBytes = 300;
    const r = open({ transports: ["longpoll"] });
    const frames = Array.from({ length: 10 }, (_, i) => `${i}`.padEnd(50, "."));
    for (const f of frames) r.conn.send(f);
    const s = await session();
    await until(() => s.received.length === 10, 3000, "the 10 frames");
    expect(s.received).toEqual(frames);
    r.conn.send("x".repeat(400));
    await until(() => r.closes.length === 1, 3000, "onclose");
    expect(r.closes).toEqual([{ code: 1009, reason: "frame too large" }]);
    await until(() => s.closedWith !== null, 3000, "the close packet");
    expect(s.closedWith).toEqual([1009, "frame too large"]);
    expect(peer.violations).toEqual([]);
  });
});

describe("the page's events", () => {
  /** globalThis as a page's window (an EventTarget), for the test's length; `listening` counts the listeners on it. */
  function page(): { fire: (type: string, init?: { persisted: boolean }) => void; listening: () => number; restore: () => void } {
    const target = new EventTarget();
    const g = globalThis as unknown as Record<string, unknown>;
    const on = new Set<string>();
    const key = (type: string, fn: unknown) => `${type} ${listenerIds.get(fn) ?? listenerIds.set(fn, listenerIds.size).size - 1}`;
    const listenerIds = new Map<unknown, number>();
    g["addEventListener"] = (type: string, fn: (e: Event) => void) => {
      on.add(key(type, fn));
      target.addEventListener(type, fn);
    };
    g["removeEventListener"] = (type: string, fn: (e: Event) => void) => {
      on.delete(key(type, fn));
      target.removeEventListener(type, fn);
    };
    return {
      fire: (type, init) => target.dispatchEvent(Object.assign(new Event(type), init)),
      listening: () => on.size,
      restore: () => {
        delete g["addEventListener"];
        delete g["removeEventListener"];
      },
    };
  }

  test("offline: the transport goes and nothing is tried until online, then at once; sends wait", async () => {
    const p = page();
    try {
      const r = open({ backoff: { initialMs: 10, maxMs: 10 } });
      await opened(r);
      const s = await session();
      p.fire("offline");
      expect(r.conn.state).toBe("reconnecting");
      expect(r.events).toEqual(["open:open", "disconnect:reconnecting"]);
      r.conn.send("written offline");
      const n = peer.requests.length;
      await sleep(300);
      expect(peer.requests.length).toBe(n);
      const t0 = Date.now();
      p.fire("online");
      await until(() => r.events.includes("reconnect:open"), 3000, "the resume");
      expect(peer.requests[n]!.at - t0).toBeLessThan(50);
      await until(() => s.received.length === 1, 3000, "the frame written offline");
      expect(s.received).toEqual(["written offline"]);
    } finally {
      p.restore();
    }
  });

  test("pagehide into the back/forward cache keeps the session; pageshow resumes it; a plain pagehide does nothing", async () => {
    const p = page();
    try {
      const r = open();
      await opened(r);
      const s = await session();
      p.fire("pagehide", { persisted: false });
      await sleep(100);
      expect(r.conn.state).toBe("open");
      p.fire("pagehide", { persisted: true });
      expect(r.conn.state).toBe("reconnecting");
      await until(() => s.att === null, 3000, "the transport to close");
      const n = peer.requests.length;
      await sleep(300);
      expect(peer.requests.length).toBe(n);
      expect(peer.sessions.has(s.id)).toBe(true);
      p.fire("pageshow", { persisted: true });
      await until(() => r.events.includes("reconnect:open"), 3000, "the resume");
      expect(peer.requests[n]).toMatchObject({ sid: s.id });
    } finally {
      p.restore();
    }
  });

  test("a closed connection stops listening", async () => {
    const p = page();
    try {
      const r = open();
      await opened(r);
      expect(p.listening()).toBe(4); // online, offline, pagehide, pageshow
      r.conn.close();
      expect(p.listening()).toBe(0);
      p.fire("offline");
      p.fire("online");
      await sleep(100);
      expect(kinds()).toEqual(["websocket"]);
      expect(r.conn.state).toBe("closed");
    } finally {
      p.restore();
    }
  });
});

/** Runs fn as on Node 20, which has no global WebSocket (Node 22 has one). */
function withoutGlobalWebSocket<T>(fn: () => T): T {
  const saved = Object.getOwnPropertyDescriptor(globalThis, "WebSocket");
  if (saved !== undefined) Reflect.deleteProperty(globalThis, "WebSocket");
  try {
    return fn();
  } finally {
    if (saved !== undefined) Object.defineProperty(globalThis, "WebSocket", saved);
  }
}

describe("bad arguments", () => {
  const badarg = (fn: () => unknown, message: RegExp) => {
    let err: unknown;
    try {
      fn();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({ name: "CorralError", code: "ERR_BADARG" });
    expect((err as Error).message).toMatch(message);
  };
  const any = (v: unknown) => v as never;

  test("connect checks the URL and every option once", () => {
    badarg(() => connect("ftp://example.com/live"), /ws:, wss:, http: or https:/);
    badarg(() => connect("/live"), /not a URL/); // relative, and Node has no page to resolve it against
    badarg(() => connect(peer.url, any({ WebSocket, reconnect: true })), /unknown connect option key "reconnect"/);
    badarg(() => connect(peer.url, { WebSocket, transports: [] }), /transports/);
    badarg(() => connect(peer.url, { WebSocket, transports: ["websocket", "websocket"] }), /distinct/);
    badarg(() => connect(peer.url, any({ WebSocket, transports: ["sse"] })), /transports/);
    badarg(() => connect(peer.url, { WebSocket, heartbeatMs: 0 }), /heartbeatMs/);
    badarg(() => connect(peer.url, { WebSocket, backoff: { initialMs: 500, maxMs: 100 } }), /maxMs >= initialMs/);
    badarg(() => connect(peer.url, any({ WebSocket, backoff: { initial: 5 } })), /unknown backoff option key "initial"/);
    badarg(() => connect(peer.url, any({ WebSocket, onmessage: "log" })), /onmessage must be a function/);
    badarg(() => connect(peer.url, any({ WebSocket: "ws" })), /WebSocket constructor/);
    withoutGlobalWebSocket(() => badarg(() => connect(peer.url, { transports: ["websocket"] }), /no WebSocket implementation/));
    expect(peer.requests).toEqual([]);
  });

  test("send and close check theirs", async () => {
    const r = open();
    badarg(() => r.conn.send(any(42)), /string or a Uint8Array/);
    badarg(() => r.conn.send(any(new ArrayBuffer(2))), /string or a Uint8Array/);
    badarg(() => r.conn.close(1001), /1000 or 3000-4999/);
    badarg(() => r.conn.close(4000, "é".repeat(62)), /123 UTF-8 bytes/);
    expect(r.conn.state).not.toBe("closed");
    await opened(r);
  });

  test("without a WebSocket implementation (Node 20's case) the client goes straight to the fallbacks", async () => {
    const r = withoutGlobalWebSocket(() => connect(peer.url, {}));
    conns.push(r);
    await until(() => r.state === "open", 3000, "open");
    expect(r.transport).toBe("eventsource");
    expect(kinds()).toEqual(["eventsource"]);
  });
});

describe("callbacks", () => {
  test("a callback that throws does not break the session; its error is rethrown on its own", async () => {
    const errors: unknown[] = [];
    const onError = (e: unknown) => errors.push(e);
    // The runner's own listeners would fail the run on this expected error: stand in for them.
    const runners = process.listeners("uncaughtException");
    process.removeAllListeners("uncaughtException");
    process.on("uncaughtException", onError);
    try {
      const seen: string[] = [];
      const r = open({
        onmessage: (d) => {
          seen.push(d as string);
          if (d === "boom") throw new Error("from onmessage");
        },
      });
      await opened(r);
      const s = await session();
      peer.push(s, "boom");
      peer.push(s, "after");
      await until(() => seen.length === 2 && errors.length === 1, 3000, "both frames and the error");
      expect(seen).toEqual(["boom", "after"]);
      expect((errors[0] as Error).message).toBe("from onmessage");
      expect(r.conn.state).toBe("open");
    } finally {
      process.removeListener("uncaughtException", onError);
      for (const l of runners) process.on("uncaughtException", l);
    }
  });
});
