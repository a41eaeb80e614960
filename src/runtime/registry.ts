// erlang:register/2, unregister/1, whereis/1 and registered/0: the local name registry.
import { CorralError, badarg, describe } from "./errors.js";
import { Pid } from "./pid.js";
import type { Process } from "./process.js";
import { checkPid } from "./validate.js";

/** Erlang's local name registry: one name per process, one process per name. */
const names = new Map<string, Process>();

function checkName(name: unknown, fn: string): string {
  if (typeof name !== "string" || name.length === 0) throw badarg(`${fn}: name must be a non-empty string, got ${describe(name)}`);
  return name;
}

/** @internal */
export function lookupName(name: string): Process | undefined {
  return names.get(name);
}

/** @internal */
export function registerProcess(name: string, p: Process): void {
  checkName(name, "register");
  const holder = names.get(name);
  if (holder !== undefined) throw new CorralError("ERR_NAME_TAKEN", `register: ${JSON.stringify(name)} is already registered to ${holder.pid}`);
  if (p.name !== undefined) throw badarg(`register: ${p.pid} is already registered as ${JSON.stringify(p.name)}`);
  names.set(name, p);
  p.name = name;
}

/** @internal The process ended: its name is free again. */
export function unregisterProcess(p: Process): void {
  if (p.name !== undefined && names.get(p.name) === p) names.delete(p.name);
  p.name = undefined;
}

/** Registers pid under name. A taken name, a process that has a name, or a dead pid: a clear Error. */
export function register(name: string, pid: Pid): void {
  const p = checkPid(pid, "register").proc;
  if (p === null) throw new CorralError("ERR_NOPROC", `register: ${pid} is not alive`);
  registerProcess(name, p);
}

/** Frees a name; unregistering a name that is not registered throws, as in Erlang. */
export function unregister(name: string): void {
  const p = names.get(checkName(name, "unregister"));
  if (p === undefined) throw new CorralError("ERR_UNKNOWN_NAME", `unregister: ${JSON.stringify(name)} is not registered`);
  unregisterProcess(p);
}

export function whereis(name: string): Pid | undefined {
  return names.get(checkName(name, "whereis"))?.pid;
}

/** Every registered name. */
export function registered(): string[] {
  return Array.from(names.keys());
}
