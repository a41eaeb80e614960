/**
 * call and cast to the processes behind a listener, over real sockets: a WebSocket
 * connection (websocketInfo, isCall, replyTo), one without websocketInfo, a loop handler's
 * request process (info) and a machine handler (a "call" event), asked from an HTTP
 * handler's init and from app code.
 */
import { get } from "node:http";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { setup } from "xstate";
import {
  call,
  CallError,
  cast,
  exit,
  isAlive,
  isCall,
  loop,
  machineHandler,
  ok,
  reply,
  replyTo,
  self,
  stop,
  text,
  upgrade,
  wsReply,
  type CallMessage,
  type From,
  type HttpHandler,
  type LoopHandler,
  type Pid,
  type TerminateReason,
  type WebSocketHandler,
  type WsEvent,
} from "../../src/index.js";
import { leakCheck, testClient, testServer, type LeakCheck, type TestServer } from "../../src/testing.js";
import { captureLogs, until } from "../support/helpers.js";

captureLogs();

/** "At once": far below the 2000 ms the calls here are given. */
const AT_ONCE = 250;

/** Pids of live connections and loops, by the id in their path. */
const pids = new Map<string, Pid>();
/** What each connection's or loop's terminate got, by id. */
const ended = new Map<string, TerminateReason>();
/** The `from` of each call a connection took, by id. */
const froms = new Map<string, From[]>();

let nextId = 0;
const newId = (): string => `c${++nextId}`;

async function pidOf(id: string): Promise<Pid> {
  await until(() => pids.has(id), 2000, `the process of ${id} to start`);
  return pids.get(id)!;
}

type ConnState = { id: string; held: From | null };

/** A connection that answers calls in websocketInit: at once (with a frame too), or later when the client says so. */
const conn: WebSocketHandler<ConnState> = {
  init: (req) => upgrade(req, { id: req.binding("id")!, held: null }),
  websocketInit(state) {
    pids.set(state.id, self());
    return ok(state);
  },
  websocketHandle(frame, state) {
    if (frame.type === "text" && frame.data === "release" && state.held !== null) {
      replyTo(state.held, "released by the client's frame");
      return reply(text("released"), { ...state, held: null });
    }
    return reply(text(`echo:${frame.type === "text" ? frame.data : "?"}`), state);
  },
  websocketInfo(info, state) {
    if (isCall(info)) {
      const req = info.request as { op: string; q?: string };
      froms.set(state.id, [...(froms.get(state.id) ?? []), info.from]);
      if (req.op === "ask") {
        replyTo(info.from, `answer to ${req.q}`);
        return reply(text(`asked ${req.q}`), state);
      }
      if (req.op === "hold") return reply(text("holding"), { ...state, held: info.from });
      return ok(state);
    }
    return reply(text(`info:${JSON.stringify(info)}`), state);
  },
  terminate(reason, _req, state) {
    ended.set(state.id, reason);
  },
};

/** A connection with no websocketInfo at all. */
const noInfo: WebSocketHandler<{ id: string }> = {
  init: (req) => upgrade(req, { id: req.binding("id")! }),
  websocketInit(state) {
    pids.set(state.id, self());
    return ok(state);
  },
  websocketHandle(frame, state) {
    return reply(text(`echo:${frame.type === "text" ? frame.data : "?"}`), state);
  },
};

/** An HTTP handler that asks a connection and answers the HTTP request with what it said, or with the error's code. */
const ask: HttpHandler<null> = {
  async init(req) {
    const pid = pids.get(req.binding("id")!)!;
    try {
      const answer = await call<string>(pid, { op: "ask", q: req.qs }, 1000);
      req.reply(200, { "content-type": "text/plain" }, answer);
    } catch (err) {
      req.reply(503, { "content-type": "text/plain" }, err instanceof CallError ? `${err.code} ${JSON.stringify(err.reason)}` : String(err));
    }
    return { type: "ok", req, state: null };
  },
};

type LoopState = { id: string; infos: unknown[] };

/** A long-polling loop: a call in info is answered, and its answer is also the HTTP response. */
const longPoll: LoopHandler<LoopState> = {
  init(req) {
    const id = req.binding("id")!;
    pids.set(id, self());
    return loop(req, { id, infos: [] });
  },
  info(msg, req, state) {
    if (isCall(msg)) {
      replyTo(msg.from, { loopAnswer: msg.request, caller: msg.from.caller });
      req.reply(200, { "content-type": "text/plain" }, `the loop answered ${JSON.stringify(msg.request)}`);
      return stop(state);
    }
    state.infos.push(msg);
    if (msg === "finish") {
      req.reply(200, { "content-type": "text/plain" }, JSON.stringify(state.infos));
      return stop(state);
    }
    return ok(state);
  },
  terminate(reason, _req, state) {
    ended.set(state.id, reason);
  },
};

