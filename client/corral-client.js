// bullet.js (ninenines/bullet's client), rewritten: one session over WebSocket, text/event-stream + POST or long-polling, resumed across drops.
// @ts-check
// Standalone on purpose: no imports, no build step, so a page can load this very file and Node ≥ 20 can import it.

/** @typedef {import("./corral-client.js").ConnectOptions} ConnectOptions */
/** @typedef {import("./corral-client.js").Connection} Connection */
/** @typedef {import("./corral-client.js").ConnectionState} ConnectionState */
/** @typedef {import("./corral-client.js").TransportName} TransportName */
/** @typedef {import("./corral-client.js").WebSocketConstructor} WebSocketConstructor */
/** @typedef {InstanceType<WebSocketConstructor>} Socket */
/**
 * One transport connection: the session rides on at most one at a time (`cur`).
 * @typedef {{ kind: TransportName, open: boolean, reqAck: number, inLast: number, busy: boolean,
 *   closing: [number, string] | null, ws: Socket | null, ac: AbortController | null }} Transport
 */

const KINDS = ["websocket", "eventsource", "longpoll"];
const OPTION_KEYS = ["transports", "heartbeatMs", "backoff", "WebSocket", "onopen", "onmessage", "ondisconnect", "onreconnect", "onclose"];
const CALLBACKS = OPTION_KEYS.slice(4);
/** Added to every heartbeat deadline: a heartbeat that is merely late is not a dead transport. */
const SLACK_MS = 1000;
/** How long a transport may take to say hello before the server has told its heartbeat. */
const DEFAULT_HEARTBEAT_MS = 10_000;
/** How much later than the client the server may notice a drop (its poll renewal grace). */
const SERVER_GRACE_MS = 5000;
/** Unacknowledged server frames that make the client acknowledge at once (else after ACK_DELAY_MS). */
const ACK_EVERY = 64;
const ACK_DELAY_MS = 1000;
/** A POST body starts at this many characters at most (one frame always fits); a 413 lowers it. */
const POST_CHARS = 65536;

class CorralError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "CorralError";
    this.code = "ERR_BADARG";
  }
}

/** A response that is not read must be let go of, or Node's fetch keeps its connection. */
const discard = (/** @type {Response} */ res) => res.body?.cancel().catch(() => {});

/** @param {unknown} v */
const positive = (v) => typeof v === "number" && v > 0 && Number.isFinite(v);

/**
 * @param {object} obj
 * @param {readonly string[]} keys
 * @param {string} what
 */
function knownKeys(obj, keys, what) {
  if (typeof obj !== "object" || obj === null) throw new CorralError(`${what} must be an object`);
  for (const k of Object.keys(obj)) if (!keys.includes(k)) throw new CorralError(`unknown ${what} key ${JSON.stringify(k)} (known: ${keys.join(", ")})`);
}

/** @param {Uint8Array} u8 */
function toBase64(u8) {
  let s = "";
  for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode(...u8.subarray(i, i + 0x8000));
  return btoa(s);
}

/** @param {unknown} s */
function fromBase64(s) {
  const bin = atob(/** @type {string} */ (s));
  const u8 = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) u8[i] = bin.charCodeAt(i);
  return u8;
}

/**
 * A callback's exception must not break the session: it is rethrown on its own turn.
 * @template T
 * @param {((arg: T) => void) | undefined} fn
 * @param {T} arg
 */
function emit(fn, arg) {
  if (fn === undefined) return;
  try {
    fn(arg);
  } catch (e) {
    setTimeout(() => {
      throw e;
    });
  }
}

/**
 * @param {string | URL} url
 * @param {ConnectOptions} [options]
 * @returns {Connection}
 */
