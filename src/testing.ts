// "corral/testing" (Common Test's helpers, for any test runner): a listener on a free port, a WebSocket client and a process that collect what they receive, and a leak check.
import { inspect } from "node:util";
import { WebSocket, type ClientOptions, type RawData } from "ws";
import {
  compileRoutes,
  isAlive,
  link,
  listenerInfo,
  members,
  monitor,
  ok,
  processes,
  processInfo,
  registered,
  send,
  spawn,
  startClear,
  stop,
  stopListener,
  timerCount,
  whereis,
  whichGroups,
  type Dispatch,
  type ExitReason,
  type HostRoute,
  type InFrame,
  type Listener,
  type PathRoute,
  type Pid,
  type ProcessBehavior,
  type ProtocolOptions,
  type Ref,
  type Result,
} from "./index.js";
import { badarg, describe } from "./runtime/errors.js";
import { checkPid, flag, knownKeys, positive, toError } from "./runtime/validate.js";

/** How long every wait of this module lasts unless it is given a timeout (ms). */
const DEFAULT_TIMEOUT = 2000;

/** How often a wait for something to end (a leak check, a process) looks again (ms). */
const POLL = 5;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** How many unread items a timeout's message shows. */
const SHOWN = 5;

// ---------------------------------------------------------------------------------------
// Waiting for what arrives: one inbox for the client's frames and the process's messages.

/** A test's view of an item: short, on one line. */
function show(value: unknown): string {
  return inspect(value, { depth: 3, breakLength: Infinity, maxArrayLength: 16, maxStringLength: 120 });
}

/** An Error with this message whose stack is the caller's, captured when it started waiting. */
function failure(site: Error, message: string): Error {
  const err = new Error(message);
  err.stack = `Error: ${message}\n${(site.stack ?? "").split("\n").slice(1).join("\n")}`;
  return err;
}

function timeoutArg(value: unknown, fn: string): number {
  return positive(value, `${fn}: timeoutMs must be a finite number > 0`, DEFAULT_TIMEOUT);
}

interface Waiter<T> {
  readonly pred: ((item: T) => boolean) | undefined;
  readonly site: Error;
  readonly resolve: (item: T) => void;
  readonly reject: (err: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

/** Items in arrival order: every one kept in `seen`, unread ones taken by the oldest waiter whose predicate matches. */
class Inbox<T> {
  readonly seen: T[] = [];
  private readonly unread: T[] = [];
  private readonly waiters = new Set<Waiter<T>>();
  /** Why nothing more will arrive ("closed (1000 \"\")", "ended (normal)"), once that is so. */
  private ended: string | undefined = undefined;

  constructor(
    /** Who is waiting, for messages: "testClient ws://…", "testProcess <0.7>". */
    private readonly label: () => string,
    private readonly noun: string,
    /** What a timeout adds about the owner's state, e.g. that the process is gone. */
    private readonly status: () => string = () => "",
  ) {}

  push(item: T): void {
    this.seen.push(item);
    for (const w of this.waiters) {
      let hit: boolean;
      try {
        hit = w.pred === undefined || w.pred(item);
      } catch (err) {
        this.drop(w);
        w.reject(toError(err, "the predicate threw:"));
        continue;
      }
      if (hit) {
        this.drop(w);
        w.resolve(item);
        return;
      }
    }
    this.unread.push(item);
  }

  take(pred: ((item: T) => boolean) | undefined, timeoutMs: number, site: Error): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const i = pred === undefined ? (this.unread.length > 0 ? 0 : -1) : this.unread.findIndex(pred);
      if (i >= 0) return resolve(this.unread.splice(i, 1)[0]!);
      if (this.ended !== undefined) return reject(failure(site, `${this.label()}: ${this.ended} before a ${this.wanted(pred)} arrived${this.unreadNote()}`));
      const w: Waiter<T> = { pred, site, resolve, reject, timer: undefined };
      w.timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(failure(site, `${this.label()}: no ${this.wanted(pred)} within ${timeoutMs} ms${this.status()}${this.unreadNote()}`));
      }, timeoutMs);
      this.waiters.add(w);
    });
  }

  /** Nothing more will arrive: every waiter fails now instead of at its timeout. */
  end(why: string): void {
    this.ended = why;
    for (const w of this.waiters) {
      this.drop(w);
      w.reject(failure(w.site, `${this.label()}: ${why} before a ${this.wanted(w.pred)} arrived${this.unreadNote()}`));
    }
  }

  private drop(w: Waiter<T>): void {
    clearTimeout(w.timer);
    this.waiters.delete(w);
  }

  /** "frame", "message matching isDown": what a waiter waits for, named by its predicate's function name. */
  private wanted(pred: ((item: T) => boolean) | undefined): string {
    if (pred === undefined) return this.noun;
    return `${this.noun} matching ${pred.name === "" ? "the predicate" : pred.name}`;
  }

  private unreadNote(): string {
    const n = this.unread.length;
    if (n === 0) return `; none unread`;
    const shown = this.unread.slice(0, SHOWN).map(show).join(", ");
    return `; ${n} unread: ${shown}${n > SHOWN ? ", …" : ""}`;
  }
}

