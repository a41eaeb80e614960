// net_kernel and epmd over Redis: nodes meet through pub/sub, heartbeat, notice a lost node and carry signals between them.
import { createClient } from "redis";
import { nodeUp, startDist } from "../runtime/dist.js";
import { CorralError, describe } from "../runtime/errors.js";
import { localGlobalNames, setGlobalStore } from "../runtime/global.js";
import type { Logger } from "../runtime/log.js";
import { setCreation } from "../runtime/pid.js";
import { Carrier } from "./carrier.js";
import { RedisNames } from "./names.js";

/** What a node on Redis is started with, checked by startCluster. */
export interface RedisSettings {
  readonly redis: string;
  readonly node: string;
  readonly heartbeatMs: number;
  readonly nodeTimeoutMs: number;
  readonly stallTimeoutMs: number;
  readonly maxBuffered: number;
  readonly maxBufferedBytes: number;
  readonly prefix: string;
  readonly logger: Logger;
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

/** Heartbeats this node's own may be overdue before its Redis link counts as stalled. */
const STALL_BEATS = 2;

function redisClient(url: string, connectTimeout: number, retry: (retries: number, cause: Error) => number | Error) {
  return createClient({ url, disableOfflineQueue: true, socket: { connectTimeout, reconnectStrategy: retry } });
}

type Client = ReturnType<typeof redisClient>;

/**
 * One node of a cluster on Redis pub/sub: a channel per node and one for all. Signals for a
 * node are queued in order and published together once per tick; heartbeats on the shared
 * channel tell who is alive; a liveness key with a TTL guards the node's name.
 */
class RedisCarrier extends Carrier {
  readonly transport = "redis";
  private readonly heartbeatMs: number;
  private readonly timeoutMs: number;
  private readonly stallMs: number;
  private readonly stallTimeoutMs: number;
  private readonly prefix: string;
  private readonly allChannel: string;
  private readonly names: RedisNames;
  /**
   * Nodes whose signals wait after an outage until they show they are subscribed again
   * (a HELLO or WELCOME from them): pub/sub keeps nothing for a subscriber that is away.
   */
  private readonly held = new Set<string>();
  /**
   * Nodes owed this node's group members (true: and the WELCOME that answers their HELLO),
   * held back while the link to them is not open: queued behind a stall they could be dropped
   * against a full buffer, and a WELCOME would then say they were sent. Paid at the flush
   * that follows the link's return.
   */
  private readonly owed = new Map<string, boolean>();
  /** Nodes this one lost (not by BYE), when: met again, they are told so. */
  private readonly lostAt = new Map<string, number>();
  /** Nodes told so that have not answered yet: their own such HELLO means both lost each other. */
  private readonly rejoined = new Set<string>();
  /** When a frame of this node's own last came back through Redis: the proof its link works. */
  private echoedAt = performance.now();
  /** This node's own link is overdue: signals wait and silence does not count against others. */
  private stalled = false;
  private timer: NodeJS.Timeout | undefined;
  /** Nodes whose members startCluster waits for. */
  private readonly awaiting = new Set<string>();
  private welcomed: (() => void) | undefined;
  private outage = false;
  private readonly header: Buffer;

