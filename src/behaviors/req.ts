// cowboy_req's terms as handlers see them: the Req interface, the filtered Req terminate gets, the client's faults.
import type { FileHandle } from "node:fs/promises";
import { CorralError, type ErrorCode } from "../runtime/errors.js";

/**
 * The request as handlers see it (cowboy_req). Declared here, where the behaviors that
 * take it live; src/server implements it over node:http.
 */
export interface Peer {
  readonly address: string;
  readonly port: number;
}

/** The fields that outlive init: what terminate gets (Cowboy's filtered Req). */
export interface PartialReq {
  readonly method: string;
  readonly version: string;
  readonly scheme: "http" | "https";
  readonly host: string;
  readonly port: number;
  readonly path: string;
  readonly qs: string;
  readonly peer: Peer;
}

/** One media range of an accept header, by descending preference order as sent. */
export interface MediaRange {
  readonly type: string;
  readonly subtype: string;
  readonly q: number;
  readonly params: Readonly<Record<string, string>>;
}

export interface ContentType {
  readonly type: string;
  readonly subtype: string;
  readonly params: Readonly<Record<string, string>>;
}

/** Parsed header values, by header name (cowboy_req:parse_header). */
export interface ParsedHeaders {
  "sec-websocket-protocol": string[];
  accept: MediaRange[];
  cookie: [name: string, value: string][];
  "content-type": ContentType;
}

export type HeaderValue = string | number | readonly string[];

/**
 * Cowboy's {sendfile, Offset, Length, Path}: a file (or part of it) as the body. An open
 * FileHandle sends exactly the file that was checked (no second open); the reply closes it.
 */
export interface SendFile {
  readonly sendfile: string | FileHandle;
  readonly offset?: number;
  /** Bytes from offset; default: to the end of the file. */
  readonly length?: number;
}

export type Body = string | Uint8Array | SendFile;

/** cowboy_req:set_resp_cookie options. */
export interface CookieOptions {
  /** Seconds; 0 deletes the cookie. */
  readonly maxAge?: number;
  readonly path?: string;
  readonly domain?: string;
  readonly secure?: boolean;
  readonly httpOnly?: boolean;
  readonly sameSite?: "strict" | "lax" | "none";
}

export interface Req extends PartialReq {
  /** Header names are lower-case; repeated headers are joined with ", " (set-cookie with "\n"). */
  readonly headers: Readonly<Record<string, string>>;
  header(name: string): string | undefined;
  /** A header parsed as cow_http_hd does; undefined when absent; a malformed one throws ERR_BADARG. */
  parseHeader<K extends keyof ParsedHeaders>(name: K): ParsedHeaders[K] | undefined;
  /** The query string as [key, value] pairs, in order; a key without "=" has the value true. */
  parseQs(): [key: string, value: string | true][];
  readonly bindings: Readonly<Record<string, string>>;
  binding(name: string): string | undefined;
  /** What a host pattern's leading [...] matched, left to right; undefined without one. */
  readonly hostInfo: readonly string[] | undefined;
  /** What a path pattern's trailing [...] matched; undefined without one. */
  readonly pathInfo: readonly string[] | undefined;
  /** The client certificate (DER) on a TLS connection that presented one. */
  readonly cert: Uint8Array | undefined;
  /** Adds a header to the response: the 101 of an upgrade, or the reply. */
  setRespHeader(name: string, value: HeaderValue): Req;
  setRespCookie(name: string, value: string, opts?: CookieOptions): Req;
  /** Sends the whole response. A second reply throws. */
  reply(status: number, headers?: Readonly<Record<string, HeaderValue>>, body?: Body): Req;
  /** Starts a chunked (or server-sent events) response; the body follows with streamBody. */
  streamReply(status: number, headers?: Readonly<Record<string, HeaderValue>>): Req;
  /** Sends a part of a streamed body; fin ends it. Resolves once the socket took it (backpressure). */
  streamBody(data: string | Uint8Array, fin?: boolean): Promise<void>;
  /** True once a response has started. */
  readonly replied: boolean;
  /** The request body, up to `length` bytes (default: the listener's maxBodySize); beyond it: 413 and a rejection. */
  readBody(opts?: { readonly length?: number }): Promise<Uint8Array>;
}

/** What init returns to answer over HTTP without upgrading: Cowboy's {ok, Req, State}. */
export interface HttpOk<S> {
  readonly type: "ok";
  readonly req: Req;
  readonly state: S;
}

/**
 * @internal What the client got wrong (Cowboy's request_error): a body too large, cut off or
 * too slow, a malformed query string or header. Escaping init or info it is no crash: the
 * client gets `status`, terminate gets `{ error: reason }`, one debug line without a stack.
 */
export class RequestError extends CorralError {
  readonly status: 400 | 408 | 413;
  readonly reason: "bad_request" | "closed" | "timeout" | "body_too_large";
  constructor(code: ErrorCode, message: string, status: RequestError["status"], reason: RequestError["reason"], opts?: { cause?: unknown }) {
    super(code, message, opts);
    this.status = status;
    this.reason = reason;
  }
}

/** @internal The most characters of one client-controlled value that go into a log line. */
export const LOG_VALUE_MAX = 200;

/**
 * @internal A client-controlled value (a path, a header, a list of offered subprotocols) for a
 * log line: at most LOG_VALUE_MAX characters, then how much was cut, so a client cannot make
 * the log grow faster than the requests it sends.
 */
export function logValue(value: string | readonly string[]): string {
  const s = typeof value === "string" ? value : value.join(", ");
  if (s.length <= LOG_VALUE_MAX) return s;
  const items = typeof value === "string" ? "" : ` in ${value.length} values`;
  return `${s.slice(0, LOG_VALUE_MAX)}… (${s.length - LOG_VALUE_MAX} more characters${items})`;
}
