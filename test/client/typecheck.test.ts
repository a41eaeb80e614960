/**
 * corral/client ships as written: one JavaScript file and its .d.ts. Here the JavaScript is
 * type-checked (strict, with the browser's lib, against the .d.ts it names in its JSDoc), the
 * browser's own WebSocket must fit the WebSocket option, the file must import nothing, and
 * plain Node (no vite, no TypeScript) must load it.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { expect, test } from "vitest";

const DIR = fileURLToPath(new URL("../../client/", import.meta.url));
const JS = `${DIR}corral-client.js`;

test("the JavaScript type-checks against its .d.ts, and the browser's WebSocket fits the option", () => {
  const usage = `${DIR}__browser-usage.ts`;
  const code = [
    'import { connect } from "./corral-client.js";',
    'const conn = connect("/live", { WebSocket, onmessage: (d) => console.log(typeof d === "string" ? d : d.byteLength) });',
    "conn.send(new TextEncoder().encode(conn.state));",
  ].join("\n");
  const options: ts.CompilerOptions = {
    noEmit: true,
    allowJs: true,
    checkJs: true,
    strict: true,
    noUnusedLocals: true,
    noUnusedParameters: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ["lib.es2022.d.ts", "lib.dom.d.ts"],
    types: [],
  };
  const host = ts.createCompilerHost(options, true);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (f, v, e, c) => (f === usage ? ts.createSourceFile(f, code, v, true) : getSourceFile.call(host, f, v, e, c));
  host.fileExists = (f) => f === usage || fileExists.call(host, f);
  host.readFile = (f) => (f === usage ? code : readFile.call(host, f));
  const program = ts.createProgram({ rootNames: [JS, usage], options, host });
  const diags = ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file === undefined || d.start === undefined ? "" : `${d.file.fileName}:${d.file.getLineAndCharacterOfPosition(d.start).line + 1}: `;
    return where + ts.flattenDiagnosticMessageText(d.messageText, "\n");
  });
  expect(diags).toEqual([]);
  // The JSDoc really points at the .d.ts (a typo there would make every type any, silently).
  expect(program.getSourceFiles().map((f) => f.fileName)).toContain(`${DIR}corral-client.d.ts`);
  expect(readFileSync(JS, "utf8")).toMatch(/^\/\/ @ts-check$/m);
});

test("it imports nothing and exports connect alone", () => {
  const sf = ts.createSourceFile(JS, readFileSync(JS, "utf8"), ts.ScriptTarget.ES2022, true, ts.ScriptKind.JS);
  const imports: string[] = [];
  const exports: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || ts.isImportEqualsDeclaration(node)) imports.push(node.getText());
    if (ts.isCallExpression(node) && (node.expression.kind === ts.SyntaxKind.ImportKeyword || node.expression.getText() === "require")) imports.push(node.getText());
    if (ts.isExportDeclaration(node) || ts.isExportAssignment(node)) exports.push(node.getText());
    const mods = ts.canHaveModifiers(node) ? ts.getModifiers(node) : undefined;
    if (mods?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword)) exports.push((node as ts.FunctionDeclaration).name?.text ?? node.getText());
    ts.forEachChild(node, visit);
  };
  visit(sf);
  expect(imports).toEqual([]);
  expect(exports).toEqual(["connect"]);
});

test("plain Node loads the file as it is", () => {
  const out = execFileSync(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      `const { connect } = await import(${JSON.stringify(JS)});
       try { connect("ftp://x/") } catch (e) { console.log(typeof connect, e.name, e.code) }`,
    ],
    { encoding: "utf8" },
  );
  expect(out.trim()).toBe("function CorralError ERR_BADARG");
});
