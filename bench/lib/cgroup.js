// @ts-check
/**
 * CPU quotas for the processes a measurement starts (Linux, cgroup v1's cpu controller):
 * CFS bandwidth control holds a group to `quota` µs of CPU per `period` µs, whatever the
 * cores, so a 2-core box can model "a server with half a core" next to a load generator that
 * keeps a core of its own. Groups are made under this process's own cpu cgroup with a random
 * suffix, so concurrent runs never share one, and `remove()` moves every process back to
 * where this process lives before it removes them.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import path from "node:path";

/** Where cgroup v1 mounts the cpu controller (alone or as cpu,cpuacct behind this link). */
const CPU_ROOT = "/sys/fs/cgroup/cpu";

/**
 * @typedef {object} CpuGroup
 * @property {string} dir
 * @property {(pid: number) => void} add        moves the process (all its threads) here
 * @property {(name: string, cores: number) => CpuGroup} child  a group inside this one, held to `cores`
 * @property {() => { periods: number, throttled: number, throttledMs: number }} stat
 */

/**
 * The root of a fresh group tree held to `cores` (e.g. 0.5) per `periodUs`, or why there can
 * be none here (no cgroup v1 cpu controller, not root, read-only): a reason, never a throw.
 * @param {number} cores
 * @param {number} periodUs
 * @returns {{ group: CpuGroup, remove: () => string[] } | { skipped: string }}
 */
export function cpuQuotaGroup(cores, periodUs) {
  if (process.platform !== "linux") return { skipped: `CPU quotas need Linux cgroups (this is ${process.platform})` };
  if (!existsSync(path.join(CPU_ROOT, "cpu.cfs_quota_us"))) {
    return { skipped: `no cgroup v1 cpu controller with CFS quotas at ${CPU_ROOT} (cgroup v2 only, or not mounted)` };
  }
  // This process's own cpu cgroup (a container's, say), so the groups nest where it may write.
  const line = readFileSync("/proc/self/cgroup", "utf8").split("\n").find((l) => l.split(":")[1]?.split(",").includes("cpu"));
  const home = path.join(CPU_ROOT, line?.split(":").slice(2).join(":") ?? "/");
  sweep(home);
  let top;
  try {
    top = mkdtempSync(path.join(home, `corral-bench-${process.pid}-`));
  } catch (err) {
    return { skipped: `cannot create a cgroup under ${home}: ${/** @type {NodeJS.ErrnoException} */ (err).code ?? err}` };
  }
  /** @type {string[]} */
  const made = [top];
  /**
   * @param {string} dir
   * @param {number} c
   * @returns {CpuGroup}
   */
  const configure = (dir, c) => {
    writeFileSync(path.join(dir, "cpu.cfs_period_us"), String(periodUs));
    writeFileSync(path.join(dir, "cpu.cfs_quota_us"), String(Math.round(c * periodUs)));
    return {
      dir,
      add: (pid) => writeFileSync(path.join(dir, "cgroup.procs"), String(pid)),
      child(name, childCores) {
        const sub = path.join(dir, name);
        mkdirSync(sub);
        made.push(sub);
        return configure(sub, childCores);
      },
      stat() {
        const s = Object.fromEntries(readFileSync(path.join(dir, "cpu.stat"), "utf8").trim().split("\n").map((l) => l.split(" ")));
        return { periods: Number(s.nr_periods), throttled: Number(s.nr_throttled), throttledMs: Number(s.throttled_time) / 1e6 };
      },
    };
  };
  /** Moves every process home and removes the groups, leaves first; returns the groups it could not remove. */
  const remove = () => {
    /** @type {string[]} */
    const left = [];
    for (const dir of [...made].reverse()) {
      // A process forking while its parent moves would stay behind: a few passes catch it.
      for (let pass = 0; pass < 5; pass++) {
        let pids;
        try {
          pids = readFileSync(path.join(dir, "cgroup.procs"), "utf8").split("\n").filter(Boolean);
        } catch {
          break;
        }
        for (const pid of pids) {
          try {
            writeFileSync(path.join(home, "cgroup.procs"), pid);
          } catch {
            // exited meanwhile
          }
        }
        try {
          rmdirSync(dir);
          break;
        } catch (err) {
          if (pass === 4) left.push(`${dir} (${/** @type {NodeJS.ErrnoException} */ (err).code})`);
        }
      }
    }
    return left;
  };
  try {
    return { group: configure(top, cores), remove };
  } catch (err) {
    remove();
    return { skipped: `cannot set a CFS quota on ${top}: ${/** @type {NodeJS.ErrnoException} */ (err).code ?? err}` };
  }
}

/**
 * Removes the empty groups a killed run left behind (its pid is in the name and gone): rmdir
 * removes only a group without processes, so a live run's groups are never touched.
 * @param {string} home
 */
function sweep(home) {
  let names;
  try {
    names = readdirSync(home);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^corral-bench-(\d+)-/.exec(name);
    if (!m || existsSync(`/proc/${m[1]}`)) continue;
    const dir = path.join(home, name);
    try {
      for (const sub of readdirSync(dir, { withFileTypes: true })) if (sub.isDirectory()) rmdirSync(path.join(dir, sub.name));
      rmdirSync(dir);
    } catch {
      // still holds a process: not ours to move
    }
  }
}
