/**
 * machineHandler (docs/machines.md): xstate v5 machines as WebSocket handlers, end to end over a
 * real listener on 127.0.0.1 with the ws client — events, action helpers, input, delays on
 * the runtime's timers, hibernation (the actor dropped, the delays re-armed with the time
 * that was left), final states, crashes, and the types flowing into the helpers.
 */
import { afterAll, beforeAll, describe, expect, expectTypeOf, test } from "vitest";
import WebSocket from "ws";
import { assign, createActor, createMachine, fromPromise, raise, sendParent, setup, type ActorRefFrom } from "xstate";
import {
  binary,
  close,
  compileRoutes,
  isAlive,
  machineHandler,
  processInfo,
  register,
  self,
  send,
  sendToPid,
  spawn,
  startClear,
  startTimer,
  stopListener,
  text,
  timerCount,
  wsClose,
  wsCommands,
  wsHibernate,
  wsReply,
  wsStop,
  type Listener,
  type MachineOutput,
  type MachineState,
  type PartialReq,
  type Pid,
  type TerminateReason,
  type WebSocketHandler,
  type WsBinaryEvent,
  type WsEvent,
  type WsInfoEvent,
  type WsTextEvent,
} from "../../src/index.js";
import { gameHandler, gameMachine, serverMove } from "../../app/demo/game.js";
import { captureLogs, settle, sleep, until, type LogRecord } from "../support/helpers.js";

const { records } = captureLogs();
const LISTENER = "machine-e2e";
let listener: Listener;
const clients: WebSocket[] = [];

/** Connection pids by the id each test gives its client (?id=…), recorded by the machines' entry actions. */
const pids = new Map<string, Pid>();
const pidOf = async (id: string): Promise<Pid> => {
  await until(() => pids.has(id), 2000, `the pid of ${id}`);
  return pids.get(id)!;
};
const terms: { id: string | undefined; reason: TerminateReason; req: PartialReq; context: unknown }[] = [];

let nextId = 0;
const newId = (): string => `m${++nextId}`;

interface Client {
  ws: WebSocket;
  id: string;
  /** Text messages as received, binary ones as "bin:<hex>". */
  msgs: string[];
  /** When each message arrived (performance.now()). */
  at: number[];
  closed: Promise<{ code: number; reason: string }>;
  /** Resolves with the n-th message (0-based) once it has arrived. */
  nth(n: number, ms?: number): Promise<string>;
}

