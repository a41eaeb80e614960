// erlang:start_timer/3, send_after/3, cancel_timer/1 and read_timer/1: every timer of the runtime behind one Node timer.
import { performance } from "node:perf_hooks";
import { badarg, describe } from "./errors.js";
import { runtimeLogger } from "./log.js";
import { lookupName } from "./registry.js";
import { Pid, Ref } from "./pid.js";
import { nodeName } from "./node.js";
import { CANCEL_TIMERS, send, setExitHook, type Process, type Sendable } from "./process.js";
import { deliverAndRun } from "./scheduler.js";

/**
 * What startTimer delivers: Erlang's {timeout, Ref, Msg}, one of the runtime's SystemMessages.
 * Guard: isTimeout. M is the msg given to startTimer.
 */
export interface TimeoutMessage<M = unknown> {
  readonly type: "timeout";
  readonly ref: Ref;
  readonly msg: M;
}

/** Timers fired per slice before the rest waits for setImmediate, so I/O is not starved. */
const FIRE_SLICE = 20_000;
/** Node's setTimeout takes at most this; a longer wait is re-armed in steps. */
const MAX_NODE_DELAY = 2 ** 31 - 1;

/**
 * An armed timer is its own Ref: cancel and read find it without a lookup table.
 * Timers sit in buckets by due millisecond; a min-heap of due milliseconds drives one
 * Node timer for the whole runtime. Timers aimed at a pid also sit on that process's
 * intrusive list, so they die with it in O(their number).
 */
class Timer extends Ref {
  dest: Pid | string;
  msg: unknown;
  /** Due time, whole ms on the performance clock; also the bucket key. */
  due: number;
  /** Index in its bucket, -1 once fired or cancelled. */
  slot = -1;
  /** Deliver { type: "timeout", ref, msg } (startTimer) or msg itself (sendAfter). */
  wrap: boolean;
  prev: Timer | null = null;
  next: Timer | null = null;

  constructor(dest: Pid | string, msg: unknown, due: number, wrap: boolean) {
    super();
    this.dest = dest;
    this.msg = msg;
    this.due = due;
    this.wrap = wrap;
  }
}

/** Timers due in one millisecond, in arming order; a cancelled one leaves a hole, so order holds. */
class Bucket {
  readonly timers: (Timer | null)[] = [];
  live = 0;
  /** Where firing resumes after a slice. */
  next = 0;
}

const buckets = new Map<number, Bucket>();
/** Min-heap of due ms with a bucket; may hold keys whose bucket was emptied (skipped when popped). */
const heap: number[] = [];
let armed = 0;
/** Kept after it fires: armed again with the same delay, it is refreshed, which spares Node a new timer list. */
let nodeTimer: NodeJS.Timeout | null = null;
let nodeTimerDelay = 0;
/** When it fires; Infinity while it is not armed, -1 while a slice waits for setImmediate. */
let nodeTimerDue = Infinity;
let firing = false;

function heapPush(key: number): void {
  let i = heap.push(key) - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (heap[parent]! <= key) break;
    heap[i] = heap[parent]!;
    i = parent;
  }
  heap[i] = key;
}

function heapPop(): void {
  const last = heap.pop()!;
  const n = heap.length;
  if (n === 0) return;
  let i = 0;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= n) break;
    const r = l + 1;
    const c = r < n && heap[r]! < heap[l]! ? r : l;
    if (heap[c]! >= last) break;
    heap[i] = heap[c]!;
    i = c;
  }
  heap[i] = last;
}

function checkDelay(ms: unknown, fn: string): number {
  if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0) {
    throw badarg(`${fn}: delay must be a finite number of ms >= 0, got ${describe(ms)}`);
  }
  return ms;
}

function checkDest(dest: unknown, fn: string): Pid | string {
  if (dest instanceof Pid || typeof dest === "string") return dest;
  throw badarg(`${fn}: destination must be a Pid or a registered name, got ${describe(dest)}`);
}

function arm(ms: number, dest: Pid | string, msg: unknown, wrap: boolean): Timer {
  const due = Math.ceil(performance.now() + ms);
  const t = new Timer(dest, msg, due, wrap);
  if (dest instanceof Pid) {
    const owner = dest.proc;
    if (owner !== null) {
      const head = owner.timers as Timer | null;
      t.next = head;
      if (head !== null) head.prev = t;
      owner.timers = t;
    } else if (dest.node === nodeName()) {
      // A timer aimed at a dead pid would deliver nowhere: it is born cancelled (readTimer → false).
      return t;
    }
    // A pid of another node: the timer runs here and its message crosses when it fires.
  }
  let bucket = buckets.get(due);
  if (bucket === undefined) {
    bucket = new Bucket();
    buckets.set(due, bucket);
    heapPush(due);
  }
  t.slot = bucket.timers.push(t) - 1;
  bucket.live++;
  armed++;
  if (due < nodeTimerDue && !firing) setNodeTimer(due);
  return t;
}

