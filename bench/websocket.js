// @ts-check
/**
 * WebSocket scenarios: corral side by side with a minimal raw-`ws` server doing the same
 * work, on the same Node. Each measurement runs in a fresh child (bench/lib/child.js) that
 * coordinates three kinds of processes (bench/ws/rig.js):
 *
 *   the server under test   bench/ws/corral-server.js (the package from dist/, as a user
 *                           imports it) or bench/ws/raw-server.js (ws alone), own process
 *   the load generator      bench/ws/loadgen.js, one process per 15 000 connections, its
 *                           connections spread over worker threads
 *   this coordinator        reads the server's and the generators' CPU time from /proc at
 *                           the two ends of each measured window, asks the server for its
 *                           memory after forced GCs, checks every result
 *
 * corral and raw ws are separate measurements of the same round, run one after the other
 * (the order flips every round, see `alternate`), so each round yields a corral/raw ratio.
 */
import { performance } from "node:perf_hooks";
import { fractionAbove, quantile, max as histMax } from "./ws/hist.js";
import { fdLimit, sourceAddresses, startRig } from "./ws/rig.js";
import { median } from "./lib/stats.js";

/** @typedef {import("./lib/scenario.js").Scenario} Scenario */
/** @typedef {"corral" | "raw"} Side */

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** @param {Side} side */
const sfx = (side) => (side === "corral" ? "Corral" : "Raw");

/**
 * @param {unknown} cond
 * @param {string} what
 * @returns {asserts cond}
 */
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

/**
 * Checks the fd limit before opening `conns` connections: the server holds one fd per
 * connection (a generator process holds at most 15 000). A child cannot raise its hard limit.
 * @param {number} conns
 */
function checkFds(conns) {
  const { soft, hard } = fdLimit();
  const need = conns + 500;
  if (Number.isFinite(soft) && soft < need) {
    throw new Error(
      `${conns} connections need about ${need} file descriptors in the server process; the limit here is ` +
        `${soft} (soft) / ${hard} (hard). Raise it before running (ulimit -n ${need} as a user with the ` +
        `privilege, or LimitNOFILE / --ulimit nofile for a service or container); a process cannot raise its hard limit.`,
    );
  }
}

/**
 * Runs `body` with a server and generators, always stopping them; adds the CPU they used to
 * the result (the harness subtracts it from the machine's busy time for its background-load check).
 * @template {{ figures: Record<string, number>, details?: Record<string, unknown>, warnings?: string[] }} R
 * @param {{ server: Side, conns: number, workers: number }} o
 * @param {(rig: import("./ws/rig.js").Rig) => Promise<R>} body
 */
async function withRig(o, body) {
  checkFds(o.conns);
  const rig = await startRig(o);
  try {
    const r = await body(rig);
    const subprocessCpuMs = rig.subprocessCpuMs();
    return { ...r, subprocessCpuMs };
  } finally {
    await rig.close();
  }
}

/**
 * The generator-vs-server check of one window: cores each used, the server's event-loop
 * utilization, the busiest generator worker's.
 * @param {Awaited<ReturnType<import("./ws/rig.js").Rig["mark"]>>} a
 * @param {Awaited<ReturnType<import("./ws/rig.js").Rig["mark"]>>} b
 */
function windowCpu(a, b) {
  const s = (b.at - a.at) / 1000;
  return {
    seconds: s,
    serverCores: (b.serverCpuMs - a.serverCpuMs) / 1000 / s,
    genCores: (b.genCpuMs - a.genCpuMs) / 1000 / s,
    serverElu: b.serverElu,
    genEluMax: Math.max(...b.genElu),
  };
}

// ---------------------------------------------------------------------------------------
// 1. Echo

/**
 * `conns` connections each keep `inflight` messages of `size` bytes in flight (closed loop;
 * half text, half binary); after `warmupSeconds` the window runs `seconds`.
 * With `metrics`, the server mounts `metrics()` and the coordinator scrapes it every second, as Prometheus would.
 * @param {{ server: Side, conns: number, inflight: number, size: number, seconds: number, warmupSeconds: number, workers: number, metrics?: boolean }} p
 */
export async function measureEcho(p) {
  return withRig({ server: p.server, conns: p.conns, workers: p.workers }, async (rig) => {
    /** @type {NodeJS.Timeout | undefined} */
    let scraper;
    let scrapes = 0;
    if (p.metrics) {
      await rig.server.call("metricsOn");
      const url = `http://127.0.0.1:${rig.port}/metrics`;
      scraper = setInterval(() => {
        fetch(url).then(async (res) => {
          check(res.status === 200 && (await res.text()).includes("corral_websocket_frames_received_total"), "echo-metrics: a scrape failed");
          scrapes++;
        });
      }, 1000);
    }
    await rig.connect({ mode: "echo", path: "/echo", count: p.conns, concurrency: 50, sources: sourceAddresses(p.conns), timeoutMs: 30_000 });
    await rig.waitConns(p.conns, 10_000);
    await rig.gensCall("echoStart", { inflight: p.inflight, size: p.size });
    await sleep(p.warmupSeconds * 1000);
    const a = await rig.mark();
    check(a.errors === 0, `echo warm-up: ${a.errors} errors, first: ${a.firstError}`);
    await sleep(p.seconds * 1000);
    const b = await rig.mark();
    clearInterval(scraper);
    const stopped = await rig.gensCall("echoStop", { timeoutMs: 5000 });
    const w = windowCpu(a, b);
    if (p.metrics) check(scrapes >= Math.floor(p.seconds), `echo-metrics: ${scrapes} scrapes in ${p.seconds} s`);
    check(b.errors === 0, `echo: ${b.errors} errors, first: ${b.firstError}`);
    check(b.conns === p.conns, `echo: ${b.conns} of ${p.conns} connections still open`);
    check(b.received > 0, "echo: no messages came back in the window");
    const outstanding = stopped.reduce((s, x) => s + x.outstanding, 0);
    check(outstanding === 0, `echo: ${outstanding} messages never came back after the load stopped`);
    const rate = b.received / w.seconds;
    const cpuUs = ((b.serverCpuMs - a.serverCpuMs) * 1000) / b.received;
    const s = p.metrics ? "MetricsCorral" : sfx(p.server);
    return {
      figures: {
        [`echoRate${s}`]: rate,
        [`echoCpuUs${s}`]: cpuUs,
        [`echoP50Ms${s}`]: quantile(b.hist, 0.5) / 1000,
        [`echoP99Ms${s}`]: quantile(b.hist, 0.99) / 1000,
        [`echoServerCores${s}`]: w.serverCores,
        [`echoGenCores${s}`]: w.genCores,
      },
      details: { ...p, ...w, messages: b.received, sent: b.sent, maxLatencyMs: histMax(b.hist) / 1000, genElu: b.genElu },
    };
  });
}