function connect(path: string, query: Record<string, string> = {}): Promise<Client> {
  const id = query["id"] ?? newId();
  const ws = new WebSocket(`ws://127.0.0.1:${listener.port}${path}?${new URLSearchParams({ id, ...query }).toString()}`);
  clients.push(ws);
  const msgs: string[] = [];
  const at: number[] = [];
  ws.on("message", (d, isBinary) => {
    msgs.push(isBinary ? `bin:${(d as Buffer).toString("hex")}` : d.toString());
    at.push(performance.now());
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  const client: Client = {
    ws,
    id,
    msgs,
    at,
    closed,
    async nth(n, ms = 2000) {
      await until(() => msgs.length > n, ms, `message #${n} on ${id} (have ${JSON.stringify(msgs)})`);
      return msgs[n]!;
    },
  };
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve(client));
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
}

/** Every test machine records its pid and the client's id from the input. */
type Input = { id: string };
const inputFromReq = (req: { qs: string }): Input => ({ id: new URLSearchParams(req.qs).get("id") ?? "none" });
const recordPid = ({ context }: { context: { id: string } }): void => void pids.set(context.id, self());

/* ---------------------------------------------------------------- machines under test */

type EchoEvent = WsEvent | { type: "hello"; who: string } | { type: "timeout"; msg: unknown };

/** Frames and infos as events. */
const eventsMachine = setup({
  types: { context: {} as { id: string; n: number }, events: {} as EchoEvent, input: {} as Input },
}).createMachine({
  context: ({ input }) => ({ id: input.id, n: 0 }),
  entry: [recordPid, wsReply(text("ready"))],
  on: {
    "ws.text": { actions: [assign({ n: ({ context }) => context.n + 1 }), wsReply(({ event, context }) => text(`text:${event.data}:${context.n}`))] },
    "ws.binary": { actions: wsReply(({ event }) => binary(event.data)) },
    "ws.ping": { actions: wsReply(({ event }) => text(`ping:${Buffer.from(event.data).toString()}`)) },
    "ws.pong": { actions: wsReply(({ event }) => text(`pong:${Buffer.from(event.data).toString()}`)) },
    "ws.info": { actions: wsReply(({ event }) => text(`info:${JSON.stringify(event.data)}`)) },
    hello: { actions: wsReply(({ event }) => text(`hello:${event.who}`)) },
    timeout: { actions: wsReply(({ event }) => text(`timeout:${String(event.msg)}`)) },
  },
});

let watcher: Pid | undefined;
const watched: unknown[] = [];

type ActionsEvent = WsEvent;
/** Each text names what the machine does with the connection. */
const actionsMachine = setup({
  types: { context: {} as { id: string; n: number }, events: {} as ActionsEvent, input: {} as Input },
  guards: { is: ({ event }, word: string) => event.type === "ws.text" && event.data === word },
}).createMachine({
  context: ({ input }) => ({ id: input.id, n: 0 }),
  entry: recordPid,
  on: {
    "ws.text": [
      { guard: { type: "is", params: "two" }, actions: [wsReply(text("one")), wsReply([text("two"), text("three")])] },
      { guard: { type: "is", params: "close" }, actions: [wsReply(text("closing")), wsClose(4001, "bye"), wsReply(text("never"))] },
      { guard: { type: "is", params: "stop" }, actions: [wsReply(text("last")), wsStop()] },
      { guard: { type: "is", params: "cmds" }, actions: wsCommands([text("x"), { setOptions: { idleTimeout: 150 } }]) },
      { guard: { type: "is", params: "send" }, actions: sendToPid(() => watcher!, ({ context }) => ({ from: context.id })) },
      { guard: { type: "is", params: "sendName" }, actions: sendToPid("machine-test-watcher", "by name") },
      {
        guard: { type: "is", params: "hib" },
        actions: [assign({ n: ({ context }) => context.n + 1 }), wsReply(({ context }) => text(`n=${context.n}`)), wsHibernate()],
      },
      { guard: { type: "is", params: "count" }, actions: wsReply(({ context }) => text(`n=${context.n}`)) },
      { guard: { type: "is", params: "nothing" }, actions: wsReply(() => undefined) },
    ],
  },
});

type TimerEvent = WsEvent | { type: "tick" };
/**
 * Delays: `waiting` hibernates at once and moves on after 400 ms; "poke" wakes it (and it
 * sleeps again), "leave" exits the state (the delay must be cancelled).
 */
const timersMachine = setup({
  types: { context: {} as { id: string }, events: {} as TimerEvent, input: {} as Input },
  guards: { is: ({ event }, word: string) => event.type === "ws.text" && event.data === word },
  delays: { patience: 400 },
}).createMachine({
  context: ({ input }) => ({ id: input.id }),
  entry: recordPid,
  initial: "idle",
  states: {
    idle: {
      on: {
        "ws.text": [
          { guard: { type: "is", params: "wait" }, target: "waiting" },
          { guard: { type: "is", params: "live" }, target: "liveWait" },
          { guard: { type: "is", params: "tick" }, target: "ticking" },
        ],
      },
    },
    waiting: {
      entry: [wsReply(text("waiting")), wsHibernate()],
      after: { patience: { target: "late" } },
      on: {
        "ws.text": [
          { guard: { type: "is", params: "poke" }, actions: [wsReply(text("poked")), wsHibernate()] },
          { guard: { type: "is", params: "leave" }, target: "left" },
        ],
      },
    },
    liveWait: { entry: wsReply(text("live")), after: { 150: { target: "late" } } },
    // A delayed event (raise with a delay) rather than a delayed transition.
    ticking: {
      entry: [raise({ type: "tick" }, { delay: 300, id: "tick" }), wsReply(text("ticking")), wsHibernate()],
      on: { tick: { target: "late" } },
    },
    late: { entry: [wsReply(text("late")), wsHibernate()], on: { "ws.text": { target: "waiting" } } },
    left: { entry: [wsReply(text("left")), wsHibernate()] },
  },
});

/** A child machine with its own delay, invoked by name: its delay is persisted and re-armed too. */
const childMachine = setup({ types: { events: {} as { type: "never" } } }).createMachine({
  initial: "counting",
  states: { counting: { after: { 300: { target: "rang", actions: sendParent({ type: "child.rang" }) } } }, rang: {} },
});
const parentMachine = setup({
  types: { context: {} as { id: string }, events: {} as WsEvent | { type: "child.rang" }, input: {} as Input },
  actors: { child: childMachine },
}).createMachine({
  context: ({ input }) => ({ id: input.id }),
  entry: [recordPid, wsReply(text("started")), wsHibernate()],
  invoke: { id: "kid", src: "child" },
  on: { "child.rang": { actions: [wsReply(text("rang")), wsHibernate()] } },
});

/** Final states: 1000 by default, or the output's code and reason. */
const finalMachine = setup({
  types: {
    context: {} as { id: string; score: number },
    events: {} as WsEvent,
    input: {} as Input,
    output: {} as MachineOutput,
  },
  guards: { is: ({ event }, word: string) => event.type === "ws.text" && event.data === word },
}).createMachine({
  context: ({ input }) => ({ id: input.id, score: 0 }),
  entry: recordPid,
  initial: "playing",
  states: {
    playing: {
      on: {
        "ws.text": [
          { guard: { type: "is", params: "win" }, target: "won", actions: wsReply(text("you win")) },
          { guard: { type: "is", params: "quit" }, target: "quit" },
          { guard: { type: "is", params: "score" }, actions: assign({ score: ({ context }) => context.score + 1 }) },
        ],
      },
    },
    won: { type: "final", output: { code: 4000, reason: "game over" } },
    quit: { type: "final" },
  },
  // The machine's output is the final state's (xstate: the root's output maps the done event).
  output: ({ event }) => (event.output ?? {}) as MachineOutput,
});

/** Errors inside the machine, at once, in a later event, and from an invoked promise. */
const crashMachine = setup({
  types: { context: {} as { id: string; atStart: boolean }, events: {} as WsEvent, input: {} as Input & { atStart: boolean } },
  actors: {
    failing: fromPromise(async () => {
      await sleep(20);
      throw new Error("promise boom");
    }),
  },
  guards: { is: ({ event }, word: string) => event.type === "ws.text" && event.data === word },
}).createMachine({
  context: ({ input }) => ({ id: input.id, atStart: input.atStart }),
  entry: [
    recordPid,
    ({ context }) => {
      if (context.atStart) throw new Error("entry boom");
    },
  ],
  initial: "ready",
  states: {
    ready: {
      on: {
        "ws.text": [
          {
            guard: { type: "is", params: "boom" },
            actions: () => {
              throw new Error("action boom");
            },
          },
          { guard: { type: "is", params: "async" }, target: "failing" },
        ],
      },
    },
    failing: { invoke: { src: "failing" } },
  },
});

/** Actions that run outside a callback: a promise actor settles, its onDone replies. */
const asyncMachine = setup({
  types: { context: {} as { id: string }, events: {} as WsEvent, input: {} as Input },
  actors: {
    lookup: fromPromise(async ({ input }: { input: string }) => {
      await sleep(30);
      return input.toUpperCase();
    }),
  },
}).createMachine({
  context: ({ input }) => ({ id: input.id }),
  entry: recordPid,
  initial: "idle",
  states: {
    idle: { on: { "ws.text": { target: "looking" } } },
    looking: {
      invoke: {
        src: "lookup",
        input: () => "found",
        onDone: { target: "idle", actions: [wsReply(({ event }) => text(`async:${event.output}`)), wsHibernate()] },
      },
    },
  },
});

const eventsHandler = machineHandler(eventsMachine, { input: inputFromReq });
const actionsHandler = machineHandler(actionsMachine, { input: inputFromReq });
const timersHandler = machineHandler(timersMachine, { input: inputFromReq });
const parentHandler = machineHandler(parentMachine, { input: inputFromReq });
const finalHandler = machineHandler(finalMachine, {
  input: inputFromReq,
  terminate: (reason, req, context) => terms.push({ id: context?.id, reason, req, context }),
});
const crashHandler = machineHandler(crashMachine, {
  input: (req) => ({ ...inputFromReq(req), atStart: new URLSearchParams(req.qs).get("atStart") === "1" }),
  terminate: (reason, req, context) => terms.push({ id: context?.id, reason, req, context }),
});
const asyncHandler = machineHandler(asyncMachine, { input: inputFromReq });
/** Hibernates after every event; input is async and may refuse. */
const alwaysHandler = machineHandler(actionsMachine, {
  hibernate: true,
  input: async (req) => {
    await sleep(5);
    const q = new URLSearchParams(req.qs);
    if (q.get("deny") === "1") req.reply(401, { "content-type": "text/plain" }, "no");
    return inputFromReq(req);
  },
  websocket: (req) => ({ idleTimeout: Number(new URLSearchParams(req.qs).get("idle") ?? 60_000) }),
});

beforeAll(async () => {
  const dispatch = compileRoutes([
    {
      host: "_",
      paths: [
        ["/events", eventsHandler],
        ["/actions", actionsHandler],
        ["/timers", timersHandler],
        ["/parent", parentHandler],
        ["/final", finalHandler],
        ["/crash", crashHandler],
        ["/async", asyncHandler],
        ["/always", alwaysHandler],
        ["/game", gameHandler],
        // The same machine with short delays: xstate's provide() swaps them.
        ["/game-fast", machineHandler(gameMachine.provide({ delays: { thinkTime: 10, idleTime: 200 } }), { input: () => ({ name: "ada", moveMs: 150 }) })],
      ],
    },
  ]);
  listener = await startClear(LISTENER, { port: 0, host: "127.0.0.1" }, { dispatch });
});

afterAll(async () => {
  for (const c of clients) c.terminate();
  await stopListener(LISTENER);
});

const crashReports = (): LogRecord[] => records.filter((r) => r.msg === "process crashed");
const hibernated = (pid: Pid): boolean => processInfo(pid)?.hibernated === true;

/* ---------------------------------------------------------------- events */

describe("frames and infos become events", () => {
  test("ws.text, ws.binary, ws.ping, ws.pong; the initial state's entry runs in websocketInit", async () => {
    const c = await connect("/events");
    expect(await c.nth(0)).toBe("ready");
    c.ws.send("a");
    expect(await c.nth(1)).toBe("text:a:1");
    c.ws.send("b");
    expect(await c.nth(2)).toBe("text:b:2");
    c.ws.send(new Uint8Array([1, 2, 255]));
    expect(await c.nth(3)).toBe("bin:0102ff");
    c.ws.ping(Buffer.from("pi"));
    expect(await c.nth(4)).toBe("ping:pi");
    c.ws.pong(Buffer.from("po"));
    expect(await c.nth(5)).toBe("pong:po");
  });

  test("an info with a string type goes in as is; anything else as ws.info; xstate.* names are wrapped", async () => {
    const c = await connect("/events");
    await c.nth(0);
    const pid = await pidOf(c.id);
    send(pid, { type: "hello", who: "ada" });
    expect(await c.nth(1)).toBe("hello:ada");
    send(pid, 42);
    expect(await c.nth(2)).toBe("info:42");
    send(pid, "plain");
    expect(await c.nth(3)).toBe('info:"plain"');
    send(pid, { type: 7 });
    expect(await c.nth(4)).toBe('info:{"type":7}');
    send(pid, { type: "xstate.stop" });
    expect(await c.nth(5)).toBe('info:{"type":"xstate.stop"}');
    // An unknown event type is ignored, as xstate does.
    send(pid, { type: "nobody.listens" });
    send(pid, { noType: true });
    expect(await c.nth(6)).toBe('info:{"noType":true}');
    // startTimer's { type: "timeout", ref, msg } is an event named "timeout".
    startTimer(10, pid, "tock");
    expect(await c.nth(7)).toBe("timeout:tock");
    expect(isAlive(pid)).toBe(true);
  });
});

/* ---------------------------------------------------------------- action helpers */

describe("action helpers", () => {
  test("wsReply: frames from several actions leave in order", async () => {
    const c = await connect("/actions");
    c.ws.send("two");
    await c.nth(2);
    expect(c.msgs).toEqual(["one", "two", "three"]);
    c.ws.send("nothing");
    c.ws.send("count");
    expect(await c.nth(3)).toBe("n=0");
  });

  test("wsClose: the frames before it go out, then the close; later ones are dropped", async () => {
    const c = await connect("/actions");
    c.ws.send("close");
    expect(await c.closed).toEqual({ code: 4001, reason: "bye" });
    expect(c.msgs).toEqual(["closing"]);
  });

  test("wsStop closes with 1000 after the frames sent before it", async () => {
    const c = await connect("/actions");
    c.ws.send("stop");
    expect((await c.closed).code).toBe(1000);
    expect(c.msgs).toEqual(["last"]);
  });

  test("wsCommands: frames and connection commands (setOptions idleTimeout → 1000 when idle)", async () => {
    const c = await connect("/actions");
    const t0 = performance.now();
    c.ws.send("cmds");
    expect(await c.nth(0)).toBe("x");
    expect((await c.closed).code).toBe(1000);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
  });

  test("sendToPid: to a pid and to a registered name", async () => {
    watcher = spawn({
      init: () => null,
      handleInfo: (msg: unknown, s: null) => {
        watched.push(msg);
        return { type: "ok", state: s };
      },
    });
    register("machine-test-watcher", watcher);
    const c = await connect("/actions");
    c.ws.send("send");
    c.ws.send("sendName");
    await until(() => watched.length === 2, 2000, "the watcher's messages");
    expect(watched).toEqual([{ from: c.id }, "by name"]);
  });

  test("wsHibernate: the actor is dropped, the context kept (plain data)", async () => {
    const c = await connect("/actions");
    const pid = await pidOf(c.id);
    c.ws.send("hib");
    expect(await c.nth(0)).toBe("n=1");
    await until(() => hibernated(pid), 2000, "hibernation");
    c.ws.send("hib");
    expect(await c.nth(1)).toBe("n=2");
    await until(() => hibernated(pid), 2000, "hibernation");
    c.ws.send("count");
    expect(await c.nth(2)).toBe("n=2");
    await settle();
    expect(hibernated(pid)).toBe(false); // "count" does not ask to hibernate
  });

  test("the helpers outside a connection say so clearly; sendToPid works anywhere", async () => {
    const m = createMachine({ entry: wsReply(text("x")) });
    const actor = createActor(m);
    const errors: unknown[] = [];
    actor.subscribe({ error: (e) => errors.push(e) });
    actor.start();
    expect(errors).toHaveLength(1);
    expect(String(errors[0])).toMatch(/wsReply\(\): this machine is not running as a connection/);
    const got: unknown[] = [];
    const sink = spawn(async (ctx) => got.push(await ctx.receive()));
    createActor(createMachine({ entry: sendToPid(sink, "hi") })).start();
    await until(() => got.length === 1);
    expect(got).toEqual(["hi"]);
  });
});

/* ---------------------------------------------------------------- input, options */

describe("input and options", () => {
  test("input picks from the Req; may be async; websocket options per request; hibernate: true after every event", async () => {
    const c = await connect("/always", { idle: "200" });
    const pid = await pidOf(c.id);
    await until(() => hibernated(pid), 2000, "hibernation after websocketInit");
    c.ws.send("hib");
    expect(await c.nth(0)).toBe("n=1");
    c.ws.send("count");
    expect(await c.nth(1)).toBe("n=1");
    await until(() => hibernated(pid), 2000, "hibernation after an event that did not ask");
    // idleTimeout 200 from the websocket option function.
    expect((await c.closed).code).toBe(1000);
  });

  test("input that replies refuses the upgrade", async () => {
    await expect(connect("/always", { deny: "1" })).rejects.toThrow(/401/);
  });

  test("machineHandler checks its arguments", () => {
    expect(() => machineHandler({} as never)).toThrow(/expected an xstate v5 machine/);
    expect(() => machineHandler(eventsMachine, { nope: 1 } as never)).toThrow(/unknown option "nope"/);
    expect(() => machineHandler(eventsMachine, { hibernate: "yes" } as never)).toThrow(/hibernate: expected a boolean/);
    expect(() => machineHandler(eventsMachine, { input: 5 } as never)).toThrow(/input: expected a function/);
    expect(() => machineHandler(eventsMachine, { websocket: { idleTimeout: -1 } })).toThrow(/idleTimeout/);
  });
});

/* ---------------------------------------------------------------- timers and hibernation */

describe("delays run on the runtime's timers and survive hibernation", () => {
  test("a live delayed transition fires on time; its timer dies with the connection", async () => {
    const before = timerCount();
    const c = await connect("/timers");
    const pid = await pidOf(c.id);
    const t0 = performance.now();
    c.ws.send("live");
    expect(await c.nth(0)).toBe("live");
    expect(await c.nth(1)).toBe("late");
    expect(c.at[1]! - t0).toBeGreaterThanOrEqual(145);
    expect(c.at[1]! - t0).toBeLessThan(400);
    // A delay pending, then the connection ends: no timer is left behind.
    c.ws.send("again"); // late → waiting: a 400 ms delay and a hibernation
    expect(await c.nth(2)).toBe("waiting");
    expect(timerCount()).toBeGreaterThanOrEqual(before + 1);
    c.ws.close();
    await until(() => !isAlive(pid), 2000, "the connection to end");
    expect(timerCount()).toBe(before);
  });

  test("a delayed transition survives hibernation and fires at its original time, woken or not", async () => {
    const c = await connect("/timers");
    const pid = await pidOf(c.id);
    const t0 = performance.now();
    c.ws.send("wait");
    expect(await c.nth(0)).toBe("waiting");
    await until(() => hibernated(pid), 2000, "hibernation while waiting");
    // Asleep: no xstate actor, one wake-up timer.
    await sleep(250 - (performance.now() - t0));
    c.ws.send("poke"); // wakes it: rebuilt from the snapshot, the delay re-armed with what was left
    expect(await c.nth(1)).toBe("poked");
    await until(() => hibernated(pid), 2000, "hibernation after the poke");
    expect(await c.nth(2, 2000)).toBe("late");
    const elapsed = c.at[2]! - t0;
    expect(elapsed, "fires 400 ms after entering the state").toBeGreaterThanOrEqual(395);
    expect(elapsed, "not 400 ms after the wake-up (≥ 650)").toBeLessThan(620);
    await until(() => hibernated(pid), 2000, "hibernation after the transition");
  });

  test("the wake-up timer alone brings the delay due while nothing else happens", async () => {
    const c = await connect("/timers");
    const pid = await pidOf(c.id);
    const t0 = performance.now();
    c.ws.send("wait");
    await c.nth(0);
    await until(() => hibernated(pid), 2000, "hibernation");
    expect(await c.nth(1)).toBe("late");
    expect(c.at[1]! - t0).toBeGreaterThanOrEqual(395);
    expect(c.at[1]! - t0).toBeLessThan(650);
  });

  test("after a wake-up, leaving the state cancels the re-armed delay", async () => {
    const c = await connect("/timers");
    const pid = await pidOf(c.id);
    c.ws.send("wait");
    await c.nth(0);
    await until(() => hibernated(pid), 2000, "hibernation");
    await sleep(100);
    c.ws.send("poke");
    expect(await c.nth(1)).toBe("poked");
    await until(() => hibernated(pid), 2000, "hibernation");
    c.ws.send("leave");
    expect(await c.nth(2)).toBe("left");
    await sleep(450);
    expect(c.msgs).toEqual(["waiting", "poked", "left"]);
    expect(hibernated(pid)).toBe(true);
  });

  test("a delayed event (raise with a delay) survives hibernation", async () => {
    const c = await connect("/timers");
    const pid = await pidOf(c.id);
    const t0 = performance.now();
    c.ws.send("tick");
    expect(await c.nth(0)).toBe("ticking");
    await until(() => hibernated(pid), 2000, "hibernation");
    expect(await c.nth(1)).toBe("late");
    expect(c.at[1]! - t0).toBeGreaterThanOrEqual(295);
    expect(c.at[1]! - t0).toBeLessThan(550);
  });

  test("an invoked child machine's delay is persisted and re-armed too", async () => {
    const t0 = performance.now(); // before the child starts counting
    const c = await connect("/parent");
    const pid = await pidOf(c.id);
    expect(await c.nth(0)).toBe("started");
    await until(() => hibernated(pid), 2000, "hibernation");
    await sleep(100);
    send(pid, "wake up"); // an ignored info: the machine is rebuilt, child and all
    await settle();
    expect(await c.nth(1)).toBe("rang");
    expect(c.at[1]! - t0).toBeGreaterThanOrEqual(300);
    expect(c.at[1]! - t0).toBeLessThan(600);
  });
});

describe("stopListener with a hibernated machine", () => {
  test("closes it with 1001, terminate gets the snapshot's context, its wake-up timer goes", async () => {
    const name = "machine-e2e-stop";
    const handler = machineHandler(timersMachine, {
      input: inputFromReq,
      terminate: (reason, req, context) => terms.push({ id: context?.id, reason, req, context }),
    });
    const before = timerCount();
    const own = await startClear(name, { port: 0, host: "127.0.0.1" }, { dispatch: compileRoutes([{ host: "_", paths: [["/t", handler]] }]) });
    const id = newId();
    const ws = new WebSocket(`ws://127.0.0.1:${own.port}/t?id=${id}`);
    clients.push(ws);
    const closed = new Promise<number>((resolve) => ws.on("close", (code) => resolve(code)));
    await new Promise((r) => ws.once("open", r));
    ws.send("wait");
    const pid = await pidOf(id);
    await until(() => hibernated(pid), 2000, "hibernation");
    await stopListener(name);
    expect(await closed).toBe(1001);
    const t = terms.find((x) => x.id === id)!;
    expect(t.reason).toBe("shutdown");
    expect(t.context).toEqual({ id });
    await until(() => timerCount() === before, 2000, "no timer left");
  });
});

/* ---------------------------------------------------------------- final states */

describe("final states close the connection", () => {
  test("a final state with no code: 1000, terminate gets the last context", async () => {
    const c = await connect("/final");
    c.ws.send("score");
    c.ws.send("score");
    c.ws.send("quit");
    expect((await c.closed).code).toBe(1000);
    await until(() => terms.some((t) => t.id === c.id));
    const t = terms.find((x) => x.id === c.id)!;
    expect(t.reason).toBe("stop");
    expect(t.context).toEqual({ id: c.id, score: 2 });
    expect(t.req.path).toBe("/final");
  });

  test("the code and reason its output names", async () => {
    const c = await connect("/final");
    c.ws.send("win");
    expect(await c.closed).toEqual({ code: 4000, reason: "game over" });
    expect(c.msgs).toEqual(["you win"]);
  });
});

/* ---------------------------------------------------------------- crashes */

describe("an error inside the machine is a crash", () => {
  test("in an action: 1011, terminate with { crash }, one crash report", async () => {
    const c = await connect("/crash");
    const pid = await pidOf(c.id);
    const before = crashReports().length;
    c.ws.send("boom");
    expect((await c.closed).code).toBe(1011);
    await until(() => terms.some((t) => t.id === c.id));
    const t = terms.find((x) => x.id === c.id)!;
    expect((t.reason as { crash: Error }).crash.message).toBe("action boom");
    await settle();
    const reports = crashReports().slice(before);
    expect(reports).toHaveLength(1);
    expect(reports[0]!["pid"]).toBe(pid.toString());
    expect((reports[0]!["err"] as { message: string }).message).toBe("action boom");
  });

  test("in the initial state's entry (websocketInit): 1011", async () => {
    const before = crashReports().length;
    const c = await connect("/crash", { atStart: "1" });
    expect((await c.closed).code).toBe(1011);
    await until(() => crashReports().length === before + 1, 2000, "the crash report");
    expect((crashReports().at(-1)!["err"] as { message: string }).message).toBe("entry boom");
  });

  test("from an invoked promise, outside any callback: 1011 and one crash report", async () => {
    const before = crashReports().length;
    const c = await connect("/crash");
    c.ws.send("async");
    expect((await c.closed).code).toBe(1011);
    await settle();
    expect(crashReports().length).toBe(before + 1);
  });
});

describe("actions that run outside a callback", () => {
  test("a promise actor's onDone replies (and hibernates) through the connection's mailbox", async () => {
    const c = await connect("/async");
    const pid = await pidOf(c.id);
    c.ws.send("go");
    expect(await c.nth(0)).toBe("async:FOUND");
    await until(() => hibernated(pid), 2000, "hibernation asked from the async action");
    c.ws.send("again");
    expect(await c.nth(1)).toBe("async:FOUND");
  });
});

/* ---------------------------------------------------------------- the demo game */

describe("the /game demo", () => {
  const json = async (c: Client, n: number): Promise<Record<string, unknown>> => JSON.parse(await c.nth(n)) as Record<string, unknown>;

  test("hello, a move, the server's answer, then quit closes with 1000", async () => {
    const c = await connect("/game");
    const hello = await json(c, 0);
    expect(hello).toMatchObject({ type: "state", phase: "yourTurn", board: "         " });
    c.ws.send(JSON.stringify({ type: "move", cell: 4 }));
    const mine = await json(c, 1);
    expect(mine).toMatchObject({ phase: "serverTurn", board: "    X    " });
    const theirs = await json(c, 2);
    expect(theirs["phase"]).toBe("yourTurn");
    expect(String(theirs["board"]).split("O")).toHaveLength(2);
    c.ws.send(JSON.stringify({ type: "move", cell: 4 }));
    expect(await json(c, 3)).toMatchObject({ type: "error" });
    c.ws.send("not json");
    expect(await json(c, 4)).toMatchObject({ type: "error" });
    c.ws.send(JSON.stringify({ type: "quit" }));
    expect(await c.closed).toEqual({ code: 1000, reason: "bye" });
  });

  test("a whole game ends in a result; the connection hibernates while waiting for the player", async () => {
    const c = await connect("/game");
    let n = 0;
    let last = await json(c, n++);
    for (let turn = 0; turn < 9 && last["phase"] === "yourTurn"; turn++) {
      const board = String(last["board"]);
      const free = [...board].findIndex((ch) => ch === " ");
      c.ws.send(JSON.stringify({ type: "move", cell: free }));
      last = await json(c, n++);
      while (last["phase"] === "serverTurn") last = await json(c, n++);
    }
    expect(last["phase"]).toBe("over");
    expect(["X", "O", "draw"]).toContain(last["winner"]);
    c.ws.send(JSON.stringify({ type: "new" }));
    expect(await json(c, n++)).toMatchObject({ phase: "yourTurn", board: "         " });
  });

  test("the move clock forfeits a player who does not move; an idle game ends with 4000", async () => {
    const c = await connect("/game-fast");
    expect(await json(c, 0)).toMatchObject({ phase: "yourTurn", name: "ada", moveMs: 150 });
    expect(await json(c, 1)).toMatchObject({ phase: "over", winner: "O", reason: "time", score: { you: 0, server: 1, draws: 0 } });
    expect(await c.closed).toEqual({ code: 4000, reason: "idle" });
  });

  test("the server's strategy: win, else block, else the centre", () => {
    expect(serverMove("OO XX    ")).toBe(2);
    expect(serverMove("XX       ")).toBe(2);
    expect(serverMove("X        ")).toBe(4);
  });
});

/* ---------------------------------------------------------------- types */

describe("types flow from the machine into the helpers", () => {
  test("events and context are typed where the helpers are used", () => {
    type Ev = WsEvent<{ kind: "news"; text: string }> | { type: "join"; room: string };
    const m = setup({
      types: { context: {} as { user: string; rooms: string[] }, events: {} as Ev, input: {} as { user: string } },
    }).createMachine({
      context: ({ input }) => ({ user: input.user, rooms: [] }),
      on: {
        "ws.text": {
          actions: wsReply(({ event, context }) => {
            expectTypeOf(event).toEqualTypeOf<WsTextEvent>();
            expectTypeOf(context.user).toBeString();
            // @ts-expect-error -- no such field on the context
            void context.nope;
            return text(event.data);
          }),
        },
        "ws.binary": {
          actions: wsCommands(({ event }) => {
            expectTypeOf(event).toEqualTypeOf<WsBinaryEvent>();
            return [binary(event.data), { active: false }];
          }),
        },
        "ws.info": {
          actions: wsReply(({ event }) => {
            expectTypeOf(event).toEqualTypeOf<WsInfoEvent<{ kind: "news"; text: string }>>();
            return text(event.data.text);
          }),
        },
        join: {
          actions: [
            assign({ rooms: ({ context, event }) => [...context.rooms, event.room] }),
            sendToPid("rooms", ({ event, context }) => {
              expectTypeOf(event.room).toBeString();
              return { join: event.room, user: context.user };
            }),
            wsHibernate(),
          ],
        },
      },
    });
    const h = machineHandler(m, {
      input: (req) => ({ user: req.qs }),
      terminate: (_reason, _req, context) => {
        expectTypeOf(context).toEqualTypeOf<{ user: string; rooms: string[] } | undefined>();
      },
    });
    expectTypeOf(h).toEqualTypeOf<WebSocketHandler<MachineState, unknown>>();
    // @ts-expect-error -- the input must be the machine's input type
    machineHandler(m, { input: () => ({ name: "x" }) });
    // @ts-expect-error -- a frame helper takes frames, not strings
    wsReply("hello");
    // @ts-expect-error -- wsClose takes a close code
    wsClose("bye");
    expect(typeof h.init).toBe("function");
    expect(close(1000)).toEqual({ type: "close", code: 1000 });
    expectTypeOf<ActorRefFrom<typeof m>>().not.toBeAny();
  });
});
