import { assign, raise, setup } from "xstate";
import { machineHandler, text, wsHibernate, wsReply, type MachineOutput, type WsEvent } from "corral";

/**
 * /game: noughts and crosses against the server, written as an xstate machine
 * (machineHandler). The client plays X and moves first; the server "thinks" on a delayed
 * transition; a player who does not move within 30 s forfeits (a delay that survives the
 * hibernation the connection goes into while it waits); five idle minutes after a game, or
 * {"type":"quit"}, end the machine in a final state, which closes the connection.
 *
 * Client → server (text frames, JSON): {"type":"move","cell":0..8} | {"type":"new"} | {"type":"quit"}
 * Server → client: {"type":"state","phase":"yourTurn"|"serverTurn"|"over","board":"<9 chars: X, O or space>",
 *                   "winner"?:"X"|"O"|"draw","reason"?:"line"|"full"|"time","moveMs"?:number,"score":{…},"name":…}
 *                | {"type":"error","message":…}
 */

export type Cell = "X" | "O" | " ";
export type Winner = "X" | "O" | "draw";
export type Phase = "yourTurn" | "serverTurn" | "over";

export interface GameContext {
  readonly name: string;
  /** How long the player has for a move. */
  readonly moveMs: number;
  /** Nine cells, row by row. */
  readonly board: string;
  readonly winner: Winner | null;
  readonly reason: "line" | "full" | "time" | null;
  readonly score: { readonly you: number; readonly server: number; readonly draws: number };
  /** Why the machine ended: the close frame's reason. */
  readonly bye: "bye" | "idle";
}

/** What a text frame decodes to (raised as an event of its own). */
export type GameCommand =
  | { readonly type: "move"; readonly cell: number }
  | { readonly type: "new" }
  | { readonly type: "quit" }
  | { readonly type: "bad"; readonly message: string };

export type GameEvent = WsEvent | GameCommand;

export const MOVE_MS = 30_000;
const THINK_MS = 350;
const IDLE_MS = 5 * 60_000;
const EMPTY = "         ";

const LINES: readonly (readonly [number, number, number])[] = [
  [0, 1, 2], [3, 4, 5], [6, 7, 8],
  [0, 3, 6], [1, 4, 7], [2, 5, 8],
  [0, 4, 8], [2, 4, 6],
];

function lineOf(board: string, who: Cell): boolean {
  return LINES.some(([a, b, c]) => board[a] === who && board[b] === who && board[c] === who);
}

function place(board: string, cell: number, who: Cell): string {
  return board.slice(0, cell) + who + board.slice(cell + 1);
}

/** Win if it can, block if it must, else centre, a corner, a side. */
export function serverMove(board: string): number {
  const free = [...board].flatMap((c, i) => (c === " " ? [i] : []));
  for (const who of ["O", "X"] as const) {
    const hit = free.find((i) => lineOf(place(board, i, who), who));
    if (hit !== undefined) return hit;
  }
  for (const i of [4, 0, 2, 6, 8, 1, 3, 5, 7]) if (free.includes(i)) return i;
  return -1;
}

function decode(data: string): GameCommand {
  let msg: unknown;
  try {
    msg = JSON.parse(data);
  } catch {
    return { type: "bad", message: "expected JSON" };
  }
  if (typeof msg !== "object" || msg === null) return { type: "bad", message: "expected an object" };
  const { type, cell } = msg as { type?: unknown; cell?: unknown };
  if (type === "move") {
    return typeof cell === "number" && Number.isInteger(cell) && cell >= 0 && cell <= 8 ? { type: "move", cell } : { type: "bad", message: "cell must be 0..8" };
  }
  if (type === "new" || type === "quit") return { type };
  return { type: "bad", message: `unknown command ${JSON.stringify(type)}` };
}

function view(context: GameContext, phase: Phase): string {
  return JSON.stringify({
    type: "state",
    phase,
    board: context.board,
    name: context.name,
    score: context.score,
    ...(phase === "yourTurn" ? { moveMs: context.moveMs } : {}),
    ...(phase === "over" ? { winner: context.winner, reason: context.reason } : {}),
  });
}

/** After a move by `who`: a line, a full board, or play on. */
const settled = (who: "X" | "O") => (board: string) => (lineOf(board, who) ? "line" : board.includes(" ") ? null : "full");

