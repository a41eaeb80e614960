// net_kernel and epmd over Redis: nodes meet, heartbeat, notice a lost node and carry signals between them.
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { createClient } from "redis";
import { deserialize, serialize } from "node:v8";
import { nodeDown, nodeUp, receiveSignal, restoreSignal, startDist, stopDist, type DistTransport } from "../runtime/dist.js";
import { CorralError, badarg, describe } from "../runtime/errors.js";
import { localGlobalNames, setGlobalStore } from "../runtime/global.js";
import { runtimeLogger, type Logger } from "../runtime/log.js";
import { nodeName, setNodeName } from "../runtime/node.js";
import { setCreation } from "../runtime/pid.js";
import { positive } from "../runtime/validate.js";
import { RedisNames } from "./names.js";

export interface ClusterOptions {
  /** Redis to meet the other nodes through, e.g. "redis://127.0.0.1:6379". */
  readonly redis: string;
  /** This node's name, unique in the cluster; default "corral-<os pid>-<random>@<host>". */
  readonly node?: string;
  /** How often this node says it is alive. Default 1000 ms. */
  readonly heartbeatMs?: number;
  /** A node not heard from for this long is lost: its pids go DOWN with "noconnection". Default 5000 ms. */
  readonly nodeTimeoutMs?: number;
  /** Signals for other nodes held while Redis is away; beyond it they are dropped, logged and counted. Default 10 000. */
  readonly maxBuffered?: number;
  /** Prefix of every Redis key and channel, so clusters can share a Redis. Default "corral". */
  readonly prefix?: string;
  /** Where cluster events are logged; default the runtime's logger. */
  readonly logger?: Logger;
}

export interface ClusterInfo {
  readonly node: string;
  /** The other nodes this node sees as up. */
  readonly nodes: string[];
  /** Whether both Redis connections are up. */
  readonly connected: boolean;
  /** Signals published to other nodes. */
  readonly sent: number;
  /** Signals received from other nodes. */
  readonly received: number;
  /** Signals waiting to be published (while Redis is away). */
  readonly buffered: number;
  /** Signals dropped: the buffer was full, a publish failed, or their node was lost. */
  readonly dropped: number;
}

// Frame kinds: the first byte of every published payload.
const SIGNALS = 0;
const HEARTBEAT = 1;
/** "Tell me your group members": a new node, or one back after losing Redis. */
const HELLO = 2;
/** The answer to HELLO, after the members. */
const WELCOME = 3;
const BYE = 4;

/** Signals per frame: a long burst in one tick (a loop over many remote pids) leaves as it goes. */
const FRAME_SIGNALS = 1024;

/** Signals queued for one channel; `marked` when any of them carries wire markers. */
interface Outbox {
  /** The node whose channel this is; null for the shared channel. */
  readonly node: string | null;
  readonly signals: unknown[][];
  marked: boolean;
}

function redisClient(url: string, connectTimeout: number, retry: (retries: number, cause: Error) => number | Error) {
  return createClient({ url, disableOfflineQueue: true, socket: { connectTimeout, reconnectStrategy: retry } });
}

type Client = ReturnType<typeof redisClient>;

/**
 * One node of a cluster on Redis pub/sub: a channel per node and one for all. Signals for a
 * node are queued in order and published together once per tick; heartbeats on the shared
 * channel tell who is alive; a liveness key with a TTL guards the node's name.
 */
class Cluster implements DistTransport {
  readonly node: string;
  private readonly heartbeatMs: number;
  private readonly timeoutMs: number;
  private readonly maxBuffered: number;
  private readonly prefix: string;
  private readonly log: Logger;
  private readonly allChannel: string;
  private readonly names: RedisNames;
  /** Other nodes that are up: when each was last heard from. */
  private readonly seen = new Map<string, number>();
  /** Signals waiting, per channel, in order. */
  private readonly queues = new Map<string, Outbox>();
  /**
   * Nodes whose signals wait after an outage until they show they are subscribed again
   * (a HELLO or WELCOME from them): pub/sub keeps nothing for a subscriber that is away.
   */
  private readonly held = new Set<string>();
  private buffered = 0;
  private flushing = false;
  private sent = 0;
  private received = 0;
  private dropped = 0;
  private unlogged = 0;
  private loggedAt = -Infinity;
  private timer: NodeJS.Timeout | undefined;
  /** Nodes whose members startCluster waits for. */
  private readonly awaiting = new Set<string>();
  private welcomed: (() => void) | undefined;
  private stopped = false;
  private outage = false;
  private readonly header: Buffer;

