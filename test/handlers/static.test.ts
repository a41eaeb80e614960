import { execFileSync } from "node:child_process";
import { chmod, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { HeaderValue, Req } from "../../src/behaviors/req.js";
import { httpDate, parseRange, staticDir, staticFile, DEFAULT_MIME_TYPES, type StaticState } from "../../src/handlers/static.js";
import { compileRoutes, startClear, stopListener } from "../../src/index.js";

const SECRET = "TOP-SECRET-OUTSIDE-BYTES-7f3a";
const NAME = "static-test";
/** The listener's log, to check what a misconfigured route reports. */
const logs: string[] = [];
const logger = pino({ level: "warn" }, { write: (line: string) => void logs.push(line) });

let tmp: string;
let root: string;
let port: number;
let fifo = false;
const big = Buffer.alloc(100_000);
for (let i = 0; i < big.length; i++) big[i] = i % 251;
/** Every body any test received: none may contain the outside file's bytes. */
const seen: Buffer[] = [];

interface Res {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
}

/** One request over a raw socket, the target sent exactly as given (no client normalisation). */
function raw(target: string, opts: { method?: string; headers?: Record<string, string> } = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    let head = `${opts.method ?? "GET"} ${target} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n`;
    for (const [k, v] of Object.entries(opts.headers ?? {})) head += `${k}: ${v}\r\n`;
    socket.on("connect", () => socket.write(head + "\r\n"));
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.on("error", reject);
    socket.on("close", () => {
      const all = Buffer.concat(chunks);
      seen.push(all);
      const sep = all.indexOf("\r\n\r\n");
      const lines = all.subarray(0, sep).toString("latin1").split("\r\n");
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const i = line.indexOf(":");
        headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
      }
      resolve({ status: Number(lines[0]!.split(" ")[1]), headers, body: all.subarray(sep + 4) });
    });
  });
}