export function connect(url, options = {}) {
  knownKeys(options, OPTION_KEYS, "connect option");
  /** @type {URL} */
  let base;
  try {
    base = new URL(url, /** @type {{ location?: { href: string } }} */ (globalThis).location?.href);
  } catch {
    throw new CorralError(`connect: ${JSON.stringify(String(url))} is not a URL`);
  }
  const secure = base.protocol === "https:" || base.protocol === "wss:";
  if (!secure && base.protocol !== "http:" && base.protocol !== "ws:") throw new CorralError(`connect: the URL must be ws:, wss:, http: or https:, not ${base.protocol}`);
  base.hash = "";
  const wsBase = new URL(base);
  wsBase.protocol = secure ? "wss:" : "ws:";
  base.protocol = secure ? "https:" : "http:";

  const { transports = KINDS, heartbeatMs, backoff = {} } = options;
  if (!Array.isArray(transports) || transports.length === 0 || transports.some((k, i) => !KINDS.includes(k) || transports.indexOf(k) !== i))
    throw new CorralError(`connect option transports must be a non-empty list of distinct "websocket", "eventsource", "longpoll"`);
  if (heartbeatMs !== undefined && !positive(heartbeatMs)) throw new CorralError("connect option heartbeatMs must be a positive number of ms");
  knownKeys(backoff, ["initialMs", "maxMs"], "backoff option");
  const { initialMs = 100, maxMs = Math.max(10_000, initialMs) } = backoff;
  if (!positive(initialMs) || !positive(maxMs) || maxMs < initialMs) throw new CorralError("backoff options must be positive numbers of ms, with maxMs >= initialMs");
  for (const k of CALLBACKS) if (!["undefined", "function"].includes(typeof (/** @type {Record<string, unknown>} */ (options))[k])) throw new CorralError(`connect option ${k} must be a function`);
  const WS = options.WebSocket ?? /** @type {{ WebSocket?: WebSocketConstructor }} */ (globalThis).WebSocket;
  if (WS !== undefined && typeof WS !== "function") throw new CorralError("connect option WebSocket must be a WebSocket constructor");
  // Without a WebSocket implementation (Node 20 given none) the client goes straight to the fallbacks.
  const list = transports.filter((k) => k !== "websocket" || WS !== undefined);
  if (list.length === 0) throw new CorralError("connect: no WebSocket implementation here: pass options.WebSocket (e.g. ws's) or allow a fallback transport");

  /** @type {ConnectionState} */
  let state = "connecting";
  /** @type {TransportName | null} */
  let transport = null;
  /** @type {string | null} */
  let sid = null;
  let serverHb = 0;
  let windowMs = 0;
  /** @type {[number, string | Uint8Array][]} Sent frames the server has not acknowledged, in order, contiguous: [seq, data]. */
  const kept = [];
  let outSeq = 0; // the last sequence number given to a send
  let sentUpTo = 0; // the last one written on the current transport
  let inSeq = 0; // the last server frame delivered to onmessage
  let ackedIn = 0; // the last one acknowledged to the server
  let postChars = POST_CHARS;
  /** @type {Transport | null} */
  let cur = null;
  let idx = 0; // the transport being tried, in list
  let best = 0; // where the next reconnect starts: the transport that worked last
  let attempt = 0; // backoff exponent, reset by every hello
  let droppedAt = 0;
  let lastRx = 0;
  let pinged = false;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let retryTimer;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let watchTimer;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let ackTimer;
  /** @typedef {(e: { persisted?: boolean }) => void} PageListener */
  const g = /** @type {{ addEventListener?: (type: string, fn: PageListener) => void, removeEventListener?: (type: string, fn: PageListener) => void, navigator?: { onLine?: boolean } }} */ (globalThis);
  let offline = g.navigator?.onLine === false;
  let hidden = false;

  /** @param {Record<string, string | number>} query */
  const at = (/** @type {URL} */ u, query) => {
    const r = new URL(u);
    for (const k in query) r.searchParams.set(k, String(query[k]));
    return r.href;
  };
  /** @returns {Record<string, string | number>} */
  const resumeQuery = () => (sid === null ? {} : { sid, ack: inSeq });
  /**
   * @param {Transport} t The heartbeat the watchdog holds a transport to: on an open fallback the server's (it sends them there;
   * a poll is answered within it, and the server's grace between polls counts on that), else the client's.
   */
  const beat = (t) => (t.open && t.kind === "longpoll" ? serverHb : t.open && t.kind === "eventsource" ? Math.max(heartbeatMs ?? 0, serverHb) : heartbeatMs ?? (serverHb || DEFAULT_HEARTBEAT_MS));

  /** Start the transport list[idx] (unless paused or the session's window has surely passed). */
  function begin() {
    if (offline || hidden) return;
    if (droppedAt !== 0 && Date.now() - droppedAt > windowMs + 2 * serverHb + SERVER_GRACE_MS) return end(4408, "resume window passed", false);
    /** @type {Transport} */
    const t = { kind: /** @type {TransportName} */ (list[idx]), open: false, reqAck: inSeq, inLast: inSeq, busy: false, closing: null, ws: null, ac: null };
    cur = t;
    lastRx = Date.now();
    pinged = false;
    watch();
    try {
      if (t.kind === "websocket") openWebSocket(t);
      else if (t.kind === "eventsource") void openEventStream(t);
      else void openPoll(t);
    } catch {
      down(t);
    }
  }

  /** Back off (full jitter: a random delay up to a cap that doubles per try), then start over from the best transport. */
  function retry() {
    if (offline || hidden) return;
    const cap = Math.min(maxMs, initialMs * 2 ** attempt++);
    retryTimer = setTimeout(() => {
      idx = best;
      begin();
    }, Math.random() * cap);
  }

  /** The heartbeat watchdog: one timer, re-armed from the time the last packet arrived. */
  function watch() {
    clearTimeout(watchTimer);
    const t = cur;
    if (t === null) return;
    const hb = beat(t);
    const idle = Date.now() - lastRx;
    // A stream may miss one heartbeat; a poll is answered within one, or it is lost.
    const limit = t.open && t.kind !== "longpoll" ? 2 * hb + SLACK_MS : hb + SLACK_MS;
    if (idle >= limit) return down(t);
    if (t.open && t.ws !== null && idle >= hb && !pinged) {
      pinged = true;
      t.ws.send('["h"]');
    }
    watchTimer = setTimeout(watch, t.open && idle < hb ? hb - idle : Math.min(limit - idle, hb));
  }

  /** Tear a transport down; unless it is the one the session rides on, that is all. */
  function drop(/** @type {Transport} */ t) {
    t.ac?.abort();
    if (t.ws !== null) {
      const ws = t.ws;
      ws.onmessage = ws.onclose = null;
      ws.onerror = () => {}; // ws (Node) reports a close during the handshake as an error: keep it from being unhandled
      ws.close(1000);
    }
    if (t !== cur) return false;
    cur = null;
    transport = null;
    clearTimeout(watchTimer);
    clearTimeout(ackTimer);
    ackTimer = undefined;
    return true;
  }

  /** A transport failed (to open, or while open), with the HTTP status that said so if any. */
  function down(/** @type {Transport} */ t, status = 0) {
    if (!drop(t)) return;
    if (status === 404 && sid !== null) return end(4404, "no such session", false);
    if (t.open) {
      state = "reconnecting";
      droppedAt = Date.now();
      emit(options.ondisconnect, undefined);
      if (state === "reconnecting") retry();
    } else if (idx + 1 < list.length) {
      idx++;
      begin();
    } else {
      best = 0; // a whole round failed: the next starts from the top of the list again
      retry();
    }
  }

  /** The session is over: once, whoever ends it. `mine`: this side closes it, so it tells the server. */
  function end(/** @type {number} */ code, /** @type {string} */ reason, /** @type {boolean} */ mine) {
    if (state === "closed") return;
    state = "closed";
    const t = cur;
    clearTimeout(retryTimer);
    for (const [type, fn] of listeners) g.removeEventListener?.(type, fn);
    if (mine && sid !== null) {
      if (t?.open && t.ws !== null) t.ws.send(JSON.stringify(["c", code, reason]));
      else if (t?.open) {
        t.closing = [code, reason];
        post(t);
      } else post({ kind: "longpoll", open: false, reqAck: 0, inLast: 0, busy: false, closing: [code, reason], ws: null, ac: null });
    }
    if (t !== null) drop(t);
    emit(options.onclose, { code, reason });
  }

  /** One packet from the server (a JSON array), or a protocol error: the transport is dropped and the session resumed. */
  function packet(/** @type {Transport} */ t, /** @type {unknown} */ p) {
    if (!Array.isArray(p)) return down(t);
    const [type, a, b] = p;
    if (type === "hello") return hello(t, p);
    if (!t.open) return down(t); // nothing comes before hello
    if (type === "t" && typeof b === "string") frame(t, a, b);
    else if (type === "b" && typeof b === "string") frame(t, a, fromBase64(b));
    else if (type === "a" && typeof a === "number") acked(a);
    else if (type === "c") end(typeof a === "number" ? a : 1005, typeof b === "string" ? b : "", false);
    else if (type !== "h") down(t);
  }

  function hello(/** @type {Transport} */ t, /** @type {unknown[]} */ p) {
    const [, id, ack, hb, win] = p;
    if (t.open || typeof id !== "string" || typeof ack !== "number" || !positive(hb) || typeof win !== "number") return down(t);
    sid = id;
    serverHb = /** @type {number} */ (hb);
    windowMs = win;
    t.open = true;
    transport = t.kind;
    best = idx;
    attempt = 0;
    droppedAt = 0;
    ackedIn = t.reqAck; // the request's ack query acknowledged that much
    acked(ack);
    sentUpTo = ack; // the server wants everything after its ack again, in order
    const was = state;
    state = "open";
    flush(t);
    watch();
    emit(was === "connecting" ? options.onopen : options.onreconnect, undefined);
  }

  /** A data frame from the server: delivered once, in order; a gap is a protocol error. */
  function frame(/** @type {Transport} */ t, /** @type {unknown} */ seq, /** @type {string | Uint8Array} */ data) {
    if (typeof seq !== "number") return down(t);
    t.inLast = seq;
    if (seq <= inSeq) return; // a duplicate: delivered before
    if (seq !== inSeq + 1) return down(t);
    inSeq = seq;
    emit(options.onmessage, data);
    if (cur !== t || t.kind === "longpoll") return; // the next poll's query acknowledges
    if (inSeq - ackedIn >= ACK_EVERY) sendAck(t);
    else ackTimer ??= setTimeout(() => sendAck(t), ACK_DELAY_MS);
  }

  function sendAck(/** @type {Transport} */ t) {
    clearTimeout(ackTimer);
    ackTimer = undefined;
    if (t.ws === null) return post(t);
    t.ws.send(`["a",${inSeq}]`);
    ackedIn = inSeq;
  }

  /** The server has the client's frames up to n: forget them. */
  function acked(/** @type {number} */ n) {
    let i = 0;
    while (i < kept.length && /** @type {[number, unknown]} */ (kept[i])[0] <= n) i++;
    if (i > 0) kept.splice(0, i);
  }

  /** Write every kept frame the current transport has not carried yet. */
  function flush(/** @type {Transport} */ t) {
    if (t.ws === null) return post(t);
    for (let i = Math.max(0, kept.length - (outSeq - sentUpTo)); i < kept.length; i++) {
      const [seq, data] = /** @type {[number, string | Uint8Array]} */ (kept[i]);
      // Data that would read as a packet travels as one; the rest is numbered implicitly.
      t.ws.send(typeof data === "string" && data[0] === "[" ? JSON.stringify(["t", seq, data]) : data);
    }
    sentUpTo = outSeq;
  }

  /** The fallbacks' client → server channel: one POST in flight, so frames arrive in order. */
  function post(/** @type {Transport} */ t) {
    if (t.busy) return;
    /** @type {unknown[]} */
    const body = [];
    let chars = 0;
    let first = 0;
    let frames = 0;
    for (let i = t.open ? Math.max(0, kept.length - (outSeq - sentUpTo)) : kept.length; i < kept.length && (frames === 0 || chars < postChars); i++) {
      const [seq, data] = /** @type {[number, string | Uint8Array]} */ (kept[i]);
      const p = typeof data === "string" ? ["t", seq, data] : ["b", seq, toBase64(data)];
      chars += /** @type {string} */ (p[2]).length + 16;
      if (frames++ === 0) first = seq;
      body.push(p);
      sentUpTo = seq;
    }
    if (t.open && inSeq > ackedIn) body.push(["a", (ackedIn = inSeq)]);
    if (t.closing !== null) body.push(["c", ...t.closing]);
    t.closing = null;
    if (body.length === 0) return;
    t.busy = true;
    // A POST never answered (a keep-alive connection gone silent) would hold every later frame: it gets the transport's patience.
    const ac = new AbortController();
    const deadline = setTimeout(() => ac.abort(), 2 * beat(t) + SLACK_MS);
    fetch(at(base, { sid: /** @type {string} */ (sid) }), { method: "POST", body: JSON.stringify(body), signal: ac.signal })
      .then(async (res) => {
        const packets = res.status === 200 ? await res.json() : discard(res);
        clearTimeout(deadline);
        t.busy = false;
        if (state === "closed") return t.closing === null ? undefined : post(t); // the closing POST waited for this one
        if (t !== cur) return;
        if (res.status === 413 && frames > 1) {
          // Too much at once for the route: half as much, again.
          postChars = Math.floor(chars / 2);
          sentUpTo = first - 1;
          return post(t);
        }
        if (res.status === 413 && frames === 1) {
          t.open = false; // that frame can never go: the session ends, and only ["c"] goes
          return end(1009, "frame too large", true);
        }
        if (res.status !== 200) return down(t, res.status);
        for (const p of packets) packet(t, p);
        if (t === cur) post(t);
      })
      .catch(() => {
        clearTimeout(deadline);
        t.busy = false;
        if (state !== "closed") down(t);
      });
  }

  function openWebSocket(/** @type {Transport} */ t) {
    const ws = new /** @type {WebSocketConstructor} */ (WS)(at(wsBase, resumeQuery()));
    t.ws = ws;
    ws.binaryType = "arraybuffer";
    ws.onmessage = (/** @type {{ data: unknown }} */ e) => {
      if (t !== cur) return;
      lastRx = Date.now();
      pinged = false;
      const d = e.data;
      try {
        if (typeof d !== "string") frame(t, t.inLast + 1, new Uint8Array(/** @type {ArrayBuffer} */ (d)));
        else if (d[0] === "[") packet(t, JSON.parse(d));
        else frame(t, t.inLast + 1, d);
      } catch {
        down(t);
      }
    };
    ws.onerror = () => down(t);
    // A close without ["c"] is a dropped transport, except 1009: that frame would never fit.
    ws.onclose = (/** @type {{ code: number }} */ e) => {
      if (e.code !== 1009) return down(t);
      t.open = false; // the socket is gone: ["c"] goes by POST
      end(1009, "frame too large", true);
    };
  }

  /** text/event-stream read with fetch, not EventSource: it sees the status (404: the session is gone), never reconnects behind the session's back, and runs in Node 20. */
  async function openEventStream(/** @type {Transport} */ t) {
    t.ac = new AbortController();
    try {
      const res = await fetch(at(base, { t: "es", ...resumeQuery() }), { headers: { accept: "text/event-stream" }, signal: t.ac.signal });
      if (res.status !== 200 || res.body === null) return discard(res), down(t, res.status);
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      let data = "";
      for (;;) {
        const { done, value } = await reader.read();
        if (done || t !== cur) break;
        buf += decoder.decode(value, { stream: true });
        let start = 0;
        for (let nl; (nl = buf.indexOf("\n", start)) >= 0 && t === cur; start = nl + 1) {
          const line = buf.slice(start, buf[nl - 1] === "\r" ? nl - 1 : nl);
          if (line.startsWith("data:")) data += (data === "" ? "" : "\n") + line.slice(line[5] === " " ? 6 : 5);
          else if (line === "" && data !== "") {
            lastRx = Date.now();
            const d = data;
            data = "";
            packet(t, JSON.parse(d));
          }
        }
        buf = buf.slice(start);
      }
    } catch {
      // aborted, cut, or not JSON: the same drop
    }
    down(t);
  }

  async function openPoll(/** @type {Transport} */ t) {
    t.ac = new AbortController();
    try {
      while (t === cur) {
        // A resume's first poll asks for hello, which the server answers at once, even with nothing else to send.
        const query = { t: "poll", ...resumeQuery(), ...(sid !== null && !t.open ? { hello: 1 } : {}) };
        const res = await fetch(at(base, query), { signal: t.ac.signal });
        if (res.status !== 200) return discard(res), down(t, res.status);
        const packets = await res.json();
        if (t !== cur) return;
        lastRx = Date.now();
        for (const p of packets) if (t === cur) packet(t, p);
      }
    } catch {
      down(t);
    }
  }

  /** offline and a page put in the back/forward cache pause the session; online and pageshow resume it at once. */
  function pause() {
    clearTimeout(retryTimer);
    if (cur !== null) down(cur);
  }
  function resume() {
    if (offline || hidden || state === "closed" || cur !== null) return;
    clearTimeout(retryTimer);
    attempt = 0;
    idx = best;
    begin();
  }
  /** @type {[string, PageListener][]} */
  const listeners = [
    ["offline", () => ((offline = true), pause())],
    ["online", () => ((offline = false), resume())],
    ["pagehide", (e) => e.persisted && ((hidden = true), pause())],
    ["pageshow", () => hidden && ((hidden = false), resume())],
  ];
  for (const [type, fn] of listeners) g.addEventListener?.(type, fn);

  begin();

  return {
    get state() {
      return state;
    },
    get transport() {
      return transport;
    },
    send(data) {
      if (typeof data !== "string" && !(data instanceof Uint8Array)) throw new CorralError("send takes a string or a Uint8Array");
      if (state === "closed") return;
      kept.push([++outSeq, typeof data === "string" ? data : new Uint8Array(data)]); // a copy: the caller may reuse its buffer before the ack
      if (state === "open" && cur !== null) flush(cur);
    },
    close(code = 1000, reason = "") {
      if (code !== 1000 && !(Number.isInteger(code) && code >= 3000 && code <= 4999)) throw new CorralError("close code must be 1000 or 3000-4999");
      if (typeof reason !== "string" || new TextEncoder().encode(reason).length > 123) throw new CorralError("close reason must be a string of at most 123 UTF-8 bytes");
      end(code, reason, true);
    },
  };
}