  constructor(
    private readonly pub: Client,
    private readonly sub: Client,
    opts: Required<Omit<ClusterOptions, "logger" | "redis" | "node">> & { node: string; logger: Logger },
  ) {
    this.node = opts.node;
    this.heartbeatMs = opts.heartbeatMs;
    this.timeoutMs = opts.nodeTimeoutMs;
    this.maxBuffered = opts.maxBuffered;
    this.prefix = opts.prefix;
    this.log = opts.logger;
    this.allChannel = `${this.prefix}:all`;
    this.names = new RedisNames(pub, this.prefix, this.node, (node) => this.isUp(node));
    const name = Buffer.from(this.node);
    this.header = Buffer.allocUnsafe(3 + name.length);
    this.header.writeUInt16BE(name.length, 1);
    name.copy(this.header, 3);
  }

  private channel(node: string): string {
    return `${this.prefix}:node:${node}`;
  }

  private get aliveKey(): string {
    return `${this.prefix}:alive:${this.node}`;
  }

  isUp(node: string): boolean {
    return this.seen.has(node);
  }

  post(node: string, signal: unknown[], marked: boolean): void {
    this.queue(this.channel(node), node, signal, marked);
  }

  postAll(signal: unknown[], marked: boolean): void {
    this.queue(this.allChannel, null, signal, marked);
  }

  private queue(channel: string, node: string | null, signal: unknown[], marked: boolean): void {
    if (this.pub.isReady && (node === null || !this.held.has(node))) {
      if (this.buffered >= FRAME_SIGNALS) this.flush();
    } else if (this.buffered >= this.maxBuffered) {
      this.drop(1, "buffer full: Redis has been away too long");
      return;
    }
    const box = this.queues.get(channel);
    if (box === undefined) this.queues.set(channel, { node, signals: [signal], marked });
    else {
      box.signals.push(signal);
      if (marked) box.marked = true;
    }
    this.buffered++;
    if (!this.flushing) {
      this.flushing = true;
      process.nextTick(() => this.flush());
    }
  }

  /** Counts every drop; logs the first of a burst, then at most once a second, with the count since. */
  private drop(n: number, why: string): void {
    this.dropped += n;
    this.unlogged += n;
    const now = performance.now();
    if (now - this.loggedAt < 1000) return;
    this.loggedAt = now;
    this.log.error({ dropped: this.unlogged, total: this.dropped, node: this.node }, `cluster: signals for other nodes dropped (${why})`);
    this.unlogged = 0;
  }

  /** Publishes every queued signal, a frame per channel; while Redis is away they wait. */
  private flush(): void {
    this.flushing = false;
    if (!this.pub.isReady) return;
    for (const [channel, box] of this.queues) {
      if (box.node !== null && this.held.has(box.node)) continue;
      this.queues.delete(channel);
      const { signals } = box;
      this.buffered -= signals.length;
      for (let start = 0; start < signals.length; start += FRAME_SIGNALS) {
        const chunk = signals.length <= FRAME_SIGNALS ? signals : signals.slice(start, start + FRAME_SIGNALS);
        this.publish(channel, this.frame(SIGNALS, this.encode(chunk, box.marked)), chunk.length);
      }
    }
  }

  /** One v8 serialization per frame; a signal it refuses (checks at the call catch most) is dropped alone. */
  private encode(signals: unknown[][], marked: boolean): Buffer {
    try {
      return serialize([signals, marked]);
    } catch {
      const good = signals.filter((signal) => {
        try {
          serialize(signal);
          return true;
        } catch {
          return false;
        }
      });
      this.drop(signals.length - good.length, "v8 could not serialize a message");
      return serialize([good, marked]);
    }
  }

