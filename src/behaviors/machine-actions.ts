// gen_statem's transition actions ({reply, …}, stop, hibernate) as xstate actions an xstate machine's transitions name.
import type { ActionArgs, ActionFunction, EventObject, MachineContext, ParameterizedObject } from "xstate";
import type { Pid } from "../runtime/pid.js";
import { send } from "../runtime/process.js";
import { close, type Frame } from "./frames.js";
import { liveFor } from "./machine-live.js";
import type { Command } from "./websocket.js";

/** An expression an action helper evaluates when the action runs, typed by where it is used. */
export type MachineExpr<
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TParams extends ParameterizedObject["params"] | undefined,
  TEvent extends EventObject,
  R,
> = (args: ActionArgs<TContext, TExpressionEvent, TEvent>, params: TParams) => R;

/** The action type every helper returns: the machine's context and events flow in from where it is used. */
export type MachineAction<
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TParams extends ParameterizedObject["params"] | undefined,
  TEvent extends EventObject,
> = ActionFunction<TContext, TExpressionEvent, TEvent, TParams, never, never, never, never, never>;

/**
 * Sends frames to the client: a frame, a list, or an expression of the context and event
 * (returning undefined sends nothing). They leave when the current callback returns, in
 * one socket write with the rest of its frames.
 */
export function wsReply<
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TParams extends ParameterizedObject["params"] | undefined,
  TEvent extends EventObject,
>(
  frames: Frame | readonly Frame[] | MachineExpr<TContext, TExpressionEvent, TParams, TEvent, Frame | readonly Frame[] | undefined>,
): MachineAction<TContext, TExpressionEvent, TParams, TEvent> {
  return function wsReply(args, params) {
    const live = liveFor(args.system, "wsReply");
    live.push(typeof frames === "function" ? frames(args, params) : frames);
  };
}

/** Runs connection commands (Cowboy's): frames, { active }, { deflate }, { setOptions }, { shutdownReason }. */
export function wsCommands<
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TParams extends ParameterizedObject["params"] | undefined,
  TEvent extends EventObject,
>(
  cmds: Command | readonly Command[] | MachineExpr<TContext, TExpressionEvent, TParams, TEvent, Command | readonly Command[] | undefined>,
): MachineAction<TContext, TExpressionEvent, TParams, TEvent> {
  return function wsCommands(args, params) {
    const live = liveFor(args.system, "wsCommands");
    live.push(typeof cmds === "function" ? cmds(args, params) : cmds);
  };
}

/** Closes the connection with this code and reason (after the frames sent before it); terminate gets "stop". */
export function wsClose<
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TParams extends ParameterizedObject["params"] | undefined,
  TEvent extends EventObject,
>(code?: number, reason?: string): MachineAction<TContext, TExpressionEvent, TParams, TEvent> {
  const frame = close(code, reason);
  return function wsClose(args) {
    liveFor(args.system, "wsClose").push(frame);
  };
}

const STOP_FRAME = close(1000);

/** Cowboy's stop: closes with 1000 once the frames sent before it are out; terminate gets "stop". */
export function wsStop<
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TParams extends ParameterizedObject["params"] | undefined,
  TEvent extends EventObject,
>(): MachineAction<TContext, TExpressionEvent, TParams, TEvent> {
  return function wsStop(args) {
    liveFor(args.system, "wsStop").push(STOP_FRAME);
  };
}

/**
 * Hibernates the connection after this event: the actor is dropped, its persisted snapshot
 * and pending delays evicted from the heap until the next message (or the first delay).
 */
export function wsHibernate<
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TParams extends ParameterizedObject["params"] | undefined,
  TEvent extends EventObject,
>(): MachineAction<TContext, TExpressionEvent, TParams, TEvent> {
  return function wsHibernate(args) {
    liveFor(args.system, "wsHibernate").hibernate();
  };
}

/**
 * Erlang's `!` from an action: sends msg to a pid or registered name (each may be an
 * expression of the context and event). Works in any machine, connection or not.
 */
export function sendToPid<
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TParams extends ParameterizedObject["params"] | undefined,
  TEvent extends EventObject,
  M = unknown,
>(
  dest: Pid | string | MachineExpr<TContext, TExpressionEvent, TParams, TEvent, Pid | string>,
  msg: M | MachineExpr<TContext, TExpressionEvent, TParams, TEvent, M>,
): MachineAction<TContext, TExpressionEvent, TParams, TEvent> {
  return function sendToPid(args, params) {
    const to = typeof dest === "function" ? dest(args, params) : dest;
    const value = typeof msg === "function" ? (msg as MachineExpr<TContext, TExpressionEvent, TParams, TEvent, M>)(args, params) : msg;
    send(to, value);
  };
}
