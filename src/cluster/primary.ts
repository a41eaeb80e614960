// epmd and global's name server for one machine: the node:cluster primary tells its workers' nodes where the others listen, watches them, and holds the global names.
import cluster, { type Worker } from "node:cluster";
import { randomBytes } from "node:crypto";
import { badarg, describe } from "../runtime/errors.js";
import { runtimeLogger, type Logger } from "../runtime/log.js";
import { knownKeys, limit, positive } from "../runtime/validate.js";
import { removeAddress } from "./connection.js";

// What a node and the primary say to each other over a worker's IPC channel, as { corralDist: message }.
// Signals never pass here: nodes write them to each other over their own connections (connection.ts).
// Node → primary:
/** [JOIN, node, probe, address]: the probe is a Map, which only v8 serialization carries as one; the address is where the node listens for the nodes that join after it. */
export const JOIN = 0;
/** [LEAVE]: stopCluster. */
export const LEAVE = 2;
/** [NAME, question, op, name, pid | null]: a global name's register, unregister, whereis, or the list. */
export const NAME = 3;
/** [BEAT]: a worker's node is alive (its event loop turns), sent every heartbeatMs. */
export const BEAT = 10;
/** [CUT, node, creation, why]: that node does not read what this node writes to it (past maxBufferedBytes). */
export const CUT = 11;
// Primary → node:
/**
 * [WELCOME, creation, nodes, heartbeatMs, cookie, maxBufferedBytes]: joined; the nodes already
 * up as [node, creation, address] (this node connects to each); how often to send BEAT (0:
 * never, the primary's own node); the cookie every HELLO carries; the bound on what a
 * node holds for another that does not read.
 */
export const WELCOME = 4;
/** [REFUSED, code, message]: not joined. */
export const REFUSED = 5;
/** [UP, node, creation]: a node joined; it connects to this node. */
export const UP = 6;
/** [DOWN, node, why]: a node left, exited, lost its channel or was cut off. */
export const DOWN = 7;
/** [ANSWER, question, value]. */
export const ANSWER = 9;

export type NameOp = "register" | "unregister" | "whereis" | "names";

export type NodeMessage =
  | [typeof JOIN, string, unknown, string]
  | [typeof LEAVE]
  | [typeof BEAT]
  | [typeof CUT, string, number, string]
  | [typeof NAME, number, NameOp, string, string | null];

/** A node already up, as WELCOME lists it: [node, creation, address]. */
export type NodeEntry = [string, number, string];

export type PrimaryMessage =
  | [typeof WELCOME, number, NodeEntry[], number, Buffer, number]
  | [typeof REFUSED, "ERR_BADARG" | "ERR_NODE_NAME_TAKEN", string]
  | [typeof UP, string, number]
  | [typeof DOWN, string, string]
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
   * Bytes a node holds for another node that does not read (written to their connection and
   * not yet taken); past it the writer tells the primary, which cuts the reader off as for
   * nodeTimeoutMs. Default 32 MiB.
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
  /** The node's name, run and address while it is joined. */
  node: string | undefined;
  creation: number;
  address: string;
  readonly deliver: (msg: PrimaryMessage) => void;
  /** A worker's link: the worker, and when its node was last heard from. */
  readonly worker?: Worker;
  heard: number;
}

const PRIMARY_OPTIONS: ReadonlySet<string> = new Set(["logger", "heartbeatMs", "nodeTimeoutMs", "maxBufferedBytes"]);

/**
 * The workers' nodes meet here, as Erlang's nodes meet through epmd: a node joins with the
 * address it listens on and is told the nodes already up (it connects to each, so signals go
 * from node to node and never through here); every node is told when another joins or is
 * gone (the worker's exit or closed channel at once; a worker silent past nodeTimeoutMs, or
 * reported by another node as not reading past maxBufferedBytes, is cut off and killed). It
 * holds the global names, which a node's exit frees.
 */
