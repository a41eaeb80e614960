/**
 * The CLI starts the demo's supervision tree permanent (app/demo/supervisor.ts): when that tree
 * gives up, the built CLI (dist/app/cli.js) stops gracefully and exits 1 instead of serving on
 * without it. The CLI runs as a node of a cluster meeting in a redis-server this file starts, so
 * this test process, another node, can kill the tree's child by its pid (read from the CLI's
 * debug log), as an operator would from a remote shell.
 */
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { exit, nodes, Pid, startCluster, stopCluster } from "../../src/index.js";
import { cliChildren, listening, runCli, type Cli } from "../support/cli.js";
import { connectClient, wsUrl } from "../support/client.js";
import { ensureBuilt, until, within } from "../support/dist.js";
import { haveRedis, startRedis, stopAllRedis, type RedisServer } from "../support/redis.js";

/** The longest any single step may take. */
const WAIT = 10_000;
const CLI_NODE = "permanent-cli@localhost";

interface LogLine {
  readonly msg: string;
  readonly [key: string]: unknown;
}

function logLines(cli: Cli): LogLine[] {
  return cli.stdout().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as LogLine);
}

/** The pids the demo's supervisor started its children as, in order. */
function demoChildren(cli: Cli): string[] {
  return logLines(cli).filter((l) => l.msg === "child started" && l["name"] === "demo_sup").map((l) => String(l["childPid"]));
}

describe.skipIf(!haveRedis())("the CLI's supervision tree is permanent", () => {
  let redis: RedisServer;

  beforeAll(async () => {
    await ensureBuilt();
    redis = await startRedis();
    await startCluster({ redis: redis.url, node: "permanent-test@localhost", logger: pino({ level: "silent" }) });
  }, 180_000);

  afterAll(async () => {
    for (const c of cliChildren) c.kill("SIGKILL");
    await stopCluster();
    await stopAllRedis();
  });

  test("the demo's supervisor gives up: the client gets 1001, the error is logged, the node leaves the cluster, exit 1", async () => {
    const cli = runCli(["--port", "0", "--redis", redis.url, "--node", CLI_NODE, "--log-level", "debug"]);
    const url = await listening(cli, WAIT);
    const client = await connectClient(wsUrl(url, "/websocket"), WAIT);
    await until(() => nodes().includes(CLI_NODE), WAIT, "the CLI's node to be up here");

    // Intensity 1 (the default): the first kill is restarted, the second one is one too many.
    const [first] = await until(() => (demoChildren(cli).length >= 1 ? demoChildren(cli) : undefined), WAIT, "the demo's child to start");
    exit(Pid.parse(first!), "kill");
    const [, second] = await until(() => (demoChildren(cli).length >= 2 ? demoChildren(cli) : undefined), WAIT, () => `the child's restart:\n${cli.stdout()}`);
    expect(second).not.toBe(first);
    exit(Pid.parse(second!), "kill");

    expect(await within(cli.exited, WAIT, "the CLI to exit")).toBe(1);
    expect((await within(client.closed, WAIT, "the client's close")).code).toBe(1001);
    const lines = logLines(cli);
    expect(lines.find((l) => l.msg === "reached max restart intensity")).toMatchObject({ name: "demo_sup" });
    expect(lines.find((l) => l.msg === "permanent supervisor exited; stopping the node")).toMatchObject({ level: 50, name: "demo_sup", reason: "shutdown", exitCode: 1 });
    // It said goodbye: gone here at once, not after the 5 s this node waits for a silent one.
    await until(() => !nodes().includes(CLI_NODE), 1500, "the CLI's node to leave the cluster");
  }, 60_000);
});
