/**
 * A permanent supervisor (startSupervisor's `permanent` option, OTP's permanent application):
 * its end stops the node. Each case runs a real node in its own OS process
 * (test/support/permanent-node.mjs, on the built package) with a listener, a connected `ws`
 * client and the supervisor "app_sup", and watches its exit code, the client's close code and
 * its log lines. The option's checks run here, in the test's process.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { exit, isAlive, isDown, processCount, spawn as spawnProcess, startSupervisor, stopSupervisor, type DownMessage, type Pid, type ReceiveContext } from "../../src/index.js";
import { connectClient, wsUrl, type Client } from "../support/client.js";
import { ensureBuilt, ROOT, until, within } from "../support/dist.js";
import { captureLogs, expectCode } from "../support/helpers.js";

const FIXTURE = fileURLToPath(new URL("../support/permanent-node.mjs", import.meta.url));
/** The longest any single step may take. */
const WAIT = 10_000;

interface NodeOpts {
  readonly permanent?: boolean;
  readonly stopTimeout?: number;
  readonly other?: "clean" | "stuck";
}

interface LogLine {
  readonly level: number;
  readonly time: number;
  readonly msg: string;
  readonly [key: string]: unknown;
}

interface RunningNode {
  readonly child: ChildProcess;
  readonly client: Client;
  readonly exited: Promise<number | string>;
  readonly lines: () => LogLine[];
  readonly output: () => string;
  /** Sends a text frame and resolves with the next text the node answers. */
  readonly ask: (text: string) => Promise<string>;
}

const children = new Set<ChildProcess>();

function lineWith(node: RunningNode, msg: string): LogLine | undefined {
  return node.lines().find((l) => l.msg === msg);
}

/** Starts the fixture, waits for its port and connects a client to /ws. */
async function startNode(opts: NodeOpts): Promise<RunningNode> {
  const child = spawn(process.execPath, [FIXTURE, JSON.stringify(opts)], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (s: string) => (out += s));
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (out += s));
  const exited = new Promise<number | string>((resolve) =>
    child.once("exit", (code, signal) => {
      children.delete(child);
      resolve(code ?? signal ?? "unknown");
    }),
  );
  const lines = (): LogLine[] => out.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as LogLine);
  const listening = await until(() => lines().find((l) => l.msg === "listening"), WAIT, () => `the node to listen:\n${out}`);
  const client = await connectClient(wsUrl(`http://127.0.0.1:${String(listening["port"])}/`, "/ws"), WAIT);
  const ask = async (text: string): Promise<string> => {
    const before = client.texts().length;
    client.ws.send(text);
    await until(() => client.texts().length > before, WAIT, `an answer to ${JSON.stringify(text)}`);
    return client.texts()[before]!;
  };
  return { child, client, exited, lines, output: () => out, ask };
}

/** Crashes the worker, waits for its restart, crashes the new one: past intensity 1. */
async function crashPastIntensity(node: RunningNode): Promise<void> {
  const first = await node.ask("which");
  expect(first).toMatch(/^<.+>$/);
  await node.ask("crash");
  await until(
    async () => {
      const now = await node.ask("which");
      return now !== first && now !== "none";
    },
    WAIT,
    "the worker's restart",
  );
  await node.ask("crash");
}

beforeAll(() => ensureBuilt(), 180_000);

afterAll(() => {
  for (const c of children) c.kill("SIGKILL");
});

describe("a permanent supervisor's end stops the node", () => {
  test("past its restart intensity: error logged, listeners stopped (1001, terminate), other permanent supervisors stopped, exit 1", async () => {
    const node = await startNode({ permanent: true, other: "clean" });
    await crashPastIntensity(node);

    expect(await within(node.exited, WAIT, "the node to exit")).toBe(1);
    expect((await within(node.client.closed, WAIT, "the client's close")).code).toBe(1001);

    const intensity = lineWith(node, "reached max restart intensity");
    expect(intensity, node.output()).toBeDefined();
    const exited = node.lines().filter((l) => l.msg === "permanent supervisor exited; stopping the node");
    // One line: other_sup was stopped on purpose on the way down, which stops nothing more.
    expect(exited).toHaveLength(1);
    expect(exited[0]).toMatchObject({ level: 50, name: "app_sup", reason: "shutdown", exitCode: 1, stopTimeout: 10_000 });
    expect(exited[0]!["supervisor"]).toMatch(/^<.+>$/);

    // Listeners first (the handler's terminate ran), then the other permanent supervisor's children.
    const all = node.lines();
    const at = (msg: string): number => all.findIndex((l) => l.msg === msg);
    expect(lineWith(node, "handler terminated"), node.output()).toMatchObject({ reason: "shutdown" });
    expect(lineWith(node, "other child got EXIT"), node.output()).toMatchObject({ reason: "shutdown" });
    expect(at("permanent supervisor exited; stopping the node")).toBeLessThan(at("handler terminated"));
    expect(at("handler terminated")).toBeLessThan(at("other child got EXIT"));
    expect(lineWith(node, "node stop timed out; exiting now")).toBeUndefined();
  }, 60_000);

  test("killed: the same, with reason killed", async () => {
    const node = await startNode({ permanent: true });
    await node.ask("kill");
    expect(await within(node.exited, WAIT, "the node to exit")).toBe(1);
    expect((await within(node.client.closed, WAIT, "the client's close")).code).toBe(1001);
    expect(lineWith(node, "permanent supervisor exited; stopping the node")).toMatchObject({ name: "app_sup", reason: "killed", exitCode: 1 });
  }, 60_000);

  test("a stop that hangs (a child that ignores its shutdown) is cut at stopTimeout, still exit 1", async () => {
    const node = await startNode({ permanent: true, stopTimeout: 1000, other: "stuck" });
    await crashPastIntensity(node);
    const code = await within(node.exited, WAIT, "the node to exit");
    expect(code).toBe(1);
    expect((await within(node.client.closed, WAIT, "the client's close")).code).toBe(1001);
    const exited = lineWith(node, "permanent supervisor exited; stopping the node");
    const timedOut = lineWith(node, "node stop timed out; exiting now");
    expect(exited, node.output()).toBeDefined();
    expect(timedOut, node.output()).toMatchObject({ level: 50, timeout: 1000 });
    // The stuck child was asked, and the cut came at the timeout, not before.
    expect(lineWith(node, "other child got EXIT")).toMatchObject({ reason: "shutdown" });
    expect(timedOut!.time - exited!.time).toBeGreaterThanOrEqual(950);
    expect(timedOut!.time - exited!.time).toBeLessThan(3000);
  }, 60_000);
});

