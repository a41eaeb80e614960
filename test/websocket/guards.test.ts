import { afterAll, beforeAll, expect, test } from "vitest";
import WebSocket from "ws";
import { compileRoutes, ok, processInfo, reply, self, startClear, stopListener, text, upgrade, type Pid, type WebSocketHandler } from "../../src/index.js";
import { captureLogs, sleep, until } from "../support/helpers.js";

const { records } = captureLogs();

let port = 0;
const pids: Pid[] = [];
let peakQueue = 0;

/** Handles each frame slowly (a busy loop), so a flooding client outruns it. */
const slow: WebSocketHandler<{ n: number }> = {
  init: (req) => upgrade(req, { n: 0 }),
  websocketInit(state) {
    pids.push(self());
    return ok(state);
  },
  websocketHandle(frame, state) {
    const me = self();
    peakQueue = Math.max(peakQueue, processInfo(me)?.messageQueueLen ?? 0);
    const until = performance.now() + 0.05;
    while (performance.now() < until);
    if (frame.type === "text" && frame.data === "count") return reply(text(String(state.n)), state);
    return ok({ n: state.n + 1 });
  },
};

const echo: WebSocketHandler<null> = {
  init: (req) => upgrade(req, null, { allowedOrigins: ["https://good.example", "http://localhost:3000/"] }),
  websocketHandle: (frame, state) => (frame.type === "text" ? reply(frame, state) : ok(state)),
};

/** What the /origins route passes as allowedOrigins, set by the test before each upgrade. */
let originsGiven: unknown = undefined;
const checked: WebSocketHandler<null> = {
  init: (req) => upgrade(req, null, { allowedOrigins: originsGiven as string[] }),
  websocketHandle: (_f, s) => ok(s),
};

beforeAll(async () => {
  const dispatch = compileRoutes([{ host: "_", paths: [["/slow", slow], ["/origin", echo], ["/origins", checked]] }]);
  port = (await startClear("guards", { port: 0 }, { dispatch })).port;
});
afterAll(() => stopListener("guards"));

test("a flooding client: reading pauses, the mailbox stays bounded, nothing is lost", async () => {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/slow`);
  await new Promise((r) => ws.once("open", r));
  const N = 20_000;
  const payload = "x".repeat(16);
  for (let i = 0; i < N; i++) ws.send(payload);
  ws.send("count");
  const answer = await new Promise<string>((resolve) => ws.once("message", (d) => resolve(String(d))));
  expect(Number(answer)).toBe(N);
  // High-water 1024 plus at most what one socket read already held.
  expect(peakQueue).toBeLessThan(1024 + 5000);
  expect(peakQueue).toBeGreaterThan(0);
  ws.close();
});

async function status(origin: string | undefined, path = "/origin"): Promise<number> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, origin === undefined ? {} : { origin });
  return new Promise((resolve) => {
    ws.once("open", () => {
      ws.close();
      resolve(101);
    });
    ws.once("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
    ws.once("error", () => undefined);
  });
}

test("allowedOrigins: a listed origin upgrades, another gets 403, no Origin passes", async () => {
  expect(await status("https://good.example")).toBe(101);
  expect(await status("HTTP://LOCALHOST:3000")).toBe(101);
  expect(await status("https://evil.example")).toBe(403);
  expect(await status(undefined)).toBe(101);
});

test("allowedOrigins must be full origins: a bare host, a path or a non-list crashes init's upgrade (500) naming the option", async () => {
  for (const [given, code] of [
    [["good.example"], 500],
    [["https://good.example/path"], 500],
    ["https://good.example", 500],
    [["https://good.example/"], 101],
  ] as const) {
    originsGiven = given;
    const before = records.length;
    expect(await status("https://good.example", "/origins")).toBe(code);
    if (code === 500) {
      await until(() => records.slice(before).some((r) => r.msg === "process crashed"), 2000, "the crash report");
      const report = records.slice(before).find((r) => r.msg === "process crashed")!;
      expect(JSON.stringify(report["err"])).toContain("allowedOrigins");
    }
  }
});

test("after a flood the connection keeps reading (throttle released)", async () => {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/slow`);
  await new Promise((r) => ws.once("open", r));
  for (let i = 0; i < 5000; i++) ws.send("y");
  await sleep(50);
  ws.send("count");
  const first = await new Promise<string>((resolve) => ws.once("message", (d) => resolve(String(d))));
  expect(Number(first)).toBe(5000);
  ws.send("z");
  ws.send("count");
  const second = await new Promise<string>((resolve) => ws.once("message", (d) => resolve(String(d))));
  expect(Number(second)).toBe(5001);
  ws.close();
  await until(() => pids.every((p) => processInfo(p) === undefined), 2000, "connections to end");
});
