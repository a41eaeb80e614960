// @ts-check
/**
 * One corral node of the cluster benchmark, in its own process: forked by bench/cluster/rig.js
 * with IPC (or, as a node:cluster worker, by bench/cluster/ipc-rig.js), it imports the runtime
 * under test (bench/lib/corral.js: run.js's copy of dist/), joins the cluster when told
 * (through Redis, or over IPC through the measurement child), and runs the processes each
 * measurement needs. The coordinator sends { id, cmd, args } over bench/ws/control.js's channel.
 *
 * Nothing here runs per message except the processes' own handlers: the coordinator talks to
 * a node between runs and once at each end of a run. Clock readings that cross processes use
 * process.hrtime.bigint() (CLOCK_MONOTONIC, one clock for every process on the machine).
 * Every run has an end it reaches by itself (n messages, count round trips, one broadcast)
 * and every wait a deadline.
 */
import { DIST_URL } from "../lib/corral.js";
import { deferred as timedDeferred } from "../lib/measure.js";
import { ready, serve } from "../ws/control.js";

/** @type {typeof import("../../dist/index.js")} */
const corral = await import(DIST_URL);
const { Pid, answer, broadcast, call, clusterInfo, join, members, nodeName, nodes, ok, self, send, spawn, startCluster, stop, stopCluster } = corral;

/** @typedef {import("../../dist/index.js").Pid} PidT */
/** @typedef {{ hello: PidT }} Hello   a source's or pinger's first message: where to answer */
/** @typedef {{ seq: number, pad?: string }} Data  a numbered message, ~1 KB with its pad */

const GO = "go";
const ACK = "ack";
/** The ~1 KB variant's padding: one string shared by every message (each send serializes it anyway). */
const PAD = "x".repeat(1000);

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * @template T
 * @typedef {{ promise: Promise<T>, resolve: (v: T) => void, reject: (e: Error) => void }} Deferred
 */

/**
 * measure.js's deferred, whose failure before anyone awaits it is not an unhandled rejection.
 * @template T
 * @param {number} timeoutMs
 * @param {string} what
 * @returns {Deferred<T>}
 */
function deferred(timeoutMs, what) {
  /** @type {Deferred<T>} */
  const d = timedDeferred(timeoutMs, what);
  d.promise.catch(() => {});
  return d;
}

/**
 * @param {() => boolean} pred
 * @param {number} timeoutMs
 * @param {string} what
 */