  private frame(kind: number, body: Buffer | null): Buffer {
    const out = Buffer.allocUnsafe(this.header.length + (body === null ? 0 : body.length));
    this.header.copy(out);
    out[0] = kind;
    body?.copy(out, this.header.length);
    return out;
  }

  private control(kind: number, channel: string): void {
    if (!this.pub.isReady) return;
    this.publish(channel, this.frame(kind, null), 0);
  }

  private publish(channel: string, frame: Buffer, count: number): void {
    this.sent += count;
    this.pub.publish(channel, frame).catch((err: unknown) => {
      if (count > 0) this.drop(count, `publish failed: ${describe(err)}`);
    });
  }

  /** One frame from the shared channel or this node's own. */
  receive(frame: Buffer): void {
    if (frame.length < 3) return;
    const kind = frame[0]!;
    const nameEnd = 3 + frame.readUInt16BE(1);
    const from = frame.toString("utf8", 3, nameEnd);
    if (from === this.node || this.stopped) return;
    if (kind === BYE) {
      this.lose(from, "stopped");
      return;
    }
    const known = this.seen.has(from);
    this.seen.set(from, performance.now());
    if (!known) this.meet(from);
    if (kind === SIGNALS) {
      this.signals(from, frame.subarray(nameEnd));
    } else if (kind === HELLO) {
      this.welcome(from);
    } else if (kind === WELCOME) {
      if (this.held.delete(from)) this.flush();
      this.awaiting.delete(from);
      if (this.awaiting.size === 0) this.welcomed?.();
    }
  }

  private signals(from: string, body: Buffer): void {
    let signals: unknown[][];
    let marked: boolean;
    try {
      [signals, marked] = deserialize(body) as [unknown[][], boolean];
    } catch (err) {
      this.log.error({ err, from }, "cluster: a frame could not be decoded");
      return;
    }
    this.received += signals.length;
    for (const signal of signals) {
      try {
        receiveSignal(from, marked ? restoreSignal(signal) : signal);
      } catch (err) {
        this.log.error({ err, from }, "cluster: a signal could not be delivered");
      }
    }
  }

  /** A node not seen before (or seen again after being lost): swap group members both ways. */
  private meet(node: string): void {
    this.log.info({ node: this.node, peer: node }, "cluster: node up");
    this.control(HELLO, this.channel(node));
    nodeUp(node);
  }

  /** Answers HELLO: this node's members, then WELCOME, in that order on one connection. */
  private welcome(node: string): void {
    this.held.delete(node);
    nodeUp(node);
    this.flush();
    this.control(WELCOME, this.channel(node));
  }

  private lose(node: string, why: string): void {
    if (!this.seen.delete(node)) return;
    this.held.delete(node);
    this.log.warn({ node: this.node, peer: node, why }, "cluster: node down");
    const box = this.queues.get(this.channel(node));
    if (box !== undefined) {
      this.queues.delete(this.channel(node));
      this.buffered -= box.signals.length;
      this.drop(box.signals.length, `node ${node} is down`);
    }
    nodeDown(node);
    if (this.awaiting.delete(node) && this.awaiting.size === 0) this.welcomed?.();
    this.names.releaseNode(node).catch((err: unknown) => this.log.warn({ err, peer: node }, "cluster: releasing a lost node's names failed"));
  }

  private beat(): void {
    const now = performance.now();
    for (const [node, last] of this.seen) if (now - last > this.timeoutMs) this.lose(node, "no heartbeat");
    if (!this.pub.isReady) return;
    this.pub.set(this.aliveKey, "1", { PX: this.timeoutMs }).catch(() => {});
    this.control(HEARTBEAT, this.allChannel);
    // A held node that missed this node's HELLO is asked again.
    if (!this.outage) for (const node of this.held) this.control(HELLO, this.channel(node));
  }

