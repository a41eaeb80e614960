/**
 * A raw TCP WebSocket client for protocol tests: it sends exactly the bytes a test builds
 * (any fin/rsv/opcode/length form, masked or not, in any chunking) and parses every frame
 * the server sends, without answering anything by itself (no automatic pong or close reply).
 */
import { createHash, randomBytes } from "node:crypto";
import { connect as netConnect, type Socket } from "node:net";

export const OP = {
  continuation: 0x0,
  text: 0x1,
  binary: 0x2,
  close: 0x8,
  ping: 0x9,
  pong: 0xa,
} as const;

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** What a test wants on the wire. Defaults: fin, no rsv bits, masked, minimal length form. */
export interface FrameSpec {
  readonly opcode: number;
  readonly payload?: Uint8Array | string;
  readonly fin?: boolean;
  /** The three RSV bits as a number 0–7 (4 = RSV1, 2 = RSV2, 1 = RSV3). */
  readonly rsv?: number;
  readonly mask?: boolean;
  readonly maskKey?: Uint8Array;
  /** Force the length encoding: 7-bit, 16-bit (126) or 64-bit (127). */
  readonly lengthForm?: 7 | 16 | 64;
}

/** Builds one frame's bytes. */
export function encodeFrame(spec: FrameSpec): Buffer {
  const payload = typeof spec.payload === "string" ? Buffer.from(spec.payload, "utf8") : Buffer.from(spec.payload ?? new Uint8Array(0));
  const fin = spec.fin ?? true;
  const rsv = spec.rsv ?? 0;
  const mask = spec.mask ?? true;
  const len = payload.length;
  const form = spec.lengthForm ?? (len <= 125 ? 7 : len <= 0xffff ? 16 : 64);
  const head: number[] = [(fin ? 0x80 : 0) | ((rsv & 7) << 4) | (spec.opcode & 0x0f)];
  const maskBit = mask ? 0x80 : 0;
  let ext: Buffer;
  if (form === 7) {
    if (len > 125) throw new Error(`encodeFrame: ${len} bytes do not fit the 7-bit length`);
    head.push(maskBit | len);
    ext = Buffer.alloc(0);
  } else if (form === 16) {
    if (len > 0xffff) throw new Error(`encodeFrame: ${len} bytes do not fit the 16-bit length`);
    head.push(maskBit | 126);
    ext = Buffer.alloc(2);
    ext.writeUInt16BE(len);
  } else {
    head.push(maskBit | 127);
    ext = Buffer.alloc(8);
    ext.writeBigUInt64BE(BigInt(len));
  }
  if (!mask) return Buffer.concat([Buffer.from(head), ext, payload]);
  const key = Buffer.from(spec.maskKey ?? randomBytes(4));
  const masked = Buffer.alloc(len);
  for (let i = 0; i < len; i++) masked[i] = payload[i]! ^ key[i & 3]!;
  return Buffer.concat([Buffer.from(head), ext, key, masked]);
}

/** A close frame's payload: 2-byte code and reason (string as UTF-8, or raw bytes). */
export function closePayload(code: number, reason: string | Uint8Array = ""): Buffer {
  const r = typeof reason === "string" ? Buffer.from(reason, "utf8") : Buffer.from(reason);
  const b = Buffer.alloc(2 + r.length);
  b.writeUInt16BE(code);
  r.copy(b, 2);
  return b;
}

/** A frame the server sent, parsed. */
export interface ServerFrame {
  readonly fin: boolean;
  readonly rsv: number;
  readonly opcode: number;
  readonly masked: boolean;
  readonly payload: Buffer;
  readonly type: "continuation" | "text" | "binary" | "close" | "ping" | "pong" | "reserved";
  /** For close frames with a payload. */
  readonly code?: number;
  readonly reason?: string;
}

function typeOf(opcode: number): ServerFrame["type"] {
  switch (opcode) {
    case 0x0:
      return "continuation";
    case 0x1:
      return "text";
    case 0x2:
      return "binary";
    case 0x8:
      return "close";
    case 0x9:
      return "ping";
    case 0xa:
      return "pong";
    default:
      return "reserved";
  }
}

