// OTP's supervisor: children started, watched and restarted by strategy, within an intensity.
/**
 * Erlang's supervisor: a process that starts children, watches them through links and
 * restarts them by strategy, within a restart intensity. The guide is docs/supervisors.md.
 *
 * The supervisor is a ProcessBehavior whose callbacks are all synchronous: starting a child
 * must run inside the supervisor (so the child's spawnLink links to it), and the runtime
 * only knows the calling process in a callback's synchronous part. Shutting a child down
 * takes time (wait for DOWN, maybe kill), so it is a small state machine, a "stop job":
 * while one runs, every message but the job's own DOWN and kill timer waits in `deferred`,
 * as messages wait in the mailbox while OTP's supervisor blocks in its shutdown receive.
 */
import { performance } from "node:perf_hooks";
import { call, refuse, replyTo, type CallError, type From } from "../runtime/call.js";
import { CorralError, badarg, describe, type ErrorCode } from "../runtime/errors.js";
import { runtimeLogger } from "../runtime/log.js";
import { Pid, type Ref } from "../runtime/pid.js";
import { isAlive } from "../runtime/info.js";
import { currentProcess, self, send, type Process } from "../runtime/process.js";
import { whereis } from "../runtime/registry.js";
import { stats } from "../runtime/stats.js";
import { ok, stop, type Result } from "../runtime/result.js";
import { stopNode, setStopHook, STOP_SUPERVISORS } from "../runtime/shutdown.js";
import { exit, isDown, isExit, isExitReason, link, monitor, monitorFrom, unlink, type ExitMessage, type ExitReason } from "../runtime/signals.js";
import { spawn, spawnLink, type ProcessBehavior } from "../runtime/spawn.js";
import { cancelTimer, sendAfter } from "../runtime/timers.js";
import { flag, knownKeys, limit, positive, toError } from "../runtime/validate.js";

// ---------------------------------------------------------------------------------------
// Public types

/** Which children restart when one exits; Erlang's strategy names, kept as written. */
export type Strategy = "one_for_one" | "one_for_all" | "rest_for_one";

/** permanent: always restarted; transient: only after an abnormal exit; temporary: never. */
export type RestartType = "permanent" | "transient" | "temporary";

/** How to stop a child: ms to wait after exit(child, "shutdown") before "kill"; or kill at once; or wait forever. */
export type Shutdown = number | "brutal_kill" | "infinity";

/** Only changes the shutdown default ("infinity" for supervisors, so a subtree has all the time it needs). */
export type ChildType = "worker" | "supervisor";

/** Erlang's child_spec map, with `start` in place of the {M, F, A} triple. */
export interface ChildSpec {
  /** Names the child within its supervisor (Erlang's id); unique there. */
  readonly id: string;
  /**
   * Starts the child and returns its pid. Called inside the supervisor process, so
   * `spawnLink(...)` here links the child to the supervisor, Erlang's start_link idiom.
   * A throw, or anything but a Pid, is a start failure.
   */
  readonly start: () => Pid;
  /** Default "permanent". */
  readonly restart?: RestartType;
  /** Default 5000 for a worker, "infinity" for a supervisor. */
  readonly shutdown?: Shutdown;
  /** Default "worker". */
  readonly type?: ChildType;
}

/** Erlang's {SupFlags, ChildSpecs}: the flags, with the children in start order. */
export interface SupervisorSpec {
  /** Default "one_for_one". */
  readonly strategy?: Strategy;
  /** Most restarts allowed within periodMs before the supervisor gives up (Erlang's intensity). Default 1. */
  readonly intensity?: number;
  /** The sliding window for intensity, in ms (Erlang's period, which is in seconds). Default 5000. */
  readonly periodMs?: number;
  readonly children: readonly ChildSpec[];
}

export interface StartSupervisorOptions {
  /** Register the supervisor under this name (Erlang's {local, Name}). */
  readonly name?: string;
  /**
   * Link to the calling process, which becomes the supervisor's parent: its exit shuts the
   * tree down. Default: true inside a process (Erlang only has supervisor:start_link),
   * false outside one, where there is nothing to link to.
   */
  readonly link?: boolean;
  /**
   * OTP's permanent application: this supervisor is the top of the node's tree, and the node
   * does not outlive it. When it exits for any reason but stopSupervisor (it reached its
   * restart intensity, a child failed to start, it was killed), the error is logged, the node
   * stops gracefully (every listener, so WebSockets get 1001 and terminate runs; the other
   * permanent supervisors; the cluster) and Node exits with code 1, for systemd, Docker or
   * Kubernetes to restart it. Implies link: false. Default false.
   */
  readonly permanent?: boolean;
  /** With permanent: how long the node's stop may take, in ms, before Node exits anyway. Default 10000. */
  readonly stopTimeout?: number;
}

/** A supervisor: its pid or registered name (Erlang's SupRef). */
export type SupRef = Pid | string;

/** One row of whichChildren: Erlang's {Id, Child, Type, Modules} without Modules. */
export interface ChildInfo {
  readonly id: string;
  /** The running child; "restarting" while a failed restart waits to be tried again; undefined when not running. */
  readonly pid: Pid | "restarting" | undefined;
  readonly type: ChildType;
}

/** Erlang's count_children: specs, running children, and specs by type. */
export interface ChildCount {
  readonly specs: number;
  readonly active: number;
  readonly supervisors: number;
  readonly workers: number;
}

