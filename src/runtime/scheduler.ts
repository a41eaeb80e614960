// The BEAM scheduler's run queue: runnable processes take turns, a batch of messages each, yielding to I/O between budgets.
import type { Process } from "./process.js";

/** Messages one process may handle per turn before the next runnable process gets its turn. */
export const BATCH = 64;
/** Work units per run of the loop before it yields to I/O with setImmediate. */
export const BUDGET = 1024;

/** The run queue: runnable processes in order, read from `head`. */
const queue: Process[] = [];
const COMPACT_AT = 4096;
let head = 0;
/** A drain is already due (microtask or setImmediate): new work just joins the queue. */
let due = false;

/** Settled once: `then(drain)` queues a microtask without the AsyncResource queueMicrotask makes per call. */
const settled = Promise.resolve();

/** Queues a runnable process; the caller has set its QUEUED flag. */
export function schedule(p: Process): void {
  queue.push(p);
  if (!due) {
    due = true;
    void settled.then(drain);
  }
}

/**
 * Runs `deliver` (a timer wake-up handing out its messages), then at once the processes it
 * made runnable: in the same macrotask, with no microtask queued for them.
 */
export function deliverAndRun(deliver: () => void): void {
  if (due) {
    deliver();
    return;
  }
  due = true;
  try {
    deliver();
  } finally {
    drain();
  }
}

/**
 * Runs queued processes until the queue is empty or the budget is spent; then the rest
 * waits for setImmediate, so sockets and timers get their turn between budgets.
 */
function drain(): void {
  let budget = BUDGET;
  while (head < queue.length) {
    const p = queue[head]!;
    queue[head++] = undefined as unknown as Process;
    try {
      budget -= p.run(BATCH);
    } catch (err) {
      // A fault in the runtime itself: end that process rather than stall every other one.
      p.crash(err, undefined);
    }
    if (budget <= 0 && head < queue.length) {
      // Keep reading from `head` after the yield; copying the rest now would make a long queue quadratic.
      if (head >= COMPACT_AT && head * 2 >= queue.length) {
        queue.splice(0, head);
        head = 0;
      }
      setImmediate(drain);
      return;
    }
  }
  queue.length = 0;
  head = 0;
  due = false;
}

