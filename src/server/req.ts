// cowboy_req over node:http: the request a handler reads and the response it sends.
import { createReadStream, statSync } from "node:fs";
import { IncomingMessage, STATUS_CODES, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import type {
  Body,
  ContentType,
  CookieOptions,
  HeaderValue,
  MediaRange,
  ParsedHeaders,
  Peer,
  Req,
  SendFile,
} from "../behaviors/req.js";
import { RequestError } from "../behaviors/req.js";
import { CorralError, badarg, describe } from "../runtime/errors.js";
import type { UpgradeHead } from "./head.js";

/** Where a reply goes: node's response object, or the bare socket of an upgrade request. */
export type Sink = { readonly res: ServerResponse } | { readonly socket: Duplex };

export const DEFAULT_MAX_BODY_SIZE = 8 * 1024 * 1024;

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** The Host header: a name or a bracketed IPv6 literal, then maybe a port. */
const HOST = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/;
/** What a Req has before a route binds anything, and its response headers before one is set: shared, never written. */
const NO_BINDINGS: Readonly<Record<string, string>> = Object.freeze({});
const NO_HEADERS: ReadonlyMap<string, HeaderValue> = new Map();

/**
 * The request headers by lower-case name, a repeated header joined as Cowboy joins it. node
 * has built the same map already (its server and ws read it): without a repeated header it is
 * the one, where node would keep only the first of some or make an array of set-cookie.
 */
function headersOf(raw: IncomingMessage): Readonly<Record<string, string>> {
  const built = raw.headers;
  const rawHeaders = raw.rawHeaders;
  let count = 0;
  for (const _ in built) count++;
  if (count * 2 === rawHeaders.length && built["set-cookie"] === undefined) return built as Record<string, string>;
  const headers: Record<string, string> = {};
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    const value = rawHeaders[i + 1]!;
    const had = headers[name];
    headers[name] = had === undefined ? value : `${had}${name === "set-cookie" ? "\n" : name === "cookie" ? "; " : ", "}${value}`;
  }
  return headers;
}

/**
 * cowboy_req over node:http, or over an upgrade head corral read itself (head.ts). Mutable:
 * the setters return the same Req, for Cowboy-style chaining.
 */
export class HttpReq implements Req {
  readonly method: string;
  readonly version: string;
  readonly scheme: "http" | "https";
  readonly host: string;
  readonly port: number;
  readonly path: string;
  readonly qs: string;
  readonly peer: Peer;
  readonly headers: Readonly<Record<string, string>>;
  bindings: Readonly<Record<string, string>> = NO_BINDINGS;
  hostInfo: readonly string[] | undefined = undefined;
  pathInfo: readonly string[] | undefined = undefined;
  /** Response headers set before the reply or the 101, lower-case names; made on the first one (most upgrades set none). */
  private resp: Map<string, HeaderValue> | null = null;
  replied = false;
  /** node's request, with its body; undefined for a head read by head.ts, which has none. */
  private readonly raw: IncomingMessage | undefined;
  private readonly socket: Socket;
  private readonly sink: Sink;
  private readonly maxBodySize: number;
  private streaming = false;
  private bodyTaken = false;
  /** The listener cut the client off for sending its body below minBodyRate. */
  private tooSlow = false;

  constructor(from: IncomingMessage | UpgradeHead, socket: Socket, sink: Sink, scheme: "http" | "https", defaultPort: number, maxBodySize = DEFAULT_MAX_BODY_SIZE) {
    this.socket = socket;
    this.sink = sink;
    this.scheme = scheme;
    this.maxBodySize = maxBodySize;
    let target: string;
    if (from instanceof IncomingMessage) {
      this.raw = from;
      this.method = from.method ?? "GET";
      const v = from.httpVersion;
      this.version = v === "1.1" ? "HTTP/1.1" : `HTTP/${v}`;
      target = from.url ?? "/";
      this.headers = headersOf(from);
    } else {
      this.raw = undefined;
      this.method = "GET";
      this.version = "HTTP/1.1";
      target = from.url;
      this.headers = from.headers;
    }
    const q = target.indexOf("?");
    this.path = q < 0 ? target : target.slice(0, q);
    this.qs = q < 0 ? "" : target.slice(q + 1);
    const hostHeader = this.headers["host"] ?? "";
    const m = HOST.exec(hostHeader);
    this.host = (m?.[1] ?? "").toLowerCase();
    this.port = m?.[2] !== undefined ? Number(m[2]) : defaultPort;
    this.peer = { address: socket.remoteAddress ?? "", port: socket.remotePort ?? 0 };
  }

