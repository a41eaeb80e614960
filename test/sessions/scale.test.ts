/**
 * 10,000 sessions whose clients vanish (their TCP connections reset, a wave at a time, all
 * at once within a wave): every session waits out its own window, ends with
 * terminate("timeout") exactly once, and leaves nothing behind; the heap per waiting
 * session is measured and bounded.
 */
import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { expect, test } from "vitest";
import { bullet, ok, processCount, timerCount, upgrade, type TerminateReason, type WebSocketHandler } from "../../src/index.js";
import { leakCheck, testServer } from "../../src/testing.js";
import { until } from "../support/helpers.js";
import { settledHeap } from "../support/measure.js";

const SESSIONS = 10_000;
/** Clients connected at once (two sockets each, client and server side, in this one process). */
const WAVE = 2_500;
const CONCURRENCY = 100;
const WINDOW = 4_000;
const WARM = 500;

/** A lean handler: the test's own bookkeeping must not weigh on the per-session measurement. */
function leanHandler(ends: Float64Array, reasons: Map<string, number>): WebSocketHandler<number> {
  let next = 0;
  return {
    init: (req) => upgrade(req, next++),
    websocketInit: (n) => ok(n),
    websocketHandle: (_f, n) => ok(n),
    terminate(reason: TerminateReason, _req, n) {
      const key = typeof reason === "string" ? reason : JSON.stringify(reason);
      reasons.set(key, (reasons.get(key) ?? 0) + 1);
      if (ends[n] !== 0) reasons.set("twice", (reasons.get("twice") ?? 0) + 1);
      ends[n] = performance.now();
    },
  };
}

/** Opens n sessions, CONCURRENCY at a time, then resets all their connections at once; resolves with when. */
async function openWave(port: number, path: string, n: number, onSid: (sid: string) => void): Promise<number> {
  const sockets: Socket[] = [];
  let opened = 0;
  const worker = async (): Promise<void> => {
    while (opened < n) {
      opened++;
      const { socket, sid } = await openSession(port, path);
      sockets.push(socket);
      onSid(sid);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  // The whole wave vanishes at once: a reset, no close frame, no FIN.
  const at = performance.now();
  for (const socket of sockets) socket.resetAndDestroy();
  return at;
}

/** Opens a session with a hand-written upgrade; resolves with the socket once hello has come. */
function openSession(port: number, path: string): Promise<{ socket: Socket; sid: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port });
    let buf = "";
    socket.setEncoding("latin1");
    socket.on("error", reject);
    socket.on("connect", () => {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    socket.on("data", (chunk: string) => {
      buf += chunk;
      const m = /\["hello","([A-Za-z0-9_-]{11}\.[A-Za-z0-9_-]{43})"/.exec(buf);
      if (m !== null) {
        socket.removeAllListeners("data");
        resolve({ socket, sid: m[1]! });
      }
    });
  });
}

test(
  "10,000 sessions whose clients vanish: memory per session bounded, every one ends at its window with terminate(\"timeout\"), nothing left",
  async () => {
    const leaks = leakCheck();
    const procs = processCount();
    const timers = timerCount();
    const ends = new Float64Array(SESSIONS);
    const dropped = new Float64Array(SESSIONS);
    const reasons = new Map<string, number>();
    const warm = new Map<string, number>();
    const server = await testServer([
      ["/live", bullet(leanHandler(ends, reasons), { resumeWindowMs: WINDOW, heartbeatMs: 60_000 })],
      // The same code on a short window first, so what the runtime caches once is in the baseline.
      ["/warm", bullet(leanHandler(new Float64Array(WARM), warm), { resumeWindowMs: 50, heartbeatMs: 60_000 })],
    ]);
    await openWave(server.port, "/warm", WARM, () => {});
    await until(() => warm.get("timeout") === WARM && processCount() === procs, 5000, "the warm-up sessions to end");
    const before = await settledHeap();
    const sids = new Set<string>();
    let worst = 0;
    let peakAway = 0;
    const t0 = performance.now();
    for (let wave = 0; wave < SESSIONS / WAVE; wave++) {
      const at = await openWave(server.port, "/live", WAVE, (sid) => sids.add(sid));
      dropped.fill(at, wave * WAVE, (wave + 1) * WAVE);
      // Once the server has noticed, only session processes are left: measure the heap they hold.
      const live = (): number => (wave + 1) * WAVE - (reasons.get("timeout") ?? 0);
      await until(() => processCount() - procs === live(), 5000, "every transport of the wave to be gone");
      const away = live();
      const heap = await settledHeap();
      // Sessions of earlier waves may have ended meanwhile: count the fewer, so the figure errs high.
      const counted = Math.min(away, live());
      peakAway = Math.max(peakAway, counted);
      worst = Math.max(worst, (heap - before) / counted);
    }
    const opening = performance.now() - t0;
    expect(sids.size).toBe(SESSIONS);
    sids.clear();

    await until(() => (reasons.get("timeout") ?? 0) + (reasons.get("twice") ?? 0) >= SESSIONS || reasons.size > 1, WINDOW + 5000, "every session to time out");
    expect(Object.fromEntries(reasons)).toEqual({ timeout: SESSIONS });
    // The handler numbers sessions in init order, wave after wave: session n was dropped with wave n / WAVE.
    let early = 0;
    let late = 0;
    let latest = 0;
    for (let i = 0; i < SESSIONS; i++) {
      const waited = ends[i]! - dropped[i]!;
      latest = Math.max(latest, waited - WINDOW);
      if (waited < WINDOW - 50) early++;
      // A wave's resets are noticed, and its 2,500 terminations run, one after another on a busy machine.
      if (waited > WINDOW + 4000) late++;
    }
    expect({ early, late }).toEqual({ early: 0, late: 0 });
    await until(() => processCount() === procs && timerCount() === timers, 2000, "processes and timers back to the baseline");
    await server.stop();
    const after = await settledHeap();
    console.log(
      `bullet scale: ${SESSIONS} sessions opened in ${Math.round(opening)} ms, up to ${peakAway} away at once, the last ended ${Math.round(latest)} ms after its window; heap ${Math.round(worst)} B per away session; ${((after - before) / 1e6).toFixed(2)} MB more than before once all ended`,
    );
    expect(worst).toBeLessThan(6_000);
    expect(after - before).toBeLessThan(SESSIONS * 200);
    await leaks.assert(3000);
  },
  90_000,
);
