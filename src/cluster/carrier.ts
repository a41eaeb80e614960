// dist_util, the part of Erlang's distribution every carrier shares: which nodes are up, signals batched per tick, drops counted.
import { deserialize, serialize } from "node:v8";
import { nodeDown, nodeUp, receiveSignal, restoreSignal, stopDist, type DistTransport } from "../runtime/dist.js";
import { setGlobalStore } from "../runtime/global.js";
import type { Logger } from "../runtime/log.js";

export interface ClusterInfo {
  readonly node: string;
  /** How this node meets the others: through Redis, or over node:cluster's IPC channel. */
  readonly transport: "redis" | "ipc";
  /** The other nodes this node sees as up. */
  readonly nodes: string[];
  /** Whether this node's link to the others is up: both Redis connections, or the IPC channel. */
  readonly connected: boolean;
  /** Whether this node's own heartbeat is overdue from Redis (two heartbeats): signals wait, nobody is declared lost. Always false over IPC. */
  readonly stalled: boolean;
  /** Signals sent to other nodes. */
  readonly sent: number;
  /** Signals received from other nodes. */
  readonly received: number;
  /** Signals waiting to be sent (while Redis is away or stalled). */
  readonly buffered: number;
  /** Their v8-serialized size. */
  readonly bufferedBytes: number;
  /** Signals dropped: the buffer was full, their node was not up or was lost, or the link did not take them. */
  readonly dropped: number;
}

/** Signals per frame: a long burst in one tick (a loop over many remote pids) leaves as it goes. */
const FRAME_SIGNALS = 1024;

/** Drops are logged once per window, with their counts by cause. */
const DROP_LOG_MS = 1000;

/** Signals queued for one node (null: for every other node), in order; `marked` when any of them carries wire markers. */
interface Outbox {
  readonly node: string | null;
  readonly signals: unknown[][];
  marked: boolean;
  /** Serialized size of the signals queued while they had to wait. */
  bytes: number;
}

/**
 * What every carrier of signals between nodes does the same way: it keeps the nodes that are
 * up, queues each node's signals in order and ships them together once per tick (one v8
 * serialization per frame), holds them (bounded) while its link cannot take them, turns a
 * node met into nodeUp and a node lost into nodeDown, and counts every drop, logging each
 * burst once. A transport (Redis, IPC) says when its link is open and how a frame leaves.
 */
export abstract class Carrier implements DistTransport {
  abstract readonly transport: ClusterInfo["transport"];
  /** Other nodes that are up: when each was last heard from. */
  protected readonly seen = new Map<string, number>();
  /** Signals waiting, per node, in order. */
  private readonly queues = new Map<string | null, Outbox>();
  protected buffered = 0;
  private bufferedBytes = 0;
  private flushing = false;
  protected sent = 0;
  private received = 0;
  private dropped = 0;
  /** Drops not logged yet, by cause; logged when dropTimer fires. */
  private readonly unlogged = new Map<string, number>();
  private dropTimer: NodeJS.Timeout | undefined;
  protected stopped = false;

  constructor(
    readonly node: string,
    protected readonly log: Logger,
    private readonly maxBuffered: number,
    private readonly maxBufferedBytes: number,
  ) {}

  /** Whether signals for node (null: for every other node) may leave now; otherwise they wait, bounded. */
  protected abstract open(node: string | null): boolean;

  /** Sends one frame of count signals (body: their v8 serialization) to node, or to every other node. */
  protected abstract ship(node: string | null, body: Buffer, count: number): void;

  /** Whether this node's link is up (ClusterInfo.connected). */
  protected abstract connected(): boolean;

  /** Whether this node's link is stalled (ClusterInfo.stalled). */
  protected isStalled(): boolean {
    return false;
  }

  /** A flush has shipped its frames: a transport that gathers them sends them now. */
  protected shipped(): void {}

  /** What a transport does on the way out, after the last flush and before the runtime is back to one node. */
  protected abstract goodbye(): Promise<void>;

  isUp(node: string): boolean {
    return this.seen.has(node);
  }

  post(node: string, signal: unknown[], marked: boolean): void {
    this.queue(node, signal, marked);
  }

  postAll(signal: unknown[], marked: boolean): void {
    this.queue(null, signal, marked);
  }

  unreachable(): void {
    this.drop(1, "node not up");
  }

  private queue(node: string | null, signal: unknown[], marked: boolean): void {
    let bytes = 0;
    if (this.open(node)) {
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
    const box = this.queues.get(node);
    if (box === undefined) this.queues.set(node, { node, signals: [signal], marked, bytes });
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
  protected drop(n: number, why: string): void {
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

  /** Takes a node's queue out of the buffer. */
  private take(key: string | null, box: Outbox): void {
    this.queues.delete(key);
    this.buffered -= box.signals.length;
    this.bufferedBytes -= box.bytes;
  }

  /** Ships every queued signal whose link is open, a frame per node (a long queue in several). */
  protected flush(): void {
    this.flushing = false;
    for (const [key, box] of this.queues) {
      if (!this.open(box.node)) continue;
      this.take(key, box);
      const { signals } = box;
      for (let start = 0; start < signals.length; start += FRAME_SIGNALS) {
        const chunk = signals.length <= FRAME_SIGNALS ? signals : signals.slice(start, start + FRAME_SIGNALS);
        this.sent += chunk.length;
        this.ship(box.node, this.encode(chunk, box.marked), chunk.length);
      }
    }
    this.shipped();
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

  /** A frame of signals from node, delivered in the order it sent them. */
  protected deliver(from: string, body: Uint8Array): void {
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

  /** node is up (new, or back after being lost): it is told this node's group members. */
  protected met(node: string): void {
    this.seen.set(node, performance.now());
    this.log.info({ node: this.node, peer: node }, "cluster: node up");
    this.announce(node);
  }

  /** Tells node this node's group members (pg's sync at nodeup); a transport may hold it back until its link is open. */
  protected announce(node: string): void {
    nodeUp(node);
  }

  /** node is lost: false when it was not up. */
  protected lost(node: string, why: string): boolean {
    if (!this.seen.delete(node)) return false;
    this.log.warn({ node: this.node, peer: node, why }, "cluster: node down");
    this.end(node);
    return true;
  }

  /** Drops what is queued for node and ends every link and monitor to it with "noconnection". */
  protected end(node: string): void {
    const box = this.queues.get(node);
    if (box !== undefined) {
      this.take(node, box);
      this.drop(box.signals.length, "node lost");
    }
    nodeDown(node);
  }

  info(): ClusterInfo {
    return {
      node: this.node,
      transport: this.transport,
      nodes: Array.from(this.seen.keys()),
      connected: this.connected(),
      stalled: this.isStalled(),
      sent: this.sent,
      received: this.received,
      buffered: this.buffered,
      bufferedBytes: this.bufferedBytes,
      dropped: this.dropped,
    };
  }

  /** A start that failed halfway: the runtime goes back to one node. */
  abandon(): void {
    clearTimeout(this.dropTimer);
    this.stopped = true;
    stopDist([]);
    setGlobalStore(null);
  }

  /** Leaves: what could not leave is counted as dropped, the transport says goodbye, every link and monitor to another node ends. */
  async stop(): Promise<void> {
    this.flush();
    for (const [key, box] of this.queues) {
      this.take(key, box);
      this.drop(box.signals.length, "cluster stopped");
    }
    this.logDrops();
    this.stopped = true;
    await this.goodbye();
    stopDist(Array.from(this.seen.keys()));
    this.seen.clear();
    setGlobalStore(null);
  }
}
