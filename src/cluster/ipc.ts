// The distribution carrier on one machine: a node meets the others through the node:cluster primary (epmd) and writes to each over its own connection.
import cluster from "node:cluster";
import type { Socket } from "node:net";
import { startDist } from "../runtime/dist.js";
import { CorralError } from "../runtime/errors.js";
import { setGlobalStore, type GlobalStore } from "../runtime/global.js";
import type { Logger } from "../runtime/log.js";
import { setCreation, type Pid } from "../runtime/pid.js";
import { Carrier } from "./carrier.js";
import { reachable } from "./names.js";
import { connectTo, FrameReader, NodeConnection, NodeListener, sameCookie, SIGNALS, TOLD, type Hello, type Peer } from "./connection.js";
import {
  ANSWER,
  BEAT,
  CUT,
  DOWN,
  ignoreSendError,
  isEnvelope,
  JOIN,
  LEAVE,
  NAME,
  primaryOf,
  REFUSED,
  UP,
  WELCOME,
  type Envelope,
  type NameOp,
  type NodeEntry,
  type NodeMessage,
  type PrimaryMessage,
} from "./primary.js";

/** How long a worker waits for the primary's answer to its JOIN: no answer means no startClusterPrimary in the primary. */
const JOIN_TIMEOUT_MS = 5_000;
/** How long startCluster waits for the nodes already up to tell their group members. */
const MEET_TIMEOUT_MS = 5_000;

/** This node's end of the way to the primary. */
interface PrimaryLink {
  send(msg: NodeMessage): void;
  connected(): boolean;
  /** Stops listening: nothing more comes in. */
  close(): void;
}

/** A worker's channel to its primary, shared with the application's own messages. */
function workerLink(receive: (msg: PrimaryMessage) => void, gone: () => void): PrimaryLink {
  const onMessage = (msg: unknown): void => {
    if (isEnvelope(msg)) receive(msg.corralDist as PrimaryMessage);
  };
  process.on("message", onMessage);
  process.on("disconnect", gone);
  return {
    send(msg) {
      if (process.connected) process.send!({ corralDist: msg } satisfies Envelope<NodeMessage>, undefined, undefined, ignoreSendError);
    },
    connected: () => process.connected,
    close() {
      process.off("message", onMessage);
      process.off("disconnect", gone);
    },
  };
}

/** The primary's own node: the primary is in this process; what it delivers arrives a microtask later, as over a channel. */
function primaryLink(receive: (msg: PrimaryMessage) => void, logger: Logger): PrimaryLink {
  const primary = primaryOf(logger);
  let open = true;
  const link = primary.attach((msg) =>
    queueMicrotask(() => {
      if (open) receive(msg);
    }),
  );
  return {
    send: (msg) => primary.handle(link, msg),
    connected: () => open,
    close() {
      open = false;
    },
  };
}

/** global's names as the primary holds them: every call is a question over the channel. */
class PrimaryNames implements GlobalStore {
  constructor(
    private readonly ask: (op: NameOp, name: string, pid: string | null) => Promise<unknown>,
    private readonly node: string,
    private readonly isUp: (node: string) => boolean,
  ) {}

  async register(name: string, pid: Pid): Promise<boolean> {
    return (await this.ask("register", name, pid.toString())) === true;
  }

  async unregister(name: string, holder: Pid | undefined): Promise<void> {
    await this.ask("unregister", name, holder?.toString() ?? null);
  }

  async whereis(name: string): Promise<Pid | undefined> {
    const text = await this.ask("whereis", name, null);
    return typeof text === "string" ? reachable(text, this.node, this.isUp) : undefined;
  }

  async names(): Promise<string[]> {
    const held = (await this.ask("names", "", null)) as [string, string][];
    return held.filter(([, text]) => reachable(text, this.node, this.isUp) !== undefined).map(([name]) => name);
  }
}

/** How long a node the primary said is up has to connect to this node, and an accepted connection to be said up. */
const CONNECT_TIMEOUT_MS = 5_000;
/** How long a node said down by the primary may keep its connection open (what it sent before is read first). */
const DRAIN_MS = 1_000;

/** An accepted connection whose node the primary has not said is up yet: held paused, bounded in time. */
interface Early {
  readonly hello: Hello;
  readonly socket: Socket;
  readonly reader: FrameReader;
  readonly timer: NodeJS.Timeout;
}