async function get(target: string, headers: Record<string, string> = {}, method = "GET"): Promise<Res> {
  const res = await fetch(`http://127.0.0.1:${port}${target}`, { method, headers });
  const body = Buffer.from(await res.arrayBuffer());
  seen.push(body);
  const h: Record<string, string> = {};
  res.headers.forEach((v, k) => (h[k] = v));
  return { status: res.status, headers: h, body };
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), "corral-static-"));
  root = path.join(tmp, "root");
  await mkdir(path.join(root, "sub", "deeper"), { recursive: true });
  await mkdir(path.join(tmp, "outside"));
  await mkdir(path.join(tmp, "root2"));
  const files: Record<string, string | Buffer> = {
    "index.html": "<h1>hello</h1>",
    "style.css": "body{}",
    "app.js": "export {};",
    "app.mjs": "export {};",
    "data.json": "{}",
    "logo.svg": "<svg/>",
    "img.png": Buffer.from([0x89, 0x50, 0x4e, 0x47]),
    "UPPER.PNG": Buffer.from([1]),
    "font.woff2": Buffer.from([2]),
    "mod.wasm": Buffer.from([0, 0x61, 0x73, 0x6d]),
    "readme.txt": "plain text",
    "unknown.xyz": "?",
    noext: "no extension",
    "a..b.txt": "dots inside a name are fine",
    "with space.txt": "spaced",
    ".hidden": "dotfile",
    "empty.txt": "",
    "big.bin": big,
    "unreadable.txt": "nope",
    "sub/inner.txt": "inner file",
    "sub/deeper/x.txt": "deep",
  };
  for (const [name, content] of Object.entries(files)) await writeFile(path.join(root, name), content);
  await chmod(path.join(root, "unreadable.txt"), 0o000);
  await writeFile(path.join(tmp, "outside", "secret.txt"), SECRET);
  await writeFile(path.join(tmp, "root2", "secret.txt"), SECRET);
  await writeFile(path.join(tmp, "secret.txt"), SECRET);
  await symlink("sub/inner.txt", path.join(root, "link-in.txt"));
  await symlink("sub", path.join(root, "link-dir-in"));
  await symlink("../outside/secret.txt", path.join(root, "link-out.txt"));
  await symlink(path.join(tmp, "outside", "secret.txt"), path.join(root, "link-abs-out.txt"));
  await symlink("../outside", path.join(root, "link-dir-out"));
  await symlink("../root2/secret.txt", path.join(root, "link-prefix.txt"));
  await symlink("..", path.join(root, "sub", "up"));
  await symlink("/", path.join(root, "slash"));
  await symlink("nowhere.txt", path.join(root, "broken.txt"));
  await symlink("loop-b", path.join(root, "loop-a"));
  await symlink("loop-a", path.join(root, "loop-b"));
  await symlink("root", path.join(tmp, "rootlink"));
  await writeFile(path.join(tmp, "public.txt"), "configured, outside any root");
  await symlink("public.txt", path.join(tmp, "public-link.txt"));
  try {
    execFileSync("mkfifo", [path.join(root, "pipe")]);
    fifo = true;
  } catch {
    fifo = false;
  }

  const dispatch = compileRoutes([
    {
      host: "_",
      paths: [
        ["/", staticFile(path.join(root, "index.html"))],
        ["/relative", staticFile(path.relative(process.cwd(), path.join(root, "sub", "inner.txt")))],
        ["/file-link", staticFile(path.join(tmp, "public-link.txt"))],
        ["/file-missing", staticFile(path.join(tmp, "nope.txt"))],
        ["/file-dir", staticFile(path.join(root, "sub"))],
        ["/file-typed", staticFile(path.join(root, "noext"), { mimetypes: "text/html", charset: "utf-8" })],
        ["/static/[...]", staticDir(root)],
        ["/linked/[...]", staticDir(path.join(tmp, "rootlink"))],
        ["/charset/[...]", staticDir(root, { charset: "utf-8" })],
        ["/charset-all/[...]", staticDir(root, { charset: () => "utf-8" })],
        ["/mime/[...]", staticDir(root, { mimetypes: { xyz: "application/x-xyz", ".CSS": "text/x-custom" } })],
        ["/mimefn/[...]", staticDir(root, { mimetypes: (f) => (f.endsWith(".txt") ? "text/x-fn" : undefined) })],
        ["/noetag/[...]", staticDir(root, { etag: false })],
        ["/etagfn/[...]", staticDir(root, { etag: (f) => `v${f.size}` })],
        ["/deny/[...]", staticDir(root, { dotfiles: "deny" })],
        ["/ignore/[...]", staticDir(root, { dotfiles: "ignore" })],
        ["/no-root/[...]", staticDir(path.join(tmp, "missing-dir"))],
        ["/nopathinfo", staticDir(root)],
      ],
    },
  ]);
  port = (await startClear(NAME, { port: 0 }, { dispatch, logger })).port;
});

afterAll(async () => {
  await stopListener(NAME);
  await rm(tmp, { recursive: true, force: true });
});

describe("serving files", () => {
  test("staticFile serves its file with type, length, validators and accept-ranges", async () => {
    const res = await get("/");
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("<h1>hello</h1>");
    expect(res.headers["content-type"]).toBe("text/html");
    expect(res.headers["content-length"]).toBe("14");
    expect(res.headers["accept-ranges"]).toBe("bytes");
    expect(res.headers["etag"]).toMatch(/^"[^"]+"$/);
    expect(httpDate(res.headers["last-modified"])).toBeTypeOf("number");
  });

  test("a relative staticFile path is resolved against process.cwd()", async () => {
    const res = await get("/relative");
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("inner file");
  });

  test("staticDir serves files and subdirectories by pathInfo", async () => {
    expect((await get("/static/index.html")).body.toString()).toBe("<h1>hello</h1>");
    expect((await get("/static/sub/inner.txt")).body.toString()).toBe("inner file");
    expect((await get("/static/sub/deeper/x.txt")).body.toString()).toBe("deep");
    expect((await get("/static/a..b.txt")).body.toString()).toBe("dots inside a name are fine");
    expect((await get("/static/with%20space.txt")).body.toString()).toBe("spaced");
    expect((await get("/static/.hidden")).body.toString()).toBe("dotfile");
  });

  test("an empty file is a 200 with content-length 0", async () => {
    const res = await get("/static/empty.txt");
    expect(res.status).toBe(200);
    expect(res.headers["content-length"]).toBe("0");
    expect(res.body.length).toBe(0);
  });

  test("a large file comes back byte for byte", async () => {
    const res = await get("/static/big.bin");
    expect(res.status).toBe(200);
    expect(res.headers["content-length"]).toBe(String(big.length));
    expect(res.body.equals(big)).toBe(true);
  });

  test("HEAD: the headers of GET, no body", async () => {
    const res = await raw("/static/big.bin", { method: "HEAD" });
    expect(res.status).toBe(200);
    expect(res.headers["content-length"]).toBe(String(big.length));
    expect(res.headers["etag"]).toBeDefined();
    expect(res.headers["content-type"]).toBe("application/octet-stream");
    expect(res.body.length).toBe(0);
    const viaFetch = await get("/", {}, "HEAD");
    expect(viaFetch.status).toBe(200);
    expect(viaFetch.headers["content-length"]).toBe("14");
  });

  test("symlinks that stay inside the root are served, the root may itself be a symlink", async () => {
    expect((await get("/static/link-in.txt")).body.toString()).toBe("inner file");
    expect((await get("/static/link-dir-in/inner.txt")).body.toString()).toBe("inner file");
    expect((await get("/linked/sub/inner.txt")).body.toString()).toBe("inner file");
    // sub/up -> .. resolves to the root itself: a directory.
    expect((await get("/static/sub/up/index.html")).body.toString()).toBe("<h1>hello</h1>");
  });
});

