// net_kernel's interface: a node joins a cluster (startCluster), leaves it, and lists the other nodes; through Redis or node:cluster's IPC.
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { badarg, CorralError, describe } from "../runtime/errors.js";
import { runtimeLogger, type Logger } from "../runtime/log.js";
import { nodeName, setNodeName } from "../runtime/node.js";
import { LEAVE_CLUSTER, setStopHook } from "../runtime/shutdown.js";
import { knownKeys, positive } from "../runtime/validate.js";
import type { Carrier, ClusterInfo } from "./carrier.js";
import { startIpcCarrier } from "./ipc.js";
import { startRedisCarrier, type RedisSettings } from "./redis.js";

export type { ClusterInfo } from "./carrier.js";
export { startClusterPrimary, type ClusterPrimaryOptions } from "./primary.js";

/** A node that meets the others through Redis: on one machine or many. */
export interface RedisClusterOptions {
  /** Redis to meet the other nodes through, e.g. "redis://127.0.0.1:6379". */
  readonly redis: string;
  readonly ipc?: never;
  /** This node's name, unique in the cluster; default "corral-<os pid>-<random>@<host>". */
  readonly node?: string;
  /** How often this node says it is alive. Default 1000 ms. */
  readonly heartbeatMs?: number;
  /**
   * A node not heard from for this long, while this node's own heartbeat makes the round trip
   * through Redis, is lost: its pids go DOWN with "noconnection". Default 5000 ms.
   */
  readonly nodeTimeoutMs?: number;
  /**
   * How long this node's own Redis link may stall (away, or its heartbeat not echoed back)
   * before it gives up on every other node; until then nobody is declared lost for silence
   * this node caused itself. At least nodeTimeoutMs. Default 6 × nodeTimeoutMs.
   */
  readonly stallTimeoutMs?: number;
  /** Signals for other nodes held while Redis is away or stalled; beyond it they are dropped, logged and counted. Default 10 000. */
  readonly maxBuffered?: number;
  /** The same bound in bytes (v8-serialized). Default 32 MiB. */
  readonly maxBufferedBytes?: number;
  /** Prefix of every Redis key and channel, so clusters can share a Redis. Default "corral". */
  readonly prefix?: string;
  /** Where cluster events are logged; default the runtime's logger. */
  readonly logger?: Logger;
}

/**
 * A node that meets the others over node:cluster's IPC channel, through the primary: one of
 * its workers, or the primary itself. Nothing else to run; one machine.
 */
export interface IpcClusterOptions {
  readonly ipc: true;
  readonly redis?: never;
  /** This node's name, unique in the cluster; default "corral-<os pid>-<random>@<host>". */
  readonly node?: string;
  /** Where cluster events are logged; default the runtime's logger. */
  readonly logger?: Logger;
}

export type ClusterOptions = RedisClusterOptions | IpcClusterOptions;

const REDIS_OPTIONS: ReadonlySet<string> = new Set(["redis", "node", "heartbeatMs", "nodeTimeoutMs", "stallTimeoutMs", "maxBuffered", "maxBufferedBytes", "prefix", "logger"]);
const IPC_OPTIONS: ReadonlySet<string> = new Set(["ipc", "node", "logger"]);

let running: Carrier | undefined;

function defaultNodeName(): string {
  const host = hostname().replace(/[^A-Za-z0-9_\-.]/g, "-") || "localhost";
  return `corral-${process.pid}-${randomBytes(3).toString("hex")}@${host}`;
}

/** The options of the transport chosen (redis or ipc), checked once; the other transport's options are refused by name. */
function transportOf(opts: ClusterOptions): "redis" | "ipc" {
  if (typeof opts !== "object" || opts === null) throw badarg(`startCluster: expected { redis: "redis://host:port", ... } or { ipc: true, ... }, got ${describe(opts)}`);
  const given = opts as { redis?: unknown; ipc?: unknown };
  if (given.redis !== undefined && given.ipc !== undefined) throw badarg("startCluster: give redis or ipc, not both");
  if (given.ipc === undefined) {
    if (typeof given.redis !== "string") throw badarg(`startCluster: expected { redis: "redis://host:port", ... } or { ipc: true, ... }, got ${describe(opts)}`);
    knownKeys(opts, REDIS_OPTIONS, "startCluster");
    return "redis";
  }
  if (given.ipc !== true) throw badarg(`startCluster: ipc must be true, got ${describe(given.ipc)}`);
  for (const key of Object.keys(opts)) if (REDIS_OPTIONS.has(key) && !IPC_OPTIONS.has(key)) throw badarg(`startCluster: ${key} is an option of the Redis transport, not of ipc`);
  knownKeys(opts, IPC_OPTIONS, "startCluster");
  return "ipc";
}