/** A machine that takes calls while "open" (only "status" requests), and none while "locked". */
const doorMachine = setup({
  types: {
    context: {} as { id: string; opened: number },
    events: {} as WsEvent | CallMessage,
    input: {} as { id: string },
  },
}).createMachine({
  id: "door",
  context: ({ input }) => ({ id: input.id, opened: 0 }),
  initial: "open",
  entry: ({ context }) => {
    pids.set(context.id, self());
  },
  states: {
    open: {
      on: {
        call: {
          guard: ({ event }) => event.type === "call" && event.request === "status",
          actions: [
            ({ event, context }) => {
              if (event.type === "call") replyTo(event.from, { state: "open", id: context.id });
            },
            wsReply(text("someone asked the door")),
          ],
        },
        "ws.text": { target: "locked", actions: wsReply(text("locked")) },
        "ws.info": { actions: wsReply(({ event }) => text(`open, info:${JSON.stringify(event.data)}`)) },
      },
    },
    locked: {
      on: {
        "ws.text": { target: "open", actions: wsReply(text("unlocked")) },
      },
    },
  },
});

const door = machineHandler(doorMachine, { input: (req) => ({ id: req.binding("id")! }) });

function httpGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (s: string) => (body += s));
      res.on("end", () => resolve({ status: res.statusCode!, body }));
    }).on("error", reject);
  });
}

async function rejection(p: Promise<unknown>): Promise<CallError> {
  try {
    const v = await p;
    throw new Error(`expected the call to reject, it resolved with ${JSON.stringify(v)}`);
  } catch (err) {
    expect(err).toBeInstanceOf(CallError);
    return err as CallError;
  }
}

let server: TestServer;
let leaks: LeakCheck;
beforeEach(async () => {
  leaks = leakCheck();
  server = await testServer([
    ["/conn/:id", conn],
    ["/noinfo/:id", noInfo],
    ["/ask/:id", ask],
    ["/loop/:id", longPoll],
    ["/door/:id", door],
  ]);
});
afterEach(async () => {
  await server.stop();
  await leaks.assert();
});

describe("a WebSocket connection takes calls in websocketInfo", () => {
  test("an HTTP handler asks a connection: replyTo answers the HTTP request, and the same callback pushes a frame", async () => {
    const id = newId();
    const client = await testClient(server.wsUrl(`/conn/${id}`));
    const connPid = await pidOf(id);

    const res = await httpGet(server.url(`/ask/${id}?weather`));
    expect(res).toEqual({ status: 200, body: "answer to weather" });
    expect(await client.nextText()).toBe("asked weather");
    // The caller was the HTTP request's own process: a pid, not the connection's.
    const from = froms.get(id)![0]!;
    expect(from.caller).not.toBeNull();
    expect(from.caller).not.toBe(connPid);
    expect(isAlive(from.caller!)).toBe(false); // the request process ended after its reply
    await client.close();
  });

  test("app code outside any process calls a connection; the connection answers later, when its client says so", async () => {
    const id = newId();
    const client = await testClient(server.wsUrl(`/conn/${id}`));
    const pid = await pidOf(id);

    const pending = call<string>(pid, { op: "hold" }, 2000);
    expect(await client.nextText()).toBe("holding");
    client.send("release");
    expect(await pending).toBe("released by the client's frame");
    expect(await client.nextText()).toBe("released");
    expect(froms.get(id)![0]!.caller).toBeNull();
    await client.close();
  });

  test("a call to a connection that has gone: ERR_NOPROC from the HTTP handler", async () => {
    const id = newId();
    const client = await testClient(server.wsUrl(`/conn/${id}`));
    const pid = await pidOf(id);
    await client.close();
    await until(() => !isAlive(pid), 2000, "the connection to end");
    const res = await httpGet(server.url(`/ask/${id}?anyone`));
    expect(res.status).toBe(503);
    expect(res.body).toMatch(/^ERR_NOPROC/);
  });

  test("the connection closes while a call waits: ERR_CALL_EXIT at once, with the connection's exit reason", async () => {
    const id = newId();
    const client = await testClient(server.wsUrl(`/conn/${id}`));
    const pid = await pidOf(id);
    const pending = rejection(call(pid, { op: "hold" }, 2000));
    expect(await client.nextText()).toBe("holding");
    const t0 = performance.now();
    await client.close();
    const err = await pending;
    expect(performance.now() - t0).toBeLessThan(AT_ONCE);
    expect(err.code).toBe("ERR_CALL_EXIT");
    expect(err.reason).toBe("normal");
    expect(ended.get(id)).toBe("remote");
  });

  test("a connection killed while a call waits: ERR_CALL_EXIT killed", async () => {
    const id = newId();
    const client = await testClient(server.wsUrl(`/conn/${id}`));
    const pid = await pidOf(id);
    const pending = rejection(call(pid, { op: "hold" }, 2000));
    expect(await client.nextText()).toBe("holding");
    exit(pid, "kill");
    const err = await pending;
    expect(err.code).toBe("ERR_CALL_EXIT");
    expect(err.reason).toBe("killed");
    await client.closed();
  });

  test("a cast reaches websocketInfo as the plain message", async () => {
    const id = newId();
    const client = await testClient(server.wsUrl(`/conn/${id}`));
    const pid = await pidOf(id);
    cast(pid, { news: "cast to a connection" });
    expect(await client.nextText()).toBe('info:{"news":"cast to a connection"}');
    await client.close();
  });

  test("a handler without websocketInfo refuses a call: ERR_CALL_UNHANDLED at once; the connection lives on", async () => {
    const id = newId();
    const client = await testClient(server.wsUrl(`/noinfo/${id}`));
    const pid = await pidOf(id);
    const t0 = performance.now();
    const err = await rejection(call(pid, "hello?", 2000));
    expect(performance.now() - t0).toBeLessThan(AT_ONCE);
    expect(err.code).toBe("ERR_CALL_UNHANDLED");
    expect(err.message).toMatch(/websocketInfo/);
    client.send("still there");
    expect(await client.nextText()).toBe("echo:still there");
    expect(isAlive(pid)).toBe(true);
    await client.close();
  });
});

