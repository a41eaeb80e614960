// prometheus.erl's role for a BEAM node (and LiveDashboard's metrics): the node's counters in Prometheus's text format, through prom-client.
import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";
import type { HttpHandler } from "../behaviors/request.js";
import type { Req } from "../behaviors/req.js";
import { clusterInfo } from "../cluster/cluster.js";
import { badarg, describe } from "../runtime/errors.js";
import { livePids } from "../runtime/pid.js";
import { closeCodes, handshakes, stats, terminateReasons } from "../runtime/stats.js";
import { timerCount } from "../runtime/timers.js";
import { knownKeys } from "../runtime/validate.js";
import { runningListeners } from "../server/listener.js";

export interface MetricsOptions {
  /**
   * The prom-client registry to register corral's metrics in, and to answer from: give your
   * own to serve your metrics on the same route. Default: one registry of corral's, with
   * prom-client's default Node metrics.
   */
  readonly registry?: Registry;
}

/** What the metrics route's init leaves as its state: the status it answered. */
export interface MetricsState {
  readonly status: number;
}

/** Registries that have corral's metrics already: a second metrics() route on one reuses them. */
const filled = new WeakSet<Registry>();
let ownRegistry: Registry | undefined;

/**
 * A route target answering Prometheus's text format (GET and HEAD): prom-client's default
 * Node metrics and corral's (docs/observing.md lists them). Counting costs the hot path one
 * integer increment; prom-client reads the counts only when Prometheus scrapes.
 */
export function metrics(options?: MetricsOptions): HttpHandler<MetricsState, undefined> {
  if (options !== undefined && (typeof options !== "object" || options === null)) throw badarg(`metrics: options must be an object, got ${describe(options)}`);
  if (options !== undefined) knownKeys(options, KNOWN_OPTIONS, "metrics");
  const given = options?.registry;
  if (given !== undefined && !(given instanceof Registry)) throw badarg(`metrics: registry must be a prom-client Registry, got ${describe(given)}`);
  const registry = given ?? (ownRegistry ??= new Registry());
  if (!filled.has(registry)) {
    filled.add(registry);
    // A registry that has Node's metrics already (the app called collectDefaultMetrics) keeps its own.
    if (registry.getSingleMetric("process_cpu_user_seconds_total") === undefined) collectDefaultMetrics({ register: registry });
    registerCorral(registry);
  }
  return { init: (req) => scrape(req, registry) };
}

const KNOWN_OPTIONS = new Set(["registry"]);

async function scrape(req: Req, registry: Registry): Promise<{ type: "ok"; req: Req; state: MetricsState }> {
  if (req.method !== "GET" && req.method !== "HEAD") {
    return { type: "ok", req: req.reply(405, { allow: "GET, HEAD" }), state: { status: 405 } };
  }
  const body = await registry.metrics();
  return { type: "ok", req: req.reply(200, { "content-type": registry.contentType, "cache-control": "no-store" }, body), state: { status: 200 } };
}

/** One walk of the processes serves every gauge of a scrape: prom-client runs all collects in one synchronous pass. */
let walked: { hibernated: number; queued: number } | null = null;

function processTotals(): { hibernated: number; queued: number } {
  if (walked !== null) return walked;
  let hibernated = 0;
  let queued = 0;
  for (const pid of livePids.values()) {
    const p = pid.proc;
    if (p === null) continue;
    if (p.hibernated) hibernated++;
    queued += p.queueLength;
  }
  walked = { hibernated, queued };
  setImmediate(forgetWalk);
  return walked;
}

function forgetWalk(): void {
  walked = null;
}

