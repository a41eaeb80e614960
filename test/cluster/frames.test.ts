/**
 * The frames on a connection between two nodes (src/cluster/connection.ts's FrameReader): every
 * frame comes out whole and in order however the stream is cut into chunks (one byte at a
 * time, across headers, many frames per chunk); a reader stopped after a frame keeps the rest
 * for resume; a frame without its kind byte or longer than allowed is refused.
 */
import { randomBytes } from "node:crypto";
import { describe, expect, test } from "vitest";
import { FrameReader } from "../../src/cluster/connection.js";

function frame(kind: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h.writeUInt32BE(payload.length + 1, 0);
  h[4] = kind;
  return Buffer.concat([h, payload]);
}

/** Cuts bytes into chunks of the given sizes, cycling through them. */
function cut(bytes: Buffer, sizes: readonly number[]): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0, i = 0; off < bytes.length; i++) {
    const n = sizes[i % sizes.length]!;
    out.push(bytes.subarray(off, off + n));
    off += n;
  }
  return out;
}

describe("FrameReader", () => {
  const payloads = [Buffer.alloc(0), Buffer.from("a"), randomBytes(3), randomBytes(4), randomBytes(5), randomBytes(300), randomBytes(70_000), Buffer.from("end")];
  const stream = Buffer.concat(payloads.map((p, i) => frame(i % 4, p)));

  test.each([[[1]], [[2]], [[3, 7]], [[5]], [[6, 1, 1000]], [[4096]], [[65_536]], [[stream.length]]])("chunks of %j bytes: every frame whole, in order, and no more", (sizes) => {
    const got: [number, Buffer][] = [];
    const reader = new FrameReader((kind, payload) => (got.push([kind, Buffer.from(payload)]), true));
    for (const c of cut(stream, sizes)) reader.push(c);
    expect(got.map(([k]) => k)).toEqual(payloads.map((_, i) => i % 4));
    got.forEach(([, p], i) => expect(p.equals(payloads[i]!)).toBe(true));
  });

  test("stopped after a frame, it reads nothing more until resume, then the rest in order", () => {
    const got: string[] = [];
    let stopAt = "b";
    const reader = new FrameReader((_kind, payload) => {
      got.push(payload.toString());
      return payload.toString() !== stopAt;
    });
    reader.push(Buffer.concat(["a", "b", "c"].map((x) => frame(1, Buffer.from(x)))));
    expect(got).toEqual(["a", "b"]);
    reader.push(frame(1, Buffer.from("d")));
    expect(got).toEqual(["a", "b"]);
    stopAt = "";
    reader.resume();
    expect(got).toEqual(["a", "b", "c", "d"]);
  });

  test("a frame without its kind byte, or announced longer than maxFrame, throws before its body is waited for", () => {
    const reader = new FrameReader(() => true);
    expect(() => reader.push(Buffer.from([0, 0, 0, 0, 9]))).toThrow("a frame without its kind byte");
    const small = new FrameReader(() => true, 1024);
    expect(() => small.push(Buffer.from("GET / HTTP/1.1\r\n"))).toThrow("a frame of 1195725856 bytes, above 1024");
    const ok: number[] = [];
    const bounded = new FrameReader((kind) => (ok.push(kind), true), 1024);
    bounded.push(frame(2, Buffer.alloc(1023)));
    expect(ok).toEqual([2]);
  });
});
