/**
 * Type-level tests of spawn, spawnLink and spawnMonitor: the arg is checked against what init
 * (or the async function) takes, and may be left out only where init would accept undefined.
 * A line after `// @ts-expect-error -- text` must fail with an error whose message holds text.
 */
import {
  ok,
  spawn,
  spawnLink,
  spawnMonitor,
  startSupervisor,
  type Pid,
  type ProcessBehavior,
  type ProcessFunction,
  type ReceiveContext,
  type SpawnArgs,
  type SpawnOptions,
} from "../../src/index.js";

/** Compiles only when A and B are the same type. */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const same = <A, B>(ok: Equal<A, B>): Equal<A, B> => ok;

// The producer: init takes { rate }.
const producer = {
  init: (arg: { rate: number }) => ({ sent: 0, rate: arg.rate }),
  handleInfo: (_msg: unknown, s: { sent: number; rate: number }) => ok(s),
};
const noArg = { init: () => 0, handleInfo: (_msg: unknown, n: number) => ok(n) };
const optionalArg = { init: (start?: number) => start ?? 0, handleInfo: (_msg: unknown, n: number) => ok(n) };
const maybeArg = { init: (start: number | undefined) => start ?? 0, handleInfo: (_msg: unknown, n: number) => ok(n) };
declare const typed: ProcessBehavior<number, string, { start: number }>;
declare const loose: ProcessBehavior<number>;
class Counter implements ProcessBehavior<number, string, number> {
  init(start: number): number {
    return start;
  }
  handleInfo(_msg: string, n: number) {
    return ok(n + 1);
  }
}
const worker: ProcessFunction<unknown, string> = async (ctx, name) => void ctx.self.toString().concat(name);
declare const opts: SpawnOptions;

same<SpawnArgs<{ rate: number }>, [arg: { rate: number }, opts?: SpawnOptions]>(true);
same<SpawnArgs<unknown>, [arg?: unknown, opts?: SpawnOptions]>(true);

// What init takes, given; nothing where it takes nothing.
spawn(producer, { rate: 10 });
spawnLink(producer, { rate: 10 }, { name: "producer" });
spawnMonitor(producer, { rate: 10 });
spawn(noArg);
spawn(noArg, undefined, opts);
spawn(optionalArg);
spawn(optionalArg, 3);
spawn(maybeArg);
spawn(typed, { start: 1 });
spawn(loose);
spawn(loose, "anything: init takes unknown");
spawn(new Counter(), 0);
spawn(worker, "w1");
spawn(async (ctx) => void ctx.self);
spawn(async (_ctx: ReceiveContext, n: number) => n + 1, 1);
const { pid, ref } = spawnMonitor(noArg);
same<typeof pid, Pid>(true);
void ref;
// A behaviour written inline takes its arg's type from init.
spawn({ init: (start: number) => start, handleInfo: (_m, n: number) => ok(n) }, 0);

// The spawnLink(producer, 42): the arg is checked against init's parameter.
// @ts-expect-error -- Argument of type 'number' is not assignable to parameter of type '{ rate: number; }'
spawnLink(producer, 42);
// @ts-expect-error -- Argument of type 'number' is not assignable to parameter of type '{ rate: number; }'
spawn(producer, 42);
// @ts-expect-error -- Argument of type 'number' is not assignable to parameter of type '{ rate: number; }'
spawnMonitor(producer, 42);
// @ts-expect-error -- 'rat' does not exist in type '{ rate: number; }'
spawn(producer, { rat: 10 });
// @ts-expect-error -- Argument of type 'string' is not assignable to parameter of type 'number'
spawn(new Counter(), "0");
// @ts-expect-error -- Argument of type 'number' is not assignable to parameter of type 'string'
spawn(worker, 1);
// @ts-expect-error -- Argument of type 'string' is not assignable to parameter of type 'number'
spawn(optionalArg, "3");
// @ts-expect-error -- Argument of type 'string' is not assignable to parameter of type 'number'
spawn({ init: (start: number) => start, handleInfo: (_m, n: number) => ok(n) }, "0");

// An init that needs its arg cannot be spawned without it.
// @ts-expect-error -- Expected 2-3 arguments, but got 1
spawnLink(producer);
// @ts-expect-error -- Expected 2-3 arguments, but got 1
spawn(typed);
// @ts-expect-error -- Expected 2-3 arguments, but got 1
spawn(new Counter());
// @ts-expect-error -- Argument of type 'undefined' is not assignable to parameter of type '{ rate: number; }'
spawn(producer, undefined, { name: "p" });

// A behaviour's type names what its init takes: one that hides it (A left unknown) does not compile,
// since spawn could then pass anything.
type Rate = { rate: number };
const declared: ProcessBehavior<number, string, Rate> = { init: (arg) => arg.rate, handleInfo: (_m, n) => ok(n) };
spawn(declared, { rate: 1 });
// @ts-expect-error -- Type 'unknown' is not assignable to type 'Rate'
const hidden: ProcessBehavior<number, string> = { init: (arg: Rate) => arg.rate, handleInfo: (_m, n) => ok(n) };
void hidden;
// @ts-expect-error -- Type 'unknown' is not assignable to type 'Rate'
const hiddenMethod: ProcessBehavior<number> = { init(arg: Rate) { return arg.rate; }, handleInfo: (_m, n) => ok(n) };
void hiddenMethod;
// @ts-expect-error -- Argument of type 'number' is not assignable to parameter of type 'Rate'
spawnLink(declared, 42);

// The receive context's spawnLink and spawnMonitor check the same way.
spawn(async (ctx) => {
  ctx.spawnLink(producer, { rate: 1 });
  ctx.spawnMonitor(noArg);
  // @ts-expect-error -- Argument of type 'number' is not assignable to parameter of type '{ rate: number; }'
  ctx.spawnLink(producer, 42);
  // @ts-expect-error -- Expected 2-3 arguments, but got 1
  ctx.spawnMonitor(producer);
});

// A child spec's start is where spawnLink's arg is checked.
startSupervisor({
  children: [
    { id: "producer", start: () => spawnLink(producer, { rate: 5 }) },
    // @ts-expect-error -- Argument of type 'number' is not assignable to parameter of type '{ rate: number; }'
    { id: "bad", start: () => spawnLink(producer, 42) },
  ],
});
