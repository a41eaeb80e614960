import { expect, test } from "vitest";
import { spawn, send, self, ok, stop, monitor, isDown, startTimer, isTimeout, processCount } from "../../src/index.js";

test("smoke", async () => {
  const got: unknown[] = [];
  const done = new Promise<void>((resolve) => {
    const pid = spawn({
      init: (n: number) => n,
      handleInfo(msg: string, s: number) {
        got.push([msg, s]);
        if (msg === "end") { resolve(); return stop(s); }
        return ok(s + 1);
      },
    }, 10);
    send(pid, "a"); send(pid, "b"); send(pid, "end");
  });
  await done;
  expect(got).toEqual([["a", 10], ["b", 11], ["end", 12]]);
  const res = await new Promise((resolve) => {
    spawn(async (ctx) => {
      const child = spawn({ init: () => 0, handleInfo: () => { throw new Error("boom"); } });
      const ref = monitor(child);
      send(child, 1);
      const down = await ctx.receive(isDown);
      startTimer(5, ctx.self, "t");
      const t = await ctx.receive(isTimeout);
      const none = await ctx.receive((m) => m === "never", 20);
      resolve([down.ref === ref, (down.reason as { crash: Error }).crash.message, t.msg, none]);
    });
  });
  expect(res).toEqual([true, "boom", "t", undefined]);
  await new Promise((r) => setTimeout(r, 10));
  expect(processCount()).toBe(0);
  expect(() => self()).toThrow(/outside a process/);
});
