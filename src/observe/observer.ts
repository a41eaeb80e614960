// Erlang's observer (and Phoenix LiveDashboard): a live page of the node's processes, sockets and counts, pushed over corral's own WebSocket.
import { readFileSync } from "node:fs";
import { monitorEventLoopDelay, type IntervalHistogram } from "node:perf_hooks";
import { inspect } from "node:util";
import type { Req } from "../behaviors/req.js";
import { carriedSession } from "../behaviors/bullet.js";
import { nodeSessions, sessionOfProcess, type SessionInfo } from "../behaviors/session.js";
import { liveSupervisors, supervisorSnapshot, type RestartRecord } from "../behaviors/supervisor.js";
import { reply, upgrade, type CallResult, type InitResult, type WebSocketHandler } from "../behaviors/websocket.js";
import { text, type InFrame } from "../behaviors/frames.js";
import { clusterInfo } from "../cluster/cluster.js";
import { answer, call, type From } from "../runtime/call.js";
import { badarg, describe } from "../runtime/errors.js";
import { join, members, whichGroups } from "../runtime/groups.js";
import { processInfo } from "../runtime/info.js";
import { runtimeLogger } from "../runtime/log.js";
import { nodeName } from "../runtime/node.js";
import { livePids, Pid } from "../runtime/pid.js";
import { self, send, type Process } from "../runtime/process.js";
import { ok, type Result } from "../runtime/result.js";
import { exit } from "../runtime/signals.js";
import { spawn, type ProcessBehavior } from "../runtime/spawn.js";
import { stats } from "../runtime/stats.js";
import { nextTimers, processTimers, sendAfter, timerCount } from "../runtime/timers.js";
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
  /** The node the page looks at; another node's views come from its observer agent, through a call. */
  node: string;
  /** What the last table page of that other node showed, as pid strings (its agent reads them again). */
  shownThere: string[];
  /** A call to the other node's agent is on its way: the next tick waits for it instead of piling up. */
  asking: boolean;
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
/** The tree lists at most this many supervisors, and this many children of each (each keeps its own last restarts). */
const MAX_SUPERVISORS = 200;
const MAX_CHILDREN = 100;
/** Timers listed as the next due. */
const MAX_TIMERS = 10;
/** How long the page waits for another node's agent. */
const REMOTE_TIMEOUT_MS = 3000;
/** The group each node's observer agent joins: a page finds another node's agent among its members. */
const AGENT_GROUP = "corral:observer";

/** Another node's answer, or its failure, back in the page's connection process. */
class Answered {
  constructor(
    /** The node that answered: a view from a node the page has left since is dropped. */
    readonly node: string,
    readonly json: string,
    /** For a table page: the pids it showed, kept for the next ask. */
    readonly shown: string[] | undefined,
  ) {}
}

/**
 * A route target serving a live page of this node (the page, its script and style, and a
 * WebSocket on the same path pushing an update a second). Mount it on a path of its own:
 * `["/observer", observer()]`. Costs nothing until a page is open, but a per-second count.
 */
export function observer(options?: ObserverOptions): WebSocketHandler<ObserverState, unknown, typeof TICK | Answered> {
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
      if (info instanceof Answered) {
        if (info.shown !== undefined && info.node !== state.node) return { type: "ok", state };
        state.asking = false;
        if (info.shown !== undefined) state.shownThere = info.shown;
        return reply(text(info.json), state);
      }
      if (info !== TICK) return { type: "ok", state };
      sendAfter(TICK_MS, self(), TICK);
      return refresh(state);
    },
  };
}

