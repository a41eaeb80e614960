// When hibernation evicts (hibernate.ts's policy, as Erlang's hibernate_after), and a state that survives a million evictions exact.
import { isDeepStrictEqual } from "node:util";
import { afterEach, describe, expect, test } from "vitest";
import { exit, frozenSize, isAlive, isTimeout, ok, processCount, processInfo, self, send, spawn, startTimer, stop, type ProcessBehavior, type TimeoutMessage } from "../../src/index.js";
import { hibernateNow } from "../../src/runtime/hibernate.js";
import { stats } from "../../src/runtime/stats.js";
import { sleep, until } from "../support/helpers.js";

afterEach(async () => {
  await until(() => processCount() === 0, 2000, "every process to end");
});

/** A chat connection's state, small enough for a million cycles to take seconds but evicted for real: nested objects, a Map of Dates, a Date. */
interface Chat {
  user: { name: string; profile: { tz: string } };
  seen: Map<string, Date>;
  last: { at: Date; text: string };
  n: number;
}

function chat(): Chat {
  return {
    user: { name: "Ada Lovelace", profile: { tz: "Europe/London" } },
    seen: new Map([["room:1", new Date(1_700_000_000_000)]]),
    last: { at: new Date(1_700_000_000_500), text: "hello, how are you" },
    n: 0,
  };
}

/** What the i-th message does to the state (applied to the process's state and to a copy that never leaves the heap). */
function change(s: Chat, i: number): void {
  s.n = i / 7;
  s.seen.set(`room:${i % 3}`, new Date(1_700_000_000_000 + i));
  if (i % 11 === 0) s.seen.delete(`room:${(i + 1) % 3}`);
  s.last.text = `message ${i}`;
  if (i % 1000 === 0) s.user.profile = { tz: i % 2000 === 0 ? "Europe/London" : "Europe/Paris" };
}

/** Messages: "h" → ok(state, { hibernate: true }); "stop" → stop(state). Records the state terminate sees. */
function hibernator(terminated: Chat[] = []): ProcessBehavior<Chat, string, Chat> {
  return {
    init: (s) => s,
    handleInfo: (msg, state) => (msg === "stop" ? stop(state) : ok(state, { hibernate: true })),
    terminate: (_reason, state) => void terminated.push(state),
  };
}

describe("a state that hibernates and wakes a million times", () => {
  test("comes back exact every time: Maps, Dates, nested objects, changed between every eviction", () => {
    const behavior: ProcessBehavior<Chat, never, Chat> = { init: (s) => s, handleInfo: (_m, s) => ok(s) };
    const pid = spawn(behavior, chat());
    const p = pid.proc!;
    const copy = chat();
    const CYCLES = 1_000_000;
    let evicted = 0;
    let differ = 0;
    // Its first turn runs init.
    p.run(1);
    for (let i = 1; i <= CYCLES; i++) {
      // What the run loop does after a callback that asked to hibernate, and before the next one.
      if (hibernateNow(p) && frozenSize(pid) > 0) evicted++;
      const s = p.liveState() as Chat;
      change(s, i);
      change(copy, i);
      if (i % 100_000 === 0 && !isDeepStrictEqual(s, copy)) differ++;
    }
    expect(evicted).toBe(CYCLES);
    expect(differ).toBe(0);
    const last = p.liveState() as Chat;
    expect(last).toEqual(copy);
    expect(last.seen.get(`room:${CYCLES % 3}`)).toEqual(new Date(1_700_000_000_000 + CYCLES));
    exit(pid, "kill");
  }, 120_000);
});

describe("when a hibernate request evicts", () => {
  test("a process messaged every 600 ms is evicted once, then keeps its state live between messages; it hibernates soon after they stop", async () => {
    const terminated: Chat[] = [];
    const pid = spawn(hibernator(terminated), chat());
    const h0 = stats.hibernations;
    const w0 = stats.wakes;
    for (let i = 0; i < 6; i++) {
      send(pid, "h");
      await sleep(300);
      // The first request evicts at once; the gap that follows defers every later one.
      expect(processInfo(pid)!.hibernated).toBe(i === 0);
      await sleep(300);
    }
    expect(stats.hibernations - h0).toBe(1);
    expect(stats.wakes - w0).toBe(1);
    // No message for 1.5 gaps and a tick: evicted, serialized.
    await until(() => processInfo(pid)?.hibernated === true, 3000, "the eviction after the last message");
    expect(frozenSize(pid)).toBeGreaterThan(100);
    send(pid, "stop");
    await until(() => terminated.length === 1, 2000, "terminate");
    expect(terminated[0]).toEqual(chat());
  });

  test("a process that re-arms a 1 s timer before asking (the guide's handler) is never evicted while it pushes; once it stops, it is", async () => {
    const ticks: number[] = [];
    const pid = spawn<Chat, TimeoutMessage<string>, Chat>(
      {
        init: (s) => {
          startTimer(1000, self(), "tick");
          return s;
        },
        handleInfo: (msg, state) => {
          if (!isTimeout(msg)) return ok(state);
          ticks.push(performance.now());
          // Three pushes, then silence: the last request has no timer ahead of it.
          if (ticks.length < 3) startTimer(1000, self(), "tick");
          return ok(state, { hibernate: true });
        },
      },
      chat(),
    );
    const h0 = stats.hibernations;
    await until(() => ticks.length === 3, 5000, "three pushes");
    expect(stats.hibernations - h0).toBe(0);
    expect(processInfo(pid)!.hibernated).toBe(false);
    await until(() => processInfo(pid)?.hibernated === true, 5000, "the eviction after the last push");
    expect(stats.hibernations - h0).toBe(1);
    expect(frozenSize(pid)).toBeGreaterThan(100);
    exit(pid, "kill");
  });

  test("a process that dies while its eviction waits: terminate sees the live state, and the sweep passes over it", async () => {
    const terminated: Chat[] = [];
    const pid = spawn(hibernator(terminated), chat());
    send(pid, "h");
    await until(() => processInfo(pid)?.hibernated === true, 2000, "the first eviction");
    await sleep(600);
    send(pid, "h");
    await sleep(100);
    expect(processInfo(pid)!.hibernated).toBe(false);
    exit(pid, "shutdown");
    await until(() => !isAlive(pid), 2000, "the exit");
    expect(terminated).toEqual([chat()]);
    // The sweep reaches the dead process's entry: nothing breaks, and later processes still hibernate.
    await sleep(1500);
    const other = spawn(hibernator(), chat());
    send(other, "h");
    await until(() => processInfo(other)?.hibernated === true, 2000, "another process's eviction");
    exit(other, "kill");
  });
});
