/**
 * The cluster tests' harness: builds dist/ when src/ is newer, forks corral nodes
 * (test/cluster/node.mjs, driven over IPC) and gives the test process its own recording
 * processes. Every wait is bounded and names what it waited for.
 */
import { fork, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, rmdirSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Pid, send, spawn, type DownMessage, type ExitMessage, type ReceiveContext } from "../../src/index.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const NODE_SCRIPT = fileURLToPath(new URL("./node.mjs", import.meta.url));
const DIST_INDEX = path.join(ROOT, "dist/index.js");

// ---------------------------------------------------------------------------------------
// dist/

function newest(dir: string): number {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    latest = Math.max(latest, statSync(path.join(entry.parentPath, entry.name)).mtimeMs);
  }
  return latest;
}

function mtime(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

let builtOnce: Promise<void> | undefined;

/**
 * Rebuilds dist/ (tsc -p tsconfig.build.json) when anything under src/ or the tsconfigs is
 * newer than dist/index.js. Test files run in parallel: a lock directory keeps it to one build.
 * Once per test file: the test process runs src/ and the forked nodes dist/, so both stay the
 * same code for the whole file.
 */
export function ensureBuilt(): Promise<void> {
  builtOnce ??= build();
  return builtOnce;
}

async function build(): Promise<void> {
  // outside the checkout: one lock per checkout path
  const lock = path.join(tmpdir(), `corral-cluster-build-${createHash("sha1").update(ROOT).digest("hex").slice(0, 12)}.lock`);
  const deadline = Date.now() + 150_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // Another file is building; a lock older than the deadline is stale.
      if (Date.now() - mtime(lock) > 150_000) rmdirSync(lock);
      if (Date.now() > deadline) throw new Error("timed out waiting for another test file to build dist/");
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  try {
    const sources = Math.max(newest(path.join(ROOT, "src")), mtime(path.join(ROOT, "tsconfig.build.json")), mtime(path.join(ROOT, "tsconfig.json")));
    if (mtime(DIST_INDEX) >= sources) return;
    const tsc = path.join(ROOT, "node_modules/typescript/bin/tsc");
    const result = spawnSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], { cwd: ROOT, encoding: "utf8", timeout: 120_000 });
    if (result.status !== 0) throw new Error(`building dist/ failed (exit ${result.status ?? result.signal}):\n${result.stdout}${result.stderr}`);
  } finally {
    rmdirSync(lock);
  }
}

// ---------------------------------------------------------------------------------------
// waiting

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Rejects after ms with a message naming what was awaited. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls (async) pred until it returns a value other than undefined/false; bounded. */
export async function until<T>(pred: () => T | false | undefined | Promise<T | false | undefined>, ms: number, what: string | (() => string), every = 10): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    const v = await pred();
    if (v !== false && v !== undefined) return v;
    last = v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${typeof what === "function" ? what() : what} (last: ${String(last)})`);
    await sleep(every);
  }
}

// ---------------------------------------------------------------------------------------
// child nodes

export interface ClusterOpts {
  redis: string;
  node?: string;
  heartbeatMs?: number;
  nodeTimeoutMs?: number;
  maxBuffered?: number;
  prefix?: string;
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

/** Forks a node; options go to startCluster. */
export function launchNode(cluster: ClusterOpts, extra: { disconnectOnError?: boolean; spawnFirst?: boolean } = {}): ChildNode {
  const child = fork(NODE_SCRIPT, [JSON.stringify({ cluster, ...extra })], {
    cwd: ROOT,
    serialization: "advanced",
    stdio: ["ignore", "pipe", "pipe", "ipc"],
    env: { ...process.env, LOG_LEVEL: process.env["LOG_LEVEL"] ?? "warn" },
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