/** The page's next update: this node's, at once; another node's, asked of its agent and pushed when it answers. */
function refresh(state: ObserverState): CallResult<ObserverState> {
  if (state.node === nodeName()) return reply(text(JSON.stringify(update(state))), state);
  if (!state.asking) askThere(state, { op: "view", query: state.query, shown: state.shownThere }, state.node);
  return { type: "ok", state };
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
    state: { peer: "", actions, query: defaultQuery(), shown: [], node: nodeName(), shownThere: [], asking: false },
  });
  let allowed = false;
  try {
    allowed = allow(req) === true;
  } catch (err) {
    runtimeLogger().warn({ err, peer: req.peer.address }, "observer: allow threw; refusing");
  }
  if (!allowed) return refuse(403, "forbidden\n");
  const state: ObserverState = { peer: `${req.peer.address}:${req.peer.port}`, actions, query: defaultQuery(), shown: [], node: nodeName(), shownThere: [], asking: false };
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
    case "query": {
      state.query = readQuery(m);
      const node = typeof m["node"] === "string" && m["node"] !== "" ? m["node"] : nodeName();
      if (node !== state.node) {
        state.node = node;
        state.shownThere = [];
        state.asking = false;
      }
      return refresh(state);
    }
    case "detail": {
      const node = pidNode(m["pid"]);
      if (node === undefined || node === nodeName()) return reply(text(JSON.stringify({ type: "detail", detail: detail(m["pid"]) })), state);
      askThere(state, { op: "detail", pid: m["pid"] }, node);
      return { type: "ok", state };
    }
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

/** A pid from the page's text, or undefined. */
function parsePid(text: unknown): Pid | undefined {
  if (typeof text !== "string") return undefined;
  try {
    return Pid.parse(text);
  } catch {
    return undefined;
  }
}

/** A live local pid from the page's text, or undefined. */
function localPid(text: unknown): Pid | undefined {
  const pid = parsePid(text);
  return pid?.proc === null ? undefined : pid;
}

/** The node a pid's text names, or undefined for what is not a pid. */
function pidNode(text: unknown): string | undefined {
  return parsePid(text)?.node;
}

/** An action's target: a live local process, or a pid on a node of the cluster that is up (exit and send cross nodes). */
function targetPid(text: unknown): Pid | undefined {
  const pid = parsePid(text);
  if (pid === undefined) return undefined;
  if (pid.node === nodeName()) return pid.proc === null ? undefined : pid;
  return clusterInfo()?.nodes.includes(pid.node) === true ? pid : undefined;
}

function act(m: Record<string, unknown>, state: ObserverState): { type: "action"; ok: boolean; error?: string } {
  if (!state.actions) return { type: "action", ok: false, error: "actions are off (observer({ actions: true }) turns them on)" };
  const pid = targetPid(m["pid"]);
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

/** This node's views for one page: the counts, plots, a table page, listeners, groups, supervisors and timers. */
interface NodeView {
  node: string;
  summary: Record<string, number>;
  series: Series;
  table: unknown;
  listeners: unknown[];
  groups: { name: string; members: number }[];
  supervisors: SupervisorNode[];
  /** This node's first sessions, with their resume state; the summary counts them all. */
  sessions: SessionView[];
  timers: { count: number; next: { inMs: number; dest: string; behaviour: string | null; kind: "timeout" | "message" }[] };
}

function update(state: ObserverState): unknown {
  const { view, shown } = nodeView(state.query, state.shown);
  state.shown = shown;
  return { type: "update", self: nodeName(), actions: state.actions, nodes: nodeList(), ...view };
}

function nodeView(query: Query, shown: Pid[]): { view: NodeView; shown: Pid[] } {
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
          session: port.pid === null ? null : sessionView(port.pid.proc, now),
        };
      }),
    });
  }
  const groupNames = whichGroups();
  const page = table(query, shown);
  const view: NodeView = {
    node: nodeName(),
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
    table: page.table,
    listeners,
    groups: groupNames.slice(0, MAX_LISTED).map((g) => ({ name: g, members: members(g).length })),
    sessions: sessionList(performance.now()),
    supervisors: supervisorTree(),
    timers: {
      count: timerCount(),
      next: nextTimers(MAX_TIMERS).map((t) => ({
        inMs: t.inMs,
        dest: String(t.dest),
        behaviour: typeof t.dest === "string" ? null : (t.dest.proc?.loop.name ?? null),
        kind: t.timeout ? "timeout" : "message",
      })),
    },
  };
  return { view, shown: page.shown };
}

