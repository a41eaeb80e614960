/**
 * bullet() on each transport, spoken by hand (ws, node:http): a session opens with hello,
 * frames travel both ways numbered (text, binary, text that reads like a packet), the
 * handler pushes from send(pid) and from timers, and every way a session ends (the handler's
 * close, a crash, the client's close) reaches both the client and terminate.
 */
import { describe, expect, test } from "vitest";
import { isAlive, send } from "../../src/index.js";
import { until } from "../support/helpers.js";
import { EventStream, http, jsonOf, KINDS, post, startHttp, WsPeer, UpgradeRefused, type Kind } from "../support/session-client.js";
import { FAST, harness, session, terminated, transportUp } from "./harness.js";

const h = harness();

const sidQuery = (sid: string, ack = 0): string => `sid=${encodeURIComponent(sid)}&ack=${ack}`;


describe.each(KINDS)("over %s", (kind: Kind) => {
  test("a new session: hello with a fresh id, init and websocketInit once each, websocketInit in the session's own process", async () => {
    const c = h.client();
    await c.connect(kind);
    const hello = c.control[0]!.packet;
    expect(hello).toEqual(["hello", c.sid, 0, FAST.heartbeatMs, FAST.resumeWindowMs]);
    expect(c.sid).toMatch(/^[A-Za-z0-9_-]{11}\.[A-Za-z0-9_-]{43}$/);
    const s = await session(h.rec);
    expect(s.inits).toBe(1);
    expect(s.websocketInits).toBe(1);
    expect(isAlive(s.pid!)).toBe(true);
    // init saw the first request as it was.
    expect(s.initQuery).toBe(kind === "websocket" ? "" : kind === "eventsource" ? "t=es" : "t=poll");
    expect(h.rec.sessions).toHaveLength(1);
  });

  test("echo: text and binary both ways, in order, numbered from 1, with a text that reads like a packet", async () => {
    const c = h.client({ ackDelayMs: 20 });
    await c.connect(kind);
    c.send("echo:hello");
    c.send(new Uint8Array([0, 255, 1]));
    c.send("echo:[1,2]");
    c.send("[not a packet");
    c.send("echo:");
    await c.waitDelivered(4);
    expect(c.delivered).toEqual(["hello", new Uint8Array([0, 255, 1]), "[1,2]", ""]);
    const s = await session(h.rec);
    await until(() => s.got.length === 5, 2000, "5 frames at the handler");
    expect(s.got.map((d) => (typeof d === "string" ? d : [...d]))).toEqual(["echo:hello", [0, 255, 1], "echo:[1,2]", "[not a packet", "echo:"]);
    expect(c.inSeq).toBe(4);
    expect(c.violations).toEqual([]);
    expect(c.duplicates).toBe(0);
  });

  test("server push: what the test sends to the session's pid reaches the client", async () => {
    const c = h.client();
    await c.connect(kind);
    const s = await session(h.rec);
    send(s.pid!, { push: "one" });
    send(s.pid!, { push: new Uint8Array([9, 8, 7]) });
    send(s.pid!, { pushMany: 3, prefix: "many" });
    await c.waitDelivered(5);
    expect(c.delivered).toEqual(["one", new Uint8Array([9, 8, 7]), "many1", "many2", "many3"]);
    expect(c.violations).toEqual([]);
  });

  test("timers: a handler's sendAfter stream arrives in order", async () => {
    const c = h.client({ ackDelayMs: 20 });
    await c.connect(kind);
    const s = await session(h.rec);
    send(s.pid!, { stream: 20, everyMs: 5 });
    await c.waitDelivered(20);
    expect(c.delivered).toEqual(Array.from({ length: 20 }, (_, i) => `s${i + 1}`));
    expect(c.violations).toEqual([]);
  });

  test("the handler closes with a code: the client gets [\"c\", code, reason], terminate(\"stop\"), the id is forgotten", async () => {
    const c = h.client();
    await c.connect(kind);
    const s = await session(h.rec);
    c.send("close:4001:bye now");
    expect(await c.waitClosed()).toEqual({ code: 4001, reason: "bye now" });
    await terminated(s);
    expect(s.terminates).toEqual(["stop"]);
    await until(() => !isAlive(s.pid!), 2000, "the session process to end");
    const again = await http(h.server.port, `/live?t=poll&${sidQuery(c.sid!)}`);
    expect(again.status).toBe(404);
  });

  test("a crash: the client gets [\"c\", 1011, …], terminate({ crash })", async () => {
    const c = h.client();
    await c.connect(kind);
    const s = await session(h.rec);
    // Between two polls the client is away, and a session that ends then has no one to tell.
    await transportUp();
    send(s.pid!, { crash: true });
    expect((await c.waitClosed()).code).toBe(1011);
    await terminated(s);
    expect(s.terminates).toHaveLength(1);
    expect((s.terminates[0] as { crash: Error }).crash.message).toBe("asked to crash");
  });

  test("the client closes on purpose: terminate({ remote }) at once, not after the window", async () => {
    const c = h.client();
    await c.connect(kind);
    const s = await session(h.rec);
    const t0 = Date.now();
    await c.close(4000, "done");
    await terminated(s, 1000);
    expect(Date.now() - t0).toBeLessThan(FAST.resumeWindowMs!);
    expect(s.terminates).toEqual([{ remote: { code: 4000, reason: "done" } }]);
    await until(() => !isAlive(s.pid!), 1000, "the session process to end");
    expect((await http(h.server.port, `/live?t=es&${sidQuery(c.sid!)}`)).status).toBe(404);
  });

  test("the server acknowledges the client's frames ([\"a\", n] after 64 frames or 1 s), so the client can forget them", async () => {
    const c = h.client();
    await c.connect(kind);
    const s = await session(h.rec);
    for (let i = 1; i <= 70; i++) c.send(`m${i}`);
    await until(() => s.got.length === 70, 2000, "70 frames at the handler");
    await c.waitAcked(1500);
    expect(c.serverAck).toBe(70);
    expect(c.control.some((p) => p.packet[0] === "a")).toBe(true);
  });

  test("an idle transport gets heartbeats and stays connected; the session stays", async () => {
    const c = h.client();
    await c.connect(kind);
    const s = await session(h.rec);
    await new Promise((r) => setTimeout(r, FAST.heartbeatMs! * 4 + 100));
    const beats = c.control.filter((p) => p.packet[0] === "h").length;
    // The protocol's WebSocket heartbeat is a ping, which a browser answers by itself.
    if (kind === "websocket") expect(c.pings).toBeGreaterThanOrEqual(2);
    else expect(beats).toBeGreaterThanOrEqual(2);
    expect(s.terminates).toEqual([]);
    c.send("echo:still here");
    await c.waitDelivered(1);
    expect(c.connections).toBe(1);
  });
});

