/**
 * Shutdown under load: stopListener while every connection is busy — clients sending, the
 * server pushing, callbacks awaiting promises, connections hibernated or holding the socket
 * unread ({ active: false }), clients that stopped reading, handshakes half sent. Every
 * WebSocket must get 1001 (or, for a client that never reads again, be dropped at
 * shutdownTimeout) and run terminate("shutdown") exactly once; stopListener resolves in
 * bounded time; no unhandled rejection, no uncaught exception, no error logged; processes,
 * timers, sockets and the listening socket are all gone afterwards.
 */
import { connect as netConnect, type Socket } from "node:net";
import { afterAll, beforeAll, expect, test } from "vitest";
import {
  commands,
  compileRoutes,
  listenerInfo,
  ok,
  processCount,
  reply,
  self,
  send,
  sendAfter,
  startClear,
  stopListener,
  text,
  timerCount,
  upgrade,
  type CallResult,
  type Listener,
  type TerminateReason,
  type WebSocketHandler,
} from "../../src/index.js";
import { captureLogs, sleep, until } from "../support/helpers.js";
import { RawClient, type ServerFrame } from "../support/raw-client.js";
import { SCALE, timeout } from "./scale.js";
import { handles } from "../support/measure.js";

const { logger, records } = captureLogs();

const KINDS = ["echo", "push", "async", "hibernate", "passive", "slow-reader"] as const;
type Kind = (typeof KINDS)[number];
type State = { id: string; kind: Kind; n: number };

const terms = new Map<string, TerminateReason[]>();
const termAt = new Map<string, number>();
/** What a slow reader is pushed every millisecond: 64 MiB/s, more than loopback's socket buffers hold in the 300 ms before the stop. */
const BIG = "x".repeat(64 * 1024);

const busy: WebSocketHandler<State> = {
  init(req) {
    const [id, kind] = req.qs.split(":") as [string, Kind];
    // the slow reader must outlast the shutdown, not be cut off by backpressure first
    return upgrade(req, { id, kind, n: 0 }, { idleTimeout: 60_000, maxBufferedAmount: 256 * 1024 * 1024 });
  },
  websocketInit(s) {
    if (s.kind === "push" || s.kind === "slow-reader") send(self(), "tick");
    if (s.kind === "passive") return commands([{ active: false }], s);
    return ok(s);
  },
  websocketHandle(frame, s): CallResult<State> {
    if (frame.type !== "text") return ok(s);
    const next = { ...s, n: s.n + 1 };
    if (s.kind === "async") return new Promise((resolve) => setTimeout(() => resolve(reply(frame, next)), 30));
    if (s.kind === "hibernate") return reply(frame, next, { hibernate: true });
    return reply(frame, next);
  },
  websocketInfo(info, s) {
    if (info !== "tick") return ok(s);
    sendAfter(s.kind === "push" ? 5 : 1, self(), "tick");
    return reply(text(s.kind === "push" ? `push ${s.n}` : BIG), { ...s, n: s.n + 1 });
  },
  terminate(reason, _req, s) {
    let list = terms.get(s.id);
    if (list === undefined) terms.set(s.id, (list = []));
    list.push(reason);
    termAt.set(s.id, performance.now());
  },
};

const NAME = "reliability-shutdown";
const SHUTDOWN_TIMEOUT = 2000;
let listener: Listener;
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown): void => {
  unhandled.push(reason);
};
const onUncaught = (err: unknown): void => {
  unhandled.push(err);
};

beforeAll(async () => {
  process.on("unhandledRejection", onUnhandled);
  process.on("uncaughtException", onUncaught);
});

afterAll(() => {
  process.off("unhandledRejection", onUnhandled);
  process.off("uncaughtException", onUncaught);
});

function kinds(frames: readonly ServerFrame[]): string[] {
  return frames.map((f) => f.type);
}

