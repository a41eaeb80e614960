// inet_tcp_dist and dist_util's handshake, on one machine: a direct connection between two nodes over a Unix socket (a named pipe on Windows), frames prefixed by their length.
import { randomBytes, timingSafeEqual } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { deserialize, serialize } from "node:v8";
import { CorralError } from "../runtime/errors.js";

// A frame on the wire: [length: u32 BE, counting the kind byte][kind: u8][payload].
/** [cookie, node, creation] (v8): the first frame of the connecting node, and only then. */
const HELLO = 0;
/** A frame of signals, as the carrier encoded it. */
export const SIGNALS = 1;
/** Empty: "all I had to tell you when we met is sent". */
export const TOLD = 2;
/** The reason, UTF-8: the sender leaves (stopCluster); nothing follows. */
const BYE = 3;

export type FrameKind = typeof SIGNALS | typeof TOLD;

/** A HELLO is three short fields; anything longer is not a node of this cluster. */
const MAX_HELLO = 1024;
/** How long an accepted socket has to say HELLO. */
const HELLO_TIMEOUT_MS = 5_000;
const SOCKET_NAME = "node.sock";
/** Longest Unix socket path Linux and macOS both take (sun_path, less the terminator). */
const MAX_SOCKET_PATH = 103;

/** Who a node is: its name and its run (Erlang's creation), as its HELLO says and the primary told. */
export interface Peer {
  readonly node: string;
  readonly creation: number;
}

/** A HELLO as read: the cookie is checked by the node, which may learn the cluster's cookie only after the HELLO came. */
export interface Hello extends Peer {
  readonly cookie: Buffer;
}

/**
 * Reads length-prefixed frames from a byte stream. A frame that arrived whole in one chunk is
 * handed on as a view of it; only a frame split across chunks is copied, once, when its last
 * byte is in. It can stop between two frames (the rest waits for resume).
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private size = 0;
  private stopped = false;

  /**
   * onFrame returns false to stop reading after this frame, and throws for a frame that breaks
   * the protocol; a frame announced longer than maxFrame breaks it too.
   */
  constructor(
    public onFrame: (kind: number, payload: Buffer) => boolean,
    public maxFrame = Infinity,
  ) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    if (!this.stopped) this.read();
  }

  /** Reads the frames already in, after a stop. */
  resume(): void {
    this.stopped = false;
    this.read();
  }

  private read(): void {
    while (!this.stopped && this.size >= 5) {
      const length = this.gather(5).readUInt32BE(0);
      if (length === 0) throw new Error("a frame without its kind byte");
      if (length > this.maxFrame) throw new Error(`a frame of ${length} bytes, above ${this.maxFrame}`);
      const end = 4 + length;
      if (this.size < end) return;
      const buf = this.gather(end);
      if (buf.length === end) this.chunks.shift();
      else this.chunks[0] = buf.subarray(end);
      this.size -= end;
      if (!this.onFrame(buf[4]!, buf.subarray(5, end))) this.stopped = true;
    }
  }

  /** The first chunk, made to hold at least n bytes (n ≤ size) by copying just those bytes out of the next ones. */
  private gather(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) return first;
    const out = Buffer.allocUnsafe(n);
    for (let off = 0; off < n; ) {
      const c = this.chunks[0]!;
      const take = Math.min(c.length, n - off);
      c.copy(out, off, 0, take);
      off += take;
      if (take === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(take);
    }
    this.chunks.unshift(out);
    return out;
  }
}

/** What a connection tells its node. */
export interface ConnectionEvents {
  /** A frame of signals, or TOLD (payload empty). */
  frame(kind: FrameKind, payload: Buffer): void;
  /** The connection is over: the peer said BYE (its reason), or the socket closed or failed. Once. */
  closed(why: string): void;
}

function header(kind: number, length: number): Buffer {
  const h = Buffer.allocUnsafe(5);
  h.writeUInt32BE(length + 1, 0);
  h[4] = kind;
  return h;
}

/**
 * One node's connection to another: frames written before the socket is there wait, in order,
 * and leave with the first ones once it is attached. Writes are corked by the carrier for a
 * tick's frames, so a header and its body go out in one system call.
 */
export class NodeConnection {
  private socket: Socket | undefined;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Nothing more is written (BYE sent, or closed). */
  private over = false;
  /** events.closed has been called. */
  private ended = false;

