/**
 * The demo as a user runs it: the built CLI (dist/app/cli.js) in its own process, talked to
 * over HTTP, WebSockets and sessions (corral/client, as in Node) on 127.0.0.1. No browser
 * here (see browser.test.ts).
 *
 * dist/ is built by `npm ci` (prepare); if anything under src/ or app/ is newer, beforeAll
 * builds it once, one build at a time across test files (test/support/dist.ts).
 */
import { readFile } from "node:fs/promises";
import { createServer, type AddressInfo, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import WebSocket from "ws";
import { connect as connectSession, type CloseInfo, type Connection, type TransportName } from "corral/client";
import type { PresenceSummary } from "../../app/demo/presence.js";
import type { SessionGreeting } from "../../app/demo/session.js";
import { cliChildren, listening, runCli, type Cli } from "../support/cli.js";
import { connectClient, wsUrl, type Client } from "../support/client.js";
import { ensureBuilt, freePort, ROOT, within } from "../support/dist.js";

/** The longest any single step may take. */
const WAIT = 5_000;

/**
 * Sends a signal once the CLI has answered a request. The CLI prints its URL before it installs
 * its SIGINT/SIGTERM handlers (app/cli.ts), so a signal sent the moment the line appears
 * can still meet the default action and kill it; after a round trip the handlers are in place.
 * The test "a signal sent as soon as the URL is printed..." below covers that window.
 */
async function signalWhenServing(cli: Cli, url: string, signal: NodeJS.Signals): Promise<void> {
  expect((await fetch(new URL("/api/stats", url))).status).toBe(200);
  cli.child.kill(signal);
}

async function startCli(args: readonly string[] = [], env: Record<string, string> = {}): Promise<{ cli: Cli; url: string }> {
  const cli = runCli(args, env);
  return { cli, url: await listening(cli, WAIT) };
}

/** A presence summary from the chat (app/demo/presence.ts) that satisfies pred. */
function isPresence(text: string, pred: (p: PresenceSummary) => boolean): boolean {
  const msg = JSON.parse(text) as { type: string };
  return msg.type === "presence" && pred(msg as PresenceSummary);
}

/** A session opened with corral/client, keeping the texts it receives. */
interface Session {
  readonly conn: Connection;
  readonly texts: string[];
  readonly closed: Promise<CloseInfo>;
  readonly waitFor: (pred: (text: string) => boolean, what: string) => Promise<string>;
}

const sessions = new Set<Connection>();

function openSession(url: string, transports: readonly TransportName[]): Session {
  const texts: string[] = [];
  const waiters = new Set<() => void>();
  let onclose: (info: CloseInfo) => void = () => {};
  const closed = new Promise<CloseInfo>((resolve) => (onclose = resolve));
  const conn = connectSession(url, {
    WebSocket,
    transports,
    onmessage: (data) => {
      texts.push(typeof data === "string" ? data : `(${data.byteLength} bytes)`);
      for (const w of waiters) w();
    },
    onclose: (info) => onclose(info),
  });
  sessions.add(conn);
  const waitFor = (pred: (text: string) => boolean, what: string): Promise<string> =>
    within(
      new Promise<string>((resolve) => {
        const check = (): void => {
          const hit = texts.find(pred);
          if (hit === undefined) return;
          waiters.delete(check);
          resolve(hit);
        };
        waiters.add(check);
        check();
      }),
      WAIT,
      what,
    );
  return { conn, texts, closed, waitFor };
}

const sockets = new Set<WebSocket>();
const connect = (url: string): Promise<Client> => connectClient(url, WAIT);
const track = (client: Client): Client => {
  sockets.add(client.ws);
  return client;
};

beforeAll(async () => {
  await ensureBuilt();
}, 150_000);

afterAll(async () => {
  for (const conn of sessions) conn.close();
  for (const ws of sockets) ws.terminate();
  const left = [...cliChildren];
  for (const child of left) child.kill("SIGKILL");
  await within(
    Promise.all(left.map((child) => new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once("exit", () => resolve()))))),
    WAIT,
    "the CLI processes to end",
  );
});

