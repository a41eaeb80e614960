/**
 * The cluster tests' harness: builds dist/ when src/ is newer, forks corral nodes
 * (test/support/cluster-node.mjs, driven over IPC) and gives the test process its own recording
 * processes. Every wait is bounded and names what it waited for.
 *
 * Two transports, so each cluster test file runs on both: "redis" (a redis-server of the
 * file's own; child nodes are forked with child_process) and "ipc" (the test process is the
 * node:cluster primary, which introduces the nodes, and a node itself; child nodes are its cluster workers,
 * talked to over the same IPC channel the cluster uses).
 */
import { fork, type ChildProcess } from "node:child_process";
import nodeCluster from "node:cluster";
import { fileURLToPath } from "node:url";
import {
  exit,
  nodes,
  Pid,
  send,
  spawn,
  startCluster,
  startClusterPrimary,
  stopCluster,
  type ClusterInfo,
  type ClusterOptions,
  type DownMessage,
  type ExitMessage,
  type ReceiveContext,
} from "../../src/index.js";
import { ensureBuilt, until, within } from "./dist.js";
import { haveRedis, startRedis, stopAllRedis, type RedisServer } from "./redis.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const NODE_SCRIPT = fileURLToPath(new URL("./cluster-node.mjs", import.meta.url));

export { ensureBuilt, sleep, until, within } from "./dist.js";

// ---------------------------------------------------------------------------------------
// child nodes

/** The Redis transport's own options (IPC has no heartbeat, no buffer, no prefix). */
export interface RedisTiming {
  heartbeatMs?: number;
  nodeTimeoutMs?: number;
  maxBuffered?: number;
  prefix?: string;
}

/** startCluster's options for a child node: through Redis, or over IPC as a worker of this process. */
export type ClusterOpts = ({ redis: string } & RedisTiming & { node?: string }) | { ipc: true; node?: string };

export type TransportKind = "redis" | "ipc";

/**
 * The transports the cluster tests run on: both, or IPC alone on a machine without
 * redis-server (haveRedis says why, and fails under CI, where Redis must be there).
 */
export function transports(): TransportKind[] {
  return haveRedis() ? ["redis", "ipc"] : ["ipc"];
}

/** A transport ready for nodes: for Redis, a redis-server of this file's own. */
export interface Transport {
  readonly kind: TransportKind;
  /** The Redis transport's server; undefined over IPC. */
  readonly redis: RedisServer | undefined;
  /** startCluster's options for a node (a generated name without one); the Redis timing is left out over IPC. */
  options(node?: string, timing?: RedisTiming): ClusterOpts;
}

/** Starts what the transport needs: a redis-server, or nothing (this process is the primary once a node joins). */
export async function startTransport(kind: TransportKind): Promise<Transport> {
  await ensureBuilt();
  const redis = kind === "redis" ? await startRedis() : undefined;
  return {
    kind,
    redis,
    options: (node, timing = {}) => {
      const named = node === undefined ? {} : { node };
      return redis === undefined ? { ipc: true, ...named } : { redis: redis.url, ...named, ...timing };
    },
  };
}

/** startCluster in the test process, bounded. */
export function joinHere(t: Transport, node: string, timing: RedisTiming = {}): Promise<ClusterInfo> {
  return within(startCluster(t.options(node, timing) as ClusterOptions), 10_000, `startCluster (${t.kind}) in the test process`);
}

export interface RemoteError {
  name?: string;
  code?: string;
  message: string;
}

export interface EncodedPid {
  $pid: string;
  local: boolean;
  same: boolean;
}

