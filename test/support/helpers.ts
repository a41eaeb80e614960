import { Writable } from "node:stream";
import { pino } from "pino";
import { expect } from "vitest";
import { CorralError, isAlive, setLogger, spawn, type ErrorCode, type Logger, type Pid } from "../../src/index.js";

export interface LogRecord {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A pino logger that keeps its records in memory, installed as the runtime's logger. */
export function captureLogs(): { logger: Logger; records: LogRecord[] } {
  const records: LogRecord[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n")) if (line) records.push(JSON.parse(line) as LogRecord);
      done();
    },
  });
  const logger = pino({ level: "debug", base: null }, sink);
  setLogger(logger);
  return { logger, records };
}

/** Resolves once pred() holds, polling; rejects after timeoutMs naming what was awaited. */
export async function until(pred: () => boolean, timeoutMs = 2000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Lets the scheduler run everything queued (a few macrotask turns). */
export async function settle(turns = 3): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Asserts fn throws a CorralError with this code. */
export function expectCode(fn: () => unknown, code: ErrorCode): void {
  let thrown: unknown = undefined;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, `expected a CorralError ${code}`).toBeInstanceOf(CorralError);
  expect((thrown as CorralError).code).toBe(code);
}

/** The pid of a process that has already ended. */
export async function deadPid(): Promise<Pid> {
  const pid = spawn(async () => {});
  await until(() => !isAlive(pid), 2000, "the short-lived process to end");
  return pid;
}
