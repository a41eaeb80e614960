// erlang:process_flag/2 and the VM's process status bits: a process's booleans, one small integer for all of them.

/** In the scheduler's run queue. */
export const QUEUED = 1;
/** A callback of this process is on the stack. */
export const RUNNING = 2;
/** A callback's promise holds the mailbox until it settles. */
export const BUSY = 4;
/** The loop's start (init) has run. */
export const STARTED = 8;
/** process_flag(trap_exit, true): exit signals arrive as EXIT messages. */
export const TRAP_EXIT = 16;
/** Hibernate once this turn ends with an empty mailbox. */
export const HIBERNATE_NEXT = 32;
/** The state is evicted (hibernate.ts) until the next message. */
export const HIBERNATED = 64;
/** Ended: every later signal or message is dropped. */
export const DEAD = 128;
/** The process has links or monitors across nodes (dist.ts keeps them). */
export const DIST_LINKED = 256;
/** The process holds cluster-wide names (global.ts keeps them). */
export const GLOBAL_NAMED = 512;
/** The hibernated state is a bare serialized string (hibernate.ts). */
export const FROZEN_BYTES = 1024;
/** Asked to hibernate, evicted once a quiet period passes without a message (hibernate.ts). */
export const EVICT_PENDING = 2048;
/** Listed in hibernate.ts's sweep for the request at TICK_BITS. */
export const SWEEP_LISTED = 4096;
/** Eight bits: the tick (hibernate.ts's 125 ms, mod 256) of the last hibernate request. */
export const TICK_SHIFT = 13;
export const TICK_BITS = 255 << TICK_SHIFT;
/** Six bits: the quiet period, in ticks, the next hibernate request waits before evicting; 0: evict at once. */
export const WAIT_SHIFT = 21;
export const WAIT_BITS = 63 << WAIT_SHIFT;
/** Two bits: short gaps in a row between a hibernate request and the next message, up to 3 (hibernate.ts). */
export const SHORT_SHIFT = 27;
export const SHORT_BITS = 3 << SHORT_SHIFT;