describe("a loop handler takes calls in info", () => {
  test("a call reaches info; replyTo answers it and the loop answers its HTTP request", async () => {
    const id = newId();
    const response = httpGet(server.url(`/loop/${id}`));
    const pid = await pidOf(id);
    const answer = await call(pid, { q: 1 }, 2000);
    expect(answer).toEqual({ loopAnswer: { q: 1 }, caller: null });
    expect(await response).toEqual({ status: 200, body: 'the loop answered {"q":1}' });
    await until(() => ended.has(id), 2000, "the loop to end");
    expect(ended.get(id)).toBe("stop");
  });

  test("a cast reaches info as the plain message", async () => {
    const id = newId();
    const response = httpGet(server.url(`/loop/${id}`));
    const pid = await pidOf(id);
    cast(pid, { cast: "to a loop" });
    cast(pid, "finish");
    expect(await response).toEqual({ status: 200, body: '[{"cast":"to a loop"},"finish"]' });
  });
});

describe("a machine handler takes calls as a \"call\" event", () => {
  test("a call event's action answers with replyTo(event.from, …) and pushes a frame", async () => {
    const id = newId();
    const client = await testClient(server.wsUrl(`/door/${id}`));
    const pid = await pidOf(id);
    expect(await call(pid, "status", 2000)).toEqual({ state: "open", id });
    expect(await client.nextText()).toBe("someone asked the door");
    await client.close();
  });

  test("a state with no transition for the call (or a guard that refuses it): ERR_CALL_UNHANDLED at once; the machine goes on", async () => {
    const id = newId();
    const client = await testClient(server.wsUrl(`/door/${id}`));
    const pid = await pidOf(id);

    // Open, but the guard takes only "status".
    const t0 = performance.now();
    const refused = await rejection(call(pid, "open sesame", 2000));
    expect(refused.code).toBe("ERR_CALL_UNHANDLED");
    expect(performance.now() - t0).toBeLessThan(AT_ONCE);

    client.send("lock");
    expect(await client.nextText()).toBe("locked");
    const err = await rejection(call(pid, "status", 2000));
    expect(err.code).toBe("ERR_CALL_UNHANDLED");
    expect(err.message).toMatch(/door/);
    expect(isAlive(pid)).toBe(true);

    client.send("unlock");
    expect(await client.nextText()).toBe("unlocked");
    expect(await call(pid, "status", 2000)).toEqual({ state: "open", id });
    expect(await client.nextText()).toBe("someone asked the door");
    await client.close();
  });

  test("a cast to a machine is an event as any message is: a string arrives as ws.info", async () => {
    const id = newId();
    const client = await testClient(server.wsUrl(`/door/${id}`));
    const pid = await pidOf(id);
    cast(pid, "knock");
    expect(await client.nextText()).toBe('open, info:"knock"');
    await client.close();
  });
});
