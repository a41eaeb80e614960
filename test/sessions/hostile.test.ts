/**
 * A client that breaks the rules: a guessed, replayed or foreign session id, another
 * origin, a gap or a replay in its numbering, an ack of frames it never got, malformed
 * requests and packets. Each is refused with the protocol's status or close code, says
 * nothing about any session, crashes nothing, and leaves the session it aimed at intact.
 */
import { createHash, randomBytes } from "node:crypto";
import { afterEach, describe, expect, test } from "vitest";
import { bullet, isAlive, nodeName, send } from "../../src/index.js";
import { sleep, until } from "../support/helpers.js";
import { EventStream, http, jsonOf, post, UpgradeRefused, WsPeer, type HttpAnswer } from "../support/session-client.js";
import { harness, session } from "./harness.js";
import { recorder, testHandler } from "./handler.js";

const h = harness({ resumeWindowMs: 1000, heartbeatMs: 200 });

afterEach(() => {
  // Nothing a client sends makes a process crash or the server log an error.
  expect(h.logs.filter((r) => r.level >= 50)).toEqual([]);
});

const NONE = { error: "no such session" };

/** A session opened on a WebSocket: the peer, its id, and the handler's view. */
async function opened(headers: Record<string, string> = {}): Promise<{ ws: WsPeer; sid: string; s: Awaited<ReturnType<typeof session>> }> {
  const ws = await WsPeer.open(h.server.wsUrl("/live"), headers);
  const hello = await ws.nextPacket();
  expect(hello[0]).toBe("hello");
  const s = await session(h.rec, h.rec.sessions.length - 1);
  return { ws, sid: hello[1] as string, s };
}

/** Every way to present sid to path: the status (or the WebSocket's refusal) and body of each. */
async function presentEverywhere(path: string, sid: string, headers: Record<string, string> = {}): Promise<{ what: string; status: number; body: unknown }[]> {
  const q = `sid=${encodeURIComponent(sid)}&ack=0`;
  const out: { what: string; status: number; body: unknown }[] = [];
  const record = (what: string, a: HttpAnswer): void => {
    out.push({ what, status: a.status, body: a.body === "" ? "" : jsonOf(a) });
  };
  record("eventsource", await http(h.server.port, `${path}?t=es&${q}`, { headers: { accept: "text/event-stream", ...headers } }));
  record("longpoll", await http(h.server.port, `${path}?t=poll&${q}`, { headers }));
  record("post", await post(h.server.port, path, sid, [["t", 1, "intruder"]], { headers }));
  const ws = await WsPeer.open(h.server.wsUrl(`${path}?${q}`), headers).catch((e: unknown) => e);
  if (ws instanceof WsPeer) {
    ws.destroy();
    out.push({ what: "websocket", status: 101, body: "" });
  } else out.push({ what: "websocket", status: (ws as UpgradeRefused).status, body: "" });
  return out;
}

const refusedEverywhere = (status: number, body: unknown): unknown => [
  { what: "eventsource", status, body },
  { what: "longpoll", status, body },
  { what: "post", status, body },
  { what: "websocket", status, body: "" },
];

