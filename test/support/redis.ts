/**
 * A real redis-server (the Debian package) for the cluster tests: one per test file, on a free
 * 127.0.0.1 port, no persistence, so a restart comes back empty as after a crash.
 *
 * If redis-server is not installed the cluster tests skip with a message, except under CI
 * (process.env.CI set), where that is an error: CI must never silently skip them.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createConnection } from "node:net";
import { freePort } from "./dist.js";

const CANDIDATES = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"];

/** The redis-server binary, or undefined when there is none on this machine. */
export function redisServerBinary(): string | undefined {
  for (const c of CANDIDATES) if (existsSync(c)) return c;
  const which = spawnSync("sh", ["-c", "command -v redis-server"], { encoding: "utf8" });
  const found = which.stdout.trim();
  return which.status === 0 && found !== "" ? found : undefined;
}

/**
 * True when the cluster tests can run. Throws under CI when redis-server is missing; prints why
 * they are skipped otherwise. Call it at the top of a test file: describe.skipIf(!haveRedis()).
 */
export function haveRedis(): boolean {
  if (redisServerBinary() !== undefined) return true;
  const why = "redis-server is not installed (apt-get install redis-server): the cluster tests need a real one";
  if (process.env["CI"]) throw new Error(`${why}; under CI they must not be skipped`);
  console.warn(`SKIPPING test/cluster: ${why}`);
  return false;
}

/** One raw RESP PING; resolves true on +PONG, false on any error or after ms. */
export function ping(port: number, ms = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    let buf = "";
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), ms);
    socket.once("error", () => done(false));
    socket.once("connect", () => socket.write("*1\r\n$4\r\nPING\r\n"));
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      buf += chunk;
      if (buf.includes("\r\n")) done(buf.startsWith("+PONG"));
    });
  });
}

export interface RedisServer {
  readonly url: string;
  readonly port: number;
  /** The server's output so far (for failure messages). */
  readonly log: () => string;
  /** SIGTERM, waits for the exit. */
  stop(): Promise<void>;
  /** SIGKILL, waits for the exit: the connection is lost as in a crash. */
  kill(): Promise<void>;
  /** Starts a fresh (empty) server on the same port and waits until it answers. */
  restart(): Promise<void>;
  /** SIGSTOP: the server stalls with every connection open, as in a long GC-like freeze. */
  freeze(): void;
  /** SIGCONT: a frozen server runs again (call it in a finally after freeze). */
  thaw(): void;
}

const servers = new Set<ChildProcess>();

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

async function boundedExit(child: ChildProcess, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([exited(child), new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
  if (child.exitCode === null && child.signalCode === null) {
    child.kill("SIGKILL");
    await exited(child);
  }
}

/** Starts redis-server on a free loopback port and waits (at most 10 s) until it answers PING. */
export async function startRedis(): Promise<RedisServer> {
  const bin = redisServerBinary();
  if (bin === undefined) throw new Error("redis-server is not installed");
  let output = "";
  let child: ChildProcess | undefined;
  let port = 0;

  const launch = async (): Promise<void> => {
    const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning"];
    const c = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    servers.add(c);
    c.once("exit", () => servers.delete(c));
    c.stdout!.setEncoding("utf8").on("data", (s: string) => (output += s));
    c.stderr!.setEncoding("utf8").on("data", (s: string) => (output += s));
    child = c;
    const deadline = Date.now() + 10_000;
    while (!(await ping(port, 300))) {
      if (c.exitCode !== null || c.signalCode !== null) throw new Error(`redis-server on port ${port} exited (${c.exitCode ?? c.signalCode}):\n${output}`);
      if (Date.now() > deadline) {
        c.kill("SIGKILL");
        throw new Error(`redis-server on port ${port} did not answer PING within 10 s:\n${output}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  // A free port can be taken between the check and the bind: try a few.
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    try {
      await launch();
      break;
    } catch (err) {
      if (attempt >= 4) throw err;
    }
  }

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    log: () => output,
    async stop() {
      if (child === undefined) return;
      child.kill("SIGTERM");
      await boundedExit(child, 5_000);
    },
    async kill() {
      if (child === undefined) return;
      child.kill("SIGKILL");
      await exited(child);
    },
    freeze() {
      child?.kill("SIGSTOP");
    },
    thaw() {
      child?.kill("SIGCONT");
    },
    async restart() {
      if (child !== undefined && child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        await exited(child);
      }
      const deadline = Date.now() + 10_000;
      // The port may linger for a moment after the old server died.
      for (;;) {
        try {
          await launch();
          return;
        } catch (err) {
          if (Date.now() > deadline) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    },
  };
}

/** Kills every redis-server this module started (afterAll, even after a failure). */
export async function stopAllRedis(): Promise<void> {
  const left = [...servers];
  for (const c of left) c.kill("SIGCONT");
  for (const c of left) c.kill("SIGKILL");
  await Promise.all(left.map((c) => boundedExit(c, 5_000)));
}
