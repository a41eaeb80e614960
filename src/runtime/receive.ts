// Erlang's receive … after: selective receive for async-function processes, with a timeout.
import { badarg, describe } from "./errors.js";
import type { Ref } from "./pid.js";
import type { Process } from "./process.js";
import { BUDGET } from "./scheduler.js";
import { stats } from "./stats.js";
import { cancelTimerRef, sendAfter } from "./timers.js";

/** @internal A pending receive: a message on its way in that matches goes straight to it. */
export class Waiter {
  pred: ((msg: unknown) => boolean) | undefined;
  readonly resolve: (msg: unknown) => void;
  /** The `after`: a message to the process itself, armed with sendAfter. */
  timer: Ref | null = null;

  constructor(pred: ((msg: unknown) => boolean) | undefined, resolve: (msg: unknown) => void) {
    this.pred = pred;
    this.resolve = resolve;
  }

  /** Process.deliver's question: takes msg and ends the receive when it matches. */
  offer(p: Process, msg: unknown): boolean {
    if (!this.matches(p, msg)) return false;
    this.cancel(p);
    p.handled++;
    stats.messagesHandled++;
    this.resolve(msg);
    return true;
  }

  /** The receive is over (matched, or its process ended): its `after` goes too. */
  cancel(p: Process): void {
    p.waiter = null;
    if (this.timer !== null) cancelTimerRef(this.timer);
  }

  /**
   * Runs the pattern for a message on its way in. The pattern is the receiver's code
   * running in the sender's call: if it throws, the receiver crashes, never the sender.
   */
  private matches(p: Process, msg: unknown): boolean {
    if (this.pred === undefined) return true;
    try {
      return this.pred(msg);
    } catch (err) {
      p.crashLater(err, msg);
      return false;
    }
  }
}

/** @internal Removes and returns the first queued message matching pred (selective receive). */
export function takeMatching(p: Process, pred: ((msg: unknown) => boolean) | undefined): { found: boolean; msg: unknown } {
  const q = p.mailbox;
  for (let i = p.head; i < q.length; i++) {
    const msg = q[i];
    if (pred === undefined || pred(msg)) {
      if (i === p.head) p.dequeue();
      else q.splice(i, 1);
      p.handled++;
      stats.messagesHandled++;
      return { found: true, msg };
    }
  }
  return { found: false, msg: undefined };
}

/** A never-settling promise: what receive gives a process that has already ended. */
const NEVER = new Promise<never>(() => {});

/** The runtime's own message that ends a receive's `after`. */
class ReceiveTimeout {
  constructor(readonly waiter: Waiter) {}
}

/** @internal ctx.receive of p: the oldest queued match at once, else the next match to arrive, else undefined after timeoutMs. */
export function receiveIn(p: Process, pred: ((msg: unknown) => boolean) | undefined, timeoutMs: number | undefined): Promise<never> {
  if (pred !== undefined && typeof pred !== "function") throw badarg(`receive: pattern must be a function, got ${describe(pred)}`);
  if (timeoutMs !== undefined && (typeof timeoutMs !== "number" || Number.isNaN(timeoutMs) || timeoutMs < 0)) {
    throw badarg(`receive: timeout must be a number of ms >= 0 or Infinity, got ${describe(timeoutMs)}`);
  }
  if (!p.alive) return NEVER;
  if (p.waiter !== null) throw badarg("receive: this process is already waiting in receive");
  const hit = takeMatching(p, pred);
  if (hit.found) return resolveQueued(hit.msg);
  if (timeoutMs === 0) return Promise.resolve(undefined as never);
  const waiting = new Promise<unknown>((resolve) => {
    const waiter = new Waiter(pred, resolve);
    if (timeoutMs !== undefined && timeoutMs !== Infinity) {
      waiter.timer = sendAfter(timeoutMs, p.pid, new ReceiveTimeout(waiter));
      // The timeout message must reach this waiter even though the pattern would reject it.
      waiter.pred = (msg) => (msg instanceof ReceiveTimeout ? msg.waiter === waiter : pred === undefined || pred(msg));
    }
    p.waiter = waiter;
  });
  return waiting.then((msg) => (msg instanceof ReceiveTimeout ? undefined : msg)) as Promise<never>;
}

/**
 * A receive that finds its message queued resolves at once; a loop of those is one long
 * microtask chain, so every BUDGET of them waits for setImmediate and I/O gets its turn.
 */
let immediateReceives = 0;

function resolveQueued(msg: unknown): Promise<never> {
  if (++immediateReceives < BUDGET) return Promise.resolve(msg as never);
  return new Promise<never>((resolve) =>
    setImmediate(() => {
      immediateReceives = 0;
      resolve(msg as never);
    }),
  );
}
