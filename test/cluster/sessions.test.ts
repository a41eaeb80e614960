/**
 * Sessions on any node (docs/sessions.md, Clusters): two nodes serve the same bullet() route,
 * this test process (A) and a child node (B), over Redis and over IPC. A client reaches them
 * through a balancer of the test's own that sends every new connection to one node and, when
 * told to switch, resets every connection and sends the next ones to the other node: each
 * resume lands on the node that does not own the session, which relays it to the owner.
 */
import { randomBytes } from "node:crypto";
import { createServer, connect as tcpConnect, type Server, type Socket } from "node:net";
import WebSocket from "ws";
import type { TransportName } from "corral/client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { bullet, send } from "../../src/index.js";
import { testServer, type TestServer } from "../../src/testing.js";
import { recordedClient, type Recorder } from "../support/recorded-client.js";
import { newLog, sessionApp, type AppMessage, type SessionLog } from "../support/session-app.js";
import { joinHere, RUN, sleep, startNode, startTransport, stopNodes, transports, until, type ChildNode, type Transport } from "../support/cluster.js";

const HEARTBEAT = 250;
const WINDOW = 3000;
const NODE_HEARTBEAT = 100;
const NODE_TIMEOUT = 600;
const ROUTE = { heartbeatMs: HEARTBEAT, resumeWindowMs: WINDOW };

/** A TCP balancer: new connections go to one port; switchTo resets every connection and sends the next ones to another. */
class Balancer {
  private target: number;
  private readonly open = new Set<Socket>();
  /** Connections made to each port. */
  readonly made = new Map<number, number>();

  private constructor(
    private readonly server: Server,
    first: number,
  ) {
    this.target = first;
  }

  static async start(first: number): Promise<Balancer> {
    const server = createServer();
    const b = new Balancer(server, first);
    server.on("connection", (client) => b.accept(client));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return b;
  }

  url(path: string): string {
    return `http://127.0.0.1:${(this.server.address() as { port: number }).port}${path}`;
  }

  switchTo(port: number): void {
    this.target = port;
    for (const s of this.open) s.resetAndDestroy();
    this.open.clear();
  }