/** next(timeoutMs?) or next(pred, timeoutMs?): the predicate and the timeout, checked. */
function nextArgs<T>(fn: string, predOrTimeout: unknown, timeoutMs: unknown): { pred: ((item: T) => boolean) | undefined; ms: number } {
  if (typeof predOrTimeout === "function") return { pred: predOrTimeout as (item: T) => boolean, ms: timeoutArg(timeoutMs, fn) };
  if (predOrTimeout === undefined) return { pred: undefined, ms: timeoutArg(timeoutMs, fn) };
  if (timeoutMs !== undefined) throw badarg(`${fn}: the predicate must be a function, got ${describe(predOrTimeout)}`);
  return { pred: undefined, ms: timeoutArg(predOrTimeout, fn) };
}

// ---------------------------------------------------------------------------------------
// A listener on a free port.

/** What testServer starts from: a dispatch, host routes as compileRoutes takes them, or path routes for any host. */
export type TestRoutes = Dispatch | readonly HostRoute[] | readonly PathRoute[];

/** testServer's options: the listener's protocol options (logger, timeouts, limits) and its name. */
export interface TestServerOptions extends Omit<ProtocolOptions, "dispatch"> {
  /** The listener's name, for stopListener and listenerInfo. Default: a fresh `test-<n>`. */
  readonly name?: string;
}

/** A listener on 127.0.0.1 and a port the system picked. */
export interface TestServer {
  readonly name: string;
  /** The port the listener is bound to. */
  readonly port: number;
  readonly listener: Listener;
  /** `http://127.0.0.1:<port>` and the path, `/` by default. */
  url(path?: string): string;
  /** `ws://127.0.0.1:<port>` and the path, `/` by default. */
  wsUrl(path?: string): string;
  /**
   * Stops the listener as stopListener does (every WebSocket closed with 1001, each
   * connection's terminate run) and resolves once it has stopped. Calling it again is harmless.
   */
  stop(): Promise<void>;
}

const servers = new Set<TestServer>();
let serverSeq = 0;

function toDispatch(routes: TestRoutes): Dispatch {
  if (!Array.isArray(routes)) return routes as Dispatch;
  const list = routes as readonly unknown[];
  const hosts = list.length > 0 && list.every((r) => typeof r === "object" && r !== null && !Array.isArray(r) && "host" in r && "paths" in r);
  return compileRoutes(hosts ? (list as readonly HostRoute[]) : [{ host: "_", paths: list as readonly PathRoute[] }]);
}

function urlPath(path: unknown, fn: string): string {
  if (typeof path !== "string" || !path.startsWith("/")) throw badarg(`${fn}: path must be a string starting with "/", got ${describe(path)}`);
  return path;
}

/**
 * Starts a listener on 127.0.0.1, port 0 (the system picks a free one, so test files can
 * run in parallel), serving these routes. Stop it with `server.stop()` after the test.
 *
 * @example
 * const server = await testServer([["/room", room]]);
 * const client = await testClient(server.wsUrl("/room"));
 */
export async function testServer(routes: TestRoutes, options: TestServerOptions = {}): Promise<TestServer> {
  if (typeof options !== "object" || options === null) throw badarg(`testServer: options must be an object, got ${describe(options)}`);
  const { name = `test-${++serverSeq}`, ...protocol } = options;
  const listener = await startClear(name, { port: 0 }, { ...protocol, dispatch: toDispatch(routes) });
  const base = `127.0.0.1:${listener.port}`;
  let stopping: Promise<void> | undefined;
  const server: TestServer = {
    name,
    port: listener.port,
    listener,
    url: (path = "/") => `http://${base}${urlPath(path, "url")}`,
    wsUrl: (path = "/") => `ws://${base}${urlPath(path, "wsUrl")}`,
    stop() {
      stopping ??= (listenerInfo(name) === listener ? stopListener(name) : Promise.resolve()).finally(() => servers.delete(server));
      return stopping;
    },
  };
  servers.add(server);
  return server;
}

