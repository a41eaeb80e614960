// @ts-check
/**
 * Runtime micro-benchmarks: message throughput, spawn + exit, memory per process (idle,
 * live, hibernated), a million armed timers, and a call round trip next to a send round trip.
 * Each `measure*` export runs alone in a fresh `node --expose-gc` child (bench/lib/child.js);
 * `scenario` tells bench/run.js what to run and which figures, targets and notes to report.
 */
import { isDeepStrictEqual } from "node:util";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { serialize } from "node:v8";
import { answer, call, exit, ok, processCount, processes, processInfo, self, send, sendAfter, spawn, stop, timerCount } from "./lib/corral.js";
import { check, deferred, gcNow, mem, memDelta, prng, settle, turn, waitFor } from "./lib/measure.js";
import { median } from "./lib/stats.js";

/** @typedef {import("./lib/scenario.js").Scenario} Scenario */

// ---------------------------------------------------------------------------------------
// 1. Local message throughput, and the bare queue-and-dispatch loop it is compared with

const NEXT = "next";
const ACK = "ack";

/**
 * A sender process sends `batch` messages (the integers 0..n-1) to a receiver per turn, until
 * n are sent. The receiver checks each one arrives in order and resolves when it has handled
 * all n. Both return ok(state) from handleInfo as user code does.
 *
 * window = 0 (the loop): after each batch the sender sends itself NEXT, so it runs
 * again as soon as the scheduler comes round; it outpaces the receiver, whose mailbox grows
 * to nearly n. window = k: credit-based flow control; the sender starts with k batches and
 * sends one more each time the receiver acknowledges a batch, so the receiver's mailbox
 * stays under k * batch (steady state, as a well-behaved producer would run).
 * @param {number} n
 * @param {number} batch
 * @param {number} window
 * @param {number} timeoutMs
 * @returns {Promise<{ ms: number, maxQueue: number }>} ms from the first spawn to the receiver handling message n-1
 */
async function runtimeThroughput(n, batch, window, timeoutMs) {
  /** @type {ReturnType<typeof deferred<number>>} */
  const done = deferred(timeoutMs, `the receiver to handle ${n} messages`);
  /** @type {import("../dist/index.js").Pid | null} */
  let senderPid = null;
  let maxQueue = 0;
  const receiver = spawn({
    init: () => ({ next: 0 }),
    /** @param {number} msg @param {{ next: number }} st */
    handleInfo(msg, st) {
      if (msg !== st.next) done.reject(new Error(`receiver got ${String(msg)}, expected ${st.next}`));
      if (++st.next === n) done.resolve(performance.now());
      else if (window > 0 && st.next % batch === 0 && senderPid !== null) send(senderPid, ACK);
      return ok(st);
    },
  });
  const t0 = performance.now();
  const sender = spawn({
    init: () => ({ sent: 0, turns: 0 }),
    /** @param {unknown} msg @param {{ sent: number, turns: number }} st */
    handleInfo(msg, st) {
      const first = st.turns++ === 0;
      const batches = window > 0 && first ? window : 1;
      const end = Math.min(st.sent + batches * batch, n);
      for (let i = st.sent; i < end; i++) send(receiver, i);
      st.sent = end;
      // One cheap look per batch (not per message) at how deep the receiver's mailbox got.
      if ((st.turns & 15) === 0) maxQueue = Math.max(maxQueue, processInfo(receiver)?.messageQueueLen ?? 0);
      if (end === n) return stop(st);
      if (window === 0) send(self(), NEXT);
      return ok(st);
    },
  });
  senderPid = sender;
  send(sender, NEXT);
  const t1 = await done.promise;
  exit(receiver, "kill");
  await waitFor(() => processCount() === 0, 5000, "sender and receiver to exit");
  return { ms: t1 - t0, maxQueue };
}

/**
 * The floor: the same traffic and the same handler code (ok(state) and all), through an
 * array queue read from a head index with the behaviour's handleInfo called per message:
 * no processes, mailboxes or scheduler.
 * @param {number} n
 * @param {number} batch
 * @returns {number} ms
 */
function bareThroughput(n, batch) {
  /** @type {unknown[]} */
  const queue = [];
  let head = 0;
  const behaviour = {
    /** @param {unknown} msg @param {{ next: number }} st */
    handleInfo(msg, st) {
      if (msg !== st.next) throw new Error(`bare loop got ${String(msg)}, expected ${st.next}`);
      st.next++;
      return ok(st);
    },
  };
  let state = { next: 0 };
  let sent = 0;
  const t0 = performance.now();
  while (sent < n) {
    const end = Math.min(sent + batch, n);
    for (let i = sent; i < end; i++) queue.push(i);
    sent = end;
    while (head < queue.length) {
      const msg = queue[head];
      queue[head++] = undefined;
      state = behaviour.handleInfo(msg, state).state;
    }
    queue.length = 0;
    head = 0;
  }
  const ms = performance.now() - t0;
  check(state.next === n, `bare loop handled ${state.next} of ${n}`);
  return ms;
}

/**
 * @param {{ n: number, batch: number, window: number, warmup: number }} p
 */
