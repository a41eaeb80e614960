// erlang:statistics/1 and the VM's own counters: plain numbers bumped where things already happen, read at scrape time.

/**
 * @internal Running totals since the node started. One object of numbers with a fixed shape:
 * a count is one property increment on a path that runs anyway, never a call into a metrics
 * library (src/observe/metrics.ts reads these when Prometheus scrapes).
 */
export const stats = {
  /** Processes that crashed (a callback threw or its promise rejected). */
  crashes: 0,
  /** Messages processes took from their mailboxes (a callback turn, or a receive that matched): the observer's messages/s. */
  messagesHandled: 0,
  hibernations: 0,
  wakes: 0,
  /** WebSocket frames the ports delivered to their connections, and wrote for them. */
  framesIn: 0,
  framesOut: 0,
  /** Bytes read and written by WebSocket sockets that have closed (open ones are summed at scrape time). */
  closedBytesIn: 0,
  closedBytesOut: 0,
  /** Children a supervisor restarted. */
  supervisorRestarts: 0,
  /** Sessions (bullet) opened, open now, away now (no transport, inside their resume window), and resumed. */
  sessionsOpened: 0,
  sessionsOpen: 0,
  sessionsAway: 0,
  sessionsResumed: 0,
};

/** @internal WebSocket connections ended, by close code ("1006": none was exchanged). */
export const closeCodes = new Map<number, number>();
/** @internal Connection ends by terminate reason, reduced to a bounded label ("remote", "crash", "error:badframe", …). */
export const terminateReasons = new Map<string, number>();
/** @internal WebSocket handshakes by outcome ("upgraded", "426", "400", "403", "failed"). */
export const handshakes = new Map<string, number>();

/** @internal Adds one to a labelled count: for events once per connection, never per frame. */
export function countOne<K>(counts: Map<K, number>, key: K): void {
  counts.set(key, (counts.get(key) ?? 0) + 1);
}
