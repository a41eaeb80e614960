// global's name table across nodes, kept in Redis: who holds which cluster-wide name (and which held names can still be reached).
import type { GlobalStore } from "../runtime/global.js";
import { Pid } from "../runtime/pid.js";

/** Where a Redis command goes: the cluster's command connection. */
export interface RedisCommands {
  sendCommand(args: (string | Buffer)[]): Promise<unknown>;
}

// A name held by a pid of a node whose liveness key has expired is free again.
const REGISTER = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and cur ~= ARGV[2] then
  local owner = string.match(cur, '^<(.+)%.%d+>$')
  if owner and redis.call('EXISTS', ARGV[3] .. owner) == 1 then return 0 end
  if owner then redis.call('SREM', ARGV[4] .. owner, ARGV[1]) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return 1`;

const UNREGISTER = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur or (ARGV[2] ~= '' and cur ~= ARGV[2]) then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local owner = string.match(cur, '^<(.+)%.%d+>$')
if owner then redis.call('SREM', ARGV[3] .. owner, ARGV[1]) end
return 1`;

// Frees every name a node's pids hold; any surviving node may run it, more than once.
const RELEASE_NODE = `
local prefix = ARGV[1]
for _, name in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local cur = redis.call('HGET', KEYS[1], name)
  if cur and string.sub(cur, 1, #prefix) == prefix then redis.call('HDEL', KEYS[1], name) end
end
redis.call('DEL', KEYS[2])
return 1`;

/**
 * Global names in Redis: a hash name → printed pid, and per node the set of names its pids
 * hold, so a lost node's names can be freed. Every change is one Lua script, atomic.
 */
export class RedisNames implements GlobalStore {
  constructor(
    private readonly redis: RedisCommands,
    private readonly prefix: string,
    private readonly node: string,
    /** Whether a node is up as this node sees it: a name whose holder's node is lost is no one's. */
    private readonly isUp: (node: string) => boolean,
  ) {}

  private get table(): string {
    return `${this.prefix}:names`;
  }

  private owned(node: string): string {
    return `${this.prefix}:owned:${node}`;
  }

  async register(name: string, pid: Pid): Promise<boolean> {
    const args = ["EVAL", REGISTER, "2", this.table, this.owned(this.node), name, pid.toString(), `${this.prefix}:alive:`, `${this.prefix}:owned:`];
    return (await this.redis.sendCommand(args)) === 1;
  }

  async unregister(name: string, holder: Pid | undefined): Promise<void> {
    await this.redis.sendCommand(["EVAL", UNREGISTER, "1", this.table, name, holder?.toString() ?? "", `${this.prefix}:owned:`]);
  }

  async whereis(name: string): Promise<Pid | undefined> {
    const text = await this.redis.sendCommand(["HGET", this.table, name]);
    return typeof text === "string" ? this.reachable(text) : undefined;
  }

  async names(): Promise<string[]> {
    const flat = (await this.redis.sendCommand(["HGETALL", this.table])) as string[] | Record<string, string>;
    const entries = Array.isArray(flat) ? pairs(flat) : Object.entries(flat);
    return entries.filter(([, text]) => this.reachable(text) !== undefined).map(([name]) => name);
  }

  /** Frees the names of node's pids (a lost node, or this one stopping). */
  async releaseNode(node: string): Promise<void> {
    await this.redis.sendCommand(["EVAL", RELEASE_NODE, "2", this.table, this.owned(node), `<${node}.`]);
  }

  /** Puts this node's names back after Redis lost them (a restart without persistence). */
  async reassert(held: [string, Pid][]): Promise<string[]> {
    const lost: string[] = [];
    for (const [name, pid] of held) if (!(await this.register(name, pid))) lost.push(name);
    return lost;
  }

  private reachable(text: string): Pid | undefined {
    return reachable(text, this.node, this.isUp);
  }
}

/** The pid a global name's table holds (printed), if it can still be reached: a live local process, or one of a node that is up. */
export function reachable(text: string, node: string, isUp: (node: string) => boolean): Pid | undefined {
  let pid: Pid;
  try {
    pid = Pid.parse(text);
  } catch {
    return undefined;
  }
  if (pid.node === node) return pid.proc !== null ? pid : undefined;
  return isUp(pid.node) ? pid : undefined;
}

function pairs(flat: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
  return out;
}