export async function measureThroughput(p) {
  // Warm every path up (JIT), then time each once, each on a freshly collected heap.
  await runtimeThroughput(p.warmup, p.batch, 0, 60_000);
  await runtimeThroughput(p.warmup, p.batch, p.window, 60_000);
  bareThroughput(p.warmup, p.batch);
  await settle();
  const flood = await runtimeThroughput(p.n, p.batch, 0, 120_000);
  await settle();
  const flow = await runtimeThroughput(p.n, p.batch, p.window, 120_000);
  await settle();
  const bareMs = bareThroughput(p.n, p.batch);
  const msgRate = p.n / (flood.ms / 1000);
  const bareRate = p.n / (bareMs / 1000);
  return {
    figures: { msgRate, msgRateFlow: p.n / (flow.ms / 1000), bareRate, runtimeOverBare: msgRate / bareRate },
    details: {
      n: p.n,
      batch: p.batch,
      window: p.window,
      floodMs: flood.ms,
      floodMaxQueue: flood.maxQueue,
      flowMs: flow.ms,
      flowMaxQueue: flow.maxQueue,
      bareMs,
    },
  };
}

// ---------------------------------------------------------------------------------------
// 2. spawn + exit

/**
 * A spawner process spawns `chunk` processes whose init returns stop(state), then sends
 * itself NEXT, until n are spawned; the clock stops when processCount() is back to 0.
 * @param {number} n
 * @param {number} chunk
 * @param {number} timeoutMs
 * @returns {Promise<{ ms: number, inits: number }>}
 */
async function spawnExit(n, chunk, timeoutMs) {
  check(processCount() === 0, "no processes before spawn+exit");
  let inits = 0;
  const shortLived = {
    /** @param {unknown} arg */
    init(arg) {
      inits++;
      return stop(arg);
    },
    /** @param {unknown} _m @param {unknown} s */
    handleInfo: (_m, s) => ok(s),
  };
  const t0 = performance.now();
  const spawner = spawn({
    init: () => ({ spawned: 0 }),
    /** @param {unknown} _msg @param {{ spawned: number }} st */
    handleInfo(_msg, st) {
      const end = Math.min(st.spawned + chunk, n);
      for (let i = st.spawned; i < end; i++) spawn(shortLived, null);
      st.spawned = end;
      if (end === n) return stop(st);
      send(self(), NEXT);
      return ok(st);
    },
  });
  send(spawner, NEXT);
  await waitFor(() => processCount() === 0, timeoutMs, `all ${n} processes to exit`);
  const ms = performance.now() - t0;
  check(inits === n, `${inits} of ${n} processes ran init`);
  return { ms, inits };
}

/**
 * @param {{ n: number, chunk: number, warmup: number }} p
 */
export async function measureSpawnExit(p) {
  await spawnExit(p.warmup, p.chunk, 60_000);
  await settle();
  const { ms } = await spawnExit(p.n, p.chunk, 120_000);
  return {
    figures: { spawnExitRate: p.n / (ms / 1000) },
    details: { n: p.n, chunk: p.chunk, ms },
  };
}

// ---------------------------------------------------------------------------------------
// 3. Heap per idle process

const SHARED_STATE = Object.freeze({ kind: "idle" });

/**
 * @param {{ n: number }} p
 */
export async function measureIdleHeap(p) {
  let started = 0;
  const idle = {
    init() {
      started++;
      return SHARED_STATE;
    },
    /** @param {unknown} _m @param {unknown} s */
    handleInfo: (_m, s) => ok(s),
  };
  // Warm-up: the same path once, so code and one-time tables are not counted.
  for (let i = 0; i < 1000; i++) spawn(idle);
  await waitFor(() => started === 1000, 10_000, "warm-up processes to start");
  for (const pid of processes()) exit(pid, "kill");
  await waitFor(() => processCount() === 0, 10_000, "warm-up processes to exit");
  started = 0;

  await settle();
  const before = mem();
  for (let i = 0; i < p.n; i++) spawn(idle);
  await waitFor(() => started === p.n, 60_000, `${p.n} idle processes to start`);
  await settle();
  const after = mem();
  const d = memDelta(after, before);

  check(processCount() === p.n, `processCount() ${processCount()} after spawning ${p.n}`);
  const all = processes();
  for (let i = 0; i < all.length; i += Math.max(1, Math.floor(all.length / 100))) {
    const info = processInfo(all[i]);
    check(info?.status === "waiting" && info.messageQueueLen === 0, `idle process ${all[i]} is ${info?.status}`);
  }
  for (const pid of all) exit(pid, "kill");
  await waitFor(() => processCount() === 0, 30_000, "idle processes to exit");

  return {
    figures: { idleBytes: d.heapUsed / p.n },
    details: { n: p.n, delta: d, perProcess: { heapUsed: d.heapUsed / p.n, external: d.external / p.n, rss: d.rss / p.n } },
  };
}

// ---------------------------------------------------------------------------------------
// 4. Memory per process holding a realistic ~2 KB state, live vs hibernated

const WORDS = (
  "socket frame close ping pong text binary room lobby user guest admin token session heartbeat " +
  "timeout message channel topic presence typing online offline away busy hello world reply " +
  "notice update delete create join leave mute unmute pinned thread emoji upload image video " +
  "audio link preview markdown draft sent read delivered failed retry queue stream cursor page"
).split(" ");

/**
 * @param {() => number} rand
 * @param {number} count
 */
function words(rand, count) {
  const out = new Array(count);
  for (let k = 0; k < count; k++) out[k] = WORDS[Math.floor(rand() * WORDS.length)];
  return out.join(" ");
}

