/**
 * The app (app/: the CLI and the demo) sits outside the library (src/): the library never
 * imports it, and it uses the library only as a user would, through "corral" (src/index.ts
 * under test, dist/index.js once built), so a process holds one runtime.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import ts from "typescript";
import { describe, expect, test } from "vitest";
import { ROOT } from "../support/dist.js";

/** Every import, export-from, dynamic import and import type of each .ts file under dir: [file, specifier, what it resolves to]. */
function imports(dir: string): Array<readonly [file: string, spec: string, target: string]> {
  const found: Array<readonly [string, string, string]> = [];
  for (const entry of readdirSync(path.join(ROOT, dir), { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !entry.name.endsWith(".ts")) continue;
    const file = path.join(entry.parentPath, entry.name);
    for (const { fileName: spec } of ts.preProcessFile(readFileSync(file, "utf8"), true, true).importedFiles) {
      found.push([path.relative(ROOT, file), spec, spec.startsWith(".") ? path.relative(ROOT, path.resolve(path.dirname(file), spec)) : spec]);
    }
  }
  return found;
}

const inside = (dir: string, target: string): boolean => target.startsWith(`${dir}${path.sep}`);

describe("the app outside the library", () => {
  test("nothing under src/ imports from outside src/, nor the package by its name", () => {
    const all = imports("src");
    expect(all.length).toBeGreaterThan(50);
    const out = all.filter(([, spec, target]) => (spec.startsWith(".") ? !inside("src", target) : spec === "corral" || spec.startsWith("corral/")));
    expect(out).toEqual([]);
  });

  test("app/ reaches the library only as \"corral\": its relative imports stay in app/", () => {
    const all = imports("app");
    expect(all.filter(([, spec]) => spec === "corral").length).toBeGreaterThan(5);
    expect(all.filter(([, spec, target]) => spec.startsWith(".") && !inside("app", target))).toEqual([]);
  });

  test("under test, \"corral\" is the module the tests import: one runtime for the demo and the library", async () => {
    expect(await import("corral")).toBe(await import("../../src/index.js"));
  });
});