  get respHeaders(): ReadonlyMap<string, HeaderValue> {
    return this.resp ?? NO_HEADERS;
  }

  private respOut(): Map<string, HeaderValue> {
    return (this.resp ??= new Map());
  }

  get cert(): Uint8Array | undefined {
    const socket = this.socket as Partial<TLSSocket>;
    if (typeof socket.getPeerCertificate !== "function") return undefined;
    const cert = socket.getPeerCertificate();
    return cert !== null && cert.raw !== undefined ? cert.raw : undefined;
  }

  header(name: string): string | undefined {
    return this.headers[name.toLowerCase()];
  }

  parseHeader<K extends keyof ParsedHeaders>(name: K): ParsedHeaders[K] | undefined {
    const value = this.headers[name];
    if (value === undefined) return undefined;
    const parse = PARSERS[name] as ((v: string) => ParsedHeaders[K]) | undefined;
    if (parse === undefined) throw badarg(`parseHeader: no parser for ${JSON.stringify(name)}`);
    return parse(value);
  }

  parseQs(): [key: string, value: string | true][] {
    const out: [string, string | true][] = [];
    if (this.qs === "") return out;
    for (const part of this.qs.split("&")) {
      if (part === "") continue;
      const eq = part.indexOf("=");
      try {
        out.push(eq < 0 ? [decodeQs(part), true] : [decodeQs(part.slice(0, eq)), decodeQs(part.slice(eq + 1))]);
      } catch {
        throw malformed(`parseQs: malformed query string ${describe(this.qs)}`);
      }
    }
    return out;
  }

  binding(name: string): string | undefined {
    return this.bindings[name];
  }

  setRespHeader(name: string, value: HeaderValue): Req {
    if (typeof name !== "string" || !TOKEN.test(name)) throw badarg(`setRespHeader: invalid header name ${describe(name)}`);
    checkHeaderValue(name, value);
    this.checkNotSent(`setRespHeader(${JSON.stringify(name)})`);
    this.respOut().set(name.toLowerCase(), value);
    return this;
  }

