export { CorralError, type ErrorCode } from "./errors.js";
export { broadcast, join, leave, members, whichGroups, type BroadcastOptions } from "./groups.js";
export { registerGlobal, registeredGlobal, sendGlobal, unregisterGlobal, whereisGlobal } from "./global.js";
export { frozenSize, type StateStore } from "./hibernate.js";
export { setLogger, type Logger } from "./log.js";
export { nodeName, setNodeName } from "./node.js";
export { makeRef, Pid, Ref } from "./pid.js";
export {
  demonitor,
  exit,
  isAlive,
  isDown,
  isExit,
  isExitReason,
  link,
  monitor,
  processCount,
  processes,
  processInfo,
  self,
  send,
  trapExit,
  unlink,
  type DownMessage,
  type ExitMessage,
  type ExitReason,
  type ProcessBehavior,
  type ProcessFunction,
  type ProcessInfo,
  type ProcessStatus,
  type ReceiveContext,
  type SpawnOptions,
} from "./process.js";
export { register, registered, unregister, whereis } from "./registry.js";
export { ok, stop, type HibernateOption, type Ok, type Result, type Stop } from "./result.js";
export { spawn, spawnLink, spawnMonitor, type Behavior } from "./spawn.js";
export { cancelTimer, isTimeout, readTimer, sendAfter, startTimer, timerCount, type TimeoutMessage } from "./timers.js";
