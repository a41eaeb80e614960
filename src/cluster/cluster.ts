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
import { LEAVE_CLUSTER, setStopHook } from "../runtime/shutdown.js";
import { positive } from "../runtime/validate.js";
import { RedisNames } from "./names.js";

export interface ClusterOptions {
  /** Redis to meet the other nodes through, e.g. "redis://127.0.0.1:6379". */
  readonly redis: string;
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

export interface ClusterInfo {
  readonly node: string;
  /** The other nodes this node sees as up. */
  readonly nodes: string[];
  /** Whether both Redis connections are up. */
  readonly connected: boolean;
  /** Whether this node's own heartbeat is overdue from Redis (two heartbeats): signals wait, nobody is declared lost. */
  readonly stalled: boolean;
  /** Signals published to other nodes. */
  readonly sent: number;
  /** Signals received from other nodes. */
  readonly received: number;
  /** Signals waiting to be published (while Redis is away or stalled). */
  readonly buffered: number;
  /** Their v8-serialized size. */
  readonly bufferedBytes: number;
  /** Signals dropped: the buffer was full, their node was not up or was lost, or Redis did not take them. */
  readonly dropped: number;
}

// Frame kinds: the first byte of every published payload.
const SIGNALS = 0;
const HEARTBEAT = 1;
/** "Tell me your group members": a new node, or one back after losing Redis. */
const HELLO = 2;
/** HELLO's body when the sender had lost the receiver: what stood between them ends on both sides. */
const YOU_WERE_LOST = Buffer.from([1]);
/** The answer to HELLO, after the members. */
const WELCOME = 3;
const BYE = 4;

/** Signals per frame: a long burst in one tick (a loop over many remote pids) leaves as it goes. */
const FRAME_SIGNALS = 1024;

/** Heartbeats this node's own may be overdue before its Redis link counts as stalled. */
const STALL_BEATS = 2;

/** Drops are logged once per window, with their counts by cause. */
const DROP_LOG_MS = 1000;

/** Signals queued for one channel; `marked` when any of them carries wire markers. */
interface Outbox {
  /** The node whose channel this is; null for the shared channel. */
  readonly node: string | null;
  readonly signals: unknown[][];
  marked: boolean;
  /** Serialized size of the signals queued while they had to wait. */
  bytes: number;
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
  private readonly stallMs: number;
  private readonly stallTimeoutMs: number;
  private readonly maxBuffered: number;
  private readonly maxBufferedBytes: number;
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
  /** Nodes this one lost (not by BYE), when: met again, they are told so. */
  private readonly lostAt = new Map<string, number>();
  /** Nodes told so that have not answered yet: their own such HELLO means both lost each other. */
  private readonly rejoined = new Set<string>();
  private buffered = 0;
  private bufferedBytes = 0;
  private flushing = false;
  private sent = 0;
  private received = 0;
  private dropped = 0;
  /** Drops not logged yet, by cause; logged when dropTimer fires. */
  private readonly unlogged = new Map<string, number>();
  private dropTimer: NodeJS.Timeout | undefined;
  /** When a frame of this node's own last came back through Redis: the proof its link works. */
  private echoedAt = performance.now();
  /** This node's own link is overdue: signals wait and silence does not count against others. */
  private stalled = false;
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
    this.stallMs = STALL_BEATS * opts.heartbeatMs;
    this.stallTimeoutMs = opts.stallTimeoutMs;
    this.maxBuffered = opts.maxBuffered;
    this.maxBufferedBytes = opts.maxBufferedBytes;
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

  unreachable(): void {
    this.drop(1, "node not up");
  }

  postAll(signal: unknown[], marked: boolean): void {
    this.queue(this.allChannel, null, signal, marked);
  }

  private queue(channel: string, node: string | null, signal: unknown[], marked: boolean): void {
    let bytes = 0;
    if (this.pub.isReady && !this.stalled && (node === null || !this.held.has(node))) {
      if (this.buffered >= FRAME_SIGNALS) this.flush();
    } else {
      if (this.buffered >= this.maxBuffered) {
        this.drop(1, "maxBuffered reached");
        return;
      }
      try {
        bytes = serialize(signal).length;
      } catch {
        this.drop(1, "v8 could not serialize a message");
        return;
      }
      if (this.bufferedBytes + bytes > this.maxBufferedBytes) {
        this.drop(1, "maxBufferedBytes reached");
        return;
      }
    }
    const box = this.queues.get(channel);
    if (box === undefined) this.queues.set(channel, { node, signals: [signal], marked, bytes });
    else {
      box.signals.push(signal);
      if (marked) box.marked = true;
      box.bytes += bytes;
    }
    this.buffered++;
    this.bufferedBytes += bytes;
    if (!this.flushing) {
      this.flushing = true;
      process.nextTick(() => this.flush());
    }
  }

