import { createServer, connect, type Server, type Socket } from "node:net";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import {
  exit,
  isAlive,
  ok,
  processCount,
  processInfo,
  self,
  send,
  spawn,
  stop,
  type Pid,
  type ProcessBehavior,
  type ReceiveContext,
} from "../../src/index.js";
import { captureLogs, settle, sleep, until } from "../support/helpers.js";

/** Spins for about `us` microseconds: per-message work that makes a backlog take real time. */
function work(us: number): void {
  const end = performance.now() + us / 1000;
  while (performance.now() < end) {
    // busy
  }
}

/** A callback process that counts what it handles and calls `onMsg` for each message. */
function counter(onMsg: (msg: unknown, handled: number) => void = () => {}): { pid: Pid; handled: () => number } {
  let handled = 0;
  const pid = spawn({
    init: () => null,
    handleInfo: (msg: unknown, s: null) => {
      if (msg === "stop") return stop(s);
      handled++;
      onMsg(msg, handled);
      return ok(s);
    },
  });
  return { pid, handled: () => handled };
}

async function kill(...pids: Pid[]): Promise<void> {
  for (const p of pids) exit(p, "kill");
  await until(() => pids.every((p) => !isAlive(p)), 2000, "killed processes to end");
}

let baseline = 0;
beforeEach(() => {
  captureLogs();
  baseline = processCount();
});
afterEach(async () => {
  await until(() => processCount() === baseline, 2500, "the test's processes to end");
});

describe("no re-entrancy", () => {
  test("a send to self inside a callback is queued, handled after the callback returns", async () => {
    const log: string[] = [];
    let depth = 0;
    let maxDepth = 0;
    const pid = spawn({
      init: () => null,
      handleInfo: (msg: unknown, s: null) => {
        depth++;
        maxDepth = Math.max(maxDepth, depth);
        log.push(`start ${String(msg)}`);
        if (msg === "first") {
          send(self(), "second");
          log.push(`queued: ${processInfo(self())?.messageQueueLen}`);
        }
        log.push(`end ${String(msg)}`);
        depth--;
        return msg === "second" ? stop(s) : ok(s);
      },
    });
    send(pid, "first");
    await until(() => !isAlive(pid));
    expect(log).toEqual(["start first", "queued: 1", "end first", "start second", "end second"]);
    expect(maxDepth).toBe(1);
  });

  test("a send to another process inside a callback does not run the other's callback inline", async () => {
    const log: string[] = [];
    const b = spawn({
      init: () => null,
      handleInfo: (msg: unknown, s: null) => {
        log.push(`b got ${String(msg)}`);
        return stop(s);
      },
    });
    const a = spawn({
      init: () => null,
      handleInfo: (_msg: unknown, s: null) => {
        log.push("a before send");
        send(b, "hi");
        log.push("a after send");
        return stop(s);
      },
    });
    send(a, "go");
    await until(() => !isAlive(a) && !isAlive(b));
    expect(log).toEqual(["a before send", "a after send", "b got hi"]);
  });

  test("two processes ping-pong 2000 times without ever nesting callbacks", async () => {
    let depth = 0;
    let maxDepth = 0;
    let rounds = 0;
    const player: ProcessBehavior<null, { peer: Pid; n: number } | "stop"> = {
      init: () => null,
      handleInfo: (msg, s) => {
        if (msg === "stop") return stop(s);
        if (!("peer" in msg)) return ok(s); // the runtime's own messages (a timeout, DOWN, EXIT): none come here
        depth++;
        maxDepth = Math.max(maxDepth, depth);
        rounds++;
        if (msg.n < 2000) send(msg.peer, { peer: self(), n: msg.n + 1 });
        depth--;
        return ok(s);
      },
    };
    const a = spawn(player);
    const b = spawn(player);
    send(a, { peer: b, n: 1 });
    await until(() => rounds === 2000);
    expect(maxDepth).toBe(1);
    send(a, "stop");
    send(b, "stop");
  });

  test("a spawned child runs only after the current callback, even its init", async () => {
    const log: string[] = [];
    const parent = spawn({
      init: () => null,
      handleInfo: (_msg: unknown, s: null) => {
        log.push("parent: before spawn");
        const child = spawn({
          init: () => {
            log.push("child: init");
            return null;
          },
          handleInfo: (m: unknown, cs: null) => {
            log.push(`child: ${String(m)}`);
            return stop(cs);
          },
        });
        send(child, "hello");
        log.push(`parent: child alive=${isAlive(child)} status=${processInfo(child)?.status}`);
        log.push("parent: end");
        return stop(s);
      },
    });
    send(parent, "go");
    await until(() => log.includes("child: hello"));
    expect(log).toEqual([
      "parent: before spawn",
      "parent: child alive=true status=runnable",
      "parent: end",
      "child: init",
      "child: hello",
    ]);
    await until(() => !isAlive(parent));
  });

  test("spawn from outside a process does not run init synchronously", async () => {
    let initRan = false;
    const pid = spawn({
      init: () => {
        initRan = true;
        return null;
      },
      handleInfo: (_m: unknown, s: null) => stop(s),
    });
    expect(initRan).toBe(false);
    await settle();
    expect(initRan).toBe(true);
    send(pid, "x");
    await until(() => !isAlive(pid));
  });
});

