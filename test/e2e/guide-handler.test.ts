import { expect, test } from "vitest";
import WebSocket from "ws";
import { upgrade, ok, reply, text, startTimer, isTimeout, self, compileRoutes, startClear, stopListener, type WebSocketHandler } from "../../src/index.js";

type State = { heartbeat: number };
const terminated: unknown[] = [];
const wsHandler: WebSocketHandler<State, { heartbeat?: number }> = {
  init: (req, opts) => upgrade(req, { heartbeat: opts.heartbeat ?? 5000 }, { idleTimeout: 30_000 }),
  websocketInit(state) { startTimer(50, self(), "Hello!"); return ok(state); },
  websocketHandle(frame, state) {
    if (frame.type === "text") return reply(text(`That's what she said! ${frame.data}`), state);
    return ok(state);
  },
  websocketInfo(info, state) {
    if (isTimeout(info)) { startTimer(state.heartbeat, self(), "How' you doin'?"); return reply(text(String(info.msg)), state, { hibernate: true }); }
    return ok(state);
  },
  terminate(reason) { terminated.push(reason); },
};

test("guide handler", async () => {
  const dispatch = compileRoutes([{ host: "_", paths: [["/websocket", wsHandler, { heartbeat: 100 }]] }]);
  const l = await startClear("smoke", { port: 0 }, { dispatch });
  const ws = new WebSocket(`ws://127.0.0.1:${l.port}/websocket`);
  const got: string[] = [];
  ws.on("message", (d) => got.push(d.toString()));
  await new Promise((r) => ws.on("open", r));
  ws.send("hi");
  await new Promise((r) => setTimeout(r, 300));
  expect(got[0]).toBe("That's what she said! hi");
  expect(got).toContain("Hello!");
  expect(got).toContain("How' you doin'?");
  const closed = new Promise((r) => ws.on("close", (code) => r(code)));
  ws.close(4000, "bye");
  expect(await closed).toBe(4000);
  await new Promise((r) => setTimeout(r, 20));
  expect(terminated).toEqual([{ remote: { code: 4000, reason: "bye" } }]);
  const res = await fetch(`http://127.0.0.1:${l.port}/websocket`);
  expect(res.status).toBe(426);
  expect((await fetch(`http://127.0.0.1:${l.port}/nope`)).status).toBe(404);
  await stopListener("smoke");
});