// ---------------------------------------------------------------------------------------
// 2, 3, 5. Idle connections (memory, handshakes), hibernated ones, app → pid messages

/**
 * Opens and closes `warmup` connections (code paths compiled), reads the server's memory
 * after forced GCs, opens `conns` connections (the handshake rate and the server's CPU per
 * handshake), reads the memory again: the delta per connection. kind "state" / "hibernate"
 * use corral handlers holding a ~2 KB state (live / hibernated); afterwards every state is
 * woken and compared with a freshly built one. With appToPid, app code then sends one
 * message to each connection (to each pid; then to the group via broadcast) and the clock
 * runs until the last client has it.
 * @param {{ server: Side, kind: "idle" | "state" | "hibernate", conns: number, warmup: number, workers: number, concurrency: number, appToPid: number, prefix?: string }} p
 */
export async function measureIdle(p) {
  const path = p.kind === "idle" ? "/idle" : `/${p.kind}`;
  check(p.server === "corral" || p.kind === "idle", "the raw server has only the idle handler");
  return withRig({ server: p.server, conns: p.conns, workers: p.workers }, async (rig) => {
    const sources = sourceAddresses(p.conns + p.warmup);
    await rig.connect({ mode: "idle", path, count: p.warmup, concurrency: p.concurrency, sources, timeoutMs: 30_000 });
    await rig.waitConns(p.warmup, 10_000);
    await rig.gensCall("closeAll");
    await rig.waitConns(0, 10_000);
    await sleep(200);
    const before = await rig.server.call("mem", undefined, 60_000);

    const cpu0 = rig.server.cpuMs();
    const gen0 = rig.gens.reduce((s, g) => s + g.cpuMs(), 0);
    const hs = await rig.connect({ mode: "idle", path, count: p.conns, concurrency: p.concurrency, sources, timeoutMs: 120_000 });
    const cpu1 = rig.server.cpuMs();
    const gen1 = rig.gens.reduce((s, g) => s + g.cpuMs(), 0);
    await rig.waitConns(p.conns, 30_000);
    /** @type {string[]} */
    const warnings = [];
    if (p.kind === "hibernate") {
      const end = performance.now() + 30_000;
      let h = await rig.server.call("hibernated");
      while (h.hibernated < p.conns && performance.now() < end) {
        await sleep(50);
        h = await rig.server.call("hibernated");
      }
      check(h.hibernated === p.conns, `${h.hibernated} of ${p.conns} connections hibernated`);
    }
    await sleep(200);
    const after = await rig.server.call("mem", undefined, 60_000);
    const d = {
      rss: (after.rss - before.rss) / p.conns,
      heapUsed: (after.heapUsed - before.heapUsed) / p.conns,
      external: (after.external - before.external) / p.conns,
      arrayBuffers: (after.arrayBuffers - before.arrayBuffers) / p.conns,
    };
    const js = d.heapUsed + d.external;

    /** @type {Record<string, number>} */
    const figures = {};
    /** @type {Record<string, unknown>} */
    const details = { ...p, before, after, perConn: d, handshakeMs: hs.ms, handshakeRetries: hs.retries, genCpuMsHandshakes: gen1 - gen0 };
    const s = sfx(p.server);
    if (hs.retries > 0) warnings.push(`${hs.retries} connection attempts were refused or reset and retried (accept queue full?)`);
    if (p.kind === "idle") {
      const pre = p.prefix ?? "idle";
      figures[`${pre}Rss${s}`] = d.rss;
      figures[`${pre}Js${s}`] = js;
      figures[`${pre}Heap${s}`] = d.heapUsed;
      figures[`${pre}External${s}`] = d.external;
      figures[`${pre}Handshakes${s}`] = p.conns / (hs.ms / 1000);
      figures[`${pre}HandshakeCpuUs${s}`] = ((cpu1 - cpu0) * 1000) / p.conns;
      figures[`${pre}HandshakeServerCores${s}`] = (cpu1 - cpu0) / hs.ms;
      figures[`${pre}HandshakeGenCores${s}`] = (gen1 - gen0) / hs.ms;
    } else {
      const pre = p.kind === "state" ? "stateLive" : "stateHib";
      figures[`${pre}Rss`] = d.rss;
      figures[`${pre}Js`] = js;
      if (p.kind === "hibernate") figures.stateSerialized = await rig.server.call("serializedSize", { count: p.conns }, 60_000);
      const c = await rig.server.call("check", { timeoutMs: 60_000 }, 90_000);
      check(c.checked === p.conns && c.mismatches === 0, `state check: ${c.checked} of ${p.conns} checked, ${c.mismatches} differ from what was built`);
    }

    if (p.appToPid > 0) {
      const app = await appToPid(rig, p.conns, p.appToPid);
      figures[`appEachMs${s}`] = app.each.ms;
      figures[`appGroupMs${s}`] = app.group.ms;
      details.appToPid = app;
    }
    const m = await rig.gensCall("mark");
    const errors = m.reduce((n, x) => n + x.errors, 0);
    check(errors === 0, `idle: ${errors} errors, first: ${m.find((x) => x.firstError)?.firstError}`);
    return { figures, details, warnings };
  });
}

/**
 * From app code in the server: one message to each of the connections, `reps` times per
 * way (after one untimed round), each way: to each pid (raw: each socket), then to the group
 * (corral: broadcast; raw: the same loop over wss.clients). Time from the server's first
 * send to the last client's receipt, on the monotonic clock every process shares.
 * @param {import("./ws/rig.js").Rig} rig
 * @param {number} conns
 * @param {number} reps
 */
async function appToPid(rig, conns, reps) {
  /** @param {"each" | "group"} via */
  const run = async (via) => {
    const ms = [];
    const loopMs = [];
    for (let r = 0; r <= reps; r++) {
      const msg = `app ${via} ${r} ${"x".repeat(16)}`;
      await rig.gensCall("expect", { msg });
      const sent = await rig.server.call("sendAll", { via, msg });
      check(sent.n === conns, `sendAll ${via}: sent to ${sent.n} of ${conns}`);
      const got = await rig.gensCall("awaitExpect", { timeoutMs: 30_000 }, 40_000);
      /** @type {bigint} */
      let last = got[0].tLast;
      for (const g of got) if (g.tLast > last) last = g.tLast;
      check(got.reduce((n, g) => n + g.got, 0) === conns, `${via}: not every connection got the message`);
      if (r === 0) continue;
      ms.push(Number(last - sent.t0) / 1e6);
      loopMs.push(Number(sent.t1 - sent.t0) / 1e6);
      await sleep(50);
    }
    return { ms: median(ms), loopMs: median(loopMs), all: ms };
  };
  const each = await run("each");
  await rig.server.call("join");
  const group = await run("group");
  return { each, group };
}

