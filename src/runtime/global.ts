// Erlang's global: cluster-wide names (register_name, whereis_name, send), freed when their process ends.
import { CorralError, badarg, describe } from "./errors.js";
import { runtimeLogger } from "./log.js";
import { Pid } from "./pid.js";
import { GLOBAL_NAMED } from "./flags.js";
import { RELEASE_GLOBAL, send, setExitHook, type Process, type Sendable } from "./process.js";
import { checkPid } from "./validate.js";

/**
 * Erlang's global: names that span the cluster, kept apart from the local registry (whose
 * calls are synchronous) because a cluster-wide name needs a round trip. Without a cluster
 * the names live in this node; a running cluster stores them in Redis through a GlobalStore.
 * A process may hold several global names; they are released when it ends.
 */
export interface GlobalStore {
  /** False when a live process holds the name already. */
  register(name: string, pid: Pid): Promise<boolean>;
  /** Frees name; with `holder`, only while that pid still holds it. */
  unregister(name: string, holder: Pid | undefined): Promise<void>;
  whereis(name: string): Promise<Pid | undefined>;
  names(): Promise<string[]>;
}

/** The single-node store: a name is taken while its pid lives. */
class LocalStore implements GlobalStore {
  readonly table = new Map<string, Pid>();

  register(name: string, pid: Pid): Promise<boolean> {
    const held = this.table.get(name);
    if (held !== undefined && held.proc !== null && held !== pid) return Promise.resolve(false);
    this.table.set(name, pid);
    return Promise.resolve(true);
  }

  unregister(name: string, holder: Pid | undefined): Promise<void> {
    if (holder === undefined || this.table.get(name) === holder) this.table.delete(name);
    return Promise.resolve();
  }

  whereis(name: string): Promise<Pid | undefined> {
    const pid = this.table.get(name);
    return Promise.resolve(pid?.proc != null ? pid : undefined);
  }

  names(): Promise<string[]> {
    return Promise.resolve(Array.from(this.table.keys()).filter((name) => this.table.get(name)!.proc !== null));
  }
}

const localStore = new LocalStore();
let store: GlobalStore = localStore;

/** Names held by local processes, both ways, so a process's end releases its names. */
const namesOf = new Map<Process, string[]>();
const holderOf = new Map<string, Process>();

/** @internal A cluster swaps the store in and out (null: back to this node alone). */
export function setGlobalStore(s: GlobalStore | null): void {
  store = s ?? localStore;
}

/** @internal The names local processes hold: a cluster reasserts them after Redis comes back. */
export function localGlobalNames(): [string, Pid][] {
  return Array.from(holderOf, ([name, p]) => [name, p.pid]);
}

function checkName(name: unknown, fn: string): string {
  if (typeof name !== "string" || name.length === 0) throw badarg(`${fn}: name must be a non-empty string, got ${describe(name)}`);
  return name;
}

function forget(name: string): void {
  const p = holderOf.get(name);
  if (p === undefined) return;
  holderOf.delete(name);
  const list = namesOf.get(p);
  if (list === undefined) return;
  const i = list.indexOf(name);
  if (i >= 0) list.splice(i, 1);
  if (list.length === 0) namesOf.delete(p);
}

/**
 * Erlang's global:register_name: registers a live local pid under a cluster-wide name.
 * Rejects with ERR_NAME_TAKEN while another live process holds it.
 */
export async function registerGlobal(name: string, pid: Pid): Promise<void> {
  checkName(name, "registerGlobal");
  const p = checkPid(pid, "registerGlobal").proc;
  if (p === null) throw new CorralError("ERR_NOPROC", `registerGlobal: ${pid} is not a live process of this node`);
  const other = holderOf.get(name);
  if (other !== undefined && other !== p) throw new CorralError("ERR_NAME_TAKEN", `registerGlobal: ${JSON.stringify(name)} is already registered to ${other.pid}`);
  // Claimed before the round trip, so a process that ends meanwhile still releases the name.
  if (other === undefined) {
    holderOf.set(name, p);
    const list = namesOf.get(p);
    if (list === undefined) namesOf.set(p, [name]);
    else list.push(name);
    p.flags |= GLOBAL_NAMED;
  }
  let taken: boolean;
  try {
    taken = !(await store.register(name, pid));
  } catch (err) {
    if (holderOf.get(name) === p) forget(name);
    throw err;
  }
  if (taken) {
    if (holderOf.get(name) === p) forget(name);
    const holder = await store.whereis(name);
    throw new CorralError("ERR_NAME_TAKEN", `registerGlobal: ${JSON.stringify(name)} is already registered to ${holder ?? "another process"}`);
  }
}

/** Erlang's global:unregister_name: frees the name wherever its holder runs. */
export async function unregisterGlobal(name: string): Promise<void> {
  checkName(name, "unregisterGlobal");
  forget(name);
  await store.unregister(name, undefined);
}

/** Erlang's global:whereis_name. */
export function whereisGlobal(name: string): Promise<Pid | undefined> {
  return store.whereis(checkName(name, "whereisGlobal"));
}

/** Erlang's global:send: rejects with ERR_UNKNOWN_NAME when nobody holds the name. */
export async function sendGlobal<M>(name: string, msg: Sendable<M>): Promise<void> {
  const pid = await store.whereis(checkName(name, "sendGlobal"));
  if (pid === undefined) throw new CorralError("ERR_UNKNOWN_NAME", `sendGlobal: no process registered globally as ${JSON.stringify(name)}`);
  send(pid, msg);
}

/** Erlang's global:registered_names. */
export function registeredGlobal(): Promise<string[]> {
  return store.names();
}

/** The process ended: its global names are free again. */
function releaseGlobalNames(p: Process): void {
  const names = namesOf.get(p);
  if (names === undefined) return;
  namesOf.delete(p);
  for (const name of names) {
    holderOf.delete(name);
    store.unregister(name, p.pid).catch((err: unknown) => runtimeLogger().error({ err, name }, "global name release failed"));
  }
}

setExitHook(RELEASE_GLOBAL, releaseGlobalNames);