async function waitFor(pred, timeoutMs, what) {
  const end = performance.now() + timeoutMs;
  while (!pred()) {
    if (performance.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

// ---------------------------------------------------------------------------------------
// Throughput: a source sends n messages to a sink, `window` batches of `batch` in flight

/**
 * @param {number} i
 * @param {number} size  0: { seq }; else { seq, pad } with a 1 000-character pad
 */
function message(i, size) {
  return size === 0 ? { seq: i } : { seq: i, pad: PAD };
}

/** @type {Deferred<{ tEnd: bigint }> | null} */
let sinkRun = null;

/**
 * Counts n messages, each checked in order (and its pad intact), and acknowledges every
 * `batch` of them to the source, which grants it one more batch: the source never has more
 * than window × batch unacknowledged, so neither the transport's queue nor the sink's mailbox
 * grows with n. The source says hello first (per sender → receiver order keeps it first).
 * @type {import("../../dist/index.js").ProcessBehavior<{ n: number, batch: number, size: number, next: number, from: PidT | null }, Hello | Data, { n: number, batch: number, size: number }>}
 */
const sinkBehaviour = {
  init: (p) => ({ n: p.n, batch: p.batch, size: p.size, next: 0, from: null }),
  handleInfo(msg, st) {
    if ("hello" in msg) {
      st.from = msg.hello;
      return ok(st);
    }
    if (msg.seq !== st.next || (st.size > 0 && msg.pad?.length !== PAD.length)) {
      sinkRun?.reject(new Error(`sink: got ${JSON.stringify(msg).slice(0, 80)}, expected seq ${st.next}`));
      return stop(st);
    }
    if (++st.next === st.n) {
      sinkRun?.resolve({ tEnd: process.hrtime.bigint() });
      return stop(st);
    }
    if (st.next % st.batch === 0 && st.from !== null) send(st.from, ACK);
    return ok(st);
  },
};

/** @type {import("../../dist/index.js").ProcessBehavior<{ to: PidT, n: number, batch: number, window: number, size: number, sent: number }, string, { to: string, n: number, batch: number, window: number, size: number }>} */
const sourceBehaviour = {
  init: (p) => ({ to: Pid.parse(p.to), n: p.n, batch: p.batch, window: p.window, size: p.size, sent: 0 }),
  handleInfo(msg, st) {
    let batches = 1;
    if (msg === GO) {
      send(st.to, { hello: self() });
      batches = st.window;
    }
    const end = Math.min(st.sent + batches * st.batch, st.n);
    for (let i = st.sent; i < end; i++) send(st.to, message(i, st.size));
    st.sent = end;
    // Done sending: the last acknowledgements go to a dead pid and are dropped, as any send to one.
    return st.sent === st.n ? stop(st) : ok(st);
  },
};

// ---------------------------------------------------------------------------------------
// Latency: ping-pong, one message in flight

/**
 * Answers each message to the pid that said hello last (the same small { seq } as the
 * throughput run); each pinger says hello first, so one ponger serves pingers in turn.
 * @type {import("../../dist/index.js").ProcessBehavior<{ from: PidT | null }, Hello | Data, null>}
 */
const pongerBehaviour = {
  init: () => ({ from: null }),
  handleInfo(msg, st) {
    if ("hello" in msg) st.from = msg.hello;
    else if (st.from !== null) send(st.from, msg);
    return ok(st);
  },
};

/** @type {Deferred<Float64Array> | null} */
let pingRun = null;

/** @type {import("../../dist/index.js").ProcessBehavior<{ to: PidT, total: number, warmup: number, i: number, t: number, samples: Float64Array }, typeof GO | Data, { to: string, count: number, warmup: number }>} */
const pingerBehaviour = {
  init: (p) => ({ to: Pid.parse(p.to), total: p.warmup + p.count, warmup: p.warmup, i: 0, t: 0, samples: new Float64Array(p.count) }),
  handleInfo(msg, st) {
    if (msg === GO) {
      send(st.to, { hello: self() });
    } else {
      const now = performance.now();
      if (msg.seq !== st.i) {
        pingRun?.reject(new Error(`pinger: got ${JSON.stringify(msg)}, expected seq ${st.i}`));
        return stop(st);
      }
      if (st.i >= st.warmup) st.samples[st.i - st.warmup] = (now - st.t) * 1000;
      if (++st.i === st.total) {
        pingRun?.resolve(st.samples);
        return stop(st);
      }
    }
    st.t = performance.now();
    send(st.to, { seq: st.i });
    return ok(st);
  },
};

/**
 * @param {Float64Array} us  round trips in µs
 */
function latencyStats(us) {
  const s = Float64Array.from(us).sort();
  /** @param {number} q */
  const at = (q) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  let sum = 0;
  for (const v of s) sum += v;
  return { n: s.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), p999: at(0.999), max: s[s.length - 1], min: s[0], mean: sum / s.length };
}

// ---------------------------------------------------------------------------------------
// Call: app code calls a callee, next to a requester process sending it requests

/**
 * Answers a call with its request (`answer(x, state)`), and a request message `{ from, x }`
 * with `send(from, x)`: the same callee for the call and for the send idiom it replaces.
 * @type {import("../../dist/index.js").ProcessBehavior<null, { from: PidT, x: number }, null>}
 */
const echoBehaviour = {
  init: () => null,
  handleCall: (x, _from, st) => answer(x, st),
  handleInfo(msg, st) {
    send(msg.from, msg.x);
    return ok(st);
  },
};

/** @type {Deferred<number> | null} */
let requestRun = null;

/**
 * Keeps `window` requests `{ from: self(), x }` in flight to `to`: each answer (checked, in
 * order) sends the next, until n are answered; resolves requestRun with the end time.
 * @type {import("../../dist/index.js").ProcessBehavior<{ to: PidT, n: number, window: number, sent: number, next: number }, typeof GO | number, { to: string, n: number, window: number }>}
 */
const requesterBehaviour = {
  init: (p) => ({ to: Pid.parse(p.to), n: p.n, window: p.window, sent: 0, next: 0 }),
  handleInfo(msg, st) {
    let more = 1;
    if (msg === GO) more = st.window;
    else if (msg !== st.next) {
      requestRun?.reject(new Error(`requester: got ${String(msg)}, expected ${st.next}`));
      return stop(st);
    } else if (++st.next === st.n) {
      requestRun?.resolve(performance.now());
      return stop(st);
    }
    const me = self();
    for (const end = Math.min(st.sent + more, st.n); st.sent < end; st.sent++) send(st.to, { from: me, x: st.sent });
    return ok(st);
  },
};

// ---------------------------------------------------------------------------------------
// Broadcast: members of a group report each message to this node's collector

let got = 0;
let want = 0;
/**
 * When the run's first member handled the message: on the far node, what crossing costs
 * before the fan-out (the collector's own first count would come only after every member
 * ran, since the members are ahead of it in the run queue).
 */
let tFirst = 0n;
/** @type {Deferred<bigint> | null} */
let collected = null;
/** @type {PidT | null} */
let collector = null;

/** @type {import("../../dist/index.js").ProcessBehavior<null, number, null>} */
const collectorBehaviour = {
  init: () => null,
  handleInfo(_msg, st) {
    if (++got === want) collected?.resolve(process.hrtime.bigint());
    return ok(st);
  },
};

/** Joins its group in init; for each message, one count to the collector. */
/** @type {import("../../dist/index.js").ProcessBehavior<PidT, unknown, { group: string, collector: PidT }>} */
const memberBehaviour = {
  init(p) {
    join(p.group);
    return p.collector;
  },
  handleInfo(_msg, to) {
    if (tFirst === 0n) tFirst = process.hrtime.bigint();
    send(to, 1);
    return ok(to);
  },
};

/** @param {string} group */
function localMembers(group) {
  const me = nodeName();
  let n = 0;
  for (const pid of members(group)) if (pid.node === me) n++;
  return n;
}

// ---------------------------------------------------------------------------------------
// Commands

/**
 * Each command's args are what the coordinator sends for it (documented on each); the table is
 * looked up by name, so the common type cannot be narrower than the IPC channel's.
 * @type {Record<string, (args: any) => unknown>}
 */
const commands = {
  /** @param {{ redis?: string, node: string }} a  without redis: over IPC, as a worker of the measurement child */
  async start(a) {
    // Heartbeat and timeout at their defaults: the benchmark measures the cluster as shipped.
    const info = await startCluster(a.redis === undefined ? { ipc: true, node: a.node } : { redis: a.redis, node: a.node });
    return { node: info.node, nodes: info.nodes };
  },
  /** @param {{ n: number, timeoutMs: number }} a */
  async waitPeers(a) {
    await waitFor(() => nodes().length >= a.n, a.timeoutMs, `${a.n} other node(s) to be up`);
    return nodes();
  },
  info: () => clusterInfo(),
  cpu: () => process.cpuUsage(),
  gc() {
    const gc = globalThis.gc;
    if (typeof gc === "function") gc();
    return null;
  },

  /** @param {{ n: number, batch: number, size: number, timeoutMs: number }} a */
  sink(a) {
    if (sinkRun !== null) throw new Error("a sink run is already under way");
    sinkRun = deferred(a.timeoutMs, `the sink to receive ${a.n} messages`);
    return String(spawn(sinkBehaviour, { n: a.n, batch: a.batch, size: a.size }));
  },
  /** @param {{ to: string, n: number, batch: number, window: number, size: number }} a */
  source(a) {
    const pid = spawn(sourceBehaviour, a);
    const t0 = process.hrtime.bigint();
    send(pid, GO);
    return { t0 };
  },
  async sinkDone() {
    if (sinkRun === null) throw new Error("no sink run");
    try {
      return await sinkRun.promise;
    } finally {
      sinkRun = null;
    }
  },

  ponger: () => String(spawn(pongerBehaviour, null)),
  /** @param {{ to: string, count: number, warmup: number, timeoutMs: number }} a */
  async ping(a) {
    pingRun = deferred(a.timeoutMs, `${a.warmup + a.count} round trips`);
    send(spawn(pingerBehaviour, a), GO);
    try {
      return latencyStats(await pingRun.promise);
    } finally {
      pingRun = null;
    }
  },

  callee: () => String(spawn(echoBehaviour, null)),
  /**
   * App code (no process) awaits count + warmup calls one after the other, each timed and
   * checked; stats of the last count, in µs, and their total time.
   * @param {{ to: string, count: number, warmup: number }} a
   */
  async callSeq(a) {
    const to = Pid.parse(a.to);
    const samples = new Float64Array(a.count);
    let t0 = 0;
    for (let i = 0; i < a.warmup + a.count; i++) {
      if (i === a.warmup) t0 = performance.now();
      const t = performance.now();
      const r = await call(to, i);
      if (i >= a.warmup) samples[i - a.warmup] = (performance.now() - t) * 1000;
      if (r !== i) throw new Error(`call ${i} answered ${String(r)}`);
    }
    return { ...latencyStats(samples), ms: performance.now() - t0 };
  },
  /**
   * App code keeps `window` calls in flight: each answer (checked) starts the next, until n
   * are answered. The time from the first call to the last answer, ms.
   * @param {{ to: string, n: number, window: number }} a
   */
  async callWindow(a) {
    const to = Pid.parse(a.to);
    let next = 0;
    const one = async () => {
      while (next < a.n) {
        const i = next++;
        const r = await call(to, i);
        if (r !== i) throw new Error(`call ${i} answered ${String(r)}`);
      }
    };
    const t0 = performance.now();
    await Promise.all(Array.from({ length: Math.min(a.window, a.n) }, one));
    return { ms: performance.now() - t0 };
  },
  /**
   * A requester process keeps `window` requests in flight to `to` (the send idiom), until n
   * are answered. The time from its start to the last answer, ms.
   * @param {{ to: string, n: number, window: number, timeoutMs: number }} a
   */
  async sendWindow(a) {
    requestRun = deferred(a.timeoutMs, `${a.n} requests to be answered`);
    const t0 = performance.now();
    send(spawn(requesterBehaviour, a), GO);
    try {
      return { ms: (await requestRun.promise) - t0 };
    } finally {
      requestRun = null;
    }
  },

  /**
   * Spawns n members of group, `chunk` per event-loop turn, as connections would arrive: each
   * join is a signal to the other node, and a setup that held the event loop for all of them
   * at once would measure a burst no application makes.
   * @param {{ group: string, n: number, chunk: number }} a
   */
  async members(a) {
    collector ??= spawn(collectorBehaviour, null);
    const c = collector;
    const before = localMembers(a.group);
    for (let k = 0; k < a.n; k += a.chunk) {
      for (let i = k; i < Math.min(k + a.chunk, a.n); i++) spawn(memberBehaviour, { group: a.group, collector: c });
      await new Promise((r) => setImmediate(r));
    }
    await waitFor(() => localMembers(a.group) === before + a.n, 30_000, `${a.n} members to join ${a.group}`);
    return localMembers(a.group);
  },
  /** @param {{ group: string }} a */
  groupSize: (a) => ({ local: localMembers(a.group), total: members(a.group).length }),
  /** @param {{ want: number, timeoutMs: number }} a */
  arm(a) {
    // Every run waits for exactly `want` reports, so any count beyond it is a duplicate delivery.
    if (got !== want) throw new Error(`collector: ${got} reports for the last run, expected ${want}`);
    got = 0;
    want = a.want;
    tFirst = 0n;
    collected = deferred(a.timeoutMs, `${a.want} members to report`);
    return null;
  },
  /** @param {{ group: string, msg: unknown }} a */
  broadcast(a) {
    const t0 = process.hrtime.bigint();
    const n = broadcast(a.group, a.msg);
    const t1 = process.hrtime.bigint();
    return { t0, t1, n };
  },
  async collected() {
    if (collected === null) throw new Error("not armed");
    const tLast = await collected.promise;
    return { tFirst, tLast, got };
  },

  async exit() {
    // Leave properly (BYE, keys freed) so the other node does not wait out a timeout; serve
    // ends the process once this answer is sent.
    await Promise.race([stopCluster(), sleep(2000)]);
    return null;
  },
};

serve(commands);
ready({});
