/**
 * The docs cannot rot: every ```ts / ```typescript block in README.md and docs/*.md is
 * type-checked against the package, as its own ES module that imports from "corral".
 *
 * - One in-memory module per block, placed (virtually) next to its Markdown file, so bare
 *   imports ("corral", "ws", "pino", "vitest", "node:*") resolve as they would for a user;
 *   "corral" is mapped to src/index.ts, "corral/testing" to src/testing.ts and "corral/client"
 *   to client/corral-client.d.ts with `paths`.
 * - The project's tsconfig.json options (strict and the rest), plus noEmit, module detection
 *   "force" (every block is a module, so top-level await works and names never clash
 *   between blocks), and no unused-local/parameter errors (snippets declare things to show them).
 * - One Program for every block; then one test per block, named "<file>:<line>" (the line of
 *   the opening fence), whose failure lists the diagnostics at their Markdown line numbers.
 * - A block preceded by `<!-- not-checked: reason -->` is skipped (the reason is required).
 * - A block preceded by `<!-- file: src/hello.ts -->` is that module, so the page's other
 *   blocks can import it ("../src/hello.js" from a `test/…` block): each page's blocks live
 *   in their own virtual directory, unnamed ones as `__L<line>.ts` at its top.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { beforeAll, describe, expect, test } from "vitest";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const CORRAL_ENTRY = join(ROOT, "src", "index.ts");
const TESTING_ENTRY = join(ROOT, "src", "testing.ts");
const CLIENT_TYPES = join(ROOT, "client", "corral-client.d.ts");

interface Block {
  /** "docs/websocket.md:8": the file (relative to the repo) and the line of the opening fence. */
  readonly name: string;
  readonly mdFile: string;
  readonly fenceLine: number;
  /** The module's (virtual) path. */
  readonly fileName: string;
  readonly code: string;
  /** Set when the block opted out with <!-- not-checked: reason -->. */
  readonly skipReason: string | undefined;
}