describe("statuses", () => {
  test("missing files and paths through a file are 404", async () => {
    expect((await get("/static/nope.txt")).status).toBe(404);
    expect((await get("/static/sub/nope/x.txt")).status).toBe(404);
    expect((await get("/static/index.html/x")).status).toBe(404);
    expect((await get("/static/broken.txt")).status).toBe(404);
    expect((await get("/file-missing")).status).toBe(404);
    expect((await get("/no-root/index.html")).status).toBe(404);
  });

  test("directories are 403, the root included", async () => {
    expect((await get("/static/sub")).status).toBe(403);
    expect((await get("/static/sub/")).status).toBe(403);
    expect((await get("/static/")).status).toBe(403);
    expect((await get("/static")).status).toBe(403);
    expect((await get("/file-dir")).status).toBe(403);
  });

  test("a symlink loop is 403", async () => {
    expect((await get("/static/loop-a")).status).toBe(403);
  });

  test("a FIFO is 403 and does not hang the request", async () => {
    if (!fifo) return;
    expect((await get("/static/pipe")).status).toBe(403);
  });

  test.skipIf(process.getuid?.() === 0)("an unreadable file is 403", async () => {
    expect((await get("/static/unreadable.txt")).status).toBe(403);
  });

  test("only GET and HEAD: others are 405 with allow", async () => {
    for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
      const res = await raw("/static/index.html", { method, headers: { "content-length": "0" } });
      expect(res.status, method).toBe(405);
      expect(res.headers["allow"]).toBe("GET, HEAD");
      expect(res.body.length).toBe(0);
    }
    expect((await get("/", {}, "DELETE")).status).toBe(405);
  });

  test("a staticDir route without [...] is a configuration error: 500, not a file", async () => {
    const res = await get("/nopathinfo");
    expect(res.status).toBe(500);
    expect(res.body.length).toBe(0);
    await new Promise((r) => setTimeout(r, 20));
    expect(logs.some((l) => l.includes("needs a route ending in [...]"))).toBe(true);
  });

  test("dotfiles: deny answers 403, ignore 404, at any depth", async () => {
    expect((await get("/deny/.hidden")).status).toBe(403);
    expect((await get("/ignore/.hidden")).status).toBe(404);
    expect((await get("/deny/index.html")).status).toBe(200);
    expect((await raw("/deny/.git/config")).status).toBe(403);
  });
});