/** The cluster's nodes as this node sees them, and which of them answer the page (run an observer agent). */
function nodeList(): { name: string; self: boolean; up: boolean; observer: boolean }[] {
  const cluster = clusterInfo();
  if (cluster === undefined) return [{ name: nodeName(), self: true, up: true, observer: true }];
  const agents = new Set(members(AGENT_GROUP).map((pid) => pid.node));
  return [{ name: cluster.node, self: true, up: cluster.connected, observer: true }, ...cluster.nodes.map((n) => ({ name: n, self: false, up: true, observer: agents.has(n) }))];
}

/* ------------------------------------------------------------------ other nodes: an agent per node, asked through the cluster */

type AgentRequest = { op: "view"; query: Query; shown: string[] } | { op: "detail"; pid: unknown };

/** Answers other nodes' pages with this node's views: Erlang's observer asks a remote node through rpc, this through a call. */
class ObserverAgent implements ProcessBehavior<null> {
  init(): null {
    return null;
  }

  handleInfo(_msg: unknown, s: null): Result<null> {
    return ok(s);
  }

  handleCall(request: unknown, _from: From, s: null): Result<null> {
    return answer(agentAnswer(request), s);
  }
}

const AGENT = new ObserverAgent();
let agent: Pid | undefined;

/** One agent per node, once it is in a cluster (checked each second); started again if it was killed. */
function startAgent(): void {
  if (agent !== undefined && agent.proc !== null) return;
  agent = spawn(AGENT, null);
  join(AGENT_GROUP, agent);
}

/** What the agent answers: a request from another node is checked as the page's own would be. */
function agentAnswer(request: unknown): unknown {
  const r = typeof request === "object" && request !== null ? (request as Record<string, unknown>) : {};
  if (r["op"] === "detail") return { detail: detail(r["pid"]) };
  if (r["op"] !== "view") return { error: "unknown request" };
  const q = typeof r["query"] === "object" && r["query"] !== null ? readQuery(r["query"] as Record<string, unknown>) : defaultQuery();
  const given = Array.isArray(r["shown"]) ? (r["shown"] as unknown[]).slice(0, MAX_ROWS) : [];
  const { view, shown } = nodeView(q, given.map(localPid).filter((pid): pid is Pid => pid !== undefined));
  return { view, shown: shown.map(String) };
}

/** Asks the agent of another node; its answer (or why there is none) comes back to the page's process as Answered. */
function askThere(state: ObserverState, request: AgentRequest, node: string): void {
  const me = self();
  const actions = state.actions;
  const failed = (why: string): Answered =>
    request.op === "view"
      ? new Answered(node, JSON.stringify({ type: "update", self: nodeName(), actions, nodes: nodeList(), node, unavailable: why }), [])
      : new Answered(node, JSON.stringify({ type: "detail", detail: { pid: String(request.pid), alive: false, error: why } }), undefined);
  const there = members(AGENT_GROUP).find((pid) => pid.node === node);
  if (there === undefined) {
    send(me, failed(`no observer on ${node}: it is not up, or it mounts no observer() route`));
    return;
  }
  if (request.op === "view") state.asking = true;
  call<{ view?: NodeView; shown?: string[]; detail?: unknown }>(there, request, REMOTE_TIMEOUT_MS).then(
    (a) => {
      if (request.op === "detail") send(me, new Answered(node, JSON.stringify({ type: "detail", detail: a.detail }), undefined));
      else send(me, new Answered(node, JSON.stringify({ type: "update", self: nodeName(), actions, nodes: nodeList(), ...a.view }), a.shown ?? []));
    },
    (err: unknown) => send(me, failed(`${node} did not answer: ${err instanceof Error ? err.message : describe(err)}`)),
  );
}

/* ------------------------------------------------------------------ supervisors and sessions */

interface SupervisorNode {
  pid: string;
  name: string | null;
  strategy: string;
  intensity: number;
  periodMs: number;
  restarts: RestartRecord[];
  childCount: number;
  children: { id: string; pid: string | null; type: string; restarting: boolean; supervisor: SupervisorNode | null }[];
}

