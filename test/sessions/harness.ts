/**
 * What every session test file sets up: a bullet() route on a real listener (127.0.0.1, port
 * 0) serving the recording handler, a leak check around each test, the logs kept in memory,
 * and the protocol clients a test opened, disposed of afterwards.
 */
import { afterEach, beforeEach } from "vitest";
import { bullet, processes, processInfo, type BulletOptions, type WebSocketOptions } from "../../src/index.js";
import { leakCheck, testServer, type LeakCheck, type TestServer } from "../../src/testing.js";
import { SessionClient, type SessionClientOptions } from "../support/session-client.js";
import { recorder, testHandler, type Recorder, type Seen } from "./handler.js";
import { captureLogs, until, type LogRecord } from "../support/helpers.js";

/** Small windows and heartbeats keep every test fast. */
export const FAST: BulletOptions = { resumeWindowMs: 400, heartbeatMs: 200 };

export interface Harness {
  server: TestServer;
  rec: Recorder;
  /** What the runtime and the listener logged during this test (kept in memory, not printed). */
  logs: LogRecord[];
  /** A protocol client of the route at path (default /live), disposed after the test. */
  client(options?: SessionClientOptions, path?: string): SessionClient;
  /** Restarts the listener with these routes' options (the default one is FAST on /live). */
  serve(options?: BulletOptions, wsOpts?: WebSocketOptions, extra?: readonly [string, unknown][]): Promise<void>;
}


export function harness(defaults: BulletOptions = FAST, wsDefaults?: WebSocketOptions): Harness {
  let leaks: LeakCheck;
  let clients: SessionClient[] = [];
  const h = {
    rec: recorder(),
    client(options?: SessionClientOptions, path = "/live"): SessionClient {
      const c = new SessionClient(h.server.port, path, options);
      clients.push(c);
      return c;
    },
    async serve(options: BulletOptions = defaults, wsOpts: WebSocketOptions | undefined = wsDefaults, extra: readonly [string, unknown][] = []): Promise<void> {
      await h.server?.stop();
      h.rec.reset();
      h.server = await testServer([["/live", bullet(testHandler(h.rec, wsOpts), options)], ...(extra as [string, never][])]);
    },
  } as Harness;
  beforeEach(async () => {
    leaks = leakCheck();
    // Before the listener starts, so its logger is this one too.
    h.logs = captureLogs().records;
    await h.serve();
  });
  afterEach(async () => {
    for (const c of clients) c.dispose();
    clients = [];
    await h.server.stop();
    await leaks.assert(3000);
  });
  return h;
}

/** The one session the handler has seen, once its websocketInit ran. */
export async function session(rec: Recorder, i = 0): Promise<Seen> {
  await until(() => rec.sessions[i]?.pid !== undefined, 2000, `session ${i}'s websocketInit`);
  return rec.sessions[i]!;
}

/** Resolves once the session's terminate has run. */
export async function terminated(s: Seen, timeoutMs = 2000): Promise<void> {
  await until(() => s.terminates.length > 0, timeoutMs, `session ${s.id}'s terminate`);
}

/** Live processes serving the route: a WebSocket transport's connection, an event stream's or a held poll's request. */
export function transportsOf(route = "/live"): number {
  return processes().filter((pid) => processInfo(pid)?.behaviour === route).length;
}

/** Resolves once a transport of the route is attached on the server (a poll is held, a stream is open). */
export async function transportUp(route = "/live"): Promise<void> {
  await until(() => transportsOf(route) > 0, 2000, `a transport process of ${route}`);
}