export interface ChildNode {
  readonly child: ChildProcess;
  /** Resolves with the ClusterInfo once startCluster resolved, or the error it rejected with. */
  readonly started: Promise<{ ok: true; info: Record<string, unknown> } | { ok: false; error: RemoteError }>;
  /** The node's name (once started). */
  name: string;
  readonly output: () => string;
  /** Resolves with the exit code or signal once the process has ended. */
  readonly exited: Promise<number | string>;
  call<T = unknown>(cmd: string, args?: Record<string, unknown>, ms?: number): Promise<T>;
  /** Like call, but resolves with { ok, value | error } instead of rejecting on a command error. */
  attempt<T = unknown>(cmd: string, args?: Record<string, unknown>, ms?: number): Promise<{ ok: true; value: T } | { ok: false; error: RemoteError }>;
  /** Spawns a recording process there; returns its pid string. */
  spawn(opts?: { trap?: boolean; name?: string }): Promise<string>;
  received(pid: string): Promise<unknown[]>;
  /** Polls the process's record until pred holds on it. */
  waitReceived(pid: string, pred: (msgs: unknown[]) => boolean, ms: number, what: string): Promise<unknown[]>;
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** stopCluster (bounded), then exit. */
  quit(): Promise<void>;
}

const children = new Set<ChildProcess>();

/**
 * How an IPC node's primary (this process) forks it: "started" as it should (startClusterPrimary
 * first), "none" without it, "json" with node:cluster's default serialization.
 */
export type PrimaryMode = "started" | "none" | "json";

/**
 * An IPC node: a node:cluster worker of this process, which is its primary (and is
 * a node itself once the test joins it). Its stdout and stderr are piped as a forked node's.
 */
function forkWorker(argv: string, env: NodeJS.ProcessEnv, primary: PrimaryMode): ChildProcess {
  if (primary !== "none") startClusterPrimary();
  nodeCluster.setupPrimary({ exec: NODE_SCRIPT, args: [argv], cwd: ROOT, silent: true, serialization: primary === "json" ? "json" : "advanced" });
  return nodeCluster.fork(env).process;
}

/** Forks a node; options go to startCluster. Through Redis a child process, over IPC a cluster worker of this process. */
export function launchNode(cluster: ClusterOpts, extra: { disconnectOnError?: boolean; spawnFirst?: boolean; primary?: PrimaryMode } = {}): ChildNode {
  const argv = JSON.stringify({ cluster, ...extra });
  const env = { ...process.env, LOG_LEVEL: process.env["LOG_LEVEL"] ?? "warn" };
  const child =
    "ipc" in cluster
      ? forkWorker(argv, env, extra.primary ?? "started")
      : fork(NODE_SCRIPT, [argv], {
          cwd: ROOT,
          serialization: "advanced",
          stdio: ["ignore", "pipe", "pipe", "ipc"],
          env,
        });
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
  let nextId = 1;
  const pending = new Map<number, (m: { ok: boolean; value?: unknown; error?: RemoteError }) => void>();
  let onStart: ((r: { ok: true; info: Record<string, unknown> } | { ok: false; error: RemoteError }) => void) | undefined;
  const started = new Promise<{ ok: true; info: Record<string, unknown> } | { ok: false; error: RemoteError }>((resolve, reject) => {
    onStart = resolve;
    void exited.then((code) => reject(new Error(`node process exited (${code}) before startCluster settled:\n${out}`)));
  });
  started.catch(() => {});
  child.on("message", (m: { type?: string; id?: number; ok?: boolean; value?: unknown; error?: RemoteError; info?: Record<string, unknown> }) => {
    if (m.type === "ready") onStart?.({ ok: true, info: m.info! });
    else if (m.type === "startError") onStart?.({ ok: false, error: m.error! });
    else if (typeof m.id === "number") {
      const p = pending.get(m.id);
      pending.delete(m.id);
      p?.(m as { ok: boolean });
    }
  });
  void exited.then((code) => {
    for (const [id, p] of pending) {
      pending.delete(id);
      p({ ok: false, error: { message: `node process exited (${code})` } });
    }
  });

  const attempt = <T>(cmd: string, args: Record<string, unknown> = {}, ms = 5_000) => {
    const id = nextId++;
    const reply = new Promise<{ ok: true; value: T } | { ok: false; error: RemoteError }>((resolve) => {
      pending.set(id, resolve as (m: unknown) => void);
      if (!child.connected) {
        pending.delete(id);
        resolve({ ok: false, error: { message: "the node's IPC channel is closed" } });
        return;
      }
      child.send({ id, cmd, ...args });
    });
    return within(reply, ms, `node ${node.name}: ${cmd} ${JSON.stringify(args).slice(0, 200)}`);
  };
  const call = async <T>(cmd: string, args: Record<string, unknown> = {}, ms = 5_000): Promise<T> => {
    const r = await attempt<T>(cmd, args, ms);
    if (!r.ok) throw Object.assign(new Error(`node ${node.name}: ${cmd} failed: ${r.error.code ?? ""} ${r.error.message}`), { remote: r.error });
    return r.value;
  };
  const node: ChildNode = {
    child,
    started,
    name: cluster.node ?? "(generated)",
    output: () => out,
    exited,
    call,
    attempt,
    spawn: (opts = {}) => call<string>("spawn", opts),
    received: (pid) => call<unknown[]>("received", { pid }),
    waitReceived: (pid, pred, ms, what) =>
      until(
        async () => {
          const msgs = await call<unknown[]>("received", { pid });
          return pred(msgs) ? msgs : undefined;
        },
        ms,
        `${what} (at ${pid})`,
        20,
      ),
    async kill(signal = "SIGKILL") {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      await within(exited, 5_000, `node ${node.name} to die of ${signal}`);
    },
    async quit() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      await attempt("stopCluster", {}, 3_000).catch(() => undefined);
      await attempt("quit", {}, 1_000).catch(() => undefined);
      await within(exited, 3_000, `node ${node.name} to exit`).catch(() => node.kill("SIGKILL"));
    },
  };
  return node;
}

