// @ts-check
/**
 * Cluster scenarios (issue 9): two corral nodes joined through Redis, on one machine. Each
 * measurement runs in a fresh child (bench/lib/child.js) that coordinates, through
 * bench/cluster/rig.js, three processes of its own:
 *
 *   redis-server   started on a free loopback port without persistence, stopped at the end
 *   node A, B      bench/cluster/node.js: each a `node --expose-gc` process, a corral node
 *                  (startCluster before its first spawn), driven over IPC
 *
 * Every figure has a local twin measured in the same child, on node A, with the same
 * processes and messages: the ratio cross-node / local is what crossing Redis costs. Without
 * a redis-server on the machine every measurement reports itself skipped (a warning with the
 * reason, no figures) instead of failing the whole run.
 */
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { withIpcCluster } from "./cluster/ipc-rig.js";
import { redisInfo, redisServerBinary, withCluster } from "./cluster/rig.js";
import { cpuQuotaGroup } from "./lib/cgroup.js";
import { DIST_URL } from "./lib/corral.js";
import { IpcChild } from "./lib/ipc-child.js";
import { procCpuMs } from "./lib/proc.js";
import { median } from "./lib/stats.js";
import { sourceAddresses } from "./ws/rig.js";

/** @typedef {import("./lib/scenario.js").Scenario} Scenario */
/** @typedef {import("./cluster/rig.js").Cluster} Cluster */
/** @typedef {import("./cluster/ipc-rig.js").IpcCluster} IpcCluster */
/** @typedef {import("./lib/ipc-child.js").IpcChild} Node */
/** @typedef {{ figures: Record<string, number>, details: Record<string, unknown>, warnings?: string[] }} Result */

/**
 * @param {unknown} cond
 * @param {string} what
 * @returns {asserts cond}
 */
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

/**
 * Runs `body` on a fresh Redis and two nodes, or reports the measurement skipped when this
 * machine has no redis-server (a missing optional tool, not a broken runtime).
 * @param {(c: Cluster) => Promise<Result>} body
 * @returns {Promise<Result & { subprocessCpuMs?: number }>}
 */
async function clusterRun(body) {
  const bin = redisServerBinary();
  if (bin === null) {
    const chosen = process.env.CORRAL_BENCH_REDIS_SERVER;
    const skipped = chosen
      ? `CORRAL_BENCH_REDIS_SERVER names ${chosen}, which does not exist`
      : "redis-server is not installed (apt-get install redis-server): the cluster scenario needs a real one";
    return { figures: {}, details: { skipped }, warnings: [`skipped: ${skipped}`] };
  }
  return withCluster(bin, async (c) => {
    const r = await body(c);
    // Nothing may have been dropped or left waiting: with Redis up the whole time, a dropped
    // signal is a lost message and the figures would describe a broken run.
    const [ia, ib] = await Promise.all([c.a.call("info"), c.b.call("info")]);
    check(ia.dropped === 0 && ib.dropped === 0, `signals dropped: node a ${ia.dropped}, node b ${ib.dropped}`);
    check(ia.buffered === 0 && ib.buffered === 0, `signals still buffered: node a ${ia.buffered}, node b ${ib.buffered}`);
    return { ...r, details: { ...r.details, cluster: { a: ia, b: ib } } };
  });
}

/**
 * CPU of both nodes (their own process.cpuUsage(), µs resolution) and of redis-server (from
 * /proc, whole clock ticks), with Redis's own counters, at one end of a measured window.
 * @param {Cluster} c
 */
async function mark(c) {
  const [ca, cb] = await Promise.all([c.a.call("cpu"), c.b.call("cpu")]);
  const redisMs = c.redis.cpuMs();
  return { at: performance.now(), aMs: (ca.user + ca.system) / 1000, bMs: (cb.user + cb.system) / 1000, redisMs };
}

/**
 * redis-server's CPU so far by its own account (INFO cpu: getrusage, µs resolution), ms.
 * @param {Cluster} c
 */
async function redisCpuMs(c) {
  const cpu = await redisInfo(c.redis.port, "cpu");
  return { user: (cpu.used_cpu_user ?? 0) * 1000, system: (cpu.used_cpu_sys ?? 0) * 1000 };
}

/**
 * Counters read outside the CPU window (so their own cost stays out of it): Redis's PUBLISH
 * calls (heartbeats included: each node publishes one a second) and its CPU by its own
 * account (getrusage, µs resolution), and the signals each node has published.
 * @param {Cluster} c
 */
async function counters(c) {
  const [stats, cpu, ia, ib] = await Promise.all([redisInfo(c.redis.port, "commandstats"), redisCpuMs(c), c.a.call("info"), c.b.call("info")]);
  return {
    publishes: stats["cmdstat_publish.calls"] ?? 0,
    redisCpuMs: cpu.user + cpu.system,
    signals: /** @type {number} */ (ia.sent) + /** @type {number} */ (ib.sent),
  };
}

// ---------------------------------------------------------------------------------------
// 1 + 4. Send throughput, and the CPU per message on each side and in Redis

/**
 * @typedef {object} SendParams
 * @property {number} batch     messages per batch; the sink acknowledges each batch
 * @property {number} window    batches in flight (credit)
 * @property {{ small: number, kb: number }} remote   messages per cross-node run
 * @property {{ small: number, kb: number }} local    messages per local run
 * @property {number} warmupDivisor   a warm-up run of n / this precedes each timed run
 */

/**
 * One run: a sink on `to` counts n messages from a source on `from` (a local run when both
 * are node A). The clock runs from the source's start to the sink's last message; CPU of
 * both nodes and Redis over the same window.
 * @param {Cluster} c
 * @param {Node} from
 * @param {Node} to
 * @param {number} n
 * @param {number} size
 * @param {SendParams} p
 */
async function sendRun(c, from, to, n, size, p) {
  const timeoutMs = 60_000;
  const sink = await to.call("sink", { n, batch: p.batch, size, timeoutMs });
  const r0 = await counters(c);
  const m0 = await mark(c);
  const { t0 } = await from.call("source", { to: sink, n, batch: p.batch, window: p.window, size });
  const { tEnd } = await to.call("sinkDone", undefined, timeoutMs + 5000);
  const m1 = await mark(c);
  const r1 = await counters(c);
  const seconds = Number(tEnd - t0) / 1e9;
  return {
    n,
    size,
    seconds,
    rate: n / seconds,
    /** CPU per message, µs: a and b are nodes A and B, whatever their role in the run. */
    aUs: ((m1.aMs - m0.aMs) * 1000) / n,
    bUs: ((m1.bMs - m0.bMs) * 1000) / n,
    redisUs: ((m1.redisMs - m0.redisMs) * 1000) / n,
    redisInfoUs: ((r1.redisCpuMs - r0.redisCpuMs) * 1000) / n,
    redisMs: m1.redisMs - m0.redisMs,
    publishes: r1.publishes - r0.publishes,
    signals: r1.signals - r0.signals,
    windowMs: m1.at - m0.at,
  };
}

/**
 * @param {SendParams} p
 */
export async function measureSend(p) {
  return clusterRun(async (c) => {
    /** @type {Record<string, number>} */
    const figures = {};
    /** @type {Record<string, unknown>} */
    const details = { ...p };
    for (const [size, key] of /** @type {const} */ ([[0, "small"], [1000, "kb"]])) {
      const sfx = key === "kb" ? "Kb" : "";
      // Warm-up (JIT, Redis connections' buffers), then the timed runs, each after a GC.
      await sendRun(c, c.a, c.b, Math.ceil(p.remote[key] / p.warmupDivisor), size, p);
      await sendRun(c, c.a, c.a, Math.ceil(p.local[key] / p.warmupDivisor), size, p);
      await Promise.all([c.a.call("gc"), c.b.call("gc")]);
      const remote = await sendRun(c, c.a, c.b, p.remote[key], size, p);
      await Promise.all([c.a.call("gc"), c.b.call("gc")]);
      const local = await sendRun(c, c.a, c.a, p.local[key], size, p);
      // Every message, the hello and each acknowledgement (one per full batch but the last
      // message's) of a cross-node run is a signal; a local run has none.
      const acks = Math.ceil(remote.n / p.batch) - 1;
      check(remote.signals === remote.n + 1 + acks, `the cross-node run published ${remote.signals} signals, expected ${remote.n + 1 + acks}`);
      check(local.signals === 0, `the local run published ${local.signals} signals through Redis (local sends must not touch it)`);
      figures[`sendRateRemote${sfx}`] = remote.rate;
      figures[`sendRateLocal${sfx}`] = local.rate;
      figures[`cpuSenderUs${sfx}`] = remote.aUs;
      figures[`cpuReceiverUs${sfx}`] = remote.bUs;
      figures[`cpuRedisUs${sfx}`] = remote.redisUs;
      figures[`cpuLocalUs${sfx}`] = local.aUs;
      details[key] = { remote, local, messagesPerPublish: remote.n / remote.publishes };
    }
    return { figures, details };
  });
}

// ---------------------------------------------------------------------------------------
// 2. Round-trip latency

/**
 * @param {{ count: number, warmup: number }} p
 */
export async function measureLatency(p) {
  return clusterRun(async (c) => {
    const remotePonger = await c.b.call("ponger");
    const localPonger = await c.a.call("ponger");
    /** @param {string} to @param {number} count @param {number} warmup */
    const ping = (to, count, warmup) => c.a.call("ping", { to, count, warmup, timeoutMs: 60_000 }, 65_000);
    // One untimed pass of each way first (JIT), then the timed ones.
    await ping(remotePonger, Math.min(500, p.count), 0);
    await ping(localPonger, Math.min(500, p.count), 0);
    await Promise.all([c.a.call("gc"), c.b.call("gc")]);
    const t0 = performance.now();
    const remote = await ping(remotePonger, p.count, p.warmup);
    const remoteMs = performance.now() - t0;
    await Promise.all([c.a.call("gc"), c.b.call("gc")]);
    const local = await ping(localPonger, p.count, p.warmup);
    return {
      figures: { rttP50Remote: remote.p50, rttP99Remote: remote.p99, rttP50Local: local.p50, rttP99Local: local.p99 },
      details: { ...p, remote, local, remoteMs },
    };
  });
}

