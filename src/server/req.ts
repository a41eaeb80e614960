import { STATUS_CODES, type IncomingMessage, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { HeaderValue, ParsedHeaders, PartialReq, Peer, Req } from "../actors/req.js";
import { CorralError, badarg, describe } from "../runtime/errors.js";

/** Where a reply goes: node's response object, or the bare socket of an upgrade request. */
type Sink = { readonly res: ServerResponse } | { readonly socket: Duplex };

const DEFAULT_BODY_LIMIT = 8 * 1024 * 1024;

/** cowboy_req over node:http. Mutable: the setters return the same Req, for Cowboy-style chaining. */
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
  bindings: Readonly<Record<string, string>> = {};
  /** Response headers set before the reply or the 101, lower-case names. */
  readonly respHeaders = new Map<string, HeaderValue>();
  replied = false;
  private readonly raw: IncomingMessage;
  private readonly sink: Sink;
  private readonly bodyLimit: number;

  constructor(raw: IncomingMessage, sink: Sink, scheme: "http" | "https", defaultPort: number, bodyLimit = DEFAULT_BODY_LIMIT) {
    this.raw = raw;
    this.sink = sink;
    this.scheme = scheme;
    this.bodyLimit = bodyLimit;
    this.method = raw.method ?? "GET";
    this.version = `HTTP/${raw.httpVersion}`;
    const target = raw.url ?? "/";
    const q = target.indexOf("?");
    this.path = q < 0 ? target : target.slice(0, q);
    this.qs = q < 0 ? "" : target.slice(q + 1);
    const headers: Record<string, string> = {};
    const rawHeaders = raw.rawHeaders;
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const name = rawHeaders[i]!.toLowerCase();
      const value = rawHeaders[i + 1]!;
      const had = headers[name];
      headers[name] = had === undefined ? value : `${had}${name === "set-cookie" ? "\n" : ", "}${value}`;
    }
    this.headers = headers;
    const hostHeader = headers["host"] ?? "";
    const m = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(hostHeader);
    this.host = (m?.[1] ?? "").toLowerCase();
    this.port = m?.[2] !== undefined ? Number(m[2]) : defaultPort;
    const socket = raw.socket;
    this.peer = { address: socket.remoteAddress ?? "", port: socket.remotePort ?? 0 };
  }

  header(name: string): string | undefined {
    return this.headers[name.toLowerCase()];
  }

  parseHeader<K extends keyof ParsedHeaders>(name: K): ParsedHeaders[K] | undefined {
    const value = this.headers[name];
    if (value === undefined) return undefined;
    switch (name) {
      case "sec-websocket-protocol":
        return tokens(value) as ParsedHeaders[K];
      default:
        throw badarg(`parseHeader: no parser for ${JSON.stringify(name)}`);
    }
  }

  binding(name: string): string | undefined {
    return this.bindings[name];
  }

  setRespHeader(name: string, value: HeaderValue): Req {
    if (typeof name !== "string" || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) throw badarg(`setRespHeader: invalid header name ${describe(name)}`);
    checkHeaderValue(name, value);
    if (this.replied) throw new CorralError("ERR_BADARG", `setRespHeader(${JSON.stringify(name)}): the response was already sent`);
    this.respHeaders.set(name.toLowerCase(), value);
    return this;
  }

  reply(status: number, headers?: Readonly<Record<string, HeaderValue>>, body?: string | Uint8Array): Req {
    if (this.replied) throw new CorralError("ERR_BADARG", `reply(${status}): this request was already replied to`);
    if (!Number.isInteger(status) || status < 200 || status > 999) throw badarg(`reply: invalid status ${describe(status)}`);
    if (body !== undefined && typeof body !== "string" && !(body instanceof Uint8Array)) throw badarg(`reply: body must be a string or Uint8Array, got ${describe(body)}`);
    const all = new Map(this.respHeaders);
    for (const [name, value] of Object.entries(headers ?? {})) {
      checkHeaderValue(name, value);
      all.set(name.toLowerCase(), value);
    }
    const payload = body === undefined ? undefined : typeof body === "string" ? Buffer.from(body) : body;
    if (payload !== undefined || (status >= 200 && status !== 204 && status !== 304)) all.set("content-length", payload?.byteLength ?? 0);
    this.replied = true;
    const sink = this.sink;
    if ("res" in sink) {
      const res = sink.res;
      for (const [name, value] of all) res.setHeader(name, typeof value === "number" ? value : (value as string | string[]));
      res.writeHead(status);
      res.end(this.method === "HEAD" ? undefined : payload);
    } else {
      writeRaw(sink.socket, status, all, this.method === "HEAD" ? undefined : payload);
    }
    return this;
  }

  readBody(): Promise<Uint8Array> {
    const raw = this.raw;
    const max = this.bodyLimit;
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      raw.on("data", (chunk: Buffer) => {
        size += chunk.byteLength;
        if (size > max) {
          raw.destroy();
          reject(new CorralError("ERR_BADARG", `readBody: body larger than ${max} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      raw.on("end", () => resolve(Buffer.concat(chunks)));
      raw.on("error", reject);
    });
  }

  /** The fields terminate gets by default. */
  partial(): PartialReq {
    const { method, version, scheme, host, port, path, qs, peer } = this;
    return { method, version, scheme, host, port, path, qs, peer };
  }
}

function checkHeaderValue(name: string, value: unknown): void {
  const ok = (v: unknown): boolean => typeof v === "number" || (typeof v === "string" && !/[\r\n\0]/.test(v));
  if (Array.isArray(value) ? !value.every(ok) : !ok(value)) throw badarg(`header ${name}: invalid value ${describe(value)}`);
}

/** A comma-separated token list, as cow_http_hd parses sec-websocket-protocol. */
function tokens(value: string): string[] {
  return value.split(",").map((t) => t.trim()).filter((t) => t.length > 0);
}

/** A whole HTTP/1.1 response on a bare socket (the upgrade path has no ServerResponse), then close. */
export function writeRaw(socket: Duplex, status: number, headers: ReadonlyMap<string, HeaderValue>, body: Uint8Array | undefined): void {
  if (socket.destroyed) return;
  // The socket ends after this response whatever the header says (426 names "upgrade" here).
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Unknown"}\r\n`;
  if (!headers.has("connection")) head += "connection: close\r\n";
  for (const [name, value] of headers) {
    for (const v of Array.isArray(value) ? value : [value]) head += `${name}: ${v}\r\n`;
  }
  socket.end(body === undefined ? head + "\r\n" : Buffer.concat([Buffer.from(head + "\r\n"), body]));
}
