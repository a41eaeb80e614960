/**
 * A reconnect storm at the listener: the accept queue (`backlog`) and `maxConnections`.
 * Connections are made with plain sockets, all in one tick, so the listener accepts none of
 * them until every connect has been issued: the kernel's accept queue is what holds them.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { connect as netConnect, type Socket } from "node:net";
import { afterEach, describe, expect, test } from "vitest";
import { compileRoutes, ok, startClear, stopListener, upgrade, type Listener, type TransportOptions, type WebSocketHandler } from "../../src/index.js";
import { expectCode, sleep, until } from "../support/helpers.js";

const idle: WebSocketHandler<null> = {
  init: (req) => upgrade(req, null),
  websocketHandle: (_frame, s) => ok(s),
};
const dispatch = compileRoutes([{ host: "_", paths: [["/", idle, {}]] }]);

const started: string[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((n) => stopListener(n).catch(() => {})));
});

async function listen(name: string, transport: TransportOptions): Promise<Listener> {
  const l = await startClear(name, transport, { dispatch, shutdownTimeout: 200 });
  started.push(name);
  return l;
}

const KEY = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT = createHash("sha1").update(`${KEY}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");

/** One client of the storm: when its TCP handshake completed, what it got back, when it closed. */
class Client {
  readonly socket: Socket;
  readonly t0 = performance.now();
  connectedMs: number | undefined = undefined;
  closedMs: number | undefined = undefined;
  text = "";
  constructor(port: number, upgradeHead: boolean) {
    this.socket = netConnect({ port, host: "127.0.0.1" });
    this.socket.on("connect", () => {
      this.connectedMs = performance.now() - this.t0;
      if (upgradeHead) this.socket.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    this.socket.on("data", (b: Buffer) => {
      this.text += b.toString("latin1");
    });
    this.socket.on("error", () => {});
    this.socket.on("close", () => {
      this.closedMs = performance.now() - this.t0;
    });
  }
  get upgraded(): boolean {
    return this.text.startsWith("HTTP/1.1 101 ") && this.text.includes(`Sec-WebSocket-Accept: ${ACCEPT}\r\n`);
  }
}

/** n clients whose connect calls all happen before the listener's next chance to accept. */
function storm(port: number, n: number, upgradeHead: boolean): Client[] {
  return Array.from({ length: n }, () => new Client(port, upgradeHead));
}

describe("backlog", () => {
  test("not a whole number > 0: ERR_BADARG when the listener starts", async () => {
    for (const backlog of [0, -1, 1.5, Infinity, Number.NaN, "64"]) {
      expectCode(() => void startClear("storm-bad-backlog", { port: 0, backlog: backlog as number }, { dispatch }), "ERR_BADARG");
    }
  });

  // Linux holds backlog + 1 completed connections; a SYN beyond them is dropped, and its client tries again a second later.
  test("backlog 4: a storm of 40 gets 5 connections completed by the kernel at once, the rest a SYN retransmit (~1 s) later", async () => {
    const l = await listen("storm-backlog-4", { port: 0, backlog: 4 });
    const clients = storm(l.port, 40, false);
    await sleep(500);
    expect(clients.filter((c) => c.connectedMs !== undefined)).toHaveLength(5);
    await until(() => clients.every((c) => c.connectedMs !== undefined), 10_000, "every client to connect in the end");
    const late = clients.filter((c) => c.connectedMs! >= 500);
    expect(late).toHaveLength(35);
    for (const c of clients) c.socket.destroy();
  });

  test("the default (1024, where Node's is 511): a storm of 700 all connect at once", async () => {
    // The kernel caps every backlog at somaxconn: 4096 since Linux 5.4, 128 before.
    expect(Number(readFileSync("/proc/sys/net/core/somaxconn", "utf8")), "net.core.somaxconn must be at least 1024 for this test").toBeGreaterThanOrEqual(1024);
    const l = await listen("storm-backlog-default", { port: 0 });
    const clients = storm(l.port, 700, false);
    try {
      await sleep(500);
      expect(clients.filter((c) => c.connectedMs === undefined)).toHaveLength(0);
    } finally {
      for (const c of clients) c.socket.destroy();
    }
  });
});

describe("maxConnections below the storm", () => {
  test("1 000 upgrades at once against maxConnections 200: 200 upgraded, 800 closed as they are accepted, with no status and no byte, all within the storm's last accept (< 1 s)", async () => {
    const l = await listen("storm-maxconn", { port: 0, maxConnections: 200 });
    let peak = 0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, l.connections);
    }, 1);
    const clients = storm(l.port, 1000, true);
    try {
      await until(() => clients.every((c) => c.upgraded || c.closedMs !== undefined), 10_000, "every client to be upgraded or closed");
      clearInterval(sampler);
      const upgraded = clients.filter((c) => c.upgraded);
      const refused = clients.filter((c) => !c.upgraded);
      expect(upgraded).toHaveLength(200);
      expect(refused).toHaveLength(800);
      // Refused at accept: the TCP handshake completed (the kernel's), then closed by the listener without an HTTP answer.
      for (const c of refused) {
        expect(c.text).toBe("");
        expect(c.connectedMs).toBeDefined();
        expect(c.closedMs).toBeDefined();
      }
      // How fast: the listener closes each as it accepts it; the slowest refusal is the last accept of the storm.
      const closed = refused.map((c) => c.closedMs! - c.connectedMs!).sort((a, b) => a - b);
      console.log(`maxConnections storm: refusal after the TCP handshake: median ${closed[400]!.toFixed(1)} ms, slowest ${closed[799]!.toFixed(1)} ms`);
      expect(closed[799]).toBeLessThan(1000);
      // The upgraded ones stay; the listener never held more than the limit.
      await sleep(100);
      expect(upgraded.every((c) => c.closedMs === undefined)).toBe(true);
      expect(l.connections).toBe(200);
      expect(peak).toBeLessThanOrEqual(200);
    } finally {
      clearInterval(sampler);
      for (const c of clients) c.socket.destroy();
    }
  });
});