/** The reason part of a supervisor's exit when a child fails to start at startup. */
export interface FailedToStartChild {
  /** Erlang's {failed_to_start_child, Id, Reason}. */
  readonly failedToStartChild: string;
  readonly reason: Error;
}

export type SupervisorErrorCode = Extract<
  ErrorCode,
  "ERR_ALREADY_STARTED" | "ERR_ALREADY_PRESENT" | "ERR_NOT_FOUND" | "ERR_RUNNING" | "ERR_RESTARTING" | "ERR_START_FAILED"
>;

/** What a dynamic call rejects with when the supervisor refused (a dead supervisor gives ERR_NOPROC). */
export class SupervisorError extends CorralError {
  /** The running child, for ERR_ALREADY_STARTED. */
  readonly pid: Pid | undefined;

  constructor(code: SupervisorErrorCode, message: string, opts?: { pid?: Pid; cause?: unknown }) {
    super(code, message, opts);
    this.name = "SupervisorError";
    this.pid = opts?.pid;
  }
}

// ---------------------------------------------------------------------------------------
// Defaults and validation

const DEFAULT_INTENSITY = 1;
const DEFAULT_PERIOD_MS = 5000;
const DEFAULT_WORKER_SHUTDOWN = 5000;
/** Twice a listener's default shutdownTimeout: room for the listeners' stop and the rest. */
const DEFAULT_STOP_TIMEOUT = 10_000;
/** What Node exits with when a permanent supervisor ends: 1, as an Erlang node halted by a permanent application's exit. */
const PERMANENT_EXIT_CODE = 1;

const STRATEGIES: readonly Strategy[] = ["one_for_one", "one_for_all", "rest_for_one"];
const RESTART_TYPES: readonly RestartType[] = ["permanent", "transient", "temporary"];
const CHILD_TYPES: readonly ChildType[] = ["worker", "supervisor"];

/** A child as the supervisor keeps it: the spec with defaults filled in, and its process. */
interface Child {
  readonly id: string;
  readonly start: () => Pid;
  readonly restart: RestartType;
  readonly shutdown: Shutdown;
  readonly type: ChildType;
  /** The running process; undefined when not running. */
  pid: Pid | undefined;
  /** A restart failed and a TryAgain for this child is on its way. */
  restarting: boolean;
}

function oneOf<T extends string>(value: unknown, allowed: readonly T[]): value is T {
  return typeof value === "string" && (allowed as readonly string[]).includes(value);
}

function isShutdown(value: unknown): value is Shutdown {
  return value === "brutal_kill" || value === "infinity" || (typeof value === "number" && value >= 0 && !Number.isNaN(value));
}

/** Validates one child spec where it is given (a bad spec is the caller's error, as Erlang's check_childspecs). */
function checkChildSpec(spec: ChildSpec, fn: string): Child {
  if (typeof spec !== "object" || spec === null) throw badarg(`${fn}: a child spec must be an object, got ${describe(spec)}`);
  const s: { readonly [K in keyof ChildSpec]?: unknown } = spec;
  if (typeof s.id !== "string" || s.id === "") throw badarg(`${fn}: child spec id must be a non-empty string, got ${describe(s.id)}`);
  const where = `${fn}: child ${JSON.stringify(s.id)}`;
  if (typeof s.start !== "function") throw badarg(`${where}: start must be a function returning a Pid, got ${describe(s.start)}`);
  const restart = s.restart ?? "permanent";
  if (!oneOf(restart, RESTART_TYPES)) throw badarg(`${where}: restart must be "permanent", "transient" or "temporary", got ${describe(restart)}`);
  const type = s.type ?? "worker";
  if (!oneOf(type, CHILD_TYPES)) throw badarg(`${where}: type must be "worker" or "supervisor", got ${describe(type)}`);
  const shutdown = s.shutdown ?? (type === "supervisor" ? "infinity" : DEFAULT_WORKER_SHUTDOWN);
  if (!isShutdown(shutdown)) throw badarg(`${where}: shutdown must be ms >= 0, "brutal_kill" or "infinity", got ${describe(shutdown)}`);
  return {
    id: s.id,
    start: spec.start,
    restart,
    shutdown: shutdown === Infinity ? "infinity" : shutdown,
    type,
    pid: undefined,
    restarting: false,
  };
}

/** What the supervisor process is started with: the checked spec and who its parent is. */
interface SupervisorArg {
  readonly strategy: Strategy;
  readonly intensity: number;
  readonly periodMs: number;
  readonly children: Child[];
  readonly parent: Pid | undefined;
  readonly name: string | undefined;
}