export interface ConnectOptions {
  readonly path?: string;
  /** Extra request header lines, e.g. { "Sec-WebSocket-Extensions": "permessage-deflate" }. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Bytes appended to the handshake in the same write (e.g. a first frame). */
  readonly extra?: Uint8Array;
  readonly timeoutMs?: number;
}

export interface HandshakeResponse {
  readonly status: number;
  /** Lower-case names. */
  readonly headers: Readonly<Record<string, string>>;
}

const sleepMs = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const immediate = (): Promise<void> => new Promise((r) => setImmediate(r));

export class RawClient {
  readonly socket: Socket;
  readonly key: string;
  response: HandshakeResponse | undefined = undefined;
  /** Every frame received so far, in order (the queue consumes from `pending`). */
  readonly received: ServerFrame[] = [];
  /** Resolves when the TCP socket is closed (either side). */
  readonly closed: Promise<void>;
  isClosed = false;
  /** The server sent FIN. */
  ended = false;
  private buf: Buffer = Buffer.alloc(0);
  private readonly pending: ServerFrame[] = [];
  private waiters: Array<() => void> = [];
  private handshake: { resolve: (r: HandshakeResponse) => void; reject: (e: Error) => void } | null = null;
  private parseError: Error | null = null;

  private constructor(socket: Socket, key: string) {
    this.socket = socket;
    this.key = key;
    this.closed = new Promise<void>((resolve) => {
      socket.on("close", () => {
        this.isClosed = true;
        this.handshake?.reject(new Error("socket closed during the handshake"));
        this.handshake = null;
        this.wake();
        resolve();
      });
    });
    socket.on("end", () => {
      this.ended = true;
    });
    socket.on("error", () => {
      // ECONNRESET and the like: 'close' follows.
    });
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
  }

