#!/usr/bin/env node
// The demo's start script, as an OTP release's bin/: one node, or a primary that supervises worker nodes.
import cluster, { type Worker } from "node:cluster";
import { randomBytes } from "node:crypto";
import { availableParallelism, hostname } from "node:os";
import { parseArgs } from "node:util";
import { setLogger, setNodeName, startClear, startCluster, startClusterPrimary, stopCluster, stopListener, stopSupervisor, type Logger, type Pid } from "corral";
import { pino } from "pino";
import { demoDispatch } from "./demo/routes.js";
import { startDemoSupervisor } from "./demo/supervisor.js";

const USAGE = `usage: corral [--port N] [--host ADDR] [--log-level LEVEL] [--workers N] [--redis URL] [--node NAME]

Serves the corral demo: the page at /, the guide's handler at /websocket,
an echo at /echo, a chat at /chat, a game at /game, the same three as sessions
(WebSocket, EventSource or long-polling) at /live/guide, /live/chat and
/live/game, POST /broadcast, /api/stats, /static/.

  --port N           port to listen on (default: $PORT or 8080)
  --host ADDR        address to listen on (default: 127.0.0.1)
  --log-level LEVEL  fatal, error, warn, info, debug, trace or silent (default: $LOG_LEVEL or info)
  --workers N        N worker processes sharing the port, each a cluster node; they meet
                     through this process (nothing else to run), or through Redis with
                     --redis; N or auto (one per core); default: one process
  --redis URL        the Redis the nodes meet through, for a cluster across machines; without
                     --workers: run as one node of that cluster
  --node NAME        this node's name (with --workers: the workers' base name, <NAME>-w1, ...)
  -h, --help         this text
`;

const MAX_WORKERS = 1024;
/** Crashed workers restarted within RESTART_PERIOD_MS before the primary gives up, as a supervisor's intensity. */
const MAX_RESTARTS = 5;
const RESTART_PERIOD_MS = 30_000;
const MAX_BACKOFF_MS = 2_000;

interface Options {
  readonly port: number;
  readonly host: string;
  readonly level: string;
  /** Worker processes to start; undefined: this process serves. */
  readonly workers: number | undefined;
  /** Redis URL when the nodes meet through Redis; undefined: workers meet over IPC, a single process is alone. */
  readonly redis: string | undefined;
  readonly node: string | undefined;
}

function usage(problem: string): never {
  process.stderr.write(`corral: ${problem}\n\n${USAGE}`);
  process.exit(2);
}

function parse(): Options {
  let values: { port?: string; host?: string; "log-level"?: string; workers?: string; redis?: string; node?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        port: { type: "string" },
        host: { type: "string" },
        "log-level": { type: "string" },
        workers: { type: "string" },
        redis: { type: "string" },
        node: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    usage((err as Error).message);
  }
  if (values.help === true) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const portText = values.port ?? process.env["PORT"] ?? "8080";
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) usage(`invalid port ${JSON.stringify(portText)}`);
  const level = values["log-level"] ?? process.env["LOG_LEVEL"] ?? "info";
  if (!isLevel(level)) usage(`invalid log level ${JSON.stringify(level)}`);
  let workers: number | undefined;
  if (values.workers !== undefined) {
    workers = values.workers === "auto" ? availableParallelism() : Number(values.workers);
    if (!/^(\d+|auto)$/.test(values.workers) || workers < 1 || workers > MAX_WORKERS) usage(`invalid worker count ${JSON.stringify(values.workers)} (1 to ${MAX_WORKERS}, or auto)`);
  }
  const redis = values.redis;
  if (redis !== undefined && !isRedisUrl(redis)) usage(`invalid Redis URL ${JSON.stringify(redis)} (redis://host:port or rediss://host:port)`);
  const node = values.node;
  if (node !== undefined) {
    // The library's check: no pid exists yet, and serving names this node again (a worker: its own name).
    try {
      setNodeName(node);
    } catch {
      usage(`invalid node name ${JSON.stringify(node)} (letters, digits, _ @ - .)`);
    }
  }
  if (node !== undefined && redis === undefined && workers === undefined) usage("--node needs --redis or --workers");
  return { port, host: values.host ?? "127.0.0.1", level, workers, redis, node };
}