describe("session ids", () => {
  test("are the node's tag and 32 random bytes (43 base64url characters), all different, with no visible structure", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 100; i++) {
      const { ws, sid } = await opened();
      ids.push(sid);
      ws.sendPacket(["c", 1000, ""]);
      ws.ws.close(1000);
    }
    expect(new Set(ids).size).toBe(ids.length);
    // The tag names the owner node without its name: a digest of it, the same for every session of the node.
    expect(new Set(ids.map((id) => id.split(".")[0]))).toEqual(new Set([createHash("sha256").update(nodeName()).digest("base64url").slice(0, 11)]));
    const randoms = ids.map((id) => id.split(".")[1]!);
    for (const id of randoms) {
      expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(Buffer.from(id, "base64url")).toHaveLength(32);
    }
    // No shared prefix (a counter or a clock would show) and about half the bits set.
    expect(new Set(randoms.map((id) => id.slice(0, 6))).size).toBe(ids.length);
    let ones = 0;
    for (const id of randoms) for (const byte of Buffer.from(id, "base64url")) ones += byte.toString(2).replaceAll("0", "").length;
    const ratio = ones / (ids.length * 256);
    expect(ratio).toBeGreaterThan(0.47);
    expect(ratio).toBeLessThan(0.53);
    await until(() => h.rec.sessions.every((s) => s.terminates.length === 1), 2000, "every session to end");
  });

  test("a guessed id, or garbage in its place, is 404 on every transport; no session starts", async () => {
    const { s } = await opened();
    for (const sid of [randomBytes(32).toString("base64url"), "", "x", "../../etc", "é".repeat(50), "A".repeat(4000)]) {
      expect(await presentEverywhere("/live", sid)).toEqual(refusedEverywhere(404, NONE));
    }
    expect(h.rec.sessions).toHaveLength(1);
    expect(s.got).toEqual([]);
    expect(isAlive(s.pid!)).toBe(true);
  });

  test("an id replayed after its session ended is 404, the same answer as an id that never was", async () => {
    const { ws, sid, s } = await opened();
    ws.sendPacket(["c", 1000, "bye"]);
    await ws.closed();
    await until(() => s.terminates.length === 1, 1000, "the session to end");
    const replayed = await presentEverywhere("/live", sid);
    expect(replayed).toEqual(refusedEverywhere(404, NONE));
    const a = await http(h.server.port, `/live?t=poll&sid=${sid}&ack=0`);
    const b = await http(h.server.port, `/live?t=poll&sid=${randomBytes(32).toString("base64url")}&ack=0`);
    expect([a.status, a.headers["content-type"], a.body]).toEqual([b.status, b.headers["content-type"], b.body]);
    expect(h.rec.sessions).toHaveLength(1);
  });

  test("an id presented to another bullet() route is 404 there, and its session is untouched", async () => {
    const other = recorder();
    await h.serve(undefined, undefined, [["/other", bullet(testHandler(other), { resumeWindowMs: 1000, heartbeatMs: 200 })]]);
    const { ws, sid, s } = await opened();
    expect(await presentEverywhere("/other", sid)).toEqual(refusedEverywhere(404, NONE));
    expect(other.sessions).toHaveLength(0);
    expect(s.got).toEqual([]);
    // The session still works on its own route.
    send(s.pid!, { push: "still mine" });
    expect((await ws.next()).data.toString()).toBe("still mine");
    ws.sendPacket(["c", 1000, ""]);
    await ws.closed();
  });
});

describe("origins", () => {
  const GOOD = "https://good.example";
  const BAD = { origin: "https://evil.example" };

  test("a session whose handler allows one origin: another origin cannot open, resume or post to it (403), the allowed one and a non-browser client can", async () => {
    await h.serve(undefined, { allowedOrigins: [GOOD] });
    const refused = await WsPeer.open(h.server.wsUrl("/live"), BAD).catch((e: unknown) => e);
    expect((refused as UpgradeRefused).status).toBe(403);
    const es = await http(h.server.port, "/live?t=es", { headers: { accept: "text/event-stream", ...BAD } });
    expect(es.status).toBe(403);
    const poll = await http(h.server.port, "/live?t=poll", { headers: BAD });
    expect(poll.status).toBe(403);

    const { ws, sid, s } = await opened({ origin: GOOD });
    expect(await presentEverywhere("/live", sid, BAD)).toEqual(refusedEverywhere(403, { error: "origin not allowed" }));
    expect(s.got).toEqual([]);
    // The allowed origin, and a client that sends no Origin (not a browser), may post.
    expect((await post(h.server.port, "/live", sid, [["t", 1, "from good"]], { headers: { origin: GOOD } })).status).toBe(200);
    expect((await post(h.server.port, "/live", sid, [["t", 2, "no origin"]])).status).toBe(200);
    await until(() => s.got.length === 2, 1000, "two frames");
    expect(s.got).toEqual(["from good", "no origin"]);
    ws.sendPacket(["c", 1000, ""]);
    await ws.closed();
  });
});