describe("safety", () => {
  const traversals = [
    "/static/../secret.txt",
    "/static/../outside/secret.txt",
    "/static/%2e%2e/outside/secret.txt",
    "/static/%2E%2E/secret.txt",
    "/static/sub/../../outside/secret.txt",
    "/static/sub/%2e%2e/%2e%2e/secret.txt",
    "/static/./../secret.txt",
  ];
  test.each(traversals)("dot segments never leave the route: %s", async (target) => {
    const res = await raw(target);
    // The router removes dot segments before matching: the path no longer starts with /static.
    expect([400, 404]).toContain(res.status);
    expect(res.body.includes(SECRET)).toBe(false);
  });

  const reserved = [
    "/static/a%2Fb",
    "/static/sub%2Finner.txt",
    "/static/..%2Fsecret.txt",
    "/static/..%2F..%2Fsecret.txt",
    "/static/%2e%2e%2foutside%2fsecret.txt",
    "/static/%2Fetc%2Fpasswd",
    "/static/a%5Cb",
    "/static/..%5Csecret.txt",
    "/static/a%00b",
    "/static/index.html%00.png",
    "/static/sub/%2e%2e%2f%2e%2e%2fsecret.txt",
  ];
  test.each(reserved)("/, \\ or NUL inside a segment is 400: %s", async (target) => {
    const res = await raw(target);
    expect(res.status).toBe(400);
    expect(res.body.length).toBe(0);
  });

  test("a malformed percent-encoding is 400", async () => {
    expect((await raw("/static/%zz")).status).toBe(400);
  });

  test("an empty segment cannot make the path absolute", async () => {
    const res = await raw("/static//etc/passwd");
    expect(res.status).toBe(404);
    const res2 = await raw("/static//" + path.join(tmp, "secret.txt").slice(1));
    expect(res2.status).toBe(404);
  });

  test("symlinks that leave the root are 403", async () => {
    for (const target of [
      "/static/link-out.txt",
      "/static/link-abs-out.txt",
      "/static/link-dir-out/secret.txt",
      "/static/link-prefix.txt",
      "/static/slash" + path.join(tmp, "secret.txt"),
      "/static/sub/up/../secret.txt",
      "/linked/link-out.txt",
    ]) {
      const res = await raw(target);
      expect(res.status === 403 || res.status === 404, target).toBe(true);
      expect(res.body.includes(SECRET), target).toBe(false);
    }
    expect((await raw("/static/link-out.txt")).status).toBe(403);
    expect((await raw("/static/link-prefix.txt")).status).toBe(403);
    expect((await raw("/static/slash" + path.join(tmp, "secret.txt"))).status).toBe(403);
    expect((await raw("/static/link-dir-out/secret.txt", { method: "HEAD" })).status).toBe(403);
  });

  test("a staticFile whose file is a symlink follows it (the path was configured, not requested)", async () => {
    const res = await raw("/file-link");
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("configured, outside any root");
  });

  test("segments the router would never produce are refused by the handler too", async () => {
    const handler = staticDir(root);
    for (const pathInfo of [[".."], ["..", "secret.txt"], [".", "index.html"], ["sub", "..", "..", "secret.txt"], ["a/b"], ["a\\b"], ["a\0b"]]) {
      const { status, body } = await callDirect(handler, pathInfo);
      expect(status, JSON.stringify(pathInfo)).toBe(400);
      expect(body).toBeUndefined();
    }
  });
});

