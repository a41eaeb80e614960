// Erlang's pids and references (self(), make_ref()): identities that name a process or a monitor across nodes.
import { badarg } from "./errors.js";
import { freezeNodeName, nodeName } from "./node.js";
import type { Process } from "./process.js";

let nextPidId = 1;
let nextRefId = 1;

/** Live local pids by id: processes(), Pid.parse and the process count read it. */
export const livePids = new Map<number, Pid>();

/**
 * A process identifier, printed `<node.id>`. The pid of a live local process is a single
 * object, so `===` works on it; `equals` works on any two pids.
 */
export class Pid {
  readonly node: string;
  readonly id: number;
  /** @internal The process while it lives; null once it has exited or when remote. */
  proc: Process | null;

  /** @internal Use spawn(); Pid.parse() for a printed pid. */
  constructor(node: string, id: number, proc: Process | null) {
    this.node = node;
    this.id = id;
    this.proc = proc;
  }

  equals(other: unknown): boolean {
    return other === this || (other instanceof Pid && other.id === this.id && other.node === this.node);
  }

  toString(): string {
    return `<${this.node}.${this.id}>`;
  }

  toJSON(): string {
    return this.toString();
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return this.toString();
  }

  /** Parses `<node.id>`; a live local pid comes back as the same object. */
  static parse(text: string): Pid {
    const m = typeof text === "string" ? /^<(.+)\.(\d+)>$/.exec(text) : null;
    if (m === null) throw badarg(`Pid.parse: not a pid: ${JSON.stringify(text)}`);
    const id = Number(m[2]);
    if (!Number.isSafeInteger(id)) throw badarg(`Pid.parse: id out of range in ${text}`);
    return pidOf(m[1]!, id);
  }
}

/** @internal The pid named by node and id: the live local one itself, else a detached copy. */
export function pidOf(node: string, id: number): Pid {
  if (node === nodeName()) return livePids.get(id) ?? new Pid(node, id, null);
  return new Pid(node, id, null);
}

/** Ids one incarnation of a node may use before the next one's begin. */
const INCARNATION_IDS = 2 ** 36;

/**
 * @internal Erlang's creation: a node that restarts under the same name starts its ids past
 * every earlier run's, so a pid saved from the last run can never reach a new process.
 * Only before the first pid or ref exists; false when too late.
 */
export function setCreation(creation: number): boolean {
  if (nextPidId !== 1 || nextRefId !== 1) return false;
  const base = (creation % Math.floor(Number.MAX_SAFE_INTEGER / INCARNATION_IDS)) * INCARNATION_IDS;
  nextPidId = base + 1;
  nextRefId = base + 1;
  return true;
}

/** @internal */
export function newPid(proc: Process): Pid {
  freezeNodeName();
  const pid = new Pid(nodeName(), nextPidId++, proc);
  livePids.set(pid.id, pid);
  return pid;
}

/** A unique reference: monitors and timers are named by one. */
export class Ref {
  readonly node: string;
  readonly id: number;

  /** @internal Use makeRef(); node and id only for a ref that came from another node. */
  constructor(node?: string, id?: number) {
    if (node === undefined || id === undefined) {
      freezeNodeName();
      this.node = nodeName();
      this.id = nextRefId++;
    } else {
      this.node = node;
      this.id = id;
    }
  }

  equals(other: unknown): boolean {
    return other === this || (other instanceof Ref && other.id === this.id && other.node === this.node);
  }

  toString(): string {
    return `#Ref<${this.node}.${this.id}>`;
  }

  toJSON(): string {
    return this.toString();
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return this.toString();
  }
}

/** Erlang's make_ref(). */
export function makeRef(): Ref {
  return new Ref();
}