  constructor(
    readonly peer: Peer,
    private readonly events: ConnectionEvents,
  ) {}

  get attached(): boolean {
    return this.socket !== undefined;
  }

  /** Bytes written and not yet taken by the peer (pending, or in the socket's buffer). */
  get unread(): number {
    return this.pendingBytes + (this.socket?.writableLength ?? 0);
  }

  /**
   * The socket is this node's way to the peer from now on: what waited leaves first; frames
   * read go to events. An accepted socket comes with the reader that read its HELLO, holding
   * what followed it.
   */
  attach(socket: Socket, reader?: FrameReader): void {
    if (this.ended) {
      socket.destroy();
      return;
    }
    this.socket = socket;
    const onFrame = (kind: number, payload: Buffer): boolean => {
      this.frameIn(kind, payload);
      return !this.ended;
    };
    const frames = reader ?? new FrameReader(onFrame);
    // A reader that read a HELLO was bounded to its size; a node's frames are not.
    frames.onFrame = onFrame;
    frames.maxFrame = Infinity;
    socket.on("data", (chunk: Buffer) => this.read(frames, chunk));
    socket.on("error", (err) => this.close(`connection failed: ${err.message}`));
    socket.on("close", () => this.close("connection closed"));
    if (this.pending.length > 0) {
      socket.cork();
      for (const b of this.pending) socket.write(b);
      socket.uncork();
      this.pending = [];
      this.pendingBytes = 0;
    }
    if (reader === undefined) return;
    socket.resume();
    try {
      reader.resume();
    } catch (err) {
      this.broken(err);
    }
  }

  private read(reader: FrameReader, chunk: Buffer): void {
    try {
      reader.push(chunk);
    } catch (err) {
      this.broken(err);
    }
  }

  private broken(err: unknown): void {
    this.socket?.destroy();
    this.close(`a frame broke the protocol: ${(err as Error).message}`);
  }

  private frameIn(kind: number, payload: Buffer): void {
    if (this.ended) return;
    if (kind === SIGNALS || kind === TOLD) this.events.frame(kind, payload);
    else if (kind === BYE) {
      this.close(payload.toString("utf8") || "stopped");
      this.socket?.end();
    } else this.broken(new Error(`unknown frame kind ${kind}`));
  }

  cork(): void {
    this.socket?.cork();
  }

  uncork(): void {
    this.socket?.uncork();
  }

  /** Queues one frame; false once the connection is over. */
  send(kind: FrameKind, body: Buffer | null): boolean {
    if (this.over) return false;
    const h = header(kind, body?.length ?? 0);
    if (this.socket === undefined) {
      this.pending.push(h);
      if (body !== null) this.pending.push(body);
      this.pendingBytes += h.length + (body?.length ?? 0);
      return true;
    }
    this.socket.write(h);
    if (body !== null) this.socket.write(body);
    return true;
  }

  /** Leaves: BYE with the reason, then the socket ends once what is written is out; resolves when it has (or is closed). */
  bye(why: string): Promise<void> {
    const socket = this.socket;
    if (this.over || socket === undefined) {
      this.destroy(why);
      return Promise.resolve();
    }
    this.over = true;
    const reason = Buffer.from(why, "utf8");
    socket.write(header(BYE, reason.length));
    return new Promise((resolve) => {
      socket.once("close", () => resolve());
      socket.end(reason, () => resolve());
    });
  }

  /** Ends it now, without a word: nothing more is read or written. */
  destroy(why: string): void {
    this.close(why);
    this.socket?.destroy();
  }

  private close(why: string): void {
    if (this.ended) return;
    this.ended = this.over = true;
    this.pending = [];
    this.pendingBytes = 0;
    this.events.closed(why);
  }
}

/** A fresh address for this node's listener, in a directory only this user can enter. */
function freshAddress(): { address: string; dir: string | undefined } {
  if (process.platform === "win32") return { address: `\\\\.\\pipe\\corral-${process.pid}-${randomBytes(8).toString("hex")}`, dir: undefined };
  const dir = mkdtempSync(join(tmpdir(), "corral-"));
  const address = join(dir, SOCKET_NAME);
  if (Buffer.byteLength(address) > MAX_SOCKET_PATH) {
    rmSync(dir, { recursive: true, force: true });
    throw new CorralError("ERR_CLUSTER_CONNECT", `startCluster: the socket path ${JSON.stringify(address)} is longer than ${MAX_SOCKET_PATH} bytes; set TMPDIR to a shorter directory`);
  }
  return { address, dir };
}

