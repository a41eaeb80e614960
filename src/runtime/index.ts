// The runtime's public surface: Erlang's processes, messages, links, monitors, timers, names and groups.
export {
  answer,
  call,
  cast,
  isCall,
  multiCall,
  replyTo,
  CallError,
  type Answer,
  type CallErrorCode,
  type CallMessage,
  type From,
  type MultiCallResult,
} from "./call.js";
export { CorralError, type ErrorCode } from "./errors.js";
export { broadcast, join, leave, members, whichGroups, type BroadcastOptions } from "./groups.js";
export { registerGlobal, registeredGlobal, sendGlobal, unregisterGlobal, whereisGlobal } from "./global.js";
export { frozenSize, type StateStore } from "./hibernate.js";
export { isAlive, processCount, processes, processInfo, type ProcessInfo, type ProcessStatus } from "./info.js";
export { setLogger, type Logger } from "./log.js";
export { nodeName, setNodeName } from "./node.js";
export { makeRef, Pid, Ref } from "./pid.js";
export { isSystemMessage, type SystemMessage } from "./messages.js";
export { self, sendMessage as send, type NotSendable, type Sendable } from "./process.js";
export { register, registered, unregister, whereis } from "./registry.js";
export { ok, stop, type HibernateOption, type Ok, type Result, type Stop } from "./result.js";
export {
  demonitor,
  exit,
  isDown,
  isExit,
  isExitReason,
  link,
  monitor,
  trapExit,
  unlink,
  type DownMessage,
  type ExitMessage,
  type ExitReason,
} from "./signals.js";
export {
  spawn,
  spawnLink,
  spawnMonitor,
  type Behavior,
  type ProcessBehavior,
  type ProcessFunction,
  type ReceiveContext,
  type SpawnArgs,
  type SpawnOptions,
} from "./spawn.js";
export { cancelTimer, isTimeout, readTimer, sendAfterMessage as sendAfter, startTimer, timerCount, type TimeoutMessage } from "./timers.js";