/**
 * A chat connection's state, built fresh for process i (deterministic in i, so it can be
 * rebuilt to check nothing was lost): nested objects, numbers that are not small integers,
 * per-process strings, an array of records and a Map. About 2 KB as v8.serialize bytes.
 * @param {number} i
 */
export function makeState(i) {
  const rand = prng(i + 1);
  const base = 1_700_000_000_000 + i * 1000;
  /** @type {Map<string, { joinedAt: number, unread: number, muted: boolean, lastRead: string }>} */
  const rooms = new Map();
  for (let k = 0; k < 8; k++) {
    rooms.set(`room:${(i * 7 + k * 13) % 5000}`, {
      joinedAt: base - k * 60_000,
      unread: (i + k) % 17,
      muted: k % 3 === 0,
      lastRead: `msg-${i}-${k * 31}`,
    });
  }
  const history = [];
  for (let k = 0; k < 8; k++) {
    history.push({ at: base + k * 250.5, dir: k % 2 === 0 ? "in" : "out", text: words(rand, 7) });
  }
  let token = "";
  for (let k = 0; k < 4; k++) token += Math.floor(rand() * 0xffffffff).toString(16).padStart(8, "0");
  return {
    id: i,
    user: {
      id: `u-${i}`,
      name: words(rand, 2),
      email: `user${i}@example.com`,
      roles: i % 10 === 0 ? ["reader", "writer", "moderator"] : ["reader", "writer"],
      profile: { locale: "en-GB", tz: "Europe/London", bio: words(rand, 30), avatar: `https://cdn.example.com/a/${i}.png` },
    },
    session: {
      token,
      createdAt: base,
      lastSeen: base + 123_456.25,
      counters: { framesIn: i % 1000, framesOut: (i * 3) % 1000, bytesIn: i * 1031, bytesOut: i * 977 },
      remote: { address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, port: 40000 + (i % 20000) },
    },
    rooms,
    history,
    flags: { beta: i % 2 === 0, compress: false, heartbeatMs: 30_000 },
  };
}

const TOUCH = "touch";

/**
 * Spawns n processes that each build makeState(i) in init, sends each one message (the
 * handler returns ok(state, { hibernate })), then measures the memory delta per process.
 * Afterwards every process is checked: hibernated or not as asked, and its state
 * deep-equal to a freshly built makeState(i).
 * @param {{ n: number, hibernate: boolean }} p
 */
export async function measureStateMemory(p) {
  const hibernate = p.hibernate;
  let started = 0;
  let touched = 0;
  let checked = 0;
  let mismatches = 0;
  const holder = {
    /** @param {number} i */
    init(i) {
      started++;
      return { i, s: makeState(i) };
    },
    /** @param {unknown} msg @param {{ i: number, s: ReturnType<typeof makeState> }} st */
    handleInfo(msg, st) {
      if (msg === TOUCH) {
        touched++;
        return ok(st, { hibernate });
      }
      checked++;
      if (!isDeepStrictEqual(st.s, makeState(st.i))) mismatches++;
      return ok(st);
    },
  };

  // Warm-up: spawn, touch (hibernating or not), wake and kill a few, so code is compiled.
  {
    const warm = [];
    for (let i = 0; i < 200; i++) warm.push(spawn(holder, i));
    for (const pid of warm) send(pid, TOUCH);
    await waitFor(() => touched === 200, 10_000, "warm-up touches");
    await turn();
    for (const pid of warm) send(pid, "check");
    await waitFor(() => checked === 200, 10_000, "warm-up checks");
    for (const pid of warm) exit(pid, "kill");
    await waitFor(() => processCount() === 0, 10_000, "warm-up processes to exit");
    check(mismatches === 0, `warm-up: ${mismatches} states changed`);
    started = touched = checked = 0;
  }

  /** @type {import("../dist/index.js").Pid[]} */
  const pids = new Array(p.n).fill(null); // allocated before the baseline: not counted
  await settle();
  const before = mem();
  for (let i = 0; i < p.n; i++) pids[i] = spawn(holder, i);
  await waitFor(() => started === p.n, 60_000, `${p.n} processes to start`);
  for (let i = 0; i < p.n; i++) send(pids[i], TOUCH);
  await waitFor(() => touched === p.n, 60_000, `${p.n} processes to handle one message`);
  await turn(); // the last turn's eviction ends with its run; one more turn for certainty
  await settle();
  const after = mem();
  const d = memDelta(after, before);

  // Correctness: every process hibernated (or not) as asked, and no state was lost.
  let hibernated = 0;
  for (const pid of pids) if (processInfo(pid)?.hibernated) hibernated++;
  check(hibernated === (hibernate ? p.n : 0), `${hibernated} of ${p.n} processes hibernated (asked: ${hibernate})`);
  for (const pid of pids) send(pid, "check");
  await waitFor(() => checked === p.n, 120_000, "state checks");
  check(mismatches === 0, `${mismatches} of ${p.n} states differ from what init built`);

  let serialized = 0;
  const sample = Math.min(p.n, 1000);
  for (let i = 0; i < sample; i++) serialized += serialize(makeState(i)).byteLength;

  for (const pid of pids) exit(pid, "kill");
  await waitFor(() => processCount() === 0, 30_000, "processes to exit");

  // heapUsed + external: Node's `external` already includes `arrayBuffers` (node docs),
  // so adding arrayBuffers again would count a hibernated state's buffer twice.
  const perProcess = (d.heapUsed + d.external) / p.n;
  const figures = hibernate
    ? { stateHibernatedBytes: perProcess }
    : { stateLiveBytes: perProcess, stateSerializedBytes: serialized / sample };
  return {
    figures,
    details: {
      n: p.n,
      hibernate,
      delta: d,
      perProcess: {
        heapUsed: d.heapUsed / p.n,
        external: d.external / p.n,
        arrayBuffers: d.arrayBuffers / p.n,
        rss: d.rss / p.n,
      },
      serializedBytesMean: serialized / sample,
    },
  };
}