  setRespCookie(name: string, value: string, opts?: CookieOptions): Req {
    if (typeof name !== "string" || !TOKEN.test(name)) throw badarg(`setRespCookie: invalid cookie name ${describe(name)}`);
    if (typeof value !== "string" || /[\s",;\\\0-\x1f\x7f]/.test(value)) throw badarg(`setRespCookie: invalid cookie value ${describe(value)}; encode it first`);
    this.checkNotSent(`setRespCookie(${JSON.stringify(name)})`);
    let cookie = `${name}=${value}`;
    if (opts?.maxAge !== undefined) cookie += `; Max-Age=${Math.max(0, Math.floor(opts.maxAge))}`;
    if (opts?.path !== undefined) cookie += `; Path=${checkAttr(opts.path, "path")}`;
    if (opts?.domain !== undefined) cookie += `; Domain=${checkAttr(opts.domain, "domain")}`;
    if (opts?.secure === true) cookie += "; Secure";
    if (opts?.httpOnly === true) cookie += "; HttpOnly";
    if (opts?.sameSite !== undefined) cookie += `; SameSite=${opts.sameSite[0]!.toUpperCase()}${opts.sameSite.slice(1)}`;
    const had = this.respHeaders.get("set-cookie");
    this.respOut().set("set-cookie", had === undefined ? [cookie] : [...(Array.isArray(had) ? had : [String(had)]), cookie]);
    return this;
  }

  private checkNotSent(what: string): void {
    if (this.tooSlow) throw this.incomplete();
    if (this.replied) throw new CorralError("ERR_BADARG", `${what}: the response was already sent`);
  }

  /** The response headers for a reply, with the ones given merged over those set before. */
  private headersFor(what: string, status: number, headers: Readonly<Record<string, HeaderValue>> | undefined): Map<string, HeaderValue> {
    // The 408 went out without the handler: its own answer is too late, and no bug of its own.
    if (this.tooSlow) throw this.incomplete();
    if (this.replied) throw new CorralError("ERR_BADARG", `${what}(${status}): this request was already replied to`);
    if (!Number.isInteger(status) || status < 200 || status > 999) throw badarg(`${what}: invalid status ${describe(status)}`);
    const all = new Map(this.respHeaders);
    for (const [name, value] of Object.entries(headers ?? {})) {
      if (!TOKEN.test(name)) throw badarg(`${what}: invalid header name ${describe(name)}`);
      checkHeaderValue(name, value);
      all.set(name.toLowerCase(), value);
    }
    return all;
  }

  reply(status: number, headers?: Readonly<Record<string, HeaderValue>>, body?: Body): Req {
    const all = this.headersFor("reply", status, headers);
    const bodyless = this.method === "HEAD" || status === 204 || status === 304;
    if (isSendFile(body)) {
      const file = checkSendFile(body);
      all.set("content-length", file.length);
      this.replied = true;
      const sent = !bodyless && file.length > 0;
      this.writeHead(status, all, sent ? file : undefined);
      if (!sent && typeof file.sendfile !== "string") void file.sendfile.close();
      return this;
    }
    if (body !== undefined && typeof body !== "string" && !(body instanceof Uint8Array)) {
      throw badarg(`reply: body must be a string, a Uint8Array or { sendfile }, got ${describe(body)}`);
    }
    const payload = body === undefined ? undefined : typeof body === "string" ? Buffer.from(body) : body;
    if (status !== 204 && status !== 304) all.set("content-length", payload?.byteLength ?? 0);
    this.replied = true;
    this.writeHead(status, all, bodyless ? undefined : payload);
    return this;
  }

  streamReply(status: number, headers?: Readonly<Record<string, HeaderValue>>): Req {
    const all = this.headersFor("streamReply", status, headers);
    all.delete("content-length");
    this.replied = true;
    this.streaming = true;
    const sink = this.sink;
    if ("res" in sink) {
      for (const [name, value] of all) sink.res.setHeader(name, toNodeHeader(value));
      sink.res.writeHead(status);
      sink.res.flushHeaders();
    } else {
      sink.socket.write(rawHead(status, all));
    }
    return this;
  }

  streamBody(data: string | Uint8Array, fin = false): Promise<void> {
    if (!this.streaming) throw new CorralError("ERR_BADARG", "streamBody: call streamReply first (or the body already ended)");
    if (typeof data !== "string" && !(data instanceof Uint8Array)) throw badarg(`streamBody: data must be a string or Uint8Array, got ${describe(data)}`);
    if (fin) this.streaming = false;
    const out: NodeJS.WritableStream = "res" in this.sink ? this.sink.res : this.sink.socket;
    if (this.method === "HEAD") {
      if (fin) out.end();
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      if (fin) {
        out.end(data, () => resolve());
        return;
      }
      if (out.write(data)) resolve();
      else {
        // A client that left never drains: its close settles the wait too.
        const done = (): void => {
          out.off("drain", done);
          out.off("close", done);
          resolve();
        };
        out.once("drain", done);
        out.once("close", done);
      }
    });
  }

  private writeHead(status: number, headers: Map<string, HeaderValue>, body: Uint8Array | Required<SendFile> | undefined): void {
    const sink = this.sink;
    if ("res" in sink) {
      const res = sink.res;
      for (const [name, value] of headers) res.setHeader(name, toNodeHeader(value));
      res.writeHead(status);
      if (body === undefined || body instanceof Uint8Array) res.end(body);
      else pipeFile(body, res);
    } else {
      const socket = sink.socket;
      if (socket.destroyed) return;
      if (!headers.has("connection")) headers.set("connection", "close");
      // The socket ends after this response whatever the header says (426 names "upgrade" here).
      if (body === undefined || body instanceof Uint8Array) socket.end(body === undefined ? rawHead(status, headers) : Buffer.concat([Buffer.from(rawHead(status, headers)), body]));
      else {
        socket.write(rawHead(status, headers));
        pipeFile(body, socket);
      }
    }
  }

  readBody(opts?: { readonly length?: number }): Promise<Uint8Array> {
    const max = opts?.length ?? this.maxBodySize;
    if (typeof max !== "number" || Number.isNaN(max) || max < 0) throw badarg(`readBody: length must be a number >= 0, got ${describe(max)}`);
    const raw = this.raw;
    // An upgrade head read by head.ts has no body (no Content-Length but 0): nothing to give.
    if (raw === undefined) return Promise.resolve(new Uint8Array(0));
    const tooLarge = (): RequestError => {
      // The rest of the body is not wanted: the connection closes after the 413 instead of reading it all.
      if (!this.replied) this.reply(413, { connection: "close" });
      raw.resume();
      return new RequestError("ERR_BODY_TOO_LARGE", `readBody: the request body is larger than ${max} bytes`, 413, "body_too_large");
    };
    const declared = Number(this.headers["content-length"] ?? 0);
    if (declared > max) return Promise.reject(tooLarge());
    // Read already (cowboy_req:read_body after the last chunk): nothing more to give.
    if (raw.readableEnded || this.bodyTaken) return Promise.resolve(new Uint8Array(0));
    // The client left (or was cut off) before init got here: its events are over, nothing would settle a wait.
    if (raw.destroyed || raw.socket.destroyed) return Promise.reject(this.incomplete());
    this.bodyTaken = true;
    return new Promise((resolve, reject) => {
      const socket = raw.socket;
      const chunks: Buffer[] = [];
      let size = 0;
      const done = (): void => {
        raw.off("data", onData);
        raw.off("end", onEnd);
        raw.off("error", onError);
        socket.off("close", onClose);
      };
      const onData = (chunk: Buffer): void => {
        size += chunk.byteLength;
        if (size <= max) {
          chunks.push(chunk);
          return;
        }
        done();
        reject(tooLarge());
      };
      const onEnd = (): void => {
        done();
        resolve(Buffer.concat(chunks));
      };
      const onError = (err: Error): void => {
        done();
        reject(this.incomplete(err));
      };
      // After an answer went out node no longer tells the request that its socket closed.
      const onClose = (): void => {
        done();
        reject(this.incomplete());
      };
      raw.on("data", onData);
      raw.once("end", onEnd);
      raw.once("error", onError);
      socket.once("close", onClose);
    });
  }

  /** readBody's rejection when the body will never be whole. */
  private incomplete(cause?: unknown): RequestError {
    return this.tooSlow
      ? new RequestError("ERR_BODY_INCOMPLETE", "readBody: the client sent its body below minBodyRate and was cut off with 408", 408, "timeout", { cause })
      : new RequestError("ERR_BODY_INCOMPLETE", "readBody: the connection closed before the whole body arrived", 400, "closed", { cause });
  }

  /**
   * @internal The listener found the body arriving below minBodyRate: 408 if nothing was
   * answered yet (the connection closes after it), else the connection is cut.
   */
  cutSlowBody(): void {
    const answer = !this.replied && "res" in this.sink;
    this.tooSlow = true;
    if (answer) {
      this.replied = true;
      this.writeHead(408, new Map<string, HeaderValue>([["connection", "close"], ["content-length", 0]]), undefined);
    } else this.socket.destroy();
  }

  /** Ends a streamed body if one is still open (a loop handler that stopped without fin). */
  endStream(): void {
    if (this.streaming) void this.streamBody("", true);
  }

}

/** A malformed value the client sent: 400 if it escapes the handler, not a crash. */
function malformed(message: string): RequestError {
  return new RequestError("ERR_BADARG", message, 400, "bad_request");
}

function decodeQs(s: string): string {
  return decodeURIComponent(s.replace(/\+/g, " "));
}

function checkAttr(v: unknown, what: string): string {
  if (typeof v !== "string" || /[;\0-\x1f\x7f]/.test(v)) throw badarg(`setRespCookie: invalid ${what} ${describe(v)}`);
  return v;
}

function checkHeaderValue(name: string, value: unknown): void {
  const ok = (v: unknown): boolean => typeof v === "number" || (typeof v === "string" && !/[\r\n\0]/.test(v));
  if (Array.isArray(value) ? !value.every(ok) : !ok(value)) throw badarg(`header ${name}: invalid value ${describe(value)}`);
}

function toNodeHeader(value: HeaderValue): string | number | string[] {
  return Array.isArray(value) ? [...(value as readonly string[])] : (value as string | number);
}

function isSendFile(body: unknown): body is SendFile {
  return typeof body === "object" && body !== null && !(body instanceof Uint8Array) && "sendfile" in body;
}

function checkSendFile(body: SendFile): Required<SendFile> {
  const file = body.sendfile;
  const isHandle = typeof file === "object" && file !== null && typeof file.fd === "number" && typeof file.createReadStream === "function";
  if (typeof file !== "string" && !isHandle) throw badarg(`reply: sendfile must be a path or an open FileHandle, got ${describe(file)}`);
  const offset = body.offset ?? 0;
  if (typeof file !== "string" && body.length === undefined) throw badarg("reply: sendfile with a FileHandle needs a length");
  const length = body.length ?? statSync(file as string).size - offset;
  if (!Number.isInteger(offset) || offset < 0 || !Number.isInteger(length) || length < 0) {
    throw badarg(`reply: invalid sendfile range ${describe({ offset, length })}`);
  }
  return { sendfile: body.sendfile, offset, length };
}

/** Streams a file range; if the file fails mid-way the response is cut, never padded. */
function pipeFile(file: Required<SendFile>, out: NodeJS.WritableStream & { destroy(): void }): void {
  const range = { start: file.offset, end: file.offset + file.length - 1 };
  const stream = typeof file.sendfile === "string" ? createReadStream(file.sendfile, range) : file.sendfile.createReadStream(range);
  stream.on("error", () => out.destroy());
  stream.pipe(out);
}

function rawHead(status: number, headers: ReadonlyMap<string, HeaderValue>): string {
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Unknown"}\r\n${headerLines(headers)}\r\n`;
}

/** Response headers as the lines of a head written to the socket itself, a repeated one on a line per value; `skip` is left out. */
export function headerLines(headers: ReadonlyMap<string, HeaderValue>, skip?: string): string {
  let text = "";
  for (const [name, value] of headers) {
    if (name === skip) continue;
    if (Array.isArray(value)) for (const v of value) text += `${name}: ${v}\r\n`;
    else text += `${name}: ${value}\r\n`;
  }
  return text;
}

/* ---------------------------------------------------------------- header parsers (cow_http_hd) */

function params(parts: string[], where: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of parts) {
    const eq = p.indexOf("=");
    if (eq <= 0) throw malformed(`parseHeader(${where}): malformed parameter ${describe(p)}`);
    let v = p.slice(eq + 1).trim();
    if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1);
    out[p.slice(0, eq).trim().toLowerCase()] = v;
  }
  return out;
}