export class Primary {
  private readonly byNode = new Map<string, Link>();
  private readonly workers = new Map<Worker, Link>();
  /** Runs of each node name so far: a name's next run gets ids past the last one's (Erlang's creation). */
  private readonly creations = new Map<string, number>();
  /** Global names: the printed pid and its node. */
  private readonly names = new Map<string, { pid: string; node: string }>();
  /** What every HELLO between this primary's nodes carries: a local process that is not one of them cannot connect. */
  private readonly cookie = randomBytes(32);
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
        link = {
          node: undefined,
          creation: 0,
          address: "",
          worker,
          heard: performance.now(),
          deliver: (m) => {
            if (worker.isConnected()) worker.send({ corralDist: m } satisfies Envelope<PrimaryMessage>, undefined, undefined, ignoreSendError);
          },
        };
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
    // A worker killed could not remove its socket's directory itself.
    if (link.address !== "") removeAddress(link.address);
  }

  /** The primary's own node: its messages come in through handle, its deliveries are its own. */
  attach(deliver: (msg: PrimaryMessage) => void): Link {
    return { node: undefined, creation: 0, address: "", deliver, heard: 0 };
  }

  /**
   * Every heartbeatMs: a worker's node silent past nodeTimeoutMs is cut off. Silence is counted
   * only while this process listens: when its own event loop was held up, the heartbeats wait
   * unread in the channels, so the time it was late is added back to every worker.
   */
  private watchBeats(): void {
    if (this.watch !== undefined) return;
    let last = performance.now();
    this.watch = setInterval(() => {
      const now = performance.now();
      const late = now - last - this.settings.heartbeatMs;
      last = now;
      if (late > 0) for (const link of this.workers.values()) link.heard += late;
      if (late > this.settings.heartbeatMs) this.log.warn({ lateMs: Math.round(late) }, "cluster primary: its event loop was held up; the workers' heartbeats waited unread and no worker is judged on that time");
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
  private cutOff(link: Link, why: string, by?: string): void {
    const worker = link.worker!;
    this.log.error({ node: link.node, pid: worker.process.pid, why, ...(by === undefined ? {} : { by }) }, "cluster primary: a worker's node is cut off and the worker killed");
    this.workers.delete(worker);
    this.cut.add(worker);
    this.remove(link, why);
    worker.process.kill("SIGKILL");
    removeAddress(link.address);
  }

  handle(link: Link, msg: NodeMessage): void {
    try {
      switch (msg[0]) {
        case JOIN:
          this.join(link, msg[1], msg[2], msg[3]);
          return;
        case CUT:
          this.reported(link, msg[1], msg[2], msg[3]);
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

  private join(link: Link, node: string, probe: unknown, address: string): void {
    if (!(probe instanceof Map)) {
      link.deliver([
        REFUSED,
        "ERR_BADARG",
        'startCluster: this worker\'s IPC channel does not carry v8-serialized data: the primary must call startClusterPrimary() before cluster.fork() (it sets serialization "advanced")',
      ]);
      return;
    }
    if (typeof address !== "string" || address === "") {
      link.deliver([REFUSED, "ERR_BADARG", "startCluster: this node's JOIN carries no address to connect to (a corral of another version?)"]);
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
    const others = Array.from(this.byNode.values(), (l): NodeEntry => [l.node!, l.creation, l.address]);
    link.node = node;
    link.creation = creation;
    link.address = address;
    this.byNode.set(node, link);
    link.deliver([WELCOME, creation, others, link.worker === undefined ? 0 : this.settings.heartbeatMs, this.cookie, this.settings.maxBufferedBytes]);
    if (link.worker !== undefined) this.watchBeats();
    for (const other of this.byNode.values()) if (other !== link) other.deliver([UP, node, creation]);
  }

  /** A node says another does not read what it writes: that one is cut off, unless it is gone already or is this process. */
  private reported(link: Link, node: string, creation: number, why: string): void {
    const target = this.byNode.get(node);
    if (target === undefined || target.creation !== creation || link.node === undefined) return;
    if (target.worker === undefined) {
      this.log.error({ node, by: link.node, why }, "cluster primary: the primary's own node does not read what another node writes to it");
      return;
    }
    this.cutOff(target, why, link.node);
  }

  /** link's node is gone: its names are free and the others are told. */
  private remove(link: Link, why: string): void {
    const node = link.node;
    if (node === undefined) return;
    link.node = undefined;
    this.byNode.delete(node);
    for (const [name, held] of this.names) if (held.node === node) this.names.delete(name);
    for (const other of this.byNode.values()) other.deliver([DOWN, node, why]);
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
    link.deliver([ANSWER, question, value]);
  }
}

let primary: Primary | undefined;

/**
 * Makes this process, the node:cluster primary, the place its workers' nodes meet: call it
 * before cluster.fork() (it sets serialization "advanced", so Buffers and Maps cross), then
 * each worker calls startCluster({ ipc: true }). It tells each node where the others listen
 * (the nodes connect to each other directly), tells every node when a worker exits, and
 * holds the global names. startCluster({ ipc: true }) in
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
