// cowboy_static: files and directories served with ETags, ranges and conditional requests.
/**
 * cowboy_static as route handlers: `staticFile(path)` serves one file, `staticDir(dir)` serves
 * the files under a directory by the segments a route's trailing `[...]` captured.
 *
 * Safety first: a segment that is "." or "..", or holds "/", "\" or NUL, is a 400; the file is
 * resolved with realpath and must lie inside the real root (a symlink that leaves it is a 403);
 * directories, special files and unreadable files are 403; missing files 404. Other file-system
 * errors answer 500 and are logged, never thrown. Bodies go out as sendfile ranges, never read
 * into memory here.
 */
import { constants, type BigIntStats } from "node:fs";
import { open, realpath, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { logValue, type HeaderValue, type HttpOk, type Req } from "../behaviors/req.js";
import type { HttpHandler } from "../behaviors/request.js";
import { CorralError, badarg, describe } from "../runtime/errors.js";
import { runtimeLogger } from "../runtime/log.js";
import { flag } from "../runtime/validate.js";

/* ------------------------------------------------------------------------------ public API */

/**
 * How a file's media type is found (Cowboy's `mimetypes` option):
 * - a table `{ ext: type }` (extension without the dot, any case) consulted before the built-in one;
 * - a function of the file name; `undefined` falls back to the built-in table;
 * - a string: that type for every file (Cowboy's `{mimetypes, Type}`).
 * Unknown extensions are `application/octet-stream`, as in Cowboy.
 */
export type MimeTypes = Readonly<Record<string, string>> | ((file: string) => string | undefined) | string;

/** What an `etag` function gets. `path` is the real path of the file served. */
export interface StaticFileInfo {
  readonly path: string;
  readonly size: number;
  readonly mtimeMs: number;
}

export interface StaticOptions {
  /** Default: the built-in web table (`DEFAULT_MIME_TYPES`). */
  readonly mimetypes?: MimeTypes;
  /**
   * A string is appended as `; charset=…` to `text/*` types (Cowboy's `{charset, Charset}`);
   * a function of the file name decides for every type (`undefined`: none).
   * A type that already carries a charset parameter is left alone.
   */
  readonly charset?: string | ((file: string) => string | undefined);
  /**
   * Default true: a strong ETag from the size and the modification time (ns).
   * false: no ETag. A function returns the opaque tag (no quotes) for a file; it is sent strong.
   */
  readonly etag?: boolean | ((file: StaticFileInfo) => string);
  /**
   * Names starting with "." anywhere in the request path: "allow" (default, as Cowboy) serves
   * them, "deny" answers 403, "ignore" answers 404 as if they did not exist.
   */
  readonly dotfiles?: "allow" | "deny" | "ignore";
  /**
   * Default true: `x-content-type-options: nosniff` on every answer that carries or revalidates
   * the file (200, 206, 304, 416), so a browser never runs an upload it guessed to be a script.
   */
  readonly nosniff?: boolean;
}

/** The handler's state after init: the real path tried (if it got that far) and the status sent. */
export interface StaticState {
  readonly path: string | undefined;
  readonly status: number;
}

/** The built-in media types by extension: the common web types (Cowboy's `cow_mimetypes:web/1` role). */
export const DEFAULT_MIME_TYPES: Readonly<Record<string, string>> = Object.freeze({
  html: "text/html",
  htm: "text/html",
  xhtml: "application/xhtml+xml",
  css: "text/css",
  js: "text/javascript",
  mjs: "text/javascript",
  cjs: "text/javascript",
  json: "application/json",
  jsonld: "application/ld+json",
  map: "application/json",
  webmanifest: "application/manifest+json",
  xml: "application/xml",
  rss: "application/rss+xml",
  atom: "application/atom+xml",
  txt: "text/plain",
  text: "text/plain",
  md: "text/markdown",
  csv: "text/csv",
  vtt: "text/vtt",
  ics: "text/calendar",
  svg: "image/svg+xml",
  svgz: "image/svg+xml",
  png: "image/png",
  apng: "image/apng",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  webp: "image/webp",
  avif: "image/avif",
  bmp: "image/bmp",
  ico: "image/x-icon",
  tif: "image/tiff",
  tiff: "image/tiff",
  woff: "font/woff",
  woff2: "font/woff2",
  ttf: "font/ttf",
  otf: "font/otf",
  eot: "application/vnd.ms-fontobject",
  wasm: "application/wasm",
  pdf: "application/pdf",
  zip: "application/zip",
  gz: "application/gzip",
  tar: "application/x-tar",
  mp4: "video/mp4",
  m4v: "video/mp4",
  webm: "video/webm",
  ogv: "video/ogg",
  mov: "video/quicktime",
  mp3: "audio/mpeg",
  m4a: "audio/mp4",
  aac: "audio/aac",
  oga: "audio/ogg",
  ogg: "audio/ogg",
  opus: "audio/opus",
  wav: "audio/wav",
  flac: "audio/flac",
});

/**
 * Serves one file (Cowboy's `{file, Path}`), for a route such as `["/", staticFile("priv/index.html")]`.
 * A relative path is resolved against `process.cwd()` when `staticFile` is called. Its options
 * are given here: the route gives none (opts there would be ignored, so they do not compile).
 */
export function staticFile(file: string, opts: StaticOptions = {}): HttpHandler<StaticState, undefined> {
  const target = checkPath("staticFile", file);
  const o = resolveOptions("staticFile", opts);
  return {
    init: (req) => serveFile(req, target, o),
  };
}

/**
 * Serves the files under a directory (Cowboy's `{dir, Path}`) by `req.pathInfo`, for a route
 * ending in `[...]` such as `["/static/[...]", staticDir("priv/static")]`.
 * A relative path is resolved against `process.cwd()` when `staticDir` is called. Its options
 * are given here: the route gives none (opts there would be ignored, so they do not compile).
 */
export function staticDir(dir: string, opts: StaticOptions = {}): HttpHandler<StaticState, undefined> {
  const root = checkPath("staticDir", dir);
  const o = resolveOptions("staticDir", opts);
  return {
    init: (req) => serveDir(req, dir, root, o),
  };
}

/* --------------------------------------------------------------------------- options */

interface Resolved {
  readonly mime: (file: string) => string;
  readonly charset: ((file: string) => string | undefined) | undefined;
  readonly textOnlyCharset: boolean;
  readonly etag: ((file: StaticFileInfo, mtimeNs: bigint) => string) | undefined;
  readonly dotfiles: "allow" | "deny" | "ignore";
  readonly nosniff: boolean;
}

function checkPath(fn: string, p: unknown): string {
  if (typeof p !== "string" || p.length === 0 || p.includes("\0")) throw badarg(`${fn}: expected a non-empty path, got ${describe(p)}`);
  return path.resolve(p);
}

const TYPE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+\/[!#$%&'*+.^_`|~0-9A-Za-z-]+(\s*;.*)?$/;
const OPAQUE_TAG = /^[\x21\x23-\x7e\x80-\xff]*$/;

function checkType(fn: string, t: unknown, what: string): string {
  if (typeof t !== "string" || !TYPE.test(t) || /[\r\n\0]/.test(t)) throw badarg(`${fn}: ${what} must be a media type such as "text/html", got ${describe(t)}`);
  return t;
}

function extOf(file: string): string {
  return path.extname(file).slice(1).toLowerCase();
}

function builtin(file: string): string {
  return DEFAULT_MIME_TYPES[extOf(file)] ?? "application/octet-stream";
}

function resolveOptions(fn: string, opts: StaticOptions): Resolved {
  if (typeof opts !== "object" || opts === null) throw badarg(`${fn}: options must be an object, got ${describe(opts)}`);
  const { mimetypes, charset, etag = true, dotfiles = "allow", nosniff = true } = opts;

  let mime: (file: string) => string;
  if (mimetypes === undefined) mime = builtin;
  else if (typeof mimetypes === "string") {
    const fixed = checkType(fn, mimetypes, "mimetypes");
    mime = () => fixed;
  } else if (typeof mimetypes === "function") {
    mime = (file) => {
      const t = mimetypes(file);
      return t === undefined ? builtin(file) : checkType(fn, t, "the mimetypes function's result");
    };
  } else if (typeof mimetypes === "object" && mimetypes !== null) {
    const table = new Map<string, string>();
    for (const [ext, t] of Object.entries(mimetypes)) table.set(ext.replace(/^\./, "").toLowerCase(), checkType(fn, t, `mimetypes[${JSON.stringify(ext)}]`));
    mime = (file) => table.get(extOf(file)) ?? builtin(file);
  } else {
    throw badarg(`${fn}: mimetypes must be a table, a function or a media type, got ${describe(mimetypes)}`);
  }

  let cs: ((file: string) => string | undefined) | undefined;
  if (charset === undefined) cs = undefined;
  else if (typeof charset === "string" && /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(charset)) cs = () => charset;
  else if (typeof charset === "function") cs = charset;
  else throw badarg(`${fn}: charset must be a charset name such as "utf-8" or a function, got ${describe(charset)}`);

  let tag: Resolved["etag"];
  if (etag === false) tag = undefined;
  else if (etag === true) tag = (f, mtimeNs) => `${f.size.toString(16)}-${mtimeNs.toString(16)}`;
  else if (typeof etag === "function") {
    tag = (f) => {
      const t = etag(f);
      if (typeof t !== "string" || !OPAQUE_TAG.test(t)) throw badarg(`${fn}: the etag function must return an opaque tag (no quotes or spaces), got ${describe(t)}`);
      return t;
    };
  } else throw badarg(`${fn}: etag must be true, false or a function, got ${describe(etag)}`);

  if (dotfiles !== "allow" && dotfiles !== "deny" && dotfiles !== "ignore") {
    throw badarg(`${fn}: dotfiles must be "allow", "deny" or "ignore", got ${describe(dotfiles)}`);
  }
  return { mime, charset: cs, textOnlyCharset: typeof charset === "string", etag: tag, dotfiles, nosniff: flag(nosniff, `${fn}: nosniff must be true or false`) };
}

function contentType(file: string, o: Resolved): string {
  const type = o.mime(file);
  if (o.charset === undefined || /;\s*charset=/i.test(type)) return type;
  if (o.textOnlyCharset && !type.toLowerCase().startsWith("text/")) return type;
  const cs = o.charset(file);
  if (cs === undefined) return type;
  if (typeof cs !== "string" || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(cs)) throw badarg(`static: the charset function returned ${describe(cs)}`);
  return `${type}; charset=${cs}`;
}

/* ---------------------------------------------------------------------------- serving */

function done(req: Req, status: number, p: string | undefined, headers?: Readonly<Record<string, HeaderValue>>): HttpOk<StaticState> {
  return { type: "ok", req: req.reply(status, headers), state: { path: p, status } };
}

function checkMethod(req: Req): HttpOk<StaticState> | undefined {
  if (req.method === "GET" || req.method === "HEAD") return undefined;
  return done(req, 405, undefined, { allow: "GET, HEAD" });
}

/** 403 / 404 for the expected fs errors, undefined for the others. */
function fsStatus(err: unknown): 403 | 404 | undefined {
  const code = typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  switch (code) {
    case "ENOENT":
    case "ENOTDIR":
    case "ENAMETOOLONG":
      return 404;
    case "EACCES":
    case "EPERM":
    case "EISDIR":
    case "ELOOP":
      return 403;
    default:
      return undefined;
  }
}

function fsError(req: Req, err: unknown, p: string): HttpOk<StaticState> {
  const status = fsStatus(err);
  if (status !== undefined) return done(req, status, p);
  // The path (and the error's message, which repeats it) holds what the client asked for: bounded, no stack.
  const { code, message } = (typeof err === "object" && err !== null ? err : {}) as { code?: unknown; message?: unknown };
  runtimeLogger().warn({ code, err: logValue(String(message ?? err)), path: logValue(p) }, "static: file system error, answered 500");
  return done(req, 500, p);
}

/** A segment that could name anything but a child of the directory: Cowboy's validate_reserved, plus "." and "..". */
function badSegment(seg: unknown): boolean {
  if (typeof seg !== "string") return true;
  if (seg === "." || seg === "..") return true;
  if (/[/\\\0]/.test(seg)) return true;
  return process.platform === "win32" && seg.includes(":");
}

function inside(root: string, p: string): boolean {
  if (p === root) return true;
  return p.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
}

async function serveDir(req: Req, configured: string, root: string, o: Resolved): Promise<HttpOk<StaticState>> {
  const info = req.pathInfo;
  if (info === undefined) {
    throw new CorralError(
      "ERR_BADARG",
      `staticDir(${JSON.stringify(configured)}) needs a route ending in [...] (e.g. "/static/[...]"); the route for ${JSON.stringify(req.path)} has none`,
    );
  }
  const refused = checkMethod(req);
  if (refused !== undefined) return refused;
  if (info.some(badSegment)) return done(req, 400, undefined);
  if (o.dotfiles !== "allow" && info.some((s) => s.startsWith("."))) return done(req, o.dotfiles === "deny" ? 403 : 404, undefined);

  let realRoot: string;
  try {
    realRoot = await realpath(root);
  } catch (err) {
    return fsError(req, err, root);
  }
  const wanted = path.join(realRoot, ...info);
  let real: string;
  try {
    real = await realpath(wanted);
  } catch (err) {
    return fsError(req, err, wanted);
  }
  // Never a byte from outside the root: a symlink (or anything else) that leads out is refused.
  if (!inside(realRoot, real)) return done(req, 403, undefined);
  const name = info.length === 0 ? real : info[info.length - 1]!;
  return send(req, real, name, o);
}

async function serveFile(req: Req, file: string, o: Resolved): Promise<HttpOk<StaticState>> {
  const refused = checkMethod(req);
  if (refused !== undefined) return refused;
  let real: string;
  try {
    real = await realpath(file);
  } catch (err) {
    return fsError(req, err, file);
  }
  return send(req, real, file, o);
}

const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0);

/** Opens the real path (no symlink follow, no blocking on FIFOs), checks it is a regular file, and answers. */
async function send(req: Req, real: string, name: string, o: Resolved): Promise<HttpOk<StaticState>> {
  let fh: FileHandle;
  let st: BigIntStats;
  try {
    fh = await open(real, OPEN_FLAGS);
  } catch (err) {
    return fsError(req, err, real);
  }
  try {
    st = await fh.stat({ bigint: true });
  } catch (err) {
    await fh.close();
    return fsError(req, err, real);
  }
  // The checked handle itself is the body (the reply closes it): no second open for a symlink to slip into.
  const answer = answerFor(req, real, name, o, st, fh);
  if (answer.state.status !== 200 && answer.state.status !== 206) await fh.close();
  return answer;
}

/** The answer for an open regular file (or 403 for anything else), by the request's conditions and range. */
function answerFor(req: Req, real: string, name: string, o: Resolved, st: BigIntStats, fh: FileHandle): HttpOk<StaticState> {
  // Directories, FIFOs, sockets, devices.
  if (!st.isFile()) return done(req, 403, real);
  const size = Number(st.size);
  const mtimeNs = st.mtimeNs;

  const mtimeSec = Number(mtimeNs / 1_000_000_000n) - (mtimeNs < 0n && mtimeNs % 1_000_000_000n !== 0n ? 1 : 0);
  const etag = o.etag === undefined ? undefined : `"${o.etag({ path: real, size, mtimeMs: Number(mtimeNs / 1_000_000n) }, mtimeNs)}"`;
  const lastModified = new Date(mtimeSec * 1000).toUTCString();
  // What every answer about the file carries, 304 and 416 included.
  const fileHeaders: Record<string, string> = { "last-modified": lastModified };
  if (etag !== undefined) fileHeaders["etag"] = etag;
  if (o.nosniff) fileHeaders["x-content-type-options"] = "nosniff";

  // RFC 9110 §13.2.2: If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since, then Range.
  const ifMatch = req.header("if-match");
  if (ifMatch !== undefined) {
    if (!matches(ifMatch, etag, true)) return done(req, 412, real);
  } else {
    const ius = httpDate(req.header("if-unmodified-since"));
    if (ius !== undefined && mtimeSec > ius) return done(req, 412, real);
  }
  const ifNoneMatch = req.header("if-none-match");
  if (ifNoneMatch !== undefined) {
    if (matches(ifNoneMatch, etag, false)) return done(req, 304, real, fileHeaders);
  } else {
    const ims = httpDate(req.header("if-modified-since"));
    if (ims !== undefined && mtimeSec <= ims) return done(req, 304, real, fileHeaders);
  }

  const headers: Record<string, string> = { "content-type": contentType(name, o), "accept-ranges": "bytes", ...fileHeaders };
  const range = req.method === "GET" ? req.header("range") : undefined;
  if (range !== undefined && ifRangeHolds(req.header("if-range"), etag, lastModified)) {
    const r = parseRange(range, size);
    if (r === "unsatisfiable") return done(req, 416, real, { "accept-ranges": "bytes", ...fileHeaders, "content-range": `bytes */${size}` });
    if (r !== undefined) {
      headers["content-range"] = `bytes ${r.start}-${r.end}/${size}`;
      const length = r.end - r.start + 1;
      return { type: "ok", req: req.reply(206, headers, { sendfile: fh, offset: r.start, length }), state: { path: real, status: 206 } };
    }
  }
  return { type: "ok", req: req.reply(200, headers, { sendfile: fh, offset: 0, length: size }), state: { path: real, status: 200 } };
}

/* ------------------------------------------------------------------------- validators */

/**
 * If-Match (strong comparison) or If-None-Match (weak comparison) against our tag, in one
 * pass over the header (a regex retried at every position was quadratic in a run of spaces).
 * Whatever is not an entity-tag is skipped up to the next comma.
 */
function matches(header: string, etag: string | undefined, strong: boolean): boolean {
  if (header.trim() === "*") return true;
  if (etag === undefined) return false;
  const ours = etag.slice(1, -1);
  const n = header.length;
  let i = 0;
  while (i < n) {
    const c = header.charCodeAt(i);
    // OWS and empty list elements.
    if (c === 0x20 || c === 0x09 || c === 0x2c) {
      i++;
      continue;
    }
    const weak = header.startsWith('W/"', i);
    if (weak) i += 2;
    if (header.charCodeAt(i) === 0x22) {
      const close = header.indexOf('"', i + 1);
      if (close < 0) return false;
      if (close - i - 1 === ours.length && header.startsWith(ours, i + 1) && !(strong && weak)) return true;
      i = close + 1;
    }
    const comma = header.indexOf(",", i);
    if (comma < 0) return false;
    i = comma + 1;
  }
  return false;
}

/** If-Range: an entity tag must match strongly, a date must equal Last-Modified; absent: holds. */
function ifRangeHolds(header: string | undefined, etag: string | undefined, lastModified: string): boolean {
  if (header === undefined) return true;
  const v = header.trim();
  if (v.startsWith('"') || v.startsWith("W/")) return etag !== undefined && v === etag;
  const d = httpDate(v);
  return d !== undefined && d === httpDate(lastModified);
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** @internal An HTTP-date (IMF-fixdate, RFC 850 or asctime) in seconds since the epoch; undefined if malformed. */
export function httpDate(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  let parts: { day: string; mon: string; year: number; time: [string, string, string] } | undefined;
  let m: RegExpExecArray | null;
  if ((m = /^[A-Za-z]{3}, (\d{2}) ([A-Za-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/.exec(v)) !== null) {
    parts = { day: m[1]!, mon: m[2]!, year: Number(m[3]), time: [m[4]!, m[5]!, m[6]!] };
  } else if ((m = /^[A-Za-z]{6,9}, (\d{2})-([A-Za-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT$/.exec(v)) !== null) {
    const yy = Number(m[3]);
    parts = { day: m[1]!, mon: m[2]!, year: yy < 70 ? 2000 + yy : 1900 + yy, time: [m[4]!, m[5]!, m[6]!] };
  } else if ((m = /^[A-Za-z]{3} ([A-Za-z]{3}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})$/.exec(v)) !== null) {
    parts = { day: m[2]!, mon: m[1]!, year: Number(m[6]), time: [m[3]!, m[4]!, m[5]!] };
  }
  if (parts === undefined) return undefined;
  const month = MONTHS.indexOf(parts.mon[0]!.toUpperCase() + parts.mon.slice(1).toLowerCase());
  const day = Number(parts.day.trim());
  const [h, mi, s] = parts.time.map(Number) as [number, number, number];
  if (month < 0 || day < 1 || day > 31 || h > 23 || mi > 59 || s > 60) return undefined;
  return Date.UTC(parts.year, month, day, h, mi, s) / 1000;
}

/* ----------------------------------------------------------------------------- ranges */

/** More range-specs than this and the header is ignored (a full 200), against range amplification. */
const MAX_RANGES = 100;
/** Ranges closer than this many bytes are coalesced (RFC 9110 §14.2: less than the multipart overhead). */
const COALESCE_GAP = 80;

interface ByteRange {
  readonly start: number;
  /** Inclusive. */
  readonly end: number;
}

/**
 * @internal A Range header against a representation of `size` bytes: one range to send as a 206;
 * "unsatisfiable" (416); or undefined to ignore it and send the whole file (not bytes, malformed,
 * too many ranges, or several ranges that do not coalesce into one — RFC 9110 §14.2 lets a server
 * ignore Range, and a multipart/byteranges body cannot be sent as one sendfile).
 */
export function parseRange(header: string, size: number): ByteRange | "unsatisfiable" | undefined {
  const m = /^\s*bytes\s*=\s*(.*)$/i.exec(header);
  if (m === null) return undefined;
  const specs = m[1]!.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (specs.length === 0 || specs.length > MAX_RANGES) return undefined;
  const ranges: ByteRange[] = [];
  let emptySuffix = false;
  for (const spec of specs) {
    let r: RegExpExecArray | null;
    if ((r = /^(\d+)-(\d*)$/.exec(spec)) !== null) {
      const first = Number(r[1]);
      const last = r[2] === "" ? Infinity : Number(r[2]);
      if (last < first) return undefined;
      if (first < size) ranges.push({ start: first, end: Math.min(last, size - 1) });
    } else if ((r = /^-(\d+)$/.exec(spec)) !== null) {
      const n = Number(r[1]);
      if (n > 0 && size > 0) ranges.push({ start: Math.max(0, size - n), end: size - 1 });
      else if (n > 0) emptySuffix = true;
    } else {
      return undefined;
    }
  }
  if (ranges.length === 0) return emptySuffix ? undefined : "unsatisfiable";
  ranges.sort((a, b) => a.start - b.start);
  let cur = ranges[0]!;
  for (let i = 1; i < ranges.length; i++) {
    const next = ranges[i]!;
    if (next.start > cur.end + 1 + COALESCE_GAP) return undefined;
    cur = { start: cur.start, end: Math.max(cur.end, next.end) };
  }
  return cur;
}
