/**
 * The metrics route: scraped over HTTP and read with a strict parser of Prometheus's text
 * format; real ws clients connect, talk and close, and each counter and gauge must move by
 * exactly what they did.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import WebSocket from "ws";
import { Counter, Registry } from "prom-client";
import {
  close,
  compileRoutes,
  exit,
  metrics,
  reply,
  send,
  spawn,
  startClear,
  stopListener,
  text,
  upgrade,
  ok,
  cancelTimer,
  isAlive,
  Pid,
  processInfo,
  sendAfter,
  spawnLink,
  startSupervisor,
  startTimer,
  stopSupervisor,
  whichChildren,
  type WebSocketHandler,
} from "../../src/index.js";
import { captureLogs, until } from "../support/helpers.js";

type Sample = { name: string; labels: Record<string, string>; value: number };

/** A strict reader of the text format (0.0.4): any line it does not recognise fails the test. */
function parse(body: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const lines = body.split("\n");
  expect(lines.at(-1)).toBe("");
  for (const line of lines.slice(0, -1)) {
    // The format ignores empty lines; prom-client puts one between families.
    if (line === "") continue;
    let m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .*$/.exec(line);
    if (m !== null) continue;
    m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (m !== null) {
      expect(types.has(m[1]!), `TYPE given twice for ${m[1]}`).toBe(false);
      types.set(m[1]!, m[2]!);
      continue;
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.e+-]+|[Nn]a[Nn]|[+-]Inf)(?: -?\d+)?$/.exec(line);
    if (m === null) throw new Error(`not a line of the text format: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    if (m[2] !== undefined && m[2] !== "") {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;
      let at = 0;
      while (at < m[2].length) {
        re.lastIndex = at;
        const l = re.exec(m[2]);
        if (l === null) throw new Error(`bad labels in ${JSON.stringify(line)}`);
        labels[l[1]!] = l[2]!;
        at = re.lastIndex;
      }
    }
    // Prometheus reads floats as Go does: "Nan" (prom-client's spelling) is NaN.
    samples.push({ name: m[1]!, labels, value: /^nan$/i.test(m[3]!) ? NaN : Number(m[3]) });
  }
  return { samples, types };
}

let base = "";

async function scrape(path = "/metrics"): Promise<{ samples: Sample[]; types: Map<string, string>; value: (name: string, labels?: Record<string, string>) => number }> {
  const res = await fetch(base + path);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  const { samples, types } = parse(await res.text());
  const value = (name: string, labels: Record<string, string> = {}): number => {
    const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
    return found.reduce((n, s) => n + s.value, 0);
  };
  return { samples, types, value };
}

const echo: WebSocketHandler<null> = {
  init: (req) => upgrade(req, null),
  websocketHandle(frame, state) {
    if (frame.type !== "text") return ok(state);
    if (frame.data === "crash") throw new Error("asked to crash");
    if (frame.data === "bye") return reply(close(4002, "bye"), state);
    return reply(text(frame.data), state);
  },
};

const userRegistry = new Registry();
const mine = new Counter({ name: "app_things_total", help: "things", registers: [userRegistry] });

beforeAll(async () => {
  const dispatch = compileRoutes([
    {
      host: "_",
      paths: [
        ["/metrics", metrics()],
        ["/app-metrics", metrics({ registry: userRegistry })],
        ["/ws", echo],
      ],
    },
  ]);
  const { logger } = captureLogs();
  const l = await startClear("metrics-test", { port: 0 }, { dispatch, logger });
  base = `http://127.0.0.1:${l.port}`;
});

afterAll(() => stopListener("metrics-test"));

