// cow_ws's incremental UTF-8 check: text is validated as it arrives, fragment by fragment and inside a long frame.
//
// ws validates a text message only once it is whole, so an invalid first fragment would be
// held (up to maxFrameSize) until the message ends. This scan walks the frame headers of what
// the socket delivers before ws's receiver sees it and checks the payload of every text
// message that is not already complete in the chunk; a message that is complete is left to
// ws, which checks it in the same turn. Compressed messages are checked by ws once inflated.

/** UTF-8 states: 0 accepts; 1–7 wait for continuation bytes (with the range of the next one); 8 rejects. */
const ACCEPT = 0;
const REJECT = 8;

/** The state after byte `b` (Unicode's table 3-7: no overlong forms, no surrogates, nothing past U+10FFFF). */
function step(state: number, b: number): number {
  switch (state) {
    case 0:
      if (b < 0x80) return 0;
      if (b < 0xc2) return REJECT;
      if (b < 0xe0) return 1;
      if (b === 0xe0) return 3;
      if (b === 0xed) return 4;
      if (b < 0xf0) return 2;
      if (b === 0xf0) return 6;
      if (b < 0xf4) return 5;
      return b === 0xf4 ? 7 : REJECT;
    case 1:
      return b >= 0x80 && b <= 0xbf ? 0 : REJECT;
    case 2:
      return b >= 0x80 && b <= 0xbf ? 1 : REJECT;
    case 3:
      return b >= 0xa0 && b <= 0xbf ? 1 : REJECT;
    case 4:
      return b >= 0x80 && b <= 0x9f ? 1 : REJECT;
    case 5:
      return b >= 0x80 && b <= 0xbf ? 2 : REJECT;
    case 6:
      return b >= 0x90 && b <= 0xbf ? 2 : REJECT;
    case 7:
      return b >= 0x80 && b <= 0x8f ? 2 : REJECT;
    default:
      return REJECT;
  }
}

/** What the message in progress is: none, text being checked, or one that is not checked here. */
const NO_MESSAGE = 0;
const TEXT = 1;
const UNCHECKED = 2;

/** The longest client frame header: 2 bytes, a 64-bit length, a mask. */
const MAX_HEADER = 14;

/**
 * Where one connection's inbound stream is between two chunks: in a header, in a payload,
 * inside a message. A connection between whole messages keeps none (the port holds null).
 */
export class FrameScan {
  private readonly head = new Uint8Array(MAX_HEADER);
  private headLen = 0;
  /** Payload bytes of the current frame still to come; -1 while reading a header. */
  private left = -1;
  private readonly mask = new Uint8Array(4);
  private maskAt = 0;
  /** The current frame is a data frame with FIN set: the message ends with it. */
  private last = false;
  /** The current frame's payload is checked. */
  private check = false;
  private message = NO_MESSAGE;
  private utf8 = ACCEPT;
  /** A header ws will refuse (unmasked, a length past 2^53): the connection ends there, nothing more is scanned. */
  private off = false;

  /** Between frames, outside any message: nothing to keep. */
  get idle(): boolean {
    return this.left === -1 && this.headLen === 0 && this.message === NO_MESSAGE && !this.off;
  }

  /**
   * Scans one chunk. Returns -1 when it holds no invalid UTF-8; otherwise the offset in the
   * chunk where the frame with the first invalid byte begins (0 when it began in an earlier
   * chunk): what comes before it is whole frames, for ws to deliver before the 1007.
   */
  scan(chunk: Uint8Array): number {
    if (this.off) return -1;
    const n = chunk.length;
    let i = 0;
    let frameStart = -1;
    while (i < n) {
      if (this.left === -1) {
        if (this.headLen === 0) frameStart = i;
        const read = this.header(chunk, i);
        if (read < 0) return -1;
        i += read;
        // The header goes on in the next chunk.
        if (this.left === -1) break;
        this.headLen = 0;
        // The last frame of a text message, whole in this chunk: ws checks the message in the same turn.
        if (this.last && n - i >= this.left) this.check = false;
      }
      const take = Math.min(this.left, n - i);
      if (this.check && !this.validate(chunk, i, take)) return Math.max(frameStart, 0);
      i += take;
      this.maskAt = (this.maskAt + take) & 3;
      this.left -= take;
      if (this.left === 0) this.endFrame();
    }
    return -1;
  }

  /**
   * Reads (the rest of) a header from chunk at i; returns the bytes taken, or -1 when the
   * header is one ws refuses. Sets left, mask and what to check once the header is whole.
   */
  private header(chunk: Uint8Array, i: number): number {
    const head = this.head;
    let at = i;
    while (this.headLen < 2 && at < chunk.length) head[this.headLen++] = chunk[at++]!;
    if (this.headLen < 2) return at - i;
    const b1 = head[1]!;
    if ((b1 & 0x80) === 0) return this.stop();
    const len7 = b1 & 0x7f;
    const need = 6 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0);
    while (this.headLen < need && at < chunk.length) head[this.headLen++] = chunk[at++]!;
    if (this.headLen < need) return at - i;
    let length = len7;
    if (len7 === 126) length = (head[2]! << 8) | head[3]!;
    else if (len7 === 127) {
      const high = ((head[2]! << 24) | (head[3]! << 16) | (head[4]! << 8) | head[5]!) >>> 0;
      if (high > 0x1fffff) return this.stop();
      length = high * 2 ** 32 + (((head[6]! << 24) | (head[7]! << 16) | (head[8]! << 8) | head[9]!) >>> 0);
    }
    for (let k = 0; k < 4; k++) this.mask[k] = head[need - 4 + k]!;
    this.maskAt = 0;
    this.left = length;
    const b0 = head[0]!;
    const opcode = b0 & 0x0f;
    const fin = (b0 & 0x80) !== 0;
    if (opcode >= 8) {
      this.last = false;
      this.check = false;
    } else {
      if (opcode !== 0) this.message = opcode === 1 && (b0 & 0x40) === 0 ? TEXT : UNCHECKED;
      this.last = fin;
      this.check = this.message === TEXT;
    }
    return at - i;
  }

  private stop(): number {
    this.off = true;
    return -1;
  }

  /** Unmasks and checks `count` payload bytes from chunk[i]. */
  private validate(chunk: Uint8Array, i: number, count: number): boolean {
    const mask = this.mask;
    let m = this.maskAt;
    let state = this.utf8;
    for (let k = i, end = i + count; k < end; k++) {
      const b = chunk[k]! ^ mask[m]!;
      m = (m + 1) & 3;
      if (state === ACCEPT && b < 0x80) continue;
      state = step(state, b);
      if (state === REJECT) return false;
    }
    this.utf8 = state;
    return true;
  }

  private endFrame(): void {
    this.left = -1;
    if (!this.last) return;
    // ws checks that the message does not end inside a code point.
    this.message = NO_MESSAGE;
    this.utf8 = ACCEPT;
  }
}
