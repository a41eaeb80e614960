// The runtime's logger (OTP's logger for crash reports): pino, at LOG_LEVEL.
import { pino, type Logger } from "pino";

export type { Logger };

/** The runtime's own logger (crash reports, hibernation warnings); listeners bring their own. */
const LEVELS = new Set(["fatal", "error", "warn", "info", "debug", "trace", "silent"]);
const wanted = process.env["LOG_LEVEL"] ?? "info";

// No base fields: crash reports carry their own `pid` (the process's, not the OS's).
let logger: Logger = pino({ name: "corral", base: null, level: LEVELS.has(wanted) ? wanted : "info" });
// A typo in LOG_LEVEL must not make importing the library throw: say so and go on at info.
if (!LEVELS.has(wanted)) logger.warn({ LOG_LEVEL: wanted }, "unknown LOG_LEVEL; using info");

export function runtimeLogger(): Logger {
  return logger;
}

/** Replaces the runtime's logger, e.g. with a listener's or a silent one in tests. */
export function setLogger(next: Logger): void {
  logger = next;
}