describe("the demo CLI, running", () => {
  let cli: Cli;
  let url = "";
  let port = 0;

  beforeAll(async () => {
    port = await freePort();
    ({ cli, url } = await startCli(["--port", String(port), "--log-level", "warn"]));
  }, 20_000);

  afterAll(async () => {
    if (cli.child.exitCode === null && cli.child.signalCode === null) {
      cli.child.kill("SIGTERM");
      await within(cli.exited, WAIT, "the CLI to exit");
    }
  });

  test("prints the URL it listens on, with the port given", () => {
    expect(url).toBe(`http://127.0.0.1:${port}/`);
  });

  test("GET / is the demo's HTML page, and its assets are served", async () => {
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html\b.*charset=utf-8/i);
    const html = await res.text();
    expect(html).toMatch(/^<!doctype html>/i);
    expect(html).toContain("<title>corral");
    for (const [asset, type] of [
      ["/static/app.js", /javascript/],
      ["/static/style.css", /^text\/css/],
      ["/static/corral-client.js", /javascript/],
    ] as const) {
      const a = await fetch(new URL(asset, url));
      expect(a.status, asset).toBe(200);
      expect(a.headers.get("content-type"), asset).toMatch(type);
      expect((await a.text()).length, asset).toBeGreaterThan(100);
    }
    // The page's session client is the package's own file, as shipped.
    const client = await (await fetch(new URL("/static/corral-client.js", url))).text();
    expect(client).toBe(await readFile(`${ROOT}/client/corral-client.js`, "utf8"));
    expect((await fetch(new URL("/no/such/page", url))).status).toBe(404);
  });

  test("/api/stats is JSON with processes, connections, hibernated, mailbox, uptime", async () => {
    const res = await fetch(new URL("/api/stats", url));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    const stats = (await res.json()) as Record<string, unknown>;
    for (const field of ["processes", "connections", "hibernated", "mailbox", "uptime"]) {
      expect(Number.isInteger(stats[field]), `${field}: ${JSON.stringify(stats[field])}`).toBe(true);
      expect(stats[field] as number, field).toBeGreaterThanOrEqual(0);
    }
  });

  test("/api/stats counts an open WebSocket", async () => {
    const stats = async (): Promise<{ connections: number }> => (await (await fetch(new URL("/api/stats", url))).json()) as { connections: number };
    const before = (await stats()).connections;
    const client = track(await connect(wsUrl(url, "/echo")));
    expect((await stats()).connections).toBe(before + 1);
    client.ws.close(1000);
    await within(client.closed, WAIT, "the echo socket to close");
    await expect.poll(async () => (await stats()).connections, { timeout: WAIT }).toBe(before);
  });

  test("/echo echoes text and binary frames", async () => {
    const client = track(await connect(wsUrl(url, "/echo")));
    client.ws.send("round the corral");
    const bytes = Buffer.from([0, 1, 2, 253, 254, 255]);
    client.ws.send(bytes);
    await expect.poll(() => client.messages.length, { timeout: WAIT }).toBe(2);
    expect(client.messages[0]).toEqual({ data: Buffer.from("round the corral"), binary: false });
    expect(client.messages[1]!.binary).toBe(true);
    expect(client.messages[1]!.data.equals(bytes)).toBe(true);
    client.ws.close(1000, "done");
    expect((await within(client.closed, WAIT, "the echo socket to close")).code).toBe(1000);
  });

  test('/websocket greets "Hello!" and answers a text', async () => {
    const client = track(await connect(wsUrl(url, "/websocket")));
    client.ws.send("yee-haw");
    await client.waitFor((t) => t === "That's what she said! yee-haw", "the guide's answer");
    await client.waitFor((t) => t === "Hello!", "the guide's greeting");
    expect(client.texts().slice(0, 2)).toEqual(["That's what she said! yee-haw", "Hello!"]);
    client.ws.close(1000);
    await within(client.closed, WAIT, "the guide socket to close");
  });

  test("/websocket without an upgrade is 426", async () => {
    expect((await fetch(new URL("/websocket", url))).status).toBe(426);
  });

  test("chat members hear each other, and POST /broadcast reaches them", async () => {
    const ann = track(await connect(wsUrl(url, "/chat?name=ann")));
    await ann.waitFor((t) => t === JSON.stringify({ type: "welcome", name: "ann" }), "ann's welcome");
    const ben = track(await connect(wsUrl(url, "/chat?name=ben")));
    await ben.waitFor((t) => t === JSON.stringify({ type: "welcome", name: "ben" }), "ben's welcome");
    await ann.waitFor((t) => isPresence(t, (p) => p.joined.includes("ben") && p.count === 2), "ann hearing ben join");

    ben.ws.send("howdy");
    const said = JSON.stringify({ type: "said", from: "ben", text: "howdy" });
    await ann.waitFor((t) => t === said, "ann hearing ben");
    await ben.waitFor((t) => t === said, "ben hearing himself");

    const res = await fetch(new URL("/broadcast", url), { method: "POST", body: "round-up at noon" });
    expect(res.status).toBe(202);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(await res.json()).toEqual({ reached: 2 });
    const sent = JSON.stringify({ type: "broadcast", text: "round-up at noon" });
    await ann.waitFor((t) => t === sent, "the broadcast at ann");
    await ben.waitFor((t) => t === sent, "the broadcast at ben");

    ben.ws.close(1000);
    await within(ben.closed, WAIT, "ben's socket to close");
    await ann.waitFor((t) => isPresence(t, (p) => p.left.includes("ben") && p.count === 1), "ann hearing ben leave");
    ann.ws.close(1000);
    await within(ann.closed, WAIT, "ann's socket to close");
  });

  for (const transport of ["websocket", "eventsource", "longpoll"] as const) {
    test(`/live/guide over ${transport}: the session's pid first, then the guide's greeting and answers`, async () => {
      const guide = openSession(new URL("/live/guide", url).href, [transport]);
      await guide.waitFor((t) => t === "Hello!", "the guide's greeting");
      expect(guide.conn.transport).toBe(transport);
      const greeting = JSON.parse(guide.texts[0]!) as SessionGreeting;
      expect(greeting).toEqual({ type: "session", pid: expect.stringMatching(/^<[^<>\s]+\.\d+>$/) as unknown });
      expect(guide.texts.slice(1)).toEqual(["Hello!"]);
      guide.conn.send("yee-haw");
      await guide.waitFor((t) => t === "That's what she said! yee-haw", "the guide's answer");
      guide.conn.close(1000);
      expect(await guide.closed).toEqual({ code: 1000, reason: "" });
    });
  }

  test("a session on /live/chat and a plain WebSocket on /chat are in the same room", async () => {
    const ann = track(await connect(wsUrl(url, "/chat?name=ann")));
    await ann.waitFor((t) => t === JSON.stringify({ type: "welcome", name: "ann" }), "ann's welcome");
    const ben = openSession(new URL("/live/chat?name=ben", url).href, ["longpoll"]);
    await ben.waitFor((t) => t === JSON.stringify({ type: "welcome", name: "ben" }), "ben's welcome");
    await ann.waitFor((t) => isPresence(t, (p) => p.joined.includes("ben")), "ann hearing ben join");

    ben.conn.send("howdy from a long-poll");
    await ann.waitFor((t) => t === JSON.stringify({ type: "said", from: "ben", text: "howdy from a long-poll" }), "ann hearing ben");
    ann.ws.send("howdy from a WebSocket");
    await ben.waitFor((t) => t === JSON.stringify({ type: "said", from: "ann", text: "howdy from a WebSocket" }), "ben hearing ann");

    // A session that closes on purpose leaves at once, as a WebSocket does.
    ben.conn.close(1000);
    await ann.waitFor((t) => isPresence(t, (p) => p.left.includes("ben")), "ann hearing ben leave");
    ann.ws.close(1000);
    await within(ann.closed, WAIT, "ann's socket to close");
  });

  test("/live/ routes: a GET that names no transport is 400, an unknown session 404", async () => {
    const plain = await fetch(new URL("/live/chat", url));
    expect(plain.status).toBe(400);
    expect(await plain.json()).toEqual({ error: "a WebSocket upgrade, or t=es or t=poll" });
    const unknown = await fetch(new URL("/live/game?t=poll&sid=nope&ack=0", url));
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({ error: "no such session" });
  });

  test("/broadcast: GET is 405, an empty body 400", async () => {
    const get = await fetch(new URL("/broadcast", url));
    expect(get.status).toBe(405);
    expect(get.headers.get("allow")).toBe("POST");
    expect((await fetch(new URL("/broadcast", url), { method: "POST", body: "  \n" })).status).toBe(400);
  });
});

