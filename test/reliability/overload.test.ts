/**
 * Overload from single clients:
 *
 * - Slow consumers: clients that stop reading while their handler pushes 256 KiB every
 *   millisecond. maxBufferedAmount (1 MiB here) must close each with { error: "backpressure" }
 *   and a 1008 close frame, keep the server's memory bounded, and leave other clients alone.
 * - Flood: a client in another process writing tiny frames as fast as TCP lets it. Inbound
 *   flow control must keep that connection's mailbox bounded (reading pauses, TCP pushes
 *   back), lose nothing, and keep the echo latency of another connection near its idle value.
 *   Idle and flood are measured in alternating windows (the flooder is stopped and continued
 *   with SIGSTOP/SIGCONT), so both see the same machine load.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  binary,
  compileRoutes,
  ok,
  processCount,
  processInfo,
  reply,
  self,
  send,
  sendAfter,
  startClear,
  stopListener,
  text,
  upgrade,
  type Listener,
  type Pid,
  type TerminateReason,
  type WebSocketHandler,
} from "../../src/index.js";
import { captureLogs, sleep, until } from "../support/helpers.js";
import { RawClient } from "../support/raw-client.js";
import { SCALE, timeout } from "./scale.js";
import { handles, percentiles, settledHeap } from "../support/measure.js";

const { logger, records } = captureLogs();

type State = { id: string };
const terms = new Map<string, { reason: TerminateReason; at: number }>();
const pids = new Map<string, Pid>();

const MAX_BUFFERED = 1024 * 1024;
const PUSH_CHUNK = 64 * 1024;
const PUSH_PER_TICK = 4;

/** "push" starts pushing 4 fresh 64 KiB frames every millisecond (fresh, so buffered data really costs memory). */
const pusher: WebSocketHandler<State> = {
  init: (req) => upgrade(req, { id: req.qs }, { maxBufferedAmount: MAX_BUFFERED, idleTimeout: 60_000 }),
  websocketInit(s) {
    pids.set(s.id, self());
    return ok(s);
  },
  websocketHandle(frame, s) {
    if (frame.type === "text" && frame.data === "push") {
      send(self(), "tick");
      return ok(s);
    }
    return frame.type === "text" ? reply(frame, s) : ok(s);
  },
  websocketInfo(info, s) {
    if (info !== "tick") return ok(s);
    sendAfter(1, self(), "tick");
    return reply(
      Array.from({ length: PUSH_PER_TICK }, () => binary(Buffer.alloc(PUSH_CHUNK, 0x61))),
      s,
    );
  },
  terminate(reason, _req, s) {
    terms.set(s.id, { reason, at: performance.now() });
  },
};

let floodCount = 0;
let floodPeakQueue = 0;
/** Counts what it gets; answers "count" with the count. Samples its own mailbox now and then. */
const sink: WebSocketHandler<State> = {
  init: (req) => upgrade(req, { id: req.qs }, { idleTimeout: 60_000 }),
  websocketInit(s) {
    pids.set(s.id, self());
    return ok(s);
  },
  websocketHandle(frame, s) {
    if (frame.type === "text" && frame.data === "count") return reply(text(String(floodCount)), s);
    if ((++floodCount & 15) === 0) floodPeakQueue = Math.max(floodPeakQueue, processInfo(self())?.messageQueueLen ?? 0);
    return ok(s);
  },
  terminate(reason, _req, s) {
    terms.set(s.id, { reason, at: performance.now() });
  },
};

const echo: WebSocketHandler<State> = {
  init: (req) => upgrade(req, { id: req.qs }, { idleTimeout: 60_000 }),
  websocketHandle: (frame, s) => (frame.type === "text" ? reply(frame, s) : ok(s)),
  terminate(reason, _req, s) {
    terms.set(s.id, { reason, at: performance.now() });
  },
};

const NAME = "reliability-overload";
let listener: Listener;
let baseProcs = 0;
let baseSockets = 0;
let seq = 0;

beforeAll(async () => {
  baseSockets = handles("TCPSocketWrap");
  const dispatch = compileRoutes([
    {
      host: "_",
      paths: [
        ["/push", pusher, {}],
        ["/sink", sink, {}],
        ["/echo", echo, {}],
      ],
    },
  ]);
  listener = await startClear(NAME, { port: 0 }, { dispatch, logger, shutdownTimeout: 1000 });
  baseProcs = processCount();
});

afterAll(async () => {
  await stopListener(NAME);
});

async function open(path: string): Promise<{ c: RawClient; id: string }> {
  const id = `o${++seq}`;
  return { c: await RawClient.open(listener.port, { path: `${path}?${id}`, timeoutMs: 5000 }), id };
}