// ---------------------------------------------------------------------------------------
// A WebSocket client.

/** A data frame as the client received it: the shape `text()` and `binary()` build. */
export type ClientFrame = Extract<InFrame, { readonly type: "text" | "binary" }>;

/** How a WebSocket closed: the code and reason of the close frame (1005, 1006 when there was none). */
export interface CloseInfo {
  readonly code: number;
  readonly reason: string;
}

/** testClient's options: ws's client options, the subprotocols to offer, and how long opening may take. */
export interface TestClientOptions extends ClientOptions {
  /** Offered in `sec-websocket-protocol`. */
  readonly protocols?: string | readonly string[];
  /** How long the handshake may take before testClient rejects. Default 2000 ms. */
  readonly timeoutMs?: number;
}

/**
 * A `ws` client that keeps every text and binary frame it receives, from the first one (a
 * frame sent in `websocketInit` can arrive with the 101). Ping and pong frames are answered
 * by ws and not collected; listen on `client.ws` for them.
 */
export interface TestClient {
  /** The `ws` socket itself, for anything this interface does not cover. */
  readonly ws: WebSocket;
  readonly url: string;
  /** Every text and binary frame received, in order, including those next() has taken. */
  readonly frames: readonly ClientFrame[];
  /**
   * The oldest frame not yet taken (matching `pred`, when given; the others stay, in
   * order), waiting up to timeoutMs (default 2000) for one to arrive. Rejects with an Error
   * naming the wait and the unread frames on timeout, or at once when the socket closes first.
   */
  next(timeoutMs?: number): Promise<ClientFrame>;
  next<T extends ClientFrame>(pred: (frame: ClientFrame) => frame is T, timeoutMs?: number): Promise<T>;
  next(pred: (frame: ClientFrame) => boolean, timeoutMs?: number): Promise<ClientFrame>;
  /** The data of the oldest text frame not yet taken (binary frames stay unread), as next() waits. */
  nextText(timeoutMs?: number): Promise<string>;
  /** Sends a text (string) or binary frame; throws if the socket is not open. */
  send(data: string | Uint8Array): void;
  /**
   * Starts the closing handshake and resolves with the close once it is done. If the
   * server does not answer within timeoutMs (default 2000), the socket is destroyed and the
   * promise rejects. On a closed socket it resolves with how it closed.
   */
  close(code?: number, reason?: string, timeoutMs?: number): Promise<CloseInfo>;
  /** Resolves with the close code and reason once the socket has closed; rejects if it is still open after timeoutMs (default 2000). */
  closed(timeoutMs?: number): Promise<CloseInfo>;
}

const clients = new Set<TestClient>();

const isText = (frame: ClientFrame): frame is Extract<ClientFrame, { type: "text" }> => frame.type === "text";

function toFrame(data: RawData, isBinary: boolean): ClientFrame {
  const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
  return isBinary ? { type: "binary", data: new Uint8Array(buf) } : { type: "text", data: buf.toString("utf8") };
}

/**
 * Opens a WebSocket to url and resolves once the handshake is done; rejects naming the
 * url and the cause (a refused connection, an HTTP status instead of the 101, the timeout).
 *
 * @example
 * const client = await testClient(server.wsUrl("/echo"));
 * client.send("hi");
 * expect(await client.nextText()).toBe("hi");
 * await client.close();
 */
