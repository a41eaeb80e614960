// The distribution carrier over node:cluster's IPC channel: a node on one machine meets the others through the primary.
import cluster from "node:cluster";
import { startDist } from "../runtime/dist.js";
import { CorralError } from "../runtime/errors.js";
import { setGlobalStore, type GlobalStore } from "../runtime/global.js";
import type { Logger } from "../runtime/log.js";
import { setCreation, type Pid } from "../runtime/pid.js";
import { Carrier } from "./carrier.js";
import { reachable } from "./names.js";
import {
  ANSWER,
  BEAT,
  DOWN,
  DROPPED,
  FRAMES,
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
  type NodeMessage,
  type PrimaryMessage,
} from "./primary.js";

/** How long a worker waits for the primary's answer to its JOIN: no answer means no primary relays. */
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

/** The primary's own node: the relay is in this process; what it delivers arrives a microtask later, as over a channel. */
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

/**
 * One node of a cluster whose nodes are the workers (and maybe the primary) of one node:cluster
 * primary. Each tick's frames leave in one IPC message, which the primary relays without
 * decoding; it says when a node joins (UP) and when one is gone (DOWN: the worker's exit at
 * once, or its heartbeat (BEAT) missing for the primary's nodeTimeoutMs). A node met sends its group members, then an empty
 * frame that says it has; startCluster waits for that from every node already up.
 */
class IpcCarrier extends Carrier {
  readonly transport = "ipc";
  private readonly link: PrimaryLink;
  private readonly names: PrimaryNames;
  /** This flush's frames: [to | null, count, frame, …]. */
  private frames: unknown[] = [];
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
    // Never holds signals back (the channel takes them at once), so no buffer bounds apply.
    super(node, logger, 0, 0);
    const receive = (msg: PrimaryMessage): void => this.receive(msg);
    this.link = cluster.isWorker ? workerLink(receive, () => this.primaryGone()) : primaryLink(receive, logger);
    this.names = new PrimaryNames((op, name, pid) => this.ask(op, name, pid), this.node, (n) => this.isUp(n));
  }

  protected open(): boolean {
    return true;
  }

  protected ship(node: string | null, body: Buffer, count: number): void {
    this.frames.push(node, count, body);
  }

  protected override shipped(): void {
    if (this.frames.length === 0) return;
    const frames = this.frames;
    this.frames = [];
    if (this.link.connected()) {
      this.link.send([FRAMES, frames]);
      return;
    }
    let count = 0;
    for (let i = 1; i < frames.length; i += 3) count += frames[i] as number;
    this.drop(count, "IPC channel closed");
  }

  protected connected(): boolean {
    return this.link.connected();
  }

  private receive(msg: PrimaryMessage): void {
    if (this.stopped) return;
    switch (msg[0]) {
      case FRAMES: {
        const frames = msg[1];
        for (let i = 0; i + 2 < frames.length; i += 3) {
          const from = frames[i] as string;
          // A node already lost sends nothing more, as after an Erlang disconnect.
          if (!this.seen.has(from)) continue;
          const body = frames[i + 2] as Uint8Array | null;
          if (body !== null) this.deliver(from, body);
          else this.heardFrom(from);
        }
        return;
      }
      case UP:
        this.met(msg[1]);
        this.told(msg[1]);
        return;
      case DOWN:
        this.lost(msg[1], msg[2]);
        this.heardFrom(msg[1]);
        return;
      case DROPPED:
        this.drop(msg[1], msg[2]);
        return;
      case ANSWER: {
        const question = this.questions.get(msg[1]);
        this.questions.delete(msg[1]);
        question?.resolve(msg[2]);
        return;
      }
      case WELCOME:
        if (this.joined !== undefined) this.welcome(msg[1], msg[2], msg[3]);
        return;
      case REFUSED:
        this.joined?.(new CorralError(msg[1], msg[2]));
        return;
    }
  }

  /**
   * Joined: from here on the runtime sends through this node, and every node already up is
   * met (told this node's members, then the empty frame). In the handler itself, so the next
   * message from the primary finds it done.
   */
  private welcome(creation: number, others: string[], heartbeatMs: number): void {
    if (!setCreation(creation) && creation > 0) this.log.debug({ node: this.node }, "cluster: ids already in use; this run keeps counting from them");
    if (heartbeatMs > 0) {
      this.beat = setInterval(() => this.link.send([BEAT]), heartbeatMs);
      this.beat.unref();
    }
    startDist(this);
    setGlobalStore(this.names);
    for (const node of others) {
      this.awaiting.add(node);
      this.met(node);
      this.told(node);
    }
    this.joined?.(undefined);
  }

  /** After the members nodeUp queued for node: the empty frame that says they are all sent. */
  private told(node: string): void {
    this.flush();
    this.link.send([FRAMES, [node, 0, null]]);
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
    for (const node of Array.from(this.seen.keys())) this.lost(node, "the cluster primary is gone");
    this.unanswered("the cluster primary is gone");
  }

  private unanswered(why: string): void {
    for (const { reject } of this.questions.values()) reject(new CorralError("ERR_CLUSTER_CONNECT", `global names: ${why}`));
    this.questions.clear();
  }

  /** Joins through the primary and waits (bounded) until every node already up has told its members. */
  async start(): Promise<void> {
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
      this.link.send([JOIN, this.node, new Map()]);
    });
    if (refused !== undefined) throw refused;
    if (this.awaiting.size === 0) return;
    let timeout: NodeJS.Timeout | undefined;
    await Promise.race([new Promise<void>((resolve) => (this.welcomed = resolve)), new Promise<void>((resolve) => (timeout = setTimeout(resolve, MEET_TIMEOUT_MS)))]);
    clearTimeout(timeout);
    this.welcomed = undefined;
    this.awaiting.clear();
  }

  override abandon(): void {
    super.abandon();
    clearInterval(this.beat);
    this.link.close();
  }

  /** Tells the primary, which tells the others at once. */
  protected goodbye(): Promise<void> {
    clearInterval(this.beat);
    this.link.send([LEAVE]);
    this.link.close();
    this.unanswered("the cluster stopped");
    return Promise.resolve();
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
