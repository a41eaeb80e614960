/**
 * corral/client against the real server, in Node: `connect` with ws's WebSocket, a
 * `bullet()` route on a listener on 127.0.0.1 (test/support/session-app.ts is the handler),
 * on each transport forced with the client's `transports` option.
 *
 * The resume tests put a TCP proxy between the two (test/support/tcp-proxy.ts) and break the
 * network there, as it breaks in life: every connection reset at once, or a line gone silent
 * (nothing arrives, nothing closes, until the client's watchdog gives up on it), or a proxy
 * that answers 502 to WebSocket upgrades or event streams, which makes the client switch
 * transport on its reconnect. Neither side is told anything by the test: each finds out the
 * way it would in production. Other resumes kill the session's relay process on the server
 * (exit(pid, "kill")), found by its behaviour, the route's path.
 */
import WebSocket from "ws";
import type { TransportName } from "corral/client";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { bullet, exit, processCount, processes, processInfo, send, timerCount, type Pid } from "../../src/index.js";
import { leakCheck, testServer, type LeakCheck, type TestServer } from "../../src/testing.js";
import { sleep, until } from "../support/helpers.js";
import { watchTimers, type TimerWatch } from "../support/node-timers.js";
import { recordedClient, type Recorder } from "../support/recorded-client.js";
import { newLog, sessionApp, type AppMessage, type SessionLog } from "../support/session-app.js";
import { TcpProxy, type RequestKind } from "../support/tcp-proxy.js";

/** The resume tests' route: short heartbeats so a silent line is found out in 1.5 s, a short window to see it pass. */
const HEARTBEAT = 250;
const WINDOW = 1500;
/** When the client gives a session up for lost after its last transport dropped (docs/client.md, 4408): the window, two heartbeats and 5 s. */
const CLIENT_GIVES_UP = WINDOW + 2 * HEARTBEAT + 5000;
const TRANSPORTS: readonly TransportName[] = ["websocket", "eventsource", "longpoll"];

/** A client that records what it is told; reconnects back off between 0 and 20-100 ms. */
const open = recordedClient;

/** until(), and what the client and the network looked like when it timed out. */
async function settled(r: Recorder, pred: () => boolean, ms: number, what: string, proxy?: TcpProxy): Promise<void> {
  try {
    await until(pred, ms, what);
  } catch (err) {
    const tail = proxy?.requests.slice(-8).map((q) => `${q.kind}${q.fate === "passed" ? "" : `(${q.fate})`} ${q.target.replace(/sid=[^&]+/, "sid=…")}`);
    throw new Error(
      `${(err as Error).message}; client ${r.conn.state} on ${r.conn.transport}, events ${r.events.length > 12 ? `(${r.events.length}) …` : ""}${r.events.slice(-12).join(",")}, closes ${JSON.stringify(r.closes)}, ${r.messages.length} frames in, server got ${log.got.length}` +
        (tail === undefined ? "" : `; last requests: ${tail.join(" | ")}; ${proxy!.open} connections open`),
    );
  }
}