  /** Joins: claims the name, subscribes, meets the nodes already there and waits for their members. */
  async start(): Promise<void> {
    const claimed = await this.pub.set(this.aliveKey, "1", { PX: this.timeoutMs, NX: true });
    if (claimed === null) {
      throw new CorralError("ERR_NODE_NAME_TAKEN", `startCluster: node name ${JSON.stringify(this.node)} is held by a live node (its key expires ${this.timeoutMs} ms after that node stops)`);
    }
    const listener = (frame: Buffer): void => this.receive(frame);
    await this.sub.subscribe([this.channel(this.node), this.allChannel], listener, true);
    startDist(this);
    setGlobalStore(this.names);
    // Nodes whose keys exist are met when they answer HELLO; a key that outlived its node is never seen.
    for (const node of await this.aliveNodes()) this.awaiting.add(node);
    const welcomed = new Promise<void>((resolve) => {
      this.welcomed = resolve;
      if (this.awaiting.size === 0) resolve();
    });
    this.control(HELLO, this.allChannel);
    this.timer = setInterval(() => this.beat(), this.heartbeatMs);
    this.timer.unref();
    // A live node answers HELLO at once; one whose key outlived it (a crash) is not waited for long.
    let timeout: NodeJS.Timeout | undefined;
    await Promise.race([welcomed, new Promise<void>((resolve) => (timeout = setTimeout(resolve, 2 * this.heartbeatMs)))]);
    clearTimeout(timeout);
    this.welcomed = undefined;
    this.awaiting.clear();
  }

  private async aliveNodes(): Promise<string[]> {
    const prefix = `${this.prefix}:alive:`;
    const nodes: string[] = [];
    let cursor = "0";
    do {
      const [next, keys] = (await this.pub.sendCommand(["SCAN", cursor, "MATCH", `${prefix}*`, "COUNT", "1000"])) as [string, string[]];
      cursor = next;
      for (const key of keys) if (key !== this.aliveKey) nodes.push(key.slice(prefix.length));
    } while (cursor !== "0");
    return nodes;
  }

  /**
   * Redis lost, then back on both connections: the key and the names are put back, and
   * HELLO asks every node for its members; their answers release what waits for them.
   */
  reconnected(): void {
    if (this.stopped || !this.outage || !this.pub.isReady || !this.sub.isReady) return;
    this.outage = false;
    this.log.info({ node: this.node }, "cluster: Redis is back");
    this.pub.set(this.aliveKey, "1", { PX: this.timeoutMs }).catch(() => {});
    this.names
      .reassert(localGlobalNames())
      .then((lost) => {
        if (lost.length > 0) this.log.error({ names: lost }, "cluster: global names taken by another node while Redis was away");
      })
      .catch((err: unknown) => this.log.warn({ err }, "cluster: reasserting global names failed"));
    this.control(HELLO, this.allChannel);
    this.flush();
  }

  lost(err: unknown): void {
    if (this.outage || this.stopped) return;
    this.outage = true;
    for (const node of this.seen.keys()) this.held.add(node);
    this.log.error({ node: this.node, err }, "cluster: Redis connection lost; local work goes on, signals to other nodes are buffered");
  }

  info(): ClusterInfo {
    return {
      node: this.node,
      nodes: Array.from(this.seen.keys()),
      connected: this.pub.isReady && this.sub.isReady,
      sent: this.sent,
      received: this.received,
      buffered: this.buffered,
      dropped: this.dropped,
    };
  }

  /** A start that failed halfway: the runtime goes back to one node. */
  abandon(): void {
    clearInterval(this.timer);
    this.stopped = true;
    stopDist([]);
    setGlobalStore(null);
  }

