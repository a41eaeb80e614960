// epmd and global's name server for one machine: the node:cluster primary relays signals between its workers' nodes and holds the global names.
import cluster, { type Worker } from "node:cluster";
import { badarg, describe } from "../runtime/errors.js";
import { runtimeLogger, type Logger } from "../runtime/log.js";
import { knownKeys, limit, positive } from "../runtime/validate.js";

// What a node and the primary say to each other over a worker's IPC channel, as { corralDist: message }.
// Node → primary:
/** [JOIN, node, probe]: the probe is a Map, which only v8 serialization carries as one. */
export const JOIN = 0;
/** [FRAMES, [to | null, count, frame | null, …]] node → primary; [FRAMES, [from, count, frame | null, …]] primary → node. A null frame: "all I had to tell you when we met is sent". */
export const FRAMES = 1;
/** [LEAVE]: stopCluster. */
export const LEAVE = 2;
/** [NAME, question, op, name, pid | null]: a global name's register, unregister, whereis, or the list. */
export const NAME = 3;
/** [BEAT]: a worker's node is alive (its event loop turns), sent every heartbeatMs. */
export const BEAT = 10;
// Primary → node:
/** [WELCOME, creation, nodes, heartbeatMs]: joined; the nodes already up; how often to send BEAT (0: never, the primary's own node). */
export const WELCOME = 4;
/** [REFUSED, code, message]: not joined. */
export const REFUSED = 5;
/** [UP, node]: a node joined. */
export const UP = 6;
/** [DOWN, node, why]: a node left, exited or lost its channel. */
export const DOWN = 7;
/** [DROPPED, count, why]: signals of this node the primary could not deliver (their node was gone). */
export const DROPPED = 8;
/** [ANSWER, question, value]. */
export const ANSWER = 9;

export type NameOp = "register" | "unregister" | "whereis" | "names";

export type NodeMessage =
  | [typeof JOIN, string, unknown]
  | [typeof FRAMES, unknown[]]
  | [typeof LEAVE]
  | [typeof BEAT]
  | [typeof NAME, number, NameOp, string, string | null];

export type PrimaryMessage =
  | [typeof WELCOME, number, string[], number]
  | [typeof REFUSED, "ERR_BADARG" | "ERR_NODE_NAME_TAKEN", string]
  | [typeof UP, string]
  | [typeof DOWN, string, string]
  | [typeof FRAMES, unknown[]]
  | [typeof DROPPED, number, string]
  | [typeof ANSWER, number, unknown];

/** The envelope that tells corral's messages from the application's on a shared IPC channel. */
export interface Envelope<M> {
  readonly corralDist: M;
}

export function isEnvelope(msg: unknown): msg is Envelope<unknown[]> {
  return typeof msg === "object" && msg !== null && Array.isArray((msg as { corralDist?: unknown }).corralDist);
}

/** A send whose failure (the channel closed meanwhile) is the channel's own news: 'disconnect' or 'exit' follows. */
export function ignoreSendError(): void {}

export interface ClusterPrimaryOptions {
  /** Where the primary logs a node message it could not read, and a worker it cut off; default the runtime's logger. */
  readonly logger?: Logger;
  /** How often each worker's node tells the primary it is alive. Default 1000 ms. */
  readonly heartbeatMs?: number;
  /**
   * A worker's node not heard from for this long (its event loop blocked) is lost: every other
   * node sees its pids go DOWN with "noconnection", and the primary kills the worker (SIGKILL)
   * so that whoever forked it can fork it again. At least twice heartbeatMs. Default 5000 ms.
   */
  readonly nodeTimeoutMs?: number;
  /**
   * Bytes the primary holds for one worker that does not read its channel (relayed frames not
   * yet taken by the channel); past it the worker is cut off as for nodeTimeoutMs. Default 32 MiB.
   */
  readonly maxBufferedBytes?: number;
}

interface PrimarySettings {
  readonly heartbeatMs: number;
  readonly nodeTimeoutMs: number;
  readonly maxBufferedBytes: number;
}

