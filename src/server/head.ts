// cowboy_http's request parsing (parse_request, parse_header), for one head only: the usual WebSocket upgrade, read without node:http.
//
// Strict on purpose: whatever this parser accepts, node:http accepts too and reads the same
// way (an 'upgrade' with the same method, target and headers). Anything else (another method
// or version, obs-fold, a control or non-ASCII byte, a repeated header, a body, bytes after
// the head) is left to node:http, which answers it as it always has.
import { hasToken } from "./upgrade.js";

/** A head read here: GET, HTTP/1.1, no body, no repeated header. */
export interface UpgradeHead {
  /** The request target, origin-form ("/path?qs"). */
  readonly url: string;
  /** By lower-case name, each value without its surrounding whitespace. */
  readonly headers: Record<string, string>;
}

/** Beyond this many headers node:http decides (it keeps at most maxHeadersCount of them). */
const MAX_HEADERS = 100;

/** RFC 9110's tchar: the bytes of a header name. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;

/** "GET /": the only start read here. */
const START = [0x47, 0x45, 0x54, 0x20, 0x2f];
const VERSION = " HTTP/1.1\r\n";

/**
 * The head of a request that is all `chunk` (it ends with the empty line and holds nothing
 * after it) when it is the usual WebSocket upgrade: Host once, Upgrade: websocket, a
 * Connection listing upgrade, no Content-Length but 0, no Transfer-Encoding. Undefined for
 * anything else, which node:http is to read.
 */
export function parseUpgradeHead(chunk: Buffer, maxHeaderSize: number): UpgradeHead | undefined {
  const n = chunk.length;
  // node:http counts fewer bytes against maxHeaderSize than the whole head: within it, node accepts it too.
  if (n > maxHeaderSize || n < 16 || chunk[n - 4] !== 13 || chunk[n - 3] !== 10 || chunk[n - 2] !== 13 || chunk[n - 1] !== 10) return undefined;
  for (let i = 0; i < 5; i++) if (chunk[i] !== START[i]) return undefined;
  const s = chunk.toString("latin1", 0, n);
  let pos = 4;
  // The target: visible ASCII up to the space, as node:http keeps it.
  let c = s.charCodeAt(pos);
  while (c > 32 && c < 127) c = s.charCodeAt(++pos);
  const url = s.slice(4, pos);
  if (!s.startsWith(VERSION, pos)) return undefined;
  pos += VERSION.length;
  const headers: Record<string, string> = {};
  let count = 0;
  // Each line: token ":" OWS value OWS CRLF; the last CRLF (n - 2) ends the head.
  while (pos < n - 2) {
    const nameStart = pos;
    c = s.charCodeAt(pos);
    while (c < 128 && TCHAR[c] === 1) c = s.charCodeAt(++pos);
    // An empty name is obs-fold, an empty line before the end (bytes after the head), or a stray byte.
    if (pos === nameStart || c !== 58) return undefined;
    const name = s.slice(nameStart, pos).toLowerCase();
    c = s.charCodeAt(++pos);
    while (c === 32 || c === 9) c = s.charCodeAt(++pos);
    const valueStart = pos;
    let valueEnd = pos;
    while (c !== 13) {
      if (c > 32 && c < 127) valueEnd = pos + 1;
      else if (c !== 32 && c !== 9) return undefined;
      c = s.charCodeAt(++pos);
    }
    if (s.charCodeAt(pos + 1) !== 10) return undefined;
    // A repeated header (or a name Object.prototype has): node:http's joining rules decide.
    if (headers[name] !== undefined || ++count > MAX_HEADERS) return undefined;
    headers[name] = s.slice(valueStart, valueEnd);
    pos += 2;
  }
  if (headers["host"] === undefined || headers["transfer-encoding"] !== undefined) return undefined;
  const length = headers["content-length"];
  if (length !== undefined && length !== "0") return undefined;
  const upgrade = headers["upgrade"];
  if (upgrade === undefined || upgrade.toLowerCase() !== "websocket") return undefined;
  const connection = headers["connection"];
  if (connection === undefined || !hasToken(connection, "upgrade")) return undefined;
  return { url, headers };
}