/** One echo round trip; its time in ms. */
async function rtt(c: RawClient, msg: string, timeoutMs = 5000): Promise<number> {
  const t0 = performance.now();
  await c.sendText(msg);
  const f = await c.next(timeoutMs);
  const ms = performance.now() - t0;
  expect(f.payload.toString()).toBe(msg);
  return ms;
}

async function baseline(): Promise<void> {
  await until(() => processCount() === baseProcs, 5000, `processCount back to ${baseProcs} (is ${processCount()})`);
  await until(() => handles("TCPSocketWrap") === baseSockets && listener.connections === 0, 5000, "sockets back to baseline");
}

const MiB = 1024 * 1024;

describe("slow consumers", () => {
  test(
    `${SCALE.slowConsumers} clients stop reading while their handlers push 256 KiB/ms: each is closed ({ error: 'backpressure' }), server memory stays bounded, ${SCALE.bystanders} bystanders keep echoing`,
    async () => {
      const bystanders = await Promise.all(Array.from({ length: SCALE.bystanders }, () => open("/echo")));
      const base = await settledHeap();
      const baseBuffers = process.memoryUsage().arrayBuffers;
      let peak = 0;
      const sampler = setInterval(() => {
        const m = process.memoryUsage();
        peak = Math.max(peak, m.heapUsed - base + (m.arrayBuffers - baseBuffers));
      }, 5);
      const t0 = performance.now();
      const slow = await Promise.all(
        Array.from({ length: SCALE.slowConsumers }, async () => {
          const s = await open("/push");
          s.c.pause();
          await s.c.sendText("push");
          return s;
        }),
      );
      // bystanders echo all through the window
      const latencies: number[] = [];
      const windowMs = SCALE.slowWindowMs;
      while (performance.now() - t0 < windowMs) {
        for (const [i, b] of bystanders.entries()) latencies.push(await rtt(b.c, `b${i}`));
        await sleep(20);
      }
      for (const s of slow) await until(() => terms.has(s.id), 3000, `the slow connection ${s.id} to end`);
      clearInterval(sampler);
      for (const s of slow) expect(terms.get(s.id)!.reason).toEqual({ error: "backpressure" });
      // what an unbounded server would have buffered over the window, per slow client
      const wouldBuffer = (windowMs * PUSH_PER_TICK * PUSH_CHUNK) / MiB;
      const bound = 48 + SCALE.slowConsumers * 2;
      console.log(
        `slow consumers: ${slow.length} closed after ${slow.map((s) => Math.round(terms.get(s.id)!.at - t0)).join("/")} ms; peak growth ${(peak / MiB).toFixed(1)} MiB ` +
          `(bound ${bound} MiB; unbounded: ~${Math.round(wouldBuffer)} MiB each); bystander rtt ${JSON.stringify(percentiles(latencies))}`,
      );
      expect(peak / MiB).toBeLessThan(bound);
      // the server lets go of the slow sockets even though their clients never read again
      await until(() => listener.connections === SCALE.bystanders, 5000, "the slow sockets to be released");
      for (const b of bystanders) expect(terms.has(b.id)).toBe(false);
      for (const s of slow) s.c.destroy();
      for (const b of bystanders) b.c.destroy();
      await baseline();
      // and the memory comes back
      expect((await settledHeap()) - base).toBeLessThan(16 * MiB);
      expect(records.filter((r) => r.msg === "process crashed")).toEqual([]);
    },
    timeout(20_000, 60_000),
  );

  test("a slow client that reads again right after being cut off finds every pushed frame whole, then a 1008 close, then the end of TCP", async () => {
    const results = await Promise.all(
      Array.from({ length: 3 }, async () => {
        const { c, id } = await open("/push");
        c.pause();
        await c.sendText("push");
        await until(() => terms.has(id), 3000, "backpressure");
        c.resume();
        const { close, before } = await c.nextClose(5000);
        expect(await c.waitClosed(3000)).toBe(true);
        for (const f of before) {
          expect(f.type).toBe("binary");
          expect(f.payload.length).toBe(PUSH_CHUNK);
        }
        return { code: close.code, reason: terms.get(id)!.reason, frames: before.length };
      }),
    );
    for (const r of results) {
      expect(r.code).toBe(1008);
      expect(r.reason).toEqual({ error: "backpressure" });
      expect(r.frames).toBeGreaterThan(MAX_BUFFERED / PUSH_CHUNK);
    }
    await baseline();
  });
});

/* ---------------------------------------------------------------- flood */

