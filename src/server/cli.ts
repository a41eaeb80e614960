#!/usr/bin/env node
import { parseArgs } from "node:util";
import { pino } from "pino";
import { demoDispatch } from "../handlers/demo/routes.js";
import { setLogger } from "../runtime/log.js";
import { startClear, stopListener } from "./listener.js";

const USAGE = `usage: corral [--port N] [--host ADDR] [--log-level LEVEL]

Serves the corral demo: the page at /, the guide's handler at /websocket,
an echo at /echo, a chat at /chat, POST /broadcast, /api/stats, /static/.

  --port N           port to listen on (default: $PORT or 8080)
  --host ADDR        address to listen on (default: 127.0.0.1)
  --log-level LEVEL  fatal, error, warn, info, debug, trace or silent (default: $LOG_LEVEL or info)
  -h, --help         this text
`;

const LEVELS = new Set(["fatal", "error", "warn", "info", "debug", "trace", "silent"]);

function usage(problem: string): never {
  process.stderr.write(`corral: ${problem}\n\n${USAGE}`);
  process.exit(2);
}

function parse(): { port: number; host: string; level: string } {
  let values: { port?: string; host?: string; "log-level"?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: { port: { type: "string" }, host: { type: "string" }, "log-level": { type: "string" }, help: { type: "boolean", short: "h" } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    usage((err as Error).message);
  }
  if (values.help === true) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const portText = values.port ?? process.env["PORT"] ?? "8080";
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) usage(`invalid port ${JSON.stringify(portText)}`);
  const level = values["log-level"] ?? process.env["LOG_LEVEL"] ?? "info";
  if (!LEVELS.has(level)) usage(`invalid log level ${JSON.stringify(level)}`);
  return { port, host: values.host ?? "127.0.0.1", level };
}

const { port, host, level } = parse();
const logger = pino({ name: "corral", base: null, level });
setLogger(logger);
const NAME = "demo";

/** SIGINT/SIGTERM: close WebSockets with 1001, let requests finish, then exit; a second signal exits at once. */
let started = false;
let stopping = false;
function shutdown(signal: string): void {
  if (stopping) process.exit(1);
  stopping = true;
  logger.info({ signal }, "shutting down");
  if (!started) process.exit(0);
  stopListener(NAME).then(
    () => process.exit(0),
    (err: unknown) => {
      logger.error({ err }, "shutdown failed");
      process.exit(1);
    },
  );
}
// Installed before listening: a signal right after the URL is printed must shut down, not kill.
process.on("SIGINT", () => shutdown("SIGINT"));
process.on("SIGTERM", () => shutdown("SIGTERM"));

try {
  const listener = await startClear(NAME, { port, host }, { dispatch: demoDispatch(NAME), logger });
  const shown = host.includes(":") ? `[${host}]` : host;
  started = true;
  process.stdout.write(`corral demo listening on http://${shown}:${listener.port}/\n`);
} catch (err) {
  const e = err as Error & { code?: string };
  process.stderr.write(
    e.code === "EADDRINUSE" ? `corral: port ${port} on ${host} is already in use\n`
    : e.code === "EADDRNOTAVAIL" ? `corral: cannot listen on ${host}: no such address here\n`
    : `corral: cannot start: ${e.message}\n`,
  );
  process.exit(1);
}