describe("ordering", () => {
  test("10k messages from outside a process arrive in send order", async () => {
    const got: number[] = [];
    const c = counter((m) => got.push(m as number));
    for (let i = 0; i < 10_000; i++) send(c.pid, i);
    await until(() => c.handled() === 10_000);
    expect(got).toEqual(Array.from({ length: 10_000 }, (_, i) => i));
    send(c.pid, "stop");
  });

  test("10k messages sent from one callback arrive in send order", async () => {
    const got: number[] = [];
    const c = counter((m) => got.push(m as number));
    const sender = spawn({
      init: () => null,
      handleInfo: (_m: unknown, s: null) => {
        for (let i = 0; i < 10_000; i++) send(c.pid, i);
        return stop(s);
      },
    });
    send(sender, "go");
    await until(() => c.handled() === 10_000);
    expect(got).toEqual(Array.from({ length: 10_000 }, (_, i) => i));
    send(c.pid, "stop");
  });

  test("two senders interleaved: each sender's messages keep their order", async () => {
    const got: [string, number][] = [];
    const c = counter((m) => got.push(m as [string, number]));
    const mk = (tag: string) =>
      spawn({
        init: () => 0,
        handleInfo: (_m: unknown, n: number) => {
          // A few messages per turn, so the two senders interleave.
          for (let i = 0; i < 50; i++) send(c.pid, [tag, n + i]);
          return n + 50 >= 5000 ? stop(n) : ok(n + 50);
        },
      });
    const a = mk("a");
    const b = mk("b");
    for (let i = 0; i < 100; i++) {
      send(a, "more");
      send(b, "more");
    }
    await until(() => c.handled() === 10_000);
    const seq = (tag: string) => got.filter(([t]) => t === tag).map(([, n]) => n);
    expect(seq("a")).toEqual(Array.from({ length: 5000 }, (_, i) => i));
    expect(seq("b")).toEqual(Array.from({ length: 5000 }, (_, i) => i));
    // They did interleave (not one whole stream and then the other).
    expect(got.slice(0, 5000).some(([t]) => t === "b")).toBe(true);
    send(c.pid, "stop");
    await until(() => !isAlive(a) && !isAlive(b));
  });

  test("10k messages to an async-function process arrive in send order", async () => {
    let got: number[] = [];
    const pid = spawn(async (ctx: ReceiveContext) => {
      const out: number[] = [];
      for (let i = 0; i < 10_000; i++) out.push((await ctx.receive()) as number);
      got = out;
    });
    for (let i = 0; i < 10_000; i++) send(pid, i);
    await until(() => !isAlive(pid));
    expect(got).toEqual(Array.from({ length: 10_000 }, (_, i) => i));
  });
});

describe("fairness", () => {
  test("a flooded process does not starve another one", async () => {
    const flooded = counter();
    let floodedAtOther = -1;
    let queuedAtOther = -1;
    const other = counter(() => {
      floodedAtOther = flooded.handled();
      queuedAtOther = processInfo(flooded.pid)?.messageQueueLen ?? -1;
    });
    await settle();
    for (let i = 0; i < 10_000; i++) send(flooded.pid, i);
    send(other.pid, "me too");
    await until(() => other.handled() === 1);
    expect(floodedAtOther).toBeLessThan(10_000);
    expect(queuedAtOther).toBeGreaterThan(0);
    // Batch per turn is 64 messages: the other process gets its turn after about one batch.
    expect(floodedAtOther).toBeLessThanOrEqual(2 * 64);
    await until(() => flooded.handled() === 10_000);
    send(flooded.pid, "stop");
    send(other.pid, "stop");
  });

  test("two flooded processes progress together", async () => {
    const a = counter();
    let bAtAFinish = -1;
    const b = counter();
    await settle();
    for (let i = 0; i < 20_000; i++) {
      send(a.pid, i);
      send(b.pid, i);
    }
    await until(() => {
      if (a.handled() === 20_000 && bAtAFinish < 0) bAtAFinish = b.handled();
      return a.handled() === 20_000 && b.handled() === 20_000;
    });
    // When a finished, b had done most of its work too (turns alternate).
    expect(bAtAFinish).toBeGreaterThan(10_000);
    send(a.pid, "stop");
    send(b.pid, "stop");
  });

  test("a callback holding its mailbox on a promise does not block other processes", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow = spawn({
      init: () => null,
      handleInfo: async (msg: unknown, s: null) => {
        if (msg === "stop") return stop(s);
        await gate;
        return ok(s);
      },
    });
    const fast = counter();
    send(slow, "block");
    await settle();
    send(fast.pid, "x");
    await until(() => fast.handled() === 1);
    release();
    send(slow, "stop");
    send(fast.pid, "stop");
    await until(() => !isAlive(slow));
  });
});