test(
  `stopListener with ${SCALE.shutdownConnections} busy connections (${KINDS.join(", ")}) and half-sent handshakes: 1001 and terminate('shutdown') exactly once each, bounded, nothing left`,
  async () => {
    const baseProcs = processCount();
    const baseTimers = timerCount();
    const baseSockets = handles("TCPSocketWrap");
    const baseServers = handles("TCPServerWrap");
    listener = await startClear(NAME, { port: 0 }, { dispatch: compileRoutes([{ host: "_", paths: [["/", busy, {}]] }]), logger, shutdownTimeout: SHUTDOWN_TIMEOUT });
    expect(handles("TCPServerWrap")).toBe(baseServers + 1);

    // open the connections, in batches
    const conns: { c: RawClient; id: string; kind: Kind }[] = [];
    for (let i = 0; i < SCALE.shutdownConnections; i += 50) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(50, SCALE.shutdownConnections - i) }, async (_, j) => {
          const kind = KINDS[(i + j) % KINDS.length]!;
          const id = `s${i + j}`;
          const c = await RawClient.open(listener.port, { path: `/?${id}:${kind}`, timeoutMs: 10_000 });
          if (kind === "slow-reader") c.pause();
          return { c, id, kind };
        }),
      );
      conns.push(...batch);
    }
    await until(() => listener.connections === SCALE.shutdownConnections, 5000, "every connection to be up");

    // traffic: clients of every kind but the slow reader send a text every 5 ms
    let sending = true;
    const senders = conns
      .filter((x) => x.kind !== "slow-reader")
      .map(async ({ c }, i) => {
        for (let n = 0; sending && !c.isClosed; n++) {
          await c.sendText(`m${i}-${n}`);
          await sleep(5);
        }
      });
    // handshakes in flight: half a request written
    const halfSent: Socket[] = await Promise.all(
      Array.from({ length: 10 }, async () => {
        const s = netConnect({ host: "127.0.0.1", port: listener.port });
        s.on("error", () => {});
        await new Promise((r) => s.once("connect", r));
        s.write("GET /?h:echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n");
        return s;
      }),
    );
    const halfClosed = halfSent.map((s) => new Promise<void>((resolve) => s.once("close", () => resolve())));
    await sleep(300);
    // every kind is busy: pushes arrived, echoes arrived
    for (const k of ["echo", "push", "async", "hibernate"] as const) {
      expect(conns.filter((x) => x.kind === k).every(({ c }) => c.received.length > 0)).toBe(true);
    }

    const t0 = performance.now();
    const stopping = stopListener(NAME);
    expect(stopListener(NAME)).toBe(stopping);
    await stopping;
    const stopMs = performance.now() - t0;
    sending = false;
    await Promise.all(senders);

    // the listening socket is gone and the name is free
    expect(listenerInfo(NAME)).toBeUndefined();
    expect(handles("TCPServerWrap")).toBe(baseServers);
    await Promise.all(halfClosed);

    // every reading client: data frames, then exactly one close 1001, then the end of TCP
    const problems: string[] = [];
    for (const { c, id, kind } of conns) {
      if (kind === "slow-reader") c.resume();
      const closedNow = await c.waitClosed(3000);
      const closes = c.received.filter((f) => f.type === "close");
      if (kind === "slow-reader") {
        // dropped at shutdownTimeout unless it had read everything before: a close, if any, is 1001
        if (closes.some((f) => f.code !== 1001)) problems.push(`${id} (${kind}): close ${closes.map((f) => f.code).join(",")}`);
      } else {
        if (closes.length !== 1 || closes[0]!.code !== 1001) problems.push(`${id} (${kind}): closes ${JSON.stringify(closes.map((f) => f.code))}`);
        else if (c.received[c.received.length - 1] !== closes[0]) problems.push(`${id} (${kind}): frames after the close: ${kinds(c.received.slice(c.received.indexOf(closes[0]!) + 1))}`);
      }
      if (!closedNow) problems.push(`${id} (${kind}): TCP still open`);
      const t = terms.get(id) ?? [];
      if (t.length !== 1 || t[0] !== "shutdown") problems.push(`${id} (${kind}): terminate ${JSON.stringify(t)}`);
    }
    expect(problems.slice(0, 20)).toEqual([]);
    expect(terms.size).toBe(SCALE.shutdownConnections);

    // bounded: every connection's terminate ran at once (exit signals), and stopListener resolved
    // by shutdownTimeout (+ slack): the half-sent handshakes (HTTP requests in flight) and the
    // slow readers' sockets (their 1001 stuck behind unread data) are what is left to destroy
    // at shutdownTimeout (docs/listeners.md)
    const lastTerminate = Math.max(...conns.map(({ id }) => termAt.get(id)!)) - t0;
    expect(lastTerminate).toBeLessThan(500);
    expect(stopMs).toBeLessThan(SHUTDOWN_TIMEOUT + 1500);
    for (const { c } of conns) c.destroy();
    await until(() => processCount() === baseProcs, 5000, `processCount back to ${baseProcs} (is ${processCount()})`);
    await until(() => timerCount() === baseTimers, 5000, `timers back to ${baseTimers} (are ${timerCount()})`);
    await until(() => handles("TCPSocketWrap") === baseSockets, 5000, `sockets back to ${baseSockets} (are ${handles("TCPSocketWrap")})`);
    await sleep(50);
    expect(unhandled).toEqual([]);
    expect(records.filter((r) => r.level >= 50)).toEqual([]);
    const slowReaders = conns.filter((x) => x.kind === "slow-reader");
    console.log(
      `shutdown: ${SCALE.shutdownConnections} connections terminated within ${Math.round(lastTerminate)} ms, stopListener resolved in ${Math.round(stopMs)} ms; slow readers that still got their 1001: ` +
        `${slowReaders.filter(({ c }) => c.received.some((f) => f.type === "close")).length}/${slowReaders.length}`,
    );
  },
  timeout(30_000, 120_000),
);

test("without slow readers, stopListener under traffic resolves well before shutdownTimeout (nobody waits for the timeout)", async () => {
  const l = await startClear(`${NAME}-2`, { port: 0 }, { dispatch: compileRoutes([{ host: "_", paths: [["/", busy, {}]] }]), logger, shutdownTimeout: 5000 });
  const conns = await Promise.all(
    Array.from({ length: 40 }, (_, i) => RawClient.open(l.port, { path: `/?t${i}:${KINDS[i % 4]}` }).then((c) => ({ c, id: `t${i}` }))),
  );
  let sending = true;
  const senders = conns.map(async ({ c }, i) => {
    for (let n = 0; sending && !c.isClosed; n++) {
      await c.sendText(`m${i}-${n}`);
      await sleep(3);
    }
  });
  await sleep(200);
  const t0 = performance.now();
  await stopListener(`${NAME}-2`);
  const ms = performance.now() - t0;
  sending = false;
  await Promise.all(senders);
  for (const { c, id } of conns) {
    expect(await c.waitClosed(2000)).toBe(true);
    expect(c.received.filter((f) => f.type === "close").map((f) => f.code)).toEqual([1001]);
    expect(terms.get(id)).toEqual(["shutdown"]);
  }
  expect(ms).toBeLessThan(1500);
  expect(unhandled).toEqual([]);
});