/**
 * One node of a cluster whose nodes are the workers (and maybe the primary) of one node:cluster
 * primary. It listens on a socket of its own and joins through the primary, which tells it
 * the nodes already up; it connects to each of them, and each node that joins later connects
 * to it, so every pair of nodes has one connection and signals go straight from node to node,
 * each tick's for a node in one frame. The primary says when a node joins (UP) and when one is
 * gone (DOWN: the worker's exit at once, or its heartbeat (BEAT) missing for nodeTimeoutMs);
 * a node that does not read what this node writes past maxBufferedBytes is reported (CUT).
 * A node met sends its group members, then TOLD; startCluster waits for that from every node
 * already up.
 */
class IpcCarrier extends Carrier {
  readonly transport = "ipc";
  private readonly link: PrimaryLink;
  private readonly names: PrimaryNames;
  private listener: NodeListener | undefined;
  /** The cluster's cookie and the bound on what a node may leave unread: WELCOME's. */
  private cookie: Buffer | undefined;
  private maxUnread = Infinity;
  /** The connection to each node met. */
  private readonly conns = new Map<string, NodeConnection>();
  /** Connections of nodes said up that have not connected yet: closed when they do not in time. */
  private readonly arriving = new Map<NodeConnection, NodeJS.Timeout>();
  private readonly early = new Map<string, Early>();
  /** Why the primary said a node is down, while its connection drains. */
  private readonly downs = new Map<string, string>();
  /** Connections reported to the primary as not reading, closed at the end of this tick. */
  private readonly overran = new WeakSet<NodeConnection>();
  /** Connections written to in this flush: uncorked together when it ends. */
  private readonly corked = new Set<NodeConnection>();
  private readonly questions = new Map<number, { resolve: (value: unknown) => void; reject: (err: Error) => void }>();
  private nextQuestion = 1;
  /** The answer to JOIN, while startCluster waits for it. */
  private joined: ((refused: CorralError | undefined) => void) | undefined;
  /** Nodes whose members startCluster waits for. */
  private readonly awaiting = new Set<string>();
  private welcomed: (() => void) | undefined;
  /** The heartbeat to the primary, which cuts off a worker it has not heard from for its nodeTimeoutMs. */
  private beat: NodeJS.Timeout | undefined;

  constructor(node: string, logger: Logger) {
    // Signals for a node wait in its connection until it is there, so the carrier holds none back.
    super(node, logger, 0, 0);
    const receive = (msg: PrimaryMessage): void => this.receive(msg);
    this.link = cluster.isWorker ? workerLink(receive, () => this.primaryGone()) : primaryLink(receive, logger);
    this.names = new PrimaryNames((op, name, pid) => this.ask(op, name, pid), this.node, (n) => this.isUp(n));
  }

  protected open(): boolean {
    return true;
  }

  protected ship(node: string | null, body: Buffer, count: number): void {
    if (node === null) {
      for (const conn of this.conns.values()) this.write(conn, body, count);
      return;
    }
    const conn = this.conns.get(node);
    if (conn === undefined) this.drop(count, "node not up");
    else this.write(conn, body, count);
  }

  private write(conn: NodeConnection, body: Buffer, count: number): void {
    if (!this.corked.has(conn)) {
      conn.cork();
      this.corked.add(conn);
    }
    if (!conn.send(SIGNALS, body)) {
      this.drop(count, "connection closed");
      return;
    }
    if (conn.unread > this.maxUnread) this.overrun(conn);
  }

  protected override shipped(): void {
    for (const conn of this.corked) conn.uncork();
    this.corked.clear();
  }

  protected connected(): boolean {
    return this.link.connected();
  }

  /** A node that does not read: the primary cuts it off; here it is lost at once (after this flush). */
  private overrun(conn: NodeConnection): void {
    if (this.overran.has(conn)) return;
    this.overran.add(conn);
    const why = `${conn.unread} bytes written to it and not read (maxBufferedBytes ${this.maxUnread})`;
    this.link.send([CUT, conn.peer.node, conn.peer.creation, why]);
    process.nextTick(() => conn.destroy(why));
  }

  /** A connection for a node met; signals for it wait there until its socket is attached. */
  private connection(peer: Peer): NodeConnection {
    const conn: NodeConnection = new NodeConnection(peer, {
      frame: (kind, payload) => {
        if (kind === SIGNALS) this.deliver(peer.node, payload);
        else this.heardFrom(peer.node);
      },
      closed: (why) => this.closed(conn, why),
    });
    this.conns.set(peer.node, conn);
    return conn;
  }

  /** A connection is over: its node is lost, for the primary's reason if it gave one. */
  private closed(conn: NodeConnection, why: string): void {
    clearTimeout(this.arriving.get(conn));
    this.arriving.delete(conn);
    this.corked.delete(conn);
    const node = conn.peer.node;
    if (this.conns.get(node) !== conn) return;
    this.conns.delete(node);
    const down = this.downs.get(node);
    this.downs.delete(node);
    if (this.stopped) return;
    this.lost(node, down ?? why);
    this.heardFrom(node);
  }

