/**
 * The demo CLI (dist/app/cli.js) in its own process, as a user runs it: its output kept,
 * its exit awaited, and every one still running listed for afterAll to kill.
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { ROOT, within } from "./dist.js";

const CLI = path.join(ROOT, "dist/app/cli.js");

export interface Cli {
  readonly child: ChildProcess;
  readonly stdout: () => string;
  readonly stderr: () => string;
  /** Resolves with the exit code (or the signal's name) once the process has ended. */
  readonly exited: Promise<number | string>;
}

/** The CLIs started and not yet exited. */
export const cliChildren = new Set<ChildProcess>();

/** Runs the CLI with these arguments; PORT, LOG_LEVEL and REDIS_URL come only from env, never from the test's environment. */
export function runCli(args: readonly string[], env: Record<string, string> = {}): Cli {
  const base = { ...process.env };
  delete base["PORT"];
  delete base["LOG_LEVEL"];
  delete base["REDIS_URL"];
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...base, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  cliChildren.add(child);
  let out = "";
  let err = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (err += chunk));
  const exited = new Promise<number | string>((resolve) => {
    child.once("exit", (code, signal) => {
      cliChildren.delete(child);
      resolve(code ?? signal ?? "unknown");
    });
  });
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** The line the demo prints once it serves. */
export const LISTENING = /^corral demo listening on (http:\/\/\S+\/)$/gm;

/** Waits (at most ms) for the "listening on" line and returns its URL. */
export function listening(cli: Cli, ms: number): Promise<string> {
  const url = new Promise<string>((resolve, reject) => {
    const check = (): void => {
      const m = new RegExp(LISTENING.source, "m").exec(cli.stdout());
      if (m) {
        cli.child.stdout!.off("data", check);
        resolve(m[1]!);
      }
    };
    cli.child.stdout!.on("data", check);
    check();
    void cli.exited.then((code) => reject(new Error(`the CLI exited (${code}) before listening:\n${cli.stdout()}${cli.stderr()}`)));
  });
  return within(url, ms, "the CLI's listening line");
}
