import { pino, type Logger } from "pino";

export type { Logger };

/** The runtime's own logger (crash reports, hibernation warnings); listeners bring their own. */
// No base fields: crash reports carry their own `pid` (the process's, not the OS's).
let logger: Logger = pino({ name: "corral", base: null, level: process.env["LOG_LEVEL"] ?? "info" });

export function runtimeLogger(): Logger {
  return logger;
}

/** Replaces the runtime's logger, e.g. with a listener's or a silent one in tests. */
export function setLogger(next: Logger): void {
  logger = next;
}
