/**
 * Crash isolation: a handler that throws, throws a non-Error, returns an invalid value or
 * command, rejects, resolves to garbage, or hands back a thenable that throws — in
 * websocketInit, websocketHandle (for a text frame and for a ping), or websocketInfo —
 * closes only its own connection with 1011; terminate runs exactly once with { crash };
 * exactly one crash report names its pid; the process is gone and the process count returns
 * to its baseline. A terminate that throws is logged once and changes nothing else.
 * test/websocket/results.test.ts has the single cases; this file runs the full matrix, then
 * a storm of crashes beside healthy connections.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  commands,
  compileRoutes,
  isAlive,
  ok,
  processCount,
  reply,
  self,
  send,
  startClear,
  stopListener,
  upgrade,
  type CallResult,
  type Frame,
  type Listener,
  type Pid,
  type TerminateReason,
  type WebSocketHandler,
} from "../../src/index.js";
import { captureLogs, sleep, until } from "../support/helpers.js";
import { RawClient } from "../support/raw-client.js";
import { SCALE, timeout } from "./scale.js";
import { handles, pool, rng } from "../support/measure.js";

const { logger, records } = captureLogs();

const CALLBACKS = ["websocketInit", "websocketHandle", "websocketHandle(ping)", "websocketInfo"] as const;
type Callback = (typeof CALLBACKS)[number];

/** How a callback goes wrong. Each returns what the callback returns (or throws). */
const MODES: Record<string, (s: State) => unknown> = {
  "throws an Error": (s) => {
    throw new Error(`boom ${s.id}`);
  },
  "throws a string": () => {
    throw "a string, not an Error";
  },
  "throws undefined": () => {
    throw undefined;
  },
  "returns null": () => null,
  "returns a result without state": () => ({ type: "reply", frames: [] }),
  "returns an unknown result type": (s) => ({ type: "sleep", state: s }),
  "returns an invalid command": (s) => commands([{ active: "yes" } as never], s),
  "returns an invalid frame": (s) => reply({ type: "text", data: 5 } as unknown as Frame, s),
  "returns a ping over 125 bytes": (s) => reply({ type: "ping", data: new Uint8Array(126) }, s),
  "rejects with an Error": (s) => Promise.reject(new Error(`async boom ${s.id}`)),
  "rejects with undefined": () => Promise.reject(undefined),
  "resolves to 42": () => Promise.resolve(42),
  "throws after an await": async (s) => {
    await sleep(2);
    throw new Error(`late boom ${s.id}`);
  },
  "returns a thenable whose then throws": () => ({
    then() {
      throw new Error("then() itself throws");
    },
  }),
};
const MODE_NAMES = Object.keys(MODES);

type State = { id: string; cb: Callback | "none"; mode: string; terminateThrows: boolean };

const terms = new Map<string, TerminateReason[]>();
const pids = new Map<string, Pid>();

/** Runs the planned failure if this is the planned callback; otherwise `normal`. */
function fail(s: State, cb: Callback, normal: () => CallResult<State>): CallResult<State> {
  if (s.cb !== cb) return normal();
  return MODES[s.mode]!(s) as CallResult<State>;
}

const crashy: WebSocketHandler<State> = {
  init(req) {
    const q = new URLSearchParams(req.qs);
    const state: State = { id: q.get("id")!, cb: (q.get("cb") ?? "none") as Callback, mode: q.get("mode") ?? "", terminateThrows: q.has("tt") };
    return upgrade(req, state, { idleTimeout: 30_000 });
  },
  websocketInit(s) {
    pids.set(s.id, self());
    return fail(s, "websocketInit", () => ok(s));
  },
  websocketHandle(frame, s) {
    if (frame.type === "ping") return fail(s, "websocketHandle(ping)", () => ok(s));
    if (frame.type === "text" && frame.data === "crash") return fail(s, "websocketHandle", () => ok(s));
    return frame.type === "text" || frame.type === "binary" ? reply(frame, s) : ok(s);
  },
  websocketInfo(info, s) {
    if (info === "crash") return fail(s, "websocketInfo", () => ok(s));
    return ok(s);
  },
  terminate(reason, _req, s) {
    let list = terms.get(s.id);
    if (list === undefined) terms.set(s.id, (list = []));
    list.push(reason);
    if (s.terminateThrows) throw new Error(`terminate of ${s.id} throws`);
  },
};

