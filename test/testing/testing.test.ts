/**
 * corral/testing, each helper for real: testServer on a free port, testClient over a real
 * socket, testProcess as a real process, leakCheck against real leaks. Failure paths
 * included: every timeout rejects naming what was awaited, and the leak check names what leaked.
 */
import { once } from "node:events";
import { createServer, type Server, type Socket } from "node:net";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import {
  binary,
  cancelTimer,
  close,
  compileRoutes,
  CorralError,
  exit,
  isDown,
  isAlive,
  isExit,
  join,
  leave,
  listenerInfo,
  ok,
  processCount,
  reply,
  sendAfter,
  send,
  spawn,
  text,
  upgrade,
  type HttpHandler,
  type WebSocketHandler,
} from "corral";
import { leakCheck, testClient, testProcess, testServer, type LeakCheck, type TestServer } from "corral/testing";

/* ---------------------------------------------------------------- handlers */

/** Greets in websocketInit, echoes text, answers "binary" with a binary frame then a text one, "bye" with close 4000. */
const echo: WebSocketHandler<null> = {
  init: (req) => upgrade(req, null),
  websocketInit: (state) => reply(text("hello"), state),
  websocketHandle(frame, state) {
    if (frame.type !== "text") return ok(state);
    if (frame.data === "binary") return reply([binary(new Uint8Array([1, 2, 3])), text("after")], state);
    if (frame.data === "bye") return reply(close(4000, "bye"), state);
    return reply(text(frame.data), state);
  },
};

const hello: HttpHandler<null> = {
  init(req) {
    req.reply(200, { "content-type": "text/plain" }, "hello");
    return { type: "ok", req, state: null };
  },
};

/** A process that waits for the message "stop", for tests that need one alive. */
const waiter = async (ctx: { receive(pred: (m: unknown) => boolean): Promise<unknown> }): Promise<void> => {
  await ctx.receive((m) => m === "stop");
};

/** The error a promise rejects with (fails the test if it resolves). */
async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a rejection");
}

/** Times how long a promise takes to settle. */
async function timed<T>(p: Promise<T>): Promise<{ ms: number; value: T }> {
  const start = performance.now();
  const value = await p;
  return { ms: performance.now() - start, value };
}

// The module checks itself: every test leaves the runtime as it found it.
let leaks: LeakCheck;
beforeEach(() => {
  leaks = leakCheck();
});
afterEach(() => leaks.assert());

/* ---------------------------------------------------------------- testServer */

describe("testServer", () => {
  test("serves path routes on 127.0.0.1 and a port the system picked; stop() stops the listener, once", async () => {
    const server = await testServer([["/hello", hello]]);
    expect(server.port).toBeGreaterThan(0);
    expect(server.url("/hello")).toBe(`http://127.0.0.1:${server.port}/hello`);
    expect(server.wsUrl("/hello")).toBe(`ws://127.0.0.1:${server.port}/hello`);
    expect(server.url()).toBe(`http://127.0.0.1:${server.port}/`);
    const res = await fetch(server.url("/hello"));
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("hello");
    expect(listenerInfo(server.name)).toBe(server.listener);

    await server.stop();
    expect(listenerInfo(server.name)).toBeUndefined();
    await expect(fetch(server.url("/hello"))).rejects.toThrow();
    await server.stop(); // harmless
  });

  test("takes host routes or a dispatch too, and a name and protocol options", async () => {
    const byHost = await testServer([{ host: "_", paths: [["/hello", hello]] }]);
    const byDispatch = await testServer(compileRoutes([{ host: "_", paths: [["/hello", hello]] }]), { name: "mine", requestTimeout: 1000 });
    expect(byDispatch.name).toBe("mine");
    for (const server of [byHost, byDispatch]) expect((await fetch(server.url("/hello"))).status).toBe(200);
    expect(byHost.port).not.toBe(byDispatch.port);
    await expect(testServer([["/hello", hello]], { name: "mine" })).rejects.toMatchObject({ code: "ERR_NAME_TAKEN" });
    await Promise.all([byHost.stop(), byDispatch.stop()]);
  });

  test("a url path that does not start with / is bad input", async () => {
    const server = await testServer([["/hello", hello]]);
    expect(() => server.url("hello")).toThrow(CorralError);
    expect(() => server.wsUrl("hello")).toThrow(/wsUrl: path must be a string starting with "\/"/);
    await server.stop();
  });
});

