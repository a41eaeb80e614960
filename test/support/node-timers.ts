/**
 * Node timers (setTimeout) armed by code in given source files and not yet fired or cleared,
 * seen through async_hooks: timerCount() counts the runtime's own timers only, and an
 * unref'd Node timer is in no other list (process.getActiveResourcesInfo leaves it out).
 */
import { createHook } from "node:async_hooks";

export interface TimerWatch {
  /** Where each live timer was armed (the frames that called setTimeout), once the destroy hooks of timers that just ran have run. */
  armed(): Promise<string[]>;
  stop(): void;
}

export function watchTimers(files: readonly string[]): TimerWatch {
  const live = new Map<number, string>();
  const hook = createHook({
    init(id, type) {
      if (type !== "Timeout") return;
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 40;
      const stack = new Error().stack ?? "";
      Error.stackTraceLimit = limit;
      // Who called setTimeout: the first frame past Node's timers and this hook (a library called from the file does not count).
      const frames = stack.split("\n").slice(1).filter((l) => !l.includes("node:") && !l.includes("node-timers.ts"));
      const caller = frames[0] ?? "";
      const file = files.find((f) => caller.includes(f));
      if (file !== undefined) live.set(id, frames.slice(0, 4).map((l) => l.trim()).join(" < "));
    },
    destroy(id) {
      live.delete(id);
    },
  });
  hook.enable();
  return {
    async armed() {
      // Node runs destroy hooks on a later turn (an immediate), not as the timer's callback returns.
      for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
      return [...live.values()];
    },
    stop: () => hook.disable(),
  };
}