describe("I/O is not starved by a busy flood", () => {
  const BACKLOG = 100_000;

  test("a setImmediate callback runs before a 100k backlog is drained", async () => {
    const c = counter(() => work(1));
    await settle();
    let atImmediate = -1;
    setImmediate(() => (atImmediate = c.handled()));
    for (let i = 0; i < BACKLOG; i++) send(c.pid, i);
    await until(() => atImmediate >= 0, 2500, "the setImmediate callback");
    expect(atImmediate).toBeLessThan(BACKLOG);
    // The loop yields to setImmediate after 1024 units of work.
    expect(atImmediate).toBeLessThanOrEqual(2 * 1024);
    await kill(c.pid);
  });

  test("a setTimeout callback runs before a 100k backlog is drained", async () => {
    const c = counter(() => work(3));
    await settle();
    let atTimer = -1;
    setTimeout(() => (atTimer = c.handled()), 1);
    for (let i = 0; i < BACKLOG; i++) send(c.pid, i);
    await until(() => atTimer >= 0, 2500, "the setTimeout callback");
    expect(atTimer).toBeLessThan(BACKLOG);
    await kill(c.pid);
  });

  test("a socket's data event runs before a 100k backlog is drained", async () => {
    const server: Server = createServer();
    let serverSide: Socket | undefined;
    let atData = -1;
    server.on("connection", (s: Socket) => {
      serverSide = s;
      s.on("data", () => {
        if (atData < 0) atData = c.handled();
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    const client = connect(port, "127.0.0.1");
    await new Promise<void>((r) => client.once("connect", () => r()));
    await until(() => serverSide !== undefined);
    const c = counter(() => work(3));
    await settle();
    try {
      for (let i = 0; i < BACKLOG; i++) send(c.pid, i);
      client.write("ping");
      await until(() => atData >= 0, 2500, "the socket's data event");
      expect(atData).toBeLessThan(BACKLOG);
    } finally {
      client.destroy();
      serverSide?.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      await kill(c.pid);
    }
  });

  // An async-function process takes its messages with ctx.receive: a hit in the mailbox
  // resolves at once, so draining a backlog would be one long chain of microtasks that never
  // goes back to the event loop. receive.ts (resolveQueued) makes every 1024th hit wait for
  // setImmediate, so a timer, an immediate or a socket gets its turn during the backlog.
  test("an async-function process draining a 100k backlog does not starve I/O", async () => {
    let handled = 0;
    const pid = spawn(async (ctx: ReceiveContext) => {
      for (;;) {
        const m = await ctx.receive();
        if (m === "stop") return;
        handled++;
      }
    });
    await settle();
    let atImmediate = -1;
    setImmediate(() => (atImmediate = handled));
    try {
      for (let i = 0; i < BACKLOG; i++) send(pid, i);
      await until(() => atImmediate >= 0, 2500, "the setImmediate callback");
      expect(atImmediate).toBeLessThan(BACKLOG);
    } finally {
      send(pid, "stop");
      await until(() => !isAlive(pid));
    }
  });
});

describe("a callback returning a promise holds the mailbox", () => {
  test("the next message is not handled before the promise settles", async () => {
    const log: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const pid = spawn({
      init: () => 0,
      handleInfo: async (msg: unknown, n: number) => {
        log.push(`start ${String(msg)}`);
        if (msg === "slow") await gate;
        log.push(`end ${String(msg)}`);
        return msg === "last" ? stop(n) : ok(n + 1);
      },
    });
    send(pid, "slow");
    send(pid, "next");
    send(pid, "last");
    await sleep(30);
    expect(log).toEqual(["start slow"]);
    expect(processInfo(pid)?.messageQueueLen).toBe(2);
    release();
    await until(() => !isAlive(pid));
    expect(log).toEqual(["start slow", "end slow", "start next", "end next", "start last", "end last"]);
  });

  test("the state from the settled promise is what the next message sees", async () => {
    const seen: number[] = [];
    const pid = spawn({
      init: () => 0,
      handleInfo: async (msg: unknown, n: number) => {
        seen.push(n);
        await sleep(5);
        return msg === "stop" ? stop(n) : ok(n + 10);
      },
    });
    for (const m of ["a", "b", "c", "stop"]) send(pid, m);
    await until(() => !isAlive(pid));
    expect(seen).toEqual([0, 10, 20, 30]);
  });

  test("an async init holds the mailbox too", async () => {
    const log: string[] = [];
    const pid = spawn({
      init: async () => {
        await sleep(20);
        log.push("init done");
        return 1;
      },
      handleInfo: (msg: unknown, n: number) => {
        log.push(`${String(msg)} with ${n}`);
        return stop(n);
      },
    });
    send(pid, "first");
    await until(() => !isAlive(pid));
    expect(log).toEqual(["init done", "first with 1"]);
  });
});