/** pino's levels (corral's Logger is pino's), and "silent", which turns logging off. */
function isLevel(level: string): boolean {
  return level === "silent" || Object.hasOwn(pino.levels.values, level);
}

function isRedisUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return (url.protocol === "redis:" || url.protocol === "rediss:") && url.hostname !== "";
  } catch {
    return false;
  }
}

/** The one line a failed start prints: why the listener or the cluster could not start. */
function startFailure(err: unknown, port: number, host: string): string {
  const e = err as Error & { code?: string };
  return e.code === "EADDRINUSE" ? `corral: port ${port} on ${host} is already in use`
    : e.code === "EADDRNOTAVAIL" ? `corral: cannot listen on ${host}: no such address here`
    : e.code === "ERR_CLUSTER_CONNECT" || e.code === "ERR_NODE_NAME_TAKEN" ? `corral: ${e.message.replace(/^startCluster: /, "")}`
    : `corral: cannot start: ${e.message}`;
}

const listeningLine = (host: string, port: number): string => `corral demo listening on http://${host.includes(":") ? `[${host}]` : host}:${port}/\n`;

/* ---------------------------------------------------------------- primary <-> workers */

/** What a worker tells the primary. */
type WorkerReport = { readonly corral: "ready"; readonly port: number } | { readonly corral: "failed"; readonly line: string };
/** What the primary tells a worker: a signal forwarded over IPC, so a worker that got it from the terminal too sees one, not two. */
type WorkerCommand = { readonly corral: "stop"; readonly signal: string };
/** A worker's node name and port, in its environment. */
const WORKER_ENV = "CORRAL_WORKER";

interface WorkerSetup {
  readonly node: string;
  readonly port: number;
}

function isReport(msg: unknown): msg is WorkerReport {
  if (typeof msg !== "object" || msg === null) return false;
  const m = msg as Record<string, unknown>;
  return (m["corral"] === "ready" && typeof m["port"] === "number") || (m["corral"] === "failed" && typeof m["line"] === "string");
}

function isCommand(msg: unknown): msg is WorkerCommand {
  return typeof msg === "object" && msg !== null && (msg as Record<string, unknown>)["corral"] === "stop" && typeof (msg as Record<string, unknown>)["signal"] === "string";
}

function defaultBaseName(): string {
  const host = hostname().replace(/[^A-Za-z0-9_\-.]/g, "-") || "localhost";
  return `corral-${process.pid}-${randomBytes(3).toString("hex")}@${host}`;
}

/**
 * Worker i's node name: "-w<i>" after the base's local part. Over Redis a restarted worker's
 * name adds its incarnation, since the dead one's name stays claimed until its key expires;
 * over IPC the name is free as soon as this process sees the exit, and the new run keeps it.
 */
function workerNode(base: string, index: number, incarnation: number): string {
  const at = base.indexOf("@");
  const local = at < 0 ? base : base.slice(0, at);
  const host = at < 0 ? "" : base.slice(at);
  return `${local}-w${index}${incarnation > 1 ? `-${incarnation}` : ""}${host}`;
}

interface Slot {
  readonly index: number;
  incarnation: number;
  node: string;
  worker: Worker | undefined;
  /** A restart waiting out its backoff. */
  timer: NodeJS.Timeout | undefined;
}