export const gameMachine = setup({
  types: {
    context: {} as GameContext,
    events: {} as GameEvent,
    input: {} as { name: string; moveMs?: number },
    output: {} as MachineOutput,
  },
  actions: {
    sendState: wsReply(({ context }, params: { phase: Phase }) => text(view(context, params.phase))),
    sendError: wsReply((_, params: { message: string }) => text(JSON.stringify({ type: "error", message: params.message }))),
    hibernate: wsHibernate(),
  },
  guards: {
    freeCell: ({ context, event }) => event.type === "move" && context.board[event.cell] === " ",
    youWon: ({ context }) => settled("X")(context.board) !== null,
    serverWon: ({ context }) => settled("O")(context.board) !== null,
  },
  delays: { moveTime: ({ context }) => context.moveMs, thinkTime: THINK_MS, idleTime: IDLE_MS },
}).createMachine({
  id: "game",
  context: ({ input }) => ({ name: input.name, moveMs: input.moveMs ?? MOVE_MS, board: EMPTY, winner: null, reason: null, score: { you: 0, server: 0, draws: 0 }, bye: "bye" }),
  initial: "yourTurn",
  on: {
    // Every text frame becomes a game command of its own.
    "ws.text": { actions: raise(({ event }) => decode(event.data)) },
    "ws.binary": { actions: { type: "sendError", params: { message: "text frames only" } } },
    bad: { actions: { type: "sendError", params: ({ event }) => ({ message: event.message }) } },
    move: { actions: { type: "sendError", params: { message: "not your turn" } } },
    quit: { target: ".bye" },
  },
  states: {
    yourTurn: {
      entry: [{ type: "sendState", params: { phase: "yourTurn" } }, "hibernate"],
      after: {
        moveTime: { target: "over", actions: assign({ winner: "O", reason: "time" }) },
      },
      on: {
        move: [
          { guard: "freeCell", target: "afterYou", actions: assign({ board: ({ context, event }) => place(context.board, event.cell, "X") }) },
          { actions: [{ type: "sendError", params: { message: "that cell is taken" } }, "hibernate"] },
        ],
      },
    },
    afterYou: {
      always: [
        { guard: "youWon", target: "over", actions: assign({ winner: ({ context }) => (settled("X")(context.board) === "line" ? "X" : "draw"), reason: ({ context }) => settled("X")(context.board) }) },
        { target: "serverTurn" },
      ],
    },
    serverTurn: {
      entry: { type: "sendState", params: { phase: "serverTurn" } },
      after: {
        thinkTime: { target: "afterServer", actions: assign({ board: ({ context }) => place(context.board, serverMove(context.board), "O") }) },
      },
    },
    afterServer: {
      always: [
        { guard: "serverWon", target: "over", actions: assign({ winner: ({ context }) => (settled("O")(context.board) === "line" ? "O" : "draw"), reason: ({ context }) => settled("O")(context.board) }) },
        { target: "yourTurn" },
      ],
    },
    over: {
      entry: [
        assign({
          score: ({ context: { score, winner } }) => ({
            you: score.you + (winner === "X" ? 1 : 0),
            server: score.server + (winner === "O" ? 1 : 0),
            draws: score.draws + (winner === "draw" ? 1 : 0),
          }),
        }),
        { type: "sendState", params: { phase: "over" } },
        "hibernate",
      ],
      after: { idleTime: { target: "bye", actions: assign({ bye: "idle" }) } },
      on: {
        new: { target: "yourTurn", actions: assign({ board: EMPTY, winner: null, reason: null }) },
        move: { actions: { type: "sendError", params: { message: "the game is over: send {\"type\":\"new\"}" } } },
      },
    },
    bye: { type: "final" },
  },
  // 1000 "bye" when the player quits, 4000 "idle" when nobody came back for a new game.
  output: ({ context }) => (context.bye === "bye" ? { code: 1000, reason: "bye" } : { code: 4000, reason: "idle" }),
});

const MAX_NAME = 24;

/** The route's handler: the machine's input is the player's name from ?name=. */
export const gameHandler = machineHandler(gameMachine, {
  input: (req) => {
    const given = req.parseQs().find(([key]) => key === "name")?.[1];
    return { name: typeof given === "string" && given.trim() !== "" ? given.trim().slice(0, MAX_NAME) : "you" };
  },
  websocket: { idleTimeout: 15 * 60_000, maxFrameSize: 4096 },
});