export async function testClient(url: string, options: TestClientOptions = {}): Promise<TestClient> {
  if (typeof url !== "string") throw badarg(`testClient: url must be a string, got ${describe(url)}`);
  if (typeof options !== "object" || options === null) throw badarg(`testClient: options must be an object, got ${describe(options)}`);
  const { protocols, timeoutMs, ...wsOptions } = options;
  const openMs = timeoutArg(timeoutMs, "testClient");
  const site = new Error();
  const ws = new WebSocket(url, protocols === undefined ? [] : typeof protocols === "string" ? protocols : [...protocols], wsOptions);
  const label = (): string => `testClient ${url}`;
  let closeInfo: CloseInfo | undefined;
  let lastError: Error | undefined;
  const inbox = new Inbox<ClientFrame>(label, "frame");
  const closeWaiters = new Set<(info: CloseInfo) => void>();
  // Attached before the handshake: the server's first frame may come in the 101's packet.
  ws.on("message", (data, isBinary) => inbox.push(toFrame(data, isBinary)));
  ws.on("error", (err) => {
    lastError = err;
  });
  ws.on("close", (code, reason) => {
    closeInfo = { code, reason: reason.toString("utf8") };
    clients.delete(client);
    inbox.end(`closed (${code}${closeInfo.reason === "" ? "" : ` ${JSON.stringify(closeInfo.reason)}`}${lastError === undefined ? "" : `, ${lastError.message}`})`);
    for (const resolve of closeWaiters) resolve(closeInfo);
    closeWaiters.clear();
  });

  /** Resolves with the close once it happens; rejects after ms with onTimeout's message. */
  const whenClosed = (ms: number, waitSite: Error, onTimeout: () => string): Promise<CloseInfo> =>
    new Promise<CloseInfo>((resolve, reject) => {
      if (closeInfo !== undefined) return resolve(closeInfo);
      const done = (info: CloseInfo): void => {
        clearTimeout(timer);
        resolve(info);
      };
      const timer = setTimeout(() => {
        closeWaiters.delete(done);
        reject(failure(waitSite, onTimeout()));
      }, ms);
      closeWaiters.add(done);
    });

  const client: TestClient = {
    ws,
    url,
    frames: inbox.seen,
    async next(predOrTimeout?: unknown, timeoutMs?: unknown): Promise<never> {
      const { pred, ms } = nextArgs<ClientFrame>("next", predOrTimeout, timeoutMs);
      return inbox.take(pred, ms, new Error()) as Promise<never>;
    },
    async nextText(timeoutMs?: number): Promise<string> {
      return (await inbox.take(isText, timeoutArg(timeoutMs, "nextText"), new Error())).data as string;
    },
    send(data: string | Uint8Array): void {
      if (typeof data !== "string" && !(data instanceof Uint8Array)) throw badarg(`send: data must be a string or a Uint8Array, got ${describe(data)}`);
      if (ws.readyState !== WebSocket.OPEN) throw new Error(`${label()}: cannot send, the socket is ${closeInfo === undefined ? "closing" : `closed (${closeInfo.code})`}`);
      ws.send(data, { binary: typeof data !== "string" });
    },
    async close(code?: number, reason?: string, timeoutMs?: number): Promise<CloseInfo> {
      const ms = timeoutArg(timeoutMs, "close");
      const waitSite = new Error();
      if (closeInfo === undefined && ws.readyState !== WebSocket.CLOSING) ws.close(code, reason);
      return whenClosed(ms, waitSite, () => {
        ws.terminate();
        return `${label()}: the closing handshake was not done within ${ms} ms; the socket was destroyed`;
      });
    },
    async closed(timeoutMs?: number): Promise<CloseInfo> {
      const ms = timeoutArg(timeoutMs, "closed");
      return whenClosed(ms, new Error(), () => `${label()}: still open after ${ms} ms${inbox.seen.length === 0 ? "" : ` (${inbox.seen.length} frames received)`}`);
    },
  };

  return new Promise<TestClient>((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.off("close", failed);
      ws.terminate();
      reject(failure(site, `${label()}: the handshake was not done within ${openMs} ms`));
    }, openMs);
    const failed = (): void => {
      clearTimeout(timer);
      reject(failure(site, `${label()}: did not open${lastError === undefined ? "" : `: ${lastError.message}`}`));
    };
    ws.once("close", failed);
    ws.once("open", () => {
      clearTimeout(timer);
      ws.off("close", failed);
      clients.add(client);
      resolve(client);
    });
  });
}

// ---------------------------------------------------------------------------------------
// A test process.

/** testProcess's options. */
export interface TestProcessOptions {
  /** Register the process under this name (so `send(name, …)` reaches it). */
  readonly name?: string;
  /** Trap exits: an exit signal from a linked process arrives as an `EXIT` message instead of ending it. */
  readonly trapExit?: boolean;
}

/**
 * A process that keeps every message it receives, for a test to take them in order. Its
 * pid can join groups, be registered, be linked or monitored, be given to the code under test.
 */