/** Whether two cookies are the same, in constant time. */
export function sameCookie(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * This node's listener for the nodes that meet it after it joined (a later node connects to
 * every node already up; so each pair has one connection). A socket that says a well-formed
 * HELLO first, within bounds of size and time, is handed to the node paused, with what
 * followed the HELLO kept unread: the node checks the cookie and reads nothing from a node
 * before the primary has said it is up.
 */
export class NodeListener {
  readonly address: string;
  private readonly dir: string | undefined;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  private constructor(private readonly accepted: (hello: Hello, socket: Socket, reader: FrameReader) => void) {
    ({ address: this.address, dir: this.dir } = freshAddress());
    this.server = createServer((socket) => this.greet(socket));
  }

  static async listen(accepted: (hello: Hello, socket: Socket, reader: FrameReader) => void): Promise<NodeListener> {
    const listener = new NodeListener(accepted);
    await new Promise<void>((resolve, reject) => {
      listener.server.once("error", (err) => {
        listener.removeDir();
        reject(new CorralError("ERR_CLUSTER_CONNECT", `startCluster: cannot listen on ${listener.address} for the other nodes: ${err.message}`));
      });
      // exclusive: in a node:cluster worker, listen() would otherwise hand the socket to the primary, which would pass every connection on.
      listener.server.listen({ path: listener.address, exclusive: true }, () => resolve());
    });
    listener.server.on("error", () => {});
    return listener;
  }

  /** Reads the HELLO, bounded in size and time; a socket that fails it is closed without a word. */
  private greet(socket: Socket): void {
    this.sockets.add(socket);
    socket.on("close", () => this.sockets.delete(socket));
    socket.on("error", () => {});
    const timer = setTimeout(() => socket.destroy(), HELLO_TIMEOUT_MS);
    timer.unref();
    let hello: Hello | undefined;
    const reader = new FrameReader((kind, payload) => {
      hello = this.check(kind, payload);
      return false;
    }, MAX_HELLO);
    const onData = (chunk: Buffer): void => {
      try {
        reader.push(chunk);
      } catch {
        clearTimeout(timer);
        socket.destroy();
        return;
      }
      if (hello === undefined) return;
      clearTimeout(timer);
      socket.off("data", onData);
      socket.pause();
      this.sockets.delete(socket);
      this.accepted(hello, socket, reader);
    };
    socket.on("data", onData);
  }

  private check(kind: number, payload: Buffer): Hello {
    if (kind !== HELLO) throw new Error("not a HELLO");
    const fields: unknown = deserialize(payload);
    if (!Array.isArray(fields) || fields.length !== 3) throw new Error("not a HELLO");
    const [cookie, node, creation] = fields as unknown[];
    if (!(cookie instanceof Uint8Array) || typeof node !== "string" || node === "" || !Number.isSafeInteger(creation) || (creation as number) < 0) throw new Error("not a HELLO");
    return { cookie: Buffer.from(cookie), node, creation: creation as number };
  }

  close(): void {
    this.server.close();
    for (const socket of this.sockets) socket.destroy();
    this.removeDir();
  }

  private removeDir(): void {
    if (this.dir !== undefined) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Removes the directory of a node's address, when it is one freshAddress made: what a killed node left behind. */
export function removeAddress(address: string): void {
  const dir = dirname(address);
  if (basename(address) === SOCKET_NAME && dirname(dir) === tmpdir() && basename(dir).startsWith("corral-")) rmSync(dir, { recursive: true, force: true });
}

/** Connects to a node already up: the socket is attached to conn, HELLO first. */
export function connectTo(address: string, cookie: Buffer, self: Peer, conn: NodeConnection): void {
  const socket = createConnection(address);
  const hello = serialize([cookie, self.node, self.creation]);
  // Before anything the connection queued: the HELLO is the first frame on the wire.
  socket.write(header(HELLO, hello.length));
  socket.write(hello);
  conn.attach(socket);
}
