/**
 * The type tests fail for the reason they say. tsc (npm test) already refuses a
 * `// @ts-expect-error` in test/types/*.test-d.ts that has nothing to suppress; here each one
 * must carry its reason after " -- ", and, with the directives turned off, the line right after
 * it must have an error whose message holds that reason, and no other line any error.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { beforeAll, describe, expect, test } from "vitest";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DIR = fileURLToPath(new URL("./", import.meta.url));
const DIRECTIVE = /^\s*\/\/ @ts-expect-error\b(?: -- (.+))?$/;

interface Expectation {
  /** "routes.test-d.ts:97": the line that must fail (1-based). */
  readonly name: string;
  readonly file: string;
  /** 0-based, as the compiler counts. */
  readonly line: number;
  readonly reason: string | undefined;
}

const files = readdirSync(DIR)
  .filter((f) => f.endsWith(".test-d.ts"))
  .sort()
  .map((f) => join(DIR, f));
const sources = new Map(files.map((f) => [f, readFileSync(f, "utf8")]));
const expectations: Expectation[] = [...sources].flatMap(([file, text]) =>
  text.split("\n").flatMap((line, i): Expectation[] => {
    const m = DIRECTIVE.exec(line);
    return m === null ? [] : [{ name: `${file.slice(DIR.length)}:${i + 2}`, file, line: i + 1, reason: m[1]?.trim() }];
  }),
);

let program: ts.Program;

beforeAll(() => {
  const configPath = join(ROOT, "tsconfig.json");
  const read = ts.readConfigFile(configPath, (p) => ts.sys.readFile(p));
  const options = { ...ts.parseJsonConfigFileContent(read.config, ts.sys, ROOT, undefined, configPath).options, noEmit: true };
  const host = ts.createCompilerHost(options, true);
  const { getSourceFile } = host;
  // The same lines with each directive turned into a plain comment: the errors it suppressed come out.
  host.getSourceFile = (fileName, languageVersion, onError, shouldCreate) => {
    const text = sources.get(fileName);
    if (text !== undefined) return ts.createSourceFile(fileName, text.replaceAll("// @ts-expect-error", "// (expect-error)"), languageVersion, true);
    return getSourceFile.call(host, fileName, languageVersion, onError, shouldCreate);
  };
  program = ts.createProgram({ rootNames: files, options, host });
}, 60_000);

function errorsOn(file: string): { line: number; message: string }[] {
  const sf = program.getSourceFile(file)!;
  return [...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf)].map((d) => ({
    line: sf.getLineAndCharacterOfPosition(d.start ?? 0).line,
    message: ts.flattenDiagnosticMessageText(d.messageText, "\n"),
  }));
}

describe("type tests: each expected error is the one it names", () => {
  test("the type tests are found, and every directive gives its reason", () => {
    expect(files.map((f) => f.slice(DIR.length))).toEqual(expect.arrayContaining(["routes.test-d.ts", "send.test-d.ts"]));
    expect(expectations.length).toBeGreaterThan(10);
    expect(expectations.filter((e) => e.reason === undefined).map((e) => e.name), "// @ts-expect-error -- <part of the message>").toEqual([]);
  });

  test.each(expectations.map((e) => [e.name, e] as const))("%s", (_name, e) => {
    const messages = errorsOn(e.file).filter((d) => d.line === e.line).map((d) => d.message);
    expect(messages.some((m) => m.includes(e.reason ?? "")), `expected an error holding ${JSON.stringify(e.reason)}, got:\n${messages.join("\n---\n") || "none"}`).toBe(true);
  });

  test.each(files.map((f) => [f.slice(DIR.length), f] as const))("%s: no error where none is expected", (_name, file) => {
    const expected = new Set(expectations.filter((e) => e.file === file).map((e) => e.line));
    expect(errorsOn(file).filter((d) => !expected.has(d.line)).map((d) => `${d.line + 1}: ${d.message}`)).toEqual([]);
  });
});