export interface TestProcess<M = unknown> {
  readonly pid: Pid;
  /** Every message received, in order, including those next() has taken. */
  readonly messages: readonly M[];
  /**
   * The oldest message not yet taken (matching `pred`, when given; the others stay, in
   * order: Erlang's selective receive), waiting up to timeoutMs (default 2000). Rejects with
   * an Error naming the wait and the unread messages on timeout, or at once when the process
   * ends first.
   */
  next(timeoutMs?: number): Promise<M>;
  next<T extends M>(pred: (msg: M) => msg is T, timeoutMs?: number): Promise<T>;
  next(pred: (msg: M) => boolean, timeoutMs?: number): Promise<M>;
  /** Monitors pid from this process: its `DOWN` message arrives here. Resolves with the monitor's ref. */
  monitor(pid: Pid): Promise<Ref>;
  /** Links this process and pid (a dead pid rejects with ERR_NOPROC, unless trapping exits). */
  link(pid: Pid): Promise<void>;
  /** Ends the process (reason "normal") and resolves once it has ended; at once if it has already. */
  stop(): Promise<void>;
}

/** Something the test asks the process to do as itself (monitor, link, stop), in its mailbox's order; only this module can make one. */
class Command {
  constructor(readonly run: (state: ProbeState) => Result<ProbeState>) {}
}

/** A test process's state: the test's side of its mailbox. */
class ProbeState {
  readonly inbox: Inbox<unknown>;
  pid: Pid | undefined = undefined;
  reason: ExitReason | undefined = undefined;

  constructor() {
    const label = (): string => `testProcess ${String(this.pid)}`;
    this.inbox = new Inbox<unknown>(label, "message", () => (this.pid !== undefined && !isAlive(this.pid) && this.reason === undefined ? `; ${String(this.pid)} is no longer alive (killed)` : ""));
  }
}

/** The process behind testProcess (its name is the behaviour processInfo shows). */
class TestProcessBehavior implements ProcessBehavior<ProbeState, unknown, ProbeState> {
  init(state: ProbeState): ProbeState {
    return state;
  }

  handleInfo(msg: unknown, state: ProbeState): Result<ProbeState> {
    if (msg instanceof Command) return msg.run(state);
    state.inbox.push(msg);
    return ok(state);
  }

  terminate(reason: ExitReason, state: ProbeState): void {
    state.reason = reason;
    state.inbox.end(`ended (${show(reason)})`);
    if (state.pid !== undefined) probes.delete(state.pid);
  }
}

const probeBehavior = new TestProcessBehavior();
const probes = new Set<Pid>();
const TEST_PROCESS_OPTIONS: ReadonlySet<string> = new Set(["name", "trapExit"]);

/**
 * Spawns a process that collects its messages for the test. It runs until `stop()` (or
 * until an exit signal ends it); a leak check reports one left running.
 *
 * @example
 * const probe = testProcess();
 * join("room", probe.pid);
 * expect(await probe.next()).toEqual({ type: "said", text: "hi" });
 * await probe.stop();
 */
export function testProcess<M = unknown>(options: TestProcessOptions = {}): TestProcess<M> {
  if (typeof options !== "object" || options === null) throw badarg(`testProcess: options must be an object, got ${describe(options)}`);
  knownKeys(options, TEST_PROCESS_OPTIONS, "testProcess");
  const trapExit = flag(options.trapExit, "testProcess: trapExit must be a boolean", false);
  const state = new ProbeState();
  const pid = spawn(probeBehavior, state, options.name === undefined ? { trapExit } : { name: options.name, trapExit });
  state.pid = pid;
  probes.add(pid);
  const label = `testProcess ${String(pid)}`;

  /**
   * monitor or link run inside the process, after the messages already in its mailbox; what
   * they throw goes to the test, and the process lives on.
   */
  const asSelf = async <R>(fn: string, target: Pid, act: (target: Pid) => R): Promise<R> => {
    checkPid(target, fn);
    const gone = (): Error => new Error(`${label}: ${fn}: the process has ended (${state.reason === undefined ? "killed" : show(state.reason)})`);
    if (!isAlive(pid)) throw gone();
    const done = await new Promise<{ value: R } | { error: unknown }>((resolve, reject) => {
      // Polled, not told: a process killed (by a link, or exit "kill") runs no terminate.
      const watch = setInterval(() => {
        if (isAlive(pid)) return;
        clearInterval(watch);
        reject(gone());
      }, POLL);
      send(
        pid,
        new Command((s) => {
          clearInterval(watch);
          try {
            resolve({ value: act(target) });
          } catch (error) {
            resolve({ error });
          }
          return ok(s);
        }),
      );
    });
    if ("error" in done) throw done.error;
    return done.value;
  };

  return {
    pid,
    messages: state.inbox.seen as M[],
    async next(predOrTimeout?: unknown, timeoutMs?: unknown): Promise<never> {
      const { pred, ms } = nextArgs<unknown>("next", predOrTimeout, timeoutMs);
      return state.inbox.take(pred, ms, new Error()) as Promise<never>;
    },
    monitor: (target) => asSelf("monitor", target, monitor),
    link: (target) => asSelf("link", target, link),
    async stop(): Promise<void> {
      if (!isAlive(pid)) return;
      send(pid, new Command((s) => stop(s)));
      // Polled, not told: a process killed (by a link, or exit "kill") runs no terminate.
      while (isAlive(pid)) await sleep(POLL);
    },
  };
}

