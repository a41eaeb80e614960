/**
 * The demo against hostile clients, as a user runs it (the built CLI in its own process):
 *
 * - a join storm of N real chat clients (in waves, half a second in all), then half of them
 *   leaving at once: each member hears a bounded number of presence summaries (not N), every
 *   member ends with the right count, and the server's CPU for the storm (from /proc) stays
 *   close to what the same number of /echo connections costs. Before presence summaries, 400 joins cost the server 1,160 ms of CPU
 *   (120 ms for 400 echo connections) and 80,200 frames.
 * - POST /broadcast with a body too large or cut off: 413 or nothing, and no error-level log.
 *
 * N is 400; CORRAL_HEAVY=1 makes it 2,000.
 */
import { readFileSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type WebSocket from "ws";
import { PRESENCE_MS, type PresenceSummary } from "../../app/demo/presence.js";
import { cliChildren, listening, runCli, type Cli } from "../support/cli.js";
import { connectClient, wsUrl, type Client } from "../support/client.js";
import { ensureBuilt, within } from "../support/dist.js";

const N = process.env["CORRAL_HEAVY"] ? 2_000 : 400;
const WAIT = 10_000;
/** How long a whole storm may take to settle, loaded machine included. */
const STORM_WAIT = 60_000;
/** The presence cost a join or a leave may add over an echo connection's (it was 2.6 ms at N = 400, and grows with N). */
const PRESENCE_CPU_PER_MEMBER_MS = 0.75;

const sockets = new Set<WebSocket>();

/** One demo for the file; each test checks its own effects. */
let cli: Cli;
let url = "";

beforeAll(async () => {
  await ensureBuilt();
  cli = runCli(["--port", "0", "--log-level", "warn"]);
  url = await listening(cli, WAIT);
}, 150_000);

afterAll(async () => {
  for (const ws of sockets) ws.terminate();
  cli.child.kill("SIGTERM");
  await within(cli.exited, WAIT, "the CLI to exit");
  for (const child of [...cliChildren]) child.kill("SIGKILL");
}, 20_000);

/** The CPU (user + system, ms) the process has used, from /proc: the server's alone, not the test's. */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  // utime and stime, fields 14 and 15 of stat(5), in clock ticks of 10 ms.
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** The error-level (50) and fatal (60) lines the CLI printed. */
function errorLines(cli: Cli): string[] {
  return cli.stdout().split("\n").filter((l) => l.startsWith("{") && (JSON.parse(l) as { level: number }).level >= 50);
}

async function until(check: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The storm comes in waves, as a real one does: a wave every WAVE_GAP_MS, so that only an interval can coalesce them. */
const WAVES = 20;
const WAVE_GAP_MS = 25;

async function openAll(path: (i: number) => string): Promise<Client[]> {
  const opening: Promise<Client>[] = [];
  for (let i = 0; i < N; i++) {
    if (i > 0 && i % (N / WAVES) === 0) await new Promise((r) => setTimeout(r, WAVE_GAP_MS));
    opening.push(connectClient(wsUrl(url, path(i)), STORM_WAIT));
  }
  const clients = await Promise.all(opening);
  for (const c of clients) sockets.add(c.ws);
  return clients;
}

async function closeAll(clients: readonly Client[]): Promise<void> {
  for (const c of clients) c.ws.close(1000);
  await within(Promise.all(clients.map((c) => c.closed)), STORM_WAIT, "the sockets to close");
}

const stats = async (): Promise<{ connections: number; processes: number }> => (await (await fetch(new URL("/api/stats", url))).json()) as { connections: number; processes: number };

/** The presence summaries a client has heard. */
const summaries = (c: Client): PresenceSummary[] =>
  c.texts().map((t) => JSON.parse(t) as { type: string }).filter((m): m is PresenceSummary => m.type === "presence");
const lastCount = (c: Client): number | undefined => summaries(c).at(-1)?.count;

describe(`the demo chat under a join storm of ${N} clients`, () => {
  test("each member hears a bounded number of summaries, all end with the right count, and the CPU is an echo storm's plus a little", async () => {
    const pid = cli.child.pid!;

    // The baseline: the same number of connections that only echo.
    let cpu = cpuMs(pid);
    const echoes = await openAll(() => "/echo");
    const echoJoinCpu = cpuMs(pid) - cpu;
    cpu = cpuMs(pid);
    await closeAll(echoes);
    await until(async () => (await stats()).connections === 0, WAIT, "the echo connections to end");
    const echoLeaveCpu = cpuMs(pid) - cpu;

    cpu = cpuMs(pid);
    let started = Date.now();
    const members = await openAll((i) => `/chat?name=m${i}`);
    await until(() => members.every((c) => lastCount(c) === N), STORM_WAIT, `every member to hear count ${N}`);
    const joinMs = Date.now() - started;
    const joinCpu = cpuMs(pid) - cpu;
    const joinHeard = members.map((c) => summaries(c).length);

    // Half leave at once; the others hear it.
    const [leaving, staying] = [members.slice(0, N / 2), members.slice(N / 2)];
    cpu = cpuMs(pid);
    started = Date.now();
    await closeAll(leaving);
    await until(() => staying.every((c) => lastCount(c) === N / 2), STORM_WAIT, `every member left to hear count ${N / 2}`);
    const leaveMs = Date.now() - started;
    const leaveCpu = cpuMs(pid) - cpu;
    const leaveHeard = staying.map((c, i) => summaries(c).length - joinHeard[N / 2 + i]!);

    console.info(
      `join storm of ${N}: ${joinCpu} ms CPU (echo: ${echoJoinCpu} ms) in ${joinMs} ms, at most ${Math.max(...joinHeard)} summaries a member; ` +
        `${N / 2} leaving: ${leaveCpu} ms CPU (echo: ${echoLeaveCpu} ms) in ${leaveMs} ms, at most ${Math.max(...leaveHeard)} summaries a member`,
    );
    // At most one summary per interval while the storm lasted, and far fewer than one per join.
    expect(Math.max(...joinHeard)).toBeLessThanOrEqual(Math.min(N / 10, Math.ceil(joinMs / PRESENCE_MS) + 1));
    expect(Math.max(...leaveHeard)).toBeLessThanOrEqual(Math.min(N / 10, Math.ceil(leaveMs / PRESENCE_MS) + 1));
    // Nothing lost: the first member in heard every join named or counted, and every member left heard every leave.
    const tally = (c: Client, key: "joined" | "left"): number =>
      summaries(c).reduce((n, s) => n + s[key].length + (key === "joined" ? s.moreJoined : s.moreLeft), 0);
    expect(Math.max(...members.map((c) => tally(c, "joined")))).toBe(N);
    expect(staying.map((c) => tally(c, "left"))).toEqual(staying.map(() => N / 2));
    expect(joinCpu - echoJoinCpu).toBeLessThan(N * PRESENCE_CPU_PER_MEMBER_MS);
    expect(leaveCpu - echoLeaveCpu).toBeLessThan(N * PRESENCE_CPU_PER_MEMBER_MS);

    await closeAll(staying);
    expect(errorLines(cli)).toEqual([]);
  }, 4 * STORM_WAIT);
});

describe("POST /broadcast with a hostile body", () => {
  /** Writes raw bytes to the server; resolves with the status line, or "" when abort cuts the connection first. */
  function raw(bytes: string, abort = false): Promise<string> {
    const { port } = new URL(url);
    return within(
      new Promise<string>((resolve) => {
        const socket = netConnect(Number(port), "127.0.0.1", () => {
          socket.write(bytes);
          if (abort) setTimeout(() => socket.destroy(), 50);
        });
        let got = "";
        socket.on("data", (d: Buffer) => {
          got += d.toString("latin1");
          if (got.includes("\r\n")) socket.destroy();
        });
        socket.on("error", () => {});
        socket.on("close", () => resolve(got.split("\r\n")[0]!));
      }),
      WAIT,
      "the raw request to end",
    );
  }

  test("too large is 413, by length or chunked; a body cut off is dropped; nothing logs at error level", async () => {
    const before = (await stats()).processes;
    const big = "a".repeat(5000);
    const declared = await fetch(new URL("/broadcast", url), { method: "POST", body: big });
    expect(declared.status).toBe(413);
    expect(await raw(`POST /broadcast HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n${(5000).toString(16)}\r\n${big}\r\n0\r\n\r\n`)).toBe("HTTP/1.1 413 Payload Too Large");
    expect(await raw("POST /broadcast HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\nhalf a message", true)).toBe("");

    // The cut-off request's process has ended.
    await until(async () => (await stats()).processes === before, WAIT, "the request processes to end");
    const ok = await fetch(new URL("/broadcast", url), { method: "POST", body: "still here" });
    expect(ok.status).toBe(202);
    expect(errorLines(cli)).toEqual([]);
  }, 30_000);
});
