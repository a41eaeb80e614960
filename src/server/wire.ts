// cow_ws:frame/2: the bytes of a server frame on the wire.
/**
 * cow_ws:frame/2 for the frames a server sends without an extension: unmasked, final,
 * header and payload in one buffer, so a frame is one chunk of one socket write. ws's
 * sender makes a header buffer and writes the payload beside it (a writev of two chunks,
 * a string chunk copied once more in C++); this is what lets the port write less.
 */

export const TEXT = 0x1;
export const BINARY = 0x2;
export const PING = 0x9;
export const PONG = 0xa;

/** A binary payload longer than this is written beside its header rather than copied behind it. */
const COPY_LIMIT = 16 * 1024;

function headerLength(length: number): number {
  return length < 126 ? 2 : length < 65536 ? 4 : 10;
}

function writeHeader(target: Buffer, opcode: number, length: number): void {
  target[0] = 0x80 | opcode;
  if (length < 126) {
    target[1] = length;
  } else if (length < 65536) {
    target[1] = 126;
    target.writeUInt16BE(length, 2);
  } else {
    target[1] = 127;
    target.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
    target.writeUInt32BE(length >>> 0, 6);
  }
}

/** A text frame: header and UTF-8 payload in one buffer. */
export function textFrame(data: string): Buffer {
  const length = Buffer.byteLength(data);
  const offset = headerLength(length);
  const target = Buffer.allocUnsafe(offset + length);
  writeHeader(target, TEXT, length);
  target.write(data, offset);
  return target;
}

/**
 * A frame with a byte payload: one buffer, or for a large payload the header alone, the
 * payload to be written right after it (by reference, as ws does).
 */
export function byteFrame(opcode: number, data: Uint8Array): Buffer {
  const length = data.byteLength;
  const offset = headerLength(length);
  if (length > COPY_LIMIT) {
    const header = Buffer.allocUnsafe(offset);
    writeHeader(header, opcode, length);
    return header;
  }
  const target = Buffer.allocUnsafe(offset + length);
  writeHeader(target, opcode, length);
  target.set(data, offset);
  return target;
}

/** Whether byteFrame left the payload out of the buffer it made. */
export function payloadApart(data: Uint8Array): boolean {
  return data.byteLength > COPY_LIMIT;
}