// ---------------------------------------------------------------------------------------
// 4. Timer push

/**
 * `conns` connections to the push handler (corral: the guide's startTimer handler; raw: a
 * setTimeout chain per connection). After `settleSeconds` the window runs `seconds`: the
 * server's CPU, and per connection the interval between pushes as the client sees it; then
 * the server's memory after forced GCs: its RSS, and heap + external per connection above
 * what it held before the connections.
 * @param {{ server: Side, conns: number, seconds: number, settleSeconds: number, workers: number, concurrency: number, path?: string, prefix?: string }} p
 */
export async function measurePush(p) {
  return withRig({ server: p.server, conns: p.conns, workers: p.workers }, async (rig) => {
    const before = await rig.server.call("mem", undefined, 60_000);
    const hs = await rig.connect({ mode: "push", path: p.path ?? "/push", count: p.conns, concurrency: p.concurrency, sources: sourceAddresses(p.conns), timeoutMs: 120_000 });
    await rig.waitConns(p.conns, 30_000);
    await sleep(p.settleSeconds * 1000);
    const a = await rig.mark();
    await rig.server.call("eldStart");
    check(a.errors === 0, `push before the window: ${a.errors} errors, first: ${a.firstError}`);
    await sleep(p.seconds * 1000);
    const b = await rig.mark();
    const eld = await rig.server.call("eldStop");
    const after = await rig.server.call("mem", undefined, 60_000);
    const w = windowCpu(a, b);
    check(b.errors === 0, `push: ${b.errors} errors, first: ${b.firstError}`);
    check(b.conns === p.conns, `push: ${b.conns} of ${p.conns} connections open`);
    const least = Math.floor(w.seconds) - 1;
    check(b.minPerConn >= least, `push: a connection got ${b.minPerConn} pushes in ${w.seconds.toFixed(1)} s (expected ≥ ${least})`);
    const s = sfx(p.server);
    const pre = p.prefix ?? "push";
    return {
      figures: {
        [`${pre}Cpu${s}`]: w.serverCores,
        [`${pre}LateP99Ms${s}`]: quantile(b.hist, 0.99) / 1000,
        [`${pre}LateP50Ms${s}`]: quantile(b.hist, 0.5) / 1000,
        [`${pre}GenCores${s}`]: w.genCores,
        [`${pre}Rss${s}`]: after.rss,
        [`${pre}Js${s}`]: (after.heapUsed + after.external - before.heapUsed - before.external) / p.conns,
      },
      details: {
        ...p,
        ...w,
        handshakeMs: hs.ms,
        pushes: b.received,
        pushesPerSecond: b.received / w.seconds,
        perConn: [b.minPerConn, b.maxPerConn],
        lateP90Ms: quantile(b.hist, 0.9) / 1000,
        lateP999Ms: quantile(b.hist, 0.999) / 1000,
        lateOver50: fractionAbove(b.hist, 50_000),
        serverEventLoopDelayMs: eld,
        lateMaxMs: histMax(b.hist) / 1000,
        lateMinMs: b.minLateMs,
        genElu: b.genElu,
        before,
        after,
      },
    };
  });
}

// ---------------------------------------------------------------------------------------
// What bench/run.js runs and reports

/**
 * @param {string} id
 * @param {string} fn
 * @param {string[]} groups
 * @param {(side: Side, quick: boolean, o: { large: boolean }) => Record<string, unknown>} params
 * @param {number} timeoutMs
 * @param {string} [how]
 * @param {(o: { large: boolean }) => boolean} [enabled]
 * @returns {import("./lib/scenario.js").Measurement[]}
 */