  /** Counts every drop; a burst is logged once, at warn, DROP_LOG_MS after its first drop, with its counts by cause. */
  private drop(n: number, why: string): void {
    if (n <= 0) return;
    this.dropped += n;
    this.unlogged.set(why, (this.unlogged.get(why) ?? 0) + n);
    if (this.dropTimer !== undefined) return;
    this.dropTimer = setTimeout(() => this.logDrops(), DROP_LOG_MS);
    this.dropTimer.unref();
  }

  private logDrops(): void {
    clearTimeout(this.dropTimer);
    this.dropTimer = undefined;
    if (this.unlogged.size === 0) return;
    let dropped = 0;
    for (const n of this.unlogged.values()) dropped += n;
    const causes = Object.fromEntries(this.unlogged);
    this.unlogged.clear();
    this.log.warn({ node: this.node, dropped, causes, total: this.dropped }, `cluster: ${dropped} signals for other nodes dropped`);
  }

  /** Takes a channel's queue out of the buffer. */
  private take(channel: string, box: Outbox): void {
    this.queues.delete(channel);
    this.buffered -= box.signals.length;
    this.bufferedBytes -= box.bytes;
  }

  /** Publishes every queued signal, a frame per channel; while Redis is away or stalled they wait. */
  private flush(): void {
    this.flushing = false;
    if (!this.pub.isReady || this.stalled) return;
    for (const [channel, box] of this.queues) {
      if (box.node !== null && this.held.has(box.node)) continue;
      this.take(channel, box);
      const { signals } = box;
      for (let start = 0; start < signals.length; start += FRAME_SIGNALS) {
        const chunk = signals.length <= FRAME_SIGNALS ? signals : signals.slice(start, start + FRAME_SIGNALS);
        this.publish(channel, this.frame(SIGNALS, this.encode(chunk, box.marked)), chunk.length, box.node !== null);
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

  private control(kind: number, channel: string, body: Buffer | null = null): void {
    if (!this.pub.isReady) return;
    this.publish(channel, this.frame(kind, body), 0);
  }

  /** Publishes a frame of count signals; to one node's channel, a publish nobody received counts them as dropped. */
  private publish(channel: string, frame: Buffer, count: number, direct = false): void {
    this.sent += count;
    this.pub.publish(channel, frame).then(
      (receivers) => {
        if (direct && receivers === 0) this.drop(count, "node not subscribed");
      },
      () => this.drop(count, "publish failed"),
    );
  }

  /** One frame from the shared channel or this node's own. */
  receive(frame: Buffer): void {
    if (frame.length < 3) return;
    const kind = frame[0]!;
    const nameEnd = 3 + frame.readUInt16BE(1);
    const from = frame.toString("utf8", 3, nameEnd);
    if (this.stopped) return;
    if (from === this.node) {
      this.echoed();
      return;
    }
    if (kind === BYE) {
      this.lose(from, "stopped");
      this.lostAt.delete(from);
      return;
    }
    const known = this.seen.has(from);
    if (known && kind === HELLO && frame[nameEnd] === YOU_WERE_LOST[0] && !this.rejoined.has(from)) this.lostBy(from);
    this.seen.set(from, performance.now());
    if (!known) this.meet(from);
    if (kind === SIGNALS) {
      this.signals(from, frame.subarray(nameEnd));
    } else if (kind === HELLO) {
      this.rejoined.delete(from);
      this.welcome(from);
    } else if (kind === WELCOME) {
      this.rejoined.delete(from);
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
    const lost = this.lostAt.delete(node);
    if (lost) this.rejoined.add(node);
    this.control(HELLO, this.channel(node), lost ? YOU_WERE_LOST : null);
    nodeUp(node);
  }

  /**
   * node lost this one (its link was fine while this one stalled or froze) and met it again:
   * links, monitors and signals still queued between them end here too, with "noconnection",
   * as an Erlang disconnect is seen on both sides. The HELLO's answer sends the members again.
   */
  private lostBy(node: string): void {
    this.log.warn({ node: this.node, peer: node }, "cluster: node had lost this one; links and monitors to it end with noconnection");
    this.end(node);
  }

  /** Drops what is queued for node and ends every link and monitor to it. */
  private end(node: string): void {
    const box = this.queues.get(this.channel(node));
    if (box !== undefined) {
      this.take(this.channel(node), box);
      this.drop(box.signals.length, "node lost");
    }
    nodeDown(node);
  }

  /** Answers HELLO: this node's members, then WELCOME, in that order on one connection. */
  private welcome(node: string): void {
    this.held.delete(node);
    nodeUp(node);
    this.flush();
    this.control(WELCOME, this.channel(node));
  }

  /** node is lost; freeNames unless this node gave up on it only because its own link stalled (the other may live on). */
  private lose(node: string, why: string, freeNames = true): void {
    if (!this.seen.delete(node)) return;
    this.held.delete(node);
    this.rejoined.delete(node);
    this.lostAt.set(node, performance.now());
    this.log.warn({ node: this.node, peer: node, why }, "cluster: node down");
    this.end(node);
    if (this.awaiting.delete(node) && this.awaiting.size === 0) this.welcomed?.();
    if (!freeNames) return;
    this.names.releaseNode(node).catch((err: unknown) => this.log.warn({ err, peer: node }, "cluster: releasing a lost node's names failed"));
  }

  /**
   * A frame of this node's own came back: its link works. Silence of others counts only
   * against such proof, and silence during a stall before it does not count at all.
   */
  private echoed(): void {
    const now = performance.now();
    const gap = now - this.echoedAt;
    this.echoedAt = now;
    if (gap > this.stallMs) {
      for (const [node, last] of this.seen) this.seen.set(node, Math.min(now, last + gap));
      for (const [node, at] of this.lostAt) this.lostAt.set(node, Math.min(now, at + gap));
    }
    if (this.stalled) {
      this.stalled = false;
      this.log.info({ node: this.node, stalledMs: Math.round(gap), buffered: this.buffered }, "cluster: Redis answers again; buffered signals are sent");
      this.reassertNames();
      this.flush();
    }
    for (const [node, last] of this.seen) if (now - last > this.timeoutMs) this.lose(node, "no heartbeat");
  }

  private beat(): void {
    const now = performance.now();
    // Past this (time this node's link worked) a lost node still alive has given up on this one itself (its stallTimeoutMs).
    if (!this.stalled) for (const [node, at] of this.lostAt) if (now - at > this.stallTimeoutMs + this.timeoutMs) this.lostAt.delete(node);
    const silent = now - this.echoedAt;
    if (silent > this.stallMs && !this.stalled) {
      this.stalled = true;
      this.log.warn(
        { node: this.node, silentMs: Math.round(silent), stallTimeoutMs: this.stallTimeoutMs },
        "cluster: Redis has not echoed this node's heartbeat; signals to other nodes are buffered and no node is declared lost until stallTimeoutMs",
      );
    }
    if (silent > this.stallTimeoutMs) for (const node of Array.from(this.seen.keys())) this.lose(node, "this node's Redis link stalled past stallTimeoutMs", false);
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
    // A stalled node does it when its first frame comes back (echoed), with the flush.
    if (!this.stalled) this.reassertNames();
    this.control(HELLO, this.allChannel);
    // Both connections are fresh: as good a proof as an echo (it ends a stall, so what waits is not held behind it).
    this.echoed();
    this.flush();
  }

  /** After Redis lost them (a restart) or another node freed them (it lost this one): this node's global names back. */
  private reassertNames(): void {
    this.names
      .reassert(localGlobalNames())
      .then((lost) => {
        if (lost.length > 0) this.log.error({ names: lost }, "cluster: global names taken by another node while Redis was away");
      })
      .catch((err: unknown) => this.log.warn({ err }, "cluster: reasserting global names failed"));
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
      stalled: this.stalled,
      sent: this.sent,
      received: this.received,
      buffered: this.buffered,
      bufferedBytes: this.bufferedBytes,
      dropped: this.dropped,
    };
  }

  /** A start that failed halfway: the runtime goes back to one node. */
  abandon(): void {
    clearInterval(this.timer);
    clearTimeout(this.dropTimer);
    this.stopped = true;
    stopDist([]);
    setGlobalStore(null);
  }

  /** Leaves: says BYE so the others act at once, frees the name and this node's names. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.flush();
    // What could not leave (Redis away or stalled) is lost with the cluster: counted and said.
    for (const [channel, box] of this.queues) {
      this.take(channel, box);
      this.drop(box.signals.length, "cluster stopped");
    }
    this.logDrops();
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
  const stallTimeoutMs = positive(opts.stallTimeoutMs, "startCluster: stallTimeoutMs must be a positive number", 6 * nodeTimeoutMs);
  if (stallTimeoutMs < nodeTimeoutMs) throw badarg(`startCluster: stallTimeoutMs (${stallTimeoutMs}) must be at least nodeTimeoutMs (${nodeTimeoutMs})`);
  const maxBuffered = positive(opts.maxBuffered, "startCluster: maxBuffered must be a positive number", 10_000);
  const maxBufferedBytes = positive(opts.maxBufferedBytes, "startCluster: maxBufferedBytes must be a positive number", 32 * 1024 * 1024);
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
    cluster = new Cluster(pub, sub, { node, heartbeatMs, nodeTimeoutMs, stallTimeoutMs, maxBuffered, maxBufferedBytes, prefix, logger });
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