// The WebSocket transport closes after 2 × heartbeatMs + 5 s without a byte from the client: the heartbeat (a ping) must draw one.
test("an idle WebSocket stays open past 2 × heartbeatMs + 5 s: the heartbeat keeps it alive", async () => {
  await h.serve({ resumeWindowMs: 400, heartbeatMs: 100 });
  const c = h.client();
  await c.connect("websocket");
  const s = await session(h.rec);
  await new Promise((r) => setTimeout(r, 2 * 100 + 5000 + 1200));
  // The connection it opened is the one it still has.
  expect(c.transportOpen).toBe(true);
  send(s.pid!, { push: "still on the first connection" });
  await c.waitDelivered(1);
  expect(c.connections).toBe(1);
  expect(s.terminates).toEqual([]);
}, 15_000);

// A heartbeat on time even when a Node timer fires a hair early by performance.now().
test("heartbeats come every heartbeatMs: no gap on an idle event stream, and no idle poll, reaches 1.5 × heartbeatMs", async () => {
  const HB = 100;
  await h.serve({ resumeWindowMs: 1000, heartbeatMs: HB });
  const ws = await WsPeer.open(h.server.wsUrl("/live"));
  const [, sid] = (await ws.nextPacket()) as [string, string];
  ws.destroy();
  const es = await EventStream.open(h.server.port, `/live?t=es&${sidQuery(sid)}`);
  expect((await es.next())[0]).toBe("hello");
  const gaps: number[] = [];
  let last = performance.now();
  for (let i = 0; i < 20; i++) {
    expect(await es.next(1000)).toEqual(["h"]);
    const now = performance.now();
    gaps.push(Math.round(now - last));
    last = now;
  }
  es.destroy();
  for (let i = 0; i < 8; i++) {
    const t0 = performance.now();
    expect(jsonOf(await http(h.server.port, `/live?t=poll&${sidQuery(sid)}`))).toEqual([["h"]]);
    gaps.push(Math.round(performance.now() - t0));
  }
  expect(gaps.filter((g) => g >= HB * 1.5)).toEqual([]);
}, 15_000);