/**
 * The flooder, run with `node --input-type=module -e`: opens a WebSocket to argv port/path,
 * writes masked 16-byte binary frames as fast as TCP lets it, counting frames and the times
 * it had to wait for 'drain'. On "stop" (stdin) it finishes, sends "count", prints a JSON
 * line with what it sent and what the server counted, and exits. It exits by itself after
 * argv seconds in any case.
 */
const FLOODER = `
import { connect } from "node:net";
import { randomBytes } from "node:crypto";
const [port, path, maxSeconds] = [Number(process.argv[1]), process.argv[2], Number(process.argv[3])];
const hardStop = setTimeout(() => process.exit(3), maxSeconds * 1000);
const s = connect(port, "127.0.0.1");
s.setNoDelay(true);
s.write("GET " + path + " HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Key: " + randomBytes(16).toString("base64") + "\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n");
const frame = Buffer.from([0x82, 0x90, 1, 2, 3, 4, ...Buffer.alloc(16, 0x55)]);
const BATCH = 512;
const batch = Buffer.concat(Array.from({ length: BATCH }, () => frame));
let sent = 0, drains = 0, stopping = false, buf = Buffer.alloc(0), upgraded = false;
function pump() {
  while (!stopping) {
    sent += BATCH;
    if (!s.write(batch)) { drains++; s.once("drain", pump); return; }
  }
}
s.on("data", (d) => {
  buf = Buffer.concat([buf, d]);
  if (!upgraded) {
    const i = buf.indexOf("\\r\\n\\r\\n");
    if (i < 0) return;
    upgraded = true;
    buf = buf.subarray(i + 4);
    process.stdout.write(JSON.stringify({ ready: true }) + "\\n");
    pump();
  }
  if (buf.length >= 2 && (buf[0] & 0x0f) === 1) {
    const len = buf[1] & 0x7f;
    if (buf.length >= 2 + len) {
      process.stdout.write(JSON.stringify({ sent, drains, counted: Number(buf.subarray(2, 2 + len).toString()) }) + "\\n");
      clearTimeout(hardStop);
      s.destroy();
      process.exit(0);
    }
  }
});
s.on("error", () => process.exit(2));
process.stdin.on("data", (d) => {
  if (String(d).includes("stop") && !stopping) {
    stopping = true;
    const finish = () => s.write(Buffer.from([0x81, 0x85, 0, 0, 0, 0, ...Buffer.from("count")]));
    if (s.writableNeedDrain) s.once("drain", finish); else finish();
  }
});
`;

function startFlooder(port: number, path: string, maxSeconds: number): { child: ChildProcess; lines: () => Record<string, number | boolean>[]; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ["--input-type=module", "-e", FLOODER, String(port), path, String(maxSeconds)], { stdio: ["pipe", "pipe", "inherit"] });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    child,
    lines: () =>
      out
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l) => JSON.parse(l) as Record<string, number | boolean>),
    exited,
  };
}