function setNodeTimer(due: number): void {
  nodeTimerDue = due;
  // Whole milliseconds: Node keeps a timer list per distinct delay, and a fraction would make a new one each time.
  const delay = Math.min(MAX_NODE_DELAY, Math.max(1, Math.ceil(due - performance.now())));
  if (nodeTimer !== null && delay === nodeTimerDelay) {
    nodeTimer.refresh();
    return;
  }
  if (nodeTimer !== null) clearTimeout(nodeTimer);
  nodeTimerDelay = delay;
  nodeTimer = setTimeout(onNodeTimer, delay);
}

/**
 * Takes an armed timer out of its bucket: O(1), leaving a hole. An emptied bucket stays with
 * its heap key until that millisecond comes, so timers armed and cancelled in the same
 * millisecond (a call's timeout) reuse one bucket instead of piling up heap keys.
 */
function removeFromBucket(t: Timer): void {
  const bucket = buckets.get(t.due)!;
  bucket.timers[t.slot] = null;
  if (--bucket.live === 0) {
    bucket.timers.length = 0;
    bucket.next = 0;
  }
  t.slot = -1;
  if (--armed === 0) stopWaiting();
}

/** No timer left: nothing to wait for, and a pending Node timer would keep the process alive for nothing. */
function stopWaiting(): void {
  if (firing) return;
  if (nodeTimer !== null && nodeTimerDue !== -1) {
    clearTimeout(nodeTimer);
    nodeTimer = null;
    nodeTimerDue = Infinity;
  }
  heap.length = 0;
  buckets.clear();
}

/** Takes a timer out of its bucket and its process's list. */
function disarm(t: Timer): void {
  removeFromBucket(t);
  unlinkFromOwner(t);
}

function unlinkFromOwner(t: Timer): void {
  if (!(t.dest instanceof Pid)) return;
  if (t.prev !== null) t.prev.next = t.next;
  else {
    const owner = t.dest.proc;
    if (owner !== null && owner.timers === t) owner.timers = t.next;
  }
  if (t.next !== null) t.next.prev = t.prev;
  t.prev = null;
  t.next = null;
}

/** Delivers every due bucket in order, a slice at a time. */
function fire(): void {
  nodeTimerDue = Infinity;
  firing = true;
  const now = performance.now();
  let budget = FIRE_SLICE;
  while (heap.length > 0 && heap[0]! <= now && budget > 0) {
    const key = heap[0]!;
    const bucket = buckets.get(key);
    if (bucket === undefined) {
      heapPop();
      continue;
    }
    const timers = bucket.timers;
    let i = bucket.next;
    for (; i < timers.length && budget > 0; i++) {
      const t = timers[i];
      if (t === null || t === undefined) continue;
      timers[i] = null;
      t.slot = -1;
      bucket.live--;
      armed--;
      unlinkFromOwner(t);
      budget--;
      deliverTimer(t);
    }
    bucket.next = i;
    if (i >= timers.length) {
      if (buckets.get(key) === bucket) buckets.delete(key);
      heapPop();
    }
  }
  firing = false;
  if (heap.length > 0) {
    if (budget === 0) {
      nodeTimerDue = -1;
      setImmediate(onNodeTimer);
    } else {
      setNodeTimer(heap[0]!);
    }
  }
}

/** The Node timer (or the next slice): the due timers' processes run right after their messages are out. */
function onNodeTimer(): void {
  deliverAndRun(fire);
}

function deliverTimer(t: Timer): void {
  const dest = t.dest;
  const p: Process | undefined = dest instanceof Pid ? (dest.proc ?? undefined) : lookupName(dest);
  const msg = t.wrap ? ({ type: "timeout", ref: t, msg: t.msg } satisfies TimeoutMessage) : t.msg;
  t.msg = undefined;
  if (p !== undefined) p.deliver(msg);
  else if (dest instanceof Pid && dest.node !== nodeName()) {
    try {
      send(dest, msg);
    } catch (err) {
      runtimeLogger().error({ err, dest: dest.toString() }, "timer message for another node could not be sent");
    }
  }
}

/** Erlang's start_timer: after ms, dest gets { type: "timeout", ref, msg } (a TimeoutMessage). */
export function startTimer<M>(ms: number, dest: Pid | string, msg: Sendable<M>): Ref {
  return arm(checkDelay(ms, "startTimer"), checkDest(dest, "startTimer"), msg, true);
}

/** Erlang's send_after: after ms, dest gets msg itself. The runtime's own, whose local tags may be symbols; apps get sendAfterMessage. */
export function sendAfter(ms: number, dest: Pid | string, msg: unknown): Ref {
  return arm(checkDelay(ms, "sendAfter"), checkDest(dest, "sendAfter"), msg, false);
}

