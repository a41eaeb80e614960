// A child process for test/reliability/deflate-fairness.test.ts: `attackers` compressed
// connections send messages of ~1 KB that inflate to 999,000 B (4 in flight each, replies
// read and dropped) while a compressed canary sends a small message every 20 ms and times
// its echo. Raw sockets and precomputed frames, so the child itself costs little CPU.
// Prints one JSON line with the canary's round trips, then exits after `seconds`.
import { connect } from "node:net";
import { randomBytes } from "node:crypto";
import { deflateRawSync, constants } from "node:zlib";

const [port, attackers, seconds, path] = [Number(process.argv[2]), Number(process.argv[3]), Number(process.argv[4]), process.argv[5] ?? "/"];

function compressed(text) {
  const d = deflateRawSync(Buffer.from(text), { finishFlush: constants.Z_SYNC_FLUSH });
  return d.subarray(0, d.length - 4);
}

/** A masked text frame with RSV1 (compressed). */
function frame(payload) {
  const key = randomBytes(4);
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0xc1, 0x80 | len]) : Buffer.from([0xc1, 0x80 | 126, len >> 8, len & 0xff]);
  const body = Buffer.alloc(len);
  for (let i = 0; i < len; i++) body[i] = payload[i] ^ key[i & 3];
  return Buffer.concat([head, key, body]);
}

/** Opens a permessage-deflate connection; onFrame runs once per complete server frame. */
function open(onFrame) {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port });
    s.setNoDelay(true);
    let buf = Buffer.alloc(0);
    let upgraded = false;
    s.on("error", () => {});
    s.on("connect", () => {
      s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n`);
    });
    s.on("data", (chunk) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (!upgraded) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        if (!buf.subarray(0, 12).toString().includes("101")) return reject(new Error(buf.subarray(0, end).toString()));
        upgraded = true;
        buf = buf.subarray(end + 4);
        resolve(s);
      }
      for (;;) {
        if (buf.length < 2) return;
        let len = buf[1] & 0x7f;
        let at = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          at = 4;
        } else if (len === 127) {
          if (buf.length < 10) return;
          len = Number(buf.readBigUInt64BE(2));
          at = 10;
        }
        if (buf.length < at + len) return;
        buf = buf.subarray(at + len);
        onFrame();
      }
    });
  });
}

const bomb = frame(compressed("a".repeat(999_000)));
let attacks = 0;
let stopped = false;
const socks = [];
for (let i = 0; i < attackers; i++) {
  let sock;
  sock = await open(() => {
    attacks++;
    if (!stopped) sock.write(bomb);
  });
  socks.push(sock);
  for (let k = 0; k < 4; k++) sock.write(bomb);
}

const rtts = [];
let sentAt = 0;
const canary = await open(() => {
  rtts.push(performance.now() - sentAt);
  if (!stopped) setTimeout(ping, 20);
});
const small = frame(compressed("canary ping"));
function ping() {
  sentAt = performance.now();
  canary.write(small);
}
// Let the attack fill the server's queue first.
setTimeout(ping, 500);
setTimeout(() => {
  stopped = true;
  const s = [...rtts].sort((a, b) => a - b);
  const at = (q) => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
  process.stdout.write(JSON.stringify({ n: s.length, p50: at(0.5), p99: at(0.99), max: s[s.length - 1] ?? NaN, attacks, pending: sentAt > 0 && rtts.length === 0 }) + "\n");
  for (const x of [...socks, canary]) x.destroy();
  process.exit(0);
}, seconds * 1000);