describe("flood", () => {
  const FRAME_BYTES = 2 + 4 + 16;
  /** Inbound flow control: high-water mark 1024 frames, plus what one or two socket reads (64 KiB each) already held. */
  const QUEUE_BOUND = 1024 + 2 * Math.ceil(65536 / FRAME_BYTES);

  test(
    `a client flooding 16-byte frames (another process, ${SCALE.floodWindows} windows of ${SCALE.floodWindowMs} ms): its mailbox stays under ${QUEUE_BOUND}, nothing is lost, heap bounded, another connection still answered`,
    async () => {
      floodCount = 0;
      floodPeakQueue = 0;
      const probe = await open("/echo");
      const maxSeconds = Math.ceil((SCALE.floodWindows * SCALE.floodWindowMs * 2) / 1000) + 20;
      const flooder = startFlooder(listener.port, "/sink?flood", maxSeconds);
      await until(() => flooder.lines().some((l) => l["ready"] === true), 5000, "the flooder to connect");
      await until(() => pids.has("flood"), 2000, "the flood connection's pid");
      const floodPid = pids.get("flood")!;
      // also sample the mailbox from outside, between callbacks
      const sampler = setInterval(() => {
        floodPeakQueue = Math.max(floodPeakQueue, processInfo(floodPid)?.messageQueueLen ?? 0);
      }, 2);
      const heapBase = process.memoryUsage().heapUsed;
      let heapPeak = 0;
      const idle: number[] = [];
      const flood: number[] = [];
      let n = 0;
      const { monitorEventLoopDelay } = await import("node:perf_hooks");
      const eld = monitorEventLoopDelay({ resolution: 1 });
      const measure = async (into: number[]): Promise<void> => {
        if (into === flood) eld.enable();
        const end = performance.now() + SCALE.floodWindowMs;
        while (performance.now() < end) {
          into.push(await rtt(probe.c, `p${n++}`, 15_000));
          heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed - heapBase);
          await sleep(2);
        }
        eld.disable();
      };
      const pid = flooder.child.pid!;
      let exited = false;
      void flooder.exited.then(() => (exited = true));
      try {
        for (let w = 0; w < SCALE.floodWindows; w++) {
          process.kill(pid, "SIGCONT");
          await sleep(100);
          await measure(flood);
          process.kill(pid, "SIGSTOP");
          // let the server drain what is already in the socket before measuring idle
          const before = floodCount;
          await sleep(100);
          await until(() => (processInfo(floodPid)?.messageQueueLen ?? 0) === 0, 5000, "the flood mailbox to drain");
          await sleep(50);
          expect(floodCount).toBeGreaterThanOrEqual(before);
          await measure(idle);
        }
        process.kill(pid, "SIGCONT");
        flooder.child.stdin!.write("stop\n");
        expect(await flooder.exited).toBe(0);
        clearInterval(sampler);
        const result = flooder.lines().find((l) => "counted" in l)!;
        const f = percentiles(flood);
        const i = percentiles(idle);
        console.log(
          `flood: ${result["sent"]} frames sent (${Math.round(Number(result["sent"]) / ((SCALE.floodWindows * (SCALE.floodWindowMs + 100)) / 1000))}/s while flooding), ` +
            `${result["drains"]} waits for drain, peak mailbox ${floodPeakQueue} (bound ${QUEUE_BOUND}), heap growth ${(heapPeak / MiB).toFixed(1)} MiB; ` +
            `probe rtt ms idle ${JSON.stringify(round(i))} vs flood ${JSON.stringify(round(f))}; ` +
            `event-loop delay while flooding p50 ${(eld.percentile(50) / 1e6).toFixed(1)} ms, max ${(eld.max / 1e6).toFixed(1)} ms`,
        );
        // nothing lost: the server counted every frame the flooder wrote
        expect(result["counted"]).toBe(result["sent"]);
        expect(floodCount).toBe(result["sent"]);
        // flow control: the mailbox stayed bounded however fast the flooder wrote
        expect(floodPeakQueue).toBeGreaterThan(0);
        expect(floodPeakQueue).toBeLessThan(QUEUE_BOUND);
        expect(heapPeak / MiB).toBeLessThan(64);
        // the other connection is never starved outright (every echo came back: rtt() waits 15 s at most)
        expect(f.n).toBeGreaterThanOrEqual(SCALE.floodWindows);
        lastFlood = { idle: i, flood: f };
        probe.c.destroy();
        await baseline();
      } finally {
        clearInterval(sampler);
        // never leave a stopped child behind
        if (!exited) {
          process.kill(pid, "SIGCONT");
          flooder.child.kill("SIGKILL");
        }
      }
    },
    timeout(30_000, 120_000),
  );

  // BUG: inbound flow control bounds the mailbox, but one flooding socket still freezes the
  // event loop for ~100 ms (up to 1–2 s) at a time, and another connection's median echo time
  // goes from ~0.2 ms idle to ~150–400 ms. Measured: up to 33 reads of 64 KiB (2 MiB, ~95,000
  // frames) from the flooding socket in a single event-loop iteration. Why: the throttle never
  // outlasts the read that set it. WsPort.deliver pauses ws past 1024 queued frames, but the
  // connection drains its mailbox in the microtask checkpoint right after that read callback
  // (a cheap handler gets through ~3000 frames well within the scheduler's BUDGET of 4096),
  // and its unthrottle() → ws.resume() lets the socket flow again at once, so libuv's read loop
  // (up to 32 reads per poll event) carries on with the same socket before any other gets a
  // turn. Suspected: src/server/port.ts (release the throttle on a later turn, e.g.
  // setImmediate, or cap the frames read per turn per connection), src/runtime/scheduler.ts
  // (BUDGET counts messages, not time).
  test("…and another connection's median echo time stays within 2× of idle while the flood runs (0.5 ms floor)", () => {
    expect(lastFlood).toBeDefined();
    expect(lastFlood!.flood.p50).toBeLessThanOrEqual(2 * Math.max(lastFlood!.idle.p50, 0.5));
  });
});

let lastFlood: { idle: ReturnType<typeof percentiles>; flood: ReturnType<typeof percentiles> } | undefined;

function round(p: ReturnType<typeof percentiles>): Record<string, number> {
  return { n: p.n, p50: +p.p50.toFixed(2), p90: +p.p90.toFixed(2), p99: +p.p99.toFixed(2), max: +p.max.toFixed(2) };
}