describe("validators and conditional requests", () => {
  test("ETag / Last-Modified / 304 cycle", async () => {
    const first = await get("/static/readme.txt");
    const etag = first.headers["etag"]!;
    const lastModified = first.headers["last-modified"]!;
    expect(etag).toMatch(/^"[^"]+"$/);

    const inm = await get("/static/readme.txt", { "if-none-match": etag });
    expect(inm.status).toBe(304);
    expect(inm.body.length).toBe(0);
    expect(inm.headers["etag"]).toBe(etag);
    expect(inm.headers["last-modified"]).toBe(lastModified);

    expect((await get("/static/readme.txt", { "if-none-match": `"nope", ${etag}` })).status).toBe(304);
    expect((await get("/static/readme.txt", { "if-none-match": `W/${etag}` })).status).toBe(304);
    expect((await get("/static/readme.txt", { "if-none-match": "*" })).status).toBe(304);
    expect((await get("/static/readme.txt", { "if-none-match": '"nope"' })).status).toBe(200);

    expect((await get("/static/readme.txt", { "if-modified-since": lastModified })).status).toBe(304);
    expect((await get("/static/readme.txt", { "if-modified-since": "Mon, 01 Jan 2001 00:00:00 GMT" })).status).toBe(200);
    expect((await get("/static/readme.txt", { "if-modified-since": "yesterday" })).status).toBe(200);
    // If-None-Match takes precedence over If-Modified-Since.
    expect((await get("/static/readme.txt", { "if-none-match": '"nope"', "if-modified-since": lastModified })).status).toBe(200);
    // HEAD gets the 304 too.
    expect((await raw("/static/readme.txt", { method: "HEAD", headers: { "if-none-match": etag } })).status).toBe(304);
  });

  test("a changed file gets a new ETag and Last-Modified", async () => {
    const file = path.join(root, "changing.txt");
    await writeFile(file, "one");
    await utimes(file, new Date("2020-01-01T00:00:00Z"), new Date("2020-01-01T00:00:00Z"));
    const before = await get("/static/changing.txt");
    expect(before.headers["last-modified"]).toBe("Wed, 01 Jan 2020 00:00:00 GMT");
    await writeFile(file, "two!");
    await utimes(file, new Date("2021-06-01T12:00:00Z"), new Date("2021-06-01T12:00:00Z"));
    const after = await get("/static/changing.txt", { "if-none-match": before.headers["etag"]!, "if-modified-since": before.headers["last-modified"]! });
    expect(after.status).toBe(200);
    expect(after.body.toString()).toBe("two!");
    expect(after.headers["etag"]).not.toBe(before.headers["etag"]);
    expect(after.headers["last-modified"]).toBe("Tue, 01 Jun 2021 12:00:00 GMT");
    expect((await get("/static/changing.txt", { "if-modified-since": "Tue, 01 Jun 2021 12:00:00 GMT" })).status).toBe(304);
    expect((await get("/static/changing.txt", { "if-modified-since": "Tuesday, 01-Jun-21 12:00:00 GMT" })).status).toBe(304);
    expect((await get("/static/changing.txt", { "if-modified-since": "Tue Jun  1 12:00:00 2021" })).status).toBe(304);
    expect((await get("/static/changing.txt", { "if-modified-since": "Tue, 01 Jun 2021 11:59:59 GMT" })).status).toBe(200);
  });

  test("If-Match and If-Unmodified-Since: 412 when they fail", async () => {
    const { headers } = await get("/static/readme.txt");
    expect((await get("/static/readme.txt", { "if-match": headers["etag"]! })).status).toBe(200);
    expect((await get("/static/readme.txt", { "if-match": "*" })).status).toBe(200);
    expect((await get("/static/readme.txt", { "if-match": '"other"' })).status).toBe(412);
    expect((await get("/static/readme.txt", { "if-match": `W/${headers["etag"]!}` })).status).toBe(412);
    expect((await get("/static/readme.txt", { "if-unmodified-since": "Mon, 01 Jan 2001 00:00:00 GMT" })).status).toBe(412);
    expect((await get("/static/readme.txt", { "if-unmodified-since": headers["last-modified"]! })).status).toBe(200);
  });

  test("etag: false sends no ETag (Last-Modified still works); a function names the tag", async () => {
    const res = await get("/noetag/readme.txt");
    expect(res.headers["etag"]).toBeUndefined();
    expect((await get("/noetag/readme.txt", { "if-none-match": '"x"' })).status).toBe(200);
    expect((await get("/noetag/readme.txt", { "if-modified-since": res.headers["last-modified"]! })).status).toBe(304);
    const fn = await get("/etagfn/readme.txt");
    expect(fn.headers["etag"]).toBe('"v10"');
    expect((await get("/etagfn/readme.txt", { "if-none-match": '"v10"' })).status).toBe(304);
  });

  test("the default ETag is stable across requests", async () => {
    const a = await get("/static/big.bin");
    const b = await raw("/static/big.bin", { method: "HEAD" });
    expect(a.headers["etag"]).toBe(b.headers["etag"]);
  });
});

