/**
 * staticFile / staticDir response headers a browser's security depends on (nosniff), and the
 * entity-tag list forms of If-Match / If-None-Match, over real requests on 127.0.0.1.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { CorralError, compileRoutes, startClear, staticDir, staticFile, stopListener } from "../../src/index.js";

const NAME = "static-headers-test";
let tmp: string;
let port: number;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), "corral-static-headers-"));
  await writeFile(path.join(tmp, "upload.txt"), "<script>alert(1)</script>".repeat(10));
  const file = path.join(tmp, "upload.txt");
  const dispatch = compileRoutes([
    {
      host: "_",
      paths: [
        ["/file", staticFile(file)],
        ["/dir/[...]", staticDir(tmp)],
        ["/sniff/[...]", staticDir(tmp, { nosniff: false })],
        ["/tagged", staticFile(file, { etag: () => "a,b" })],
      ],
    },
  ]);
  port = (await startClear(NAME, { port: 0 }, { dispatch })).port;
});

afterAll(async () => {
  await stopListener(NAME);
  await rm(tmp, { recursive: true, force: true });
});

async function get(target: string, headers: Record<string, string> = {}, method = "GET"): Promise<{ status: number; headers: Headers }> {
  const res = await fetch(`http://127.0.0.1:${port}${target}`, { method, headers });
  await res.arrayBuffer();
  return { status: res.status, headers: res.headers };
}

describe("x-content-type-options: nosniff", () => {
  test("sent by default on 200, HEAD, 206, 304 and 416, from staticFile and staticDir", async () => {
    for (const target of ["/file", "/dir/upload.txt"]) {
      const full = await get(target);
      expect(full.status).toBe(200);
      expect(full.headers.get("x-content-type-options")).toBe("nosniff");
      const etag = full.headers.get("etag")!;
      const answers = [
        [await get(target, {}, "HEAD"), 200],
        [await get(target, { range: "bytes=0-9" }), 206],
        [await get(target, { "if-none-match": etag }), 304],
        [await get(target, { range: "bytes=99999-" }), 416],
      ] as const;
      for (const [res, status] of answers) {
        expect(res.status).toBe(status);
        expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      }
    }
  });

  test("not on refusals that carry no file (404, 405)", async () => {
    expect((await get("/dir/missing.txt")).headers.get("x-content-type-options")).toBeNull();
    expect((await get("/file", {}, "POST")).headers.get("x-content-type-options")).toBeNull();
  });

  test("nosniff: false sends none, on 200, 206 and 304", async () => {
    const full = await get("/sniff/upload.txt");
    expect(full.status).toBe(200);
    expect(full.headers.get("x-content-type-options")).toBeNull();
    const part = await get("/sniff/upload.txt", { range: "bytes=0-9" });
    expect(part.status).toBe(206);
    expect(part.headers.get("x-content-type-options")).toBeNull();
    const cached = await get("/sniff/upload.txt", { "if-none-match": full.headers.get("etag")! });
    expect(cached.status).toBe(304);
    expect(cached.headers.get("x-content-type-options")).toBeNull();
  });

  test("an option that is not a boolean throws ERR_BADARG when the handler is built", () => {
    for (const bad of ["yes", 1, null]) {
      for (const make of [() => staticFile("x", { nosniff: bad as never }), () => staticDir("x", { nosniff: bad as never })]) {
        expect(make).toThrow(CorralError);
        expect(make).toThrow(/nosniff must be true or false/);
      }
    }
  });
});

describe("If-Match / If-None-Match entity-tag lists", () => {
  test("our tag anywhere in a list, around junk, whitespace and empty elements", async () => {
    const etag = (await get("/file")).headers.get("etag")!;
    for (const list of [`"x", ${etag}`, ` , ,\t${etag} ,`, `junk, W/${etag}`, `"x" trailing, ${etag}`, `"a""b", ${etag}`]) {
      expect((await get("/file", { "if-none-match": list })).status, list).toBe(304);
    }
    for (const list of [`"x"`, `${etag.slice(0, -2)}"`, `"${etag}`, `x${etag}`, `W/ ${etag.slice(0, -1)}`]) {
      expect((await get("/file", { "if-none-match": list })).status, list).toBe(200);
    }
    // If-Match compares strongly: a weak tag never matches.
    expect((await get("/file", { "if-match": `"x", W/${etag}` })).status).toBe(412);
    expect((await get("/file", { "if-match": `W/"x", ${etag}` })).status).toBe(200);
  });

  test("a tag that holds a comma is one tag, not two", async () => {
    expect((await get("/tagged", { "if-none-match": '"a,b"' })).status).toBe(304);
    expect((await get("/tagged", { "if-none-match": '"a", "b"' })).status).toBe(200);
  });
});