/** The live supervisors as trees: those no listed supervisor holds as a child are the roots. */
function supervisorTree(): SupervisorNode[] {
  const all = liveSupervisors().slice(0, MAX_SUPERVISORS);
  const held = new Set<Pid>();
  const snaps = new Map<Pid, NonNullable<ReturnType<typeof supervisorSnapshot>>>();
  for (const pid of all) {
    const snap = supervisorSnapshot(pid, MAX_CHILDREN);
    if (snap === undefined) continue;
    snaps.set(pid, snap);
    for (const c of snap.children) if (c.pid instanceof Pid) held.add(c.pid);
  }
  const build = (pid: Pid, depth: number): SupervisorNode | null => {
    const snap = snaps.get(pid);
    if (snap === undefined || depth > 20) return null;
    return {
      pid: String(pid),
      name: pid.proc?.name ?? null,
      strategy: snap.strategy,
      intensity: snap.intensity,
      periodMs: snap.periodMs,
      restarts: [...snap.restarts],
      childCount: snap.childCount,
      children: snap.children.map((c) => ({
        id: c.id,
        pid: c.pid instanceof Pid ? String(c.pid) : null,
        type: c.type,
        restarting: c.pid === "restarting",
        supervisor: c.pid instanceof Pid ? build(c.pid, depth + 1) : null,
      })),
    };
  };
  const roots: SupervisorNode[] = [];
  for (const pid of snaps.keys()) {
    if (held.has(pid)) continue;
    const node = build(pid, 0);
    if (node !== null) roots.push(node);
  }
  return roots;
}

/** A bullet session as the page shows it: from its own process, or from one of its transports' processes. */
function sessionView(p: Process | null, now: number): SessionView | null {
  if (p === null) return null;
  const session = sessionOfProcess(p) ?? carriedSession(p.state);
  return session === undefined || session === null ? null : viewOf(session.describe(now));
}

type SessionView = Omit<SessionInfo, "pid"> & { pid: string | null };

function viewOf(info: SessionInfo): SessionView {
  return { ...info, pid: info.pid === null ? null : String(info.pid) };
}

/** The first MAX_LISTED of this node's sessions (a Map's first entries: no walk over all of them). */
function sessionList(now: number): SessionView[] {
  const list: SessionView[] = [];
  for (const session of nodeSessions.values()) {
    if (list.length === MAX_LISTED) break;
    list.push(viewOf(session.describe(now)));
  }
  return list;
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

function table(q: Query, shown: Pid[]): { table: unknown; shown: Pid[] } {
  const exact = livePids.size <= SAMPLE_SIZE;
  let candidates = sampleWindow();
  if (!exact && shown.length > 0) {
    const seen = new Set(candidates);
    candidates = candidates.concat(shown.filter((pid) => pid.proc !== null && !seen.has(pid)));
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
  return {
    table: { total: livePids.size, sampled: candidates.length, exact, matched: matched.length, offset: q.offset, limit: q.limit, sort: q.sort, desc: q.desc, filter: q.filter, rows: page.map(row) },
    shown: page,
  };
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
    timers: processTimers(p),
    supervisor: supervisorDetail(pid),
    session: sessionView(p, performance.now()),
    state: inspect(p.state, { depth: 3, breakLength: 100, maxArrayLength: 20, maxStringLength: 200 }).slice(0, 4000),
    queue: p.mailbox.slice(p.head, p.head + 10).map((m) => inspect(m, { depth: 2, breakLength: Infinity, maxStringLength: 100 }).slice(0, 300)),
  };
}

/** A supervisor's strategy, children (the first MAX_CHILDREN) and last restarts; null for any other process. */
function supervisorDetail(pid: Pid): unknown {
  const snap = supervisorSnapshot(pid, MAX_CHILDREN);
  if (snap === undefined) return null;
  return {
    strategy: snap.strategy,
    intensity: snap.intensity,
    periodMs: snap.periodMs,
    childCount: snap.childCount,
    children: snap.children.map((c) => ({ id: c.id, pid: c.pid instanceof Pid ? String(c.pid) : null, type: c.type, restarting: c.pid === "restarting" })),
    restarts: [...snap.restarts],
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
  // In a cluster, other nodes' pages may ask this one. Not before: a pid made before startCluster would fix the node's name.
  if (clusterInfo() !== undefined) startAgent();
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