function pair(id, fn, groups, params, timeoutMs, how, enabled) {
  return /** @type {Side[]} */ (["corral", "raw"]).map((side, k) => ({
    id: `${id}-${side}`,
    fn,
    groups,
    params: (quick, o = { large: false }) => ({ server: side, ...params(side, quick, o) }),
    timeoutMs,
    ...(k === 0 && how ? { how } : {}),
    ...(enabled ? { enabled } : {}),
  }));
}

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
  name: "websocket",
  title: "WebSocket: corral vs raw ws",
  rounds: 3,
  alternate: true,
  about:
    "Each scenario runs twice per round, side by side: against corral (`bench/ws/corral-server.js`, the package " +
    "from `dist/` used as an app would: `startClear`, `compileRoutes`, handler modules) and against a minimal server " +
    "on `ws` alone doing the same work (`bench/ws/raw-server.js`), in that order in odd rounds and the other way round " +
    "in even ones. The server under test runs in its own `node --expose-gc` process; the load generator " +
    "(`bench/ws/loadgen.js`) in another (one per 15 000 connections), its connections in a worker thread, with lean clients (hand-written " +
    "upgrade and framing on `net` sockets, masked frames stamped from a template) so that it costs the CPU it must: its " +
    "CPU is reported next to the server's (the *Load generator check* rows; one core is all a Node event loop can use, and " +
    "on this 2-core machine the two processes share the cores). Connections bind source addresses 127.0.0.2, 127.0.0.3, " +
    "… in turn, with client ports picked by the generator. CPU " +
    "time is the server process's user + system time from `/proc/<pid>/stat` (all its threads, GC included) over the " +
    "measured window. Memory is the server's `process.memoryUsage()` after forced full GCs, before and after opening " +
    "the connections, divided by their number. Ratios are corral / raw, computed per round; the table shows their " +
    "median and each round's value.",
  measurements: [
    ...pair(
      "echo",
      "measureEcho",
      ["echo"],
      (_side, quick) => ({ conns: quick ? 20 : 100, inflight: 16, size: 32, seconds: quick ? 1.5 : 10, warmupSeconds: quick ? 0.5 : 2, workers: 1 }),
      90_000,
      "100 connections (20 with --quick), each keeping 16 messages of 32 bytes in flight: a client sends a new one " +
        "for each echo it gets (closed loop). Even connections send text, odd ones binary; corral's handler returns " +
        "`reply(frame, state)`, raw ws does `ws.send(d, { binary: isBinary })`. 2 s of warm-up, then a 10 s window " +
        "(1.5 s with --quick): echoes received / window = throughput; server CPU / echoes = CPU per message; latency " +
        "from the client's send to the echo's arrival (per-read timestamps, log histogram, ≤ 1 % bucket error). " +
        "Checked: every echo comes back on its connection with its opcode, length and sequence number, in order, and " +
        "none is missing after the load stops.",
    ),
    {
      id: "echo-metrics-corral",
      fn: "measureEcho",
      groups: ["echo", "metrics"],
      params: (quick) => ({ server: "corral", metrics: true, conns: quick ? 20 : 100, inflight: 16, size: 32, seconds: quick ? 1.5 : 10, warmupSeconds: quick ? 0.5 : 2, workers: 1 }),
      timeoutMs: 90_000,
      how:
        "As **echo-corral**, with `metrics()` mounted at `/metrics` (prom-client's Node metrics collected, its " +
        "event-loop delay histogram included) and scraped every second by the coordinator during the window, as " +
        "Prometheus would. corral's counters themselves are always on (one integer increment per frame); the ratio " +
        "to **echo-corral** of the same round is what mounting and scraping the metrics costs. Checked: every scrape " +
        "answers 200 with corral's metrics.",
    },
    ...pair(
      "idle",
      "measureIdle",
      ["idle", "app-to-pid", "hibernate"],
      (_side, quick) => ({ kind: "idle", conns: quick ? 500 : 10_000, warmup: quick ? 100 : 1000, workers: 1, concurrency: 128, appToPid: quick ? 2 : 5 }),
      180_000,
      "Warm-up: 1 000 connections opened and closed (100 with --quick). Then N = 10 000 (500 with --quick) " +
        "connections are opened, at most 128 handshakes outstanding at a time (Node's accept backlog is 511): " +
        "handshakes/s is N over the time from the first connect to the last 101, and the server's CPU over that time / " +
        "N the CPU per handshake. On loopback the client's half of each TCP and HTTP handshake costs the generator about " +
        "as much CPU as the server's half (`connect`, `bind`, the request write: kernel time), so on 2 cores the rate is " +
        "bounded by both processes together; the server's CPU per handshake is the figure that isolates the server. " +
        "Memory per connection: the server's `rss`, `heapUsed` and `external` after 4 forced " +
        "full GCs (with event-loop turns between), minus the same before the N connections, / N. corral's idle handler " +
        "keeps each pid in an app-level Set in `websocketInit` (raw ws: its `wss.clients`, on by default); its " +
        "default idle timeout (60 s) is kept by one sweep timer per listener and timeout, not a timer per connection. **App → pid**, on the same server afterwards: app " +
        "code sends one 37-byte text to each connection, corral by `send(pid, msg)` for each pid (its `websocketInfo` " +
        "returns `reply(text(msg), state)`), raw ws by `ws.send(msg)` for each of `wss.clients`; then each pid joins a " +
        "group and app code calls `broadcast(group, msg)` (raw: the same loop again). The time runs from the server's " +
        "first send to the last client's receipt (`process.hrtime`, one monotonic clock for all processes); median of " +
        "5 rounds after an untimed one. Checked: every connection gets each message exactly once.",
    ),
    {
      id: "state-corral",
      fn: "measureIdle",
      groups: ["hibernate"],
      params: (quick) => ({ server: "corral", kind: "state", conns: quick ? 500 : 10_000, warmup: quick ? 100 : 1000, workers: 1, concurrency: 128, appToPid: 0 }),
      timeoutMs: 180_000,
      how:
        "As **idle**, with a handler whose `websocketInit` builds a ~2 KB chat-connection state (`makeState` of " +
        "bench/runtime.js: nested objects, per-connection strings, an array of 8 records and a Map of 8 entries) and " +
        "returns `ok(state)`; **hibernate-corral** returns `ok(state, { hibernate: true })` from every callback. The " +
        "serialized size is `v8.serialize` of the states the N measured connections hold, their mean. The hibernated figure is compared with " +
        "raw ws idle memory plus that size, and with corral holding the same state live. Checked: every connection is " +
        "hibernated before the memory reading; afterwards every state, woken by a message, is deep-equal to a freshly " +
        "built one.",
    },
    {
      id: "hibernate-corral",
      fn: "measureIdle",
      groups: ["hibernate"],
      params: (quick) => ({ server: "corral", kind: "hibernate", conns: quick ? 500 : 10_000, warmup: quick ? 100 : 1000, workers: 1, concurrency: 128, appToPid: 0 }),
      timeoutMs: 180_000,
    },
    ...pair(
      "push",
      "measurePush",
      ["push"],
      (_side, quick) => ({ conns: quick ? 500 : 10_000, seconds: quick ? 2 : 20, settleSeconds: quick ? 1.2 : 2, workers: 1, concurrency: 128 }),
      180_000,
      "N = 10 000 connections (500 with --quick). corral runs the guide's handler (docs/websocket.md): " +
        "`startTimer(1000, self(), \"tick\")` in `websocketInit`, re-armed in `websocketInfo`, which returns " +
        "`reply(text(\"tick\"), state, { hibernate: true })`, its state holding a ~2 KB chat-connection state " +
        "(`makeState` of bench/runtime.js) beside the heartbeat, so that hibernating really serializes it; raw ws runs one " +
        "`setTimeout` chain per connection sending `\"tick\"` and holds no state. 2 s after the last connection is up, a 20 s " +
        "window (2 s with --quick): the server's CPU in cores (1.00 = one core busy), and the lateness of each push, as the " +
        "client sees it: the interval since the connection's previous push minus 1 000 ms. Then the server's memory after " +
        "forced full GCs, pushes still running: its RSS, and heapUsed + external per connection above the same before the " +
        "connections. Checked: every connection got at least (window − 1) pushes, all `\"tick\"`.",
    ),
    {
      id: "push-live-corral",
      fn: "measurePush",
      groups: ["push"],
      params: (quick) => ({ server: "corral", path: "/push-live", prefix: "pushLive", conns: quick ? 500 : 10_000, seconds: quick ? 2 : 20, settleSeconds: quick ? 1.2 : 2, workers: 1, concurrency: 128 }),
      timeoutMs: 180_000,
      how:
        "**push-corral** without `{ hibernate: true }` in the reply, same state, same round: what hibernating after " +
        "each push costs. Targets, hibernating / not: server CPU ≤ 1.3, RSS at the end ≤ 1.0, heap + external per " +
        "connection ≤ 1.0, lateness p99 at most 5 ms more.",
    },
    ...pair(
      "idle-large",
      "measureIdle",
      ["idle-large", "large"],
      () => ({ kind: "idle", conns: 50_000, warmup: 1000, workers: 1, concurrency: 128, appToPid: 0, prefix: "large" }),
      300_000,
      "Only with --large: as **idle** with N = 50 000, the generator split over 4 processes, the connections over " +
        "5 source addresses. The server needs one file descriptor per connection: it fails with the limit in the " +
        "message when `ulimit -n` is lower.",
      (o) => o.large,
    ),
  ],
  figures: [
    { id: "echoRateCorral", label: "Echo throughput, corral", format: "rate", unit: "msgs/s" },
    { id: "echoRateRaw", label: "Echo throughput, raw ws", format: "rate", unit: "msgs/s" },
    { id: "echoRateRatio", label: "Echo throughput corral / raw", format: "ratio", target: { op: ">=", value: 1.0 } },
    { id: "echoRateMetricsCorral", label: "Echo throughput, corral with metrics scraped every second", format: "rate", unit: "msgs/s" },
    { id: "echoMetricsRateRatio", label: "Echo throughput with metrics / without", format: "ratio", target: { op: ">=", value: 0.97 } },
    { id: "echoMetricsCpuRatio", label: "Echo server CPU per message with metrics / without", format: "ratio", target: { op: "<=", value: 1.03 } },
    { id: "echoCpuUsCorral", label: "Echo server CPU per message, corral", format: "us", unit: "µs" },
    { id: "echoCpuUsRaw", label: "Echo server CPU per message, raw ws", format: "us", unit: "µs" },
    {
      id: "echoCpuRatio",
      label: "Echo server CPU per message corral / raw",
      format: "ratio",
      target: { op: "<=", value: 1.0 },
      note: "The issue's target is ≤ 1.0; it aims for 0.5 (coalescing the writes of the replies a turn produces).",
    },
    { id: "echoP50MsCorral", label: "Echo latency p50, corral", format: "ms" },
    { id: "echoP50MsRaw", label: "Echo latency p50, raw ws", format: "ms" },
    { id: "echoP50Ratio", label: "Echo latency p50 corral / raw", format: "ratio" },
    { id: "echoP99MsCorral", label: "Echo latency p99, corral", format: "ms" },
    { id: "echoP99MsRaw", label: "Echo latency p99, raw ws", format: "ms" },
    { id: "echoP99Ratio", label: "Echo latency p99 corral / raw", format: "ratio", target: { op: "<=", value: 1.2 } },
    { id: "echoServerCoresCorral", label: "Echo: server CPU, corral", format: "cores" },
    { id: "echoServerCoresRaw", label: "Echo: server CPU, raw ws", format: "cores" },
    { id: "echoGenCoresCorral", label: "Echo: generator CPU, corral run", format: "cores" },
    { id: "echoGenCoresRaw", label: "Echo: generator CPU, raw run", format: "cores" },

    { id: "idleRssCorral", label: "Idle: RSS per connection, corral", format: "bytes" },
    { id: "idleRssRaw", label: "Idle: RSS per connection, raw ws", format: "bytes" },
    { id: "idleRssRatio", label: "Idle: RSS per connection corral / raw", format: "ratio", target: { op: "<=", value: 1.0 } },
    { id: "idleJsCorral", label: "Idle: heapUsed + external per connection, corral", format: "bytes" },
    { id: "idleJsRaw", label: "Idle: heapUsed + external per connection, raw ws", format: "bytes" },
    { id: "idleJsRatio", label: "Idle: heapUsed + external per connection corral / raw", format: "ratio", target: { op: "<=", value: 1.0 } },
    { id: "idleHeapCorral", label: "Idle: heapUsed per connection, corral", format: "bytes" },
    { id: "idleHeapRaw", label: "Idle: heapUsed per connection, raw ws", format: "bytes" },
    { id: "idleHeapRatio", label: "Idle: heapUsed per connection corral / raw", format: "ratio" },
    { id: "idleExternalCorral", label: "Idle: external per connection, corral", format: "bytes" },
    { id: "idleExternalRaw", label: "Idle: external per connection, raw ws", format: "bytes" },
    { id: "idleHandshakesCorral", label: "Handshakes/s, corral", format: "rate", unit: "handshakes/s" },
    { id: "idleHandshakesRaw", label: "Handshakes/s, raw ws", format: "rate", unit: "handshakes/s" },
    { id: "idleHandshakesRatio", label: "Handshakes/s corral / raw", format: "ratio", target: { op: ">=", value: 0.9 } },
    { id: "idleHandshakeCpuUsCorral", label: "Server CPU per handshake, corral", format: "us" },
    { id: "idleHandshakeCpuUsRaw", label: "Server CPU per handshake, raw ws", format: "us" },
    { id: "idleHandshakeCpuRatio", label: "Server CPU per handshake corral / raw", format: "ratio" },
    { id: "idleHandshakeServerCoresCorral", label: "Handshakes: server CPU, corral", format: "cores" },
    { id: "idleHandshakeServerCoresRaw", label: "Handshakes: server CPU, raw ws", format: "cores" },
    { id: "idleHandshakeGenCoresCorral", label: "Handshakes: generator CPU, corral run", format: "cores" },
    { id: "idleHandshakeGenCoresRaw", label: "Handshakes: generator CPU, raw run", format: "cores" },

    { id: "stateSerialized", label: "2 KB state: v8.serialize size", format: "bytes" },
    { id: "stateLiveRss", label: "2 KB state live: RSS per connection, corral", format: "bytes" },
    { id: "stateLiveJs", label: "2 KB state live: heapUsed + external per connection, corral", format: "bytes" },
    { id: "stateHibRss", label: "2 KB state hibernated: RSS per connection, corral", format: "bytes" },
    { id: "stateHibJs", label: "2 KB state hibernated: heapUsed + external per connection, corral", format: "bytes" },
    { id: "hibBudgetRss", label: "raw ws idle RSS + serialized state", format: "bytes" },
    { id: "hibBudgetJs", label: "raw ws idle heapUsed + external + serialized state", format: "bytes" },
    { id: "hibOverBudgetRss", label: "Hibernated RSS / (raw idle RSS + state bytes)", format: "ratio", target: { op: "<=", value: 1.0 } },
    { id: "hibOverBudgetJs", label: "Hibernated heap+external / (raw idle heap+external + state bytes)", format: "ratio", target: { op: "<=", value: 1.0 } },
    { id: "hibOverLiveRss", label: "Hibernated / live RSS per connection, corral", format: "ratio" },
    { id: "hibOverLiveJs", label: "Hibernated / live heap+external per connection, corral", format: "ratio" },
    { id: "stateLiveCostRss", label: "2 KB state live: RSS per connection above corral idle", format: "bytes" },
    { id: "stateHibCostRss", label: "2 KB state hibernated: RSS per connection above corral idle", format: "bytes" },
    { id: "stateLiveCostJs", label: "2 KB state live: heap+external per connection above corral idle", format: "bytes" },
    { id: "stateHibCostJs", label: "2 KB state hibernated: heap+external per connection above corral idle", format: "bytes" },
    { id: "hibStateRatioRss", label: "The state's RSS cost hibernated / live", format: "ratio", target: { op: "<=", value: 0.75 } },
    {
      id: "hibStateRatioJs",
      label: "The state's heap+external cost hibernated / live",
      format: "ratio",
      target: { op: "<=", value: 0.75 },
      note:
        "\"Clearly below corral without hibernate\", read as bench/runtime.js does (at least a quarter less), applied to what " +
        "the state costs on top of an idle corral connection (same round): hibernation can only shrink the state, not the " +
        "socket, ws and connection (about 2.4 KB of heap per connection), which would otherwise dilute the ratio. The ratio " +
        "of the totals (hibernated / live connection) is in the results file as hibOverLiveJs / hibOverLiveRss.",
    },

    { id: "pushCpuCorral", label: "Push: server CPU, corral", format: "cores" },
    { id: "pushCpuRaw", label: "Push: server CPU, raw ws", format: "cores" },
    { id: "pushCpuRatio", label: "Push: server CPU corral / raw", format: "ratio", target: { op: "<=", value: 1.1 } },
    { id: "pushLateP99MsCorral", label: "Push lateness p99, corral", format: "ms", target: { op: "<=", value: 50 } },
    { id: "pushLateP99MsRaw", label: "Push lateness p99, raw ws", format: "ms", target: { op: "<=", value: 50 } },
    { id: "pushLateP50MsCorral", label: "Push lateness p50, corral", format: "ms" },
    { id: "pushLateP50MsRaw", label: "Push lateness p50, raw ws", format: "ms" },
    { id: "pushGenCoresCorral", label: "Push: generator CPU, corral run", format: "cores" },
    { id: "pushGenCoresRaw", label: "Push: generator CPU, raw run", format: "cores" },
    { id: "pushRssCorral", label: "Push: server RSS at the end, corral", format: "bytes" },
    { id: "pushRssRaw", label: "Push: server RSS at the end, raw ws", format: "bytes" },
    { id: "pushJsCorral", label: "Push: heapUsed + external per connection, corral", format: "bytes" },
    { id: "pushJsRaw", label: "Push: heapUsed + external per connection, raw ws", format: "bytes" },

    { id: "pushLiveCpuCorral", label: "Push without hibernate: server CPU, corral", format: "cores" },
    { id: "pushLiveLateP99MsCorral", label: "Push without hibernate: lateness p99, corral", format: "ms", target: { op: "<=", value: 50 } },
    { id: "pushLiveLateP50MsCorral", label: "Push without hibernate: lateness p50, corral", format: "ms" },
    { id: "pushLiveGenCoresCorral", label: "Push without hibernate: generator CPU, corral run", format: "cores" },
    { id: "pushLiveCpuRatio", label: "Push without hibernate: server CPU corral / raw", format: "ratio", target: { op: "<=", value: 1.1 } },
    { id: "pushLiveRssCorral", label: "Push without hibernate: server RSS at the end, corral", format: "bytes" },
    { id: "pushLiveJsCorral", label: "Push without hibernate: heapUsed + external per connection, corral", format: "bytes" },
    { id: "pushHibCpuRatio", label: "Push: server CPU hibernating / not", format: "ratio", target: { op: "<=", value: 1.3 } },
    { id: "pushHibRssRatio", label: "Push: server RSS at the end hibernating / not", format: "ratio", target: { op: "<=", value: 1.0 } },
    { id: "pushHibJsRatio", label: "Push: heapUsed + external per connection hibernating / not", format: "ratio", target: { op: "<=", value: 1.0 } },
    { id: "pushHibLateP99DiffMs", label: "Push: lateness p99 hibernating − not", format: "ms", target: { op: "<=", value: 5 } },

    { id: "appEachMsCorral", label: "App → each pid, until the last client has it, corral", format: "ms" },
    { id: "appEachMsRaw", label: "App → each socket (loop over wss.clients), raw ws", format: "ms" },
    { id: "appEachRatio", label: "App → each pid corral / raw loop", format: "ratio" },
    { id: "appGroupMsCorral", label: "App → broadcast to the group, corral", format: "ms" },
    { id: "appGroupMsRaw", label: "App → loop over wss.clients (again), raw ws", format: "ms" },
    { id: "appGroupRatio", label: "App → group broadcast corral / raw loop", format: "ratio" },

    { id: "largeRssCorral", label: "50 k idle: RSS per connection, corral", format: "bytes" },
    { id: "largeRssRaw", label: "50 k idle: RSS per connection, raw ws", format: "bytes" },
    { id: "largeRssRatio", label: "50 k idle: RSS per connection corral / raw", format: "ratio", target: { op: "<=", value: 1.0 } },
    { id: "largeJsCorral", label: "50 k idle: heapUsed + external per connection, corral", format: "bytes" },
    { id: "largeJsRaw", label: "50 k idle: heapUsed + external per connection, raw ws", format: "bytes" },
    { id: "largeJsRatio", label: "50 k idle: heapUsed + external corral / raw", format: "ratio", target: { op: "<=", value: 1.0 } },
    { id: "largeHandshakesCorral", label: "50 k: handshakes/s, corral", format: "rate" },
    { id: "largeHandshakesRaw", label: "50 k: handshakes/s, raw ws", format: "rate" },
    { id: "largeHandshakesRatio", label: "50 k: handshakes/s corral / raw", format: "ratio", target: { op: ">=", value: 0.9 } },
  ],
  derive: (f) => {
    /** @type {Record<string, number | undefined>} */
    const out = {
      echoRateRatio: ratio(f, "echoRateCorral", "echoRateRaw"),
      echoMetricsRateRatio: ratio(f, "echoRateMetricsCorral", "echoRateCorral"),
      echoMetricsCpuRatio: ratio(f, "echoCpuUsMetricsCorral", "echoCpuUsCorral"),
      echoCpuRatio: ratio(f, "echoCpuUsCorral", "echoCpuUsRaw"),
      echoP50Ratio: ratio(f, "echoP50MsCorral", "echoP50MsRaw"),
      echoP99Ratio: ratio(f, "echoP99MsCorral", "echoP99MsRaw"),
      idleRssRatio: ratio(f, "idleRssCorral", "idleRssRaw"),
      idleJsRatio: ratio(f, "idleJsCorral", "idleJsRaw"),
      idleHeapRatio: ratio(f, "idleHeapCorral", "idleHeapRaw"),
      idleHandshakesRatio: ratio(f, "idleHandshakesCorral", "idleHandshakesRaw"),
      idleHandshakeCpuRatio: ratio(f, "idleHandshakeCpuUsCorral", "idleHandshakeCpuUsRaw"),
      pushCpuRatio: ratio(f, "pushCpuCorral", "pushCpuRaw"),
      pushLiveCpuRatio: ratio(f, "pushLiveCpuCorral", "pushCpuRaw"),
      pushHibCpuRatio: ratio(f, "pushCpuCorral", "pushLiveCpuCorral"),
      pushHibRssRatio: ratio(f, "pushRssCorral", "pushLiveRssCorral"),
      pushHibJsRatio: ratio(f, "pushJsCorral", "pushLiveJsCorral"),
      pushHibLateP99DiffMs:
        f.pushLateP99MsCorral !== undefined && f.pushLiveLateP99MsCorral !== undefined ? f.pushLateP99MsCorral - f.pushLiveLateP99MsCorral : undefined,
      appEachRatio: ratio(f, "appEachMsCorral", "appEachMsRaw"),
      appGroupRatio: ratio(f, "appGroupMsCorral", "appGroupMsRaw"),
      largeRssRatio: ratio(f, "largeRssCorral", "largeRssRaw"),
      largeJsRatio: ratio(f, "largeJsCorral", "largeJsRaw"),
      largeHandshakesRatio: ratio(f, "largeHandshakesCorral", "largeHandshakesRaw"),
      hibOverLiveRss: ratio(f, "stateHibRss", "stateLiveRss"),
      hibOverLiveJs: ratio(f, "stateHibJs", "stateLiveJs"),
    };
    // What the state costs above an idle corral connection of the same round, live and hibernated.
    for (const m of /** @type {const} */ (["Rss", "Js"])) {
      const idle = f[`idle${m}Corral`];
      const live = f[`stateLive${m}`];
      const hib = f[`stateHib${m}`];
      if (idle === undefined) continue;
      if (live !== undefined) out[`stateLiveCost${m}`] = live - idle;
      if (hib !== undefined) out[`stateHibCost${m}`] = hib - idle;
      if (live !== undefined && hib !== undefined && live - idle > 0) out[`hibStateRatio${m}`] = (hib - idle) / (live - idle);
    }
    if (f.stateSerialized !== undefined && f.idleRssRaw !== undefined) {
      out.hibBudgetRss = f.idleRssRaw + f.stateSerialized;
      out.hibOverBudgetRss = f.stateHibRss !== undefined ? f.stateHibRss / out.hibBudgetRss : undefined;
    }
    if (f.stateSerialized !== undefined && f.idleJsRaw !== undefined) {
      out.hibBudgetJs = f.idleJsRaw + f.stateSerialized;
      out.hibOverBudgetJs = f.stateHibJs !== undefined ? f.stateHibJs / out.hibBudgetJs : undefined;
    }
    /** @type {Record<string, number>} */
    const defined = {};
    for (const [k, v] of Object.entries(out)) if (v !== undefined && Number.isFinite(v)) defined[k] = v;
    return defined;
  },
  comparisons: [
    { section: "1. Echo", label: "throughput", a: "echoRateCorral", b: "echoRateRaw", ratio: "echoRateRatio" },
    { section: "1. Echo", label: "server CPU per message", a: "echoCpuUsCorral", b: "echoCpuUsRaw", ratio: "echoCpuRatio" },
    { section: "1. Echo", label: "latency p99", a: "echoP99MsCorral", b: "echoP99MsRaw", ratio: "echoP99Ratio" },
    { section: "1. Echo", label: "latency p50", a: "echoP50MsCorral", b: "echoP50MsRaw", ratio: "echoP50Ratio" },
    { section: "2. Idle", label: "RSS per connection", a: "idleRssCorral", b: "idleRssRaw", ratio: "idleRssRatio" },
    { section: "2. Idle", label: "heapUsed + external per connection", a: "idleJsCorral", b: "idleJsRaw", ratio: "idleJsRatio" },
    { section: "2. Idle", label: "heapUsed per connection", a: "idleHeapCorral", b: "idleHeapRaw", ratio: "idleHeapRatio" },
    { section: "2. Idle", label: "external per connection", a: "idleExternalCorral", b: "idleExternalRaw" },
    { section: "2. Idle", label: "handshakes/s", a: "idleHandshakesCorral", b: "idleHandshakesRaw", ratio: "idleHandshakesRatio" },
    { section: "2. Idle", label: "server CPU per handshake", a: "idleHandshakeCpuUsCorral", b: "idleHandshakeCpuUsRaw", ratio: "idleHandshakeCpuRatio" },
    { section: "2. Idle (--large, 50 k)", label: "RSS per connection", a: "largeRssCorral", b: "largeRssRaw", ratio: "largeRssRatio" },
    { section: "2. Idle (--large, 50 k)", label: "heapUsed + external per connection", a: "largeJsCorral", b: "largeJsRaw", ratio: "largeJsRatio" },
    { section: "2. Idle (--large, 50 k)", label: "handshakes/s", a: "largeHandshakesCorral", b: "largeHandshakesRaw", ratio: "largeHandshakesRatio" },
    { section: "3. Hibernated idle (~2 KB state)", label: "RSS per connection, hibernated vs raw idle + state bytes", a: "stateHibRss", b: "hibBudgetRss", ratio: "hibOverBudgetRss" },
    { section: "3. Hibernated idle (~2 KB state)", label: "heapUsed + external, hibernated vs raw idle + state bytes", a: "stateHibJs", b: "hibBudgetJs", ratio: "hibOverBudgetJs" },
    { section: "3. Hibernated idle (~2 KB state)", label: "the state's RSS above corral idle, hibernated vs live", a: "stateHibCostRss", b: "stateLiveCostRss", ratio: "hibStateRatioRss" },
    { section: "3. Hibernated idle (~2 KB state)", label: "the state's heap+external above corral idle, hibernated vs live", a: "stateHibCostJs", b: "stateLiveCostJs", ratio: "hibStateRatioJs" },
    { section: "3. Hibernated idle (~2 KB state)", label: "RSS per connection, hibernated vs corral live", a: "stateHibRss", b: "stateLiveRss", ratio: "hibOverLiveRss" },
    { section: "3. Hibernated idle (~2 KB state)", label: "heapUsed + external, hibernated vs corral live", a: "stateHibJs", b: "stateLiveJs", ratio: "hibOverLiveJs" },
    { section: "3. Hibernated idle (~2 KB state)", label: "state size (v8.serialize)", a: "stateSerialized", b: null },
    { section: "4. Timer push", label: "server CPU (cores)", a: "pushCpuCorral", b: "pushCpuRaw", ratio: "pushCpuRatio" },
    { section: "4. Timer push", label: "lateness p99", a: "pushLateP99MsCorral", b: "pushLateP99MsRaw" },
    { section: "4. Timer push", label: "lateness p50", a: "pushLateP50MsCorral", b: "pushLateP50MsRaw" },
    { section: "4. Timer push", label: "server CPU, corral without hibernate", a: "pushLiveCpuCorral", b: "pushCpuRaw", ratio: "pushLiveCpuRatio" },
    { section: "4. Timer push", label: "lateness p99, corral without hibernate", a: "pushLiveLateP99MsCorral", b: null },
    { section: "4. Timer push", label: "RSS at the end", a: "pushRssCorral", b: "pushRssRaw" },
    { section: "4. Timer push", label: "heapUsed + external per connection", a: "pushJsCorral", b: "pushJsRaw" },
    { section: "4. Timer push, corral hibernating vs not", label: "server CPU (cores)", a: "pushCpuCorral", b: "pushLiveCpuCorral", ratio: "pushHibCpuRatio" },
    { section: "4. Timer push, corral hibernating vs not", label: "RSS at the end", a: "pushRssCorral", b: "pushLiveRssCorral", ratio: "pushHibRssRatio" },
    { section: "4. Timer push, corral hibernating vs not", label: "heapUsed + external per connection", a: "pushJsCorral", b: "pushLiveJsCorral", ratio: "pushHibJsRatio" },
    { section: "4. Timer push, corral hibernating vs not", label: "lateness p99", a: "pushLateP99MsCorral", b: "pushLiveLateP99MsCorral" },
    { section: "5. App → pid", label: "send to each pid: until the last client has it", a: "appEachMsCorral", b: "appEachMsRaw", ratio: "appEachRatio" },
    { section: "5. App → pid", label: "broadcast to the group: until the last client has it", a: "appGroupMsCorral", b: "appGroupMsRaw", ratio: "appGroupRatio" },
    { section: "Load generator check", label: "echo: server CPU (cores)", a: "echoServerCoresCorral", b: "echoServerCoresRaw" },
    { section: "Load generator check", label: "echo: generator CPU (cores)", a: "echoGenCoresCorral", b: "echoGenCoresRaw" },
    { section: "Load generator check", label: "handshakes: server CPU (cores)", a: "idleHandshakeServerCoresCorral", b: "idleHandshakeServerCoresRaw" },
    { section: "Load generator check", label: "handshakes: generator CPU (cores)", a: "idleHandshakeGenCoresCorral", b: "idleHandshakeGenCoresRaw" },
    { section: "Load generator check", label: "push: server CPU (cores)", a: "pushCpuCorral", b: "pushCpuRaw" },
    { section: "Load generator check", label: "push: generator CPU (cores)", a: "pushGenCoresCorral", b: "pushGenCoresRaw" },
  ],
  detailLines: (d) => {
    /** @param {string} m @param {(x: any) => number} pick */
    const med = (m, pick) => (d[m]?.length ? median(d[m].map(pick)) : NaN);
    const f2 = (/** @type {number} */ v) => (Number.isFinite(v) ? v.toFixed(2) : "—");
    const n0 = (/** @type {number} */ v) => (Number.isFinite(v) ? Math.round(v).toLocaleString("en-US") : "—");
    const lines = [];
    for (const side of ["corral", "raw"]) {
      const e = `echo-${side}`;
      if (d[e]?.length) {
        lines.push(
          `echo, ${side}: server ${f2(med(e, (x) => x.serverCores))} cores (event loop ${f2(med(e, (x) => x.serverElu))} busy), ` +
            `generator ${f2(med(e, (x) => x.genCores))} cores (busiest worker's event loop ${f2(med(e, (x) => x.genEluMax))} busy); ` +
            `max latency ${f2(med(e, (x) => x.maxLatencyMs))} ms.`,
        );
      }
    }
    for (const side of ["corral", "raw"]) {
      const m = `idle-${side}`;
      if (d[m]?.length) {
        lines.push(
          `idle, ${side}: per connection ${n0(med(m, (x) => x.perConn.rss))} B RSS, ${n0(med(m, (x) => x.perConn.heapUsed))} B heapUsed, ` +
            `${n0(med(m, (x) => x.perConn.external))} B external (of which arrayBuffers ${n0(med(m, (x) => x.perConn.arrayBuffers))} B); ` +
            `app → pid: the send loop itself took ${f2(med(m, (x) => x.appToPid?.each.loopMs))} ms (each) / ${f2(med(m, (x) => x.appToPid?.group.loopMs))} ms (group).`,
        );
      }
    }
    for (const side of ["corral", "raw"]) {
      const m = `push-${side}`;
      if (d[m]?.length) {
        lines.push(
          `push, ${side}: ${n0(med(m, (x) => x.pushesPerSecond))} pushes/s; server event loop ${f2(med(m, (x) => x.serverElu))} busy, ` +
            `its delay (10 ms sampling) p99 ${f2(med(m, (x) => x.serverEventLoopDelayMs?.p99 ?? NaN))} ms, max ${f2(med(m, (x) => x.serverEventLoopDelayMs?.max ?? NaN))} ms; ` +
            `lateness p90 ${f2(med(m, (x) => x.lateP90Ms))} ms, p99.9 ${f2(med(m, (x) => x.lateP999Ms))} ms, ` +
            `${f2(med(m, (x) => x.lateOver50 * 100))} % of pushes more than 50 ms late; ` +
            `lateness max ${f2(med(m, (x) => x.lateMaxMs))} ms, min ${f2(med(m, (x) => x.lateMinMs))} ms (negative: a push arrived early relative to its predecessor's arrival).`,
        );
      }
    }
    return lines;
  },
};