// ---------------------------------------------------------------------------------------
// 5. One million armed timers

/**
 * Arms n sendAfter timers aimed round-robin at a few receiver processes, delays spread
 * uniformly over [minDelay, maxDelay] ms; measures the time to arm, the heap they hold,
 * then the event-loop delay while they fire and the time until all n were delivered.
 * Each timer's message is its index; receivers check each arrives exactly once.
 * @param {{ n: number, receivers: number, minDelay: number, maxDelay: number }} p
 */
export async function measureTimers(p) {
  const seen = new Uint8Array(p.n);
  let delivered = 0;
  let duplicates = 0;
  /** @type {ReturnType<typeof deferred<number>>} */
  let done = deferred(30_000, "warm-up timers");
  let target = 0;
  const receiverBehaviour = {
    init: () => null,
    /** @param {number} i @param {null} s */
    handleInfo(i, s) {
      if (seen[i]++ !== 0) duplicates++;
      if (++delivered === target) done.resolve(performance.now());
      return ok(s);
    },
  };
  const receivers = [];
  for (let r = 0; r < p.receivers; r++) receivers.push(spawn(receiverBehaviour));

  // Warm-up: 20k short timers through the same path.
  const warmN = Math.min(20_000, p.n);
  target = warmN;
  for (let i = 0; i < warmN; i++) sendAfter(1 + (i % 50), receivers[i % p.receivers], i);
  await done.promise;
  check(duplicates === 0 && timerCount() === 0, "warm-up timers delivered once each");
  seen.fill(0);
  delivered = 0;
  target = p.n;

  const rand = prng(42);
  const delays = new Uint16Array(p.n);
  const span = p.maxDelay - p.minDelay;
  for (let i = 0; i < p.n; i++) delays[i] = p.minDelay + Math.floor(rand() * (span + 1));
  const dests = receivers;
  const nr = p.receivers;
  done = deferred(p.maxDelay + 60_000, `${p.n} timers to fire`);

  await settle();
  const before = mem();
  const t0 = performance.now();
  for (let i = 0; i < p.n; i++) sendAfter(delays[i], dests[i % nr], i);
  const armMs = performance.now() - t0;
  check(timerCount() === p.n, `timerCount() ${timerCount()} after arming ${p.n}`);
  // No await between arming and this reading: nothing can fire while the GC runs. One full
  // GC (not several): with a million live timers each pass takes ~200 ms, and the reading
  // should be done before the first timer is due.
  gcNow(1);
  const afterArm = mem();
  const gcDoneAt = performance.now() - t0;
  const d = memDelta(afterArm, before);
  /** @type {string[]} */
  const warnings = [];
  if (gcDoneAt >= p.minDelay) {
    // The earliest timers were due while the GCs ran: they fire late, in one burst.
    warnings.push(`the heap reading ended ${gcDoneAt.toFixed(0)} ms after arming began, past the first due timer (${p.minDelay} ms)`);
  }

  const eld = monitorEventLoopDelay({ resolution: 1 });
  eld.enable();
  const lastAt = await done.promise;
  eld.disable();
  const allDeliveredMs = lastAt - t0;
  check(delivered === p.n && duplicates === 0, `${delivered} delivered, ${duplicates} duplicates, of ${p.n}`);
  let missing = 0;
  for (let i = 0; i < p.n; i++) if (seen[i] !== 1) missing++;
  check(missing === 0, `${missing} timers not delivered exactly once`);
  check(timerCount() === 0, `timerCount() ${timerCount()} after all fired`);
  for (const pid of receivers) exit(pid, "kill");
  await waitFor(() => processCount() === 0, 10_000, "receivers to exit");

  return {
    figures: {
      timerHeapMB: d.heapUsed / 1e6,
      timerArmMs: armMs,
      timerEldP99Ms: eld.percentile(99) / 1e6,
      timerEldMaxMs: eld.max / 1e6,
      timerAllDeliveredMs: allDeliveredMs,
    },
    warnings,
    details: {
      n: p.n,
      receivers: p.receivers,
      delays: [p.minDelay, p.maxDelay],
      delta: d,
      bytesPerTimer: d.heapUsed / p.n,
      gcDoneAtMs: gcDoneAt,
      lateAfterLastDueMs: allDeliveredMs - armMs - p.maxDelay,
      eld: {
        resolutionMs: 1,
        minMs: eld.min / 1e6,
        meanMs: eld.mean / 1e6,
        p50Ms: eld.percentile(50) / 1e6,
        p99Ms: eld.percentile(99) / 1e6,
        maxMs: eld.max / 1e6,
        samples: eld.count,
      },
    },
  };
}