function checkSupervisorSpec(spec: SupervisorSpec): Omit<SupervisorArg, "parent" | "name"> {
  const fn = "startSupervisor";
  if (typeof spec !== "object" || spec === null) throw badarg(`${fn}: expected { strategy?, intensity?, periodMs?, children }, got ${describe(spec)}`);
  const s: { readonly [K in keyof SupervisorSpec]?: unknown } = spec;
  const strategy = s.strategy ?? "one_for_one";
  if (!oneOf(strategy, STRATEGIES)) throw badarg(`${fn}: strategy must be "one_for_one", "one_for_all" or "rest_for_one", got ${describe(strategy)}`);
  const intensity = s.intensity ?? DEFAULT_INTENSITY;
  if (typeof intensity !== "number" || !Number.isInteger(intensity) || intensity < 0) {
    throw badarg(`${fn}: intensity must be an integer >= 0, got ${describe(intensity)}`);
  }
  const periodMs = limit(s.periodMs ?? DEFAULT_PERIOD_MS, `${fn}: periodMs must be a number > 0`);
  if (!Array.isArray(spec.children)) throw badarg(`${fn}: children must be an array of child specs, got ${describe(s.children)}`);
  const children = spec.children.map((c) => checkChildSpec(c, fn));
  const ids = new Set<string>();
  for (const c of children) {
    if (ids.has(c.id)) throw badarg(`${fn}: duplicate child id ${JSON.stringify(c.id)}`);
    ids.add(c.id);
  }
  return { strategy, intensity, periodMs, children };
}

const START_OPTIONS: ReadonlySet<string> = new Set<keyof StartSupervisorOptions>(["name", "link", "permanent", "stopTimeout"]);

/** The start options, checked: whether to link to the caller, and for a permanent supervisor, its stop timeout. */
interface StartOptions {
  readonly name: string | undefined;
  readonly link: boolean;
  /** Set only for a permanent supervisor. */
  readonly stopTimeout: number | undefined;
}

function checkStartOptions(opts: StartSupervisorOptions | undefined, caller: Process | null): StartOptions {
  const fn = "startSupervisor";
  if (opts !== undefined && (typeof opts !== "object" || opts === null)) throw badarg(`${fn}: options must be an object, got ${describe(opts)}`);
  if (opts !== undefined) knownKeys(opts, START_OPTIONS, fn);
  const o: { readonly [K in keyof StartSupervisorOptions]?: unknown } = opts ?? {};
  const permanent = flag(o.permanent, `${fn}: permanent must be a boolean`, false);
  if (!permanent && o.stopTimeout !== undefined) throw badarg(`${fn}: stopTimeout applies only with permanent: true, got ${describe(o.stopTimeout)}`);
  const link = flag(o.link, `${fn}: link must be a boolean`, caller !== null && !permanent);
  if (permanent && link) throw badarg(`${fn}: a permanent supervisor is the top of its tree and has no parent; leave link unset`);
  if (permanent && caller !== null && supervisors.has(caller.pid)) {
    throw badarg(`${fn}: a permanent supervisor is the top of its tree; start it outside any supervisor, not in a child's start`);
  }
  if (link && caller === null) {
    throw new CorralError("ERR_NOT_IN_PROCESS", `${fn}: link: true needs a calling process to link to; call it inside a process, or leave link unset`);
  }
  const stopTimeout = permanent ? positive(o.stopTimeout, `${fn}: stopTimeout must be a number of ms > 0`, DEFAULT_STOP_TIMEOUT) : undefined;
  return { name: opts?.name, link, stopTimeout };
}

// ---------------------------------------------------------------------------------------
// The supervisor's own messages

/** What a dynamic call asks. */
type Request =
  | { readonly op: "whichChildren" }
  | { readonly op: "countChildren" }
  | { readonly op: "startChild"; readonly child: Child }
  | { readonly op: "terminateChild"; readonly id: string }
  | { readonly op: "restartChild"; readonly id: string }
  | { readonly op: "deleteChild"; readonly id: string }
  | { readonly op: "stop"; readonly reason: ExitReason };

/** The answer to a dynamic call: a SupervisorError travels as a value, so the caller rejects with it as it is. */
type Outcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: SupervisorError };

/** A call's request from this module's functions: a class, so a call made any other way is refused, not trusted. */
class SupervisorCall {
  constructor(readonly request: Request) {}
}

/** A call waiting in the mailbox (or deferred behind a stop job) with whom to answer. */
class PendingCall {
  constructor(
    readonly request: Request,
    readonly from: From,
  ) {}
}

/** To itself: a restart failed, try it again (Erlang's try_again_restart); counts as another restart. */
class TryAgain {
  constructor(readonly child: Child) {}
}

/** To itself: a child's shutdown time is up, kill it. One object per shutdown, so a late one is recognised as stale. */
class KillTimer {
  timer: Ref | undefined = undefined;
}

// ---------------------------------------------------------------------------------------
// State

/** A child being shut down: the monitor that reports its end, and the timer that escalates to kill. */
interface Stopping {
  readonly child: Child;
  readonly pid: Pid;
  readonly ref: Ref;
  readonly killTimer: KillTimer | undefined;
}

/** Children to shut down one at a time, in the given order, then what to do once all are down. */
interface StopJob {
  readonly queue: Child[];
  current: Stopping | undefined;
  readonly then: () => void;
}

class SupervisorState {
  readonly self: Pid;
  readonly name: string | undefined;
  readonly parent: Pid | undefined;
  readonly strategy: Strategy;
  readonly intensity: number;
  readonly periodMs: number;
  /** In start order; shut down in reverse. */
  children: Child[];
  /** When recent restarts happened (performance.now()), for the sliding intensity window. */
  restarts: number[] = [];
  /** The last restarts, newest last (at most HISTORY_KEPT), for the observer. */
  history: RestartRecord[] = [];
  job: StopJob | undefined = undefined;
  /** Messages that arrived while a stop job ran, handled in order once it ends. */
  deferred: unknown[] = [];
  /** Set once the supervisor has stopped its children and is to exit with this reason. */
  exitReason: ExitReason | undefined = undefined;