/**
 * Joins this node to a cluster: through Redis ({ redis }), or through the node:cluster primary
 * ({ ipc: true }, in a worker or the primary). Call it before the first process is spawned:
 * every pid carries the node's name. Rejects with ERR_CLUSTER_CONNECT when Redis or the
 * primary cannot be reached, ERR_NODE_NAME_TAKEN when a live node has the name.
 */
export async function startCluster(opts: ClusterOptions): Promise<ClusterInfo> {
  if (running !== undefined) throw new CorralError("ERR_BADARG", `startCluster: this node is already in a cluster as ${running.node}`);
  const transport = transportOf(opts);
  let redis: Omit<RedisSettings, "node" | "logger"> | undefined;
  if (transport === "redis") {
    const o = opts as RedisClusterOptions;
    const heartbeatMs = positive(o.heartbeatMs, "startCluster: heartbeatMs must be a positive number", 1000);
    const nodeTimeoutMs = positive(o.nodeTimeoutMs, "startCluster: nodeTimeoutMs must be a positive number", 5000);
    if (nodeTimeoutMs < 2 * heartbeatMs) throw badarg(`startCluster: nodeTimeoutMs (${nodeTimeoutMs}) must be at least twice heartbeatMs (${heartbeatMs})`);
    const stallTimeoutMs = positive(o.stallTimeoutMs, "startCluster: stallTimeoutMs must be a positive number", 6 * nodeTimeoutMs);
    if (stallTimeoutMs < nodeTimeoutMs) throw badarg(`startCluster: stallTimeoutMs (${stallTimeoutMs}) must be at least nodeTimeoutMs (${nodeTimeoutMs})`);
    const maxBuffered = positive(o.maxBuffered, "startCluster: maxBuffered must be a positive number", 10_000);
    const maxBufferedBytes = positive(o.maxBufferedBytes, "startCluster: maxBufferedBytes must be a positive number", 32 * 1024 * 1024);
    const prefix = o.prefix ?? "corral";
    if (typeof prefix !== "string" || prefix === "") throw badarg(`startCluster: prefix must be a non-empty string, got ${describe(prefix)}`);
    redis = { redis: o.redis, heartbeatMs, nodeTimeoutMs, stallTimeoutMs, maxBuffered, maxBufferedBytes, prefix };
  }
  const node = opts.node ?? (nodeName() === "nonode@nohost" ? defaultNodeName() : nodeName());
  try {
    setNodeName(node);
  } catch (err) {
    throw badarg(`startCluster: cannot name this node ${JSON.stringify(node)}: ${(err as Error).message} (start the cluster before spawning any process)`);
  }
  const logger = opts.logger ?? runtimeLogger();
  const carrier = redis === undefined ? await startIpcCarrier(node, logger) : await startRedisCarrier({ ...redis, node, logger });
  running = carrier;
  logger.info(redis === undefined ? { node, transport } : { node, redis: redis.redis }, "cluster: joined");
  return carrier.info();
}

/** Leaves the cluster: other nodes see this one down at once; this node goes on alone. */
export async function stopCluster(): Promise<void> {
  const carrier = running;
  running = undefined;
  await carrier?.stop();
}

// The node's stop (a permanent supervisor ended) leaves the cluster last, after the listeners and supervisors.
setStopHook(LEAVE_CLUSTER, stopCluster);

/** This node's view of the cluster; undefined when no cluster runs. */
export function clusterInfo(): ClusterInfo | undefined {
  return running?.info();
}

/** Erlang's nodes(): the other nodes that are up. */
export function nodes(): string[] {
  return running?.info().nodes ?? [];
}
