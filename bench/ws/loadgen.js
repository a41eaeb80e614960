// @ts-check
/**
 * The load generator: one process (started by bench/ws/rig.js, driven over IPC with
 * bench/ws/control.js), its connections spread over worker threads.
 *
 * The clients are lean on purpose, so the generator is not the bottleneck on a 2-core box:
 * a plain net.Socket per connection, the HTTP upgrade written by hand (the server's
 * Sec-WebSocket-Accept is checked), masked client frames stamped from a pre-masked template,
 * server frames parsed in place. Everything a client receives is checked:
 *
 *   echo  each connection keeps `inflight` messages of `size` bytes in flight (closed loop),
 *         even-numbered connections text, odd ones binary; every message carries its
 *         sequence number and the echo must come back with the same opcode, length and
 *         number, in order. Latency: send to echo, per message, in a log histogram (µs).
 *   idle  counts what the server pushes; `expect` arms a round in which every connection must
 *         get the expected text exactly once, and reports the monotonic time (hrtime, the
 *         same clock in every process) at which the last one had it.
 *   push  records, per connection, the interval between consecutive pushes; lateness =
 *         interval - 1000 ms, in a log histogram (µs).
 *
 * Source addresses: connection i binds sources[i % sources.length] (127.0.0.x) and a local
 * port picked here (see localEnd), so the count is not limited by one address's ports.
 */
import { createHash, randomBytes } from "node:crypto";
import net from "node:net";
import { performance } from "node:perf_hooks";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { merge, newHist, record } from "./hist.js";
import { commonCommands, ready, serve } from "./control.js";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/** Client ports: 10000–32767, below Linux's default ephemeral range (32768–60999). */
const LOCAL_PORT_MIN = 10_000;
const LOCAL_PORTS = 22_768;

if (isMainThread) await main();
else await worker();

/* ------------------------------------------------------------------ main thread */

async function main() {
  /** @type {{ w: Worker, calls: Map<number, { resolve: (v: any) => void, reject: (e: Error) => void }> }[]} */
  let workers = [];
  let nextId = 1;
  /** @type {Error | null} */
  let workerFailure = null;

  /**
   * @param {number} k
   * @param {string} cmd
   * @param {unknown} args
   */
  function call(k, cmd, args) {
    const wk = workers[k];
    if (workerFailure) return Promise.reject(workerFailure);
    return new Promise((resolve, reject) => {
      const id = nextId++;
      wk.calls.set(id, { resolve, reject });
      wk.w.postMessage({ id, cmd, args });
    });
  }

  /**
   * @param {string} cmd
   * @param {(k: number) => unknown} [argsFor]
   */
  function all(cmd, argsFor) {
    return Promise.all(workers.map((_, k) => call(k, cmd, argsFor ? argsFor(k) : undefined)));
  }

  const common = commonCommands();
  serve({
    exit: common.exit,
    cpu: common.cpu,
    /** Starts the worker threads. */
    setup: async (/** @type {{ workers: number }} */ a) => {
      const url = new URL(import.meta.url);
      workers = [];
      for (let k = 0; k < a.workers; k++) {
        const w = new Worker(url, { workerData: { k } });
        const wk = { w, calls: new Map() };
        w.on("message", (/** @type {any} */ m) => {
          const c = wk.calls.get(m.id);
          if (!c) return;
          wk.calls.delete(m.id);
          if (m.ok) c.resolve(m.value);
          else c.reject(new Error(`worker ${k}: ${m.error}`));
        });
        w.on("error", (err) => {
          workerFailure = err;
          for (const c of wk.calls.values()) c.reject(err);
          wk.calls.clear();
        });
        workers.push(wk);
      }
      await all("ping");
      return workers.length;
    },
    /** Opens `count` connections (indices first..first+count-1), split over the workers. */
    connect: async (/** @type {{ count: number, first: number } & Record<string, unknown>} */ a) => {
      const n = workers.length;
      const rs = await all("connect", (k) => {
        const lo = Math.floor((a.count * k) / n);
        const hi = Math.floor((a.count * (k + 1)) / n);
        return { ...a, first: a.first + lo, count: hi - lo, concurrency: Math.max(1, Math.floor(Number(a.concurrency) / n)) };
      });
      /** @type {bigint} */
      let t0 = rs[0].t0;
      /** @type {bigint} */
      let t1 = rs[0].t1;
      for (const r of rs) {
        if (r.t0 < t0) t0 = r.t0;
        if (r.t1 > t1) t1 = r.t1;
      }
      const upgradeHist = newHist();
      for (const r of rs) merge(upgradeHist, r.upgradeHist);
      return { opened: sum(rs, "opened"), retries: sum(rs, "retries"), failed: sum(rs, "failed"), upgradeHist, t0, t1 };
    },
    echoStart: (/** @type {unknown} */ a) => all("echoStart", () => a).then(() => true),
    echoStop: async (/** @type {unknown} */ a) => {
      const rs = await all("echoStop", () => a);
      return { outstanding: sum(rs, "outstanding") };
    },
    /** A window boundary: counts and histograms since the previous mark, per worker ELU. */
    mark: async () => {
      const rs = await all("mark");
      const hist = newHist();
      for (const r of rs) merge(hist, r.hist);
      return {
        received: sum(rs, "received"),
        sent: sum(rs, "sent"),
        conns: sum(rs, "conns"),
        hist,
        elu: rs.map((r) => r.elu),
        minPerConn: Math.min(...rs.map((r) => r.minPerConn)),
        maxPerConn: Math.max(...rs.map((r) => r.maxPerConn)),
        minLateMs: Math.min(...rs.map((r) => r.minLateMs)),
        errors: sum(rs, "errors"),
        firstError: rs.find((r) => r.firstError)?.firstError ?? null,
      };
    },
    expect: (/** @type {unknown} */ a) => all("expect", () => a).then(() => true),
    awaitExpect: async (/** @type {unknown} */ a) => {
      const rs = await all("awaitExpect", () => a);
      /** @type {bigint} */
      let tLast = rs[0].tLast;
      for (const r of rs) if (r.tLast > tLast) tLast = r.tLast;
      return { tLast, got: sum(rs, "got") };
    },
    closeAll: async () => {
      const rs = await all("closeAll");
      return { closed: sum(rs, "closed") };
    },
  });
  ready({});
}

