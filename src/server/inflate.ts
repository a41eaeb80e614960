// cowboy_websocket's inflate step (cow_ws:inflate_frame), as ws runs it, held back while the connection's mailbox is full.
import type { WsPort } from "./port.js";

/** ws's per-connection permessage-deflate: the receiver inflates each compressed message through it, one at a time. */
export interface Decompressor {
  decompress(data: Buffer, fin: boolean, callback: (err: Error | null, result?: Buffer) => void): void;
}

/**
 * The inflating a throttled port holds back. A 1 KB message can inflate to maxFrameSize, so
 * pausing the socket is not enough: the messages already read must not be inflated either.
 */
const held = new Map<WsPort, () => void>();

/** Routes the connection's inflating through the port's flow control. */
export function gateInflate(port: WsPort, pmd: Decompressor): void {
  const decompress = pmd.decompress;
  pmd.decompress = (data, fin, callback) => {
    if (!port.throttled) decompress.call(pmd, data, fin, callback);
    else hold(port, () => decompress.call(pmd, data, fin, callback));
  };
}

/**
 * ws reports the close only once its receiver has finished, and a held receiver never would:
 * a socket that closes (or has closed) while inflating is held ends without inflating the rest.
 */
function hold(port: WsPort, run: () => void): void {
  const socket = port._socket;
  if (socket.closed) {
    process.nextTick(closeHeld, port);
    return;
  }
  held.set(port, run);
  socket.once("close", () => {
    if (held.delete(port)) closeHeld(port);
  });
}

function closeHeld(port: WsPort): void {
  (port as unknown as { emitClose(): void }).emitClose();
}

/** The mailbox drained: inflate what was held. */
export function releaseInflate(port: WsPort): void {
  const run = held.get(port);
  if (run === undefined) return;
  held.delete(port);
  run();
}

/** The socket closed: what was held is dropped with it. */
export function forgetInflate(port: WsPort): void {
  held.delete(port);
}
