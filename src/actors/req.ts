/**
 * The request as handlers see it (cowboy_req). Declared here, where the behaviours that
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

/** Parsed header values, by header name (cowboy_req:parse_header). */
export interface ParsedHeaders {
  "sec-websocket-protocol": string[];
}

export type HeaderValue = string | number | readonly string[];

export interface Req extends PartialReq {
  /** Header names are lower-case; repeated headers are joined with ", " (set-cookie with "\n"). */
  readonly headers: Readonly<Record<string, string>>;
  header(name: string): string | undefined;
  parseHeader<K extends keyof ParsedHeaders>(name: K): ParsedHeaders[K] | undefined;
  readonly bindings: Readonly<Record<string, string>>;
  binding(name: string): string | undefined;
  /** Adds a header to the response: the 101 of an upgrade, or the reply. */
  setRespHeader(name: string, value: HeaderValue): Req;
  /** Sends the whole response. A second reply throws. */
  reply(status: number, headers?: Readonly<Record<string, HeaderValue>>, body?: string | Uint8Array): Req;
  /** True once a response has been sent. */
  readonly replied: boolean;
  /** The request body, up to the listener's limit. */
  readBody(): Promise<Uint8Array>;
}

/** What init returns to answer over HTTP without upgrading: Cowboy's {ok, Req, State}. */
export interface HttpOk<S> {
  readonly type: "ok";
  readonly req: Req;
  readonly state: S;
}