/* ---------------------------------------------------------------- testClient */

describe("testClient", () => {
  let server: TestServer;
  beforeEach(async () => {
    server = await testServer([["/echo", echo]]);
  });
  afterEach(() => server.stop());

  test("keeps every frame from the first (the greeting sent in websocketInit); next() takes them in order", async () => {
    const client = await testClient(server.wsUrl("/echo"));
    expect(await client.next()).toEqual(text("hello"));
    client.send("one");
    client.send("two");
    expect(await client.nextText()).toBe("one");
    expect(await client.next()).toEqual(text("two"));
    expect(client.frames).toEqual([text("hello"), text("one"), text("two")]);
    await client.close();
  });

  test("next(pred) and nextText take a match and leave the other frames unread, in order", async () => {
    const client = await testClient(server.wsUrl("/echo"));
    await client.nextText(); // hello
    client.send("binary"); // binary [1, 2, 3], then text "after"
    expect(await client.nextText()).toBe("after");
    const frame = await client.next((f) => f.type === "binary");
    expect(frame).toEqual(binary(new Uint8Array([1, 2, 3])));
    expect(frame.data).toBeInstanceOf(Uint8Array);
    client.send(new Uint8Array([9]));
    client.send("x");
    expect(await client.nextText()).toBe("x"); // the binary frame is not echoed by this handler: nothing skipped
    await client.close();
  });

  test("next() rejects after its timeout, naming the url, the wait and what is unread, at the caller's line", async () => {
    const client = await testClient(server.wsUrl("/echo"));
    client.send("binary");
    await client.next((f) => f.type === "binary");
    await client.nextText(); // hello
    await client.nextText(); // after
    client.send("binary");
    const isPing = (): boolean => false;
    const { ms, value: err } = await timed(rejection(client.next(isPing, 60)));
    expect(err.message).toBe(`testClient ${server.wsUrl("/echo")}: no frame matching isPing within 60 ms; 2 unread: { type: 'binary', data: Uint8Array(3) [ 1, 2, 3 ] }, { type: 'text', data: 'after' }`);
    expect(ms).toBeGreaterThanOrEqual(55);
    expect(err.stack).toContain("testing.test.ts");
    await client.next((f) => f.type === "binary");
    await client.nextText();
    expect((await rejection(client.next(30))).message).toBe(`testClient ${server.wsUrl("/echo")}: no frame within 30 ms; none unread`);
    await client.close();
  });

  test("next() rejects at once when the socket closes first, with the close code and reason; closed() has them", async () => {
    const client = await testClient(server.wsUrl("/echo"));
    await client.nextText();
    const waiting = timed(rejection(client.next(5000)));
    client.send("bye");
    const { ms, value: err } = await waiting;
    expect(ms).toBeLessThan(2000);
    expect(err.message).toBe(`testClient ${server.wsUrl("/echo")}: closed (4000 "bye") before a frame arrived; none unread`);
    expect(await client.closed()).toEqual({ code: 4000, reason: "bye" });
    expect(() => client.send("more")).toThrow(/cannot send, the socket is closed \(4000\)/);
    await expect(client.next(5000)).rejects.toThrow(/closed \(4000 "bye"\)/);
  });

  test("close() does the closing handshake and resolves with the server's answer; closed() times out while open", async () => {
    const client = await testClient(server.wsUrl("/echo"));
    const err = await rejection(client.closed(40));
    expect(err.message).toBe(`testClient ${server.wsUrl("/echo")}: still open after 40 ms (1 frames received)`);
    expect(await client.close(4001, "done")).toEqual({ code: 4001, reason: "done" });
    expect(await client.close()).toEqual({ code: 4001, reason: "done" }); // already closed
  });

  test("close() destroys the socket and rejects when the server does not answer within timeoutMs", async () => {
    const stalling: WebSocketHandler<null> = {
      init: (req) => upgrade(req, null),
      // The mailbox waits for this promise: the client's close frame is not answered meanwhile.
      websocketHandle: (_frame, state) => new Promise((resolve) => setTimeout(() => resolve(ok(state)), 300)),
    };
    const other = await testServer([["/stall", stalling]]);
    const client = await testClient(other.wsUrl("/stall"));
    client.send("stall");
    const { ms, value: err } = await timed(rejection(client.close(1000, "", 50)));
    expect(err.message).toBe(`testClient ${other.wsUrl("/stall")}: the closing handshake was not done within 50 ms; the socket was destroyed`);
    expect(ms).toBeLessThan(250);
    expect((await client.closed()).code).toBe(1006);
    await other.stop();
  });

  test("a refused upgrade rejects naming the url and the status", async () => {
    const url = server.wsUrl("/nothing-here");
    await expect(testClient(url)).rejects.toThrow(`testClient ${url}: did not open: Unexpected server response: 404`);
  });

  test("a handshake that never finishes rejects after timeoutMs", async () => {
    const accepted: Socket[] = [];
    const silent: Server = createServer((socket) => accepted.push(socket)); // accepts, never answers
    silent.listen(0, "127.0.0.1");
    await once(silent, "listening");
    const { port } = silent.address() as { port: number };
    const url = `ws://127.0.0.1:${port}/`;
    const { ms, value: err } = await timed(rejection(testClient(url, { timeoutMs: 80 })));
    expect(err.message).toBe(`testClient ${url}: the handshake was not done within 80 ms`);
    expect(ms).toBeGreaterThanOrEqual(75);
    for (const socket of accepted) socket.destroy(); // never read, so it would not see the client leave
    await new Promise((r) => silent.close(r));
  });

  test("offers subprotocols", async () => {
    const chosen: WebSocketHandler<null> = {
      init(req) {
        req.setRespHeader("sec-websocket-protocol", "b");
        return upgrade(req, null);
      },
      websocketHandle: (_frame, state) => ok(state),
    };
    const other = await testServer([["/p", chosen]]);
    const client = await testClient(other.wsUrl("/p"), { protocols: ["a", "b"] });
    expect(client.ws.protocol).toBe("b");
    await client.close();
    await other.stop();
  });
});