  constructor(
    private readonly pub: Client,
    private readonly sub: Client,
    opts: RedisSettings,
  ) {
    super(opts.node, opts.logger, opts.maxBuffered, opts.maxBufferedBytes);
    this.heartbeatMs = opts.heartbeatMs;
    this.timeoutMs = opts.nodeTimeoutMs;
    this.stallMs = STALL_BEATS * opts.heartbeatMs;
    this.stallTimeoutMs = opts.stallTimeoutMs;
    this.prefix = opts.prefix;
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

  protected open(node: string | null): boolean {
    return this.pub.isReady && !this.stalled && (node === null || !this.held.has(node));
  }

  protected ship(node: string | null, body: Buffer, count: number): void {
    this.publish(node === null ? this.allChannel : this.channel(node), this.frame(SIGNALS, body), count, node !== null);
  }

  protected connected(): boolean {
    return this.pub.isReady && this.sub.isReady;
  }

  protected override isStalled(): boolean {
    return this.stalled;
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
    if (known) this.seen.set(from, performance.now());
    else this.meet(from);
    if (kind === SIGNALS) {
      this.deliver(from, frame.subarray(nameEnd));
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

  /** A node not seen before (or seen again after being lost): swap group members both ways. */
  private meet(node: string): void {
    const lost = this.lostAt.delete(node);
    if (lost) this.rejoined.add(node);
    this.control(HELLO, this.channel(node), lost ? YOU_WERE_LOST : null);
    this.met(node);
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

  /** Answers HELLO: this node's members, then WELCOME, in that order on one connection; once the link is open. */
  private welcome(node: string): void {
    this.held.delete(node);
    if (!this.open(node)) {
      this.owed.set(node, true);
      return;
    }
    nodeUp(node);
    this.flush();
    this.control(WELCOME, this.channel(node));
  }

  protected override announce(node: string): void {
    if (this.open(node)) nodeUp(node);
    else if (!this.owed.has(node)) this.owed.set(node, false);
  }

  /** Ships what waits; then what is owed to nodes whose link is open again. */
  protected override flush(): void {
    super.flush();
    if (this.owed.size === 0) return;
    for (const [node, hello] of Array.from(this.owed)) {
      if (this.seen.has(node) && !this.open(node)) continue;
      this.owed.delete(node);
      if (!this.seen.has(node)) continue;
      nodeUp(node);
      if (!hello) continue;
      super.flush();
      this.control(WELCOME, this.channel(node));
    }
  }

  /** node is lost; freeNames unless this node gave up on it only because its own link stalled (the other may live on). */
  private lose(node: string, why: string, freeNames = true): void {
    if (!this.seen.has(node)) return;
    this.held.delete(node);
    this.rejoined.delete(node);
    this.lostAt.set(node, performance.now());
    this.lost(node, why);
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

  linkLost(err: unknown): void {
    if (this.outage || this.stopped) return;
    this.outage = true;
    for (const node of this.seen.keys()) this.held.add(node);
    this.log.error({ node: this.node, err }, "cluster: Redis connection lost; local work goes on, signals to other nodes are buffered");
  }

  override abandon(): void {
    clearInterval(this.timer);
    super.abandon();
  }

  /** Says BYE so the others act at once, frees the name and this node's names. */
  protected async goodbye(): Promise<void> {
    if (!this.pub.isReady) return;
    this.control(BYE, this.allChannel);
    await Promise.allSettled([this.pub.del(this.aliveKey), this.names.releaseNode(this.node)]);
  }

  override async stop(): Promise<void> {
    clearInterval(this.timer);
    await super.stop();
    await Promise.allSettled([this.sub.close(), this.pub.close()]);
  }
}

/**
 * Joins this node to the cluster that meets in Redis; rejects with ERR_CLUSTER_CONNECT when
 * Redis cannot be reached, ERR_NODE_NAME_TAKEN when a live node has the name.
 */
export async function startRedisCarrier(opts: RedisSettings): Promise<Carrier> {
  let connectedOnce = false;
  // The first connection fails at once with one clear error; later ones retry with a backoff.
  const pub = redisClient(opts.redis, Math.max(1000, opts.nodeTimeoutMs), (retries, cause) => (connectedOnce ? Math.min(50 * 2 ** retries, 1000) : cause));
  let carrier: RedisCarrier | undefined;
  const watch = (client: Client): Client =>
    client
      .on("error", (err: unknown) => carrier?.linkLost(err))
      .on("reconnecting", () => carrier?.linkLost(new Error("reconnecting to Redis")))
      .on("ready", () => carrier?.reconnected());
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
    const creation = Number(await pub.incr(`${opts.prefix}:creation:${opts.node}`)) - 1;
    if (!setCreation(creation) && creation > 0) opts.logger.debug({ node: opts.node }, "cluster: ids already in use; this run keeps counting from them");
    carrier = new RedisCarrier(pub, sub, opts);
    await carrier.start();
  } catch (err) {
    carrier?.abandon();
    pub.destroy();
    sub.destroy();
    throw err;
  }
  return carrier;
}