/** One node as the primary sees it: a worker's channel, or the primary's own node. */
export interface Link {
  /** The node's name while it is joined. */
  node: string | undefined;
  /** Frames for it waiting for the end of this tick: [from, count, frame, …]. */
  out: unknown[];
  /** Their bytes. */
  outBytes: number;
  readonly deliver: (msg: PrimaryMessage) => void;
  /** A worker's link: the worker, when its node was last heard from, and the bytes handed to its channel and not yet written. */
  readonly worker?: Worker;
  heard: number;
  sending: number;
}

const PRIMARY_OPTIONS: ReadonlySet<string> = new Set(["logger", "heartbeatMs", "nodeTimeoutMs", "maxBufferedBytes"]);

function frameBytes(frame: unknown): number {
  return frame instanceof Uint8Array ? frame.byteLength : 0;
}

/**
 * The workers' nodes meet here: a worker cannot reach another one, so the primary relays
 * their frames without decoding them (each tick's frames for a node leave in one IPC
 * message, in the order they came), tells every node when another joins or is gone (the
 * worker's exit or closed channel at once; a worker silent past nodeTimeoutMs, or not reading
 * past maxBufferedBytes, is cut off and killed), and holds the global names, which a node's
 * exit frees.
 */
export class Primary {
  private readonly byNode = new Map<string, Link>();
  private readonly workers = new Map<Worker, Link>();
  /** Runs of each node name so far: a name's next run gets ids past the last one's (Erlang's creation). */
  private readonly creations = new Map<string, number>();
  /** Global names: the printed pid and its node. */
  private readonly names = new Map<string, { pid: string; node: string }>();
  /** Links with frames waiting, sent together at the end of the tick. */
  private readonly pending: Link[] = [];
  private scheduled = false;
  /** Workers cut off (silent or not reading): killed, and whatever they still say is ignored. */
  private readonly cut = new WeakSet<Worker>();
  private watch: NodeJS.Timeout | undefined;

  constructor(
    private readonly log: Logger,
    private readonly settings: PrimarySettings,
  ) {
    cluster.on("message", (worker: Worker, msg: unknown) => {
      // Late lines from a worker already seen gone are not its node's any more.
      if (!isEnvelope(msg) || worker.isDead() || this.cut.has(worker)) return;
      let link = this.workers.get(worker);
      if (link === undefined) {
        const l: Link = {
          node: undefined,
          out: [],
          outBytes: 0,
          worker,
          heard: performance.now(),
          sending: 0,
          deliver: (m) => {
            if (!worker.isConnected()) return;
            const bytes = m[0] === FRAMES ? l.outBytes : 0;
            l.sending += bytes;
            worker.send({ corralDist: m } satisfies Envelope<PrimaryMessage>, undefined, undefined, () => (l.sending -= bytes));
          },
        };
        link = l;
        this.workers.set(worker, link);
      }
      link.heard = performance.now();
      this.handle(link, msg.corralDist as NodeMessage);
    });
    cluster.on("exit", (worker: Worker, code: number | null, signal: string | null) => this.gone(worker, `its process exited (${signal ?? `code ${code}`})`));
    cluster.on("disconnect", (worker: Worker) => this.gone(worker, "its IPC channel closed"));
  }

  private gone(worker: Worker, why: string): void {
    const link = this.workers.get(worker);
    if (link === undefined) return;
    this.workers.delete(worker);
    this.remove(link, why);
  }

  /** The primary's own node: its messages come in through handle, its deliveries are its own. */
  attach(deliver: (msg: PrimaryMessage) => void): Link {
    return { node: undefined, out: [], outBytes: 0, deliver, heard: 0, sending: 0 };
  }

  /** Every heartbeatMs: a worker's node silent past nodeTimeoutMs is cut off. */
  private watchBeats(): void {
    if (this.watch !== undefined) return;
    this.watch = setInterval(() => {
      const now = performance.now();
      for (const link of this.workers.values()) {
        if (link.node !== undefined && now - link.heard > this.settings.nodeTimeoutMs) this.cutOff(link, `no heartbeat for ${Math.round(now - link.heard)} ms`);
      }
    }, this.settings.heartbeatMs);
    this.watch.unref();
  }