  constructor(arg: SupervisorArg, me: Pid) {
    this.self = me;
    this.name = arg.name;
    this.parent = arg.parent;
    this.strategy = arg.strategy;
    this.intensity = arg.intensity;
    this.periodMs = arg.periodMs;
    this.children = arg.children;
  }
}

// ---------------------------------------------------------------------------------------
// Reports (Erlang's supervisor reports, as pino records on the runtime logger)

type ErrorContext = "start_error" | "child_terminated" | "shutdown_error" | "shutdown";

/** A readable rendering of an exit reason; Errors keep name and message (the stack goes in `err`). */
function reasonText(reason: unknown, depth = 0): string {
  if (typeof reason === "string") return reason;
  if (reason instanceof Error) return `${reason.name}: ${reason.message}`;
  if (typeof reason === "object" && reason !== null && depth < 3 && Object.getPrototypeOf(reason) === Object.prototype) {
    const fields = Object.entries(reason).map(([k, v]) => `${k}: ${reasonText(v, depth + 1)}`);
    return `{ ${fields.join(", ")} }`;
  }
  return describe(reason);
}

/** The Error inside a reason, so pino logs its stack. */
function errorIn(reason: unknown): Error | undefined {
  if (reason instanceof Error) return reason;
  if (typeof reason === "object" && reason !== null && "crash" in reason && reason.crash instanceof Error) return reason.crash;
  return undefined;
}

function report(s: SupervisorState, context: ErrorContext, child: Child, pid: Pid | undefined, reason: unknown, msg: string): void {
  runtimeLogger().error(
    {
      supervisor: s.self.toString(),
      name: s.name,
      errorContext: context,
      reason: reasonText(reason),
      err: errorIn(reason),
      childId: child.id,
      childPid: pid?.toString(),
      restart: child.restart,
      shutdown: child.shutdown,
      type: child.type,
    },
    msg,
  );
}

// ---------------------------------------------------------------------------------------
// Starting children

/** Erlang's normal exits: a transient child that ends with one of these is not restarted. */
function isNormalExit(reason: ExitReason): boolean {
  return reason === "normal" || reason === "shutdown" || (typeof reason === "object" && "shutdown" in reason);
}

/** Runs child.start inside the supervisor; a Pid on success, the Error on a start failure. */
function startProcess(s: SupervisorState, child: Child): Pid | Error {
  let started: unknown;
  try {
    started = child.start();
  } catch (err) {
    return toError(err, "start threw");
  }
  if (!(started instanceof Pid)) {
    return new CorralError("ERR_BAD_RESULT", `child ${JSON.stringify(child.id)}: start returned ${describe(started)}; expected a Pid (e.g. from spawnLink)`);
  }
  // Already linked if start used spawnLink; linking again is a no-op, and makes spawn work too.
  link(started);
  child.pid = started;
  child.restarting = false;
  runtimeLogger().debug({ supervisor: s.self.toString(), name: s.name, childId: child.id, childPid: started.toString() }, "child started");
  return started;
}

/** At init: start all in order; the first failure stops those started and ends the supervisor. */
function startInitialChildren(s: SupervisorState): void {
  for (const child of s.children) {
    const result = startProcess(s, child);
    if (result instanceof Error) {
      report(s, "start_error", child, undefined, result, "child failed to start");
      const reason: FailedToStartChild = { failedToStartChild: child.id, reason: result };
      terminateSupervisor(s, { shutdown: reason });
      return;
    }
  }
}