// ---------------------------------------------------------------------------------------
// 6. A call round trip, next to the send round trip it replaces

/** @typedef {import("../dist/index.js").Pid} PidT */

/**
 * The callee of every round trip below: a call gets its request back through
 * `answer(x, state)`; a request message `{ from, x }` (the send idiom a call replaces) gets x
 * back by send.
 * @type {import("../dist/index.js").ProcessBehavior<null, { from: PidT, x: number }, null>}
 */
const echoBehaviour = {
  init: () => null,
  handleCall: (x, _from, st) => answer(x, st),
  handleInfo(msg, st) {
    send(msg.from, msg.x);
    return ok(st);
  },
};

/**
 * The floor under any answer app code awaits from a process: a promise the process resolves
 * itself (a send and a resolve, no call process, no monitor, no timer).
 * @type {import("../dist/index.js").ProcessBehavior<null, { resolve: (x: number) => void, x: number }, null>}
 */
const resolverBehaviour = {
  init: () => null,
  handleInfo(msg, st) {
    msg.resolve(msg.x);
    return ok(st);
  },
};

/**
 * App code (outside any process) awaits n calls one after the other, each checked.
 * @param {PidT} callee
 * @param {number} n
 * @param {number} timeoutMs  the call's own; 5 000 is call's default
 * @returns {Promise<number>} ms
 */
async function callSequential(callee, n, timeoutMs) {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const r = await call(callee, i, timeoutMs);
    if (r !== i) throw new Error(`call ${i} answered ${String(r)}`);
  }
  return performance.now() - t0;
}

/**
 * App code makes `inFlight` calls at once and awaits them all (Promise.all), until n are done.
 * @param {PidT} callee
 * @param {number} n  a multiple of inFlight
 * @param {number} inFlight
 * @returns {Promise<number>} ms
 */
async function callInFlight(callee, n, inFlight) {
  /** @type {Promise<number>[]} */
  const batch = new Array(inFlight);
  const t0 = performance.now();
  for (let done = 0; done < n; done += inFlight) {
    for (let i = 0; i < inFlight; i++) batch[i] = call(callee, done + i);
    const answers = await Promise.all(batch);
    for (let i = 0; i < inFlight; i++) if (answers[i] !== done + i) throw new Error(`call ${done + i} answered ${String(answers[i])}`);
  }
  return performance.now() - t0;
}

/**
 * A requester process sends the callee `inFlight` requests `{ from: self(), x }` at once and,
 * once all their answers are back (each checked, in order), the next `inFlight`, until n
 * round trips are done. inFlight = 1: one request at a time, as a call awaited.
 * @param {PidT} callee
 * @param {number} n  a multiple of inFlight
 * @param {number} inFlight
 * @returns {Promise<number>} ms
 */
async function sendRoundTrips(callee, n, inFlight) {
  /** @type {ReturnType<typeof deferred<number>>} */
  const done = deferred(120_000, `${n} send round trips`);
  /** @type {import("../dist/index.js").ProcessBehavior<{ next: number }, number | typeof NEXT, null>} */
  const requester = {
    init: () => ({ next: 0 }),
    handleInfo(msg, st) {
      if (msg !== NEXT) {
        if (msg !== st.next) {
          done.reject(new Error(`requester got ${String(msg)}, expected ${st.next}`));
          return stop(st);
        }
        if (++st.next === n) {
          done.resolve(performance.now());
          return stop(st);
        }
        if (st.next % inFlight !== 0) return ok(st);
      }
      const me = self();
      for (let i = st.next; i < st.next + inFlight; i++) send(callee, { from: me, x: i });
      return ok(st);
    },
  };
  const t0 = performance.now();
  send(spawn(requester, null), NEXT);
  return (await done.promise) - t0;
}

/**
 * @param {PidT} resolver
 * @param {number} n
 * @returns {Promise<number>} ms
 */
async function promiseFloor(resolver, n) {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const r = await new Promise((resolve) => send(resolver, { resolve, x: i }));
    if (r !== i) throw new Error(`resolver answered ${String(r)} for ${i}`);
  }
  return performance.now() - t0;
}

/**
 * @param {{ calls: number, sends: number, inFlight: number, warmupDivisor: number }} p
 */