  /**
   * A worker that is silent or does not read: its node is lost for every other node, and the
   * worker is killed, since it could not be told (the one channel it has is what failed); its
   * exit then tells whoever forked it, who may fork it again.
   */
  private cutOff(link: Link, why: string): void {
    const worker = link.worker!;
    this.log.error({ node: link.node, pid: worker.process.pid, why }, "cluster primary: a worker's node is cut off and the worker killed");
    this.workers.delete(worker);
    this.cut.add(worker);
    this.remove(link, why);
    worker.process.kill("SIGKILL");
  }

  handle(link: Link, msg: NodeMessage): void {
    try {
      switch (msg[0]) {
        case FRAMES:
          if (link.node !== undefined) this.relay(link, link.node, msg[1]);
          return;
        case JOIN:
          this.join(link, msg[1], msg[2]);
          return;
        case LEAVE:
          this.remove(link, "stopped");
          return;
        case NAME:
          this.name(link, msg[1], msg[2], msg[3], msg[4]);
          return;
        case BEAT:
          return;
      }
    } catch (err) {
      this.log.error({ err, node: link.node }, "cluster primary: a node's message could not be read");
    }
  }

  private join(link: Link, node: string, probe: unknown): void {
    if (!(probe instanceof Map)) {
      link.deliver([
        REFUSED,
        "ERR_BADARG",
        'startCluster: this worker\'s IPC channel does not carry v8-serialized data: the primary must call startClusterPrimary() before cluster.fork() (it sets serialization "advanced")',
      ]);
      return;
    }
    if (link.node !== undefined) {
      link.deliver([REFUSED, "ERR_BADARG", `startCluster: this process is already the node ${JSON.stringify(link.node)}`]);
      return;
    }
    if (this.byNode.has(node)) {
      link.deliver([REFUSED, "ERR_NODE_NAME_TAKEN", `startCluster: node name ${JSON.stringify(node)} is held by a live node`]);
      return;
    }
    const creation = this.creations.get(node) ?? 0;
    this.creations.set(node, creation + 1);
    const others = Array.from(this.byNode.keys());
    link.node = node;
    this.byNode.set(node, link);
    link.deliver([WELCOME, creation, others, link.worker === undefined ? 0 : this.settings.heartbeatMs]);
    if (link.worker !== undefined) this.watchBeats();
    for (const other of this.byNode.values()) if (other !== link) this.control(other, [UP, node]);
  }

  /** A node's frames, each to its node (or to every other): queued there for the end of the tick. */
  private relay(link: Link, from: string, frames: unknown[]): void {
    let lost = 0;
    for (let i = 0; i + 2 < frames.length; i += 3) {
      const to = frames[i] as string | null;
      const count = frames[i + 1] as number;
      const frame = frames[i + 2];
      if (to === null) {
        for (const other of this.byNode.values()) if (other !== link) this.queue(other, from, count, frame);
        continue;
      }
      const target = this.byNode.get(to);
      if (target === undefined) lost += count;
      else this.queue(target, from, count, frame);
    }
    if (lost > 0) this.control(link, [DROPPED, lost, "node not up"]);
  }