describe("the node keeps running", () => {
  test("without permanent: the supervisor gives up and the node serves on without it", async () => {
    const node = await startNode({});
    await crashPastIntensity(node);
    await until(() => lineWith(node, "reached max restart intensity"), WAIT, "the supervisor to give up");
    await until(async () => (await node.ask("which")) === "none", WAIT, "the worker to be gone");
    await new Promise((r) => setTimeout(r, 500));
    expect(node.child.exitCode).toBeNull();
    expect(await node.ask("still there?")).toBe("still there?");
    expect(lineWith(node, "permanent supervisor exited; stopping the node")).toBeUndefined();
    node.child.kill("SIGKILL");
    await node.exited;
  }, 60_000);

  test("stopSupervisor on a permanent supervisor stops it on purpose: the node serves on (OTP's application:stop)", async () => {
    const node = await startNode({ permanent: true });
    await node.ask("stop");
    await until(() => lineWith(node, "app_sup stopped"), WAIT, "stopSupervisor to resolve");
    expect(await node.ask("which")).toBe("none");
    await new Promise((r) => setTimeout(r, 500));
    expect(node.child.exitCode).toBeNull();
    expect(await node.ask("still there?")).toBe("still there?");
    expect(lineWith(node, "permanent supervisor exited; stopping the node")).toBeUndefined();
    node.child.kill("SIGKILL");
    await node.exited;
  }, 60_000);
});

describe("the options are checked where they are given", () => {
  const spec = { children: [] };

  test.each([
    ["permanent not a boolean", { permanent: "yes" }],
    ["stopTimeout 0", { permanent: true, stopTimeout: 0 }],
    ["stopTimeout negative", { permanent: true, stopTimeout: -5 }],
    ["stopTimeout Infinity: the stop must be bounded", { permanent: true, stopTimeout: Infinity }],
    ["stopTimeout not a number", { permanent: true, stopTimeout: "10s" }],
    ["stopTimeout without permanent", { stopTimeout: 1000 }],
    ["permanent with link: true", { permanent: true, link: true }],
    ["a misspelt option", { permanant: true }],
    ["options not an object", null],
  ])("%s: ERR_BADARG", (_what, opts) => {
    expectCode(() => startSupervisor(spec, opts as never), "ERR_BADARG");
  });

  test("a permanent supervisor started in a child's start: that start fails with ERR_BADARG", async () => {
    const { records } = captureLogs();
    const down = await within(
      new Promise<DownMessage>((resolve) => {
        spawnProcess(async (ctx: ReceiveContext) => {
          const outer = startSupervisor({ children: [{ id: "nested", type: "supervisor", start: () => startSupervisor(spec, { permanent: true }) }] }, { link: false });
          ctx.monitor(outer);
          resolve((await ctx.receive(isDown)) as DownMessage);
        });
      }),
      WAIT,
      "the outer supervisor's end",
    );
    const reason = down.reason as { shutdown: { failedToStartChild: string; reason: Error & { code?: string } } };
    expect(reason.shutdown.failedToStartChild).toBe("nested");
    expect(reason.shutdown.reason.code).toBe("ERR_BADARG");
    expect(reason.shutdown.reason.message).toMatch(/outside any supervisor/);
    expect(records.find((r) => r.msg === "child failed to start")).toMatchObject({ childId: "nested" });
  });

  test("inside a process a permanent supervisor is not linked to it: the caller's exit leaves it running", async () => {
    let sup: Pid | undefined;
    const caller = spawnProcess(async (ctx: ReceiveContext) => {
      sup = startSupervisor(spec, { permanent: true });
      await ctx.receive();
    });
    await until(() => sup !== undefined, WAIT, "the supervisor to start");
    exit(caller, "kill");
    const watched = await new Promise<boolean>((resolve) => {
      spawnProcess(async (ctx: ReceiveContext) => {
        const ref = ctx.monitor(sup!);
        const down = await ctx.receive((m) => isDown(m) && m.ref === ref, 200);
        resolve(down === undefined);
      });
    });
    expect(watched).toBe(true);
    // Stopped on purpose: the node (this test process) keeps running.
    await stopSupervisor(sup!);
  });

  test("a valid permanent supervisor runs with its watch, and both are gone after stopSupervisor", async () => {
    const before = processCount();
    const sup = startSupervisor(spec, { permanent: true, stopTimeout: 2500, name: "perm_ok" });
    expect(processCount()).toBe(before + 2);
    await stopSupervisor("perm_ok");
    await until(() => processCount() === before, WAIT, "the supervisor and its watch to end");
    expect(isAlive(sup)).toBe(false);
  });
});