// ---------------------------------------------------------------------------------------
// 3. Group broadcast

/**
 * @param {{ members: number, reps: number, chunk: number }} p  members: in all (half on each node when spread)
 */
export async function measureBroadcast(p) {
  return clusterRun((c) => broadcastRun(c, p));
}

/**
 * The broadcast runs on two nodes, whatever carries their signals (Redis, or IPC through
 * the primary).
 * @param {{ a: Node, b: Node }} c
 * @param {{ members: number, reps: number, chunk: number }} p
 * @returns {Promise<Result>}
 */
async function broadcastRun(c, p) {
  const half = p.members / 2;
  // "spread": half the members on each node; "local": all of them on node A.
  await c.a.call("members", { group: "spread", n: half, chunk: p.chunk }, 60_000);
  await c.b.call("members", { group: "spread", n: half, chunk: p.chunk }, 60_000);
  await c.a.call("members", { group: "local", n: p.members, chunk: p.chunk }, 60_000);
  // Joins reach the other node as signals: wait (bounded) until both see every member.
  const end = performance.now() + 30_000;
  for (;;) {
    const [sa, sb] = await Promise.all([c.a.call("groupSize", { group: "spread" }), c.b.call("groupSize", { group: "spread" })]);
    if (sa.total === p.members && sb.total === p.members) break;
    check(performance.now() < end, `group members seen after 30 s: node a ${sa.total}, node b ${sb.total} of ${p.members}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  await Promise.all([c.a.call("gc"), c.b.call("gc")]);

  /** @type {number[]} */
  const spreadMs = [];
  /** @type {number[]} */
  const spreadRemoteMs = [];
  /** @type {number[]} */
  const remoteFirstMs = [];
  /** @type {number[]} */
  const localMs = [];
  /** @type {number[]} */
  const callMs = [];
  for (let r = 0; r <= p.reps; r++) {
    // Cross-node: each node's collector waits for its half.
    await Promise.all([c.a.call("arm", { want: half, timeoutMs: 30_000 }), c.b.call("arm", { want: half, timeoutMs: 30_000 })]);
    const s = await c.a.call("broadcast", { group: "spread", msg: { bcast: r } });
    check(s.n === p.members, `broadcast to ${s.n} of ${p.members} members`);
    const [ga, gb] = await Promise.all([c.a.call("collected", undefined, 35_000), c.b.call("collected", undefined, 35_000)]);
    // Local: the same number of members, all on node A.
    await c.a.call("arm", { want: p.members, timeoutMs: 30_000 });
    const l = await c.a.call("broadcast", { group: "local", msg: { bcast: r } });
    check(l.n === p.members, `local broadcast to ${l.n} of ${p.members} members`);
    const gl = await c.a.call("collected", undefined, 35_000);
    if (r === 0) continue; // untimed: JIT
    const last = ga.tLast > gb.tLast ? ga.tLast : gb.tLast;
    spreadMs.push(Number(last - s.t0) / 1e6);
    spreadRemoteMs.push(Number(gb.tLast - s.t0) / 1e6);
    remoteFirstMs.push(Number(gb.tFirst - s.t0) / 1e6);
    localMs.push(Number(gl.tLast - l.t0) / 1e6);
    callMs.push(Number(s.t1 - s.t0) / 1e6);
    await new Promise((res) => setTimeout(res, 20));
  }
  return {
    figures: { bcastMsRemote: median(spreadMs), bcastMsLocal: median(localMs) },
    details: {
      ...p,
      spreadMs,
      spreadRemoteMs,
      remoteFirstMs,
      localMs,
      callMs,
      remoteHalfMs: median(spreadRemoteMs),
      remoteFirstMedianMs: median(remoteFirstMs),
      broadcastCallMs: median(callMs),
    },
  };
}

// ---------------------------------------------------------------------------------------
// 5. A call round trip, next to the send round trip it replaces

/**
 * @param {{ count: number, warmup: number, n: number, window: number }} p
 *   count (+ warmup untimed): calls one at a time; n: round trips with `window` in flight
 */
export async function measureCall(p) {
  return clusterRun(async (c) => {
    const remote = await c.b.call("callee");
    const local = await c.a.call("callee");
    const remotePonger = await c.b.call("ponger");
    /** @param {string} to @param {number} count @param {number} warmup */
    const callSeq = (to, count, warmup) => c.a.call("callSeq", { to, count, warmup }, 120_000);
    /** @param {string} to @param {number} n */
    const callWindow = (to, n) => c.a.call("callWindow", { to, n, window: p.window }, 120_000);
    /** @param {string} to @param {number} n */
    const sendWindow = (to, n) => c.a.call("sendWindow", { to, n, window: p.window, timeoutMs: 60_000 }, 65_000);
    /** @param {number} count @param {number} warmup */
    const ping = (count, warmup) => c.a.call("ping", { to: remotePonger, count, warmup, timeoutMs: 60_000 }, 65_000);
    const gc = () => Promise.all([c.a.call("gc"), c.b.call("gc")]);
    // One untimed pass of each (JIT), then the timed ones, each after a GC.
    const small = Math.max(p.window, Math.ceil(p.n / 10));
    await callSeq(remote, Math.min(500, p.count), 0);
    await callSeq(local, Math.min(500, p.count), 0);
    await ping(Math.min(500, p.count), 0);
    await callWindow(remote, small);
    await callWindow(local, small);
    await sendWindow(remote, small);

    await gc();
    const s0 = await counters(c);
    const callRemote = await callSeq(remote, p.count, p.warmup);
    const s1 = await counters(c);
    await gc();
    const pingRemote = await ping(p.count, p.warmup);
    const s2 = await counters(c);
    await gc();
    const callLocal = await callSeq(local, p.count, p.warmup);
    await gc();
    const s3 = await counters(c);
    const callWin = await callWindow(remote, p.n);
    const s4 = await counters(c);
    await gc();
    const sendWin = await sendWindow(remote, p.n);
    const s5 = await counters(c);
    await gc();
    const callWinLocal = await callWindow(local, p.n);
    const s6 = await counters(c);
    check(s6.signals === s5.signals, `local calls published ${s6.signals - s5.signals} signals through Redis (they must not touch it)`);

    const callWindowRateRemote = p.n / (callWin.ms / 1000);
    const sendRttWindowRateRemote = p.n / (sendWin.ms / 1000);
    return {
      figures: {
        callP50Remote: callRemote.p50,
        callP99Remote: callRemote.p99,
        callSeqRateRemote: 1e6 / callRemote.mean,
        callOverSendP50Remote: callRemote.p50 / pingRemote.p50,
        callP50Local: callLocal.p50,
        callWindowRateRemote,
        sendRttWindowRateRemote,
        callOverSendWindowRemote: sendRttWindowRateRemote / callWindowRateRemote,
        callWindowRateLocal: p.n / (callWinLocal.ms / 1000),
      },
      details: {
        ...p,
        callRemote,
        pingRemote,
        callLocal,
        callWindowMs: callWin.ms,
        sendWindowMs: sendWin.ms,
        callWindowLocalMs: callWinLocal.ms,
        // Signals through Redis per round trip (the warm-up's excluded; heartbeats are not signals).
        signalsPerCall: (s1.signals - s0.signals) / (p.count + p.warmup),
        signalsPerSendRtt: (s2.signals - s1.signals) / (p.count + p.warmup + 1),
        signalsPerCallInFlight: (s4.signals - s3.signals) / p.n,
        signalsPerSendRttInFlight: (s5.signals - s4.signals) / p.n,
      },
    };
  });
}

// ---------------------------------------------------------------------------------------
// 6. The same two nodes over node:cluster IPC: workers of the measurement child (the primary), connected to each other

/**
 * Runs `body` on two worker nodes that meet through this process (no Redis), then checks
 * that nothing was dropped or left waiting, as clusterRun does.
 * @param {(c: IpcCluster) => Promise<Result>} body
 * @returns {Promise<Result & { subprocessCpuMs?: number }>}
 */
async function ipcRun(body) {
  return withIpcCluster(async (c) => {
    const r = await body(c);
    const [ia, ib] = await Promise.all([c.a.call("info"), c.b.call("info")]);
    check(ia.transport === "ipc" && ib.transport === "ipc", `the nodes run over ${ia.transport} and ${ib.transport}, not ipc`);
    check(ia.dropped === 0 && ib.dropped === 0, `signals dropped: node a ${ia.dropped}, node b ${ib.dropped}`);
    check(ia.buffered === 0 && ib.buffered === 0, `signals still buffered: node a ${ia.buffered}, node b ${ib.buffered}`);
    return { ...r, details: { ...r.details, cluster: { a: ia, b: ib } } };
  });
}

/**
 * One send run over IPC (sendRun's twin): the clock from the source's start to the sink's
 * last message; CPU of both nodes and of the primary (this process: it introduced the nodes,
 * and the coordinator idles in it while it waits for the sink) over the same window; the signals the
 * nodes sent, from their clusterInfo().
 * @param {IpcCluster} c
 * @param {Node} from
 * @param {Node} to
 * @param {number} n
 * @param {number} size
 * @param {{ batch: number, window: number }} p
 */
async function sendRunIpc(c, from, to, n, size, p) {
  const timeoutMs = 60_000;
  const sink = await to.call("sink", { n, batch: p.batch, size, timeoutMs });
  const i0 = await Promise.all([c.a.call("info"), c.b.call("info")]);
  const [a0, b0] = await Promise.all([c.a.call("cpu"), c.b.call("cpu")]);
  const p0 = c.primaryCpuMs();
  const { t0 } = await from.call("source", { to: sink, n, batch: p.batch, window: p.window, size });
  const { tEnd } = await to.call("sinkDone", undefined, timeoutMs + 5000);
  const p1 = c.primaryCpuMs();
  const [a1, b1] = await Promise.all([c.a.call("cpu"), c.b.call("cpu")]);
  const i1 = await Promise.all([c.a.call("info"), c.b.call("info")]);
  const seconds = Number(tEnd - t0) / 1e9;
  /** @param {{ user: number, system: number }} u0 @param {{ user: number, system: number }} u1 */
  const us = (u0, u1) => (u1.user + u1.system - u0.user - u0.system) / n;
  return {
    n,
    size,
    seconds,
    rate: n / seconds,
    aUs: us(a0, a1),
    bUs: us(b0, b1),
    primaryUs: ((p1 - p0) * 1000) / n,
    signals: i1[0].sent + i1[1].sent - i0[0].sent - i0[1].sent,
  };
}

/**
 * Cross-worker send throughput and CPU per message over IPC, small and 1 KB, as measureSend.
 * @param {Omit<SendParams, "local">} p
 */
export async function measureSendIpc(p) {
  return ipcRun(async (c) => {
    /** @type {Record<string, number>} */
    const figures = {};
    /** @type {Record<string, unknown>} */
    const details = { ...p };
    for (const [size, key] of /** @type {const} */ ([[0, "small"], [1000, "kb"]])) {
      const sfx = key === "kb" ? "Kb" : "";
      await sendRunIpc(c, c.a, c.b, Math.ceil(p.remote[key] / p.warmupDivisor), size, p);
      await Promise.all([c.a.call("gc"), c.b.call("gc")]);
      const remote = await sendRunIpc(c, c.a, c.b, p.remote[key], size, p);
      const acks = Math.ceil(remote.n / p.batch) - 1;
      check(remote.signals === remote.n + 1 + acks, `the cross-node run sent ${remote.signals} signals, expected ${remote.n + 1 + acks}`);
      figures[`sendRateIpc${sfx}`] = remote.rate;
      figures[`cpuSenderUsIpc${sfx}`] = remote.aUs;
      figures[`cpuReceiverUsIpc${sfx}`] = remote.bUs;
      figures[`cpuPrimaryUsIpc${sfx}`] = remote.primaryUs;
      details[key] = remote;
    }
    return { figures, details };
  });
}

/**
 * Call round trip over IPC: one at a time (p50, p99) next to the send round trip on the same
 * nodes, and calls/s with `window` in flight, as measureCall's cross-node part.
 * @param {{ count: number, warmup: number, n: number, window: number }} p
 */
export async function measureCallIpc(p) {
  return ipcRun(async (c) => {
    const callee = await c.b.call("callee");
    const ponger = await c.b.call("ponger");
    /** @param {number} count @param {number} warmup */
    const callSeq = (count, warmup) => c.a.call("callSeq", { to: callee, count, warmup }, 120_000);
    /** @param {number} n */
    const callWindow = (n) => c.a.call("callWindow", { to: callee, n, window: p.window }, 120_000);
    /** @param {number} count @param {number} warmup */
    const ping = (count, warmup) => c.a.call("ping", { to: ponger, count, warmup, timeoutMs: 60_000 }, 65_000);
    const gc = () => Promise.all([c.a.call("gc"), c.b.call("gc")]);
    await callSeq(Math.min(500, p.count), 0);
    await ping(Math.min(500, p.count), 0);
    await callWindow(Math.max(p.window, Math.ceil(p.n / 10)));
    await gc();
    const call = await callSeq(p.count, p.warmup);
    await gc();
    const rtt = await ping(p.count, p.warmup);
    await gc();
    const win = await callWindow(p.n);
    return {
      figures: {
        callP50Ipc: call.p50,
        callP99Ipc: call.p99,
        rttP50Ipc: rtt.p50,
        rttP99Ipc: rtt.p99,
        callWindowRateIpc: p.n / (win.ms / 1000),
      },
      details: { ...p, call, rtt, callWindowMs: win.ms },
    };
  });
}

/**
 * Broadcast to 10 000 members, 5 000 on each worker, over IPC, as measureBroadcast.
 * @param {{ members: number, reps: number, chunk: number }} p
 */
export async function measureBroadcastIpc(p) {
  return ipcRun(async (c) => {
    const r = await broadcastRun(c, p);
    return { figures: { bcastMsIpc: /** @type {number} */ (r.figures.bcastMsRemote) }, details: r.details };
  });
}

// ---------------------------------------------------------------------------------------
// 7. The CLI with --workers: handshakes and echo from outside, one process vs workers

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * The living children of ppid, from /proc (Linux).
 * @param {number} ppid
 */
function childPids(ppid) {
  /** @type {number[]} */
  const found = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue;
    }
    const [state, parent] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(parent) === ppid && state !== "Z") found.push(Number(entry));
  }
  return found;
}

/**
 * The demo's start script (`dist/app/cli.js` of the build under test), run as a user runs it:
 * `--workers n`, or one process when n is 0. Resolves once it prints its URL.
 * @param {number} workers
 */
async function startCli(workers) {
  const cli = path.join(path.dirname(fileURLToPath(DIST_URL)), "app", "cli.js");
  // Diagnosis: node flags for the primary and its workers (which inherit them), e.g. CORRAL_BENCH_CLI_FLAGS="--cpu-prof --cpu-prof-dir=/tmp/p".
  const flags = (process.env.CORRAL_BENCH_CLI_FLAGS ?? "").split(" ").filter(Boolean);
  const args = [...flags, cli, "--port", "0", "--log-level", "warn", ...(workers > 0 ? ["--workers", String(workers)] : [])];
  const proc = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  proc.stderr.on("data", (b) => (out += b));
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`corral ${args.slice(flags.length + 1).join(" ")}: no URL after 20 s\n${out}`)), 20_000);
    proc.stdout.on("data", (b) => {
      out += b;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`corral ${args.slice(flags.length + 1).join(" ")} exited (${code})\n${out}`));
    });
  });
  const pids = [/** @type {number} */ (proc.pid), ...childPids(/** @type {number} */ (proc.pid))];
  check(pids.length === 1 + workers, `corral --workers ${workers}: ${pids.length - 1} worker processes`);
  return {
    port: /** @type {number} */ (port),
    pids,
    /** CPU of the primary and every worker so far, ms. */
    cpuMs: () => pids.reduce((s, pid) => s + procCpuMs(pid), 0),
    /** Each process's CPU so far, ms: [primary, worker 1, …]. */
    cpuEach: () => pids.map((pid) => procCpuMs(pid)),
    async stop() {
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGTERM");
      await Promise.race([exited, sleep(5000)]);
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    },
  };
}

/**
 * Waits (up to 10 s) until the server is idle: its processes used at most a clock tick over 250 ms.
 * @param {Awaited<ReturnType<typeof startCli>>} server
 */
async function settle(server) {
  const until = performance.now() + 10_000;
  for (let c = server.cpuMs(); performance.now() < until; ) {
    await sleep(250);
    const now = server.cpuMs();
    if (now - c <= 10) return;
    c = now;
  }
}

/**
 * Holds a started server to a CPU budget: one process to `cores`; with workers, each worker
 * to `cores` in a group of its own (a core is not shared between processes, so twice the
 * cores is each worker holding its own share), inside a group of workers × cores that also
 * holds the primary, which takes only what the workers leave.
 * @param {Awaited<ReturnType<typeof startCli>>} server
 * @param {number} workers
 * @param {{ cores: number, periodMs: number }} hold
 */
function holdServer(server, workers, hold) {
  const g = cpuQuotaGroup(hold.cores * Math.max(1, workers), hold.periodMs * 1000);
  if ("skipped" in g) throw new Error(`CPU quota: ${g.skipped}`);
  try {
    const [primary, ...rest] = server.pids;
    g.group.add(/** @type {number} */ (primary));
    const groups = [g.group, ...rest.map((pid, i) => {
      const w = g.group.child(`w${i + 1}`, hold.cores);
      w.add(pid);
      return w;
    })];
    return {
      /** Budget in cores for the whole server. */
      cores: hold.cores * Math.max(1, workers),
      /** Periods in which each group ran out of quota, [server, worker 1, …]. */
      throttled: () => groups.map((x) => x.stat().throttled),
      remove: g.remove,
    };
  } catch (err) {
    g.remove();
    throw err;
  }
}

/**
 * One run against `corral [--workers n]` from a fresh load generator: `warmConns` handshakes
 * to /echo per server process, closed (the server's CPU over the first: cold handshakes); then echo on `echoConns`
 * connections for `seconds` after a warm-up; then a storm of `conns` handshakes (the clock and
 * the server's CPU over it). With `hold`, the server runs under a CPU quota (holdServer) from
 * the end of the first storm on; the generator is not held.
 * @param {number} workers
 * @param {{ conns: number, warmConns: number, concurrency: number, echoConns: number, inflight: number, size: number, seconds: number, warmupSeconds: number }} p
 * @param {{ cores: number, periodMs: number }} [hold]
 */
async function workersRun(workers, p, hold) {
  const server = await startCli(workers);
  /** @type {IpcChild | undefined} */
  let gen;
  /** @type {ReturnType<typeof holdServer> | undefined} */
  let held;
  try {
    gen = (await IpcChild.start("loadgen", fileURLToPath(new URL("./ws/loadgen.js", import.meta.url)))).child;
    await gen.call("setup", { workers: 1 });
    const sources = sourceAddresses(p.conns);
    // Warm-up: each process compiles the handshake path on its own (V8's optimizing compiler, on
    // its own threads, and slower code until then), about 0.3 s of CPU per process, which a
    // long-running server paid long ago; so `warmConns` handshakes per process (a worker gets
    // about its share of each storm), and the first storm's CPU apart: a fresh server's.
    let coldCpuUs = 0;
    for (let round = 0; round < Math.max(1, workers); round++) {
      const w0 = server.cpuMs();
      const warm = await gen.call("connect", { mode: "idle", port: server.port, path: "/echo", first: p.echoConns + p.conns, count: p.warmConns, sources, concurrency: p.concurrency, timeoutMs: 120_000 }, 125_000);
      if (round === 0) coldCpuUs = ((server.cpuMs() - w0) * 1000) / p.warmConns;
      check(warm.opened === p.warmConns && warm.failed === 0, `warm-up: ${warm.opened} of ${p.warmConns} opened, ${warm.failed} failed`);
      await gen.call("closeAll");
      await settle(server);
    }
    held = hold && holdServer(server, workers, hold);
    // The echo connections first, then the storm, each with its CPU window.
    await gen.call("connect", { mode: "echo", port: server.port, path: "/echo", first: 0, count: p.echoConns, sources, concurrency: 50, timeoutMs: 30_000 }, 35_000);
    await gen.call("echoStart", { inflight: p.inflight, size: p.size });
    await sleep(p.warmupSeconds * 1000);
    // A mark starts the window's counts.
    await gen.call("mark");
    const c0 = server.cpuMs();
    const z0 = held?.throttled();
    const t0 = performance.now();
    await sleep(p.seconds * 1000);
    const e1 = await gen.call("mark");
    const c1 = server.cpuMs();
    const z1 = held?.throttled();
    const t1 = performance.now();
    await gen.call("echoStop", { timeoutMs: 5000 });
    check(e1.errors === 0, `echo: ${e1.errors} errors, first: ${e1.firstError}`);
    const echoRate = e1.received / ((t1 - t0) / 1000);
    const echoCpuUs = ((c1 - c0) * 1000) / e1.received;
    const echoCores = (c1 - c0) / (t1 - t0);

    const h0 = server.cpuMs();
    const each0 = server.cpuEach();
    const hs = await gen.call("connect", { mode: "idle", port: server.port, path: "/echo", first: p.echoConns, count: p.conns, sources, concurrency: p.concurrency, timeoutMs: 120_000 }, 125_000);
    const h1 = server.cpuMs();
    const each1 = server.cpuEach();
    const z2 = held?.throttled();
    const seconds = Number(hs.t1 - hs.t0) / 1e9;
    check(hs.opened === p.conns && hs.failed === 0, `storm: ${hs.opened} of ${p.conns} opened, ${hs.failed} failed`);
    const hsCores = (h1 - h0) / 1000 / seconds;
    if (held) {
      // The budget held (5 % and a clock tick of slack on each reading): the figures are a held server's.
      const slack = 1.05;
      check(echoCores <= held.cores * slack + 20 / (t1 - t0), `echo: the server used ${echoCores.toFixed(2)} cores, held to ${held.cores}`);
      check(hsCores <= held.cores * slack + 0.02 / seconds, `storm: the server used ${hsCores.toFixed(2)} cores, held to ${held.cores}`);
    }
    await gen.call("closeAll");
    return {
      subprocessCpuMs: server.cpuMs() + gen.cpuMs(),
      handshakeRate: p.conns / seconds,
      handshakeCpuUs: ((h1 - h0) * 1000) / p.conns,
      /** The warm-up storm's server CPU per handshake: a fresh server's first ones. */
      coldCpuUs,
      /** Per process, µs per handshake: [primary, worker 1, …]. */
      handshakeCpuUsEach: each1.map((v, i) => ((v - each0[i]) * 1000) / p.conns),
      /** Cores the server's processes kept busy over the storm and the echo window. */
      hsCores,
      echoCores,
      retries: hs.retries,
      echoRate,
      echoCpuUs,
      ...(held && z0 && z1 && z2
        ? {
            heldCores: held.cores,
            /** Periods each group ran out of quota in, [server, worker 1, …]: over the echo window, over the storm. */
            throttledEcho: z1.map((v, i) => v - /** @type {number} */ (z0[i])),
            throttledStorm: z2.map((v, i) => v - /** @type {number} */ (z1[i])),
          }
        : {}),
    };
  } finally {
    await gen?.stop();
    await server.stop();
    const left = held?.remove() ?? [];
    if (left.length > 0) console.error(`cluster-workers: cgroups left behind: ${left.join(", ")}`);
  }
}

/**
 * `corral` as one process, with `--workers 1` and with `--workers 2`, each fresh, in a random
 * order: handshakes/s and echo throughput from outside, and the server's CPU per handshake and
 * per echo summed over all its processes; and, shuffled in with them, the same three held to a
 * CPU budget that leaves the generator a core (`hold.cores` per process or per worker), unless
 * this machine cannot hold processes to a quota (no writable cgroup v1 cpu controller): skipped, with why.
 * @param {{ conns: number, warmConns: number, concurrency: number, echoConns: number, inflight: number, size: number, seconds: number, warmupSeconds: number, hold: { cores: number, periodMs: number }, round?: number }} p
 */
export async function measureWorkers(p) {
  /** @typedef {{ workers: number, held: boolean }} Config */
  /** @type {Record<string, Awaited<ReturnType<typeof workersRun>>>} */
  const runs = {};
  const probe = cpuQuotaGroup(p.hold.cores, p.hold.periodMs * 1000);
  const skipped = "skipped" in probe ? probe.skipped : undefined;
  if (!("skipped" in probe)) probe.remove();
  /** @type {Config[]} */
  const configs = [0, 1, 2].flatMap((workers) => [{ workers, held: false }, ...(skipped ? [] : [{ workers, held: true }])]);
  // A random order per round, so no configuration always runs on the warmer or cooler machine.
  for (let i = configs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [configs[i], configs[j]] = [/** @type {Config} */ (configs[j]), /** @type {Config} */ (configs[i])];
  }
  let subprocessCpuMs = 0;
  for (const c of configs) {
    const r = await workersRun(c.workers, p, c.held ? p.hold : undefined);
    runs[`w${c.workers}${c.held ? "held" : ""}`] = r;
    subprocessCpuMs += r.subprocessCpuMs;
  }
  /** @param {string} key */
  const run = (key) => /** @type {Awaited<ReturnType<typeof workersRun>>} */ (runs[key]);
  const one = run("w0");
  const w1 = run("w1");
  const two = run("w2");
  /** @type {Record<string, number>} */
  const figures = {
    hsRateOne: one.handshakeRate,
    hsRateW1: w1.handshakeRate,
    hsRateW2: two.handshakeRate,
    hsCpuUsOne: one.handshakeCpuUs,
    hsCpuUsW1: w1.handshakeCpuUs,
    hsCpuUsW2: two.handshakeCpuUs,
    echoRateOne: one.echoRate,
    echoRateW2: two.echoRate,
    echoCpuUsOne: one.echoCpuUs,
    echoCpuUsW2: two.echoCpuUs,
    hsColdCpuUsOne: one.coldCpuUs,
    hsColdCpuUsW1: w1.coldCpuUs,
    hsColdCpuUsW2: two.coldCpuUs,
  };
  if (!skipped) {
    const [oneH, w1H, twoH] = [run("w0held"), run("w1held"), run("w2held")];
    Object.assign(figures, {
      hsRateOneHeld: oneH.handshakeRate,
      hsRateW1Held: w1H.handshakeRate,
      hsRateW2Held: twoH.handshakeRate,
      hsCpuUsOneHeld: oneH.handshakeCpuUs,
      hsCpuUsW1Held: w1H.handshakeCpuUs,
      hsCpuUsW2Held: twoH.handshakeCpuUs,
      echoRateOneHeld: oneH.echoRate,
      echoRateW1Held: w1H.echoRate,
      echoRateW2Held: twoH.echoRate,
      echoCpuUsOneHeld: oneH.echoCpuUs,
      echoCpuUsW2Held: twoH.echoCpuUs,
    });
  }
  /** @type {string[]} */
  const warnings = skipped ? [`held to a CPU budget: skipped: ${skipped}`] : [];
  for (const [key, r] of Object.entries(runs)) {
    if (r.heldCores === undefined) continue;
    for (const [what, used] of /** @type {const} */ ([["echo window", r.echoCores], ["storm", r.hsCores]])) {
      if (used < 0.8 * r.heldCores) warnings.push(`${key}: over the ${what} the server used ${used.toFixed(2)} of its ${r.heldCores} cores: not held by its budget`);
    }
  }
  return {
    figures,
    details: { ...p, order: configs.map((c) => `w${c.workers}${c.held ? "held" : ""}`), runs, ...(skipped ? { heldSkipped: skipped } : {}) },
    ...(warnings.length > 0 ? { warnings } : {}),
    subprocessCpuMs,
  };
}

// ---------------------------------------------------------------------------------------
// 8. IPC and Redis side by side: CPU per message, the two transports in turns

/**
 * The CPU of every process a transport uses so far, ms, in user space and in the kernel:
 * [node A, node B, redis-server or the primary]. Nodes by their own process.cpuUsage();
 * redis-server by its own INFO cpu (getrusage, µs resolution); the primary is this process.
 * @param {Cluster | IpcCluster} c
 * @returns {Promise<{ user: number, system: number }[]>}
 */
async function transportCpuMs(c) {
  const [ca, cb] = await Promise.all([c.a.call("cpu"), c.b.call("cpu")]);
  /** @param {{ user: number, system: number }} u */
  const ms = (u) => ({ user: u.user / 1000, system: u.system / 1000 });
  return [ms(ca), ms(cb), "redis" in c ? await redisCpuMs(c) : ms(process.cpuUsage())];
}

/**
 * CPU per message of IPC and of Redis, measured in turns in one child, so both see the same
 * machine and any drift in it falls on both: a Redis cluster and an IPC cluster are up
 * together, each idle while the other runs, and each pair of turns alternates which goes
 * first. Three kinds of traffic:
 *   - batched: cluster-send's small run (n messages, a batch of 256 per handler turn, so
 *     hundreds leave in one frame), which is what throughput costs, and its 1 KB run (nKb);
 *   - one per frame: the send round trip (cluster-latency's ping-pong), where each message is
 *     a frame of its own, as a chat message or a call at human pace is.
 * CPU is summed over every process the transport uses (transportCpuMs), each / messages.
 * @param {{ pairs: number, n: number, nKb: number, count: number, batch: number, window: number, warmupDivisor: number }} p
 */
export async function measureTransports(p) {
  // withCluster reports the Redis cluster's processes' CPU; the IPC workers' is added to it, or it would count as other work's.
  let ipcCpuMs = 0;
  const r = await clusterRun(async (rc) => {
    const inner = await ipcRun(async (ic) => {
      /** @typedef {"redis" | "ipc"} Transport */
      /** @type {Record<Transport, Cluster | IpcCluster>} */
      const clusters = { redis: rc, ipc: ic };
      const pongers = { redis: await rc.b.call("ponger"), ipc: await ic.b.call("ponger") };
      /** @typedef {"batched" | "batchedKb" | "framed"} Kind */
      /**
       * One run's traffic of a kind on transport t, its sizes divided by div (a warm-up's): node A
       * sends to node B, which checks every message (cluster-send's run), or pings it
       * (cluster-latency's). Resolves with the messages sent and the signals that takes: each
       * message, a hello first, and one acknowledgement per batch but the last message's.
       * @param {Transport} t
       * @param {Kind} kind
       * @param {number} [div]
       */
      const traffic = async (t, kind, div = 1) => {
        const c = clusters[t];
        if (kind === "framed") {
          const count = Math.ceil(p.count / div);
          await c.a.call("ping", { to: pongers[t], count, warmup: 0, timeoutMs: 60_000 }, 65_000);
          return { messages: 2 * count, signals: 2 * count + 1 };
        }
        const n = Math.ceil((kind === "batched" ? p.n : p.nKb) / div);
        const size = kind === "batched" ? 0 : 1000;
        const sink = await c.b.call("sink", { n, batch: p.batch, size, timeoutMs: 60_000 });
        await c.a.call("source", { to: sink, n, batch: p.batch, window: p.window, size });
        await c.b.call("sinkDone", undefined, 65_000);
        // The hello, and an acknowledgement per batch but the last: one signal per batch besides the messages.
        return { messages: n, signals: n + Math.ceil(n / p.batch) };
      };
      /** @param {Transport} t */
      const sent = async (t) => {
        const [ia, ib] = await Promise.all([clusters[t].a.call("info"), clusters[t].b.call("info")]);
        return /** @type {number} */ (ia.sent) + /** @type {number} */ (ib.sent);
      };
      /**
       * One measured run of either kind on transport t, checked to have sent its signals and no
       * more; per message, CPU in all (us), per process ([node A, node B, redis-server or the
       * primary]: each), and of which in the kernel (system), µs.
       * @param {Transport} t
       * @param {Kind} kind
       */
      const run = async (t, kind) => {
        const c = clusters[t];
        await Promise.all([c.a.call("gc"), c.b.call("gc")]);
        const s0 = await sent(t);
        const cpu0 = await transportCpuMs(c);
        const { messages, signals } = await traffic(t, kind);
        const cpu1 = await transportCpuMs(c);
        const s1 = await sent(t);
        check(s1 - s0 === signals, `${kind} over ${t}: ${s1 - s0} signals sent, expected ${signals}`);
        const each = cpu1.map((u, i) => ((u.user + u.system - cpu0[i].user - cpu0[i].system) * 1000) / messages);
        const system = cpu1.reduce((sum, u, i) => sum + u.system - cpu0[i].system, 0) * 1000 / messages;
        return { us: each[0] + each[1] + each[2], each, system };
      };
      /** @type {[Kind, string][]} each kind, and its figures' infix */
      const kinds = [["batched", "Batched"], ["batchedKb", "BatchedKb"], ["framed", "Framed"]];
      // Untimed first (JIT, connections' buffers), each transport and kind.
      for (const t of /** @type {const} */ (["redis", "ipc"])) for (const [kind] of kinds) await traffic(t, kind, p.warmupDivisor);
      /** Every run, by kind and transport, in the order run. */
      /** @type {Record<string, Awaited<ReturnType<typeof run>>[]>} */
      const runs = {};
      for (let i = 0; i < p.pairs; i++) {
        const order = /** @type {const} */ (i % 2 === 0 ? ["redis", "ipc"] : ["ipc", "redis"]);
        for (const [kind] of kinds) for (const t of order) (runs[`${kind}-${t}`] ??= []).push(await run(t, kind));
      }
      /** @type {Record<string, number>} */
      const figures = {};
      for (const [kind, name] of kinds) {
        /** @param {string} t  total µs per message over the pairs */
        const total = (t) => runs[`${kind}-${t}`].reduce((sum, r) => sum + r.us, 0);
        figures[`cpu${name}UsRedis`] = total("redis") / p.pairs;
        figures[`cpu${name}UsIpc`] = total("ipc") / p.pairs;
        figures[`cpu${name}IpcOverRedis`] = total("ipc") / total("redis");
      }
      return { figures, details: { ...p, runs } };
    });
    ipcCpuMs = inner.subprocessCpuMs ?? 0;
    return inner;
  });
  return { ...r, subprocessCpuMs: (r.subprocessCpuMs ?? 0) + ipcCpuMs };
}

// ---------------------------------------------------------------------------------------
// What bench/run.js runs and reports

/**
 * @param {Record<string, number>} f
 * @param {string} a
 * @param {string} b
 */
function ratio(f, a, b) {
  return f[a] !== undefined && f[b] !== undefined && f[b] !== 0 ? f[a] / f[b] : undefined;
}

/** @type {Scenario} */
export const scenario = {
  name: "cluster",
  title: "Cluster: two nodes through Redis or over IPC vs one node",
  rounds: 3,
  about:
    "Two corral nodes on this machine, each its own `node --expose-gc` process (`bench/cluster/node.js`, the package from " +
    "`dist/`: `startCluster` before the first spawn, defaults otherwise), joined through a `redis-server` the measurement " +
    "starts itself on a free loopback port (`--save \"\" --appendonly no`) and stops at the end; a fresh Redis and fresh " +
    "nodes for every measurement of every round. Each cross-node figure has a local twin measured in the same child, on " +
    "node A, with the same processes and messages, so the ratio cross-node / local is what going through Redis costs. " +
    "The machine's cores are shared by both nodes and Redis (and the coordinator, idle during a run): cross-node " +
    "throughput is bounded by three busy processes on them, local throughput by one. Clock readings that cross processes " +
    "use `process.hrtime` (one monotonic clock for the machine). Every run checks its result (messages in order and " +
    "complete, every member reached exactly once) and both nodes' `clusterInfo()` afterwards: no signal dropped or left " +
    "buffered. Without a `redis-server` the Redis measurements report themselves skipped. The `cluster-ipc-*` measurements " +
    "(`--only ipc`) run the same nodes as node:cluster workers of the measurement child (`startClusterPrimary`), with no " +
    "Redis: the workers write to each other over their own Unix socket, and the primary only introduced them; its CPU " +
    "is counted in Redis's place.",
  measurements: [
    {
      id: "cluster-send",
      fn: "measureSend",
      params: (quick) => ({
        batch: 256,
        window: 16,
        remote: quick ? { small: 50_000, kb: 20_000 } : { small: 300_000, kb: 100_000 },
        local: quick ? { small: 200_000, kb: 200_000 } : { small: 2_000_000, kb: 1_000_000 },
        warmupDivisor: 5,
      }),
      timeoutMs: 180_000,
      how:
        "A source process on node A sends N messages to a sink process on node B: `{ seq }` (small) or `{ seq, pad }` with a " +
        "1 000-character string (≈1 KB serialized). Flow control by credit: the source starts with 16 batches of 256 and sends " +
        "one more batch each time the sink acknowledges one (the acknowledgements cross Redis too), so at most 4 096 messages " +
        "are unacknowledged, so memory in flight is bounded whatever N is; each batch is sent in one handler turn, so it leaves in one PUBLISH per tick (or a few, frames are " +
        "capped at 1 MB). The sink checks every message arrives in order (and its pad intact). Throughput: N over the time " +
        "from the source's start to the sink's last message. N = 300 k small / 100 k 1 KB cross-node, 2 M / 1 M local " +
        "(50 k / 20 k and 200 k / 200 k with --quick); each timed run follows an untimed one of N/5 and a forced GC. The " +
        "local twin runs source and sink both on node A (a node in the cluster; local sends never touch Redis, checked by " +
        "Redis's PUBLISH count). **CPU per message** over the same window: each node's own `process.cpuUsage()` delta, " +
        "redis-server's user + system time from `/proc/<pid>/stat` (whole clock ticks, so a window is kept ≥ 1 s in a full " +
        "run), each / N; the local twin's is node A's.",
    },
    {
      id: "cluster-latency",
      fn: "measureLatency",
      params: (quick) => ({ count: quick ? 2_000 : 10_000, warmup: quick ? 200 : 1_000 }),
      timeoutMs: 120_000,
      how:
        "Ping-pong with one message in flight: a pinger on node A sends `{ seq }` to a ponger on node B, which sends it back; " +
        "the pinger times each round trip (`performance.now()` in its handler, from the send to the reply's handling) and sends " +
        "the next. 10 000 timed round trips after 1 000 untimed (2 000 / 200 with --quick), after an untimed pass; p50 and p99 " +
        "of the round trips. The local twin: the ponger on node A.",
    },
    {
      id: "cluster-call",
      fn: "measureCall",
      params: (quick) => ({ count: quick ? 1_000 : 5_000, warmup: quick ? 100 : 500, n: quick ? 5_000 : 30_000, window: 100 }),
      timeoutMs: 180_000,
      groups: ["call"],
      how:
        "A callee process on node B whose `handleCall` returns `answer(x, state)` and whose `handleInfo` answers a request " +
        "`{ from, x }` with `send(from, x)`. **One at a time**: app code on node A (outside any process) awaits `call(callee, i)` " +
        "(default 5 s timeout) 5 000 times in a row after 500 untimed (1 000 / 100 with --quick), timing each (`performance.now()` " +
        "around the await): p50, p99, and calls/s from the mean. A cross-node call is four signals (the call's own process " +
        "monitors the callee, sends the request, gets the answer, and its end takes the monitor down), a send round trip two; " +
        "the details count them through each node's `clusterInfo()`. Call / send compares the p50 with the **cluster-latency** " +
        "ping-pong run in the same child, on the same nodes. **100 in flight**: app code keeps 100 calls outstanding (each answer " +
        "starts the next) until 30 000 are answered (5 000 with --quick): calls/s; its twin, a requester process on node A keeping " +
        "100 requests `{ from: self(), x }` outstanding to the same callee: round trips/s; call / send is the ratio of the time " +
        "per round trip. Every answer is checked against its request. Each run follows an untimed one and a forced GC on both " +
        "nodes. The local twins: the same calls to a callee on node A (checked: no signal through Redis).",
    },
    {
      id: "cluster-broadcast",
      fn: "measureBroadcast",
      params: (quick) => ({ members: 10_000, reps: quick ? 3 : 10, chunk: 1_000 }),
      timeoutMs: 120_000,
      how:
        "10 000 members of one group, 5 000 on each node (each joins in its `init`, which tells the other node; spawned 1 000 per " +
        "event-loop turn). Each member, for each message, sends one count to a " +
        "collector process on its own node; a collector notes the time its node's last count arrives. App code on node A calls " +
        "`broadcast(group, msg)` (one message crosses to node B, which fans it out there); the figure is the time from that call " +
        "to the later of the two nodes' last counts. The local twin: 10 000 members all on node A, same collector. Median of " +
        "10 broadcasts each way (3 with --quick) after an untimed one; both nodes see all 10 000 members before the first.",
    },
    {
      id: "cluster-ipc-send",
      fn: "measureSendIpc",
      params: (quick) => ({
        batch: 256,
        window: 16,
        remote: quick ? { small: 50_000, kb: 20_000 } : { small: 300_000, kb: 100_000 },
        warmupDivisor: 5,
      }),
      timeoutMs: 180_000,
      groups: ["ipc"],
      how:
        "**cluster-send**'s cross-node runs (same source, sink, credit, N and checks) between two node:cluster workers of the " +
        "measurement child, which is the primary: `startClusterPrimary()`, then each worker `startCluster({ ipc: true })`; no " +
        "Redis; the workers connect to each other and signals never pass through the primary. CPU per message: each node's " +
        "`process.cpuUsage()` delta, and the primary's (this process, where the coordinator only waits during the run), each / N. Every signal counted by the nodes' `clusterInfo().sent`.",
    },
    {
      id: "cluster-ipc-call",
      fn: "measureCallIpc",
      params: (quick) => ({ count: quick ? 1_000 : 5_000, warmup: quick ? 100 : 500, n: quick ? 5_000 : 30_000, window: 100 }),
      timeoutMs: 180_000,
      groups: ["ipc", "call"],
      how:
        "**cluster-call**'s cross-node runs over IPC (two workers of the measurement child): app code on node A awaits " +
        "`call(callee)` on node B one at a time (p50, p99), the **cluster-latency** ping-pong on the same nodes (the send round " +
        "trip), and calls with 100 in flight (calls/s).",
    },
    {
      id: "cluster-ipc-broadcast",
      fn: "measureBroadcastIpc",
      params: (quick) => ({ members: 10_000, reps: quick ? 3 : 10, chunk: 1_000 }),
      timeoutMs: 120_000,
      groups: ["ipc"],
      how: "**cluster-broadcast**'s cross-node broadcast (5 000 members on each of two workers) over IPC, over the workers' own connection.",
    },
    {
      id: "cluster-transports",
      fn: "measureTransports",
      params: (quick) => ({ pairs: quick ? 1 : 3, n: quick ? 100_000 : 1_000_000, nKb: quick ? 30_000 : 300_000, count: quick ? 2_000 : 10_000, batch: 256, window: 16, warmupDivisor: 5 }),
      timeoutMs: 240_000,
      groups: ["ipc"],
      how:
        "A Redis cluster (**cluster-send**'s: redis-server and two nodes) and an IPC cluster (**cluster-ipc-send**'s: two workers of the measurement child) " +
        "up together in one child, measured in turns: each pair of turns runs both, alternating which goes first, the other cluster idle meanwhile, so " +
        "drift in the machine falls on both. **Batched**: **cluster-send**'s small run (N = 1 M, 100 k with --quick; a batch of 256 per handler turn, " +
        "so hundreds of messages leave in one frame), and its 1 KB run (N = 300 k, 30 k with --quick). **One per frame**: **cluster-latency**'s ping-pong (10 000 round trips, 2 000 with --quick), " +
        "where every message is a frame of its own, as a chat message or a call at human pace is. CPU per message: the CPU of every process the " +
        "transport uses over the run (both nodes' `process.cpuUsage()`, and redis-server's own `INFO cpu` or the primary's), / messages; a figure " +
        "is the mean over 3 pairs (1 with --quick), the ratio the sum of IPC's over the sum of Redis's. Checked: every run sends exactly its " +
        "signals (each message, a hello first, an acknowledgement per batch), counted by the nodes' `clusterInfo().sent`.",
    },
    {
      id: "cluster-workers",
      fn: "measureWorkers",
      params: (quick) => ({
        conns: quick ? 2_000 : 10_000,
        warmConns: quick ? 2_000 : 10_000,
        concurrency: 128,
        echoConns: 100,
        inflight: 16,
        size: 32,
        seconds: quick ? 1.5 : 5,
        warmupSeconds: quick ? 0.5 : 1,
        hold: { cores: 0.25, periodMs: 40 },
      }),
      timeoutMs: 420_000,
      groups: ["workers"],
      how:
        "The demo's start script as a user runs it (`corral --port 0 --log-level warn`, the build under test's `dist/app/cli.js`): " +
        "one process, `--workers 1` and `--workers 2` (node:cluster workers meeting over IPC), each started " +
        "fresh, in a random order per round. A load generator process (`bench/ws/loadgen.js`, one thread) first warms the " +
        "server up: it opens 10 000 connections to `/echo`, 128 handshakes at a time, closes them and waits until the server " +
        "is idle, once per server process (each compiles the handshake path for itself; the first storm's server CPU / 10 000 " +
        "is a fresh server's CPU per handshake). Then it opens 100 connections " +
        "to `/echo` and keeps 16 messages of 32 bytes in flight on each (1 s warm-up, then a 5 s window: echoes/s, and the server's " +
        "CPU per echo), stops, then opens 10 000 more connections to `/echo`, 128 handshakes at a time (2 000 with --quick): " +
        "handshakes/s over the storm, and the server's CPU per handshake. **The server's CPU is summed over all its processes** " +
        "(the primary and every worker, from `/proc/<pid>/stat`): the cores are shared with the generator, so handshakes/s " +
        "can grow with a second worker only as far as the generator leaves a core free, while CPU per handshake says what the " +
        "cluster itself costs per connection. **Held to a CPU budget** (the same three runs again, shuffled in with the others): " +
        "scaling with cores, measured on a machine whose second core the generator needs. Each server process is held by a " +
        "CFS quota (cgroup v1's cpu controller, a 40 ms period, groups made under the bench's own cgroup with a random " +
        "suffix and removed afterwards, the processes moved back first) from the end of the first storm on: one process to 0.25 core; " +
        "each worker to 0.25 core in a group of its own, inside a group of 0.25 core per worker that also holds the primary. " +
        "So `--workers 2` has twice one process's CPU as two separate shares, not one pool either worker could take: a worker " +
        "cannot use a share another worker leaves idle, as on a machine with a core per worker, and the primary's CPU counts " +
        "against the server's budget (it takes what the workers leave). A quarter core, not a half: the generator's one thread " +
        "tops out near 11 000 handshakes a second here (the unheld server then uses 0.8 core), which a server with a whole " +
        "core would outrun, so the ratio would measure the generator; at 0.5 core in all the server leaves the generator a " +
        "core and more. The generator is not held. " +
        "Checked: the server's processes used no more than their budget (5 % and a clock tick of slack) over the echo window " +
        "and over the storm, every echo came back, every handshake succeeded; a held server that used less than 80 % of its " +
        "budget over a window (other work took the cores, or the generator could not keep up) gets a warning, since its figure " +
        "then says nothing about scaling. Where processes cannot be held (not Linux, no writable cgroup v1 cpu controller, not " +
        "root) these figures are left out with a warning saying why.",
    },
  ],
  figures: [
    { id: "sendRateRemote", label: "Send throughput, small message, cross-node", format: "rate", unit: "msgs/s" },
    { id: "sendRateLocal", label: "Send throughput, small message, local (same node A)", format: "rate", unit: "msgs/s" },
    { id: "sendRatio", label: "Send throughput, small: cross-node / local", format: "ratio" },
    { id: "sendRateRemoteKb", label: "Send throughput, 1 KB message, cross-node", format: "rate", unit: "msgs/s" },
    { id: "sendRateLocalKb", label: "Send throughput, 1 KB message, local", format: "rate", unit: "msgs/s" },
    { id: "sendRatioKb", label: "Send throughput, 1 KB: cross-node / local", format: "ratio" },
    { id: "rttP50Remote", label: "Round trip p50, cross-node", format: "us", unit: "µs" },
    { id: "rttP99Remote", label: "Round trip p99, cross-node", format: "us", unit: "µs" },
    { id: "rttP50Local", label: "Round trip p50, local", format: "us", unit: "µs" },
    { id: "rttP99Local", label: "Round trip p99, local", format: "us", unit: "µs" },
    { id: "rttRatioP50", label: "Round trip p50: cross-node / local", format: "ratio" },
    { id: "callP50Remote", label: "Call round trip p50, cross-node, one at a time", format: "us", unit: "µs" },
    { id: "callP99Remote", label: "Call round trip p99, cross-node, one at a time", format: "us", unit: "µs" },
    { id: "callSeqRateRemote", label: "Calls/s cross-node, one at a time (from the mean)", format: "number", unit: "calls/s" },
    { id: "callOverSendP50Remote", label: "Call / send round trip p50, cross-node, one at a time", format: "ratio" },
    { id: "callP50Local", label: "Call round trip p50, local (node A)", format: "us", unit: "µs" },
    { id: "callWindowRateRemote", label: "Calls/s cross-node, 100 in flight", format: "rate", unit: "calls/s" },
    { id: "sendRttWindowRateRemote", label: "Send round trips/s cross-node, 100 in flight", format: "rate", unit: "round trips/s" },
    { id: "callOverSendWindowRemote", label: "Call / send round trip, cross-node, 100 in flight (time per round trip)", format: "ratio" },
    { id: "callWindowRateLocal", label: "Calls/s local (node A), 100 in flight", format: "rate", unit: "calls/s" },
    { id: "bcastMsRemote", label: "Broadcast to 10 000 members, 5 000 on each node: until all have it", format: "ms" },
    { id: "bcastMsLocal", label: "Broadcast to 10 000 members on one node: until all have it", format: "ms" },
    { id: "bcastRatio", label: "Broadcast: two nodes / one node", format: "ratio" },
    { id: "cpuSenderUs", label: "CPU per cross-node message, small: sender node", format: "us", unit: "µs" },
    { id: "cpuReceiverUs", label: "CPU per cross-node message, small: receiver node", format: "us", unit: "µs" },
    {
      id: "cpuRedisUs",
      label: "CPU per cross-node message, small: redis-server",
      format: "us",
      unit: "µs",
      note:
        "From `/proc/<pid>/stat`, which counts whole clock ticks (10 ms): Redis spends only a few ticks on a whole run " +
        "(hundreds of messages per PUBLISH), so this figure moves in steps of about 0.03 µs (the 1 KB one, 0.1 µs). Redis's own " +
        "account (`INFO cpu`, getrusage, µs resolution) over the same runs is in the details below.",
    },
    { id: "cpuRemoteUs", label: "CPU per cross-node message, small: all three", format: "us", unit: "µs" },
    { id: "cpuLocalUs", label: "CPU per local message, small (node A)", format: "us", unit: "µs" },
    {
      id: "cpuAddedUs",
      label: "CPU per message that crossing Redis adds, small",
      format: "us",
      unit: "µs",
      note:
        "Sender + receiver + redis-server CPU per cross-node message minus node A's CPU per local message, same round. Both " +
        "include the acknowledgements (one per 256 messages) and the sink's checks.",
    },
    { id: "cpuSenderUsKb", label: "CPU per cross-node message, 1 KB: sender node", format: "us", unit: "µs" },
    { id: "cpuReceiverUsKb", label: "CPU per cross-node message, 1 KB: receiver node", format: "us", unit: "µs" },
    { id: "cpuRedisUsKb", label: "CPU per cross-node message, 1 KB: redis-server", format: "us", unit: "µs" },
    { id: "cpuRemoteUsKb", label: "CPU per cross-node message, 1 KB: all three", format: "us", unit: "µs" },
    { id: "cpuLocalUsKb", label: "CPU per local message, 1 KB (node A)", format: "us", unit: "µs" },
    { id: "cpuAddedUsKb", label: "CPU per message that crossing Redis adds, 1 KB", format: "us", unit: "µs" },
    { id: "sendRateIpc", label: "Send throughput, small message, cross-node over IPC", format: "rate", unit: "msgs/s" },
    { id: "sendIpcOverRedis", label: "Send throughput, small, cross-node: IPC / Redis", format: "ratio" },
    { id: "sendRateIpcKb", label: "Send throughput, 1 KB message, cross-node over IPC", format: "rate", unit: "msgs/s" },
    { id: "cpuSenderUsIpc", label: "CPU per cross-node message over IPC, small: sender node", format: "us", unit: "µs" },
    { id: "cpuReceiverUsIpc", label: "CPU per cross-node message over IPC, small: receiver node", format: "us", unit: "µs" },
    { id: "cpuPrimaryUsIpc", label: "CPU per cross-node message over IPC, small: the primary", format: "us", unit: "µs" },
    { id: "cpuRemoteUsIpc", label: "CPU per cross-node message over IPC, small: all three", format: "us", unit: "µs" },
    { id: "cpuIpcOverRedis", label: "CPU per cross-node message, small, all three: IPC / Redis", format: "ratio" },
    { id: "cpuRemoteUsIpcKb", label: "CPU per cross-node message over IPC, 1 KB: all three", format: "us", unit: "µs" },
    { id: "rttP50Ipc", label: "Send round trip p50, cross-node over IPC", format: "us", unit: "µs" },
    { id: "rttP99Ipc", label: "Send round trip p99, cross-node over IPC", format: "us", unit: "µs" },
    { id: "callP50Ipc", label: "Call round trip p50, cross-node over IPC, one at a time", format: "us", unit: "µs" },
    { id: "callP99Ipc", label: "Call round trip p99, cross-node over IPC, one at a time", format: "us", unit: "µs" },
    { id: "callWindowRateIpc", label: "Calls/s cross-node over IPC, 100 in flight", format: "rate", unit: "calls/s" },
    { id: "hsRateOne", label: "Handshakes/s, corral as one process", format: "rate", unit: "handshakes/s" },
    { id: "hsRateW1", label: "Handshakes/s, corral --workers 1", format: "rate", unit: "handshakes/s" },
    { id: "hsRateW2", label: "Handshakes/s, corral --workers 2", format: "rate", unit: "handshakes/s" },
    { id: "hsW2OverOne", label: "Handshakes/s: --workers 2 / one process (target ≥ 1.6)", format: "ratio" },
    { id: "hsCpuUsOne", label: "Server CPU per handshake, one process", format: "us", unit: "µs" },
    { id: "hsCpuUsW1", label: "Server CPU per handshake, --workers 1 (primary + worker)", format: "us", unit: "µs" },
    { id: "hsCpuUsW2", label: "Server CPU per handshake, --workers 2 (primary + workers)", format: "us", unit: "µs" },
    { id: "hsCpuW2OverOne", label: "Server CPU per handshake: --workers 2 / one process", format: "ratio" },
    { id: "echoRateOne", label: "Echo throughput, one process", format: "rate", unit: "msgs/s" },
    { id: "echoRateW2", label: "Echo throughput, --workers 2", format: "rate", unit: "msgs/s" },
    { id: "echoW2OverOne", label: "Echo throughput: --workers 2 / one process (target ≥ 1.6)", format: "ratio" },
    { id: "echoCpuUsOne", label: "Server CPU per echo, one process", format: "us", unit: "µs" },
    { id: "echoCpuUsW2", label: "Server CPU per echo, --workers 2 (primary + workers)", format: "us", unit: "µs" },
    { id: "hsColdCpuUsOne", label: "Server CPU per handshake, a fresh server's first 10 000: one process", format: "us", unit: "µs" },
    { id: "hsColdCpuUsW1", label: "Server CPU per handshake, a fresh server's first 10 000: --workers 1", format: "us", unit: "µs" },
    {
      id: "hsColdCpuUsW2",
      label: "Server CPU per handshake, a fresh server's first 10 000: --workers 2",
      format: "us",
      unit: "µs",
      note: "Each worker compiles the handshake path for itself: a fresh `--workers 2` pays that warm-up twice, over half the handshakes each.",
    },
    { id: "hsRateOneHeld", label: "Handshakes/s, one process held to 0.25 core", format: "rate", unit: "handshakes/s" },
    { id: "hsRateW1Held", label: "Handshakes/s, --workers 1 held to 0.25 core", format: "rate", unit: "handshakes/s" },
    { id: "hsRateW2Held", label: "Handshakes/s, --workers 2 held to 0.25 core each (0.5 core)", format: "rate", unit: "handshakes/s" },
    {
      id: "hsW2HeldOverOne",
      label: "Handshakes/s: --workers 2 (0.5 core) / one process (0.25 core)",
      format: "ratio",
      target: { op: ">=", value: 1.6 },
      note: "Scaling with cores on a 2-core machine: the server held to a CFS quota so the load generator keeps a core of its own (see **cluster-workers**).",
    },
    { id: "hsCpuUsOneHeld", label: "Server CPU per handshake, one process held to 0.25 core", format: "us", unit: "µs" },
    { id: "hsCpuUsW1Held", label: "Server CPU per handshake, --workers 1 held to 0.25 core", format: "us", unit: "µs" },
    { id: "hsCpuUsW2Held", label: "Server CPU per handshake, --workers 2 held to 0.5 core", format: "us", unit: "µs" },
    { id: "echoRateOneHeld", label: "Echo throughput, one process held to 0.25 core", format: "rate", unit: "msgs/s" },
    { id: "echoRateW1Held", label: "Echo throughput, --workers 1 held to 0.25 core", format: "rate", unit: "msgs/s" },
    { id: "echoRateW2Held", label: "Echo throughput, --workers 2 held to 0.25 core each (0.5 core)", format: "rate", unit: "msgs/s" },
    { id: "echoW2HeldOverOne", label: "Echo throughput: --workers 2 (0.5 core) / one process (0.25 core)", format: "ratio", target: { op: ">=", value: 1.6 } },
    { id: "echoCpuUsOneHeld", label: "Server CPU per echo, one process held to 0.25 core", format: "us", unit: "µs" },
    { id: "echoCpuUsW2Held", label: "Server CPU per echo, --workers 2 held to 0.5 core", format: "us", unit: "µs" },
    { id: "cpuBatchedUsRedis", label: "CPU per cross-node message, batched, in turns: Redis (both nodes + redis-server)", format: "us", unit: "µs" },
    { id: "cpuBatchedUsIpc", label: "CPU per cross-node message, batched, in turns: IPC (both workers + primary)", format: "us", unit: "µs" },
    { id: "cpuBatchedIpcOverRedis", label: "CPU per cross-node message, batched, in turns: IPC / Redis", format: "ratio", target: { op: "<=", value: 1 } },
    { id: "cpuBatchedKbUsRedis", label: "CPU per cross-node message, 1 KB, batched, in turns: Redis", format: "us", unit: "µs" },
    { id: "cpuBatchedKbUsIpc", label: "CPU per cross-node message, 1 KB, batched, in turns: IPC", format: "us", unit: "µs" },
    { id: "cpuBatchedKbIpcOverRedis", label: "CPU per cross-node message, 1 KB, batched, in turns: IPC / Redis", format: "ratio", target: { op: "<=", value: 1 } },
    { id: "cpuFramedUsRedis", label: "CPU per cross-node message, one per frame, in turns: Redis", format: "us", unit: "µs" },
    { id: "cpuFramedUsIpc", label: "CPU per cross-node message, one per frame, in turns: IPC", format: "us", unit: "µs" },
    { id: "cpuFramedIpcOverRedis", label: "CPU per cross-node message, one per frame, in turns: IPC / Redis", format: "ratio", target: { op: "<=", value: 1 } },
    { id: "bcastMsIpc", label: "Broadcast to 10 000 members, 5 000 on each node over IPC: until all have it", format: "ms" },
  ],
  derive: (f) => {
    /** @type {Record<string, number | undefined>} */
    const out = {
      sendRatio: ratio(f, "sendRateRemote", "sendRateLocal"),
      sendRatioKb: ratio(f, "sendRateRemoteKb", "sendRateLocalKb"),
      rttRatioP50: ratio(f, "rttP50Remote", "rttP50Local"),
      bcastRatio: ratio(f, "bcastMsRemote", "bcastMsLocal"),
      sendIpcOverRedis: ratio(f, "sendRateIpc", "sendRateRemote"),
      hsW2OverOne: ratio(f, "hsRateW2", "hsRateOne"),
      hsCpuW2OverOne: ratio(f, "hsCpuUsW2", "hsCpuUsOne"),
      echoW2OverOne: ratio(f, "echoRateW2", "echoRateOne"),
      hsW2HeldOverOne: ratio(f, "hsRateW2Held", "hsRateOneHeld"),
      echoW2HeldOverOne: ratio(f, "echoRateW2Held", "echoRateOneHeld"),
    };
    for (const sfx of ["", "Kb"]) {
      const s = f[`cpuSenderUs${sfx}`];
      const r = f[`cpuReceiverUs${sfx}`];
      const d = f[`cpuRedisUs${sfx}`];
      const l = f[`cpuLocalUs${sfx}`];
      if (s === undefined || r === undefined || d === undefined) continue;
      out[`cpuRemoteUs${sfx}`] = s + r + d;
      if (l !== undefined) out[`cpuAddedUs${sfx}`] = s + r + d - l;
    }
    for (const sfx of ["", "Kb"]) {
      const s = f[`cpuSenderUsIpc${sfx}`];
      const r = f[`cpuReceiverUsIpc${sfx}`];
      const d = f[`cpuPrimaryUsIpc${sfx}`];
      if (s === undefined || r === undefined || d === undefined) continue;
      out[`cpuRemoteUsIpc${sfx}`] = s + r + d;
    }
    out.cpuIpcOverRedis = ratio(out, "cpuRemoteUsIpc", "cpuRemoteUs");
    /** @type {Record<string, number>} */
    const defined = {};
    for (const [k, v] of Object.entries(out)) if (v !== undefined && Number.isFinite(v)) defined[k] = v;
    return defined;
  },
  detailLines: (d) => {
    const all = Object.values(d).flat();
    const skipped = all.find((x) => typeof x?.skipped === "string");
    // Without a redis-server the Redis measurements are skipped; the IPC ones need nothing.
    const lines = skipped ? [`Redis measurements skipped: ${skipped.skipped}.`] : [];
    /** @param {string} m @param {(x: any) => number} pick */
    const med = (m, pick) => (d[m]?.length ? median(d[m].map(pick)) : NaN);
    const f1 = (/** @type {number} */ v) => (Number.isFinite(v) ? v.toFixed(1) : "—");
    const f2 = (/** @type {number} */ v) => (Number.isFinite(v) ? v.toFixed(2) : "—");
    if (!skipped && d["cluster-send"]?.length) {
      for (const key of ["small", "kb"]) {
        lines.push(
          `send, ${key === "kb" ? "1 KB" : "small"}: ${f1(med("cluster-send", (x) => x[key].messagesPerPublish))} messages per PUBLISH ` +
            `(Redis's count over the window, the nodes' heartbeats included); the cross-node window lasted ${f2(med("cluster-send", (x) => x[key].remote.seconds))} s; redis-server's CPU ` +
            `by its own INFO (getrusage, µs resolution) ${f2(med("cluster-send", (x) => x[key].remote.redisInfoUs))} µs per message ` +
            `against ${f2(med("cluster-send", (x) => x[key].remote.redisUs))} µs from /proc.`,
        );
      }
    }
    if (!skipped && d["cluster-latency"]?.length) {
      lines.push(
        `latency: cross-node p90 ${f1(med("cluster-latency", (x) => x.remote.p90))} µs, p99.9 ${f1(med("cluster-latency", (x) => x.remote.p999))} µs, ` +
          `max ${f1(med("cluster-latency", (x) => x.remote.max))} µs, mean ${f1(med("cluster-latency", (x) => x.remote.mean))} µs; local p90 ` +
          `${f2(med("cluster-latency", (x) => x.local.p90))} µs, max ${f1(med("cluster-latency", (x) => x.local.max))} µs.`,
      );
    }
    if (!skipped && d["cluster-call"]?.length) {
      lines.push(
        `call: cross-node p90 ${f1(med("cluster-call", (x) => x.callRemote.p90))} µs, max ${f1(med("cluster-call", (x) => x.callRemote.max))} µs ` +
          `(the send round trip in the same child: p50 ${f1(med("cluster-call", (x) => x.pingRemote.p50))} µs, p99 ${f1(med("cluster-call", (x) => x.pingRemote.p99))} µs); ` +
          `signals through Redis per round trip: call ${f2(med("cluster-call", (x) => x.signalsPerCall))} one at a time, ` +
          `${f2(med("cluster-call", (x) => x.signalsPerCallInFlight))} with 100 in flight; send ${f2(med("cluster-call", (x) => x.signalsPerSendRtt))} ` +
          `and ${f2(med("cluster-call", (x) => x.signalsPerSendRttInFlight))}; local call p99 ${f2(med("cluster-call", (x) => x.callLocal.p99))} µs.`,
      );
    }
    if (!skipped && d["cluster-broadcast"]?.length) {
      lines.push(
        `broadcast: node B's first member had it after ${f2(med("cluster-broadcast", (x) => x.remoteFirstMedianMs))} ms, all 5 000 after ` +
          `${f2(med("cluster-broadcast", (x) => x.remoteHalfMs))} ms; the \`broadcast()\` call ` +
          `itself (it delivers to node A's 5 000 before it queues the one message for node B) took ${f2(med("cluster-broadcast", (x) => x.broadcastCallMs))} ms.`,
      );
    }
    if (d["cluster-ipc-send"]?.length) {
      lines.push(
        `IPC send: the window lasted ${f2(med("cluster-ipc-send", (x) => x.small.seconds))} s small, ${f2(med("cluster-ipc-send", (x) => x.kb.seconds))} s 1 KB; ` +
          `the primary's CPU (no signal passes through it; the coordinator idles in it) ${f2(med("cluster-ipc-send", (x) => x.small.primaryUs))} µs per small message.`,
      );
    }
    if (d["cluster-ipc-call"]?.length) {
      lines.push(
        `IPC call: p90 ${f1(med("cluster-ipc-call", (x) => x.call.p90))} µs, max ${f1(med("cluster-ipc-call", (x) => x.call.max))} µs; ` +
          `the send round trip in the same child p90 ${f1(med("cluster-ipc-call", (x) => x.rtt.p90))} µs.`,
      );
    }
    const turns = d["cluster-transports"];
    if (!skipped && turns?.length) {
      /** @param {string} key  kind-transport @param {(r: any) => number} pick  the median over every run of every round */
      const medAll = (key, pick) => median(turns.flatMap((x) => (x.runs?.[key] ?? []).map(pick)));
      const parts = [];
      for (const [kind, what] of [["batched", "small batched"], ["batchedKb", "1 KB batched"], ["framed", "one per frame"]]) {
        /** @param {string} t @param {number} i */
        const proc = (t, i) => f2(medAll(`${kind}-${t}`, (r) => r.each[i]));
        /** @param {string} t */
        const sys = (t) => f2(medAll(`${kind}-${t}`, (r) => r.system));
        parts.push(
          `${what}: IPC ${proc("ipc", 0)} + ${proc("ipc", 1)} + ${proc("ipc", 2)} (the primary) µs, of which ${sys("ipc")} in the kernel; ` +
            `Redis ${proc("redis", 0)} + ${proc("redis", 1)} + ${proc("redis", 2)} (redis-server) µs, of which ${sys("redis")} in the kernel`,
        );
      }
      lines.push(`In turns, CPU per message by process (node A, which sends the batches and the pings, + node B + the primary or redis-server; medians over every pair): ${parts.join("; ")}.`);
    }
    if (d["cluster-ipc-broadcast"]?.length) {
      lines.push(
        `IPC broadcast: node B's first member had it after ${f2(med("cluster-ipc-broadcast", (x) => x.remoteFirstMedianMs))} ms, all 5 000 after ` +
          `${f2(med("cluster-ipc-broadcast", (x) => x.remoteHalfMs))} ms.`,
      );
    }
    return lines;
  },
};
