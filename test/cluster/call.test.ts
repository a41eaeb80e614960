/**
 * call and cast across nodes: this test process is one node, two forked nodes
 * (test/support/cluster-node.mjs, the built package) the others, on each transport: a real
 * redis-server of this file's own, and node:cluster's IPC with this process as the primary
 * (a call between b and c goes over their own connection). The forked nodes get their gen_servers and their
 * calls from test/support/call-node.mjs, preloaded with NODE_OPTIONS.
 */
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  answer,
  call,
  CallError,
  cast,
  CorralError,
  exit,
  isAlive,
  makeRef,
  multiCall,
  nodes,
  ok,
  Pid,
  processCount,
  Ref,
  send,
  spawn,
  timerCount,
  type From,
  type ProcessBehavior,
  type Result,
} from "../../src/index.js";
import { collector, ensureBuilt, startTrio, stopTrio, transports, until, within, type ChildNode, type Trio } from "../support/cluster.js";

const HEARTBEAT = 100;
const NODE_TIMEOUT = 600;
/** A lost node is noticed within nodeTimeoutMs + a heartbeat; the rest is slack for two busy CPUs. */
const NODE_DOWN_BOUND = NODE_TIMEOUT + HEARTBEAT + 700;
/** Over IPC the primary tells every node at once that a worker exited: the same slack, no timeout. */
const NODE_DOWN_BOUND_IPC = 700;
/** "At once" for a round trip through Redis or the primary: far below the 3000 ms timeouts these calls get. */
const AT_ONCE = 500;

const PRELOAD = pathToFileURL(new URL("../support/call-node.mjs", import.meta.url).pathname).href;

// ---------------------------------------------------------------------------------------
// The commands of call-node.mjs, over the node's IPC channel.

const channels = new WeakMap<ChildNode, Map<number, (m: { ok: boolean; value?: unknown; error?: { message: string } }) => void>>();
let nextCmd = 1;

function on<T>(node: ChildNode, cmd: string, args: Record<string, unknown> = {}, ms = 5_000): Promise<T> {
  let pending = channels.get(node);
  if (pending === undefined) {
    const map = new Map<number, (m: { ok: boolean; value?: unknown; error?: { message: string } }) => void>();
    node.child.on("message", (m: { callCmd?: unknown; ok: boolean; value?: unknown; error?: { message: string } }) => {
      if (typeof m?.callCmd !== "number") return;
      const resolve = map.get(m.callCmd);
      map.delete(m.callCmd);
      resolve?.(m);
    });
    channels.set(node, map);
    pending = map;
  }
  const id = nextCmd++;
  const map = pending;
  const reply = new Promise<T>((resolve, reject) => {
    map.set(id, (m) => (m.ok ? resolve(m.value as T) : reject(new Error(`node ${node.name}: ${cmd} failed: ${m.error?.message}`))));
    node.child.send({ callCmd: id, cmd, ...args });
  });
  return within(reply, ms, `node ${node.name}: ${cmd}`);
}

/** A gen_server on node; its pid. */
async function remoteServer(node: ChildNode): Promise<Pid> {
  return Pid.parse(await on<string>(node, "server"));
}

type Logged = [kind: "call" | "cast" | "info", msg: unknown];

function logOf(node: ChildNode, pid: Pid): Promise<Logged[]> {
  return on<Logged[]>(node, "log", { pid: String(pid) });
}

async function waitLog(node: ChildNode, pid: Pid, pred: (log: Logged[]) => boolean, what: string): Promise<Logged[]> {
  return until(
    async () => {
      const log = await logOf(node, pid);
      return pred(log) ? log : undefined;
    },
    5_000,
    what,
    10,
  );
}

async function rejection(p: Promise<unknown>): Promise<CallError> {
  try {
    const v = await p;
    throw new Error(`expected the call to reject, it resolved with ${String(v)}`);
  } catch (err) {
    expect(err).toBeInstanceOf(CallError);
    return err as CallError;
  }
}

async function timed<T>(f: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = performance.now();
  const value = await f();
  return { value, ms: performance.now() - t0 };
}

// ---------------------------------------------------------------------------------------
// A gen_server here, for the other nodes to call and cast to.

interface LocalState {
  calls: unknown[];
  casts: unknown[];
  infos: unknown[];
}

class LocalServer implements ProcessBehavior<LocalState, unknown, LocalState> {
  init(s: LocalState): LocalState {
    return s;
  }
  handleCall(request: unknown, from: From, s: LocalState): Result<LocalState> {
    s.calls.push(request);
    return answer({ here: true, request, callerNode: from.caller === null ? null : from.caller.node, fromNode: from.pid.node }, s);
  }
  handleCast(msg: unknown, s: LocalState): Result<LocalState> {
    s.casts.push(msg);
    return ok(s);
  }
  handleInfo(msg: unknown, s: LocalState): Result<LocalState> {
    s.infos.push(msg);
    return ok(s);
  }
}