/* ---------------------------------------------------------------- testProcess */

describe("testProcess", () => {
  test("collects its messages; next() takes them in order, next(pred) the first match, leaving the rest in order", async () => {
    const probe = testProcess<{ n: number }>();
    for (let n = 1; n <= 4; n++) send(probe.pid, { n });
    expect(await probe.next((m) => m.n % 2 === 0)).toEqual({ n: 2 });
    expect(await probe.next()).toEqual({ n: 1 });
    expect(await probe.next()).toEqual({ n: 3 });
    expect(await probe.next()).toEqual({ n: 4 });
    expect(probe.messages).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }]);
    const later = probe.next();
    send(probe.pid, { n: 5 });
    expect(await later).toEqual({ n: 5 });
    await probe.stop();
  });

  test("next() rejects after its timeout, naming the process, the predicate and the unread messages", async () => {
    const probe = testProcess();
    send(probe.pid, { kind: "other" });
    const isWanted = (m: unknown): boolean => m === "wanted";
    const { ms, value: err } = await timed(rejection(probe.next(isWanted, 50)));
    expect(err.message).toBe(`testProcess ${probe.pid}: no message matching isWanted within 50 ms; 1 unread: { kind: 'other' }`);
    expect(ms).toBeGreaterThanOrEqual(45);
    expect(err.stack).toContain("testing.test.ts");
    await expect(probe.next((m) => m === "wanted", 20)).rejects.toThrow("no message matching the predicate within 20 ms");
    await probe.stop();
  });

  test("a predicate that throws rejects its next() with the error; the message stays unread and the process lives", async () => {
    const probe = testProcess();
    const broken = (): boolean => {
      throw new Error("bad pattern");
    };
    const waiting = probe.next(broken, 5000);
    send(probe.pid, "m");
    await expect(waiting).rejects.toThrow("bad pattern");
    await expect(probe.next(broken)).rejects.toThrow("bad pattern"); // on what is already unread
    expect(await probe.next()).toBe("m");
    await probe.stop();
  });

  test("a name, and bad options or arguments, as clear errors", async () => {
    const probe = testProcess({ name: "probe" });
    send("probe", "by name");
    expect(await probe.next()).toBe("by name");
    expect(() => testProcess({ name: "probe" })).toThrow(expect.objectContaining({ code: "ERR_NAME_TAKEN" }));
    expect(() => testProcess({ trap: true } as object)).toThrow(/testProcess: unknown option "trap"/);
    await expect(probe.next(-1)).rejects.toThrow(/next: timeoutMs must be a finite number > 0, got -1/);
    await expect(probe.next("x" as unknown as number)).rejects.toThrow(CorralError);
    await expect(probe.monitor("pid" as never)).rejects.toMatchObject({ code: "ERR_BADARG" });
    await probe.stop();
  });

  test("monitor(): the DOWN arrives in the probe", async () => {
    const probe = testProcess();
    const pid = spawn(waiter);
    const ref = await probe.monitor(pid);
    send(pid, "stop");
    const down = await probe.next(isDown);
    expect(down).toMatchObject({ ref, pid, reason: "normal" });
    await probe.stop();
  });

  test("link() with trapExit: the EXIT arrives as a message", async () => {
    const probe = testProcess({ trapExit: true });
    const pid = spawn(waiter);
    await probe.link(pid);
    exit(pid, "shutdown");
    expect(await probe.next(isExit)).toMatchObject({ from: pid, reason: "shutdown" });
    await probe.stop();
  });

  test("link() without trapping: the linked crash ends the probe, and a waiting next() rejects at once with the reason", async () => {
    const probe = testProcess();
    const pid = spawn(waiter);
    await probe.link(pid);
    const waiting = timed(rejection(probe.next(5000)));
    exit(pid, { shutdown: "gone" });
    const { ms, value: err } = await waiting;
    expect(ms).toBeLessThan(2000);
    expect(err.message).toBe(`testProcess ${probe.pid}: ended ({ shutdown: 'gone' }) before a message arrived; none unread`);
    const other = spawn(waiter);
    await expect(probe.link(other)).rejects.toThrow(`testProcess ${probe.pid}: link: the process has ended ({ shutdown: 'gone' })`);
    await probe.stop(); // already ended: resolves
    send(other, "stop");
  });

  test("link() to a dead pid rejects with ERR_NOPROC and the probe lives on", async () => {
    const probe = testProcess();
    const pid = spawn(async () => {});
    await probe.monitor(pid).then(() => probe.next(isDown));
    await expect(probe.link(pid)).rejects.toMatchObject({ code: "ERR_NOPROC" });
    send(probe.pid, "still here");
    expect(await probe.next()).toBe("still here");
    await probe.stop();
  });

  test("stop() ends the process; what was unread stays readable, then next() rejects at once", async () => {
    const before = processCount();
    const probe = testProcess();
    expect(processCount()).toBe(before + 1);
    send(probe.pid, "last");
    await probe.stop();
    expect(processCount()).toBe(before);
    expect(await probe.next()).toBe("last");
    await expect(probe.next(5000)).rejects.toThrow(`testProcess ${probe.pid}: ended ('normal') before a message arrived`);
  });

  test("stop() resolves only once the process has ended, even behind a long mailbox that takes several turns", async () => {
    const probe = testProcess();
    for (let i = 0; i < 5000; i++) send(probe.pid, i);
    await probe.stop();
    expect(isAlive(probe.pid)).toBe(false);
    expect(probe.messages).toHaveLength(5000);
  });

  test("a killed probe (no terminate runs): stop() still resolves, and monitor() rejects", async () => {
    const probe = testProcess();
    send(probe.pid, "x");
    await probe.next();
    exit(probe.pid, "kill");
    await expect(probe.monitor(probe.pid)).rejects.toThrow(`testProcess ${probe.pid}: monitor: the process has ended (killed)`);
    await probe.stop();
    const err = await rejection(probe.next(20));
    expect(err.message).toBe(`testProcess ${probe.pid}: no message within 20 ms; ${probe.pid} is no longer alive (killed); none unread`);
  });
});