  /** A socket that said HELLO: attached to its node's connection if the primary said it is up, held until it does if not. */
  private accepted(hello: Hello, socket: Socket, reader: FrameReader): void {
    if (this.stopped || (this.cookie !== undefined && !sameCookie(hello.cookie, this.cookie))) {
      socket.destroy();
      return;
    }
    const conn = this.conns.get(hello.node);
    if (conn !== undefined && conn.peer.creation === hello.creation && !conn.attached) {
      this.arrived(conn, socket, reader);
      return;
    }
    // A run this node has met already, or an older one: not the connection it waits for.
    if (conn !== undefined && conn.peer.creation >= hello.creation) {
      socket.destroy();
      return;
    }
    this.takeEarly(hello.node)?.socket.destroy();
    const timer = setTimeout(() => {
      this.early.delete(hello.node);
      socket.destroy();
    }, CONNECT_TIMEOUT_MS);
    timer.unref();
    this.early.set(hello.node, { hello, socket, reader, timer });
  }

  /** The held connection of node, out of the map and its timer stopped. */
  private takeEarly(node: string): Early | undefined {
    const early = this.early.get(node);
    if (early === undefined) return undefined;
    this.early.delete(node);
    clearTimeout(early.timer);
    return early;
  }

  private arrived(conn: NodeConnection, socket: Socket, reader: FrameReader): void {
    clearTimeout(this.arriving.get(conn));
    this.arriving.delete(conn);
    conn.attach(socket, reader);
  }

  /** A node joined after this one: it connects here; what this node tells it waits in its connection until it does. */
  private up(node: string, creation: number): void {
    // The same name's last run, if its connection still drains.
    this.conns.get(node)?.destroy("a new run of the node joined");
    const conn = this.connection({ node, creation });
    const early = this.takeEarly(node);
    if (early !== undefined && early.hello.creation === creation && sameCookie(early.hello.cookie, this.cookie!)) this.arrived(conn, early.socket, early.reader);
    else {
      early?.socket.destroy();
      const timer = setTimeout(() => conn.destroy(`it did not connect within ${CONNECT_TIMEOUT_MS / 1000} s`), CONNECT_TIMEOUT_MS);
      timer.unref();
      this.arriving.set(conn, timer);
    }
    this.met(node);
    this.told(node);
  }

  /** The primary says node is gone: lost once its connection has closed (what it sent before is read first), within DRAIN_MS. */
  private down(node: string, why: string): void {
    this.takeEarly(node)?.socket.destroy();
    const conn = this.conns.get(node);
    if (conn === undefined || !conn.attached) {
      conn?.destroy(why);
      // Not met yet, or lost already: nothing is read from it any more.
      this.heardFrom(node);
      return;
    }
    this.downs.set(node, why);
    setTimeout(() => conn.destroy(why), DRAIN_MS).unref();
  }

  private receive(msg: PrimaryMessage): void {
    if (this.stopped) return;
    switch (msg[0]) {
      case UP:
        this.up(msg[1], msg[2]);
        return;
      case DOWN:
        this.down(msg[1], msg[2]);
        return;
      case ANSWER: {
        const question = this.questions.get(msg[1]);
        this.questions.delete(msg[1]);
        question?.resolve(msg[2]);
        return;
      }
      case WELCOME:
        if (this.joined !== undefined) this.welcome(msg[1], msg[2], msg[3], msg[4], msg[5]);
        return;
      case REFUSED:
        this.joined?.(new CorralError(msg[1], msg[2]));
        return;
    }
  }

  /**
   * Joined: from here on the runtime sends through this node, and this node connects to every
   * node already up and meets it (its members, then TOLD). In the handler itself, so the next
   * message from the primary finds it done.
   */
  private welcome(creation: number, others: NodeEntry[], heartbeatMs: number, cookie: Buffer, maxUnread: number): void {
    if (!setCreation(creation) && creation > 0) this.log.debug({ node: this.node }, "cluster: ids already in use; this run keeps counting from them");
    this.cookie = Buffer.from(cookie);
    this.maxUnread = maxUnread;
    if (heartbeatMs > 0) {
      this.beat = setInterval(() => this.link.send([BEAT]), heartbeatMs);
      this.beat.unref();
    }
    startDist(this);
    setGlobalStore(this.names);
    for (const [node, c, address] of others) {
      this.awaiting.add(node);
      connectTo(address, this.cookie, { node: this.node, creation }, this.connection({ node, creation: c }));
      this.met(node);
      this.told(node);
    }
    this.joined?.(undefined);
  }