// ---------------------------------------------------------------------------------------
// Leak check.

/** What the runtime held when leakCheck() was called. */
export interface LeakCheck {
  /**
   * What is left now that was not there at the snapshot, one line each: processes (with
   * their behaviour, status, name and groups), timers (a count), registered names, group
   * memberships, and this module's servers not stopped and clients not closed. Empty: nothing leaked.
   */
  leaks(): string[];
  /**
   * Resolves once nothing is left over (processes end asynchronously, so it looks again
   * until then); rejects after timeoutMs (default 2000) with an Error listing every leak.
   */
  assert(timeoutMs?: number): Promise<void>;
}

/**
 * Takes a snapshot of the runtime (live processes, armed timers, registered names, group
 * members) and of this module's open servers and clients, to check later that a test left
 * nothing behind.
 *
 * @example
 * let leaks: LeakCheck;
 * beforeEach(() => { leaks = leakCheck(); });
 * afterEach(() => leaks.assert());
 */
export function leakCheck(): LeakCheck {
  const pids = new Set(processes());
  const timers = timerCount();
  const names = new Set(registered());
  const groups = new Map(whichGroups().map((g) => [g, new Set(members(g))]));
  const oldServers = new Set(servers);
  const oldClients = new Set(clients);

  const leaks = (): string[] => {
    const found: string[] = [];
    for (const pid of processes()) {
      if (pids.has(pid)) continue;
      const info = processInfo(pid);
      if (info === undefined) continue;
      if (probes.has(pid)) {
        found.push(`process ${pid}: a testProcess, not stopped`);
        continue;
      }
      const name = info.registeredName === undefined ? "" : `, registered as ${JSON.stringify(info.registeredName)}`;
      const inGroups = info.groups.length === 0 ? "" : `, in ${info.groups.map((g) => JSON.stringify(g)).join(", ")}`;
      found.push(`process ${pid}: ${JSON.stringify(info.behaviour)}, ${info.status}, ${info.messageQueueLen} queued${name}${inGroups}`);
    }
    const armed = timerCount();
    if (armed > timers) found.push(`timers: ${armed} armed, ${timers} at the snapshot`);
    for (const name of registered()) {
      if (!names.has(name)) found.push(`registered name ${JSON.stringify(name)} → ${String(whereis(name))}`);
    }
    for (const group of whichGroups()) {
      const before = groups.get(group);
      const added = members(group).filter((pid) => before === undefined || !before.has(pid));
      if (added.length > 0) found.push(`group ${JSON.stringify(group)}: ${added.join(", ")}`);
    }
    for (const server of servers) {
      if (!oldServers.has(server) && listenerInfo(server.name) === server.listener) found.push(`testServer ${JSON.stringify(server.name)} on port ${server.port}, not stopped`);
    }
    for (const client of clients) if (!oldClients.has(client)) found.push(`testClient ${client.url}, not closed`);
    return found;
  };

  return {
    leaks,
    async assert(timeoutMs?: number): Promise<void> {
      const ms = timeoutArg(timeoutMs, "assert");
      const site = new Error();
      const deadline = Date.now() + ms;
      for (;;) {
        const found = leaks();
        if (found.length === 0) return;
        if (Date.now() >= deadline) {
          throw failure(site, `leakCheck: ${found.length} left behind ${ms} ms after the test:\n${found.map((l) => `  - ${l}`).join("\n")}`);
        }
        await sleep(POLL);
      }
    },
  };
}
