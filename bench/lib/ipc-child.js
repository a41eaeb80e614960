// @ts-check
/**
 * A benchmark process forked with IPC and driven by `{ id, cmd, args }` → `{ id, ok, value |
 * error }` (bench/ws/control.js, bench/cluster/node.js); id 0 carries its ready message.
 * Always stopped: a graceful `exit` first (so a --cpu-prof profile gets written), SIGKILL
 * past a deadline, and SIGKILL from a process 'exit' hook if the coordinator goes down.
 */
import { fork } from "node:child_process";
import { procCpuMs } from "./proc.js";

/** Keep at most this much of a process's output for error messages. */
const OUTPUT_CAP = 32 * 1024;

/** @type {Set<import("node:child_process").ChildProcess>} */
const live = new Set();
process.on("exit", () => {
  for (const c of live) c.kill("SIGKILL");
});

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A --cpu-prof profile for a child when this process itself runs under --cpu-prof
 * (bench/run.js --cpu-prof): same directory, this process's profile name with `-<role>`.
 * @param {string} role
 * @param {string} fallback  name prefix when this process's profile has no name
 */
export function profileArgs(role, fallback) {
  const argv = process.execArgv;
  if (!argv.includes("--cpu-prof")) return [];
  const dir = argv.find((a) => a.startsWith("--cpu-prof-dir="))?.slice("--cpu-prof-dir=".length);
  const name = argv.find((a) => a.startsWith("--cpu-prof-name="))?.slice("--cpu-prof-name=".length) ?? `${fallback}-${process.pid}.cpuprofile`;
  return ["--cpu-prof", ...(dir ? [`--cpu-prof-dir=${dir}`] : []), `--cpu-prof-name=${name.replace(/\.cpuprofile$/, `-${role}.cpuprofile`)}`];
}

export class IpcChild {
  /**
   * @param {string} role  names the child in errors
   * @param {import("node:child_process").ChildProcess} proc
   */
  constructor(role, proc) {
    this.role = role;
    this.proc = proc;
    this.pid = /** @type {number} */ (proc.pid);
    this.output = "";
    /** @type {Map<number, { resolve: (v: any) => void, reject: (e: Error) => void, timer: NodeJS.Timeout, cmd: string }>} */
    this.calls = new Map();
    this.nextId = 1;
    /** @type {Error | null} */
    this.gone = null;
    this.lastCpu = 0;
    /** @type {Promise<void>} */
    this.exited = new Promise((resolve) => proc.once("exit", () => resolve()));
  }

  /**
   * Forks `script` with IPC and waits for its ready message.
   * @param {string} role
   * @param {string} script  absolute path
   * @param {{ execArgv?: string[], env?: NodeJS.ProcessEnv, timeoutMs?: number }} [o]
   * @returns {Promise<{ child: IpcChild, info: any }>}
   */
  static start(role, script, o = {}) {
    const proc = fork(script, [], { execArgv: o.execArgv ?? [], env: o.env ?? process.env, stdio: ["ignore", "pipe", "pipe", "ipc"], serialization: "advanced" });
    return IpcChild.adopt(role, proc, o.timeoutMs);
  }

  /**
   * Drives a child already started with IPC and piped output (a node:cluster worker, say):
   * waits for its ready message.
   * @param {string} role
   * @param {import("node:child_process").ChildProcess} proc
   * @param {number} [timeoutMs]
   * @returns {Promise<{ child: IpcChild, info: any }>}
   */
  static adopt(role, proc, timeoutMs = 20_000) {
    live.add(proc);
    const child = new IpcChild(role, proc);
    /** @param {Buffer} chunk */
    const keep = (chunk) => {
      if (child.output.length < OUTPUT_CAP) child.output += chunk.toString("utf8").slice(0, OUTPUT_CAP - child.output.length);
    };
    proc.stdout?.on("data", keep);
    proc.stderr?.on("data", keep);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        proc.kill("SIGKILL");
        reject(new Error(`${role}: not ready after ${timeoutMs} ms${child.tail()}`));
      }, timeoutMs);
      proc.on("message", (/** @type {any} */ m) => {
        if (m?.id === 0 && m.value?.ready) {
          clearTimeout(timer);
          resolve({ child, info: m.value });
          return;
        }
        const c = child.calls.get(m?.id);
        if (!c) return;
        child.calls.delete(m.id);
        clearTimeout(c.timer);
        if (m.ok) c.resolve(m.value);
        else c.reject(new Error(`${role} ${c.cmd}: ${m.error}${child.tail()}`));
      });
      proc.once("exit", (code, signal) => {
        live.delete(proc);
        clearTimeout(timer);
        child.gone = new Error(`${role} exited (code ${code}, signal ${signal})${child.tail()}`);
        for (const c of child.calls.values()) {
          clearTimeout(c.timer);
          c.reject(child.gone);
        }
        child.calls.clear();
        reject(child.gone);
      });
    });
  }

  /** What the child wrote to stdout and stderr (the first 32 KiB). */
  tail() {
    const t = this.output.trim();
    return t ? `\n--- ${this.role} output ---\n${t.slice(-4000)}` : "";
  }

  /**
   * @param {string} cmd
   * @param {unknown} [args]
   * @param {number} [timeoutMs]
   * @returns {Promise<any>}
   */
  call(cmd, args, timeoutMs = 30_000) {
    if (this.gone) return Promise.reject(this.gone);
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      const timer = setTimeout(() => {
        this.calls.delete(id);
        reject(new Error(`${this.role} ${cmd}: no answer after ${timeoutMs} ms${this.tail()}`));
      }, timeoutMs);
      this.calls.set(id, { resolve, reject, timer, cmd });
      this.proc.send({ id, cmd, args });
    });
  }

  /** CPU so far from /proc (the last reading once the child has exited). */
  cpuMs() {
    if (!this.gone) {
      try {
        this.lastCpu = procCpuMs(this.pid);
      } catch {
        // exited between the check and the read: keep the last reading
      }
    }
    return this.lastCpu;
  }

  /**
   * Asks the child to exit (bounded), then makes sure with SIGKILL.
   * @param {number} [exitMs]  how long the `exit` command may take
   */
  async stop(exitMs = 3000) {
    if (this.gone) return;
    this.cpuMs();
    try {
      await this.call("exit", undefined, exitMs);
      await Promise.race([this.exited, sleep(5000)]);
    } catch {
      // fall through to the kill
    }
    if (!this.gone) {
      this.proc.kill("SIGKILL");
      await Promise.race([this.exited, sleep(2000)]);
    }
  }
}