/** Forks a node and waits (bounded) until startCluster resolved there; rejects if it failed. */
export async function startNode(cluster: ClusterOpts, ms = 15_000): Promise<ChildNode> {
  const node = launchNode(cluster);
  const r = await within(node.started, ms, `node ${cluster.node ?? "(generated)"} to start`);
  if (!r.ok) throw new Error(`node ${cluster.node}: startCluster failed: ${r.error.code} ${r.error.message}\n${node.output()}`);
  node.name = String(r.info["node"]);
  return node;
}

/** SIGKILLs every node still running (afterAll, also after a failure). */
export async function killAllNodes(): Promise<void> {
  const left = [...children];
  for (const c of left) c.kill("SIGKILL");
  await Promise.all(left.map((c) => (c.exitCode !== null || c.signalCode !== null ? undefined : within(new Promise<void>((r) => c.once("exit", () => r())), 5_000, "a node to die"))));
}

// ---------------------------------------------------------------------------------------
// recording processes in the test's own node

const CTL = Symbol("ctl");

export interface Collector {
  readonly pid: Pid;
  readonly msgs: unknown[];
  /** Resolves with the first recorded message matching pred (bounded). */
  waitFor<T = unknown>(pred: (m: unknown) => boolean, ms: number, what: string): Promise<T>;
  /** Runs fn inside the process (as itself) and resolves with its result. */
  run<T>(fn: (ctx: ReceiveContext) => T): Promise<T>;
  /** The process returns (reason "normal"). */
  stop(): Promise<void>;
  /** The process throws Error(message) (reason { crash: Error }). */
  crash(message: string): void;
}

/** The collectors still running: stopNodes ends them, so a file's next transport starts with no member or name of the last. */
const collectors = new Set<Pid>();