export async function measureCall(p) {
  const callee = spawn(echoBehaviour, null);
  const resolver = spawn(resolverBehaviour, null);
  const base = processCount();
  const w = (/** @type {number} */ n) => Math.ceil(n / p.warmupDivisor / p.inFlight) * p.inFlight;
  // Warm every path up (JIT), then time each once, each on a freshly collected heap.
  await callSequential(callee, w(p.calls), 5000);
  await callInFlight(callee, w(p.calls), p.inFlight);
  await sendRoundTrips(callee, w(p.sends), 1);
  await sendRoundTrips(callee, w(p.sends), p.inFlight);
  await callSequential(callee, w(p.calls), Infinity);
  await promiseFloor(resolver, w(p.calls));
  /** @param {() => Promise<number>} run @returns {Promise<number>} */
  const timed = async (run) => {
    await settle();
    return run();
  };
  await settle();
  const heapBefore = mem();
  const callSeqMs = await callSequential(callee, p.calls, 5000);
  // What the settled calls still hold (their timers were cancelled, their processes ended).
  await settle();
  const heapAfter = memDelta(mem(), heapBefore);
  const callParMs = await timed(() => callInFlight(callee, p.calls, p.inFlight));
  const sendSeqMs = await timed(() => sendRoundTrips(callee, p.sends, 1));
  const sendParMs = await timed(() => sendRoundTrips(callee, p.sends, p.inFlight));
  const callNoTimerMs = await timed(() => callSequential(callee, p.calls, Infinity));
  const floorMs = await timed(() => promiseFloor(resolver, p.calls));
  // Every call's own process ended with its answer, and took its timer with it.
  await waitFor(() => processCount() === base, 5000, "the calls' own processes to end");
  check(timerCount() === 0, `${timerCount()} timers still armed after every call settled`);
  exit(callee, "kill");
  exit(resolver, "kill");
  await waitFor(() => processCount() === 0, 5000, "callee and resolver to exit");

  const us = (/** @type {number} */ ms, /** @type {number} */ n) => (ms * 1000) / n;
  const callSeqUs = us(callSeqMs, p.calls);
  const callParUs = us(callParMs, p.calls);
  const sendSeqUs = us(sendSeqMs, p.sends);
  const sendParUs = us(sendParMs, p.sends);
  return {
    figures: {
      callSeqRate: 1e6 / callSeqUs,
      callSeqUs,
      callParRate: 1e6 / callParUs,
      callParUs,
      sendRttSeqRate: 1e6 / sendSeqUs,
      sendRttSeqUs: sendSeqUs,
      sendRttParRate: 1e6 / sendParUs,
      sendRttParUs: sendParUs,
      callOverSendSeq: callSeqUs / sendSeqUs,
      callOverSendPar: callParUs / sendParUs,
    },
    details: {
      ...p,
      callSeqMs,
      callParMs,
      sendSeqMs,
      sendParMs,
      callNoTimerUs: us(callNoTimerMs, p.calls),
      promiseFloorUs: us(floorMs, p.calls),
      heapHeldPerCall: heapAfter.heapUsed / p.calls,
    },
  };
}

// ---------------------------------------------------------------------------------------
// What bench/run.js runs and reports