  /** Opens a TCP connection and sends the handshake (plus `extra`), resolving with the parsed response. */
  static async connect(port: number, opts: ConnectOptions = {}): Promise<RawClient> {
    const socket = netConnect({ host: "127.0.0.1", port });
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const key = randomBytes(16).toString("base64");
    const client = new RawClient(socket, key);
    const lines = [
      `GET ${opts.path ?? "/"} HTTP/1.1`,
      `Host: 127.0.0.1:${port}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      `Sec-WebSocket-Key: ${key}`,
      "Sec-WebSocket-Version: 13",
      ...Object.entries(opts.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
    ];
    const head = Buffer.from(lines.join("\r\n") + "\r\n\r\n", "latin1");
    const response = new Promise<HandshakeResponse>((resolve, reject) => {
      client.handshake = { resolve, reject };
    });
    socket.write(opts.extra === undefined ? head : Buffer.concat([head, opts.extra]));
    const timeoutMs = opts.timeoutMs ?? 2000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no handshake response within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      client.response = await Promise.race([response, timeout]);
    } catch (err) {
      socket.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return client;
  }

  /** Like connect, but insists on a correct 101. */
  static async open(port: number, opts: ConnectOptions = {}): Promise<RawClient> {
    const client = await RawClient.connect(port, opts);
    const r = client.response!;
    const accept = createHash("sha1").update(client.key + GUID).digest("base64");
    if (r.status !== 101 || r.headers["sec-websocket-accept"] !== accept) {
      client.destroy();
      throw new Error(`handshake failed: status ${r.status}, accept ${r.headers["sec-websocket-accept"]} (expected ${accept})`);
    }
    return client;
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.handshake !== null) {
      const end = this.buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const text = this.buf.subarray(0, end).toString("latin1");
      this.buf = this.buf.subarray(end + 4);
      const [statusLine = "", ...headerLines] = text.split("\r\n");
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? NaN);
      const headers: Record<string, string> = {};
      for (const line of headerLines) {
        const i = line.indexOf(":");
        if (i < 0) continue;
        const name = line.slice(0, i).trim().toLowerCase();
        const value = line.slice(i + 1).trim();
        headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
      }
      const h = this.handshake;
      this.handshake = null;
      h.resolve({ status, headers });
      if (status !== 101) return;
    }
    this.parseFrames();
  }

  private parseFrames(): void {
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      const b0 = b[0]!;
      const b1 = b[1]!;
      const masked = (b1 & 0x80) !== 0;
      let len = b1 & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        const big = b.readBigUInt64BE(2);
        if (big > BigInt(Number.MAX_SAFE_INTEGER)) {
          this.parseError = new Error(`server frame length ${big} is absurd`);
          this.wake();
          return;
        }
        len = Number(big);
        off = 10;
      }
      let key: Buffer | undefined;
      if (masked) {
        if (b.length < off + 4) return;
        key = b.subarray(off, off + 4);
        off += 4;
      }
      if (b.length < off + len) return;
      const payload = Buffer.from(b.subarray(off, off + len));
      if (key !== undefined) for (let i = 0; i < len; i++) payload[i] = payload[i]! ^ key[i & 3]!;
      this.buf = b.subarray(off + len);
      const opcode = b0 & 0x0f;
      const type = typeOf(opcode);
      let frame: ServerFrame = { fin: (b0 & 0x80) !== 0, rsv: (b0 >> 4) & 7, opcode, masked, payload, type };
      if (type === "close" && payload.length >= 2) {
        frame = { ...frame, code: payload.readUInt16BE(0), reason: payload.subarray(2).toString("utf8") };
      }
      this.received.push(frame);
      this.pending.push(frame);
      this.wake();
    }
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** The next frame from the server; rejects on timeout, or when the socket closed with none left. */
  async next(timeoutMs = 2000): Promise<ServerFrame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = this.pending.shift();
      if (f !== undefined) return f;
      if (this.parseError !== null) throw this.parseError;
      if (this.isClosed) throw new Error("the socket closed before another frame arrived");
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no frame from the server within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Frames already received and not yet taken by next(). */
  get queued(): readonly ServerFrame[] {
    return this.pending;
  }

  /** Takes frames until a close frame; returns it and the frames that came before it. */
  async nextClose(timeoutMs = 2000): Promise<{ close: ServerFrame; before: ServerFrame[] }> {
    const deadline = Date.now() + timeoutMs;
    const before: ServerFrame[] = [];
    for (;;) {
      const f = await this.next(Math.max(1, deadline - Date.now()));
      if (f.type === "close") return { close: f, before };
      before.push(f);
    }
  }

  /** Writes raw bytes, whole or in chunks of chunkSize, yielding (or sleeping delayMs) between chunks. */
  async write(bytes: Uint8Array, chunkSize?: number, delayMs = 0): Promise<void> {
    const b = Buffer.from(bytes);
    if (chunkSize === undefined || chunkSize >= b.length) {
      this.socket.write(b);
      return;
    }
    for (let i = 0; i < b.length; i += chunkSize) {
      if (this.isClosed) return;
      this.socket.write(b.subarray(i, i + chunkSize));
      if (delayMs > 0) await sleepMs(delayMs);
      else await immediate();
    }
  }

  /** Builds one frame and writes it (see write for chunking). */
  sendFrame(spec: FrameSpec, chunkSize?: number, delayMs = 0): Promise<void> {
    return this.write(encodeFrame(spec), chunkSize, delayMs);
  }

  sendText(s: string | Uint8Array, fin = true): Promise<void> {
    return this.sendFrame({ opcode: OP.text, payload: s, fin });
  }

  sendBinary(b: Uint8Array, fin = true): Promise<void> {
    return this.sendFrame({ opcode: OP.binary, payload: b, fin });
  }

  sendPing(b: Uint8Array | string = ""): Promise<void> {
    return this.sendFrame({ opcode: OP.ping, payload: b });
  }

  /** A close frame: empty without a code, otherwise code + reason. */
  sendClose(code?: number, reason: string | Uint8Array = ""): Promise<void> {
    return this.sendFrame({ opcode: OP.close, payload: code === undefined ? new Uint8Array(0) : closePayload(code, reason) });
  }

  /** Stops reading the socket (the kernel buffers fill, the server's writes back up). */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /** Resolves true once the socket is closed, false after timeoutMs. */
  async waitClosed(timeoutMs = 2000): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([
      this.closed.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    return r;
  }

  /** Half-closes (FIN) without a close frame. */
  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Resolves when an emitter (a ws WebSocket, a net.Socket) emits 'close', with the event's arguments; rejects after timeoutMs. */
export function whenClosed(emitter: { once(event: "close", listener: (...args: unknown[]) => void): unknown }, timeoutMs = 2000): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no 'close' within ${timeoutMs} ms`)), timeoutMs);
    emitter.once("close", (...args: unknown[]) => {
      clearTimeout(t);
      resolve(args);
    });
  });
}