function mediaType(value: string, where: string): { type: string; subtype: string; rest: string[] } {
  const [mt, ...rest] = value.split(";").map((s) => s.trim());
  const slash = mt!.indexOf("/");
  const type = mt!.slice(0, slash).toLowerCase();
  const subtype = mt!.slice(slash + 1).toLowerCase();
  if (slash <= 0 || !TOKEN.test(type) || !TOKEN.test(subtype)) throw malformed(`parseHeader(${where}): malformed media type ${describe(value)}`);
  return { type, subtype, rest: rest.filter((r) => r !== "") };
}

const PARSERS: { [K in keyof ParsedHeaders]: (value: string) => ParsedHeaders[K] } = {
  "sec-websocket-protocol": (value) => value.split(",").map((t) => t.trim()).filter((t) => t.length > 0),
  accept: (value) =>
    value
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "")
      .map((range): MediaRange => {
        const { type, subtype, rest } = mediaType(range, "accept");
        const all = params(rest, "accept");
        const q = all["q"] === undefined ? 1 : Number(all["q"]);
        if (Number.isNaN(q) || q < 0 || q > 1) throw malformed(`parseHeader(accept): bad q in ${describe(range)}`);
        delete all["q"];
        return { type, subtype, q, params: all };
      }),
  cookie: (value) =>
    value
      .split(";")
      .map((s) => s.trim())
      .filter((s) => s !== "")
      .map((pair): [string, string] => {
        const eq = pair.indexOf("=");
        return eq < 0 ? ["", pair] : [pair.slice(0, eq).trim(), pair.slice(eq + 1).trim()];
      }),
  "content-type": (value): ContentType => {
    const { type, subtype, rest } = mediaType(value, "content-type");
    const all = params(rest, "content-type");
    if (all["charset"] !== undefined) all["charset"] = all["charset"].toLowerCase();
    return { type, subtype, params: all };
  },
};
