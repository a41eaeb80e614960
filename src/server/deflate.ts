// cow_ws's inflate and deflate steps (permessage-deflate), as ws runs them, with flow control and fair turns in front.
import type { Socket } from "node:net";
import type { WsDeflate } from "./ws-internals.js";

type ZlibCallback = (err: Error | null, result?: Buffer) => void;

/** What the gates need of a WebSocket port (port.ts). */
interface DeflatePort {
  /** Reading is stopped because the mailbox is full. */
  readonly throttled: boolean;
  /** ws's readyState: 3 once closed and its zlib streams cleaned up. */
  readonly readyState: number;
  readonly _socket: Socket;
  /** Reports the close now: ws would wait for a receiver that is held. */
  closeNow(): void;
}


/**
 * A job is heavy when its message is past this size (for an inflate: when the connection's
 * last message inflated past it, as a 1 KB message can inflate to 1 MB).
 */
const HEAVY = 64 * 1024;

/**
 * ws runs every connection's zlib jobs through one queue, first come first served, ten at a
 * time: forty clients sending 1 MB messages kept it full and a small message waited behind
 * them for seconds. Heavy jobs take turns here instead, at most this many in ws's queue at
 * once, one connection after another; light ones go straight through.
 */
const MAX_HEAVY = 2;
let heavyRunning = 0;
const waiting: Array<{ port: DeflatePort; start: (done: () => void) => void }> = [];

/** A heavy job: started now if a turn is free, else when one is. */
function heavyJob(port: DeflatePort, start: (done: () => void) => void): void {
  if (heavyRunning >= MAX_HEAVY) {
    waiting.push({ port, start });
    return;
  }
  heavyRunning++;
  startHeavy(start);
}

/** A job that throws before zlib takes it gives its turn back, or the turns would run out. */
function startHeavy(start: (done: () => void) => void): void {
  try {
    start(heavyDone);
  } catch (err) {
    heavyDone();
    throw err;
  }
}

function heavyDone(): void {
  for (let next = waiting.shift(); next !== undefined; next = waiting.shift()) {
    // ws has cleaned up a closed connection's zlib streams: a job started now would make new ones.
    if (next.port.readyState === 3) continue;
    startHeavy(next.start);
    return;
  }
  heavyRunning--;
}

/**
 * The inflating a throttled port holds back. A 1 KB message can inflate to maxFrameSize, so
 * pausing the socket is not enough: the messages already read must not be inflated either.
 */
const held = new Map<DeflatePort, { readonly run: () => void; readonly onClose: () => void }>();

/** Routes the connection's zlib jobs through the port's flow control and the fair turns. */
export function gateDeflate(port: DeflatePort, pmd: WsDeflate): void {
  const { decompress, compress } = pmd;
  /** The connection's last message inflated past HEAVY. */
  let heavyIn = false;
  const inflate = (data: Buffer, fin: boolean, callback: ZlibCallback): void => {
    const heavy = heavyIn || data.length > HEAVY;
    const start = (done: () => void): void =>
      decompress.call(pmd, data, fin, (err, result) => {
        done();
        heavyIn = result !== undefined && result.length > HEAVY;
        callback(err, result);
      });
    if (heavy) heavyJob(port, start);
    else start(noTurn);
  };
  pmd.decompress = (data, fin, callback) => {
    if (!port.throttled) inflate(data, fin, callback);
    else hold(port, () => inflate(data, fin, callback));
  };
  pmd.compress = (data, fin, callback) => {
    if (data.length <= HEAVY) {
      compress.call(pmd, data, fin, callback);
      return;
    }
    heavyJob(port, (done) =>
      compress.call(pmd, data, fin, (err, result) => {
        done();
        callback(err, result);
      }),
    );
  };
}

/** A light inflate holds no turn, but still learns whether its message was heavy. */
function noTurn(): void {}

/**
 * ws reports the close only once its receiver has finished, and a held receiver never would:
 * a socket that closes (or has closed) while inflating is held ends without inflating the rest.
 */
function hold(port: DeflatePort, run: () => void): void {
  const socket = port._socket;
  if (socket.closed) {
    process.nextTick(closeHeld, port);
    return;
  }
  const onClose = (): void => {
    if (held.delete(port)) closeHeld(port);
  };
  held.set(port, { run, onClose });
  socket.once("close", onClose);
}

function closeHeld(port: DeflatePort): void {
  port.closeNow();
}

/** The mailbox drained: inflate what was held. */
export function releaseInflate(port: DeflatePort): void {
  const h = held.get(port);
  if (h === undefined) return;
  held.delete(port);
  // A connection throttled again and again must not gather a close listener each time.
  port._socket.off("close", h.onClose);
  h.run();
}