function localServer(): { pid: Pid; s: LocalState } {
  const s: LocalState = { calls: [], casts: [], infos: [] };
  return { pid: spawn(new LocalServer(), s), s };
}

// ---------------------------------------------------------------------------------------

describe.each(transports())("call and cast across nodes over %s", (kind) => {
  let trio: Trio | undefined;
  let b: ChildNode;
  let c: ChildNode;
  let ME: string;

  beforeAll(async () => {
    await ensureBuilt();
    const before = process.env["NODE_OPTIONS"];
    process.env["NODE_OPTIONS"] = `${before ?? ""} --import ${PRELOAD}`.trim();
    try {
      trio = await startTrio("call", { heartbeatMs: HEARTBEAT, nodeTimeoutMs: NODE_TIMEOUT }, kind);
    } finally {
      if (before === undefined) delete process.env["NODE_OPTIONS"];
      else process.env["NODE_OPTIONS"] = before;
    }
    ({ b, c, me: ME } = trio);
  }, 150_000);

  afterAll(() => stopTrio(trio), 30_000);

  test("a call to a gen_server on another node, answered at once; nothing is left here once it settles", async () => {
    const srv = await remoteServer(b);
    expect(srv.node).toBe(b.name);
    const base = processCount();
    const timers = timerCount();
    expect(await call(srv, { op: "echo", v: "across" }, 3000)).toBe("across");
    expect(processCount()).toBe(base);
    expect(timerCount()).toBe(timers);
    expect(await call(srv, { op: "echo", v: 2 }, 3000)).toBe(2);
    expect(await logOf(b, srv)).toEqual([
      ["call", { op: "echo", v: "across" }],
      ["call", { op: "echo", v: 2 }],
    ]);
  });

  test("answered later: by the server's own timer, and by replyTo from app code on that node", async () => {
    const srv = await remoteServer(b);
    const { value, ms } = await timed(() => call(srv, { op: "later", ms: 60, v: "after its timer" }, 3000));
    expect(value).toBe("after its timer");
    expect(ms).toBeGreaterThanOrEqual(55);

    const pending = call(srv, { op: "hold" }, 3000);
    await waitLog(b, srv, (l) => l.length === 3, "the held call to reach the server");
    expect(await on<number>(b, "release", { pid: String(srv), value: { by: "app code there" } })).toBe(1);
    expect(await pending).toEqual({ by: "app code there" });
  });

  test("a call from inside a process here (its handleInfo awaits it): from.caller crosses as that process's pid", async () => {
    const srv = await remoteServer(b);
    let answered: { from: From } | undefined;
    const caller = spawn({
      init: () => null,
      handleInfo: async (_msg: unknown, st: null) => {
        answered = await call<{ from: From }>(srv, { op: "rich" }, 3000);
        return ok(st);
      },
    } satisfies ProcessBehavior<null>);
    send(caller, "go");
    await until(() => answered, 5_000, "the caller's answer");
    expect(answered!.from.caller).toBe(caller);
    expect(answered!.from.pid).toBeInstanceOf(Pid);
    expect(answered!.from.pid.node).toBe(ME);
    expect(isAlive(answered!.from.pid)).toBe(false);
    exit(caller, "kill");
  });

  test("the answer's pids, refs, Maps, Sets and Dates survive, both the caller's own and the other node's", async () => {
    const me = collector();
    const srv = await remoteServer(b);
    const ref = makeRef();
    const request = { op: "rich", mine: me.pid, ref, byPid: new Map<unknown, string>([[me.pid, "mine"]]), list: [me.pid, ref] };
    const a = await call<{
      request: typeof request;
      me: Pid;
      from: From;
      ref: Ref;
      byPid: Map<Pid, string>;
      set: Set<unknown>;
      when: Date;
    }>(srv, request, 3000);

    // What went there and came back: our own live pid object again, and an equal ref.
    expect(a.request.mine).toBe(me.pid);
    expect(a.request.ref).toBeInstanceOf(Ref);
    expect(a.request.ref.equals(ref)).toBe(true);
    expect(a.request.byPid).toBeInstanceOf(Map);
    expect(a.request.byPid.get(me.pid)).toBe("mine");
    expect(a.request.list[0]).toBe(me.pid);
    // What the other node made.
    expect(a.me).toBeInstanceOf(Pid);
    expect(a.me.node).toBe(b.name);
    expect(String(a.me)).toBe(String(srv));
    expect(a.ref).toBeInstanceOf(Ref);
    expect(a.ref.node).toBe(b.name);
    expect(a.from.caller).toBeNull();
    expect(a.byPid).toBeInstanceOf(Map);
    expect([...a.byPid.keys()].every((k) => k instanceof Pid)).toBe(true);
    expect([...a.byPid.entries()].map(([k, v]) => [String(k), v])).toEqual([
      [String(srv), "the server"],
      [String(a.from.pid), "the call"],
    ]);
    expect(a.set).toBeInstanceOf(Set);
    expect([...a.set].map(String)).toEqual([String(srv), "x"]);
    expect(a.when).toBeInstanceOf(Date);
    expect(a.when.getTime()).toBe(Date.UTC(2024, 1, 29));
    await me.stop();
  });

  test("the other way: that node calls a gen_server here, also from inside its own handleCall", async () => {
    const here = localServer();
    const direct = await on<{ value?: unknown; code?: string }>(b, "call", { to: String(here.pid), request: { q: "from b" }, timeoutMs: 3000 });
    // From app code there: no calling process.
    expect(direct).toEqual({ value: { here: true, request: { q: "from b" }, callerNode: null, fromNode: b.name } });

    const srv = await remoteServer(b);
    const nested = await call(srv, { op: "callBack", to: String(here.pid), request: { q: "nested" } }, 3000);
    // From the server's handleCall there: the caller is that server.
    expect(nested).toEqual({ gotBack: { here: true, request: { q: "nested" }, callerNode: b.name, fromNode: b.name } });
    expect(here.s.calls).toEqual([{ q: "from b" }, { q: "nested" }]);
    exit(here.pid, "kill");
  });

  test("a callee on another node that crashes or stops in handleCall: ERR_CALL_EXIT with its reason", async () => {
    const srv = await remoteServer(b);
    const crashed = await rejection(call(srv, { op: "crash", message: "remote boom" }, 3000));
    expect(crashed.code).toBe("ERR_CALL_EXIT");
    const crash = (crashed.reason as { crash: Error }).crash;
    expect(crash).toBeInstanceOf(Error);
    expect(crash.message).toBe("remote boom");

    const other = await remoteServer(b);
    const stopped = await rejection(call(other, { op: "stop", reason: { shutdown: "bye" } }, 3000));
    expect(stopped.code).toBe("ERR_CALL_EXIT");
    expect(stopped.reason).toEqual({ shutdown: "bye" });
  });

  test("a plain process on another node that dies while the call waits: ERR_CALL_EXIT at once with its reason; it got the call as a message", async () => {
    const target = await b.spawn();
    const pending = rejection(call(Pid.parse(target), { hello: "plain" }, 3000));
    const [got] = await b.waitReceived(target, (m) => m.length === 1, 5_000, "the call as a message");
    expect(got).toMatchObject({ type: "call", request: { hello: "plain" }, from: { pid: { local: false }, caller: null } });
    const t0 = performance.now();
    await b.call("crash", { pid: target, message: "died while asked" });
    const err = await pending;
    expect(performance.now() - t0).toBeLessThan(AT_ONCE);
    expect(err.code).toBe("ERR_CALL_EXIT");
    expect((err.reason as { crash: Error }).crash.message).toBe("died while asked");
  });

  test("a dead pid on another node: ERR_NOPROC, without waiting for the timeout", async () => {
    const target = await b.spawn();
    await b.call("stop", { pid: target });
    await until(async () => (await b.call<boolean>("alive", { pid: target })) === false || undefined, 5_000, "the remote process to end");
    const base = processCount();
    const { value: err, ms } = await timed(() => rejection(call(Pid.parse(target), "anyone?", 3000)));
    expect(err.code).toBe("ERR_NOPROC");
    expect(ms).toBeLessThan(AT_ONCE);
    expect(processCount()).toBe(base);
  });

  test("a request that cannot be serialized (a function inside) rejects ERR_BADARG", async () => {
    const srv = await remoteServer(b);
    const err = await within(
      (async () => {
        try {
          await call(srv, { op: "echo", v: { fn: () => 1 } }, 3000);
          return undefined;
        } catch (e) {
          return e as CorralError;
        }
      })(),
      1000,
      "the call to reject",
    );
    expect(err).toBeInstanceOf(CorralError);
    expect(err!.code).toBe("ERR_BADARG");
    // The server never saw it, and takes the next call.
    expect(await call(srv, { op: "echo", v: "next" }, 3000)).toBe("next");
    expect(await logOf(b, srv)).toEqual([["call", { op: "echo", v: "next" }]]);
  });

  // The call's process is armed (monitor, timer) before the send that refuses the request: it must go with the rejection.
  test("a request that cannot be serialized leaves no process and no timer behind", async () => {
    const srv = await remoteServer(b);
    const base = processCount();
    const timers = timerCount();
    await expect(call(srv, { fn: () => 1 }, 3000)).rejects.toMatchObject({ code: "ERR_BADARG" });
    await until(
      () => (processCount() === base && timerCount() === timers) || undefined,
      500,
      () => `the call's process and timer to go: ${processCount() - base} process(es) and ${timerCount() - timers} timer(s) left`,
    );
  });

  test("an answer that cannot cross back: the callee crashes in its handleCall, the call rejects ERR_CALL_EXIT", async () => {
    const srv = await remoteServer(b);
    const err = await rejection(call(srv, { op: "badAnswer" }, 3000));
    expect(err.code).toBe("ERR_CALL_EXIT");
    expect((err.reason as { crash: Error }).crash).toBeInstanceOf(Error);
  });

  test("a cast to another node's gen_server reaches handleCast; to a plain process there, the message itself", async () => {
    const srv = await remoteServer(b);
    cast(srv, { news: 1, from: ME });
    cast(srv, "second");
    const log = await waitLog(b, srv, (l) => l.length === 2, "the casts");
    expect(log).toEqual([
      ["cast", { news: 1, from: ME }],
      ["cast", "second"],
    ]);

    const plain = await b.spawn();
    cast(Pid.parse(plain), { plain: "cast" });
    const got = await b.waitReceived(plain, (m) => m.length === 1, 5_000, "the cast at a plain process");
    expect(got).toEqual([{ plain: "cast" }]);
  });

  test("a cast from another node to a gen_server here reaches handleCast; to a plain process here, the message itself", async () => {
    const here = localServer();
    const plain = collector();
    await on(b, "cast", { to: String(here.pid), msg: { from: "b" } });
    await on(b, "cast", { to: String(plain.pid), msg: { plain: "from b" } });
    await until(() => here.s.casts.length === 1 || undefined, 5_000, "the cast here");
    expect(here.s.casts).toEqual([{ from: "b" }]);
    expect(here.s.infos).toEqual([]);
    await plain.waitFor((m) => (m as { plain?: string } | null)?.plain === "from b", 5_000, "the cast at the collector");
    expect(plain.msgs).toEqual([{ plain: "from b" }]);
    exit(here.pid, "kill");
    await plain.stop();
  });

  test("a cast that cannot be serialized throws ERR_BADARG where it is made; a cast to a dead remote pid is silent", async () => {
    const srv = await remoteServer(b);
    let thrown: unknown;
    try {
      cast(srv, { fn: () => 1 });
    } catch (err) {
      thrown = err;
    }
    expect((thrown as CorralError).code).toBe("ERR_BADARG");
    const gone = await b.spawn();
    await b.call("stop", { pid: gone });
    expect(() => cast(Pid.parse(gone), "into the void")).not.toThrow();
  });

  test("multiCall over both nodes and this one: one deadline, each outcome in its place", async () => {
    const here = localServer();
    const fast = await remoteServer(b);
    const slow = await remoteServer(b);
    const slowC = await remoteServer(c);
    // The slow ones hold the call: they answer neither within the deadline.
    const r = await timed(() => multiCall([here.pid, fast, slow, slowC], { op: "hold", and: "echo" }, 300));
    expect(r.ms).toBeLessThan(300 + AT_ONCE);
    expect(r.value.replies.map((x) => x.dest)).toEqual([here.pid]);
    expect(r.value.failed.map((f) => [f.dest, f.error.code])).toEqual([
      [fast, "ERR_CALL_TIMEOUT"],
      [slow, "ERR_CALL_TIMEOUT"],
      [slowC, "ERR_CALL_TIMEOUT"],
    ]);
    exit(here.pid, "kill");
  });

  // Last: c goes down for good.
  test('the callee\'s node goes down during a call: ERR_CALL_EXIT "noconnection" within the node timeout; later calls to it at once', async () => {
    const srv = await remoteServer(c);
    const base = processCount();
    const pending = rejection(call(srv, { op: "hold" }, 10_000));
    await waitLog(c, srv, (l) => l.length === 1, "the call to reach c");
    const t0 = performance.now();
    await c.kill("SIGKILL");
    const err = await pending;
    expect(performance.now() - t0).toBeLessThan(kind === "redis" ? NODE_DOWN_BOUND : NODE_DOWN_BOUND_IPC);
    expect(err.code).toBe("ERR_CALL_EXIT");
    expect(err.reason).toBe("noconnection");
    expect(processCount()).toBe(base);
    await until(() => !nodes().includes(c.name) || undefined, 5_000, "c to be gone from nodes()");

    const { value: again, ms } = await timed(() => rejection(call(srv, { op: "echo", v: 1 }, 3000)));
    expect(again.code).toBe("ERR_CALL_EXIT");
    expect(again.reason).toBe("noconnection");
    expect(ms).toBeLessThan(AT_ONCE);
    expect(() => cast(srv, "to a lost node")).not.toThrow();
  });
});
