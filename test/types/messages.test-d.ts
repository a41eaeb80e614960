/**
 * Type-level tests of the messages a process receives: the runtime's own (SystemMessage:
 * "timeout", "DOWN", "EXIT", "call") are part of every info callback's parameter, so a switch
 * over the app's own message types alone is not exhaustive. Guards narrow to each one.
 * A line after `// @ts-expect-error -- text` must fail with an error whose message holds text.
 */
import { setup } from "xstate";
import {
  isCall,
  isDown,
  isExit,
  isSystemMessage,
  isTimeout,
  loop,
  machineHandler,
  ok,
  replyTo,
  spawn,
  stop,
  upgrade,
  wsReply,
  text,
  type CallMessage,
  type DownMessage,
  type ExitMessage,
  type ExitReason,
  type From,
  type LoopHandler,
  type ProcessBehavior,
  type Ref,
  type SystemMessage,
  type TimeoutMessage,
  type WebSocketHandler,
  type WsEvent,
} from "../../src/index.js";

/** Compiles only when A and B are the same type. */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const same = <A, B>(ok: Equal<A, B>): Equal<A, B> => ok;

type Tick = { type: "tick" };
type Chat = { type: "said"; text: string } | Tick;

// ---------------------------------------------------------------------------------------
// The system messages: four distinct discriminants, each one narrowing to its type.

same<SystemMessage["type"], "timeout" | "DOWN" | "EXIT" | "call">(true);
same<Extract<SystemMessage, { type: "timeout" }>, TimeoutMessage>(true);
same<Extract<SystemMessage, { type: "DOWN" }>, DownMessage>(true);
same<Extract<SystemMessage, { type: "EXIT" }>, ExitMessage>(true);
same<Extract<SystemMessage, { type: "call" }>, CallMessage>(true);
same<TimeoutMessage<"tick">["msg"], "tick">(true);
same<TimeoutMessage["ref"], Ref>(true);
same<DownMessage["reason"], ExitReason>(true);
same<CallMessage["from"], From>(true);

declare const anything: unknown;
if (isTimeout(anything)) same<typeof anything, TimeoutMessage>(true);
if (isDown(anything)) same<typeof anything, DownMessage>(true);
if (isExit(anything)) same<typeof anything, ExitMessage>(true);
if (isCall(anything)) same<typeof anything, CallMessage>(true);
if (isSystemMessage(anything)) same<typeof anything, SystemMessage>(true);

// ---------------------------------------------------------------------------------------
// A WebSocket handler's websocketInfo: the app's Info or a SystemMessage.

export const honest: WebSocketHandler<null, unknown, Chat> = {
  init: (req) => upgrade(req, null),
  websocketHandle: (_frame, state) => ok(state),
  websocketInfo(msg, state) {
    same<typeof msg, Chat | SystemMessage>(true);
    switch (msg.type) {
      case "said":
        return ok(state);
      case "tick":
        return ok(state);
      case "timeout":
        same<typeof msg, TimeoutMessage>(true);
        return ok(state);
      case "DOWN":
        same<typeof msg.reason, ExitReason>(true);
        return ok(state);
      case "EXIT":
        same<typeof msg.from, ExitMessage["from"]>(true);
        return stop(state);
      case "call":
        replyTo(msg.from, "pong");
        return ok(state);
      default: {
        // Every type handled: nothing is left.
        const none: never = msg;
        return none;
      }
    }
  },
};

// The handler: a switch over the app's own type alone is not exhaustive.
export const onlyTicks: WebSocketHandler<null, unknown, Tick> = {
  init: (req) => upgrade(req, null),
  websocketHandle: (_frame, state) => ok(state),
  // @ts-expect-error -- Type 'undefined' is not assignable to type 'CallResult<null>'
  websocketInfo(msg, state) {
    switch (msg.type) {
      case "tick":
        return ok(state);
    }
  },
};

export const leftOver: WebSocketHandler<null, unknown, Tick> = {
  init: (req) => upgrade(req, null),
  websocketHandle: (_frame, state) => ok(state),
  websocketInfo(msg, state) {
    if (msg.type === "tick") return ok(state);
    // @ts-expect-error -- Type 'SystemMessage' is not assignable to type 'never'
    const none: never = msg;
    return none;
  },
};

// A default keeps a short handler short.
export const short: WebSocketHandler<null, unknown, Tick> = {
  init: (req) => upgrade(req, null),
  websocketHandle: (_frame, state) => ok(state),
  websocketInfo(msg, state) {
    if (msg.type === "tick") return ok(state);
    return ok(state);
  },
};

