// ws's private fields and methods, every one corral touches, in one place (as ranch_transport is Cowboy's one door to the socket).
//
// corral extends ws's WebSocket into its port and reaches into its receiver and its
// permessage-deflate to do what Cowboy does and ws does not: hold the answer to a close or a
// protocol error until the connection reaches it, check UTF-8 as it arrives, gate inflating,
// change maxPayload at run time. ws is pinned to ~8.23 in package.json; this module checks at
// load that every field and method it relies on exists, so another ws fails at once, loudly,
// naming its version, rather than at the first odd frame.
import { createRequire } from "node:module";
import type { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import { Writable, type Duplex } from "node:stream";
import * as wsModule from "ws";
import { WebSocket } from "ws";

/** ws's Receiver, which @types/ws does not declare. */
const Receiver = (wsModule as unknown as { Receiver: new () => WsReceiver }).Receiver;
/** ws's parser of a Sec-WebSocket-Protocol list (exported, undeclared by @types/ws): throws on a malformed one. */
const subprotocol = (wsModule as unknown as { subprotocol: { parse(header: string): Set<string> } }).subprotocol;

const wsVersion = (createRequire(import.meta.url)("ws/package.json") as { version: string }).version;

/** ws's receiver, as corral uses it. */
export interface WsReceiver extends Writable {
  _maxPayload: number;
  createError(ctor: ErrorConstructor, message: string, prefix: boolean, statusCode: number, code: string): Error;
}

type ZlibCallback = (err: Error | null, result?: Buffer) => void;

/** ws's per-connection permessage-deflate: its receiver inflates and its sender deflates one message at a time through it. */
export interface WsDeflate {
  _maxPayload?: number;
  decompress(data: Buffer, fin: boolean, callback: ZlibCallback): void;
  compress(data: Buffer, fin: boolean, callback: ZlibCallback): void;
}

/** The private side of ws's WebSocket that the port reaches. */
interface WsSocketFields {
  _events: unknown;
  _extensions: Record<string, WsDeflate | undefined>;
  _receiver: WsReceiver | undefined;
  _socket: Socket;
  _protocol: string;
  emitClose(): void;
  setSocket(socket: Duplex, head: Buffer, options: object): void;
}

function fields(ws: WebSocket): WsSocketFields {
  return ws as unknown as WsSocketFields;
}

/** ws keeps these under symbols it does not export: the receiver's and socket's WebSocket, an error's close code. */
function symbolNamed(obj: object, description: string): symbol | undefined {
  return Object.getOwnPropertySymbols(obj).find((s) => s.description === description);
}

const kWebSocket = symbolNamed(new Receiver(), "websocket");
const kStatusCode = symbolNamed(new Receiver().createError(Error, "probe", false, 1002, "PROBE"), "status-code");

/** Fails loudly, at load, when ws is not the ws this module was written for. */
function checkWs(): void {
  const missing: string[] = [];
  const receiver = new Receiver() as unknown as Record<string, unknown>;
  for (const field of ["_maxPayload", "_events"]) if (!(field in receiver)) missing.push(`Receiver#${field}`);
  if (typeof receiver["createError"] !== "function") missing.push("Receiver#createError");
  if (kWebSocket === undefined) missing.push("Receiver[Symbol(websocket)]");
  if (kStatusCode === undefined) missing.push("Error[Symbol(status-code)]");
  const proto = WebSocket.prototype as unknown as Record<string, unknown>;
  for (const method of ["emitClose", "setSocket"]) if (typeof proto[method] !== "function") missing.push(`WebSocket#${method}`);
  if (Receiver.prototype.write !== Writable.prototype.write) missing.push("Receiver#write is Writable's");
  if (typeof subprotocol?.parse !== "function") missing.push("subprotocol.parse");
  if (!("_protocol" in new WebSocket(null as unknown as string, undefined, {}))) missing.push("WebSocket#_protocol");
  if (missing.length > 0) {
    throw new Error(`corral needs ws ~8.23 (it reaches ${missing.join(", ")}); this is ws ${wsVersion}. Install the ws version package.json names.`);
  }
}
checkWs();

/** The subprotocols a client offered, or undefined where ws would refuse the list (400). */
export function parseSubprotocols(header: string): Set<string> | undefined {
  try {
    return subprotocol.parse(header);
  } catch {
    return undefined;
  }
}

/** What ws's handshake records of the subprotocol it sent (ws.protocol). */
export function setProtocol(ws: WebSocket, protocol: string): void {
  fields(ws)._protocol = protocol;
}

/** Hands the upgraded socket to a WebSocket as ws's handleUpgrade does after its 101 (options: its server's). */
export function attachSocket(ws: WebSocket, socket: Duplex, head: Buffer, options: object): void {
  fields(ws).setSocket(socket, head, options);
}

/** A connection costs no listener table: EventEmitter makes one again on the first on(). */
export function dropListenerTable(ws: WebSocket): void {
  fields(ws)._events = undefined;
}

/** ws makes an extensions object per connection; one frozen empty one serves all without one (ws replaces it, never writes into it). */
export function shareNoExtensions(ws: WebSocket, none: object): void {
  fields(ws)._extensions = none as Record<string, WsDeflate>;
}

export function receiverOf(ws: WebSocket): WsReceiver | undefined {
  return fields(ws)._receiver;
}

export function deflateOf(ws: WebSocket): WsDeflate | undefined {
  return fields(ws)._extensions["permessage-deflate"];
}

/** ws reports the close only once its receiver finished: this reports it now. */
export function emitClose(ws: WebSocket): void {
  fields(ws).emitClose();
}

/** The WebSocket a receiver (or a socket) belongs to. */
export function webSocketOf<T>(receiver: object): T {
  return (receiver as Record<symbol, T>)[kWebSocket!]!;
}

/** ws fixes maxPayload per server; a runtime change reaches into the receiver and the inflater. */
export function setMaxPayload(ws: WebSocket, max: number): void {
  const receiver = receiverOf(ws);
  if (receiver !== undefined) receiver._maxPayload = max;
  const deflate = deflateOf(ws);
  if (deflate !== undefined) deflate._maxPayload = max;
}

/** Changes the close code ws will send for a receiver error. */
export function setStatusCode(err: Error, code: number): void {
  (err as unknown as Record<symbol, number>)[kStatusCode!] = code;
}

/** Fails a receiver with ws's own error, as if ws had found it (the error is returned, not emitted). */
export function receiverError(receiver: WsReceiver, message: string, statusCode: number, code: string): Error {
  return receiver.createError(Error, message, true, statusCode, code);
}

/** A receiver's write as ws calls it (Writable's), for a port that looks at the bytes first. */
export const receiverWrite = Writable.prototype.write as (this: Writable, chunk: Buffer, callback?: (err?: Error | null) => void) => boolean;

/** Routes what the socket hands the receiver through `write` first. */
export function interceptReceiverWrite(receiver: WsReceiver, write: (this: Writable, chunk: Buffer) => boolean): void {
  receiver.write = write as Writable["write"];
}

type Listener = (...args: unknown[]) => void;

/** ws's own receiver listeners for 'conclude' and 'error' (module functions, the same for every receiver). */
const wsListeners: { conclude?: Listener; error?: Listener } = {};

/**
 * Puts our listener in place of ws's own for one receiver event, in the same slot of the
 * listener table (no new property on it), and keeps ws's, to be called later by the
 * connection. If ws ever registers other than one, it keeps its own: returns false.
 */
export function takeOverReceiverEvent(receiver: EventEmitter, event: "conclude" | "error", ours: (...args: never[]) => void): boolean {
  const events = (receiver as unknown as { _events?: Record<string, unknown> })._events;
  const theirs = events?.[event];
  if (typeof theirs !== "function" || (wsListeners[event] ?? theirs) !== theirs) {
    receiver.prependListener(event, ours as Listener);
    return false;
  }
  wsListeners[event] = theirs as Listener;
  events![event] = ours;
  return true;
}

/** Runs ws's own listener for an event corral took over, with the arguments it would have had. */
export function wsReceiverListener(event: "conclude" | "error"): Listener {
  return wsListeners[event]!;
}

/** node caches getpeername's answer on the socket for its lifetime; the Req has its own copy. */
export function forgetPeername(socket: object): void {
  (socket as { _peername?: unknown })._peername = undefined;
}