  private queue(link: Link, from: string, count: number, frame: unknown): void {
    if (link.out.length === 0) this.pending.push(link);
    link.out.push(from, count, frame);
    link.outBytes += frameBytes(frame);
    // A worker that does not read its channel: cut off rather than held in this process's memory without bound.
    if (link.worker !== undefined && link.sending + link.outBytes > this.settings.maxBufferedBytes) {
      this.cutOff(link, `${link.sending + link.outBytes} bytes relayed to it and not read (maxBufferedBytes ${this.settings.maxBufferedBytes})`);
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    process.nextTick(() => this.flush());
  }

  private flush(): void {
    this.scheduled = false;
    for (const link of this.pending) this.send(link);
    this.pending.length = 0;
  }

  private send(link: Link): void {
    if (link.out.length === 0) return;
    const out = link.out;
    link.out = [];
    link.deliver([FRAMES, out]);
    link.outBytes = 0;
  }

  /** A message for link after the frames already waiting for it. */
  private control(link: Link, msg: PrimaryMessage): void {
    this.send(link);
    link.deliver(msg);
  }

  /** link's node is gone: its names are free, the others are told, and what waited for it is counted against its senders. */
  private remove(link: Link, why: string): void {
    const node = link.node;
    if (node === undefined) return;
    link.node = undefined;
    this.byNode.delete(node);
    const lost = new Map<string, number>();
    for (let i = 0; i + 2 < link.out.length; i += 3) lost.set(link.out[i] as string, (lost.get(link.out[i] as string) ?? 0) + (link.out[i + 1] as number));
    link.out = [];
    link.outBytes = 0;
    for (const [from, n] of lost) {
      const sender = this.byNode.get(from);
      if (sender !== undefined && n > 0) this.control(sender, [DROPPED, n, "node lost"]);
    }
    for (const [name, held] of this.names) if (held.node === node) this.names.delete(name);
    for (const other of this.byNode.values()) this.control(other, [DOWN, node, why]);
  }

  /** global's table: a name is held by one pid at a time; a node's exit frees its names (remove). */
  private name(link: Link, question: number, op: NameOp, name: string, pid: string | null): void {
    let value: unknown = null;
    const held = this.names.get(name);
    if (op === "register") {
      value = link.node !== undefined && pid !== null && (held === undefined || held.pid === pid);
      if (value === true) this.names.set(name, { pid: pid!, node: link.node! });
    } else if (op === "unregister") {
      if (held !== undefined && (pid === null || held.pid === pid)) this.names.delete(name);
    } else if (op === "whereis") {
      value = held?.pid ?? null;
    } else {
      value = Array.from(this.names, ([n, h]) => [n, h.pid]);
    }
    this.control(link, [ANSWER, question, value]);
  }
}

let primary: Primary | undefined;

/**
 * Makes this process, the node:cluster primary, the place its workers' nodes meet: call it
 * before cluster.fork() (it sets serialization "advanced", so Buffers and Maps cross), then
 * each worker calls startCluster({ ipc: true }). It relays signals between workers, tells
 * every node when a worker exits, and holds the global names. startCluster({ ipc: true }) in
 * the primary starts it too, and makes the primary a node as well; once started, later calls
 * do nothing.
 */
export function startClusterPrimary(opts: ClusterPrimaryOptions = {}): void {
  if (typeof opts !== "object" || opts === null) throw badarg(`startClusterPrimary: expected { logger?, heartbeatMs?, nodeTimeoutMs?, maxBufferedBytes? }, got ${describe(opts)}`);
  knownKeys(opts, PRIMARY_OPTIONS, "startClusterPrimary");
  if (!cluster.isPrimary) throw badarg("startClusterPrimary: this process is a node:cluster worker; call it in the primary");
  const heartbeatMs = positive(opts.heartbeatMs, "startClusterPrimary: heartbeatMs must be a positive number", DEFAULTS.heartbeatMs);
  const nodeTimeoutMs = positive(opts.nodeTimeoutMs, "startClusterPrimary: nodeTimeoutMs must be a positive number", DEFAULTS.nodeTimeoutMs);
  if (nodeTimeoutMs < 2 * heartbeatMs) throw badarg(`startClusterPrimary: nodeTimeoutMs (${nodeTimeoutMs}) must be at least twice heartbeatMs (${heartbeatMs})`);
  const maxBufferedBytes = limit(opts.maxBufferedBytes, "startClusterPrimary: maxBufferedBytes must be a positive number or Infinity", DEFAULTS.maxBufferedBytes);
  primaryOf(opts.logger ?? runtimeLogger(), { heartbeatMs, nodeTimeoutMs, maxBufferedBytes });
}

const DEFAULTS: PrimarySettings = { heartbeatMs: 1000, nodeTimeoutMs: 5000, maxBufferedBytes: 32 * 1024 * 1024 };

/** @internal The running primary, started when this process (the primary) joins as a node first. */
export function primaryOf(logger: Logger, settings: PrimarySettings = DEFAULTS): Primary {
  if (primary === undefined) {
    cluster.setupPrimary({ serialization: "advanced" });
    primary = new Primary(logger, settings);
  }
  return primary;
}