describe("ranges", () => {
  const cases: [string, number, number][] = [
    ["bytes=0-9", 0, 9],
    ["bytes=10-19", 10, 19],
    ["bytes=99990-", 99990, 99999],
    ["bytes=-5", 99995, 99999],
    ["bytes=-200000", 0, 99999],
    ["bytes=99990-200000", 99990, 99999],
    ["BYTES = 5-5", 5, 5],
    ["bytes=0-1,4-5", 0, 5],
    ["bytes=40-49, 0-9, 5-20", 0, 49],
    ["bytes=0-1, 100000-100005", 0, 1],
  ];
  test.each(cases)("%s → 206 with bytes %i-%i", async (range, start, end) => {
    const res = await get("/static/big.bin", { range });
    expect(res.status).toBe(206);
    expect(res.headers["content-range"]).toBe(`bytes ${start}-${end}/${big.length}`);
    expect(res.headers["content-length"]).toBe(String(end - start + 1));
    expect(res.body.equals(big.subarray(start, end + 1))).toBe(true);
  });

  test("a range of a large file over a raw socket is exact", async () => {
    const res = await raw("/static/big.bin", { headers: { range: "bytes=50000-50099" } });
    expect(res.status).toBe(206);
    expect(res.body.equals(big.subarray(50000, 50100))).toBe(true);
  });

  test("unsatisfiable ranges are 416 with content-range bytes */size", async () => {
    for (const range of ["bytes=100000-", "bytes=200000-300000", "bytes=-0", "bytes=100000-100001, 200000-"]) {
      const res = await get("/static/big.bin", { range });
      expect(res.status, range).toBe(416);
      expect(res.headers["content-range"]).toBe(`bytes */${big.length}`);
      expect(res.body.length).toBe(0);
    }
    const empty = await get("/static/empty.txt", { range: "bytes=0-" });
    expect(empty.status).toBe(416);
    expect(empty.headers["content-range"]).toBe("bytes */0");
  });

  test("malformed, foreign-unit or far-apart ranges are ignored: the whole file", async () => {
    for (const range of ["bytes=5-2", "items=0-5", "bytes=abc", "bytes=", "bytes=0-1,50000-50001", "bytes=1-2-3", `bytes=${Array.from({ length: 101 }, (_, i) => `${i}-${i}`).join(",")}`]) {
      const res = await get("/static/big.bin", { range });
      expect(res.status, range).toBe(200);
      expect(res.headers["content-range"]).toBeUndefined();
      expect(res.body.length).toBe(big.length);
    }
  });

  test("HEAD ignores Range", async () => {
    const res = await raw("/static/big.bin", { method: "HEAD", headers: { range: "bytes=0-9" } });
    expect(res.status).toBe(200);
    expect(res.headers["content-length"]).toBe(String(big.length));
  });

  test("If-Range: a matching ETag or date keeps the range, anything else sends the whole file", async () => {
    const { headers } = await get("/static/big.bin");
    const range = "bytes=0-9";
    expect((await get("/static/big.bin", { range, "if-range": headers["etag"]! })).status).toBe(206);
    expect((await get("/static/big.bin", { range, "if-range": headers["last-modified"]! })).status).toBe(206);
    const stale = await get("/static/big.bin", { range, "if-range": '"stale"' });
    expect(stale.status).toBe(200);
    expect(stale.body.length).toBe(big.length);
    expect((await get("/static/big.bin", { range, "if-range": `W/${headers["etag"]!}` })).status).toBe(200);
    expect((await get("/static/big.bin", { range, "if-range": "Mon, 01 Jan 2001 00:00:00 GMT" })).status).toBe(200);
  });

  test("parseRange directly", () => {
    expect(parseRange("bytes=0-0", 1)).toEqual({ start: 0, end: 0 });
    expect(parseRange("bytes=-5", 0)).toBeUndefined();
    expect(parseRange("bytes=0-", 0)).toBe("unsatisfiable");
    expect(parseRange("bytes=0-99999999999999999999999", 10)).toEqual({ start: 0, end: 9 });
    expect(parseRange("bytes=0-10,91-100", 1000)).toEqual({ start: 0, end: 100 });
    expect(parseRange("bytes=0-10,92-100", 1000)).toBeUndefined();
  });
});