// isSystemMessage, in one line, leaves the app's own type.
export const guarded: WebSocketHandler<null, unknown, Chat> = {
  init: (req) => upgrade(req, null),
  websocketHandle: (_frame, state) => ok(state),
  websocketInfo(msg, state) {
    if (isSystemMessage(msg)) return ok(state);
    same<typeof msg, Chat>(true);
    return msg.type === "said" ? ok(state) : stop(state);
  },
};

// Info left unknown stays unknown: guards narrow it.
export const untyped: WebSocketHandler<null> = {
  init: (req) => upgrade(req, null),
  websocketHandle: (_frame, state) => ok(state),
  websocketInfo(info, state) {
    same<typeof info, unknown>(true);
    if (isTimeout(info)) same<typeof info.msg, unknown>(true);
    return ok(state);
  },
};

// A string Info must be told apart from the system messages before reading a field.
export const strings: WebSocketHandler<null, unknown, string> = {
  init: (req) => upgrade(req, null),
  websocketHandle: (_frame, state) => ok(state),
  websocketInfo(info, state) {
    if (!isSystemMessage(info)) {
      same<typeof info, string>(true);
      return ok(state);
    }
    same<typeof info, SystemMessage>(true);
    // @ts-expect-error -- Property 'length' does not exist on type 'SystemMessage'
    void info.length;
    return ok(state);
  },
};

// ---------------------------------------------------------------------------------------
// A ProcessBehavior's handleInfo: calls go to handleCall, so every system message but "call".

export const counter: ProcessBehavior<number, Chat, number> = {
  init: (n) => n,
  handleInfo(msg, n) {
    same<typeof msg, Chat | TimeoutMessage | DownMessage | ExitMessage>(true);
    switch (msg.type) {
      case "said":
      case "tick":
      case "timeout":
      case "DOWN":
        return ok(n + 1);
      case "EXIT":
        return stop(n);
      default: {
        const none: never = msg;
        return none;
      }
    }
  },
  handleCall(request, from, n) {
    same<typeof request, unknown>(true);
    replyTo(from, n);
    return ok(n);
  },
};

// @ts-expect-error -- Type 'undefined' is not assignable to type 'Result<number>
spawn({ init: () => 0, handleInfo: (msg: Tick | SystemMessage, n: number) => { if (msg.type === "tick") return ok(n); } });

export const guardedCounter: ProcessBehavior<number, Chat, number> = {
  init: (n) => n,
  handleInfo(msg, n) {
    if (isSystemMessage(msg)) return ok(n);
    same<typeof msg, Chat>(true);
    return ok(n + 1);
  },
};

export const onlyChat: ProcessBehavior<number, Chat, number> = {
  init: (n) => n,
  handleInfo(msg, n) {
    if (msg.type === "said" || msg.type === "tick") return ok(n);
    // @ts-expect-error -- Type 'TimeoutMessage<unknown> | DownMessage | ExitMessage' is not assignable to type 'never'
    const none: never = msg;
    return none;
  },
};

// ---------------------------------------------------------------------------------------
// A loop handler's info: the app's Info or a SystemMessage.

export const poll: LoopHandler<{ n: number }, unknown, Tick> = {
  init: (req) => loop(req, { n: 0 }),
  info(msg, _req, state) {
    same<typeof msg, Tick | SystemMessage>(true);
    if (isCall(msg)) {
      replyTo(msg.from, state.n);
      return ok(state);
    }
    if (msg.type === "tick") return ok({ n: state.n + 1 });
    // @ts-expect-error -- Type 'TimeoutMessage<unknown> | DownMessage | ExitMessage' is not assignable to type 'never'
    const none: never = msg;
    return none;
  },
};

export const pollSwitch: LoopHandler<{ n: number }, unknown, Tick> = {
  init: (req) => loop(req, { n: 0 }),
  // @ts-expect-error -- Type 'undefined' is not assignable to type 'Result<{ n: number; }>
  info(msg, _req, state) {
    switch (msg.type) {
      case "tick":
        return ok(state);
    }
  },
};

// ---------------------------------------------------------------------------------------
// A machine's events: WsEvent holds the system messages, so its transitions can name them.

const watcher = setup({ types: { context: {} as { downs: number }, events: {} as WsEvent<number> | Tick } }).createMachine({
  context: { downs: 0 },
  on: {
    DOWN: {
      actions: wsReply(({ event }) => {
        same<typeof event, DownMessage>(true);
        return text(String(event.reason));
      }),
    },
    call: {
      actions: ({ event }) => {
        same<typeof event, CallMessage>(true);
        replyTo(event.from, "ok");
      },
    },
    timeout: { actions: wsReply(({ event }) => text(String(event.msg))) },
    EXIT: { actions: wsReply(({ event }) => text(String(event.from))) },
    "ws.info": { actions: wsReply(({ event }) => text(String(event.data))) },
  },
});
export const watcherHandler = machineHandler(watcher);
