// Erlang's observer (and Phoenix LiveDashboard): a live page of the node's processes, sockets and counts, pushed over corral's own WebSocket.
import { readFileSync } from "node:fs";
import { monitorEventLoopDelay, type IntervalHistogram } from "node:perf_hooks";
import { inspect } from "node:util";
import type { Req } from "../behaviors/req.js";
import { reply, upgrade, type CallResult, type InitResult, type WebSocketHandler } from "../behaviors/websocket.js";
import { text, type InFrame } from "../behaviors/frames.js";
import { clusterInfo } from "../cluster/cluster.js";
import { badarg, describe } from "../runtime/errors.js";
import { members, whichGroups } from "../runtime/groups.js";
import { processInfo } from "../runtime/info.js";
import { runtimeLogger } from "../runtime/log.js";
import { nodeName } from "../runtime/node.js";
import { livePids, Pid } from "../runtime/pid.js";
import { self, send, type Process } from "../runtime/process.js";
import { exit } from "../runtime/signals.js";
import { stats } from "../runtime/stats.js";
import { sendAfter, timerCount } from "../runtime/timers.js";
import { flag, knownKeys } from "../runtime/validate.js";
import { runningListeners } from "../server/listener.js";

export interface ObserverOptions {
  /**
   * Who may open the page and its socket. Default: loopback peers only (127.0.0.0/8, ::1).
   * Anyone else gets 403. Put real authentication in front of it (docs/observing.md).
   */
  readonly allow?: (req: Req) => boolean;
  /** Let the page kill a process and send it a message; every action is logged. Default false. */
  readonly actions?: boolean;
}

/** The state of one open observer page's connection. */
export interface ObserverState {
  readonly peer: string;
  readonly actions: boolean;
  query: Query;
  /** The pids the last table page showed: kept as candidates, so a sorted top holds between samples. */
  shown: Pid[];
}

interface Query {
  sort: SortKey;
  desc: boolean;
  filter: string;
  offset: number;
  limit: number;
}

type SortKey = "pid" | "name" | "behaviour" | "status" | "mailbox" | "handled";
const SORT_KEYS: ReadonlySet<string> = new Set<SortKey>(["pid", "name", "behaviour", "status", "mailbox", "handled"]);

/** At most this many processes are read per update: all of them on a smaller node, a rolling window of them on a larger one. */
const SAMPLE_SIZE = 10_000;
/** The most table rows one update carries. */
const MAX_ROWS = 100;
/** Connections listed per listener, and groups listed. */
const MAX_LISTED = 100;
/** Plot points kept: one a second, five minutes. */
const HISTORY = 300;
const TICK_MS = 1000;
const TICK = Symbol("observer tick");

/**
 * A route target serving a live page of this node (the page, its script and style, and a
 * WebSocket on the same path pushing an update a second). Mount it on a path of its own:
 * `["/observer", observer()]`. Costs nothing until a page is open, but a per-second count.
 */
export function observer(options?: ObserverOptions): WebSocketHandler<ObserverState, unknown, typeof TICK> {
  if (options !== undefined && (typeof options !== "object" || options === null)) throw badarg(`observer: options must be an object, got ${describe(options)}`);
  if (options !== undefined) knownKeys(options, KNOWN_OPTIONS, "observer");
  const allow = options?.allow ?? isLoopback;
  if (typeof allow !== "function") throw badarg(`observer: allow must be a function (req) => boolean, got ${describe(allow)}`);
  const actions = flag(options?.actions, "observer: actions must be a boolean", false);
  startHistory();
  return {
    init: (req) => init(req, allow, actions),
    websocketInit: (state) => {
      sendAfter(TICK_MS, self(), TICK);
      return reply(text(JSON.stringify(update(state))), state);
    },
    websocketHandle: (frame, state) => handle(frame, state),
    websocketInfo: (info, state) => {
      if (info !== TICK) return { type: "ok", state };
      sendAfter(TICK_MS, self(), TICK);
      return reply(text(JSON.stringify(update(state))), state);
    },
  };
}

const KNOWN_OPTIONS = new Set(["allow", "actions"]);