/** A process here that records every message; one with a replyTo pid is echoed back as { echo: msg, by }. */
export function collector(opts: { trap?: boolean } = {}): Collector {
  const msgs: unknown[] = [];
  const pid = spawn(async (ctx: ReceiveContext) => {
    if (opts.trap) ctx.trapExit(true);
    for (;;) {
      const msg = (await ctx.receive()) as Record<PropertyKey, unknown> | null;
      if (msg !== null && typeof msg === "object" && typeof msg[CTL] === "function") {
        if ((msg[CTL] as (c: ReceiveContext) => unknown)(ctx) === "stop") return;
        continue;
      }
      msgs.push(msg);
      if (msg !== null && typeof msg === "object" && msg["replyTo"] instanceof Pid) send(msg["replyTo"], { echo: msg, by: ctx.self });
    }
  });
  collectors.add(pid);
  const run = <T>(fn: (ctx: ReceiveContext) => T): Promise<T> =>
    within(
      new Promise<T>((resolve, reject) => {
        send(pid, {
          [CTL]: (ctx: ReceiveContext) => {
            try {
              const out = fn(ctx);
              resolve(out);
              return out;
            } catch (err) {
              reject(err as Error);
              return undefined;
            }
          },
        });
      }),
      2_000,
      `${String(pid)} to run a command`,
    );
  return {
    pid,
    msgs,
    waitFor: <T>(pred: (m: unknown) => boolean, ms: number, what: string) => until(() => msgs.find(pred) as T | undefined, ms, `${what} (at ${String(pid)})`, 2),
    run,
    stop: async () => {
      await run(() => "stop");
    },
    crash(message: string) {
      send(pid, {
        [CTL]: () => {
          throw new Error(message);
        },
      });
    },
  };
}

export const isDownMsg = (m: unknown): m is DownMessage => typeof m === "object" && m !== null && (m as { type?: unknown }).type === "DOWN";
export const isExitMsg = (m: unknown): m is ExitMessage => typeof m === "object" && m !== null && (m as { type?: unknown }).type === "EXIT";

/** A unique-enough node name suffix for this test file's run. */
export const RUN = `${process.pid}-${Math.floor(Math.random() * 0xffff).toString(16)}`;

// ---------------------------------------------------------------------------------------
// three nodes

export interface Trio {
  readonly transport: Transport;
  /** The Redis transport's server; undefined over IPC. */
  readonly redis: RedisServer | undefined;
  /** What startCluster returned in the test process. */
  readonly info: ClusterInfo;
  readonly me: string;
  readonly b: ChildNode;
  readonly c: ChildNode;
}

/**
 * The test process as node `<tag>-RUN` and two child nodes (`<tag>b-…`, `<tag>c-…`), once
 * every node sees the other two: through a fresh redis-server, or over IPC with the test
 * process as the primary.
 */
export async function startTrio(tag: string, timing: RedisTiming = {}, kind: TransportKind = "redis"): Promise<Trio> {
  const transport = await startTransport(kind);
  const me = `${tag}-${RUN}@127.0.0.1`;
  const info = await joinHere(transport, me, timing);
  const [b, c] = await Promise.all([startNode(transport.options(`${tag}b-${RUN}@127.0.0.1`, timing)), startNode(transport.options(`${tag}c-${RUN}@127.0.0.1`, timing))]);
  await until(() => nodes().length === 2 || undefined, 5_000, "the test node to see both others");
  return { transport, redis: transport.redis, info, me, b, c };
}

/** Stops what startTrio started (and any node or redis-server left), bounded. */
export async function stopTrio(trio: Trio | undefined): Promise<void> {
  await stopNodes([trio?.b, trio?.c]);
}

/** Lets the given child nodes quit, leaves the cluster here, then kills any node left and stops every Redis. */
export async function stopNodes(children: readonly (ChildNode | undefined)[]): Promise<void> {
  await Promise.allSettled(children.map((n) => n?.quit()));
  for (const pid of collectors) exit(pid, "kill");
  collectors.clear();
  await within(stopCluster(), 5_000, "stopCluster").catch(() => undefined);
  await killAllNodes();
  await stopAllRedis();
}