  private accept(client: Socket): void {
    this.made.set(this.target, (this.made.get(this.target) ?? 0) + 1);
    const upstream = tcpConnect(this.target, "127.0.0.1");
    for (const s of [client, upstream]) {
      this.open.add(s);
      s.on("error", () => {});
      s.on("close", () => {
        this.open.delete(s);
        (s === client ? upstream : client).destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }

  async stop(): Promise<void> {
    for (const s of this.open) s.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

function open(url: string, transport: TransportName): Recorder {
  return recordedClient(url, { transports: [transport] });
}

const numbered = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i + 1}`);
const texts = (r: Recorder, prefix: string): string[] => r.messages.filter((m): m is string => typeof m === "string" && m.startsWith(prefix));

const TRANSPORTS: readonly TransportName[] = ["websocket", "eventsource", "longpoll"];

describe.each(transports())("sessions on any node, over %s", (kind) => {
  let t: Transport;
  let b: ChildNode | undefined;
  let server: TestServer;
  let log: SessionLog;
  let portB: number;
  const timing = { heartbeatMs: NODE_HEARTBEAT, nodeTimeoutMs: NODE_TIMEOUT };

  beforeAll(async () => {
    t = await startTransport(kind);
    await joinHere(t, `sa-${RUN}@127.0.0.1`, timing);
    log = newLog();
    server = await testServer([["/fast", bullet(sessionApp(log), ROUTE)]], { shutdownTimeout: 100 });
    b = await startNode(t.options(`sb-${RUN}@127.0.0.1`, timing));
    portB = await b.call<number>("serveBullet", { path: "/fast", options: ROUTE });
  }, 150_000);

  afterAll(async () => {
    await server?.stop();
    await stopNodes([b]);
  }, 30_000);

  test.each(TRANSPORTS)("a client on %s whose every resume lands on the other node keeps one pid and loses or duplicates nothing", async (transport) => {
    const balancer = await Balancer.start(server.port);
    const before = { inits: log.inits, pids: log.pids.length, got: log.got.length };
    const r = open(balancer.url("/fast"), transport);
    try {
      await until(() => (r.conn.state === "open" && log.pids.length === before.pids + 1) || undefined, 5000, "the session to open on this node");
      const pid = log.pids.at(-1)!;
      const got = () => log.got.slice(before.got);
      r.conn.send("stream:10");
      let c = 0;
      let p = 0;
      const pump = setInterval(() => {
        r.conn.send(`c:${++c}`);
        send<AppMessage>(pid, { push: `p:${++p}` });
      }, 10);
      try {
        for (const [i, port] of [portB, server.port, portB, server.port, portB].entries()) {
          const seen = r.messages.length;
          const heard = got().length;
          await until(() => (r.messages.length >= seen + 20 && got().length >= heard + 10) || undefined, 8000, `traffic both ways before switch ${i + 1}`);
          if (i === 4) break;
          // Every connection is reset: from now on the client reaches the session only through the other node.
          const made = balancer.made.get(port) ?? 0;
          balancer.switchTo(port);
          await until(() => (balancer.made.get(port) ?? 0) > made || undefined, 8000, `a connection to the other node after switch ${i + 1}`);
        }
      } finally {
        clearInterval(pump);
      }
      send<AppMessage>(pid, { halt: true });
      await until(() => (texts(r, "s-end:").length === 1 && got().length === c) || undefined, 8000, "the stream's end and every client frame");
      const last = Number(texts(r, "s-end:")[0]!.slice("s-end:".length));
      expect(texts(r, "s:")).toEqual(numbered("s:", last).map((s) => `${s}:${String(pid)}`));
      expect(texts(r, "p:")).toEqual(numbered("p:", p));
      expect(got()).toEqual(numbered("c:", c));
      // A WebSocket or an event stream is always open when the connections are reset: each switch is a resume. A long-poll's next poll may go to the other node without one.
      const resumes = r.events.filter((e) => e === "reconnect").length;
      expect(r.events).toEqual(["open", ...Array(resumes).fill(["disconnect", "reconnect"]).flat()]);
      if (transport !== "longpoll") expect(resumes).toBe(4);
      expect(log.inits).toBe(before.inits + 1);
      expect(log.pids.slice(before.pids)).toEqual([pid]);
      r.conn.close();
      await until(() => log.terminates.at(-1) !== undefined || undefined, 3000, "terminate");
      expect(log.terminates.at(-1)).toEqual({ remote: { code: 1000, reason: "" } });
    } finally {
      if (r.conn.state !== "closed") r.conn.close();
      await balancer.stop();
    }
  }, 60_000);

  test("the owner checks the whole id: a forged id with its tag, or a real one cut short, asked of the other node gets 404", async () => {
    // A raw WebSocket, to read the id from hello.
    const ws = new WebSocket(server.url("/fast").replace("http:", "ws:"));
    try {
      const hello = await new Promise<unknown[]>((resolve, reject) => {
        ws.once("message", (data: Buffer) => resolve(JSON.parse(data.toString()) as unknown[]));
        ws.once("error", reject);
      });
      const sid = hello[1] as string;
      const [tag, secret] = sid.split(".") as [string, string];
      for (const forged of [`${tag}.${randomBytes(32).toString("base64url")}`, `${tag}.${secret.slice(0, 42)}`, `${tag}.`]) {
        const res = await fetch(`http://127.0.0.1:${portB}/fast?t=poll&sid=${encodeURIComponent(forged)}&ack=0&hello=1`);
        expect(res.status).toBe(404);
        await res.body?.cancel();
        const post = await fetch(`http://127.0.0.1:${portB}/fast?sid=${encodeURIComponent(forged)}`, { method: "POST", body: '[["t",1,"intruder"]]' });
        expect(post.status).toBe(404);
        await post.body?.cancel();
      }
      // The real id works through the other node.
      const res = await fetch(`http://127.0.0.1:${portB}/fast?t=poll&sid=${encodeURIComponent(sid)}&ack=0&hello=1`);
      expect(res.status).toBe(200);
      expect(((await res.json()) as unknown[][])[0]).toEqual(["hello", sid, 0, HEARTBEAT, WINDOW]);
      await until(() => ws.readyState === WebSocket.CLOSED || undefined, 3000, "the WebSocket taken over by the poll");
      const bye = await fetch(`http://127.0.0.1:${portB}/fast?sid=${encodeURIComponent(sid)}`, { method: "POST", body: '[["c",1000,""]]' });
      expect(bye.status).toBe(200);
      await bye.body?.cancel();
    } finally {
      ws.terminate();
    }
  });

  test("the owner killed with SIGKILL: its sessions end within the node timeout (onclose 1001, \"node down\"), this node's carry on", async () => {
    // Sessions owned by B: opened on B, then relayed here.
    const relayed = await Promise.all(
      TRANSPORTS.map(async (transport) => {
        const balancer = await Balancer.start(portB);
        const r = open(balancer.url("/fast"), transport);
        await until(() => r.conn.state === "open" || undefined, 5000, `a session on B over ${transport}`);
        // Every connection reset: from now on the client reaches B's session only through this node.
        balancer.switchTo(server.port);
        r.conn.send("still there?");
        await until(() => r.messages.includes(`${b!.name}:still there?`) || undefined, 5000, `B's echo through this node over ${transport}`);
        return { r, balancer };
      }),
    );
    // A session owned here, on each transport.
    const mine = TRANSPORTS.map((transport) => open(server.url("/fast"), transport));
    await until(() => mine.every((r) => r.conn.state === "open") || undefined, 5000, "this node's sessions to open");
    try {
      const killed = performance.now();
      await b!.kill("SIGKILL");
      b = undefined;
      await until(() => relayed.every(({ r }) => r.closes.length === 1) || undefined, 5000, "the relayed sessions to end");
      // Redis: the node timeout and a heartbeat, with slack for two busy CPUs; IPC: the primary's news at once.
      expect(performance.now() - killed).toBeLessThan(kind === "redis" ? NODE_TIMEOUT + NODE_HEARTBEAT + 1000 : 1000);
      for (const { r } of relayed) expect(r.closes).toEqual([{ code: 1001, reason: "node down" }]);
      await sleep(HEARTBEAT * 4);
      for (const [i, r] of mine.entries()) {
        expect(r.conn.state).toBe("open");
        r.conn.send(`after:${i}`);
      }
      await until(() => mine.every((r, i) => r.messages.includes(`after:${i}`)) || undefined, 5000, "this node's sessions to echo");
    } finally {
      for (const r of mine) r.conn.close();
      for (const { r, balancer } of relayed) {
        if (r.conn.state !== "closed") r.conn.close();
        await balancer.stop();
      }
    }
  }, 60_000);
});
