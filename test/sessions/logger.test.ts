// A session's crash report goes where its listener's logs go, as a WebSocket connection's does.
import { expect, test } from "vitest";
import { WebSocket } from "ws";
import { bullet, ok, setLogger, upgrade, type WebSocketHandler } from "../../src/index.js";
import { testServer } from "../../src/testing.js";
import { captureLogs, until } from "../support/helpers.js";

test("a session started after an awaiting init logs its crash to the listener's logger, not the runtime's", async () => {
  const runtime = captureLogs();
  const listener = captureLogs();
  // captureLogs sets the runtime logger: put the first one back, so the two sinks differ.
  setLogger(runtime.logger);
  const handler: WebSocketHandler<null> = {
    async init(req) {
      await new Promise((r) => setTimeout(r, 5));
      return upgrade(req, null);
    },
    websocketHandle(frame, state) {
      if (frame.type === "text" && frame.data === "crash") throw new Error("asked to crash");
      return ok(state);
    },
  };
  const server = await testServer([["/live", bullet(handler)]], { logger: listener.logger });
  const ws = new WebSocket(server.wsUrl("/live"));
  try {
    await new Promise((resolve, reject) => ws.once("message", resolve).once("error", reject));
    ws.send("crash");
    await until(() => listener.records.some((r) => r.msg === "process crashed"), 2000, "the crash report");
    expect(runtime.records.filter((r) => r.msg === "process crashed")).toEqual([]);
  } finally {
    ws.terminate();
    await server.stop();
  }
});
