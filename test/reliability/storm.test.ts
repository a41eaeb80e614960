/**
 * Connection storm against maxConnections: many more sockets than the limit, all at once.
 * At no moment does the server hold more than maxConnections; exactly that many get a 101
 * (they stay open), every other socket is closed promptly without an answer; the accepted
 * connections all work; freed slots are taken again by new clients; nothing leaks.
 * Also here, for the table: allowedOrigins under the same storm (a refused origin costs a
 * 403 and a slot only for as long as the answer takes).
 */
import { afterAll, beforeAll, expect, test } from "vitest";
import { compileRoutes, ok, processCount, reply, startClear, stopListener, upgrade, type Listener, type WebSocketHandler } from "../../src/index.js";
import { captureLogs, sleep, until } from "../support/helpers.js";
import { RawClient } from "../support/raw-client.js";
import { SCALE, timeout } from "./scale.js";
import { handles, pool } from "../support/measure.js";

const { logger, records } = captureLogs();

const echo: WebSocketHandler<null> = {
  init: (req) => upgrade(req, null, { idleTimeout: 60_000, allowedOrigins: ["https://good.example"] }),
  websocketHandle: (frame, s) => (frame.type === "text" ? reply(frame, s) : ok(s)),
};

const NAME = "reliability-storm";
let listener: Listener;
let baseProcs = 0;
let baseSockets = 0;

beforeAll(async () => {
  baseSockets = handles("TCPSocketWrap");
  baseProcs = processCount();
  listener = await startClear(NAME, { port: 0, maxConnections: SCALE.stormMax }, { dispatch: compileRoutes([{ host: "_", paths: [["/", echo, {}]] }]), logger, shutdownTimeout: 500 });
});

afterAll(async () => {
  await stopListener(NAME);
});

type Attempt = { ok: true; c: RawClient; ms: number } | { ok: false; why: string; ms: number; status: number | undefined };

async function attempt(headers?: Record<string, string>): Promise<Attempt> {
  const t0 = performance.now();
  try {
    const c = await RawClient.connect(listener.port, { timeoutMs: 15_000, ...(headers === undefined ? {} : { headers }) });
    if (c.response!.status === 101) return { ok: true, c, ms: performance.now() - t0 };
    const status = c.response!.status;
    await c.waitClosed(3000);
    c.destroy();
    return { ok: false, why: `status ${status}`, ms: performance.now() - t0, status };
  } catch (err) {
    return { ok: false, why: (err as Error).message, ms: performance.now() - t0, status: undefined };
  }
}

test(
  `${SCALE.stormAttempts} connection attempts at once against maxConnections ${SCALE.stormMax}: never more than ${SCALE.stormMax} held, exactly that many upgraded, the rest closed promptly; slots are reusable`,
  async () => {
    let peakConnections = 0;
    let peakProcs = 0;
    const sampler = setInterval(() => {
      peakConnections = Math.max(peakConnections, listener.connections);
      peakProcs = Math.max(peakProcs, processCount());
    }, 1);
    const results: Attempt[] = [];
    const t0 = performance.now();
    // up to 400 handshakes in flight at once (node's listen backlog is 511)
    await pool(Array.from({ length: SCALE.stormAttempts }), 400, async () => {
      results.push(await attempt());
    });
    const stormMs = performance.now() - t0;
    clearInterval(sampler);
    const accepted = results.filter((r): r is Extract<Attempt, { ok: true }> => r.ok);
    const refused = results.filter((r): r is Extract<Attempt, { ok: false }> => !r.ok);
    const refusedWhy = new Map<string, number>();
    for (const r of refused) refusedWhy.set(r.why, (refusedWhy.get(r.why) ?? 0) + 1);
    console.log(
      `storm: ${results.length} attempts in ${Math.round(stormMs)} ms; ${accepted.length} upgraded, ${refused.length} refused ` +
        `(${JSON.stringify(Object.fromEntries(refusedWhy))}, slowest refusal ${Math.round(Math.max(0, ...refused.map((r) => r.ms)))} ms); peak ${peakConnections} connections, ${peakProcs} processes`,
    );
    expect(peakConnections).toBeLessThanOrEqual(SCALE.stormMax);
    expect(accepted.length).toBe(SCALE.stormMax);
    expect(refused.length).toBe(SCALE.stormAttempts - SCALE.stormMax);
    // refused sockets got no answer at all (closed on arrival) and learnt it quickly
    for (const r of refused) {
      expect(r.status).toBeUndefined();
      expect(r.ms).toBeLessThan(5000);
    }
    expect(peakProcs).toBeLessThanOrEqual(baseProcs + SCALE.stormMax + 5);
    // every accepted connection works
    await Promise.all(
      accepted.map(async ({ c }, i) => {
        await c.sendText(`held ${i}`);
        expect((await c.next(5000)).payload.toString()).toBe(`held ${i}`);
      }),
    );
    // free half the slots: exactly that many new clients get in, the next one does not
    const freed = Math.floor(SCALE.stormMax / 2);
    for (const { c } of accepted.slice(0, freed)) c.destroy();
    await until(() => listener.connections === SCALE.stormMax - freed, 5000, "the freed slots to be released");
    await sleep(50);
    const again = await Promise.all(Array.from({ length: freed }, () => attempt()));
    expect(again.filter((r) => r.ok)).toHaveLength(freed);
    const over = await attempt();
    expect(over.ok).toBe(false);
    for (const r of [...again, ...accepted.slice(freed)]) if (r.ok) r.c.destroy();
    await until(() => listener.connections === 0, 5000, "all connections to close");
    await until(() => processCount() === baseProcs, 5000, `processCount back to ${baseProcs}`);
    await until(() => handles("TCPSocketWrap") === baseSockets, 5000, `sockets back to ${baseSockets} (are ${handles("TCPSocketWrap")})`);
    expect(records.filter((r) => r.level >= 50)).toEqual([]);
  },
  timeout(30_000, 180_000),
);

test(
  "allowedOrigins under a storm of foreign origins: each gets 403, none upgrades, the slots come back, a listed origin still gets in",
  async () => {
    const n = Math.min(SCALE.stormAttempts, 4 * SCALE.stormMax);
    const results: Attempt[] = [];
    await pool(Array.from({ length: n }), Math.floor(SCALE.stormMax / 2), async () => {
      results.push(await attempt({ Origin: "https://evil.example" }));
    });
    expect(results.filter((r) => r.ok)).toEqual([]);
    expect(results.every((r) => !r.ok && r.status === 403)).toBe(true);
    await until(() => processCount() === baseProcs, 5000, "request processes to end");
    const good = await attempt({ Origin: "https://good.example" });
    expect(good.ok).toBe(true);
    if (good.ok) good.c.destroy();
    const none = await attempt();
    expect(none.ok).toBe(true);
    if (none.ok) none.c.destroy();
  },
  timeout(20_000, 60_000),
);
