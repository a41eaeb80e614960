// cowboy_websocket's idle_timeout, without a timer per connection: one sweep per listener and timeout value.

/** The most sweeps a port counts (15 bits of its flags): a timeout needing more (thousands of years) never comes. */
export const MAX_SWEEPS = 2 ** 15 - 1;

/** What a sweep needs of a port: its place in the intrusive list, and its own check. */
export interface IdlePort<P extends IdlePort<P>> {
  idlePrev: P | null;
  idleNext: P | null;
  /** One sweep: a byte received since the last one counts as activity; `limit` sweeps without one is the timeout. */
  sweep(limit: number): void;
}

/**
 * Idle timeouts without a timer per connection: the ports of a listener are grouped by
 * idle timeout, and each group sweeps its ports IDLE_SWEEPS times per timeout, comparing
 * socket.bytesRead with the previous sweep. A connection closes between idleTimeout and
 * idleTimeout × (1 + 1 / IDLE_SWEEPS) (at least 1 ms more) after the last byte it received.
 */
const IDLE_SWEEPS = 10;
/** The longest delay a Node timer takes. */
const TIMER_MAX = 2 ** 31 - 1;

/** The open ports of one listener, by idle timeout. */
export class PortSet<P extends IdlePort<P>> {
  private readonly groups = new Map<number, IdleGroup<P>>();
  size = 0;

  /** The group of ports with this idle timeout (Infinity: never swept). */
  group(timeout: number): IdleGroup<P> {
    let g = this.groups.get(timeout);
    if (g === undefined) {
      g = new IdleGroup<P>(this, timeout);
      this.groups.set(timeout, g);
    }
    return g;
  }

  /** @internal */
  drop(group: IdleGroup<P>): void {
    if (this.groups.get(group.timeout) === group) this.groups.delete(group.timeout);
  }

  /** Every open port, taken at the time of the call. */
  all(): P[] {
    const out: P[] = [];
    for (const g of this.groups.values()) g.collect(out);
    return out;
  }
}

/** @internal The ports of one listener with one idle timeout (an intrusive list), and their sweep timer. */
export class IdleGroup<P extends IdlePort<P>> {
  private head: P | null = null;
  /** Sweeps without a received byte that make the timeout. */
  private readonly limit: number;
  private readonly period: number;
  /** False for Infinity, and for timeouts beyond what the sweeps count (thousands of years). */
  private readonly swept: boolean;
  private timer: NodeJS.Timeout | undefined = undefined;

  constructor(
    readonly owner: PortSet<P>,
    readonly timeout: number,
  ) {
    // Timers count whole milliseconds: a timeout under IDLE_SWEEPS ms takes a sweep per millisecond.
    this.limit = Math.max(Math.min(IDLE_SWEEPS, Math.ceil(timeout)), Math.ceil(timeout / TIMER_MAX));
    // Rounded up, so limit × period is never shorter than the timeout.
    this.period = Math.ceil(timeout / this.limit);
    this.swept = this.limit <= MAX_SWEEPS;
  }

  add(port: P): void {
    port.idleNext = this.head;
    if (this.head !== null) this.head.idlePrev = port;
    this.head = port;
    this.owner.size++;
    if (this.timer === undefined && this.swept) {
      this.timer = setInterval(sweepGroup, this.period, this);
      // The sockets keep the process running, never the sweep.
      this.timer.unref();
    }
  }

  delete(port: P): void {
    const { idlePrev: prev, idleNext: next } = port;
    if (prev === null && this.head !== port) return;
    if (prev === null) this.head = next;
    else prev.idleNext = next;
    if (next !== null) next.idlePrev = prev;
    port.idlePrev = port.idleNext = null;
    this.owner.size--;
    if (this.head !== null) return;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.owner.drop(this);
  }

  /** Appends every port of the group to `into`. */
  collect(into: P[]): void {
    for (let port = this.head; port !== null; port = port.idleNext) into.push(port);
  }

  /** @internal */
  sweep(): void {
    const limit = this.limit;
    for (let port = this.head; port !== null; port = port.idleNext) port.sweep(limit);
  }
}

function sweepGroup<P extends IdlePort<P>>(group: IdleGroup<P>): void {
  group.sweep();
}
