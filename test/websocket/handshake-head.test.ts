/**
 * The upgrade request's head on the wire (docs/architecture.md, one connection): the usual
 * handshake read in one piece goes straight to the router; anything else goes through
 * node:http and is answered exactly as before. Raw TCP on 127.0.0.1: each case sends the same
 * bytes whole and split, and compares what comes back.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { compileRoutes, ok, processCount, reply, startClear, stopListener, upgrade, type Listener, type WebSocketHandler } from "../../src/index.js";
import { sleep, until } from "../support/helpers.js";
import { handles } from "../support/measure.js";
import { rawExchange } from "../support/raw-client.js";

const NAME = "ws-handshake-head";
const KEY = "dGhlIHNhbXBsZSBub25jZQ==";
let listener: Listener;
let baseProcs = 0;
let baseSockets = 0;

/** The ways into init; each init waits for the test's go-ahead when the path says /wait. */
let inits = 0;
let release: (() => void) | undefined;
const echo: WebSocketHandler<null> = {
  async init(req) {
    inits++;
    if (req.path === "/wait") await new Promise<void>((resolve) => (release = resolve));
    return upgrade(req, null);
  },
  websocketHandle: (frame, s) => (frame.type === "text" || frame.type === "binary" ? reply(frame, s) : ok(s)),
};

beforeAll(async () => {
  listener = await startClear(NAME, { port: 0 }, { dispatch: compileRoutes([{ host: "_", paths: [["/[...]", echo, {}]] }]), requestTimeout: 1500 });
  baseProcs = processCount();
  baseSockets = handles("TCPSocketWrap");
});

afterAll(async () => {
  await stopListener(NAME);
});

function head(first: string, lines: readonly string[]): string {
  return [first, ...lines].join("\r\n") + "\r\n\r\n";
}

const UPGRADE = ["Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade", `Sec-WebSocket-Key: ${KEY}`, "Sec-WebSocket-Version: 13"];

async function nothingLeft(): Promise<void> {
  await until(() => processCount() === baseProcs, 3000, `processCount back to ${baseProcs} (is ${processCount()})`);
  await until(() => handles("TCPSocketWrap") === baseSockets, 3000, `TCP sockets back to ${baseSockets} (are ${handles("TCPSocketWrap")})`);
}

describe("the client leaves before the 101", () => {
  test("a reset while init runs ends that socket, not the node; the next client upgrades", async () => {
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown): void => {
      uncaught.push(err);
    };
    process.prependListener("uncaughtException", onUncaught);
    try {
      const before = inits;
      const gone = rawExchange(listener.port, [head("GET /wait HTTP/1.1", UPGRADE)], { resetAfterMs: 50 });
      await until(() => inits === before + 1, 2000, "init started");
      await gone;
      await sleep(50);
      release!();
      await nothingLeft();
      const next = await rawExchange(listener.port, [head("GET / HTTP/1.1", UPGRADE)]);
      expect(next.status).toBe(101);
      expect(uncaught).toEqual([]);
    } finally {
      process.off("uncaughtException", onUncaught);
    }
  });
});
