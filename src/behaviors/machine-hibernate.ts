// gen_statem's hibernate for an xstate machine: the snapshot and pending delays as plain data; every read of xstate internals is here.
/*
 * xstate persists a machine's snapshot but not its pending delays (statelyai/xstate#5331), so
 * hibernation reads them from the actor system's `_scheduledEvents` and names their actors by
 * id path through `_parent`, then re-arms them through `system.scheduler.schedule`, whose
 * timeouts go through the actor's clock at once. None of that is public API: the probe below
 * checks it when this module loads and stops the program with the xstate version if it moved.
 */
import { createRequire } from "node:module";
import { createActor, createMachine, type AnyActorRef, type EventObject, type Snapshot } from "xstate";
import type { Ref } from "../runtime/pid.js";

/** A delay that was pending when the machine hibernated; actors named by their id path from the root. */
export interface SavedDelay {
  readonly source: readonly string[];
  readonly target: readonly string[];
  readonly event: EventObject;
  readonly id: string;
  /** performance.now() ms when it is due. */
  readonly due: number;
}

/** A hibernated machine: plain data (and one Ref, which hibernation keeps by identity). */
export interface Hibernated {
  readonly snapshot: Snapshot<unknown>;
  readonly delays: readonly SavedDelay[];
  /** The timer that wakes the connection when the first delay is due. */
  readonly wake: Ref | null;
}

export function isHibernated(state: unknown): state is Hibernated {
  return typeof state === "object" && state !== null && "snapshot" in state && "delays" in state;
}

/** A delay between actors outside the root's tree: it cannot be named, so it cannot be persisted. */
export interface Unnamed {
  readonly eventType: string;
}

/**
 * The delays pending in root's actor system, in due order (performance.now() ms, from now),
 * or the first one whose actors cannot be named from root.
 */
export function pendingDelays(root: AnyActorRef, now: number): SavedDelay[] | Unnamed {
  const scheduled = root.system.getSnapshot()._scheduledEvents;
  const delays: SavedDelay[] = [];
  const wallNow = Date.now();
  for (const key in scheduled) {
    const s = scheduled[key]!;
    const source = pathOf(s.source, root);
    const target = pathOf(s.target, root);
    if (source === null || target === null) return { eventType: s.event.type };
    // startedAt is xstate's Date.now(): the time left is carried over to the monotonic clock.
    delays.push({ source, target, event: s.event, id: s.id, due: now + (s.startedAt + s.delay - wallNow) });
  }
  // In due order, so delays that are overdue at the wake-up fire in the order they were due.
  if (delays.length > 1) delays.sort((a, b) => a.due - b.due);
  return delays;
}

/**
 * Gives root's scheduler the saved delays again with the time that was left, so leaving a
 * state cancels them as before; each goes to the actor's clock before this returns.
 */
export function scheduleDelays(root: AnyActorRef, delays: readonly SavedDelay[]): void {
  const scheduler = root.system.scheduler;
  const now = performance.now();
  for (const d of delays) {
    const source = resolvePath(root, d.source);
    const target = resolvePath(root, d.target);
    if (source === undefined || target === undefined) continue;
    scheduler.schedule(source, target, d.event, Math.max(0, Math.ceil(d.due - now)), d.id);
  }
}

/** The ids from the root down to ref; null when ref is not in the root's tree. */
function pathOf(ref: AnyActorRef, root: AnyActorRef): string[] | null {
  const path: string[] = [];
  let r: AnyActorRef | undefined = ref;
  while (r !== root) {
    if (r === undefined) return null;
    path.push(r.id);
    r = r._parent;
  }
  return path.reverse();
}

function resolvePath(root: AnyActorRef, path: readonly string[]): AnyActorRef | undefined {
  let r: AnyActorRef | undefined = root;
  for (const id of path) {
    r = childrenOf(r)?.[id];
    if (r === undefined) return undefined;
  }
  return r;
}

function childrenOf(ref: AnyActorRef): Record<string, AnyActorRef | undefined> | undefined {
  return (ref.getSnapshot() as { children?: Record<string, AnyActorRef | undefined> }).children;
}

/* ---------------------------------------------------------------- the load-time probe */

/**
 * Runs a machine whose invoked child has a delay, on a clock that only records, and names
 * the first internal above that is not as this module reads it (null: all there).
 */
function probeInternals(): string | null {
  let armed = 0;
  const clock = {
    setTimeout: () => ++armed,
    clearTimeout: () => {},
  };
  const child = createMachine({ initial: "a", states: { a: { after: { 1000: "b" } }, b: {} } });
  const root = createActor(createMachine({ invoke: { id: "child", src: child } }), { clock });
  root.start();
  try {
    const system = root.system as Partial<AnyActorRef["system"]>;
    const scheduled = typeof system.getSnapshot === "function" ? system.getSnapshot()._scheduledEvents : undefined;
    if (typeof scheduled !== "object" || scheduled === null) return "system.getSnapshot()._scheduledEvents";
    const entries = Object.values(scheduled);
    if (entries.length !== 1 || armed !== 1) return "system.getSnapshot()._scheduledEvents (one entry per delay)";
    const s = entries[0]!;
    if (typeof s.startedAt !== "number" || s.delay !== 1000 || typeof s.id !== "string" || typeof s.event?.type !== "string") {
      return "the fields { startedAt, delay, id, event } of a scheduled event";
    }
    const invoked = childrenOf(root)?.child;
    if (invoked === undefined) return "snapshot.children by id";
    if (s.source !== invoked || s.target !== invoked) return "the source and target actors of a scheduled event";
    if (invoked._parent !== root) return "ActorRef._parent";
    if (typeof system.scheduler?.schedule !== "function") return "system.scheduler.schedule";
    const before = armed;
    system.scheduler.schedule(root, root, { type: "probe" }, 0, "probe");
    if (armed === before) return "system.scheduler.schedule handing its timeout to the clock at once";
    return null;
  } finally {
    root.stop();
  }
}

const missing = probeInternals();
if (missing !== null) {
  const { version } = createRequire(import.meta.url)("xstate/package.json") as { version: string };
  throw new Error(`corral: machineHandler's hibernation reads xstate internals that xstate ${version} no longer has as expected (${missing}); corral is tested with xstate ~5.33`);
}