/** Erlang's send_after as apps call it (exported as sendAfter): after ms, dest gets msg itself; a symbol or a function does not compile, as with send. */
export const sendAfterMessage: <M>(ms: number, dest: Pid | string, msg: Sendable<M>) => Ref = sendAfter;

/** Whole ms left; due was rounded up when armed, so rounding down never reports more than the delay. */
function remaining(t: Timer): number {
  return Math.max(0, Math.floor(t.due - performance.now()));
}

/** Cancels a timer: the ms that were left, or false if it already fired or was cancelled. */
export function cancelTimer(ref: Ref): number | false {
  if (!(ref instanceof Ref)) throw badarg(`cancelTimer: expected a Ref, got ${describe(ref)}`);
  if (!(ref instanceof Timer) || ref.slot < 0) return false;
  const left = remaining(ref);
  disarm(ref);
  ref.msg = undefined;
  return left;
}

/** The ms left on a timer, or false if it already fired or was cancelled. */
export function readTimer(ref: Ref): number | false {
  if (!(ref instanceof Ref)) throw badarg(`readTimer: expected a Ref, got ${describe(ref)}`);
  if (!(ref instanceof Timer) || ref.slot < 0) return false;
  return remaining(ref);
}

/** Type guard for the message startTimer delivers. */
export function isTimeout(msg: unknown): msg is TimeoutMessage {
  return typeof msg === "object" && msg !== null && (msg as { type?: unknown }).type === "timeout" && (msg as { ref?: unknown }).ref instanceof Ref;
}

/** Armed timers in the whole runtime (for stats and leak checks). */
export function timerCount(): number {
  return armed;
}

/** A process ended: its timers go with it. */
function cancelProcessTimers(p: Process): void {
  let t = p.timers as Timer | null;
  p.timers = null;
  while (t !== null) {
    const next = t.next;
    t.prev = null;
    t.next = null;
    if (t.slot >= 0) removeFromBucket(t);
    t.msg = undefined;
    t = next;
  }
}

setExitHook(CANCEL_TIMERS, cancelProcessTimers);

/** @internal Cancels a timer the runtime armed for itself (a receive's `after`). */
export function cancelTimerRef(ref: Ref): void {
  if (ref instanceof Timer && ref.slot >= 0) disarm(ref);
}

/** @internal One armed timer as the observer lists it. */
export interface DueTimer {
  /** Whole ms until it fires. */
  readonly inMs: number;
  readonly dest: Pid | string;
  /** startTimer's { type: "timeout", … } (true) or sendAfter's message itself. */
  readonly timeout: boolean;
}

/** Heap entries read at most per nextTimers call: emptied buckets' keys are skipped, within this bound. */
const PEEK_BUDGET = 4096;

/**
 * @internal The next `limit` timers due, soonest first, for the observer: a best-first walk
 * from the heap's top that reads a few entries and changes nothing.
 */
export function nextTimers(limit: number): DueTimer[] {
  const out: DueTimer[] = [];
  if (heap.length === 0) return out;
  const now = performance.now();
  const open = [0];
  const listed = new Set<number>();
  for (let budget = PEEK_BUDGET; open.length > 0 && out.length < limit && budget > 0; budget--) {
    let best = 0;
    for (let j = 1; j < open.length; j++) if (heap[open[j]!]! < heap[open[best]!]!) best = j;
    const i = open[best]!;
    open[best] = open[open.length - 1]!;
    open.pop();
    if (2 * i + 1 < heap.length) open.push(2 * i + 1);
    if (2 * i + 2 < heap.length) open.push(2 * i + 2);
    const key = heap[i]!;
    // A key can sit in the heap twice (a bucket emptied, then used again): list its bucket once.
    if (listed.has(key)) continue;
    listed.add(key);
    const bucket = buckets.get(key);
    if (bucket === undefined) continue;
    for (let j = bucket.next; j < bucket.timers.length && out.length < limit; j++) {
      const t = bucket.timers[j];
      if (t !== null && t !== undefined && t.slot >= 0) out.push({ inMs: Math.max(0, Math.ceil(t.due - now)), dest: t.dest, timeout: t.wrap });
    }
  }
  return out;
}

/** @internal A process's timers for the observer's detail: how many are armed, and the ms until the first fires (null: none). */
export function processTimers(p: Process): { count: number; nextInMs: number | null } {
  let count = 0;
  let due = Infinity;
  for (let t = p.timers as Timer | null; t !== null; t = t.next) {
    count++;
    if (t.due < due) due = t.due;
  }
  return { count, nextInMs: count === 0 ? null : Math.max(0, Math.ceil(due - performance.now())) };
}