  /** Leaves: says BYE so the others act at once, frees the name and this node's names. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.flush();
    this.stopped = true;
    if (this.pub.isReady) {
      this.control(BYE, this.allChannel);
      await Promise.allSettled([this.pub.del(this.aliveKey), this.names.releaseNode(this.node)]);
    }
    stopDist(Array.from(this.seen.keys()));
    this.seen.clear();
    setGlobalStore(null);
    await Promise.allSettled([this.sub.close(), this.pub.close()]);
  }
}

let running: Cluster | undefined;

function defaultNodeName(): string {
  const host = hostname().replace(/[^A-Za-z0-9_\-.]/g, "-") || "localhost";
  return `corral-${process.pid}-${randomBytes(3).toString("hex")}@${host}`;
}

/**
 * Joins this node to the cluster that meets in Redis. Call it before the first process is
 * spawned: every pid carries the node's name. Rejects with ERR_CLUSTER_CONNECT when Redis
 * cannot be reached, ERR_NODE_NAME_TAKEN when a live node has the name.
 */
export async function startCluster(opts: ClusterOptions): Promise<ClusterInfo> {
  if (running !== undefined) throw new CorralError("ERR_BADARG", `startCluster: this node is already in a cluster as ${running.node}`);
  if (typeof opts !== "object" || opts === null || typeof opts.redis !== "string") throw badarg(`startCluster: expected { redis: "redis://host:port", ... }, got ${describe(opts)}`);
  const heartbeatMs = positive(opts.heartbeatMs, "startCluster: heartbeatMs must be a positive number", 1000);
  const nodeTimeoutMs = positive(opts.nodeTimeoutMs, "startCluster: nodeTimeoutMs must be a positive number", 5000);
  if (nodeTimeoutMs < 2 * heartbeatMs) throw badarg(`startCluster: nodeTimeoutMs (${nodeTimeoutMs}) must be at least twice heartbeatMs (${heartbeatMs})`);
  const maxBuffered = positive(opts.maxBuffered, "startCluster: maxBuffered must be a positive number", 10_000);
  const prefix = opts.prefix ?? "corral";
  if (typeof prefix !== "string" || prefix === "") throw badarg(`startCluster: prefix must be a non-empty string, got ${describe(prefix)}`);
  const node = opts.node ?? (nodeName() === "nonode@nohost" ? defaultNodeName() : nodeName());
  try {
    setNodeName(node);
  } catch (err) {
    throw badarg(`startCluster: cannot name this node ${JSON.stringify(node)}: ${(err as Error).message} (start the cluster before spawning any process)`);
  }
  const logger = opts.logger ?? runtimeLogger();
  let connectedOnce = false;
  // The first connection fails at once with one clear error; later ones retry with a backoff.
  const pub = redisClient(opts.redis, Math.max(1000, nodeTimeoutMs), (retries, cause) => (connectedOnce ? Math.min(50 * 2 ** retries, 1000) : cause));
  let cluster: Cluster | undefined;
  const watch = (client: Client): Client =>
    client
      .on("error", (err: unknown) => cluster?.lost(err))
      .on("reconnecting", () => cluster?.lost(new Error("reconnecting to Redis")))
      .on("ready", () => cluster?.reconnected());
  watch(pub);
  const sub = watch(pub.duplicate());
  try {
    try {
      await pub.connect();
      await sub.connect();
    } catch (err) {
      throw new CorralError("ERR_CLUSTER_CONNECT", `startCluster: cannot reach Redis at ${opts.redis}: ${(err as Error).message || describe(err)}`);
    }
    connectedOnce = true;
    // The first run of a name keeps ids from 1; a later run (after a crash, say) starts past them.
    const creation = Number(await pub.incr(`${prefix}:creation:${node}`)) - 1;
    if (!setCreation(creation) && creation > 0) logger.debug({ node }, "cluster: ids already in use; this run keeps counting from them");
    cluster = new Cluster(pub, sub, { node, heartbeatMs, nodeTimeoutMs, maxBuffered, prefix, logger });
    await cluster.start();
  } catch (err) {
    cluster?.abandon();
    pub.destroy();
    sub.destroy();
    throw err;
  }
  running = cluster;
  logger.info({ node, redis: opts.redis }, "cluster: joined");
  return cluster.info();
}

/** Leaves the cluster: other nodes see this one down at once; this node goes on alone. */
export async function stopCluster(): Promise<void> {
  const cluster = running;
  running = undefined;
  await cluster?.stop();
}

/** This node's view of the cluster; undefined when no cluster runs. */
export function clusterInfo(): ClusterInfo | undefined {
  return running?.info();
}

/** Erlang's nodes(): the other nodes that are up. */
export function nodes(): string[] {
  return running?.info().nodes ?? [];
}