/** After a restart's shutdowns: start the set in order; a failure leaves the rest down and tries again later. */
function startSet(s: SupervisorState, set: readonly Child[]): void {
  for (const child of set) {
    if (child.pid !== undefined) continue;
    const result = startProcess(s, child);
    if (result instanceof Error) {
      report(s, "start_error", child, undefined, result, "child failed to restart");
      child.restarting = true;
      send(s.self, new TryAgain(child));
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Stopping children: the stop job

/** Shuts children down one at a time in the given order, then runs `then`. */
function runStopJob(s: SupervisorState, children: Child[], then: () => void): void {
  const job: StopJob = { queue: children, current: undefined, then };
  s.job = job;
  advance(s, job);
}

/** Starts the next shutdown, or ends the job when none is left. */
function advance(s: SupervisorState, job: StopJob): void {
  for (let child = job.queue.shift(); child !== undefined; child = job.queue.shift()) {
    child.restarting = false;
    if (child.pid !== undefined) {
      job.current = beginShutdown(s, child, child.pid);
      return;
    }
  }
  s.job = undefined;
  job.then();
}

/** Erlang's shutdown/2: monitor, unlink, exit "shutdown" (or "kill"), and arm the kill timer. */
function beginShutdown(s: SupervisorState, child: Child, pid: Pid): Stopping {
  const ref = monitor(pid);
  // Unlinked, the child's death sends no EXIT; one already sent is taken back in childDown.
  unlink(pid);
  if (child.shutdown === "brutal_kill") {
    exit(pid, "kill");
    return { child, pid, ref, killTimer: undefined };
  }
  exit(pid, "shutdown");
  if (child.shutdown === "infinity") return { child, pid, ref, killTimer: undefined };
  const killTimer = new KillTimer();
  killTimer.timer = sendAfter(child.shutdown, s.self, killTimer);
  return { child, pid, ref, killTimer };
}

/** A message while a job runs: the job's DOWN or kill timer (true), or anything else (false: defer it). */
function jobMessage(s: SupervisorState, job: StopJob, msg: unknown): boolean {
  const cur = job.current;
  if (cur === undefined) return false;
  if (isDown(msg) && msg.ref === cur.ref) {
    childDown(s, cur, msg.reason);
    job.current = undefined;
    advance(s, job);
    return true;
  }
  if (msg === cur.killTimer) {
    exit(cur.pid, "kill");
    return true;
  }
  return false;
}

/** Removes and returns the reason of a deferred EXIT from pid (it died before the shutdown began). */
function takeDeferredExit(s: SupervisorState, pid: Pid): ExitReason | undefined {
  const i = s.deferred.findIndex((m) => isExit(m) && m.from === pid);
  if (i < 0) return undefined;
  const [msg] = s.deferred.splice(i, 1);
  return (msg as ExitMessage).reason;
}

/** A child we shut down is gone: check how it ended (Erlang's shutdown_error), forget its pid. */
function childDown(s: SupervisorState, cur: Stopping, downReason: ExitReason): void {
  if (cur.killTimer?.timer !== undefined) cancelTimer(cur.killTimer.timer);
  // "noproc": it had already died, and its EXIT came before this DOWN, so it is in `deferred`.
  const exitReason = takeDeferredExit(s, cur.pid);
  const reason = downReason === "noproc" ? (exitReason ?? downReason) : downReason;
  if (!isCleanShutdown(cur.child, reason)) report(s, "shutdown_error", cur.child, cur.pid, reason, "child did not shut down cleanly");
  childGone(s, cur.child);
}

/** Erlang's rule: "shutdown" (or "killed" for brutal_kill); a non-permanent child may also end normally. */
function isCleanShutdown(child: Child, reason: ExitReason): boolean {
  if (reason === (child.shutdown === "brutal_kill" ? "killed" : "shutdown")) return true;
  return child.restart !== "permanent" && isNormalExit(reason);
}

/** A child is no longer running; a temporary one leaves the child list with it. */
function childGone(s: SupervisorState, child: Child): void {
  child.pid = undefined;
  if (child.restart === "temporary") s.children = s.children.filter((c) => c !== child);
}

/** Stops every child, last started first, then ends the supervisor with `reason`. */
function terminateSupervisor(s: SupervisorState, reason: ExitReason, done?: () => void): void {
  runStopJob(s, [...s.children].reverse(), () => {
    s.exitReason = reason;
    s.deferred = [];
    done?.();
  });
}

// ---------------------------------------------------------------------------------------
// Restarts

/** Erlang's add_restart: record one restart; false when that makes more than `intensity` within the period. */
function addRestart(s: SupervisorState): boolean {
  const now = performance.now();
  s.restarts = s.restarts.filter((t) => now - t <= s.periodMs);
  s.restarts.push(now);
  return s.restarts.length <= s.intensity;
}

/** A child exited on its own: restart it by its restart type and the strategy, or let it go. */
function childExited(s: SupervisorState, child: Child, pid: Pid, reason: ExitReason): void {
  childGone(s, child);
  if (child.restart === "temporary") {
    if (!isNormalExit(reason)) report(s, "child_terminated", child, pid, reason, "child terminated");
    return;
  }
  if (child.restart === "transient" && isNormalExit(reason)) return;
  report(s, "child_terminated", child, pid, reason, "child terminated");
  noteRestart(s, child, reason);
  restart(s, child);
}

/** Restarts by strategy, unless the restart intensity is exceeded: then the whole supervisor shuts down. */
function restart(s: SupervisorState, child: Child): void {
  if (!addRestart(s)) {
    runtimeLogger().error(
      { supervisor: s.self.toString(), name: s.name, errorContext: "shutdown", reason: "reached_max_restart_intensity", childId: child.id, intensity: s.intensity, periodMs: s.periodMs },
      "reached max restart intensity",
    );
    terminateSupervisor(s, "shutdown");
    return;
  }
  stats.supervisorRestarts++;
  switch (s.strategy) {
    case "one_for_one":
      startSet(s, [child]);
      return;
    case "one_for_all":
      runStopJob(s, [...s.children].reverse(), () => startSet(s, [...s.children]));
      return;
    case "rest_for_one": {
      const rest = s.children.slice(s.children.indexOf(child));
      runStopJob(s, [...rest].reverse(), () => startSet(s, s.children.slice(s.children.indexOf(child))));
      return;
    }
  }
}

/** A failed restart's second chance: only if nothing (terminateChild, deleteChild) settled the child since. */
function tryAgain(s: SupervisorState, child: Child): void {
  if (child.restarting && s.children.includes(child)) restart(s, child);
}

// ---------------------------------------------------------------------------------------
// Dynamic calls, inside the supervisor

function findChild(s: SupervisorState, id: string): Child | undefined {
  return s.children.find((c) => c.id === id);
}

function notFound(s: SupervisorState, id: string): Outcome<never> {
  return { ok: false, error: new SupervisorError("ERR_NOT_FOUND", `supervisor ${s.self} has no child ${JSON.stringify(id)}`) };
}

/** Erlang refuses to restart or delete a child that runs or is being restarted. */
function busyChild(s: SupervisorState, child: Child): Outcome<never> | undefined {
  if (child.restarting) return { ok: false, error: new SupervisorError("ERR_RESTARTING", `child ${JSON.stringify(child.id)} of ${s.self} is being restarted`) };
  if (child.pid !== undefined) return { ok: false, error: new SupervisorError("ERR_RUNNING", `child ${JSON.stringify(child.id)} of ${s.self} is running as ${child.pid}`) };
  return undefined;
}

function startFailed(child: Child, err: Error): Outcome<never> {
  return { ok: false, error: new SupervisorError("ERR_START_FAILED", `child ${JSON.stringify(child.id)} failed to start: ${err.message}`, { cause: err }) };
}

function whichChildrenNow(s: SupervisorState): ChildInfo[] {
  return s.children.map((c) => ({ id: c.id, pid: c.restarting ? "restarting" : c.pid, type: c.type }));
}

function countChildrenNow(s: SupervisorState): ChildCount {
  const supervisors = s.children.filter((c) => c.type === "supervisor").length;
  return {
    specs: s.children.length,
    active: s.children.filter((c) => c.pid !== undefined).length,
    supervisors,
    workers: s.children.length - supervisors,
  };
}

/** Adds and starts a new child after the others; a start failure adds nothing. */
function addChild(s: SupervisorState, child: Child): Outcome<Pid> {
  const old = findChild(s, child.id);
  if (old?.pid !== undefined) {
    return { ok: false, error: new SupervisorError("ERR_ALREADY_STARTED", `child ${JSON.stringify(child.id)} of ${s.self} is already started as ${old.pid}`, { pid: old.pid }) };
  }
  if (old !== undefined) return { ok: false, error: new SupervisorError("ERR_ALREADY_PRESENT", `child ${JSON.stringify(child.id)} of ${s.self} is present but not running; use restartChild or deleteChild`) };
  const started = startProcess(s, child);
  if (started instanceof Error) return startFailed(child, started);
  s.children.push(child);
  return { ok: true, value: started };
}

function restartStopped(s: SupervisorState, id: string): Outcome<Pid> {
  const child = findChild(s, id);
  if (child === undefined) return notFound(s, id);
  const busy = busyChild(s, child);
  if (busy !== undefined) return busy;
  const started = startProcess(s, child);
  return started instanceof Error ? startFailed(child, started) : { ok: true, value: started };
}

function deleteStopped(s: SupervisorState, id: string): Outcome<void> {
  const child = findChild(s, id);
  if (child === undefined) return notFound(s, id);
  const busy = busyChild(s, child);
  if (busy !== undefined) return busy;
  s.children = s.children.filter((c) => c !== child);
  return { ok: true, value: undefined };
}

const DONE: Outcome<void> = { ok: true, value: undefined };

/** Stops one child (no restart follows: it is unlinked first); answers once it is down. */
function terminateOne(s: SupervisorState, id: string, from: From): void {
  const child = findChild(s, id);
  if (child === undefined) return replyTo(from, notFound(s, id));
  runStopJob(s, [child], () => replyTo(from, DONE));
}

function handleCall(s: SupervisorState, { request: req, from }: PendingCall): void {
  switch (req.op) {
    case "whichChildren":
      return replyTo(from, { ok: true, value: whichChildrenNow(s) });
    case "countChildren":
      return replyTo(from, { ok: true, value: countChildrenNow(s) });
    case "startChild":
      return replyTo(from, addChild(s, req.child));
    case "restartChild":
      return replyTo(from, restartStopped(s, req.id));
    case "deleteChild":
      return replyTo(from, deleteStopped(s, req.id));
    case "terminateChild":
      return terminateOne(s, req.id, from);
    case "stop":
      stoppedOnPurpose.add(s.self);
      return terminateSupervisor(s, req.reason, () => replyTo(from, DONE));
  }
}

// ---------------------------------------------------------------------------------------
// The supervisor process

/** An EXIT from the parent ends the tree with the parent's reason; from a child, maybe a restart; else nothing. */
function handleExit(s: SupervisorState, msg: ExitMessage): void {
  if (s.parent !== undefined && msg.from.equals(s.parent)) {
    terminateSupervisor(s, msg.reason);
    return;
  }
  // No match: a child we stopped ourselves (an EXIT sent before we unlinked it), or some other linked process.
  const child = s.children.find((c) => c.pid === msg.from);
  if (child !== undefined) childExited(s, child, msg.from, msg.reason);
}

function dispatch(s: SupervisorState, msg: unknown): void {
  if (msg instanceof PendingCall) handleCall(s, msg);
  else if (isExit(msg)) handleExit(s, msg);
  else if (msg instanceof TryAgain) tryAgain(s, msg.child);
  else if (msg instanceof KillTimer) return; // lost the race with its child's DOWN
  else runtimeLogger().error({ supervisor: s.self.toString(), name: s.name, message: describe(msg) }, "supervisor received unexpected message");
}

/** While a stop job runs, only its own messages are handled; the rest wait their turn. */
function receive(s: SupervisorState, msg: unknown): void {
  if (s.job === undefined) dispatch(s, msg);
  else if (!jobMessage(s, s.job, msg)) s.deferred.push(msg);
  while (s.job === undefined && s.exitReason === undefined && s.deferred.length > 0) dispatch(s, s.deferred.shift());
}

function resultOf(s: SupervisorState): Result<SupervisorState> {
  return s.exitReason === undefined ? ok(s) : stop(s, s.exitReason);
}

/** A class, so processInfo(pid).behaviour reads "Supervisor". */
class Supervisor implements ProcessBehavior<SupervisorState, unknown, SupervisorArg> {
  init(arg: SupervisorArg): Result<SupervisorState> {
    const s = new SupervisorState(arg, self());
    startInitialChildren(s);
    return resultOf(s);
  }

  handleInfo(msg: unknown, s: SupervisorState): Result<SupervisorState> {
    receive(s, msg);
    return resultOf(s);
  }

  handleCall(request: unknown, from: From, s: SupervisorState): Result<SupervisorState> {
    if (request instanceof SupervisorCall) receive(s, new PendingCall(request.request, from));
    else refuse(from, "ERR_BADARG", `supervisor ${s.self}: takes calls only through whichChildren, startChild and the other supervisor functions`);
    return resultOf(s);
  }
}

const SUPERVISOR = new Supervisor();

/** Pids of supervisors, so a call to any other process is refused instead of hanging. Weak: a dead pid may go. */
const supervisors = new WeakSet<Pid>();

/**
 * Erlang's supervisor:start_link: starts a supervisor process, which traps exits and starts
 * the children in order. Returns at once; children start when the supervisor first runs.
 * A bad spec throws here; a child failing to start makes the supervisor exit with
 * { shutdown: { failedToStartChild: id, reason } }.
 */
export function startSupervisor(spec: SupervisorSpec, opts?: StartSupervisorOptions): Pid {
  const checked = checkSupervisorSpec(spec);
  const caller = currentProcess();
  const { name, link: linked, stopTimeout } = checkStartOptions(opts, caller);
  const arg: SupervisorArg = { ...checked, parent: linked ? caller?.pid : undefined, name };
  const spawnOpts = { trapExit: true, name };
  const pid = linked ? spawnLink(SUPERVISOR, arg, spawnOpts) : spawn(SUPERVISOR, arg, spawnOpts);
  supervisors.add(pid);
  keepLive(pid);
  if (stopTimeout !== undefined) watchPermanent(pid, name, stopTimeout);
  return pid;
}

// ---------------------------------------------------------------------------------------
// Permanent supervisors: OTP's application master and application controller, in short

/** Permanent supervisors still running, in start order. */
const permanents: Pid[] = [];

/** Supervisors stopSupervisor stopped: a permanent one's end then leaves the node running, as OTP's application:stop. */
const stoppedOnPurpose = new WeakSet<Pid>();

interface Watch {
  readonly sup: Pid;
  readonly name: string | undefined;
  readonly stopTimeout: number;
}

/** Watches one permanent supervisor (OTP's application master): an end it was not asked for stops the node. */
class PermanentWatch implements ProcessBehavior<Watch, unknown, Watch> {
  init(w: Watch): Watch {
    return w;
  }

  handleInfo(msg: unknown, w: Watch): Result<Watch> {
    if (!isDown(msg) || msg.pid !== w.sup) return ok(w);
    permanents.splice(permanents.indexOf(w.sup), 1);
    if (!stoppedOnPurpose.has(w.sup)) {
      runtimeLogger().error(
        { supervisor: w.sup.toString(), name: w.name, reason: reasonText(msg.reason), err: errorIn(msg.reason), exitCode: PERMANENT_EXIT_CODE, stopTimeout: w.stopTimeout },
        "permanent supervisor exited; stopping the node",
      );
      stopNode(PERMANENT_EXIT_CODE, w.stopTimeout);
    }
    return stop(w);
  }
}

const PERMANENT_WATCH = new PermanentWatch();

function watchPermanent(sup: Pid, name: string | undefined, stopTimeout: number): void {
  const watch = spawn(PERMANENT_WATCH, { sup, name, stopTimeout });
  // Monitored now, before either runs: a supervisor that ends in its first turn is still seen, with its reason.
  monitorFrom(watch.proc!, sup);
  permanents.push(sup);
}

// The node's stop stops the other permanent supervisors, last started first; one that ended meanwhile is its watch's business.
setStopHook(STOP_SUPERVISORS, async () => {
  for (const sup of [...permanents].reverse()) await stopSupervisor(sup).catch(() => undefined);
});

// ---------------------------------------------------------------------------------------
// Calls from outside: gen_server:call with no timeout, as Erlang's supervisor module makes them

/** Resolves a SupRef to a live supervisor's pid, or throws the error the call rejects with. */
function supervisorPid(sup: SupRef, fn: string): Pid {
  let pid: Pid;
  if (typeof sup === "string") {
    const found = whereis(sup);
    if (found === undefined) throw new CorralError("ERR_NOPROC", `${fn}: no process registered as ${JSON.stringify(sup)}`);
    pid = found;
  } else if (sup instanceof Pid) {
    pid = sup;
  } else {
    throw badarg(`${fn}: expected a supervisor pid or registered name, got ${describe(sup)}`);
  }
  if (!isAlive(pid)) throw new CorralError("ERR_NOPROC", `${fn}: supervisor ${pid} is not alive`);
  if (!supervisors.has(pid)) throw badarg(`${fn}: ${pid} is not a supervisor`);
  return pid;
}

/**
 * Calls a supervisor; one that ends before answering rejects it with ERR_NOPROC. The call
 * leaves before the first await, so calls reach the supervisor in the order they were made.
 */
async function callSupervisor<T>(sup: SupRef, fn: string, request: Request): Promise<T> {
  const pid = supervisorPid(sup, fn);
  let outcome: Outcome<T>;
  try {
    outcome = await call<Outcome<T>>(pid, new SupervisorCall(request), Infinity);
  } catch (err) {
    const reason = (err as CallError).reason;
    throw new CorralError("ERR_NOPROC", `${fn}: supervisor ${pid} ${reason === undefined ? "is not alive" : `exited with reason ${reasonText(reason)} before replying`}`);
  }
  if (!outcome.ok) throw outcome.error;
  return outcome.value;
}

function checkId(id: unknown, fn: string): string {
  if (typeof id !== "string") throw badarg(`${fn}: child id must be a string, got ${describe(id)}`);
  return id;
}

/** Erlang's which_children: every child in start order, with its pid if running. */
export function whichChildren(sup: SupRef): Promise<ChildInfo[]> {
  return callSupervisor(sup, "whichChildren", { op: "whichChildren" });
}

/** Erlang's count_children. */
export function countChildren(sup: SupRef): Promise<ChildCount> {
  return callSupervisor(sup, "countChildren", { op: "countChildren" });
}

/** Erlang's start_child: adds a spec after the others and starts it; resolves to its pid. */
export async function startChild(sup: SupRef, spec: ChildSpec): Promise<Pid> {
  return callSupervisor(sup, "startChild", { op: "startChild", child: checkChildSpec(spec, "startChild") });
}

/** Erlang's terminate_child: shuts the child down and keeps its spec (a temporary child's goes too). */
export async function terminateChild(sup: SupRef, id: string): Promise<void> {
  return callSupervisor(sup, "terminateChild", { op: "terminateChild", id: checkId(id, "terminateChild") });
}

/** Erlang's restart_child: starts a child whose spec is kept but which is not running. */
export async function restartChild(sup: SupRef, id: string): Promise<Pid> {
  return callSupervisor(sup, "restartChild", { op: "restartChild", id: checkId(id, "restartChild") });
}

/** Erlang's delete_child: forgets the spec of a child that is not running. */
export async function deleteChild(sup: SupRef, id: string): Promise<void> {
  return callSupervisor(sup, "deleteChild", { op: "deleteChild", id: checkId(id, "deleteChild") });
}

/**
 * Erlang's gen_server:stop for a supervisor: shuts every child down, last started first,
 * then the supervisor exits with `reason` (default "shutdown"). Resolves once the children
 * are down; the supervisor itself ends in the same turn.
 */
export async function stopSupervisor(sup: SupRef, reason: ExitReason = "shutdown"): Promise<void> {
  if (!isExitReason(reason)) throw badarg(`stopSupervisor: invalid reason ${describe(reason)}`);
  return callSupervisor(sup, "stopSupervisor", { op: "stop", reason });
}

// ---------------------------------------------------------------------------------------
// Read in place by the observer (src/observe/): a supervisor's children and restart history

/** One restart as the observer shows it. */
export interface RestartRecord {
  /** When the child exited (Date.now()). */
  readonly at: number;
  readonly childId: string;
  readonly reason: string;
}

/** @internal A supervisor as the observer's tree shows it. */
export interface SupervisorSnapshot {
  readonly strategy: Strategy;
  readonly intensity: number;
  readonly periodMs: number;
  /** Every child spec; `children` lists the first `limit` of them. */
  readonly childCount: number;
  readonly children: readonly ChildInfo[];
  readonly restarts: readonly RestartRecord[];
}

const HISTORY_KEPT = 20;

function noteRestart(s: SupervisorState, child: Child, reason: ExitReason): void {
  if (s.history.length === HISTORY_KEPT) s.history.shift();
  s.history.push({ at: Date.now(), childId: child.id, reason: reasonText(reason) });
}

/** Supervisors started, for the observer's tree; the dead are dropped whenever the set doubles, so it stays within twice the live ones. */
const started = new Set<Pid>();
let pruneAt = 64;

function keepLive(pid: Pid): void {
  started.add(pid);
  if (started.size < pruneAt) return;
  for (const p of started) if (p.proc === null) started.delete(p);
  pruneAt = Math.max(64, started.size * 2);
}

/** @internal The live supervisors of this node, in start order. */
export function liveSupervisors(): Pid[] {
  const out: Pid[] = [];
  for (const p of started) if (p.proc !== null) out.push(p);
  return out;
}

/** @internal A live supervisor's first `limit` children and last restarts, read without a call; undefined for any other process. */
export function supervisorSnapshot(pid: Pid, limit: number): SupervisorSnapshot | undefined {
  const s = pid.proc?.state;
  if (!(s instanceof SupervisorState)) return undefined;
  const children = s.children.slice(0, limit).map((c) => ({ id: c.id, pid: c.restarting ? ("restarting" as const) : c.pid, type: c.type }));
  return { strategy: s.strategy, intensity: s.intensity, periodMs: s.periodMs, childCount: s.children.length, children, restarts: [...s.history] };
}