const NAME = "reliability-crash";
let listener: Listener;
let baseProcs = 0;
let baseSockets = 0;
let seq = 0;

beforeAll(async () => {
  baseSockets = handles("TCPSocketWrap");
  listener = await startClear(NAME, { port: 0 }, { dispatch: compileRoutes([{ host: "_", paths: [["/", crashy, {}]] }]), logger, shutdownTimeout: 500 });
  baseProcs = processCount();
});

afterAll(async () => {
  await stopListener(NAME);
});

async function open(cb: Callback | "none", mode = "", extra = ""): Promise<{ c: RawClient; id: string }> {
  const id = `k${++seq}`;
  const c = await RawClient.open(listener.port, { path: `/?id=${id}&cb=${encodeURIComponent(cb)}&mode=${encodeURIComponent(mode)}${extra}`, timeoutMs: 5000 });
  return { c, id };
}

/** Makes the planned callback run. */
async function trigger(c: RawClient, id: string, cb: Callback | "none"): Promise<void> {
  if (cb === "websocketHandle") await c.sendText("crash");
  else if (cb === "websocketHandle(ping)") await c.sendPing("before the crash");
  else if (cb === "websocketInfo") {
    await until(() => pids.has(id), 2000, `pid of ${id}`);
    send(pids.get(id)!, "crash");
  }
}

const crashReports = (pid: Pid): number => records.filter((r) => r.msg === "process crashed" && r["pid"] === pid.toString()).length;
const terminateThrew = (pid: Pid): number => records.filter((r) => r.msg === "terminate threw" && r["pid"] === pid.toString()).length;

/** What a crashed connection must look like, from the wire and from inside; returns the problems. */
async function crashedProperly(c: RawClient, id: string, cb: Callback): Promise<string[]> {
  const problems: string[] = [];
  const { close, before } = await c.nextClose(3000).catch(() => ({ close: undefined, before: [] }));
  if (close?.code !== 1011) problems.push(`close ${close?.code ?? "none"}, expected 1011`);
  // a crash on a ping: the pong went out before the handler ran
  const expectedBefore = cb === "websocketHandle(ping)" ? ["pong"] : [];
  if (JSON.stringify(before.map((f) => f.type)) !== JSON.stringify(expectedBefore)) problems.push(`frames before the close: ${before.map((f) => f.type).join(",")}`);
  if (!(await c.waitClosed(2000))) problems.push("TCP still open 2 s after the 1011");
  await until(() => terms.has(id), 2000, `terminate of ${id}`).catch(() => undefined);
  await sleep(5);
  const t = terms.get(id) ?? [];
  if (t.length !== 1) problems.push(`terminate ran ${t.length} times`);
  else if (!("crash" in (t[0] as object)) || !((t[0] as { crash: unknown }).crash instanceof Error)) problems.push(`terminate got ${JSON.stringify(t[0])}`);
  const pid = pids.get(id);
  if (pid === undefined) problems.push("no pid recorded");
  else {
    if (isAlive(pid)) problems.push("the process is still alive");
    const n = crashReports(pid);
    if (n !== 1) problems.push(`${n} crash reports`);
  }
  c.destroy();
  return problems;
}

/** A healthy connection still echoes. */
async function echoes(c: RawClient, msg: string): Promise<void> {
  await c.sendText(msg);
  const f = await c.next();
  expect(f.type).toBe("text");
  expect(f.payload.toString()).toBe(msg);
}

async function baseline(): Promise<void> {
  await until(() => processCount() === baseProcs, 3000, `processCount back to ${baseProcs} (is ${processCount()})`);
  await until(() => handles("TCPSocketWrap") === baseSockets && listener.connections === 0, 3000, "sockets back to baseline");
}