/** A counter whose value is read from a corral count at scrape time. */
function total(registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/** A counter labelled by one label, read from one of corral's labelled counts. */
function totals<K>(registry: Registry, name: string, help: string, label: string, counts: Map<K, number>): void {
  new Counter({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    collect() {
      this.reset();
      for (const [key, n] of counts) this.inc({ [label]: String(key) }, n);
    },
  });
}

function gauge(registry: Registry, name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}

/** Bytes read and written by WebSocket sockets: the closed ones' totals plus the open ones' counts now. */
function socketBytes(which: "bytesRead" | "bytesWritten"): number {
  let n = which === "bytesRead" ? stats.closedBytesIn : stats.closedBytesOut;
  for (const l of runningListeners()) for (const port of l.ports.all()) n += port._socket[which];
  return n;
}

function registerCorral(r: Registry): void {
  gauge(r, "corral_processes", "Live local processes.", () => livePids.size);
  gauge(r, "corral_hibernated_processes", "Local processes whose state is hibernated.", () => processTotals().hibernated);
  gauge(r, "corral_mailbox_messages", "Messages waiting in every local mailbox together.", () => processTotals().queued);
  gauge(r, "corral_timers", "Timers armed.", timerCount);
  total(r, "corral_process_crashes_total", "Processes that crashed (a callback threw or its promise rejected).", () => stats.crashes);
  total(r, "corral_hibernations_total", "Times a process's state was hibernated.", () => stats.hibernations);
  total(r, "corral_wakes_total", "Times a hibernated process woke.", () => stats.wakes);
  total(r, "corral_supervisor_restarts_total", "Children restarted by their supervisor.", () => stats.supervisorRestarts);

  new Gauge({
    name: "corral_websocket_connections",
    help: "Open WebSocket connections, by listener.",
    labelNames: ["listener"],
    registers: [r],
    collect() {
      this.reset();
      for (const l of runningListeners()) this.set({ listener: l.name }, l.connections);
    },
  });
  total(r, "corral_websocket_frames_received_total", "WebSocket frames received (data, ping and pong).", () => stats.framesIn);
  total(r, "corral_websocket_frames_sent_total", "WebSocket frames sent (data, ping and pong; close frames not included).", () => stats.framesOut);
  total(r, "corral_websocket_received_bytes_total", "Bytes read by WebSocket sockets, frame headers included.", () => socketBytes("bytesRead"));
  total(r, "corral_websocket_sent_bytes_total", "Bytes written by WebSocket sockets, frame headers included.", () => socketBytes("bytesWritten"));
  totals(r, "corral_websocket_handshakes_total", "WebSocket handshakes by outcome: upgraded, a refusal's status (426, 400, 403), stopping (the listener was stopping), failed (the socket died).", "outcome", handshakes);
  totals(r, "corral_websocket_closes_total", "WebSocket connections ended, by the close code sent or received (1005: an empty close; 1006: none).", "code", closeCodes);
  totals(r, "corral_connection_terminations_total", "WebSocket connections and sessions ended, by terminate reason.", "reason", terminateReasons);
  total(r, "corral_websocket_backpressure_closes_total", "Connections closed with 1008 because more waited to be written than maxBufferedAmount.", () => terminateReasons.get("error:backpressure") ?? 0);

  new Gauge({
    name: "corral_sessions",
    help: "Open sessions (bullet), by state: connected (a transport attached) or away (inside the resume window).",
    labelNames: ["state"],
    registers: [r],
    collect() {
      this.set({ state: "connected" }, stats.sessionsOpen - stats.sessionsAway);
      this.set({ state: "away" }, stats.sessionsAway);
    },
  });
  total(r, "corral_sessions_opened_total", "Sessions (bullet) opened.", () => stats.sessionsOpened);
  total(r, "corral_sessions_resumed_total", "Sessions whose client came back (a new WebSocket or event stream) after a drop.", () => stats.sessionsResumed);

  gauge(r, "corral_cluster_nodes", "Other nodes of the cluster that are up.", () => clusterInfo()?.nodes.length ?? 0);
  gauge(r, "corral_cluster_buffered_signals", "Signals for other nodes waiting while Redis is away or stalled.", () => clusterInfo()?.buffered ?? 0);
  total(r, "corral_cluster_signals_sent_total", "Signals (messages, links, monitors, exits) published to other nodes.", () => clusterInfo()?.sent ?? 0);
  total(r, "corral_cluster_signals_received_total", "Signals received from other nodes.", () => clusterInfo()?.received ?? 0);
  total(r, "corral_cluster_signals_dropped_total", "Signals for other nodes dropped (buffer full, node down or lost).", () => clusterInfo()?.dropped ?? 0);
}