/* ---------------------------------------------------------------- leakCheck */

describe("leakCheck", () => {
  test("nothing new: leaks() is empty and assert() resolves", async () => {
    const check = leakCheck();
    const probe = testProcess();
    await probe.stop();
    expect(check.leaks()).toEqual([]);
    await check.assert(50);
  });

  test("a process, its registered name and its group membership are each reported", async () => {
    const check = leakCheck();
    const pid = spawn(waiter, undefined, { name: "leaky" });
    join("leaky-group", pid);
    const err = await rejection(check.assert(40));
    expect(err.message).toBe(
      [
        "leakCheck: 3 left behind 40 ms after the test:",
        `  - process ${pid}: "waiter", waiting, 0 queued, registered as "leaky", in "leaky-group"`,
        `  - registered name "leaky" → ${pid}`,
        `  - group "leaky-group": ${pid}`,
      ].join("\n"),
    );
    send(pid, "stop");
    await check.assert();
  });

  test("a new member of a group that existed at the snapshot is reported; members from before are not", async () => {
    const old = spawn(waiter);
    join("room", old);
    const check = leakCheck();
    const probe = testProcess();
    join("room", probe.pid);
    expect(check.leaks()).toEqual([`process ${probe.pid}: a testProcess, not stopped`, `group "room": ${probe.pid}`]);
    leave("room", probe.pid);
    expect(check.leaks()).toEqual([`process ${probe.pid}: a testProcess, not stopped`]);
    await probe.stop();
    await check.assert(50);
    send(old, "stop");
  });

  test("a timer is reported by count", async () => {
    const check = leakCheck();
    const ref = sendAfter(60_000, "nobody", "late");
    expect(check.leaks()).toEqual(["timers: 1 armed, 0 at the snapshot"]);
    await expect(check.assert(30)).rejects.toThrow("leakCheck: 1 left behind 30 ms after the test:\n  - timers: 1 armed, 0 at the snapshot");
    cancelTimer(ref);
    await check.assert(30);
  });

  test("a testServer not stopped and a testClient not closed are reported", async () => {
    const check = leakCheck();
    const server = await testServer([["/echo", echo]]);
    const client = await testClient(server.wsUrl("/echo"));
    const found = check.leaks();
    expect(found).toContain(`testServer ${JSON.stringify(server.name)} on port ${server.port}, not stopped`);
    expect(found).toContain(`testClient ${server.wsUrl("/echo")}, not closed`);
    expect(found.some((l) => /^process .*: "\/echo", waiting/.test(l))).toBe(true); // the connection's process
    await client.close();
    await server.stop();
    await check.assert();
  });

  test("assert() waits for processes that are still ending", async () => {
    const check = leakCheck();
    spawn(async () => {
      await new Promise((r) => setTimeout(r, 50));
    });
    expect(check.leaks()).toHaveLength(1);
    await check.assert(2000);
    expect(check.leaks()).toEqual([]);
  });
});

/* ---------------------------------------------------------------- one runtime */

test("corral/testing is the source module, sharing corral's runtime", async () => {
  expect(await import("corral/testing")).toBe(await import("../../src/testing.js"));
  const before = processCount();
  const probe = testProcess();
  expect(processCount()).toBe(before + 1);
  await probe.stop();
});