/**
 * @param {any[]} rs
 * @param {string} key
 */
function sum(rs, key) {
  let s = 0;
  for (const r of rs) s += r[key];
  return s;
}

/* ------------------------------------------------------------------ worker threads */

async function worker() {
  const port = /** @type {import("node:worker_threads").MessagePort} */ (parentPort);
  void workerData;

  /** @type {Conn[]} */
  let conns = [];
  const SEED = randomBytes(4).readUInt32BE(0);
  /** 16 bytes: connection index, attempt, 8 random bytes (a valid Sec-WebSocket-Key). */
  const KEY = Buffer.concat([Buffer.alloc(8), randomBytes(8)]);
  /** "idle" until echoStart / expect / push marks say otherwise; also the frame checks. */
  let mode = "idle";
  let running = false;
  let closing = false;
  let errors = 0;
  /** @type {string | null} */
  let firstError = null;
  // Window counters, reset at each mark.
  let received = 0;
  let sent = 0;
  let hist = newHist();
  let minLateMs = Infinity;
  let eluMark = performance.eventLoopUtilization();
  // Echo parameters.
  let size = 32;
  let inflight = 16;
  // Expect rounds (app-to-pid).
  /** @type {Buffer | null} */
  let expected = null;
  let remaining = 0;
  let tLast = 0n;
  /** @type {(() => void) | null} */
  let onAllGot = null;

  /** @param {string} msg */
  function fail(msg) {
    errors++;
    if (firstError === null) firstError = msg;
  }

  class Conn {
    /**
     * @param {number} index
     */
    constructor(index) {
      this.index = index;
      /** @type {net.Socket | null} */
      this.socket = null;
      this.open = false;
      /** @type {Buffer | null} handshake bytes so far, then a partial frame */
      this.pending = null;
      this.key = "";
      this.opcode = index % 2 === 0 ? 1 : 2;
      // Masking keys and handshake keys from a per-worker random seed and the index: the
      // server cannot tell, and randomBytes per connection is a syscall the generator can spare.
      this.mask = Buffer.alloc(4);
      this.mask.writeUInt32BE((SEED ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
      /** @type {Buffer | null} header + masked payload, the seq digits to be stamped */
      this.template = null;
      /** @type {Float64Array | null} */
      this.sentAt = null;
      this.sentSeq = 0;
      this.recvSeq = 0;
      this.outstanding = 0;
      this.got = 0;
      this.last = 0;
    }

    /**
     * @param {Buffer} chunk
     */
    onData(chunk) {
      let buf = chunk;
      if (this.pending !== null) {
        buf = Buffer.concat([this.pending, chunk]);
        this.pending = null;
      }
      if (!this.open) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) {
          this.pending = buf;
          return;
        }
        this.handshake(buf.toString("latin1", 0, end));
        buf = buf.subarray(end + 4);
        if (buf.length === 0) return;
      }
      const now = performance.now();
      let off = 0;
      let echoed = 0;
      const n = buf.length;
      while (n - off >= 2) {
        const b0 = buf[off];
        const b1 = buf[off + 1];
        let len = b1 & 0x7f;
        let hdr = 2;
        if (len === 126) {
          if (n - off < 4) break;
          len = buf.readUInt16BE(off + 2);
          hdr = 4;
        } else if (len === 127) {
          if (n - off < 10) break;
          len = Number(buf.readBigUInt64BE(off + 2));
          hdr = 10;
        }
        if (n - off < hdr + len) break;
        if ((b1 & 0x80) !== 0) fail(`conn ${this.index}: masked frame from the server`);
        const op = b0 & 0x0f;
        const at = off + hdr;
        off = at + len;
        if (op === 8) {
          fail(`conn ${this.index}: server sent close ${len >= 2 ? buf.readUInt16BE(at) : ""} ${buf.toString("utf8", at + 2, at + len)}`);
          continue;
        }
        if ((b0 & 0x80) === 0 || op === 0) {
          fail(`conn ${this.index}: fragmented frame (opcode ${op})`);
          continue;
        }
        if (mode === "echo") {
          if (this.template === null) {
            fail(`conn ${this.index}: a frame before any echo was sent`);
            continue;
          }
          if (op !== this.opcode || len !== size) {
            fail(`conn ${this.index}: echo opcode ${op} length ${len}, expected ${this.opcode} / ${size}`);
            continue;
          }
          let seq = 0;
          for (let d = 0; d < 10; d++) seq = seq * 10 + (buf[at + d] - 48);
          if (seq !== this.recvSeq) {
            fail(`conn ${this.index}: echo #${seq}, expected #${this.recvSeq}`);
            this.recvSeq = seq;
          }
          this.recvSeq++;
          this.outstanding--;
          record(hist, (now - /** @type {Float64Array} */ (this.sentAt)[seq % inflight]) * 1000);
          received++;
          echoed++;
        } else if (mode === "push") {
          if (op !== 1 || len !== 4 || buf.toString("latin1", at, at + 4) !== "tick") {
            fail(`conn ${this.index}: push frame opcode ${op} length ${len}`);
            continue;
          }
          if (this.last > 0) {
            const late = now - this.last - 1000;
            if (late < minLateMs) minLateMs = late;
            record(hist, late * 1000);
          }
          this.got++;
          received++;
          this.last = now;
        } else {
          // idle: a pushed message from app code
          received++;
          const e = expected;
          if (e === null || op !== 1 || len !== e.length || buf.compare(e, 0, e.length, at, at + len) !== 0) {
            fail(`conn ${this.index}: unexpected message (opcode ${op}, ${len} bytes): ${buf.toString("utf8", at, Math.min(at + len, at + 40))}`);
            continue;
          }
          if (this.got++ === 0) {
            if (--remaining === 0) {
              tLast = process.hrtime.bigint();
              onAllGot?.();
            }
          } else fail(`conn ${this.index}: got the same message twice`);
        }
      }
      if (off < n) this.pending = buf.subarray(off);
      if (echoed > 0 && running) this.sendEcho(echoed, now);
    }

    /** @param {string} head */
    handshake(head) {
      if (!head.startsWith("HTTP/1.1 101")) throw new Error(`conn ${this.index}: handshake refused: ${head.split("\r\n")[0]}`);
      const m = /\r\nsec-websocket-accept:[ \t]*([^\r\n]+)/i.exec(head);
      const want = createHash("sha1").update(this.key + GUID).digest("base64");
      if (m === null || m[1].trim() !== want) throw new Error(`conn ${this.index}: bad Sec-WebSocket-Accept`);
      this.open = true;
    }

    /**
     * Writes k echo messages in one write, each stamped with its sequence number.
     * @param {number} k
     * @param {number} now
     */
    sendEcho(k, now) {
      const t = /** @type {Buffer} */ (this.template);
      const fl = t.length;
      const buf = Buffer.allocUnsafe(k * fl);
      const mask = this.mask;
      const sentAt = /** @type {Float64Array} */ (this.sentAt);
      for (let f = 0; f < k; f++) {
        const o = f * fl;
        t.copy(buf, o);
        let seq = this.sentSeq++;
        sentAt[seq % inflight] = now;
        for (let d = 9; d >= 0; d--) {
          buf[o + 6 + d] = (48 + (seq % 10)) ^ mask[d & 3];
          seq = Math.floor(seq / 10);
        }
      }
      this.outstanding += k;
      sent += k;
      /** @type {net.Socket} */ (this.socket).write(buf);
    }
  }

  /**
   * With countFailures (the storm), a connection that fails every attempt is counted as
   * failed instead of failing the call. upgradeHist: each connection's time from its first
   * connect to its 101, retries included (µs).
   * @param {{ mode: "echo" | "idle" | "push", port: number, path: string, first: number, count: number, sources: string[], concurrency: number, timeoutMs: number, countFailures?: boolean }} a
   */
  function connect(a) {
    mode = a.mode;
    closing = false;
    return new Promise((resolve, reject) => {
      const t0 = process.hrtime.bigint();
      let next = 0;
      let active = 0;
      let opened = 0;
      let retries = 0;
      let failed = 0;
      const upgradeHist = newHist();
      let done = false;
      const deadline = setTimeout(() => {
        done = true;
        reject(new Error(`${opened} of ${a.count} connections open after ${a.timeoutMs} ms (${retries} retries)`));
      }, a.timeoutMs);
      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(deadline);
        resolve({ opened, retries, failed, upgradeHist, t0, t1: process.hrtime.bigint() });
      };
      if (a.count === 0) return finish();
      /**
       * @param {number} i
       * @param {number} attempt
       * @param {number} since  performance.now() at the first attempt
       */
      const open = (i, attempt, since) => {
        const c = new Conn(a.first + i);
        KEY.writeUInt32BE((a.first + i) >>> 0, 0);
        KEY.writeUInt32BE(attempt, 4);
        c.key = KEY.toString("base64");
        const socket = net.connect({ port: a.port, host: "127.0.0.1", ...localEnd(a.first + i, attempt, a.sources), noDelay: true });
        c.socket = socket;
        let settled = false;
        socket.on("connect", () => {
          socket.write(
            `GET ${a.path} HTTP/1.1\r\nHost: 127.0.0.1:${a.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
              `Sec-WebSocket-Key: ${c.key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
          );
        });
        socket.on("data", (chunk) => {
          try {
            c.onData(chunk);
          } catch (err) {
            // A refused or broken handshake: the run is wrong, not slow.
            const msg = err instanceof Error ? err.message : String(err);
            fail(msg);
            socket.destroy();
            if (!settled && !done) {
              settled = true;
              done = true;
              clearTimeout(deadline);
              reject(new Error(msg));
            }
            return;
          }
          if (!settled && c.open) {
            settled = true;
            record(upgradeHist, (performance.now() - since) * 1000);
            conns.push(c);
            active--;
            opened++;
            if (opened + failed === a.count) finish();
            else launch();
          }
        });
        socket.on("error", () => {});
        socket.on("close", () => {
          if (!settled) {
            // Refused or reset before the handshake finished (a full accept queue): try again.
            settled = true;
            if (done) return;
            if (attempt < 5) {
              retries++;
              setTimeout(() => open(i, attempt + 1, since), 20 * (attempt + 1));
            } else if (a.countFailures) {
              failed++;
              active--;
              if (opened + failed === a.count) finish();
              else launch();
            } else {
              done = true;
              clearTimeout(deadline);
              reject(new Error(`connection ${a.first + i} failed ${attempt + 1} times`));
            }
            return;
          }
          if (!closing) fail(`conn ${c.index}: closed by the server`);
        });
      };
      const launch = () => {
        while (!done && active < a.concurrency && next < a.count) {
          active++;
          open(next++, 0, performance.now());
        }
      };
      launch();
    });
  }

  /**
   * Where connection i binds: source address i mod n, and a local port of our choosing below
   * the kernel's ephemeral range. Binding port 0 on a given address makes the kernel search
   * that address's bound ports (seconds of system time per 10 000 connections here), while a
   * named port is one lookup; another process listening on it makes that attempt fail, and
   * the retry takes another port.
   * @param {number} i
   * @param {number} attempt
   * @param {string[]} sources
   */
  function localEnd(i, attempt, sources) {
    const n = sources.length;
    if (n === 0) return {};
    return { localAddress: sources[i % n], localPort: LOCAL_PORT_MIN + ((Math.floor(i / n) + attempt * 7919) % LOCAL_PORTS) };
  }

  /** @type {Record<string, (a: any) => unknown>} */
  const commands = {
    ping: () => true,
    connect,
    echoStart(/** @type {{ inflight: number, size: number }} */ a) {
      if (a.size < 12 || a.size > 125) throw new Error("echo size must be 12..125 bytes");
      mode = "echo";
      size = a.size;
      inflight = a.inflight;
      running = true;
      const now = performance.now();
      for (const c of conns) {
        const t = Buffer.alloc(6 + size);
        t[0] = 0x80 | c.opcode;
        t[1] = 0x80 | size;
        c.mask.copy(t, 2);
        for (let j = 0; j < size; j++) t[6 + j] = (j < 10 ? 48 : 97 + (j % 26)) ^ c.mask[j & 3];
        c.template = t;
        c.sentAt = new Float64Array(inflight);
        c.sendEcho(inflight, now);
      }
      return true;
    },
    async echoStop(/** @type {{ timeoutMs: number }} */ a) {
      running = false;
      const end = performance.now() + a.timeoutMs;
      const outstanding = () => conns.reduce((s, c) => s + c.outstanding, 0);
      while (outstanding() > 0 && performance.now() < end) await new Promise((r) => setTimeout(r, 10));
      return { outstanding: outstanding() };
    },
    mark() {
      const now = performance.eventLoopUtilization();
      const elu = performance.eventLoopUtilization(now, eluMark).utilization;
      eluMark = now;
      let minPerConn = Infinity;
      let maxPerConn = 0;
      for (const c of conns) {
        if (c.got < minPerConn) minPerConn = c.got;
        if (c.got > maxPerConn) maxPerConn = c.got;
        c.got = 0;
      }
      const r = { received, sent, conns: conns.length, hist, elu, minPerConn, maxPerConn, minLateMs, errors, firstError };
      received = 0;
      sent = 0;
      hist = newHist();
      minLateMs = Infinity;
      return r;
    },
    expect(/** @type {{ msg: string }} */ a) {
      mode = "idle";
      expected = Buffer.from(a.msg);
      remaining = conns.length;
      tLast = 0n;
      for (const c of conns) c.got = 0;
      return true;
    },
    awaitExpect(/** @type {{ timeoutMs: number }} */ a) {
      return new Promise((resolve, reject) => {
        const result = () => ({ tLast, got: conns.length - remaining });
        if (remaining === 0) return resolve(result());
        const timer = setTimeout(() => {
          onAllGot = null;
          reject(new Error(`${conns.length - remaining} of ${conns.length} connections got the message within ${a.timeoutMs} ms`));
        }, a.timeoutMs);
        onAllGot = () => {
          onAllGot = null;
          clearTimeout(timer);
          resolve(result());
        };
      });
    },
    closeAll() {
      closing = true;
      running = false;
      return new Promise((resolve) => {
        let left = 0;
        const end = setTimeout(() => resolve({ closed: conns.length - left }), 5000);
        for (const c of conns) {
          const s = /** @type {net.Socket} */ (c.socket);
          if (s.destroyed) continue;
          left++;
          s.once("close", () => {
            if (--left === 0) {
              clearTimeout(end);
              resolve({ closed: conns.length });
            }
          });
          s.destroy();
        }
        conns = [];
        if (left === 0) {
          clearTimeout(end);
          resolve({ closed: 0 });
        }
      });
    },
  };

  // CORRAL_BENCH_PROFILE_LOADGEN=<dir>: each worker profiles itself (--cpu-prof covers only a
  // process's main thread), written to <dir>/loadgen-worker<k>-<pid>.cpuprofile at closeAll.
  const profileDir = process.env.CORRAL_BENCH_PROFILE_LOADGEN;
  /** @type {import("node:inspector").Session | null} */
  let session = null;
  if (profileDir && profileDir !== "1") {
    const inspector = await import("node:inspector");
    session = new inspector.Session();
    session.connect();
    session.post("Profiler.enable", () => session?.post("Profiler.start"));
    const close = commands.closeAll;
    commands.closeAll = async () => {
      const r = await close(undefined);
      await new Promise((resolve) =>
        session?.post("Profiler.stop", async (err, res) => {
          if (!err) {
            const { writeFileSync } = await import("node:fs");
            writeFileSync(`${profileDir}/loadgen-worker${workerData.k}-${process.pid}.cpuprofile`, JSON.stringify(res.profile));
          }
          resolve(undefined);
        }),
      );
      return r;
    };
  }

  port.on("message", async (/** @type {any} */ m) => {
    try {
      const fn = commands[m.cmd];
      if (fn === undefined) throw new Error(`unknown command ${m.cmd}`);
      port.postMessage({ id: m.id, ok: true, value: await fn(m.args) });
    } catch (err) {
      port.postMessage({ id: m.id, ok: false, error: err instanceof Error ? err.message : String(err) });
    }
  });
}