describe("the demo CLI, starting and stopping", () => {
  test("SIGTERM closes open WebSockets with 1001 and exits 0", async () => {
    const { cli, url } = await startCli(["--port", "0", "--log-level", "warn"]);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(url).not.toBe("http://127.0.0.1:0/");
    const guide = track(await connect(wsUrl(url, "/websocket")));
    const chat = track(await connect(wsUrl(url, "/chat?name=cy")));
    const echo = track(await connect(wsUrl(url, "/echo")));
    await chat.waitFor((t) => t.includes('"welcome"'), "the chat's welcome");
    cli.child.kill("SIGTERM");
    for (const [name, client] of [["guide", guide], ["chat", chat], ["echo", echo]] as const) {
      expect((await within(client.closed, WAIT, `the ${name} socket to close`)).code, name).toBe(1001);
    }
    expect(await within(cli.exited, WAIT, "the CLI to exit")).toBe(0);
  });

  test("SIGINT exits 0 too", async () => {
    const { cli, url } = await startCli(["--port", "0", "--log-level", "warn"]);
    await signalWhenServing(cli, url, "SIGINT");
    expect(await within(cli.exited, WAIT, "the CLI to exit")).toBe(0);
  });

  // Skipped until app/cli.ts installs its signal handlers before it prints the URL:
  // today about half of these runs end killed by the signal (exit "SIGTERM"), not with 0.
  test("a signal sent as soon as the URL is printed is still a graceful stop (cli.ts: handlers after the URL line)", async () => {
    for (let i = 0; i < 10; i++) {
      const { cli } = await startCli(["--port", "0", "--log-level", "warn"]);
      cli.child.kill("SIGTERM");
      expect(await within(cli.exited, WAIT, "the CLI to exit"), `run ${i}`).toBe(0);
    }
  });

  test("an unknown option exits 2 with the usage on stderr", async () => {
    const cli = runCli(["--bogus"]);
    expect(await within(cli.exited, WAIT, "the CLI to exit")).toBe(2);
    expect(cli.stderr()).toMatch(/^corral: .*bogus/);
    expect(cli.stderr()).toContain("usage: corral [--port N]");
    expect(cli.stdout()).toBe("");
  });

  test("an invalid port exits 2 with the usage on stderr", async () => {
    for (const bad of ["abc", "65536", "-1"]) {
      const cli = runCli(["--port", bad]);
      expect(await within(cli.exited, WAIT, "the CLI to exit"), bad).toBe(2);
      expect(cli.stderr(), bad).toContain("usage: corral");
    }
  });

  test("an invalid log level exits 2 with the usage on stderr", async () => {
    const cli = runCli(["--log-level", "loud"]);
    expect(await within(cli.exited, WAIT, "the CLI to exit")).toBe(2);
    expect(cli.stderr()).toMatch(/^corral: invalid log level "loud"\n/);
    expect(cli.stderr()).toContain("usage: corral");
  });

  test("an address that is not here exits 1 with one clear line", async () => {
    // 192.0.2.1 is TEST-NET-1 (RFC 5737): no machine of ours has it.
    const cli = runCli(["--host", "192.0.2.1", "--port", "0"]);
    expect(await within(cli.exited, WAIT, "the CLI to exit")).toBe(1);
    expect(cli.stderr()).toBe("corral: cannot listen on 192.0.2.1: no such address here\n");
  });

  test("--help prints the usage on stdout and exits 0", async () => {
    const cli = runCli(["--help"]);
    expect(await within(cli.exited, WAIT, "the CLI to exit")).toBe(0);
    expect(cli.stdout()).toMatch(/^usage: corral/);
    expect(cli.stderr()).toBe("");
  });

  test("a port in use exits 1 with one clear line", async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve, reject) => {
      blocker.once("error", reject);
      blocker.listen(0, "127.0.0.1", resolve);
    });
    const { port } = blocker.address() as AddressInfo;
    try {
      const cli = runCli(["--port", String(port)]);
      expect(await within(cli.exited, WAIT, "the CLI to exit")).toBe(1);
      expect(cli.stderr()).toBe(`corral: port ${port} on 127.0.0.1 is already in use\n`);
      expect(cli.stdout()).not.toContain("listening on");
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  });

  test("PORT from the environment is honoured, and --port wins over it", async () => {
    const port = await freePort();
    const fromEnv = await startCli(["--log-level", "warn"], { PORT: String(port) });
    expect(fromEnv.url).toBe(`http://127.0.0.1:${port}/`);
    expect((await fetch(fromEnv.url)).status).toBe(200);
    await signalWhenServing(fromEnv.cli, fromEnv.url, "SIGTERM");
    expect(await within(fromEnv.cli.exited, WAIT, "the CLI to exit")).toBe(0);

    const other = await freePort();
    const fromFlag = await startCli(["--port", String(other), "--log-level", "warn"], { PORT: String(port) });
    expect(fromFlag.url).toBe(`http://127.0.0.1:${other}/`);
    await signalWhenServing(fromFlag.cli, fromFlag.url, "SIGTERM");
    expect(await within(fromFlag.cli.exited, WAIT, "the CLI to exit")).toBe(0);
  });
});