/** @type {Scenario} */
export const scenario = {
  name: "runtime",
  title: "Runtime micro-benchmarks",
  about:
    "One Node process per measurement (`node --expose-gc`), the runtime imported from `dist/`. " +
    "Each measurement warms its code path up first, then measures once; the figures are the median " +
    "(and min–max) of the rounds. Memory figures are `process.memoryUsage()` deltas after several " +
    "forced full GCs (`global.gc()` with event-loop turns between them).",
  measurements: [
    {
      id: "throughput",
      fn: "measureThroughput",
      params: (quick) => ({ n: quick ? 2_000_000 : 10_000_000, batch: 10_000, window: 2, warmup: quick ? 500_000 : 2_000_000 }),
      timeoutMs: 180_000,
      // The call rows compare the call with this one-way send.
      groups: ["call"],
      how:
        "A sender process handles `\"next\"` by sending the next 10 000 integers to a receiver, then " +
        "sending itself `\"next\"`, until N are sent (N = 10 M; 2 M with --quick). The receiver checks each " +
        "integer arrives in order and returns `ok(state)`; the clock runs from spawning the sender until the " +
        "receiver has handled message N. The sender outpaces the receiver (it sends 10 000 per turn, the " +
        "receiver handles 64 per turn), so the receiver's mailbox grows to nearly N: this figure includes " +
        "mailbox growth. The flow-controlled run, next in the same process, is the same traffic with credit: " +
        "the sender starts with 2 batches and sends one more each time the receiver acknowledges 10 000, so " +
        "the mailbox stays under 20 000 (steady state). The bare loop, last, pushes the same " +
        "batches into an array read from a head index and calls the same `handleInfo` code (returning " +
        "`ok(state)`) per message: the floor with no processes, mailboxes or scheduler.",
    },
    {
      id: "call",
      fn: "measureCall",
      params: (quick) => ({ calls: quick ? 50_000 : 300_000, sends: quick ? 200_000 : 2_000_000, inFlight: 1000, warmupDivisor: 5 }),
      timeoutMs: 120_000,
      groups: ["call"],
      how:
        "One callee process, a `ProcessBehavior` whose `handleCall` returns `answer(x, state)` (the request back) and whose " +
        "`handleInfo` answers a request message `{ from, x }` with `send(from, x)`. **Call, one at a time**: app code (outside any " +
        "process) awaits `call(callee, i)` N times in a row (N = 300 k; 50 k with --quick), the default 5 s timeout, so each call " +
        "spawns its own process, monitors the callee, arms and (when its process ends with the answer) cancels a timer. **Call, " +
        "1 000 in flight**: `Promise.all` over 1 000 calls, then the next 1 000, until N. **Send round trip**, the idiom the call " +
        "replaces: a requester process sends the callee `{ from: self(), x }` and handles the answer in its `handleInfo`; one " +
        "request at a time (the next goes out when the answer is handled), or 1 000 at once (the next 1 000 when all 1 000 " +
        "answers are in); N = 2 M round trips (200 k with --quick). Every answer is checked against its request. µs per call is " +
        "the run's time / N, calls/s its inverse; call / send compares µs per round trip, same child, same callee. Each path " +
        "runs once untimed (N/5) first, and each timed run follows forced GCs. Checked afterwards: every call's own process has " +
        "ended and no timer is left armed. The one-way row turns the flow-controlled throughput (the **throughput** " +
        "measurement, same round) into µs per message. The details add the same calls with `timeoutMs` Infinity (no timer), " +
        "the floor of a promise the callee resolves itself, and the heap the N calls one at a time leave behind once settled " +
        "(the `heapUsed` delta across the run, after forced GCs, / N).",
    },
    {
      id: "spawn-exit",
      fn: "measureSpawnExit",
      params: (quick) => ({ n: quick ? 200_000 : 1_000_000, chunk: 10_000, warmup: quick ? 50_000 : 200_000 }),
      timeoutMs: 120_000,
      how:
        "A spawner process spawns 10 000 processes whose `init` returns `stop(state)`, then sends itself " +
        "`\"next\"`, until N are spawned (N = 1 M; 200 k with --quick); the clock stops when `processCount()` is " +
        "back to 0 (polled once per event-loop turn). Checked: every process ran `init`.",
    },
    {
      id: "idle-heap",
      fn: "measureIdleHeap",
      params: () => ({ n: 100_000 }),
      timeoutMs: 120_000,
      how:
        "N = 100 k processes spawned from outside any process; each `init` returns the " +
        "same frozen object, so the state costs nothing per process. `heapUsed` delta / N once all have " +
        "started. Everything the runtime keeps per process is in it: the process record, its pid, the " +
        "live-pid table entry. Checked: `processCount()` = N and a sample is `waiting` with an empty mailbox.",
    },
    {
      id: "state-live",
      fn: "measureStateMemory",
      params: (quick) => ({ n: quick ? 5_000 : 20_000, hibernate: false }),
      timeoutMs: 180_000,
      how:
        "N = 20 k processes (5 k with --quick), each building its own chat-connection state in `init` " +
        "(nested objects, per-process strings, non-integer numbers, an array of 8 records and a Map of 8 " +
        "entries; ≈2 KB as `v8.serialize` bytes, measured on 1 000 of them). Each is sent one message; its " +
        "`handleInfo` returns `ok(state)` (live) or `ok(state, { hibernate: true })` (hibernated). Reported: " +
        "(`heapUsed` + `external`) delta / N. `external` already includes `arrayBuffers`, so that is not added " +
        "again. Checked afterwards: every process is (or is not) hibernated as asked, and every state, woken " +
        "by a second message, is deep-equal to a freshly built one.",
    },
    {
      id: "state-hibernated",
      fn: "measureStateMemory",
      params: (quick) => ({ n: quick ? 5_000 : 20_000, hibernate: true }),
      timeoutMs: 180_000,
    },
    {
      id: "timers",
      fn: "measureTimers",
      params: () => ({ n: 1_000_000, receivers: 4, minDelay: 1000, maxDelay: 3000 }),
      timeoutMs: 120_000,
      how:
        "N = 1 M `sendAfter` timers (also with --quick) aimed round-robin at 4 receiver processes, delays " +
        "uniform in 1 000–3 000 ms (whole ms, precomputed). Armed in one synchronous loop (the arm time); " +
        "then, before anything can fire, one forced full GC and the `heapUsed` delta (one, because with a " +
        "million live timers a full GC takes ~200 ms and the first timers are due 1 s after arming). " +
        "`monitorEventLoopDelay` (1 ms resolution) runs from then until the last timer is delivered; " +
        "\"all delivered\" is measured from the start of arming, so ≈3 000 ms is ideal. Checked: every " +
        "timer's message arrives exactly once and `timerCount()` is 0 afterwards.",
    },
  ],
  figures: [
    { id: "msgRate", label: "Local message throughput, process → process", format: "rate", unit: "msgs/s", target: { op: ">=", value: 5e6 } },
    { id: "msgRateFlow", label: "Same, flow-controlled (mailbox < 20 k)", format: "rate", unit: "msgs/s" },
    { id: "bareRate", label: "Bare queue + dispatch loop (same run)", format: "rate", unit: "msgs/s" },
    { id: "runtimeOverBare", label: "Throughput ratio runtime (first row) / bare", format: "ratio" },
    { id: "callSeqRate", label: "Local call round trip, one at a time (app code awaits each)", format: "rate", unit: "calls/s" },
    { id: "callSeqUs", label: "Same, per call", format: "us", unit: "µs" },
    { id: "sendRttSeqRate", label: "Send round trip, one at a time (request with the sender's pid, answer by send)", format: "rate", unit: "round trips/s" },
    { id: "sendRttSeqUs", label: "Same, per round trip", format: "us", unit: "µs" },
    { id: "callOverSendSeq", label: "Call / send round trip, one at a time", format: "ratio" },
    { id: "callParRate", label: "Local call round trip, 1 000 in flight (Promise.all)", format: "rate", unit: "calls/s" },
    { id: "callParUs", label: "Same, per call", format: "us", unit: "µs" },
    { id: "sendRttParRate", label: "Send round trip, 1 000 in flight", format: "rate", unit: "round trips/s" },
    { id: "sendRttParUs", label: "Same, per round trip", format: "us", unit: "µs" },
    { id: "callOverSendPar", label: "Call / send round trip, 1 000 in flight", format: "ratio" },
    { id: "sendOneWayUs", label: "One-way send, per message (the flow-controlled throughput row)", format: "us", unit: "µs" },
    { id: "callOverOneWay", label: "Call (1 000 in flight) / one-way send", format: "ratio" },
    { id: "spawnExitRate", label: "spawn + exit rate", format: "rate", unit: "procs/s", target: { op: ">=", value: 5e5 } },
    { id: "idleBytes", label: "Heap per idle process (shared state)", format: "bytes", target: { op: "<=", value: 512 } },
    { id: "stateSerializedBytes", label: "2 KB state: v8.serialize size", format: "bytes" },
    { id: "stateLiveBytes", label: "2 KB state: memory per live process", format: "bytes" },
    { id: "stateHibernatedBytes", label: "2 KB state: memory per hibernated process", format: "bytes" },
    {
      id: "hibernatedOverLive",
      label: "Hibernated / live memory",
      format: "ratio",
      target: { op: "<=", value: 0.75 },
      note:
        "The issue asks for \"clearly smaller\"; the harness reads that as at least a quarter less, which " +
        "catches hibernation that stops evicting (≈1) or keeps both copies (>1). The v8.serialize bytes alone " +
        "are about half the live size of this state, so ≈0.55 is the floor for any store that keeps " +
        "v8-serialized bytes in the process.",
    },
    { id: "timerArmMs", label: "1 M timers: time to arm", format: "ms", target: { op: "<=", value: 1000 } },
    { id: "timerHeapMB", label: "1 M timers: heap delta after GC", format: "MB", target: { op: "<=", value: 150 } },
    { id: "timerEldP99Ms", label: "1 M timers firing: event-loop delay p99", format: "ms" },
    { id: "timerEldMaxMs", label: "1 M timers firing: event-loop delay max", format: "ms" },
    { id: "timerAllDeliveredMs", label: "1 M timers: all delivered, from start of arming", format: "ms" },
  ],
  detailLines: (d) => {
    /** @param {string} m @param {(x: any) => number} pick */
    const med = (m, pick) => (d[m]?.length ? median(d[m].map(pick)) : NaN);
    const n0 = (/** @type {number} */ v) => (Number.isFinite(v) ? Math.round(v).toLocaleString("en-US") : "—");
    const lines = [];
    if (d.throughput?.length) {
      lines.push(
        `throughput: receiver mailbox peaked at ${n0(med("throughput", (x) => x.floodMaxQueue))} messages in the first run ` +
          `and ${n0(med("throughput", (x) => x.flowMaxQueue))} in the flow-controlled one (sampled by the sender every 16 batches).`,
      );
    }
    if (d.call?.length) {
      const f2 = (/** @type {number} */ v) => (Number.isFinite(v) ? v.toFixed(2) : "—");
      lines.push(
        `call: one at a time with \`timeoutMs\` Infinity (no timer armed) ${f2(med("call", (x) => x.callNoTimerUs))} µs per call; ` +
          `app code awaiting a promise the callee resolves itself (a send and a resolve: no call process, monitor or timer) ` +
          `${f2(med("call", (x) => x.promiseFloorUs))} µs, the floor under any answer app code awaits from a process; ` +
          `heap still held once the ${n0(med("call", (x) => x.calls))} calls one at a time had all settled (after forced GCs): ` +
          `${f2(med("call", (x) => x.heapHeldPerCall))} B per call.`,
      );
    }
    if (d["idle-heap"]?.length) {
      lines.push(`idle process: ${n0(med("idle-heap", (x) => x.perProcess.heapUsed))} B heap, ${n0(med("idle-heap", (x) => x.perProcess.rss))} B RSS per process (RSS is noisier: freed pages are not always returned).`);
    }
    for (const m of ["state-live", "state-hibernated"]) {
      if (!d[m]?.length) continue;
      lines.push(
        `${m}: per process ${n0(med(m, (x) => x.perProcess.heapUsed))} B heapUsed + ${n0(med(m, (x) => x.perProcess.external))} B external ` +
          `(of which arrayBuffers ${n0(med(m, (x) => x.perProcess.arrayBuffers))} B); RSS ${n0(med(m, (x) => x.perProcess.rss))} B ` +
          `(includes heap pages the transient live states left behind).`,
      );
    }
    if (d.timers?.length) {
      lines.push(
        `timers: ${n0(med("timers", (x) => x.bytesPerTimer))} B of heap per armed timer; event-loop delay while firing p50 ` +
          `${med("timers", (x) => x.eld.p50Ms).toFixed(2)} ms, mean ${med("timers", (x) => x.eld.meanMs).toFixed(2)} ms; ` +
          `the last message arrived ${med("timers", (x) => x.lateAfterLastDueMs).toFixed(1)} ms after the latest due time ` +
          `(arm end + 3 000 ms); the post-arm GCs ended ${n0(med("timers", (x) => x.gcDoneAtMs))} ms after arming began.`,
      );
    }
    return lines;
  },
  derive: (f) => {
    /** @type {Record<string, number>} */
    const out = {};
    if (f.stateHibernatedBytes !== undefined && f.stateLiveBytes !== undefined) out.hibernatedOverLive = f.stateHibernatedBytes / f.stateLiveBytes;
    if (f.msgRateFlow !== undefined) out.sendOneWayUs = 1e6 / f.msgRateFlow;
    if (f.msgRateFlow !== undefined && f.callParUs !== undefined) out.callOverOneWay = f.callParUs / out.sendOneWayUs;
    return out;
  },
};
