/**
 * Every type the docs name can be imported: a name in backticks in README.md or docs/*.md
 * (`DownMessage`, `WsInfoEvent<T>`) must be exported from "corral" or "corral/testing", and
 * every name a ```ts block imports from one of them must be exported by that one (blocks
 * marked not-checked included, which test/docs.test.ts does not compile). A reader who meets
 * a type in the guide never has to guess its name from the .d.ts.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { beforeAll, describe, expect, test } from "vitest";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const ENTRIES = { corral: join(ROOT, "src", "index.ts"), "corral/testing": join(ROOT, "src", "testing.ts") } as const;
type Entry = keyof typeof ENTRIES;

/** Words in backticks that look like type names and are not corral's: type parameters, headers, settings of other tools. */
const NOT_CORRAL: ReadonlyMap<string, string> = new Map([
  ["Opts", "the type parameter of HttpHandler<S, Opts> and the other handlers"],
  ["Info", "the type parameter of WebSocketHandler<S, Opts, Info> and LoopHandler"],
  ["Connection", "an HTTP header"],
  ["Origin", "an HTTP header"],
  ["Range", "an HTTP header"],
  ["StartLimitBurst", "a systemd setting"],
  ["StartLimitIntervalSec", "a systemd setting"],
]);

/** architecture.md is for contributors: it names the runtime's internals on purpose. */
const FOR_CONTRIBUTORS = new Set(["docs/architecture.md"]);

/** `Name`, `Name<…>` or `Name[]` with a lower-case letter in Name (`DOWN`, `GET` are not types). */
const TYPE_SPAN = /^([A-Z][A-Za-z0-9]*)(?:<.*>)?(?:\[\])?$/;

interface Mention {
  readonly name: string;
  /** "docs/processes.md:42" */
  readonly where: string;
  /** Set for an import: the module it must come from. */
  readonly from?: Entry;
}

function markdownFiles(): string[] {
  const docs = join(ROOT, "docs");
  return [join(ROOT, "README.md"), ...readdirSync(docs).filter((f) => f.endsWith(".md")).sort().map((f) => join(docs, f))];
}

/** The names one Markdown file mentions: backticked type names in its prose, imports from corral in its ts blocks. */
function mentionsIn(file: string): Mention[] {
  const rel = relative(ROOT, file).split("\\").join("/");
  const lines = readFileSync(file, "utf8").split(/\r?\n/);
  const found: Mention[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)/.exec(lines[i]!);
    if (open === null) {
      if (FOR_CONTRIBUTORS.has(rel)) continue;
      for (const span of lines[i]!.matchAll(/`([^`]+)`/g)) {
        const name = TYPE_SPAN.exec(span[1]!.trim())?.[1];
        if (name !== undefined && /[a-z]/.test(name)) found.push({ name, where: `${rel}:${i + 1}` });
      }
      continue;
    }
    const fence = open[1]!;
    const lang = open[2]!.toLowerCase();
    const start = i + 1;
    for (i++; i < lines.length && !new RegExp(`^ {0,3}${fence[0]}{${fence.length},}\\s*$`).test(lines[i]!); i++);
    if (lang !== "ts" && lang !== "typescript") continue;
    const sf = ts.createSourceFile(`${rel}:${start}.ts`, lines.slice(start, i).join("\n"), ts.ScriptTarget.Latest, true);
    for (const st of sf.statements) {
      if (!ts.isImportDeclaration(st) || !ts.isStringLiteral(st.moduleSpecifier)) continue;
      const from = st.moduleSpecifier.text;
      if (!(from in ENTRIES)) continue;
      const bindings = st.importClause?.namedBindings;
      if (bindings === undefined || !ts.isNamedImports(bindings)) continue;
      for (const el of bindings.elements) {
        const line = start + sf.getLineAndCharacterOfPosition(el.getStart(sf)).line + 1;
        found.push({ name: (el.propertyName ?? el.name).text, where: `${rel}:${line}`, from: from as Entry });
      }
    }
  }
  return found;
}

const mentions = markdownFiles().flatMap(mentionsIn);
let exported: Record<Entry, ReadonlySet<string>>;
let globals: ReadonlySet<string>;

beforeAll(() => {
  const configPath = join(ROOT, "tsconfig.json");
  const read = ts.readConfigFile(configPath, (p) => ts.sys.readFile(p));
  const options = { ...ts.parseJsonConfigFileContent(read.config, ts.sys, ROOT, undefined, configPath).options, noEmit: true };
  const program = ts.createProgram({ rootNames: Object.values(ENTRIES), options });
  const checker = program.getTypeChecker();
  const namesOf = (file: string): Set<string> => {
    const sf = program.getSourceFile(file)!;
    return new Set(checker.getExportsOfModule(checker.getSymbolAtLocation(sf)!).map((s) => s.name));
  };
  exported = { corral: namesOf(ENTRIES.corral), "corral/testing": namesOf(ENTRIES["corral/testing"]) };
  // The language's and Node's own (`Promise`, `Uint8Array`, `Blob`): seen from a module that declares nothing.
  globals = new Set(checker.getSymbolsInScope(program.getSourceFile(ENTRIES.corral)!, ts.SymbolFlags.Type | ts.SymbolFlags.Value).map((s) => s.name));
}, 60_000);

describe("docs: every type they name is exported", () => {
  test("the mentions are found", () => {
    const names = new Set(mentions.map((m) => m.name));
    // A few the guide must name, so the scan itself cannot silently find nothing.
    for (const n of ["WebSocketHandler", "SystemMessage", "DownMessage", "TimeoutMessage", "ExitMessage", "CallMessage"]) expect(names, n).toContain(n);
    expect(mentions.filter((m) => m.from !== undefined).length).toBeGreaterThan(50);
    expect(exported.corral.size).toBeGreaterThan(100);
    expect(globals).toContain("Uint8Array");
  });

  test("each name in backticks is corral's (or the language's)", () => {
    const missing = mentions
      .filter((m) => m.from === undefined && !NOT_CORRAL.has(m.name) && !globals.has(m.name))
      .filter((m) => !exported.corral.has(m.name) && !exported["corral/testing"].has(m.name))
      .map((m) => `${m.where}: \`${m.name}\` is not exported from "corral" or "corral/testing"`);
    expect(missing).toEqual([]);
  });

  test("each name a ts block imports from corral is exported there", () => {
    const missing = mentions.filter((m) => m.from !== undefined && !exported[m.from].has(m.name)).map((m) => `${m.where}: ${m.name} is not exported from "${m.from}"`);
    expect(missing).toEqual([]);
  });
});