const FENCE_OPEN = /^( {0,3})(`{3,}|~{3,})\s*([^\s`]*)[^`]*$/;

/** The fenced ts/typescript blocks of one Markdown file (CommonMark fences, any length, ``` or ~~~). */
function extractBlocks(mdPath: string): Block[] {
  const rel = relative(ROOT, mdPath).split("\\").join("/");
  const lines = readFileSync(mdPath, "utf8").split(/\r?\n/);
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE_OPEN.exec(lines[i]!);
    if (open === null) continue;
    const indent = open[1]!.length;
    const fence = open[2]!;
    const lang = open[3]!.toLowerCase();
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const line = lines[j]!;
      const close = /^ {0,3}(`{3,}|~{3,})\s*$/.exec(line);
      if (close !== null && close[1]![0] === fence[0] && close[1]!.length >= fence.length) break;
      // Strip up to the fence's own indentation, as CommonMark does.
      body.push(line.replace(new RegExp(`^ {0,${indent}}`), ""));
    }
    if (lang === "ts" || lang === "typescript") {
      const fenceLine = i + 1;
      // The HTML comments right above the fence (blank lines between are allowed).
      let optOut: string | undefined;
      let named: string | undefined;
      for (let k = i - 1; k >= 0; k--) {
        const line = lines[k]!.trim();
        if (line === "") continue;
        const c = /^<!--\s*(not-checked|file)\s*:?(.*?)-->$/.exec(line);
        if (c === null) break;
        if (c[1] === "not-checked") optOut ??= c[2]!.trim();
        else named ??= c[2]!.trim();
      }
      blocks.push({
        name: `${rel}:${fenceLine}`,
        mdFile: rel,
        fenceLine,
        fileName: join(ROOT, ".docs-check", rel.replace(/[^A-Za-z0-9]+/g, "_"), named ?? `__L${fenceLine}.ts`),
        code: body.join("\n") + "\n",
        skipReason: optOut,
      });
    }
    i = j; // past the closing fence (or the end of the file for an unclosed one)
  }
  return blocks;
}

function markdownFiles(): string[] {
  const docs = join(ROOT, "docs");
  const files = [join(ROOT, "README.md")];
  for (const f of readdirSync(docs).sort()) if (f.endsWith(".md")) files.push(join(docs, f));
  return files;
}

function compilerOptions(): ts.CompilerOptions {
  const configPath = join(ROOT, "tsconfig.json");
  const read = ts.readConfigFile(configPath, (p) => ts.sys.readFile(p));
  if (read.error !== undefined) throw new Error(ts.flattenDiagnosticMessageText(read.error.messageText, "\n"));
  const parsed = ts.parseJsonConfigFileContent(read.config, ts.sys, ROOT, undefined, configPath);
  return {
    ...parsed.options,
    noEmit: true,
    declaration: false,
    sourceMap: false,
    noUnusedLocals: false,
    noUnusedParameters: false,
    moduleDetection: ts.ModuleDetectionKind.Force,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: parsed.options.target ?? ts.ScriptTarget.ES2022,
    paths: { corral: [CORRAL_ENTRY], "corral/testing": [TESTING_ENTRY], "corral/client": [CLIENT_TYPES] },
  };
}

const blocks = markdownFiles().flatMap(extractBlocks);
const checked = blocks.filter((b) => b.skipReason === undefined);

let program: ts.Program;
let options: ts.CompilerOptions;
let host: ts.CompilerHost;

beforeAll(() => {
  options = compilerOptions();
  const virtual = new Map(checked.map((b) => [b.fileName, b.code]));
  host = ts.createCompilerHost(options, true);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (fileName, languageVersion, onError, shouldCreate) => {
    const code = virtual.get(fileName);
    if (code !== undefined) return ts.createSourceFile(fileName, code, languageVersion, true);
    return getSourceFile.call(host, fileName, languageVersion, onError, shouldCreate);
  };
  host.fileExists = (fileName) => virtual.has(fileName) || fileExists.call(host, fileName);
  host.readFile = (fileName) => virtual.get(fileName) ?? readFile.call(host, fileName);
  // Module resolution skips directories that do not exist: make the virtual ones exist.
  const dirs = new Set<string>();
  for (const f of virtual.keys()) for (let d = dirname(f); d.length > ROOT.length; d = dirname(d)) dirs.add(d);
  const directoryExists = host.directoryExists?.bind(host);
  host.directoryExists = (dir) => dirs.has(dir.replace(/[\\/]+$/, "")) || (directoryExists?.(dir) ?? true);
  program = ts.createProgram({ rootNames: [...virtual.keys()], options, host });
}, 60_000);

/** "docs/x.md:12:5 - error TS2322: …" for each diagnostic, at the Markdown line. */
function describeDiagnostics(block: Block, diags: readonly ts.Diagnostic[]): string {
  return diags
    .map((d) => {
      const msg = ts.flattenDiagnosticMessageText(d.messageText, "\n  ");
      const kind = ts.DiagnosticCategory[d.category].toLowerCase();
      if (d.file === undefined || d.start === undefined) return `${block.name} - ${kind} TS${d.code}: ${msg}`;
      const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
      const where = d.file.fileName === block.fileName ? `${block.mdFile}:${block.fenceLine + 1 + line}:${character + 1}` : `${relative(ROOT, d.file.fileName)}:${line + 1}:${character + 1}`;
      const src = d.file.fileName === block.fileName ? `\n    | ${d.file.text.split("\n")[line]}` : "";
      return `${where} - ${kind} TS${d.code}: ${msg}${src}`;
    })
    .join("\n");
}

describe("docs: every ts code block type-checks against corral", () => {
  test("the blocks are found and the compiler setup is sound", () => {
    expect(checked.length).toBeGreaterThan(10);
    const bad = blocks.filter((b) => b.skipReason === "").map((b) => b.name);
    expect(bad, "<!-- not-checked: … --> needs a reason").toEqual([]);
    const seen = new Map<string, string>();
    const clashes: string[] = [];
    for (const b of blocks) {
      const other = seen.get(b.fileName);
      if (other !== undefined) clashes.push(`${b.name} and ${other} are both ${relative(ROOT, b.fileName)}`);
      seen.set(b.fileName, b.name);
    }
    expect(clashes, "two blocks name the same <!-- file: … -->").toEqual([]);
    expect(blocks.filter((b) => !/\.(ts|mts|cts)$/.test(b.fileName)).map((b) => b.name), "<!-- file: … --> must end in .ts").toEqual([]);
    const global = [...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics()];
    expect(global.map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"))).toEqual([]);
    // "corral" must be the source, not a stale dist/ build (the package's self-reference).
    const resolved = ts.resolveModuleName("corral", checked[0]!.fileName, options, host).resolvedModule;
    expect(resolved?.resolvedFileName, "corral should resolve to src/index.ts").toBe(CORRAL_ENTRY);
    const testing = ts.resolveModuleName("corral/testing", checked[0]!.fileName, options, host).resolvedModule;
    expect(testing?.resolvedFileName, "corral/testing should resolve to src/testing.ts").toBe(TESTING_ENTRY);
    expect(program.getSourceFile(CORRAL_ENTRY)).toBeDefined();
  });

  for (const block of blocks) {
    if (block.skipReason !== undefined) {
      test.skip(`${block.name} (not checked: ${block.skipReason})`, () => {});
      continue;
    }
    test(block.name, () => {
      const sf = program.getSourceFile(block.fileName);
      expect(sf).toBeDefined();
      const diags = [...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf)];
      if (diags.length > 0) throw new Error(`${diags.length} diagnostic(s) in ${block.name}:\n${describeDiagnostics(block, diags)}`);
    });
  }
});