/** The primary: starts the workers, restarts crashed ones as a supervisor would, forwards signals, introduces the workers' nodes to each other unless they meet in Redis, serves nothing itself. */
function supervise(opts: Options & { workers: number }): void {
  const logger = pino({ name: "corral", base: null, level: opts.level });
  // Workers accept on the shared socket themselves: the default round-robin has this process accept every connection and pass its handle over IPC (about twice a handshake's CPU).
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  // Before the first fork: the workers' channels then carry v8-serialized data.
  if (opts.redis === undefined) startClusterPrimary({ logger });
  const base = opts.node ?? defaultBaseName();
  const slots: Slot[] = Array.from({ length: opts.workers }, (_, i) => ({ index: i + 1, incarnation: 0, node: "", worker: undefined, timer: undefined }));
  const ready = new Set<Slot>();
  const restarts: number[] = [];
  let port = opts.port;
  let announced = false;
  let stopping = false;
  let exitCode = 0;

  const live = (): Worker[] => slots.flatMap((s) => (s.worker === undefined ? [] : [s.worker]));

  const exitWhenDone = (): void => {
    if (live().length === 0 && slots.every((s) => s.timer === undefined)) process.exit(exitCode);
  };

  /** Stops every worker gracefully and exits with code once they are gone. */
  const stopAll = (code: number, signal: NodeJS.Signals): void => {
    stopping = true;
    exitCode = Math.max(exitCode, code);
    for (const slot of slots) {
      clearTimeout(slot.timer);
      slot.timer = undefined;
    }
    for (const worker of live()) {
      // A worker exiting right now closes its channel under the send: the callback takes the EPIPE, and the signal finishes the job.
      if (worker.isConnected()) worker.send({ corral: "stop", signal } satisfies WorkerCommand, (err) => err && worker.process.kill(signal));
      else worker.process.kill(signal);
    }
    exitWhenDone();
  };

  /** A start that cannot succeed (Redis away, port taken): one line, no restarts, exit 1. */
  const fail = (line: string): void => {
    if (stopping) return;
    process.stderr.write(`${line}\n`);
    stopAll(1, "SIGTERM");
  };

  const fork = (slot: Slot): void => {
    slot.timer = undefined;
    slot.incarnation++;
    slot.node = workerNode(base, slot.index, opts.redis === undefined ? 1 : slot.incarnation);
    const worker = cluster.fork({ [WORKER_ENV]: JSON.stringify({ node: slot.node, port } satisfies WorkerSetup) });
    slot.worker = worker;
    worker.on("message", (msg: unknown) => {
      if (!isReport(msg) || slot.worker !== worker) return;
      if (msg.corral === "failed") {
        if (!announced) fail(msg.line);
        else logger.error({ worker: slot.index, node: slot.node }, msg.line);
        return;
      }
      ready.add(slot);
      if (announced) {
        logger.info({ worker: slot.index, node: slot.node }, "worker restarted");
        return;
      }
      // Restarted workers ask for the port the first ones got, so --port 0 stays one port.
      port = msg.port;
      if (ready.size === slots.length && !stopping) {
        announced = true;
        process.stdout.write(listeningLine(opts.host, port));
      }
    });
    worker.on("exit", (code: number | null, signal: string | null) => {
      if (slot.worker !== worker) return;
      slot.worker = undefined;
      ready.delete(slot);
      const how = signal ?? `code ${code}`;
      if (stopping) {
        if (code !== 0) exitCode = 1;
        exitWhenDone();
        return;
      }
      if (code === 0) {
        // A worker stopped on its own signal is done, as a transient child.
        logger.info({ worker: slot.index, node: slot.node }, "worker stopped");
        exitWhenDone();
        return;
      }
      if (!announced) {
        fail(`corral: worker ${slot.index} exited (${how}) before listening`);
        return;
      }
      const now = performance.now();
      restarts.push(now);
      while (restarts.length > 0 && now - restarts[0]! > RESTART_PERIOD_MS) restarts.shift();
      if (restarts.length > MAX_RESTARTS) {
        logger.error({ worker: slot.index, node: slot.node, exit: how }, "worker died");
        fail(`corral: workers crashed ${restarts.length} times in ${RESTART_PERIOD_MS / 1000} s; giving up`);
        return;
      }
      const delay = Math.min(100 * 2 ** (restarts.length - 1), MAX_BACKOFF_MS);
      logger.warn({ worker: slot.index, node: slot.node, exit: how, restartIn: delay }, "worker died; restarting it");
      slot.timer = setTimeout(() => fork(slot), delay);
    });
  };

  /** First signal: each worker shuts down gracefully; a second one: each is signalled for real, which exits it at once. */
  const shutdown = (signal: NodeJS.Signals): void => {
    if (stopping) {
      for (const worker of live()) worker.process.kill(signal);
      process.exit(1);
    }
    logger.info({ signal }, "shutting down");
    stopAll(0, signal);
  };
  process.on("SIGINT", () => shutdown("SIGINT"));
  process.on("SIGTERM", () => shutdown("SIGTERM"));

  for (const slot of slots) fork(slot);
}