describe("numbering", () => {
  test("a gap on a WebSocket closes it with 1002; nothing is delivered out of order, and the session resumes where it was", async () => {
    const { ws, sid, s } = await opened();
    ws.ws.send("one");
    ws.sendPacket(["t", 5, "five"]);
    expect((await ws.closed()).code).toBe(1002);
    expect(s.got).toEqual(["one"]);
    const again = await WsPeer.open(h.server.wsUrl(`/live?sid=${sid}&ack=0`));
    expect((await again.nextPacket()).slice(0, 3)).toEqual(["hello", sid, 1]);
    again.ws.send("two");
    await until(() => s.got.length === 2, 1000, "frame two");
    expect(s.got).toEqual(["one", "two"]);
    expect(s.terminates).toEqual([]);
    again.ws.close(1000);
    await again.closed();
  });

  test("a gap in a POST is 400; the frames before it are in, and a correct retry delivers the rest once", async () => {
    const { sid, s, ws } = await opened();
    ws.destroy();
    const bad = await post(h.server.port, "/live", sid, [
      ["t", 1, "a"],
      ["t", 3, "c"],
    ]);
    expect(bad.status).toBe(400);
    expect(jsonOf(bad)).toHaveProperty("error");
    const retry = await post(h.server.port, "/live", sid, [
      ["t", 1, "a"],
      ["t", 2, "b"],
      ["t", 3, "c"],
    ]);
    expect([retry.status, jsonOf(retry)]).toEqual([200, [["a", 3]]]);
    await until(() => s.got.length === 3, 1000, "three frames");
    await sleep(20);
    expect(s.got).toEqual(["a", "b", "c"]);
  });

  test("a replayed frame is dropped: the handler gets it once (POST, and a WebSocket's explicit number)", async () => {
    const { ws, sid, s } = await opened();
    for (let i = 0; i < 3; i++) {
      const a = await post(h.server.port, "/live", sid, [["t", 1, "once"]]);
      expect([a.status, jsonOf(a)]).toEqual([200, [["a", 1]]]);
    }
    ws.sendPacket(["t", 1, "once"]);
    ws.sendPacket(["t", 2, "twice?"]);
    ws.sendPacket(["t", 2, "twice?"]);
    await until(() => s.got.length >= 2, 1000, "two frames");
    await sleep(50);
    expect(s.got).toEqual(["once", "twice?"]);
    ws.sendPacket(["c", 1000, ""]);
    await ws.closed();
  });

  test("an ack of frames never sent (packet, POST, or request query) is refused and changes nothing: the frames are still kept and resent", async () => {
    const { ws, sid, s } = await opened();
    send(s.pid!, { pushMany: 2, prefix: "f" });
    await ws.next();
    await ws.next();
    // On the WebSocket: 1002.
    ws.sendPacket(["a", 5]);
    expect((await ws.closed()).code).toBe(1002);
    // By POST: 400.
    const p = await post(h.server.port, "/live", sid, [["a", 99]]);
    expect(p.status).toBe(400);
    // In a request's query: 400, or the upgrade refused with 400.
    expect((await http(h.server.port, `/live?t=poll&sid=${sid}&ack=3`)).status).toBe(400);
    expect((await http(h.server.port, `/live?t=es&sid=${sid}&ack=3`, { headers: { accept: "text/event-stream" } })).status).toBe(400);
    const refused = await WsPeer.open(h.server.wsUrl(`/live?sid=${sid}&ack=1000`)).catch((e: unknown) => e);
    expect((refused as UpgradeRefused).status).toBe(400);
    // A Last-Event-ID from the future is the same lie.
    expect((await http(h.server.port, `/live?t=es&sid=${sid}`, { headers: { accept: "text/event-stream", "last-event-id": "7" } })).status).toBe(400);
    // None of that was taken as an ack: the client that has nothing gets both frames again.
    const es = await EventStream.open(h.server.port, `/live?t=es&sid=${sid}&ack=0`);
    expect((await es.next())[0]).toBe("hello");
    expect(await es.next()).toEqual(["t", 1, "f1"]);
    expect(await es.next()).toEqual(["t", 2, "f2"]);
    es.destroy();
    expect(s.terminates).toEqual([]);
  });

  test("a stale ack (below what was acknowledged) is ignored, not an error", async () => {
    const { ws, sid, s } = await opened();
    send(s.pid!, { pushMany: 3, prefix: "g" });
    for (let i = 0; i < 3; i++) await ws.next();
    expect((await post(h.server.port, "/live", sid, [["a", 3]])).status).toBe(200);
    expect((await post(h.server.port, "/live", sid, [["a", 1]])).status).toBe(200);
    // The frames acknowledged are forgotten: a poll from 0 finds nothing to resend.
    ws.destroy();
    const t0 = Date.now();
    const poll = await http(h.server.port, `/live?t=poll&sid=${sid}&ack=0`);
    expect(jsonOf(poll)).toEqual([["h"]]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
  });
});

describe("malformed requests and packets", () => {
  test("a malformed query, method or body gets its status; the session it named still works", async () => {
    const { ws, sid, s } = await opened();
    const port = h.server.port;
    const status = async (path: string, opts: Parameters<typeof http>[2] = {}): Promise<number> => (await http(port, path, opts)).status;
    expect(await status(`/live?t=poll&sid=${sid}&ack=abc`)).toBe(400);
    expect(await status(`/live?t=poll&sid=${sid}&ack=-1`)).toBe(400);
    expect(await status(`/live?t=poll&sid=${sid}&ack=1e3`)).toBe(400);
    expect(await status(`/live?t=poll&sid=${sid}&ack=99999999999999999999`)).toBe(400);
    expect(await status(`/live?t=xyz`)).toBe(400);
    expect(await status(`/live`)).toBe(400);
    expect(await status(`/live?t=poll&sid=${sid}`, { method: "PUT" })).toBe(405);
    expect(await status(`/live`, { method: "POST", body: "[]" })).toBe(400);
    expect((await post(port, "/live", sid, "not json")).status).toBe(400);
    expect((await post(port, "/live", sid, '{"t":1}')).status).toBe(400);
    const bad: unknown[] = [
      [42],
      [["zz", 1]],
      [["t", "1", "x"]],
      [["t", 1]],
      [["t", 1.5, "x"]],
      [["t", -1, "x"]],
      [["t", 1, 7]],
      [["b", 1, "not base64!"]],
      [["a"]],
      [["a", "1"]],
      [["c", 999, ""]],
      [["c", 5000, ""]],
      [["c", 1000, "x".repeat(200)]],
      [["hello", sid, 0, 0, 0]],
    ];
    for (const body of bad) {
      const a = await post(port, "/live", sid, body);
      expect([JSON.stringify(body), a.status]).toEqual([JSON.stringify(body), 400]);
    }
    expect(s.got).toEqual([]);
    expect(s.terminates).toEqual([]);
    send(s.pid!, { push: "fine" });
    expect((await ws.next()).data.toString()).toBe("fine");
    const ok = await post(port, "/live", sid, [["t", 1, "fine too"]]);
    expect([ok.status, jsonOf(ok)]).toEqual([200, [["a", 1]]]);
    ws.sendPacket(["c", 1000, ""]);
    await ws.closed();
  });

  test("a WebSocket packet that is not one closes that transport with 1002; the session stays", async () => {
    const { sid, s, ws } = await opened();
    ws.ws.send("[not json");
    expect((await ws.closed()).code).toBe(1002);
    for (const p of [["t", "1", "x"], ["zz"], ["c", 10, ""], ["a", -1], ["b", 1, "%%%%"], []]) {
      const again = await WsPeer.open(h.server.wsUrl(`/live?sid=${sid}&ack=0`));
      await again.nextPacket();
      again.ws.send(JSON.stringify(p));
      expect((await again.closed()).code).toBe(1002);
    }
    expect(s.terminates).toEqual([]);
    expect(s.got).toEqual([]);
    expect(isAlive(s.pid!)).toBe(true);
  });

  test("a POST body over maxFrameSize × 2 is 413 (the session stays); a frame over maxFrameSize ends the session with { error: \"badsize\" } and [\"c\", 1009, …]", async () => {
    await h.serve(undefined, { maxFrameSize: 100 });
    const { ws, sid, s } = await opened();
    const huge = await post(h.server.port, "/live", sid, [["t", 1, "x".repeat(2000)]]);
    expect(huge.status).toBe(413);
    expect(s.terminates).toEqual([]);
    const fits = await post(h.server.port, "/live", sid, [["t", 1, "x".repeat(100)]]);
    expect(fits.status).toBe(200);
    const big = await post(h.server.port, "/live", sid, [["t", 2, "x".repeat(101)]]);
    expect(big.status).toBe(200);
    const c = await ws.nextPacket();
    expect(c[0]).toBe("c");
    expect(c[1]).toBe(1009);
    await until(() => s.terminates.length === 1, 1000, "the session to end");
    expect(s.terminates).toEqual([{ error: "badsize" }]);
    expect(s.got).toEqual(["x".repeat(100)]);
  });
});