/** 127.0.0.0/8 and ::1, also as IPv4-mapped IPv6. */
function isLoopback(req: Req): boolean {
  const a = req.peer.address;
  return a === "::1" || a.startsWith("127.") || a.startsWith("::ffff:127.");
}

/* ------------------------------------------------------------------ HTTP: the page and its files */

const ASSET_DIR = new URL("../../priv/observer/", import.meta.url);
const ASSETS: Readonly<Record<string, string>> = {
  "": "text/html; charset=utf-8",
  "observer.js": "text/javascript; charset=utf-8",
  "observer.css": "text/css; charset=utf-8",
};
const loaded = new Map<string, Buffer>();

/** Scripts, styles and the socket from the page's own origin only; no inline code, no framing. */
const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

function asset(name: string): Buffer {
  let body = loaded.get(name);
  if (body === undefined) {
    body = readFileSync(new URL(name === "" ? "index.html" : name, ASSET_DIR));
    loaded.set(name, body);
  }
  return body;
}

function init(req: Req, allow: (req: Req) => boolean, actions: boolean): InitResult<ObserverState> {
  const refuse = (status: number, why: string): InitResult<ObserverState> => ({
    type: "ok",
    req: req.reply(status, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" }, why),
    state: { peer: "", actions, query: defaultQuery(), shown: [] },
  });
  let allowed = false;
  try {
    allowed = allow(req) === true;
  } catch (err) {
    runtimeLogger().warn({ err, peer: req.peer.address }, "observer: allow threw; refusing");
  }
  if (!allowed) return refuse(403, "forbidden\n");
  const state: ObserverState = { peer: `${req.peer.address}:${req.peer.port}`, actions, query: defaultQuery(), shown: [] };
  if (req.header("upgrade")?.toLowerCase() === "websocket") {
    // A page on another site may open a WebSocket to a loopback address too: only the observer's own page may.
    const origin = req.header("origin");
    if (origin !== undefined && !sameOrigin(origin, req.header("host"))) return refuse(403, "cross-origin WebSocket refused\n");
    return upgrade(req, state, { idleTimeout: 60_000, maxFrameSize: 4096 });
  }
  if (req.method !== "GET" && req.method !== "HEAD") {
    return { type: "ok", req: req.reply(405, { allow: "GET, HEAD" }), state };
  }
  const name = new URLSearchParams(req.qs).get("asset") ?? "";
  const type = Object.hasOwn(ASSETS, name) ? ASSETS[name] : undefined;
  if (type === undefined) return refuse(404, "not found\n");
  const headers: Record<string, string> = { "content-type": type, "cache-control": "no-cache", "x-content-type-options": "nosniff" };
  if (name === "") {
    headers["content-security-policy"] = PAGE_CSP;
    headers["referrer-policy"] = "no-referrer";
  }
  return { type: "ok", req: req.reply(200, headers, req.method === "HEAD" ? undefined : asset(name)), state };
}

function sameOrigin(origin: string, host: string | undefined): boolean {
  try {
    return host !== undefined && new URL(origin).host === host.toLowerCase();
  } catch {
    return false;
  }
}

/* ------------------------------------------------------------------ the socket: queries, details, actions */

function defaultQuery(): Query {
  return { sort: "pid", desc: false, filter: "", offset: 0, limit: 50 };
}

function handle(frame: InFrame, state: ObserverState): CallResult<ObserverState> {
  if (frame.type !== "text") return { type: "ok", state };
  let msg: unknown;
  try {
    msg = JSON.parse(frame.data);
  } catch {
    return reply(text(JSON.stringify({ type: "error", error: "not JSON" })), state);
  }
  if (typeof msg !== "object" || msg === null) return { type: "ok", state };
  const m = msg as Record<string, unknown>;
  switch (m["type"]) {
    case "query":
      state.query = readQuery(m);
      return reply(text(JSON.stringify(update(state))), state);
    case "detail":
      return reply(text(JSON.stringify({ type: "detail", detail: detail(m["pid"]) })), state);
    case "kill":
    case "send":
      return reply(text(JSON.stringify(act(m, state))), state);
    default:
      return reply(text(JSON.stringify({ type: "error", error: "unknown request" })), state);
  }
}

function readQuery(m: Record<string, unknown>): Query {
  const q = defaultQuery();
  if (typeof m["sort"] === "string" && SORT_KEYS.has(m["sort"])) q.sort = m["sort"] as SortKey;
  q.desc = m["desc"] === true;
  if (typeof m["filter"] === "string") q.filter = m["filter"].slice(0, 200).toLowerCase();
  if (Number.isSafeInteger(m["offset"])) q.offset = Math.max(0, m["offset"] as number);
  if (Number.isSafeInteger(m["limit"])) q.limit = Math.min(MAX_ROWS, Math.max(1, m["limit"] as number));
  return q;
}

/** A local pid from the page's text, or undefined. */
function localPid(text: unknown): Pid | undefined {
  if (typeof text !== "string") return undefined;
  try {
    const pid = Pid.parse(text);
    return pid.proc === null ? undefined : pid;
  } catch {
    return undefined;
  }
}

function act(m: Record<string, unknown>, state: ObserverState): { type: "action"; ok: boolean; error?: string } {
  if (!state.actions) return { type: "action", ok: false, error: "actions are off (observer({ actions: true }) turns them on)" };
  const pid = localPid(m["pid"]);
  if (pid === undefined) return { type: "action", ok: false, error: "no such process" };
  if (m["type"] === "kill") {
    runtimeLogger().warn({ pid: String(pid), by: state.peer }, "observer: kill");
    exit(pid, "kill");
    return { type: "action", ok: true };
  }
  let message: unknown;
  try {
    message = JSON.parse(typeof m["message"] === "string" ? m["message"] : "");
  } catch {
    return { type: "action", ok: false, error: "the message must be JSON" };
  }
  runtimeLogger().warn({ pid: String(pid), by: state.peer, message }, "observer: send");
  send(pid, message);
  return { type: "action", ok: true };
}

/* ------------------------------------------------------------------ what one update carries */

interface Row {
  pid: string;
  name: string | null;
  behaviour: string;
  status: string;
  mailbox: number;
  handled: number;
  memory: number;
  hibernated: boolean;
  links: number;
  monitors: number;
  groups: string[];
  machine: string | null;
}

function update(state: ObserverState): unknown {
  const listeners = [];
  let connections = 0;
  for (const l of runningListeners()) {
    connections += l.connections;
    const ports = l.ports.all();
    const now = performance.now();
    listeners.push({
      name: l.name,
      host: l.host,
      port: l.port,
      connections: l.connections,
      conns: ports.slice(0, MAX_LISTED).map((port) => {
        const socket = port._socket;
        return {
          pid: port.pid === null ? null : String(port.pid),
          transport: "encrypted" in socket ? "wss" : "ws",
          peer: `${socket.remoteAddress ?? "?"}:${socket.remotePort ?? "?"}`,
          buffered: port.bufferedAmount,
          idleMs: idleFor(port, socket.bytesRead, now),
          throttled: port.throttled,
        };
      }),
    });
  }
  const groupNames = whichGroups();
  const cluster = clusterInfo();
  return {
    type: "update",
    node: nodeName(),
    actions: state.actions,
    summary: {
      processes: livePids.size,
      connections,
      timers: timerCount(),
      groups: groupNames.length,
      crashes: stats.crashes,
      restarts: stats.supervisorRestarts,
      sessionsOpen: stats.sessionsOpen,
      sessionsAway: stats.sessionsAway,
      framesIn: stats.framesIn,
      framesOut: stats.framesOut,
    },
    series: history,
    table: table(state),
    listeners,
    groups: groupNames.slice(0, MAX_LISTED).map((g) => ({ name: g, members: members(g).length })),
    nodes: cluster === undefined ? [{ name: nodeName(), self: true, up: true }] : [{ name: cluster.node, self: true, up: cluster.connected }, ...cluster.nodes.map((n) => ({ name: n, self: false, up: true }))],
  };
}

/** When each listed socket last read a byte, as this observer saw it (so the first sight counts as now). */
const lastRead = new WeakMap<object, { bytes: number; at: number }>();

function idleFor(port: object, bytes: number, now: number): number {
  const seen = lastRead.get(port);
  if (seen === undefined || seen.bytes !== bytes) {
    lastRead.set(port, { bytes, at: now });
    return 0;
  }
  return Math.round(now - seen.at);
}

/* ------------------------------------------------------------------ the process table, sampled */

let window: Pid[] = [];
let windowAt = -Infinity;
/** Where the rolling window goes on from, on a node with more than SAMPLE_SIZE processes: a Map iterator sees additions and skips deletions. */
let cursor: Iterator<Pid> | null = null;

/** The processes read this second: all of them up to SAMPLE_SIZE, else the next SAMPLE_SIZE from the cursor, shared by every open page. */
function sampleWindow(): Pid[] {
  if (livePids.size <= SAMPLE_SIZE) {
    cursor = null;
    return Array.from(livePids.values());
  }
  const now = performance.now();
  // Pages updating within the same half second share one window, so the cursor moves once a second however many are open.
  if (now - windowAt < TICK_MS / 2 && window.length === SAMPLE_SIZE) return window;
  windowAt = now;
  window = [];
  cursor ??= livePids.values();
  while (window.length < SAMPLE_SIZE) {
    const next = cursor.next();
    if (next.done === true) cursor = livePids.values();
    else window.push(next.value);
  }
  return window;
}

function table(state: ObserverState): unknown {
  const q = state.query;
  const exact = livePids.size <= SAMPLE_SIZE;
  let candidates = sampleWindow();
  if (!exact && state.shown.length > 0) {
    const seen = new Set(candidates);
    candidates = candidates.concat(state.shown.filter((pid) => pid.proc !== null && !seen.has(pid)));
  }
  const matched = q.filter === "" ? candidates.filter((pid) => pid.proc !== null) : candidates.filter((pid) => matches(pid, q.filter));
  const key = sortKey(q.sort);
  const keys = new Map<Pid, number | string>();
  for (const pid of matched) keys.set(pid, key(pid.proc!, pid));
  const dir = q.desc ? -1 : 1;
  matched.sort((a, b) => {
    const x = keys.get(a)!;
    const y = keys.get(b)!;
    return x < y ? -dir : x > y ? dir : a.id - b.id;
  });
  const page = matched.slice(q.offset, q.offset + q.limit);
  state.shown = page;
  return { total: livePids.size, sampled: candidates.length, exact, matched: matched.length, offset: q.offset, limit: q.limit, sort: q.sort, desc: q.desc, filter: q.filter, rows: page.map(row) };
}

function matches(pid: Pid, filter: string): boolean {
  const p = pid.proc;
  if (p === null) return false;
  return String(pid).includes(filter) || (p.name?.toLowerCase().includes(filter) ?? false) || p.loop.name.toLowerCase().includes(filter);
}

function sortKey(sort: SortKey): (p: Process, pid: Pid) => number | string {
  switch (sort) {
    case "pid":
      return (_p, pid) => pid.id;
    case "name":
      return (p) => p.name ?? "\uffff";
    case "behaviour":
      return (p) => p.loop.name;
    case "status":
      return (_p, pid) => processInfo(pid)?.status ?? "";
    case "mailbox":
      return (p) => p.queueLength;
    case "handled":
      return (p) => p.handled;
  }
}

function row(pid: Pid): Row {
  const info = processInfo(pid);
  const p = pid.proc;
  if (info === undefined || p === null) {
    return { pid: String(pid), name: null, behaviour: "", status: "exited", mailbox: 0, handled: 0, memory: 0, hibernated: false, links: 0, monitors: 0, groups: [], machine: null };
  }
  return {
    pid: String(pid),
    name: info.registeredName ?? null,
    behaviour: info.behaviour,
    status: info.status,
    mailbox: info.messageQueueLen,
    handled: info.messagesHandled,
    memory: estimateBytes(p),
    hibernated: info.hibernated,
    links: info.links.length,
    monitors: info.monitors.length + info.monitoredBy.length,
    groups: info.groups,
    machine: machineState(p.state),
  };
}

function detail(text: unknown): unknown {
  const pid = localPid(text);
  if (pid === undefined) return { pid: String(text), alive: false };
  const info = processInfo(pid)!;
  const p = pid.proc!;
  return {
    pid: String(pid),
    alive: true,
    name: info.registeredName ?? null,
    behaviour: info.behaviour,
    status: info.status,
    mailbox: info.messageQueueLen,
    handled: info.messagesHandled,
    memory: estimateBytes(p),
    hibernated: info.hibernated,
    trapExit: info.trapExit,
    links: info.links.map(String),
    monitors: info.monitors.map(String),
    monitoredBy: info.monitoredBy.map(String),
    groups: info.groups,
    machine: machineState(p.state),
    state: inspect(p.state, { depth: 3, breakLength: 100, maxArrayLength: 20, maxStringLength: 200 }).slice(0, 4000),
    queue: p.mailbox.slice(p.head, p.head + 10).map((m) => inspect(m, { depth: 2, breakLength: Infinity, maxStringLength: 100 }).slice(0, 300)),
  };
}

/** A machine handler's state value (xstate's `snapshot.value`), live or hibernated; null for other processes. */
function machineState(state: unknown): string | null {
  if (typeof state !== "object" || state === null) return null;
  const actor = (state as { actor?: { getSnapshot?: () => { value?: unknown } } }).actor;
  const value = typeof actor?.getSnapshot === "function" ? actor.getSnapshot().value : undefined;
  if (value === undefined) return null;
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** Nodes of a state counted at most: the estimate stays cheap on any state. */
const ESTIMATE_BUDGET = 500;

/**
 * A rough size of a process: a fixed part for its record, plus its state (walked to at most
 * ESTIMATE_BUDGET values: strings by length, buffers by bytes, objects by keys) and its mailbox.
 */
function estimateBytes(p: Process): number {
  let budget = ESTIMATE_BUDGET;
  const seen = new Set<object>();
  const size = (v: unknown): number => {
    if (budget-- <= 0) return 0;
    switch (typeof v) {
      case "string":
        return 16 + v.length;
      case "number":
      case "boolean":
      case "undefined":
      case "bigint":
      case "symbol":
        return 8;
      case "function":
        return 0;
    }
    if (v === null || seen.has(v as object)) return 8;
    seen.add(v as object);
    if (ArrayBuffer.isView(v)) return 64 + v.byteLength;
    if (v instanceof ArrayBuffer) return 32 + v.byteLength;
    // Sockets, ports and other host objects are shared, not the process's: count a reference.
    if (v instanceof Pid || (typeof (v as { on?: unknown }).on === "function" && typeof (v as { emit?: unknown }).emit === "function")) return 8;
    let n = 24;
    try {
      const values = v instanceof Map ? [...v.keys(), ...v.values()] : v instanceof Set ? [...v] : Object.values(v as object);
      for (const x of values) {
        n += 8 + size(x);
        if (budget <= 0) break;
      }
    } catch {
      // A getter that throws: count what was read.
    }
    return n;
  };
  return 200 + size(p.state) + 48 * p.queueLength;
}

/* ------------------------------------------------------------------ plots: one point a second, kept while any observer route exists */

interface Series {
  t: number[];
  processes: number[];
  connections: number[];
  messages: number[];
  delayMs: number[];
}

const history: Series = { t: [], processes: [], connections: [], messages: [], delayMs: [] };
let historyTimer: NodeJS.Timeout | undefined;
let delay: IntervalHistogram | undefined;
let lastMessages = 0;
let lastAt = 0;

/** Counts only, never a walk of the processes: a few numbers a second. */
function startHistory(): void {
  if (historyTimer !== undefined) return;
  delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  lastMessages = stats.messagesHandled;
  lastAt = performance.now();
  historyTimer = setInterval(samplePoint, TICK_MS);
  historyTimer.unref();
}

function samplePoint(): void {
  const now = performance.now();
  let connections = 0;
  for (const l of runningListeners()) connections += l.connections;
  push(history.t, Date.now());
  push(history.processes, livePids.size);
  push(history.connections, connections);
  push(history.messages, Math.round(((stats.messagesHandled - lastMessages) * 1000) / (now - lastAt)));
  // The worst delay of the second (p99), in ms: how long a ready callback waited for the loop.
  push(history.delayMs, Math.round((delay!.percentile(99) / 1e6) * 10) / 10);
  delay!.reset();
  lastMessages = stats.messagesHandled;
  lastAt = now;
}

function push(series: number[], value: number): void {
  series.push(value);
  if (series.length > HISTORY) series.shift();
}