/* ---------------------------------------------------------------- serving */

const NAME = "demo";

/** One serving process: the whole CLI without --workers, or one worker. Joins the cluster first when there is one. */
async function serve(opts: Options, worker: WorkerSetup | undefined): Promise<void> {
  const clustered = opts.redis !== undefined || worker !== undefined;
  // The node's name is on every line when clustered: startCluster picks one when none is given.
  let node = worker?.node ?? opts.node;
  const logger: Logger = pino({ name: "corral", base: null, level: opts.level, ...(clustered ? { mixin: () => (node === undefined ? {} : { node }) } : {}) });
  setLogger(logger);

  /**
   * SIGINT/SIGTERM: close WebSockets with 1001, let requests finish, stop the supervision tree,
   * leave the cluster, then exit; a second signal exits at once. (Should the tree give up on
   * its own, it is permanent: the library stops the node the same way and exits 1.)
   */
  let started = false;
  let stopping = false;
  let joined: Promise<unknown> = Promise.resolve();
  let sup: Pid | undefined;
  const shutdown = (signal: string, forwarded: boolean): void => {
    if (stopping) {
      if (!forwarded) process.exit(1);
      return;
    }
    stopping = true;
    logger.info({ signal }, "shutting down");
    if (!started && !clustered) process.exit(0);
    (started ? stopListener(NAME) : joined.catch(() => undefined))
      .then(() => (sup === undefined ? undefined : stopSupervisor(sup)))
      .then(stopCluster)
      .then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err }, "shutdown failed");
          process.exit(1);
        },
      );
  };
  // Installed before listening: a signal right after the URL is printed must shut down, not kill.
  process.on("SIGINT", () => shutdown("SIGINT", false));
  process.on("SIGTERM", () => shutdown("SIGTERM", false));
  if (worker !== undefined) process.on("message", (msg: unknown) => isCommand(msg) && shutdown(msg.signal, true));

  const port = worker?.port ?? opts.port;
  try {
    if (clustered) {
      const joining = startCluster(opts.redis === undefined ? { ipc: true, node, logger } : { redis: opts.redis, node, logger });
      joined = joining;
      node = (await joining).node;
      if (stopping) return;
    }
    // After the cluster named this node (a pid freezes the name), before the first connection needs it.
    sup = startDemoSupervisor();
    const listener = await startClear(NAME, { port, host: opts.host }, { dispatch: demoDispatch(NAME), logger });
    started = true;
    if (worker !== undefined) process.send!({ corral: "ready", port: listener.port } satisfies WorkerReport);
    else process.stdout.write(listeningLine(opts.host, listener.port));
  } catch (err) {
    const line = startFailure(err, port, opts.host);
    if (worker === undefined) {
      process.stderr.write(`${line}\n`);
      process.exit(1);
    }
    // The primary prints it once for all workers and exits 1: a start that failed is not restarted.
    process.send!({ corral: "failed", line } satisfies WorkerReport, undefined, undefined, () => process.exit(1));
  }
}

const opts = parse();
const setup = process.env[WORKER_ENV];
if (opts.workers !== undefined && cluster.isPrimary) supervise({ ...opts, workers: opts.workers });
else await serve(opts, cluster.isWorker && setup !== undefined ? (JSON.parse(setup) as WorkerSetup) : undefined);