describe("media types and charset", () => {
  const types: [string, string][] = [
    ["index.html", "text/html"],
    ["style.css", "text/css"],
    ["app.js", "text/javascript"],
    ["app.mjs", "text/javascript"],
    ["data.json", "application/json"],
    ["logo.svg", "image/svg+xml"],
    ["img.png", "image/png"],
    ["UPPER.PNG", "image/png"],
    ["font.woff2", "font/woff2"],
    ["mod.wasm", "application/wasm"],
    ["readme.txt", "text/plain"],
    ["unknown.xyz", "application/octet-stream"],
    ["noext", "application/octet-stream"],
    [".hidden", "application/octet-stream"],
  ];
  test.each(types)("%s is %s", async (file, type) => {
    expect((await get(`/static/${file}`)).headers["content-type"]).toBe(type);
  });

  test("the built-in table covers the web types", () => {
    for (const ext of ["html", "css", "js", "mjs", "json", "svg", "png", "jpg", "gif", "webp", "ico", "woff", "woff2", "txt", "wasm", "map", "xml", "pdf", "mp4", "webm"]) {
      expect(DEFAULT_MIME_TYPES[ext], ext).toMatch(/^[a-z]+\/[a-z0-9.+-]+$/);
    }
  });

  test("charset: a string goes on text/* types only", async () => {
    expect((await get("/charset/index.html")).headers["content-type"]).toBe("text/html; charset=utf-8");
    expect((await get("/charset/app.js")).headers["content-type"]).toBe("text/javascript; charset=utf-8");
    expect((await get("/charset/data.json")).headers["content-type"]).toBe("application/json");
    expect((await get("/charset/img.png")).headers["content-type"]).toBe("image/png");
  });

  test("charset: a function decides for every type", async () => {
    expect((await get("/charset-all/data.json")).headers["content-type"]).toBe("application/json; charset=utf-8");
    expect((await get("/charset-all/img.png")).headers["content-type"]).toBe("image/png; charset=utf-8");
  });

  test("mimetypes: a table overrides by extension, the built-in table fills the rest", async () => {
    expect((await get("/mime/unknown.xyz")).headers["content-type"]).toBe("application/x-xyz");
    expect((await get("/mime/style.css")).headers["content-type"]).toBe("text/x-custom");
    expect((await get("/mime/img.png")).headers["content-type"]).toBe("image/png");
  });

  test("mimetypes: a function, undefined falls back to the built-in table", async () => {
    expect((await get("/mimefn/readme.txt")).headers["content-type"]).toBe("text/x-fn");
    expect((await get("/mimefn/index.html")).headers["content-type"]).toBe("text/html");
  });

  test("mimetypes: a fixed type, with a charset", async () => {
    const res = await get("/file-typed");
    expect(res.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(res.body.toString()).toBe("no extension");
  });

  test("the type comes from the requested name, not the symlink's target", async () => {
    expect((await get("/static/link-in.txt")).headers["content-type"]).toBe("text/plain");
  });
});

describe("options are checked when the route is built", () => {
  test("bad paths and options throw ERR_BADARG", () => {
    const bad: (() => unknown)[] = [
      () => staticDir(""),
      () => staticFile(42 as unknown as string),
      () => staticDir("a\0b"),
      () => staticDir("x", { mimetypes: 3 as unknown as string }),
      () => staticDir("x", { mimetypes: "not a type" }),
      () => staticDir("x", { mimetypes: { txt: "nope" } }),
      () => staticDir("x", { charset: "utf 8" }),
      () => staticDir("x", { etag: "yes" as unknown as boolean }),
      () => staticDir("x", { dotfiles: "hide" as unknown as "deny" }),
    ];
    for (const f of bad) expect(f).toThrow(expect.objectContaining({ code: "ERR_BADARG" }));
  });

  test("httpDate parses the three HTTP-date forms", () => {
    const t = Date.UTC(1994, 10, 6, 8, 49, 37) / 1000;
    expect(httpDate("Sun, 06 Nov 1994 08:49:37 GMT")).toBe(t);
    expect(httpDate("Sunday, 06-Nov-94 08:49:37 GMT")).toBe(t);
    expect(httpDate("Sun Nov  6 08:49:37 1994")).toBe(t);
    expect(httpDate("06 Nov 1994")).toBeUndefined();
    expect(httpDate("Sun, 06 Foo 1994 08:49:37 GMT")).toBeUndefined();
  });
});

test("no response ever carried the outside file's bytes", () => {
  expect(seen.length).toBeGreaterThan(50);
  for (const body of seen) expect(body.includes(SECRET)).toBe(false);
});

/** Calls a handler's init with a minimal Req carrying the given pathInfo; returns what it replied. */
async function callDirect(handler: ReturnType<typeof staticDir>, pathInfo: string[]): Promise<{ status: number; body: unknown; state: StaticState }> {
  let replied: { status: number; body: unknown } | undefined;
  const req = {
    method: "GET",
    path: "/static/" + pathInfo.join("/"),
    pathInfo,
    header: () => undefined,
    reply(status: number, _headers?: Readonly<Record<string, HeaderValue>>, body?: unknown) {
      replied = { status, body };
      return req;
    },
  } as unknown as Req;
  const r = await handler.init(req, undefined);
  return { ...replied!, state: r.state };
}