describe("every callback × every way to fail: only that connection closes with 1011", () => {
  const matrix = CALLBACKS.flatMap((cb) => MODE_NAMES.map((mode) => ({ cb, mode })));

  test.each(matrix)("$cb $mode", async ({ cb, mode }) => {
    const bystander = await open("none");
    await echoes(bystander.c, "before");
    const { c, id } = await open(cb, mode);
    await trigger(c, id, cb);
    expect(await crashedProperly(c, id, cb)).toEqual([]);
    // the bystander never noticed
    await echoes(bystander.c, "after");
    expect(terms.has(bystander.id)).toBe(false);
    bystander.c.destroy();
    await baseline();
  });

  test("the crash report names the bad value or the error", async () => {
    const cases: [Callback, string, string][] = [
      ["websocketHandle", "returns null", "null"],
      ["websocketHandle", "resolves to 42", "42"],
      ["websocketInfo", "returns an unknown result type", "sleep"],
      ["websocketInit", "throws an Error", "boom"],
      ["websocketHandle", "throws a string", "a string, not an Error"],
    ];
    for (const [cb, mode, needle] of cases) {
      const { c, id } = await open(cb, mode);
      await trigger(c, id, cb);
      expect(await crashedProperly(c, id, cb)).toEqual([]);
      const report = records.find((r) => r.msg === "process crashed" && r["pid"] === pids.get(id)!.toString());
      expect(JSON.stringify(report)).toContain(needle);
    }
  });
});

describe("a terminate that throws", () => {
  test("after a client close: the close is echoed, one 'terminate threw' log, no crash report, the process is gone", async () => {
    const { c, id } = await open("none", "", "&tt=1");
    await echoes(c, "hello");
    await c.sendClose(4000, "bye");
    expect((await c.nextClose()).close.code).toBe(4000);
    expect(await c.waitClosed()).toBe(true);
    await until(() => terms.has(id), 2000, "terminate");
    const pid = pids.get(id)!;
    await until(() => !isAlive(pid), 2000, "the process to end");
    expect(terms.get(id)).toEqual([{ remote: { code: 4000, reason: "bye" } }]);
    expect(terminateThrew(pid)).toBe(1);
    expect(crashReports(pid)).toBe(0);
    await baseline();
  });

  test("after a crash: 1011, one crash report, one 'terminate threw' log", async () => {
    const { c, id } = await open("websocketHandle", "throws an Error", "&tt=1");
    await trigger(c, id, "websocketHandle");
    expect(await crashedProperly(c, id, "websocketHandle")).toEqual([]);
    expect(terminateThrew(pids.get(id)!)).toBe(1);
    await baseline();
  });

  test("when the client drops TCP: one 'terminate threw' log, the process is gone", async () => {
    const { c, id } = await open("none", "", "&tt=1");
    await echoes(c, "hello");
    c.destroy();
    await until(() => terms.has(id), 2000, "terminate");
    const pid = pids.get(id)!;
    await until(() => !isAlive(pid), 2000, "the process to end");
    expect(terms.get(id)).toEqual([{ error: "closed" }]);
    expect(terminateThrew(pid)).toBe(1);
    await baseline();
  });
});

test(
  `a crash storm: ${SCALE.crashStorm} connections each crash once (random callback and way), beside ${SCALE.crashHealthy} healthy connections echoing all along`,
  async () => {
    const r = rng(0xc4a5);
    const healthy = await Promise.all(Array.from({ length: SCALE.crashHealthy }, () => open("none")));
    let stop = false;
    let echoed = 0;
    const healthyProblems: string[] = [];
    // each healthy connection echoes in a loop until the storm is over
    const loops = healthy.map(async ({ c }, i) => {
      for (let n = 0; !stop; n++) {
        const msg = `h${i}-${n}`;
        try {
          await echoes(c, msg);
          echoed++;
        } catch (err) {
          healthyProblems.push(`healthy ${i}: ${(err as Error).message}`);
          return;
        }
        await sleep(r.int(1, 10));
      }
    });
    const plans = Array.from({ length: SCALE.crashStorm }, () => ({ cb: r.pick(CALLBACKS), mode: r.pick(MODE_NAMES) }));
    const problems: string[] = [];
    await pool(plans, 50, async ({ cb, mode }) => {
      const { c, id } = await open(cb, mode);
      await trigger(c, id, cb);
      for (const p of await crashedProperly(c, id, cb)) problems.push(`${cb} ${mode} (${id}): ${p}`);
    });
    stop = true;
    await Promise.all(loops);
    expect(problems.slice(0, 20)).toEqual([]);
    expect(healthyProblems).toEqual([]);
    expect(echoed).toBeGreaterThan(SCALE.crashHealthy);
    for (const { id } of healthy) expect(terms.has(id)).toBe(false);
    for (const { c } of healthy) c.destroy();
    await baseline();
    console.log(`crash storm: ${SCALE.crashStorm} crashes, ${echoed} healthy echoes meanwhile`);
  },
  timeout(30_000, 300_000),
);
