import { broadcast, isDown, members, monitor, ok, self, send, sendAfter, spawn, spawnLink, whereis, type ChildSpec, type Pid, type Ref } from "corral";

/**
 * Who joined and left a room, coalesced: one process per room and node collects the changes
 * and broadcasts one summary per interval, so a join storm of N members costs each member one
 * wake-up per interval instead of N (docs/processes.md, "Presence without a storm").
 */
export interface PresenceSummary {
  readonly type: "presence";
  /** Members of the room now, on every node. */
  readonly count: number;
  /** The first MAX_NAMED names that joined (left) since the last summary... */
  readonly joined: readonly string[];
  readonly left: readonly string[];
  /** ...and how many more did, unnamed. */
  readonly moreJoined: number;
  readonly moreLeft: number;
}

/** At most one summary per member per this many ms. */
export const PRESENCE_MS = 500;
/** Names listed per summary and direction: a storm's summary stays small. */
export const MAX_NAMED = 10;

type PresenceMsg = { readonly type: "hello"; readonly pid: Pid; readonly name: string } | { readonly type: "flush" };

const isPresenceMsg = (msg: unknown): msg is PresenceMsg => typeof msg === "object" && msg !== null && "type" in msg;

interface PresenceState {
  readonly room: string;
  /** The members this process watches, by their monitor. */
  readonly names: Map<Ref, string>;
  joined: string[];
  left: string[];
  moreJoined: number;
  moreLeft: number;
  /** A flush is armed. */
  armed: boolean;
  lastFlush: number;
}

function note(list: string[], name: string): number {
  if (list.length < MAX_NAMED) {
    list.push(name);
    return 0;
  }
  return 1;
}

/** Arms one flush, PRESENCE_MS after the last: changes until then ride along with it. */
function arm(s: PresenceState): void {
  if (s.armed) return;
  s.armed = true;
  sendAfter(Math.max(0, s.lastFlush + PRESENCE_MS - Date.now()), self(), { type: "flush" } satisfies PresenceMsg);
}

function flush(s: PresenceState): void {
  s.armed = false;
  s.lastFlush = Date.now();
  const summary: PresenceSummary = { type: "presence", count: members(s.room).length, joined: s.joined, left: s.left, moreJoined: s.moreJoined, moreLeft: s.moreLeft };
  broadcast(s.room, summary);
  s.joined = [];
  s.left = [];
  s.moreJoined = 0;
  s.moreLeft = 0;
}

const presence = {
  init: (room: string): PresenceState => ({ room, names: new Map(), joined: [], left: [], moreJoined: 0, moreLeft: 0, armed: false, lastFlush: 0 }),
  handleInfo(msg: unknown, s: PresenceState) {
    if (isDown(msg)) {
      const name = s.names.get(msg.ref);
      if (name === undefined) return ok(s);
      s.names.delete(msg.ref);
      s.moreLeft += note(s.left, name);
      arm(s);
    } else if (isPresenceMsg(msg) && msg.type === "flush") {
      flush(s);
    } else if (isPresenceMsg(msg) && msg.type === "hello") {
      s.names.set(monitor(msg.pid), msg.name);
      s.moreJoined += note(s.joined, msg.name);
      arm(s);
    }
    return ok(s);
  },
};

const presenceName = (room: string): string => `${room}:presence`;

/** Tells the room's presence process (started on first use) that the caller joined as name; it notices the leave by itself. */
export function announce(room: string, name: string): void {
  const registered = presenceName(room);
  const pid = whereis(registered) ?? spawn(presence, room, { name: registered });
  send(pid, { type: "hello", pid: self(), name } satisfies PresenceMsg);
}

/**
 * The room's presence process as a child of the demo's supervisor (app/demo/supervisor.ts).
 * Its start adopts the one announce may have started between a crash and the restart (the
 * supervisor links whatever start returns), so the name never makes the restart fail.
 */
export function presenceChild(room: string): ChildSpec {
  const registered = presenceName(room);
  return { id: registered, start: () => whereis(registered) ?? spawnLink(presence, room, { name: registered }) };
}