function open(): Promise<WebSocket> {
  const ws = new WebSocket(base.replace("http", "ws") + "/ws");
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

function talk(ws: WebSocket, n: number): Promise<void> {
  let got = 0;
  return new Promise((resolve) => {
    ws.on("message", () => {
      if (++got === n) resolve();
    });
    for (let i = 0; i < n; i++) ws.send(`m${i}`);
  });
}

function closed(ws: WebSocket): Promise<number> {
  return new Promise((resolve) => ws.once("close", (code) => resolve(code)));
}

describe("metrics()", () => {
  test("answers the text format with prom-client's Node metrics and every corral metric, typed", async () => {
    const { types } = await scrape();
    expect(types.get("process_cpu_user_seconds_total")).toBe("counter");
    expect(types.get("nodejs_eventloop_lag_seconds")).toBe("gauge");
    expect(types.get("nodejs_heap_size_used_bytes")).toBe("gauge");
    for (const name of ["corral_processes", "corral_hibernated_processes", "corral_websocket_connections", "corral_mailbox_messages", "corral_sessions", "corral_cluster_nodes"]) {
      expect(types.get(name), name).toBe("gauge");
    }
    for (const name of [
      "corral_websocket_frames_received_total",
      "corral_websocket_frames_sent_total",
      "corral_websocket_closes_total",
      "corral_process_crashes_total",
      "corral_websocket_handshakes_total",
      "corral_supervisor_restarts_total",
    ]) {
      expect(types.get(name), name).toBe("counter");
    }
  });

  test("connections, frames, bytes, handshakes, closes and crashes move by exactly what the clients did", async () => {
    const before = await scrape();
    const a = await open();
    const b = await open();
    const c = await open();
    await Promise.all([talk(a, 5), talk(b, 5), talk(c, 5)]);
    const during = await scrape();
    expect(during.value("corral_websocket_connections", { listener: "metrics-test" })).toBe(3);
    expect(during.value("corral_websocket_handshakes_total", { outcome: "upgraded" }) - before.value("corral_websocket_handshakes_total", { outcome: "upgraded" })).toBe(3);
    expect(during.value("corral_websocket_frames_received_total") - before.value("corral_websocket_frames_received_total")).toBe(15);
    expect(during.value("corral_websocket_frames_sent_total") - before.value("corral_websocket_frames_sent_total")).toBe(15);
    // Each client frame "mN" is 2 bytes of payload + 6 of header and mask; each echo 2 + 2; the 101 answers are written too.
    expect(during.value("corral_websocket_received_bytes_total") - before.value("corral_websocket_received_bytes_total")).toBeGreaterThanOrEqual(15 * 8);
    expect(during.value("corral_websocket_sent_bytes_total") - before.value("corral_websocket_sent_bytes_total")).toBeGreaterThanOrEqual(15 * 4);
    expect(during.value("corral_processes") - before.value("corral_processes")).toBeGreaterThanOrEqual(3);

    const codes = Promise.all([closed(a), closed(b), closed(c)]);
    a.close(4001);
    b.send("bye");
    c.send("crash");
    expect(await codes).toEqual([4001, 4002, 1011]);
    await until(() => false === [a, b, c].some((w) => w.readyState !== WebSocket.CLOSED));
    let after = await scrape();
    await until(() => {
      void scrape().then((s) => (after = s));
      return after.value("corral_websocket_connections", { listener: "metrics-test" }) === 0;
    });
    after = await scrape();
    const delta = (name: string, labels?: Record<string, string>) => after.value(name, labels) - before.value(name, labels);
    expect(delta("corral_websocket_closes_total", { code: "4001" })).toBe(1);
    expect(delta("corral_websocket_closes_total", { code: "1011" })).toBe(1);
    expect(delta("corral_websocket_closes_total")).toBe(3);
    expect(delta("corral_connection_terminations_total", { reason: "remote" })).toBe(1);
    expect(delta("corral_connection_terminations_total", { reason: "stop" })).toBe(1);
    expect(delta("corral_connection_terminations_total", { reason: "crash" })).toBe(1);
    expect(delta("corral_process_crashes_total")).toBe(1);
    // 3 frames in (a close is not counted; "bye" and "crash" are), 0 echoes.
    expect(delta("corral_websocket_frames_received_total")).toBe(17);
    expect(delta("corral_websocket_frames_sent_total")).toBe(15);
  });

  test("a refused handshake is counted by its status", async () => {
    const before = await scrape();
    const res = await fetch(base + "/ws");
    expect(res.status).toBe(426);
    const after = await scrape();
    expect(after.value("corral_websocket_handshakes_total", { outcome: "426" }) - before.value("corral_websocket_handshakes_total", { outcome: "426" })).toBe(1);
    expect(after.value("corral_websocket_handshakes_total", { outcome: "upgraded" })).toBe(before.value("corral_websocket_handshakes_total", { outcome: "upgraded" }));
  });

  test("mailbox messages and processes are gauges of what is there now", async () => {
    const before = await scrape();
    const pid = spawn(async (ctx) => {
      await ctx.receive((m) => m === "never");
    });
    for (let i = 0; i < 7; i++) send(pid, `m${i}`);
    const during = await scrape();
    expect(during.value("corral_mailbox_messages") - before.value("corral_mailbox_messages")).toBe(7);
    expect(during.value("corral_processes") - before.value("corral_processes")).toBe(1);
    exit(pid, "kill");
    const after = await scrape();
    expect(after.value("corral_mailbox_messages")).toBe(before.value("corral_mailbox_messages"));
    expect(after.value("corral_processes")).toBe(before.value("corral_processes"));
  });

  test("supervisor restarts, timers, hibernations and wakes move by exactly what happened", async () => {
    captureLogs();
    const before = await scrape();
    const worker = (): Pid => spawnLink(async (ctx) => {
      if ((await ctx.receive()) === "crash") throw new Error("crash for the metrics test");
    });
    const sup = startSupervisor({ intensity: 5, children: [{ id: "w", start: worker }] });
    for (let i = 0; i < 2; i++) {
      const child = (await whichChildren(sup))[0]!.pid;
      if (!(child instanceof Pid)) throw new Error("the child is not running");
      send(child, "crash");
      await until(() => !isAlive(child), 2000, "the child to crash");
      for (let t = 0; (await whichChildren(sup))[0]!.pid === child || !((await whichChildren(sup))[0]!.pid instanceof Pid); t++) {
        if (t > 200) throw new Error("the child was not restarted");
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    // A crash no supervisor restarts: crashes move by three, restarts by two.
    const loner = spawn(async () => {
      throw new Error("an unsupervised crash for the metrics test");
    });
    await until(() => !isAlive(loner), 2000, "the loner to crash");
    const target = spawn(async () => void (await new Promise(() => {})));
    const timers = [startTimer(60_000, target, "a"), startTimer(61_000, target, "b"), sendAfter(62_000, target, "c")];
    const sleeper = spawn<null, string, undefined>({ init: () => null, handleInfo: (_m, st) => ok(st, { hibernate: true }) }, undefined);
    send(sleeper, "sleep");
    await until(() => processInfo(sleeper)?.hibernated === true, 2000, "the process to hibernate");
    const during = await scrape();
    expect(during.value("corral_supervisor_restarts_total") - before.value("corral_supervisor_restarts_total")).toBe(2);
    expect(during.value("corral_process_crashes_total") - before.value("corral_process_crashes_total")).toBe(3);
    expect(during.value("corral_timers") - before.value("corral_timers")).toBe(3);
    expect(during.value("corral_hibernated_processes") - before.value("corral_hibernated_processes")).toBe(1);
    expect(during.value("corral_hibernations_total") - before.value("corral_hibernations_total")).toBe(1);
    expect(during.value("corral_wakes_total") - before.value("corral_wakes_total")).toBe(0);
    send(sleeper, "wake up");
    await until(() => (processInfo(sleeper)?.messagesHandled ?? 0) >= 2, 2000, "the second message");
    for (const t of timers) cancelTimer(t);
    const after = await scrape();
    expect(after.value("corral_wakes_total") - before.value("corral_wakes_total")).toBe(1);
    expect(after.value("corral_hibernations_total") - before.value("corral_hibernations_total")).toBe(2);
    expect(after.value("corral_timers")).toBe(before.value("corral_timers"));
    exit(target, "kill");
    exit(sleeper, "kill");
    await stopSupervisor(sup);
  });

  test("a registry of the app's gets corral's metrics beside its own, and Node's once", async () => {
    mine.inc(3);
    const s = await scrape("/app-metrics");
    expect(s.value("app_things_total")).toBe(3);
    expect(s.types.get("corral_processes")).toBe("gauge");
    expect(s.types.get("process_cpu_user_seconds_total")).toBe("counter");
    // A second route on the same registry registers nothing twice.
    expect(() => metrics({ registry: userRegistry })).not.toThrow();
  });

  test("bad options are refused at the edge", () => {
    expect(() => metrics({ registry: {} as Registry })).toThrow(/registry must be a prom-client Registry/);
    expect(() => metrics({ bogus: 1 } as object)).toThrow(/unknown option "bogus"/);
    expect(() => metrics(null as unknown as undefined)).toThrow(/options must be an object/);
  });

  test("POST gets 405", async () => {
    const res = await fetch(base + "/metrics", { method: "POST" });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("GET, HEAD");
  });
});
