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
/** A restless process asked to hibernate: its state is evicted after a quiet period unless a message comes first (hibernate.ts). */
export const EVICT_PENDING = 2048;
/** Listed in the quiet-period sweep's group of the epoch in EPOCH_BITS (hibernate.ts). */
export const SWEEP_LISTED = 4096;
/** Three bits: the hibernation epoch (whole seconds, mod 8) of the last eviction or sweep listing. */
export const EPOCH_SHIFT = 13;
export const EPOCH_BITS = 7 << EPOCH_SHIFT;
/** Three bits: wakes in a row that came soon after the eviction, up to hibernate.ts's RESTLESS_AFTER. */
export const QUICK_SHIFT = 16;
export const QUICK_BITS = 7 << QUICK_SHIFT;