describe("on the wire", () => {
  test("WebSocket: hello is a JSON packet; data are plain frames, numbered implicitly; a text that starts with [ is a [\"t\", seq, text] packet", async () => {
    const ws = await WsPeer.open(h.server.wsUrl("/live"));
    const hello = await ws.nextPacket();
    expect(hello[0]).toBe("hello");
    ws.ws.send("echo:plain");
    ws.ws.send("echo:[x]");
    ws.ws.send(Buffer.from([1, 2]), { binary: true });
    const m1 = await ws.next();
    expect([m1.binary, m1.data.toString()]).toEqual([false, "plain"]);
    expect(await ws.nextPacket()).toEqual(["t", 2, "[x]"]);
    const m3 = await ws.next();
    expect([m3.binary, [...m3.data]]).toEqual([true, [1, 2]]);
    // The client's "[" text, spelled out, is data too.
    ws.sendPacket(["t", 4, "echo:[y"]);
    expect(await ws.nextPacket()).toEqual(["t", 4, "[y"]);
    const s = await session(h.rec);
    expect(s.got.slice(0, 2)).toEqual(["echo:plain", "echo:[x]"]);
    ws.ws.close(1000);
    await ws.closed();
  });

  test("EventSource: the anti-buffering headers; each packet one data: line, id: <seq> on data", async () => {
    // Open the session on a WebSocket, then resume it as an event stream.
    const ws = await WsPeer.open(h.server.wsUrl("/live"));
    const [, sid] = (await ws.nextPacket()) as [string, string];
    const s = await session(h.rec);
    send(s.pid!, { push: "a\nb" });
    send(s.pid!, { push: new Uint8Array([255]) });
    await ws.next();
    await ws.next();
    ws.destroy();
    await until(() => ws.closeInfo !== undefined, 1000, "the WebSocket to close");
    const es = await EventStream.open(h.server.port, `/live?t=es&${sidQuery(sid)}`);
    expect(es.status).toBe(200);
    expect(es.headers["content-type"]).toBe("text/event-stream; charset=utf-8");
    expect(es.headers["cache-control"]).toBe("no-store");
    expect(es.headers["x-accel-buffering"]).toBe("no");
    const hello = await es.nextEvent();
    expect(hello.id).toBeUndefined();
    expect(JSON.parse(hello.data)).toEqual(["hello", sid, 0, FAST.heartbeatMs, FAST.resumeWindowMs]);
    expect(await es.nextEvent()).toEqual({ id: "1", data: JSON.stringify(["t", 1, "a\nb"]) });
    expect(await es.nextEvent()).toEqual({ id: "2", data: JSON.stringify(["b", 2, "/w=="]) });
    // Then, with nothing to say, a heartbeat: a data line with no id.
    expect(await es.nextEvent(FAST.heartbeatMs! * 3)).toEqual({ id: undefined, data: '["h"]' });
    es.destroy();
  });

  test("long-poll: JSON answers, no-store; a poll is held until there is something, then answered with every packet after its ack", async () => {
    const ws = await WsPeer.open(h.server.wsUrl("/live"));
    const [, sid] = (await ws.nextPacket()) as [string, string];
    const s = await session(h.rec);
    ws.destroy();
    await until(() => ws.closeInfo !== undefined, 1000, "the WebSocket to close");
    const held = startHttp(h.server.port, `/live?t=poll&${sidQuery(sid)}`);
    await new Promise((r) => setTimeout(r, 50));
    send(s.pid!, { pushMany: 2, prefix: "x" });
    const a = await held.answer;
    expect(a.status).toBe(200);
    expect(a.headers["content-type"]).toBe("application/json");
    expect(a.headers["cache-control"]).toBe("no-store");
    expect(jsonOf(a)).toEqual([
      ["t", 1, "x1"],
      ["t", 2, "x2"],
    ]);
    // A poll whose ack is behind is answered at once with what it missed.
    const behind = await http(h.server.port, `/live?t=poll&${sidQuery(sid, 1)}`);
    expect(jsonOf(behind)).toEqual([["t", 2, "x2"]]);
    // Up to date and idle: [["h"]] after heartbeatMs.
    const t0 = Date.now();
    const idle = await http(h.server.port, `/live?t=poll&${sidQuery(sid, 2)}`);
    expect(jsonOf(idle)).toEqual([["h"]]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(FAST.heartbeatMs! - 20);
    expect(Date.now() - t0).toBeLessThan(FAST.heartbeatMs! + 300);
  });

  test("long-poll: a resume's first poll asks for hello and is answered at once, with nothing else to send; a poll that does not ask is held", async () => {
    const ws = await WsPeer.open(h.server.wsUrl("/live"));
    const [, sid] = (await ws.nextPacket()) as [string, string];
    const s = await session(h.rec);
    ws.destroy();
    await until(() => ws.closeInfo !== undefined, 1000, "the WebSocket to close");
    const t0 = Date.now();
    const resumed = await http(h.server.port, `/live?t=poll&${sidQuery(sid)}&hello=1`);
    expect(Date.now() - t0).toBeLessThan(FAST.heartbeatMs! / 2);
    expect(jsonOf(resumed)).toEqual([["hello", sid, 0, FAST.heartbeatMs, FAST.resumeWindowMs]]);
    const t1 = Date.now();
    expect(jsonOf(await http(h.server.port, `/live?t=poll&${sidQuery(sid)}`))).toEqual([["h"]]);
    expect(Date.now() - t1).toBeGreaterThanOrEqual(FAST.heartbeatMs! - 20);
    expect((await post(h.server.port, "/live", sid, [["c", 1000, ""]])).status).toBe(200);
    await terminated(s);
  });

  test("long-poll: a second poll while one is held answers the first with []", async () => {
    const ws = await WsPeer.open(h.server.wsUrl("/live"));
    const [, sid] = (await ws.nextPacket()) as [string, string];
    const s = await session(h.rec);
    ws.destroy();
    const first = startHttp(h.server.port, `/live?t=poll&${sidQuery(sid)}`);
    await new Promise((r) => setTimeout(r, 30));
    const second = startHttp(h.server.port, `/live?t=poll&${sidQuery(sid)}`);
    const a = await first.answer;
    expect([a.status, jsonOf(a)]).toEqual([200, []]);
    send(s.pid!, { push: "to the second" });
    expect(jsonOf(await second.answer)).toEqual([["t", 1, "to the second"]]);
  });

  test("POST: the client's frames as a JSON list (application/json or text/plain), answered [[\"a\", n]]", async () => {
    const ws = await WsPeer.open(h.server.wsUrl("/live"));
    const [, sid] = (await ws.nextPacket()) as [string, string];
    const s = await session(h.rec);
    const a = await post(h.server.port, "/live", sid, [
      ["t", 1, "one"],
      ["b", 2, "AAEC"],
    ]);
    expect([a.status, jsonOf(a)]).toEqual([200, [["a", 2]]]);
    const b = await post(h.server.port, "/live", sid, [["t", 3, "three"]], { headers: { "content-type": "text/plain;charset=UTF-8" } });
    expect([b.status, jsonOf(b)]).toEqual([200, [["a", 3]]]);
    await until(() => s.got.length === 3, 1000, "3 frames");
    expect(s.got.map((d) => (typeof d === "string" ? d : [...d]))).toEqual(["one", [0, 1, 2], "three"]);
    // A WebSocket numbers its data frames on its own connection, from hello's ack + 1 (here 1): a duplicate, dropped.
    ws.ws.send("one again");
    ws.sendPacket(["t", 4, "four"]);
    await until(() => s.got.length === 4, 1000, "the fourth frame");
    expect(s.got[3]).toBe("four");
    ws.ws.close(1000);
    await ws.closed();
  });

  test("EventSource: a native reconnect's Last-Event-ID is the ack when the query has none", async () => {
    const ws = await WsPeer.open(h.server.wsUrl("/live"));
    const [, sid] = (await ws.nextPacket()) as [string, string];
    const s = await session(h.rec);
    send(s.pid!, { pushMany: 3, prefix: "e" });
    for (let i = 0; i < 3; i++) await ws.next();
    ws.destroy();
    await until(() => ws.closeInfo !== undefined, 1000, "the WebSocket to close");
    const es = await EventStream.open(h.server.port, `/live?t=es&sid=${sid}`, { "last-event-id": "2" });
    expect((await es.next())[0]).toBe("hello");
    expect(await es.next()).toEqual(["t", 3, "e3"]);
    es.destroy();
  });

  test("a transport the route disabled: 400 transport disabled (the WebSocket upgrade refused with 400)", async () => {
    await h.serve({ ...FAST, transports: ["longpoll"] });
    const es = await http(h.server.port, "/live?t=es", { headers: { accept: "text/event-stream" } });
    expect([es.status, jsonOf(es)]).toEqual([400, { error: "transport disabled" }]);
    const refused = await WsPeer.open(h.server.wsUrl("/live")).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(UpgradeRefused);
    expect((refused as UpgradeRefused).status).toBe(400);
    expect(h.rec.sessions).toHaveLength(0);
  });

  test("a second WebSocket on the same session takes over: the first is closed, the pid stays", async () => {
    const c1 = await WsPeer.open(h.server.wsUrl("/live"));
    const [, sid] = (await c1.nextPacket()) as [string, string];
    const s = await session(h.rec);
    const c2 = await WsPeer.open(h.server.wsUrl(`/live?${sidQuery(sid)}`));
    expect((await c2.nextPacket())[0]).toBe("hello");
    await c1.closed();
    send(s.pid!, { push: "to c2" });
    expect((await c2.next()).data.toString()).toBe("to c2");
    expect(h.rec.sessions).toHaveLength(1);
    expect(s.websocketInits).toBe(1);
    c2.ws.close(1000);
    await c2.closed();
  });
});
