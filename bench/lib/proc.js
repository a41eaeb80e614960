// @ts-check
/** What the benchmarks read from /proc (Linux): a process's CPU time. */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

let clockTicks = 0;
function ticksPerSecond() {
  if (clockTicks === 0) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/**
 * CPU time (user + system, all threads) a live process has used, from /proc/<pid>/stat.
 * @param {number} pid
 * @returns {number} ms, in steps of one clock tick (10 ms at CLK_TCK 100)
 */
export function procCpuMs(pid) {
  let stat;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    throw new Error(`cannot read /proc/${pid}/stat: the benchmarks measure CPU time from /proc (Linux)`);
  }
  // Fields after the command name (which may hold spaces and parentheses): utime is field 14, stime 15.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / ticksPerSecond();
}