/** The session's transports on a route: its relay processes (a WebSocket connection, an event stream's or a held poll's request). */
const relays = (route = "/fast"): Pid[] => processes().filter((p) => processInfo(p)?.behaviour === route);
const texts = (r: Recorder, prefix: string): string[] => r.messages.filter((m): m is string => typeof m === "string" && m.startsWith(prefix));
const numbered = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i + 1}`);

let server: TestServer;
let log: SessionLog;
let leaks: LeakCheck;

beforeEach(async () => {
  leaks = leakCheck();
  log = newLog();
  const app = sessionApp(log);
  server = await testServer(
    [
      // A poll held for the default 25 s: the plain tests never race a heartbeat's answer.
      ["/live", bullet(app)],
      ["/fast", bullet(app, { heartbeatMs: HEARTBEAT, resumeWindowMs: WINDOW })],
      // A window shorter than the time a client takes to find out a silent line: only the protocol's grace for a poll covers it.
      ["/brief", bullet(app, { heartbeatMs: HEARTBEAT, resumeWindowMs: 500 })],
      ["/quiet", bullet(sessionApp(log, { idleTimeout: 1000 }), { heartbeatMs: HEARTBEAT })],
    ],
    // Node's fetch opens a spare connection when a request is aborted; the listener would wait for it to send a request.
    { shutdownTimeout: 100 },
  );
});
afterEach(async () => {
  await server.stop();
  await leaks.assert();
});

describe.each(TRANSPORTS)("on %s", (transport) => {
  /** Open, with its transport attached at the server (a long-poll's first poll is answered at once: the next one held). */
  const opened = async (): Promise<Recorder> => {
    const r = open(server.url("/live"), { transports: [transport] });
    await until(() => r.conn.state === "open" && relays("/live").length === 1, 3000, "the session to open");
    expect(r.conn.transport).toBe(transport);
    return r;
  };

  test("echo: a text, a text that reads as a packet, binary; one init, on one pid", async () => {
    const r = await opened();
    r.conn.send("hello");
    r.conn.send('["t",1,"not a packet"]');
    r.conn.send(new Uint8Array([0, 1, 254, 255]));
    r.conn.send("");
    await until(() => r.messages.length === 4, 3000, "four echoes");
    expect(r.messages).toEqual(["hello", '["t",1,"not a packet"]', new Uint8Array([0, 1, 254, 255]), ""]);
    expect(r.messages[2]).toBeInstanceOf(Uint8Array);
    expect(log).toMatchObject({ inits: 1, websocketInits: 1, terminates: [] });
    expect(log.pids).toHaveLength(1);
    r.conn.close();
    await until(() => log.terminates.length === 1, 3000, "terminate");
    expect(log.terminates).toEqual([{ remote: { code: 1000, reason: "" } }]);
    expect(r.events).toEqual(["open", "close"]);
  });

  test("send(pid) from app code reaches the client while it is connected, each once, in order", async () => {
    const r = await opened();
    const pid = log.pids[0]!;
    for (let i = 1; i <= 50; i++) send<AppMessage>(pid, { push: `p:${i}` });
    await until(() => r.messages.length === 50, 3000, "fifty pushes");
    expect(r.messages).toEqual(numbered("p:", 50));
    r.conn.close();
    await until(() => log.terminates.length === 1, 3000, "terminate");
  });

  test("a timer-driven numbered stream arrives whole, from the session's pid", async () => {
    const r = await opened();
    const timers = timerCount();
    r.conn.send("stream:5");
    await until(() => texts(r, "s:").length >= 30, 5000, "thirty ticks");
    expect(timerCount()).toBe(timers + 1);
    send<AppMessage>(log.pids[0]!, { halt: true });
    await until(() => texts(r, "s-end:").length === 1, 3000, "the stream's end");
    const last = Number(texts(r, "s-end:")[0]!.slice("s-end:".length));
    expect(texts(r, "s:")).toEqual(numbered("s:", last).map((s) => `${s}:${String(log.pids[0])}`));
    expect(timerCount()).toBe(timers);
    r.conn.close();
    await until(() => log.terminates.length === 1, 3000, "terminate");
  });

  test("the handler's stop: onclose 1000, terminate(\"stop\"), and no reconnect", async () => {
    const r = await opened();
    r.conn.send("stop");
    await until(() => r.closes.length === 1, 3000, "onclose");
    expect(r.closes).toEqual([{ code: 1000, reason: "" }]);
    expect(r.conn.state).toBe("closed");
    await until(() => log.terminates.length === 1, 3000, "terminate");
    expect(log.terminates).toEqual(["stop"]);
    await sleep(300);
    expect(r.events).toEqual(["open", "close"]);
    expect(log.inits).toBe(1);
  });

  test("the handler's close frame: onclose with its code and reason", async () => {
    const r = await opened();
    r.conn.send("close:4001:gone fishing");
    await until(() => r.closes.length === 1, 3000, "onclose");
    expect(r.closes).toEqual([{ code: 4001, reason: "gone fishing" }]);
    await until(() => log.terminates.length === 1, 3000, "terminate");
    expect(log.terminates).toEqual(["stop"]);
  });

  test("conn.close(code, reason): onclose at once, terminate gets { remote: { code, reason } } after every frame sent before it", async () => {
    const r = await opened();
    for (let i = 1; i <= 20; i++) r.conn.send(`c:${i}`);
    r.conn.close(4000, "bye");
    expect(r.closes).toEqual([{ code: 4000, reason: "bye" }]);
    expect(r.conn.state).toBe("closed");
    await until(() => log.terminates.length === 1, 3000, "terminate");
    expect(log.terminates).toEqual([{ remote: { code: 4000, reason: "bye" } }]);
    expect(log.got).toEqual(numbered("c:", 20));
    r.conn.send("c:21"); // dropped, as a message to a dead pid is
    await sleep(100);
    expect(log.got).toHaveLength(20);
  });
});

/* ---------------------------------------------------------------- resume, exactly once */

interface Baseline {
  processes: number;
  timers: number;
}

/** A disruption of the network or of the server, while traffic flows. */
type Disruption = () => void;

/**
 * Traffic both ways while things break, once per disruption: the server's timer stream
 * (`s:n`), app code's `send(pid, …)` (`p:n`) and the client's own frames (`c:n`), each every
 * 10 ms. After each disruption the client must have come back (onreconnect) before the next.
 * Then every number must have arrived once, in order, in its direction, on the one pid, and
 * init, websocketInit ran once.
 */
async function streamThrough(r: Recorder, proxy: TcpProxy, disruptions: readonly Disruption[]): Promise<void> {
  const pid = log.pids[0]!;
  r.conn.send("stream:10");
  let c = 0;
  let p = 0;
  const pump = setInterval(() => {
    r.conn.send(`c:${++c}`);
    send<AppMessage>(pid, { push: `p:${++p}` });
  }, 10);
  try {
    for (const [i, disrupt] of disruptions.entries()) {
      const seen = r.messages.length;
      const heard = log.got.length;
      await settled(r, () => r.messages.length >= seen + 20 && log.got.length >= heard + 10, 5000, `traffic both ways before disruption ${i + 1}`, proxy);
      disrupt();
      await settled(r, () => r.events.filter((e) => e === "reconnect").length === i + 1, 8000, `the resume after disruption ${i + 1}`, proxy);
    }
    const seen = r.messages.length;
    const heard = log.got.length;
    await settled(r, () => r.messages.length >= seen + 20 && log.got.length >= heard + 10, 5000, "traffic both ways after the last resume", proxy);
  } finally {
    clearInterval(pump);
  }
  send<AppMessage>(pid, { halt: true });
  await settled(r, () => texts(r, "s-end:").length === 1 && log.got.length === c, 5000, "the stream's end and every client frame", proxy);

  const last = Number(texts(r, "s-end:")[0]!.slice("s-end:".length));
  expect(last).toBeGreaterThanOrEqual(20); // a floor: each phase above already waited for traffic both ways
  expect(texts(r, "s:")).toEqual(numbered("s:", last).map((s) => `${s}:${String(pid)}`));
  expect(texts(r, "p:")).toEqual(numbered("p:", p));
  expect(log.got).toEqual(numbered("c:", c));
  expect(r.messages).toHaveLength(last + p + 1);
  expect(r.events).toEqual(["open", ...disruptions.flatMap(() => ["disconnect", "reconnect"])]);
  expect(log).toMatchObject({ inits: 1, websocketInits: 1, pids: [pid], terminates: [] });
}

/** The client cannot come back: the session ends at its window (terminate "timeout"), the client gives up (4408), nothing is left. */
async function windowPasses(r: Recorder, proxy: TcpProxy, base: Baseline, timers: TimerWatch, transport: TransportName): Promise<void> {
  await proxy.refuse();
  const gone = performance.now();
  // A poll answered just before the network went gives its client the protocol's grace (heartbeatMs + 5 s) before the window starts.
  await until(() => log.terminates.length === 1, WINDOW + (transport === "longpoll" ? HEARTBEAT + 5000 : 0) + 2000, "terminate after the resume window");
  expect(log.terminates).toEqual(["timeout"]);
  expect(performance.now() - gone).toBeGreaterThanOrEqual(WINDOW - 20);
  await until(() => r.closes.length === 1, CLIENT_GIVES_UP + 3000, "the client to give up");
  expect(r.closes).toEqual([{ code: 4408, reason: "resume window passed" }]);
  expect(r.conn.state).toBe("closed");
  expect(r.events.slice(-2)).toEqual(["disconnect", "close"]);
  await until(() => processCount() === base.processes, 2000, "every process of the session to end");
  expect(timerCount()).toBe(base.timers);
  // The session's own Node timers (heartbeat, window) and the client's (watchdog, acks, backoff).
  expect(await timers.armed()).toEqual([]);
}


/** Ends what a test left of its session and client, so that a test expected to fail leaves nothing behind either. */
async function cleanUp(r: Recorder, proxy: TcpProxy): Promise<void> {
  if (r.conn.state !== "closed") r.conn.close();
  for (const pid of log.pids) if (processInfo(pid) !== undefined) exit(pid, "kill");
  await proxy.stop();
}

const CLIENT_FILES = ["src/behaviors/session.ts", "src/behaviors/bullet.ts", "client/corral-client.js"];

describe.each(TRANSPORTS)("resume on %s", (transport) => {
  test("the network resets four times mid-stream: every number once, in order, both ways, on one pid; then the client goes and the window passes", async () => {
    const proxy = await TcpProxy.start(server.port);
    const timers = watchTimers(CLIENT_FILES);
    const base = { processes: processCount(), timers: timerCount() };
    const r = open(proxy.url("/fast"), { transports: [transport] });
    try {
      await until(() => r.conn.state === "open", 3000, "the session to open");
      const cut = () => expect(proxy.cut()).toBeGreaterThan(0);
      await streamThrough(r, proxy, [cut, cut, cut, cut]);
      // Only this transport's own requests went through, one connection (or poll) per resume at least.
      const kinds = new Set(proxy.requests.map((q) => q.kind));
      expect(kinds).toEqual(new Set(transport === "websocket" ? ["websocket"] : [transport, "post"]));
      expect(proxy.requests.filter((q) => q.kind === transport).length).toBeGreaterThanOrEqual(5);
      await windowPasses(r, proxy, base, timers, transport);
    } finally {
      timers.stop();
      await cleanUp(r, proxy);
    }
  }, 30_000);

  test("the session's relay process killed (exit kill) three times mid-stream: the client resumes, every number once", async () => {
    const proxy = await TcpProxy.start(server.port);
    const r = open(proxy.url("/fast"), { transports: [transport] });
    try {
      await until(() => r.conn.state === "open", 3000, "the session to open");
      const kill = () => {
        // A poll is between two requests for a moment: the one held next is killed then.
        const relay = relays()[0];
        if (relay !== undefined) exit(relay, "kill");
        else setTimeout(kill, 1);
      };
      await streamThrough(r, proxy, [kill, kill, kill]);
      r.conn.close();
      await until(() => log.terminates.length === 1, 3000, "terminate");
      expect(log.terminates).toEqual([{ remote: { code: 1000, reason: "" } }]);
    } finally {
      await cleanUp(r, proxy);
    }
  }, 30_000);
});

test("a WebSocket gone silent (no FIN, no RST) mid-stream: the client's watchdog gives up on it and resumes, every number once", async () => {
  const proxy = await TcpProxy.start(server.port);
  const r = open(proxy.url("/fast"), { transports: ["websocket"] });
  try {
    await until(() => r.conn.state === "open", 3000, "the session to open");
    const started = performance.now();
    // The silent line is reset once the client is back elsewhere, as it would be in the end.
    await streamThrough(r, proxy, [() => expect(proxy.silence()).toBe(1), () => expect(proxy.cut()).toBe(2)]);
    // Found out by the watchdog, after twice the heartbeat and 1 s of silence.
    expect(performance.now() - started).toBeGreaterThan(2 * HEARTBEAT + 1000);
    r.conn.close();
    await until(() => log.terminates.length === 1, 3000, "terminate");
  } finally {
    await cleanUp(r, proxy);
  }
}, 30_000);

test("a proxy that breaks WebSockets, then event streams, then polls: each resume on the next transport, then WebSocket again; every number once", async () => {
  const proxy = await TcpProxy.start(server.port);
  const r = open(proxy.url("/fast"));
  try {
    await until(() => r.conn.state === "open", 3000, "the session to open");
    const used: (TransportName | null)[] = [];
    const blockThenCut = (blocked: RequestKind[]) => () => {
      used.push(r.conn.transport);
      proxy.block.clear();
      for (const k of blocked) proxy.block.add(k);
      expect(proxy.cut()).toBeGreaterThan(0);
    };
    await streamThrough(r, proxy, [blockThenCut(["websocket"]), blockThenCut(["websocket", "eventsource"]), blockThenCut(["longpoll"]), blockThenCut([])]);
    used.push(r.conn.transport);
    expect(used).toEqual(["websocket", "eventsource", "longpoll", "websocket", "websocket"]);
    // Each switch was forced by a 502 to the transport that had worked last, in this order.
    const refused = proxy.requests.filter((q) => q.fate === "blocked").map((q) => q.kind);
    expect(refused.filter((k, i) => k !== refused[i - 1])).toEqual(["websocket", "eventsource", "longpoll"]);
    r.conn.close();
    await until(() => log.terminates.length === 1, 3000, "terminate");
    expect(log.terminates).toEqual([{ remote: { code: 1000, reason: "" } }]);
  } finally {
    await cleanUp(r, proxy);
  }
}, 30_000);

/* ---------------------------------------------------------------- the edges: quiet sessions, acks, killed relays, closes between polls, the poll's grace, lost POSTs, the listener's stop */

/*
 * A session hears its client through what the client sends (docs/sessions.md, idleTimeout): on a
 * quiet WebSocket the answers to the server's pings, on an event stream the stream itself, on a
 * long-poll each poll. A connected client outlives idleTimeout on each.
 */
describe.each(TRANSPORTS)("a quiet session on %s", (transport) => {
  test("outlives the handler's idleTimeout while the client is connected", async () => {
    const r = open(server.url("/quiet"), { transports: [transport], heartbeatMs: 2000 });
    try {
      await until(() => r.conn.state === "open", 3000, "the session to open");
      await sleep(2500);
      expect(log.terminates).toEqual([]);
      expect(r.closes).toEqual([]);
    } finally {
      if (r.conn.state !== "closed") r.conn.close();
      await until(() => log.terminates.length === 1, 3000, "terminate");
    }
  });
});

test('WebSocket: the server acknowledges the client\'s frames (["a", n] after 64 frames or 1 s), so the client can forget them', async () => {
  const wire: string[] = [];
  class Tapped extends WebSocket {
    constructor(url: string) {
      super(url);
      this.on("message", (data: Buffer, isBinary: boolean) => {
        if (!isBinary) wire.push(data.toString());
      });
    }
  }
  const r = open(server.url("/live"), { transports: ["websocket"], WebSocket: Tapped });
  try {
    await until(() => r.conn.state === "open", 3000, "the session to open");
    for (let i = 1; i <= 100; i++) r.conn.send(`c:${i}`);
    await until(() => log.got.length === 100, 3000, "the hundred frames");
    await until(() => wire.includes('["a",100]'), 1500, 'the server\'s ["a",100]');
  } finally {
    r.conn.close();
    await until(() => log.terminates.length === 1, 3000, "terminate");
  }
});

// A killed relay runs no terminate: the session learns its transport is gone from its monitor's DOWN, and its window starts then.
test("a relay killed (exit kill) while the client cannot come back: the session still ends at its resume window", async () => {
  const proxy = await TcpProxy.start(server.port);
  const r = open(proxy.url("/fast"), { transports: ["websocket"] });
  try {
    await until(() => r.conn.state === "open", 3000, "the session to open");
    expect(proxy.silence()).toBe(1); // the client cannot see the relay go, nor come back before the network does
    exit(relays()[0]!, "kill");
    await proxy.refuse();
    await until(() => log.terminates.length === 1, WINDOW + 1500, "terminate at the resume window");
    expect(log.terminates).toEqual(["timeout"]);
  } finally {
    await cleanUp(r, proxy);
  }
});

// Between two polls no transport is attached: the close is kept for the next poll, which gets it instead of a 404 (the client's 4404).
test("long-poll: the handler's close code reaches the client when the handler closes between two polls", async () => {
  const proxy = await TcpProxy.start(server.port);
  proxy.delay.set("longpoll", 300);
  const r = open(proxy.url("/live"), { transports: ["longpoll"] });
  try {
    await until(() => r.conn.state === "open" && relays("/live").length === 1, 3000, "a poll held");
    send<AppMessage>(log.pids[0]!, { push: "last words" });
    await until(() => r.messages.length === 1, 3000, "the held poll's answer");
    // The next poll is on its way (300 ms late); the POST is not.
    r.conn.send("close:4001:gone fishing");
    await until(() => r.closes.length === 1, 3000, "onclose");
    expect(r.closes).toEqual([{ code: 4001, reason: "gone fishing" }]);
  } finally {
    await cleanUp(r, proxy);
  }
});

// The protocol gives an answered poll heartbeatMs + 5 s to be renewed before its session is away; the client finds a lost answer out within heartbeatMs + 1 s.
test("long-poll: a line gone silent is resumed when the client finds it out within the protocol's grace (heartbeatMs + 5 s) and the window", async () => {
  const proxy = await TcpProxy.start(server.port);
  const r = open(proxy.url("/brief"), { transports: ["longpoll"] });
  try {
    await until(() => r.conn.state === "open" && relays("/brief").length === 1, 3000, "a poll held");
    expect(proxy.silence()).toBeGreaterThan(0);
    send<AppMessage>(log.pids[0]!, { push: "into the silence" });
    // The watchdog: 2 × 250 ms + 1 s; the grace: 250 ms + 5 s, then 500 ms of window.
    await settled(r, () => r.events.includes("reconnect") || r.closes.length > 0, 5000, "the resume", proxy);
    expect(r.closes).toEqual([]);
    await until(() => r.messages.includes("into the silence"), 3000, "the frame pushed into the silence");
  } finally {
    await cleanUp(r, proxy);
  }
});

// The client waits for each POST's answer before the next: one lost on a dead keep-alive connection times out (twice the heartbeat and 1 s), and the client resumes and sends again.
test("EventSource: a POST that is never answered (its connection went silent) does not stop the client's frames for good", async () => {
  const proxy = await TcpProxy.start(server.port);
  const r = open(proxy.url("/fast"), { transports: ["eventsource"] });
  try {
    await until(() => r.conn.state === "open", 3000, "the session to open");
    proxy.swallow.add("post");
    r.conn.send("c:1");
    await until(() => proxy.requests.some((q) => q.kind === "post" && q.fate === "lost"), 3000, "the POST to be lost");
    proxy.swallow.clear();
    r.conn.send("c:2");
    await settled(r, () => log.got.length === 2, 2 * HEARTBEAT + 1000 + 3000, "both frames, the lost POST given up", proxy);
    expect(log.got).toEqual(["c:1", "c:2"]);
  } finally {
    await cleanUp(r, proxy);
  }
});

test("stopListener ends every session of the listener with \"shutdown\": on each transport (each client gets onclose 1001), between two polls, and away", async () => {
  const proxy = await TcpProxy.start(server.port);
  const carried = TRANSPORTS.map((transport) => open(server.url("/live"), { transports: [transport] }));
  // A long-poll whose next poll is late: the stop comes between two polls.
  proxy.delay.set("longpoll", 300);
  const between = open(proxy.url("/live"), { transports: ["longpoll"] });
  const away = open(proxy.url("/fast"), { transports: ["websocket"] });
  try {
    const all = [...carried, between, away];
    await until(() => all.every((r) => r.conn.state === "open") && log.pids.length === 5, 3000, "five sessions open");
    await until(() => relays("/live").length === 4, 3000, "every transport attached");
    for (const pid of log.pids) send<AppMessage>(pid, { push: "answer the poll" });
    await until(() => between.messages.length === 1, 3000, "the held poll's answer");
    await proxy.refuse();
    await until(() => away.conn.state === "reconnecting" && relays("/fast").length === 0, 3000, "the last client away");
    await server.stop();
    expect(log.terminates).toEqual(Array(5).fill("shutdown"));
    await until(() => carried.every((r) => r.closes.length === 1), 3000, "onclose on each client still connected");
    for (const r of carried) expect(r.closes).toEqual([{ code: 1001, reason: "" }]);
  } finally {
    for (const r of [...carried, between, away]) if (r.conn.state !== "closed") r.conn.close();
    await proxy.stop();
  }
});