export interface RawExchangeOptions {
  /** Pause between writes, so each reaches the server in a read of its own. Default 30 ms. */
  readonly gapMs?: number;
  /** Stop waiting for the server this long after connecting. Default 2500 ms. */
  readonly waitMs?: number;
  /** Half-close (FIN) after the last write. */
  readonly end?: boolean;
  /** Reset the connection (RST) this long after the last write instead of waiting for an answer. */
  readonly resetAfterMs?: number;
  /** Wait until what came holds this text (say, an echoed frame's payload) rather than for the end of a 101's head. */
  readonly untilText?: string;
}

/** What the server answered to a raw exchange. */
export interface RawExchange {
  /** The status of every response head, in order. */
  readonly statuses: number[];
  /** The first one, or undefined when none came. */
  readonly status: number | undefined;
  /** Everything received, as latin1. */
  readonly text: string;
  /** The server ended or closed the connection (rather than the wait running out, a 101 or a reset of ours). */
  readonly serverClosed: boolean;
  readonly ms: number;
}

/**
 * Sends each chunk in a write of its own, `gapMs` apart (a function in the list is awaited
 * instead: the test's own pause), and collects every byte the server sends until it closes,
 * a 101's head is complete (what follows is WebSocket frames), or `waitMs` passes. Statuses
 * are found anywhere in what came, so no body may hold "HTTP/1.1 ".
 */
export function rawExchange(port: number, chunks: readonly (string | Uint8Array | (() => unknown))[], opts: RawExchangeOptions = {}): Promise<RawExchange> {
  const gapMs = opts.gapMs ?? 30;
  return new Promise((resolve) => {
    const socket = netConnect({ host: "127.0.0.1", port });
    socket.setNoDelay(true);
    const t0 = performance.now();
    let text = "";
    let done = false;
    const finish = (serverClosed: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const statuses = [...text.matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]));
      resolve({ statuses, status: statuses[0], text, serverClosed, ms: performance.now() - t0 });
    };
    const timer = setTimeout(() => finish(false), opts.waitMs ?? 2500);
    socket.on("data", (d: Buffer) => {
      text += d.toString("latin1");
      if (opts.untilText === undefined ? /HTTP\/1\.1 101 [^]*?\r\n\r\n/.test(text) : text.includes(opts.untilText)) finish(false);
    });
    socket.on("end", () => finish(true));
    socket.on("close", () => finish(true));
    socket.on("error", () => {});
    socket.once("connect", async () => {
      for (let i = 0; i < chunks.length && !socket.destroyed; i++) {
        if (i > 0) await sleepMs(gapMs);
        const chunk = chunks[i]!;
        if (typeof chunk === "function") await chunk();
        else socket.write(typeof chunk === "string" ? Buffer.from(chunk, "latin1") : chunk);
      }
      if (opts.end === true) socket.end();
      if (opts.resetAfterMs !== undefined) {
        await sleepMs(opts.resetAfterMs);
        if (!done) {
          done = true;
          clearTimeout(timer);
          socket.resetAndDestroy();
          resolve({ statuses: [], status: undefined, text, serverClosed: false, ms: performance.now() - t0 });
        }
      }
    });
  });
}
