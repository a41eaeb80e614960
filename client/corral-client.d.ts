// The types of corral/client (corral-client.js): bullet.js's API, typed.

/** The transports, best first: the default fallback order. */
export type TransportName = "websocket" | "eventsource" | "longpoll";

/**
 * - `"connecting"`: no transport has opened the session yet (the client keeps trying).
 * - `"open"`: a transport carries the session.
 * - `"reconnecting"`: the transport dropped; the client is resuming the session (sends are kept).
 * - `"closed"`: the session is over (`onclose` has fired); nothing more happens.
 */
export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

/**
 * Why the session ended. `code` is the server's (its `["c", code, reason]`), the one given to
 * `close()`, or one of the client's own:
 * - 4404 `"no such session"`: the server does not know the session any more (it answered a resume with 404).
 * - 4408 `"resume window passed"`: the client was away longer than the server keeps a session.
 * - 1009 `"frame too large"`: the route refused a frame that `send` was given, as too large.
 */
export interface CloseInfo {
  readonly code: number;
  readonly reason: string;
}

/** Reconnects wait a random time between 0 and `min(maxMs, initialMs × 2^n)` (full jitter); `n` counts the tries since the session was last open. */
export interface BackoffOptions {
  /** The first cap, in ms. Default 100. */
  initialMs?: number;
  /** The largest cap, in ms. Default 10 000 (or `initialMs` if that is larger). */
  maxMs?: number;
}

/** What the client needs of a WebSocket implementation: the browser's, Node ≥ 22's, or ws's `WebSocket`. */
export interface WebSocketConstructor {
  new (url: string): ClientWebSocket;
}

/** An event handler property; declared as a method so that its parameter is bivariant and both the browser's and ws's handler types fit. */
type Handler<E> = { bivarianceHack(event: E): void }["bivarianceHack"];

/** The part of the WHATWG WebSocket interface the client uses. */
export interface ClientWebSocket {
  binaryType: string;
  onmessage: Handler<{ data: unknown }> | null;
  onerror: Handler<unknown> | null;
  onclose: Handler<{ code: number }> | null;
  send(data: string | Uint8Array): void;
  close(code?: number): void;
}

/** The callbacks are properties, not methods, so that a handler that takes less than it is given does not compile. */
export interface ConnectOptions {
  /** The transports to use, in the order to try them. Default: `["websocket", "eventsource", "longpoll"]`. */
  transports?: readonly TransportName[];
  /**
   * How long a silent WebSocket may stay silent before the client asks the server (`["h"]`), in ms;
   * it is dead after twice that plus 1 s. Default: the server's heartbeat, which also governs the
   * fallbacks (where the server sends the heartbeats; a larger value here is used instead). A transport
   * that has not opened within this plus 1 s (10 s before the server has told its heartbeat) has failed.
   */
  heartbeatMs?: number;
  /** How reconnects back off. */
  backoff?: BackoffOptions;
  /** The WebSocket implementation. Default: the global `WebSocket`; without one, the client uses the fallbacks only. */
  WebSocket?: WebSocketConstructor;
  /** The session is open, once: its first transport said hello. */
  onopen?: () => void;
  /** A frame from the server: a string for text, a `Uint8Array` for binary. Each is delivered once, in order. */
  onmessage?: (data: string | Uint8Array) => void;
  /** The transport that carried the session dropped; the client is resuming it. */
  ondisconnect?: () => void;
  /** The session is back on a transport after `ondisconnect`, nothing lost. */
  onreconnect?: () => void;
  /** The session is over, once; the client does not reconnect. */
  onclose?: (info: CloseInfo) => void;
}

export interface Connection {
  readonly state: ConnectionState;
  /** The transport that carries the session now; `null` unless `state` is `"open"`. */
  readonly transport: TransportName | null;
  /**
   * Send a frame: a string as text, a `Uint8Array` (copied) as binary. Sent at once when open,
   * kept while connecting or away and delivered after the resume; dropped once closed.
   */
  send(data: string | Uint8Array): void;
  /**
   * End the session: the server gets `["c", code, reason]` (after any frames sent before) and
   * `onclose` fires at once with them. Code 1000 (default) or 3000-4999; reason at most 123 UTF-8 bytes.
   */
  close(code?: number, reason?: string): void;
}

/**
 * Open a session on a corral `bullet()` route. `url` may be `ws:`, `wss:`, `http:` or `https:`
 * (each transport uses the scheme it needs), or relative to the page in a browser.
 * Bad arguments throw an `Error` named `"CorralError"` with `code` `"ERR_BADARG"`.
 */
export declare function connect(url: string | URL, options?: ConnectOptions): Connection;
