// init:stop/1 with the kernel's shutdown_timeout: the node's orderly stop, bounded, then Node's exit with a status.
import { runtimeLogger } from "./log.js";

/** @internal One step of the node's stop, registered by the module that owns what it stops. */
export type StopHook = () => Promise<unknown>;

// The slots, run in this order: connections close while the processes they talk to still run; the cluster goes last.
/** server/listener.ts: stop every listener (WebSockets get 1001, terminate runs). */
export const STOP_LISTENERS = 0;
/** behaviors/supervisor.ts: stop the permanent supervisors still running, last started first. */
export const STOP_SUPERVISORS = 1;
/** cluster/cluster.ts: leave the cluster. */
export const LEAVE_CLUSTER = 2;

type StopSlot = typeof STOP_LISTENERS | typeof STOP_SUPERVISORS | typeof LEAVE_CLUSTER;

/** A module that never loaded started nothing to stop. */
const nothingToStop: StopHook = () => Promise.resolve();

const hooks: StopHook[] = [nothingToStop, nothingToStop, nothingToStop];

/** @internal */
export function setStopHook(slot: StopSlot, hook: StopHook): void {
  hooks[slot] = hook;
}

let stopping = false;

/**
 * @internal Stops the node once: runs the steps in order, flushes the runtime's logger, then
 * exits with `status`; after `timeout` ms it exits with it whatever is still running. False
 * when a stop is already under way (the first one's status stands).
 */
export function stopNode(status: number, timeout: number): boolean {
  if (stopping) return false;
  stopping = true;
  // Should the event loop empty while a step waits on nothing, Node still ends with this status.
  process.exitCode = status;
  // Kept until the exit: it also bounds a flush that never calls back.
  setTimeout(() => {
    runtimeLogger().error({ timeout }, "node stop timed out; exiting now");
    exitFlushed(status);
  }, timeout);
  void runSteps().then(() => exitFlushed(status));
  return true;
}

async function runSteps(): Promise<void> {
  for (const hook of hooks) {
    try {
      await hook();
    } catch (err) {
      runtimeLogger().error({ err }, "a step of the node stop failed");
    }
  }
}

/** pino writes asynchronously: what the stop logged must be out before the process ends. */
function exitFlushed(status: number): void {
  try {
    runtimeLogger().flush(() => process.exit(status));
  } catch {
    process.exit(status);
  }
}