  /** After the members nodeUp queued for node: TOLD, which says they are all sent. */
  private told(node: string): void {
    this.flush();
    this.conns.get(node)?.send(TOLD, null);
  }

  /** node has told its members (or is gone): startCluster stops waiting for it. */
  private heardFrom(node: string): void {
    if (this.awaiting.delete(node) && this.awaiting.size === 0) this.welcomed?.();
  }

  private ask(op: NameOp, name: string, pid: string | null): Promise<unknown> {
    // Past LEAVE the primary has freed this node's names: only the releases of processes ending with the cluster come here.
    if (this.stopped) return Promise.resolve(null);
    if (!this.link.connected()) return Promise.reject(new CorralError("ERR_CLUSTER_CONNECT", `${op} ${JSON.stringify(name)}: the cluster primary is gone`));
    const question = this.nextQuestion++;
    return new Promise((resolve, reject) => {
      this.questions.set(question, { resolve, reject });
      this.link.send([NAME, question, op, name, pid]);
    });
  }

  /** The channel to the primary closed (it exited): every other node is lost with it. */
  private primaryGone(): void {
    clearInterval(this.beat);
    if (this.stopped) return;
    this.log.error({ node: this.node }, "cluster: the IPC channel to the primary closed; every other node is lost");
    for (const conn of Array.from(this.conns.values())) conn.destroy("the cluster primary is gone");
    for (const node of Array.from(this.seen.keys())) this.lost(node, "the cluster primary is gone");
    this.unanswered("the cluster primary is gone");
  }

  private unanswered(why: string): void {
    for (const { reject } of this.questions.values()) reject(new CorralError("ERR_CLUSTER_CONNECT", `global names: ${why}`));
    this.questions.clear();
  }

  /** Listens, joins through the primary and waits (bounded) until every node already up has told its members. */
  async start(): Promise<void> {
    this.listener = await NodeListener.listen((hello, socket, reader) => this.accepted(hello, socket, reader));
    const address = this.listener.address;
    const refused = await new Promise<CorralError | undefined>((resolve) => {
      const timer = setTimeout(() => {
        this.joined = undefined;
        // Should the JOIN be answered after all, the primary forgets this node again.
        this.link.send([LEAVE]);
        resolve(
          new CorralError(
            "ERR_CLUSTER_CONNECT",
            `startCluster: no cluster primary answered over IPC within ${JOIN_TIMEOUT_MS / 1000} s (the primary must call startClusterPrimary() before cluster.fork())`,
          ),
        );
      }, JOIN_TIMEOUT_MS);
      this.joined = (err) => {
        clearTimeout(timer);
        this.joined = undefined;
        resolve(err);
      };
      this.link.send([JOIN, this.node, new Map(), address]);
    });
    if (refused !== undefined) throw refused;
    if (this.awaiting.size === 0) return;
    let timeout: NodeJS.Timeout | undefined;
    await Promise.race([new Promise<void>((resolve) => (this.welcomed = resolve)), new Promise<void>((resolve) => (timeout = setTimeout(resolve, MEET_TIMEOUT_MS)))]);
    clearTimeout(timeout);
    this.welcomed = undefined;
    this.awaiting.clear();
  }

  /** The listener and every connection not said goodbye on, closed without a word. */
  private closeAll(why: string): void {
    clearInterval(this.beat);
    for (const conn of Array.from(this.conns.values())) conn.destroy(why);
    this.conns.clear();
    for (const node of Array.from(this.early.keys())) this.takeEarly(node)!.socket.destroy();
    this.listener?.close();
  }

  override abandon(): void {
    super.abandon();
    this.closeAll("the cluster did not start");
    this.link.close();
  }

  /**
   * BYE on every connection, and LEAVE, which the primary passes on to the nodes this one has
   * no connection with yet; resolves once what was written has left (bounded by DRAIN_MS).
   */
  protected async goodbye(): Promise<void> {
    const byes = Array.from(this.conns.values(), (conn) => conn.bye("stopped"));
    this.conns.clear();
    this.closeAll("stopped");
    this.link.send([LEAVE]);
    this.link.close();
    this.unanswered("the cluster stopped");
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(byes), new Promise<void>((resolve) => (timer = setTimeout(resolve, DRAIN_MS)))]);
    clearTimeout(timer);
  }
}

/** Joins this node to the nodes of its node:cluster primary; rejects with ERR_CLUSTER_CONNECT or ERR_NODE_NAME_TAKEN. */
export async function startIpcCarrier(node: string, logger: Logger): Promise<Carrier> {
  const carrier = new IpcCarrier(node, logger);
  try {
    await carrier.start();
  } catch (err) {
    carrier.abandon();
    throw err;
  }
  return carrier;
}
