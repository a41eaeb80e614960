/**
 * Request bodies that trickle in (the slow-POST attack): real sockets on 127.0.0.1 sending a
 * byte now and then are cut off once minBodyRate's grace is over, while a normal client is
 * served, a slow but honest upload completes, and a handler that has not read its body yet
 * does not get its client cut for its own delay.
 */
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, test } from "vitest";
import { CorralError, compileRoutes, startClear, stopListener, type HttpHandler, type TerminateReason } from "../../src/index.js";
import { sleep, until } from "../support/helpers.js";

const NAME = "slow-body-test";
const reasons: TerminateReason[] = [];

const echo: HttpHandler<null> = {
  // No catch: a body that never arrives is the client's fault, not a crash.
  async init(req) {
    const body = await req.readBody();
    req.reply(200, {}, body);
    return { type: "ok", req, state: null };
  },
  terminate: (reason) => void reasons.push(reason),
};

const ignore: HttpHandler<null> = {
  init(req) {
    req.reply(200, {}, "not reading it");
    return { type: "ok", req, state: null };
  },
};

const late: HttpHandler<null> = {
  async init(req) {
    await sleep(2500);
    const body = await req.readBody();
    req.reply(200, {}, String(body.byteLength));
    return { type: "ok", req, state: null };
  },
};

const dispatch = compileRoutes([{ host: "_", paths: [["/echo", echo], ["/ignore", ignore], ["/late", late]] }]);

afterEach(async () => {
  await stopListener(NAME).catch(() => {});
  reasons.length = 0;
});

interface Trickler {
  readonly socket: Socket;
  /** ms from the end of the headers to the socket's close. */
  closedAfter: number | undefined;
  answer: string;
}

/** A POST whose body comes `bytes` at a time every `everyMs`, until the server closes the socket (or `maxMs`). */
function trickle(port: number, target: string, bytes: number, everyMs: number, maxMs: number): Trickler {
  const socket = connect(port, "127.0.0.1");
  const t: Trickler = { socket, closedAfter: undefined, answer: "" };
  let start = 0;
  let timer: NodeJS.Timeout | undefined;
  socket.on("connect", () => {
    socket.write(`POST ${target} HTTP/1.1\r\nhost: localhost\r\ncontent-length: 1000000\r\n\r\n`);
    start = Date.now();
    timer = setInterval(() => {
      if (Date.now() - start > maxMs) socket.destroy();
      else socket.write("x".repeat(bytes));
    }, everyMs);
  });
  socket.on("data", (d: Buffer) => (t.answer += d.toString("latin1")));
  socket.on("error", () => {});
  socket.on("close", () => {
    clearInterval(timer);
    t.closedAfter = Date.now() - start;
  });
  return t;
}

async function post(port: number, target: string, body: Buffer): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${target}`, { method: "POST", body });
  return { status: res.status, body: await res.text() };
}

describe("minBodyRate", () => {
  test("defaults: 50 sockets trickling a byte every 500 ms are closed 10-11 s after their headers (408 where nothing was answered); a normal client is served meanwhile", async () => {
    const { port } = await startClear(NAME, { port: 0 }, { dispatch });
    const tricklers = Array.from({ length: 50 }, (_, i) => trickle(port, i % 2 === 0 ? "/echo" : "/ignore", 1, 500, 20_000));
    const served: number[] = [];
    const payload = Buffer.alloc(10_000, 0x61);
    while (tricklers.some((t) => t.closedAfter === undefined)) {
      const res = await post(port, "/echo", payload);
      served.push(res.status === 200 && res.body.length === payload.length ? 1 : 0);
      await sleep(500);
    }
    expect(served.length).toBeGreaterThanOrEqual(15);
    expect(served.every((ok) => ok === 1)).toBe(true);
    for (const t of tricklers) {
      // grace 10 s + (bytes sent) / 1024 B/s + one sweep (1 s), plus slack for a loaded machine.
      expect(t.closedAfter!).toBeGreaterThan(9_500);
      expect(t.closedAfter!).toBeLessThan(13_000);
    }
    // /echo had not answered: 408; /ignore had answered 200 and its connection was cut.
    for (const [i, t] of tricklers.entries()) expect(t.answer.split(" ")[1], `socket ${i}`).toBe(i % 2 === 0 ? "408" : "200");
    await until(() => reasons.filter((r) => typeof r === "object" && "error" in r).length === 25, 2000, "terminate for the cut requests");
    expect(reasons.filter((r) => typeof r === "object" && "error" in r && r.error === "timeout")).toHaveLength(25);
  }, 30_000);

  test("a slow but steady upload above the rate completes; one below it is cut after grace + received / rate", async () => {
    const { port } = await startClear(NAME, { port: 0 }, { dispatch, minBodyRate: 2000, minBodyRateGrace: 500 });
    // 4000 B/s for 3 s: well past the grace, never below the rate.
    const body = Buffer.alloc(12_000, 0x62);
    const honest = await new Promise<string>((resolve) => {
      const socket = connect(port, "127.0.0.1");
      let answer = "";
      let sent = 0;
      socket.on("connect", () => {
        socket.write(`POST /echo HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: ${body.length}\r\n\r\n`);
        const timer = setInterval(() => {
          socket.write(body.subarray(sent, sent + 400));
          sent += 400;
          if (sent >= body.length) clearInterval(timer);
        }, 100);
      });
      socket.on("data", (d: Buffer) => (answer += d.toString("latin1")));
      socket.on("close", () => resolve(answer));
    });
    expect(honest.split(" ")[1]).toBe("200");
    expect(honest.endsWith(body.toString("latin1"))).toBe(true);

    // 1000 B/s against 2000: cut when t > 0.5 s + t / 2, i.e. after 1 s, seen by the next sweep.
    const slow = trickle(port, "/echo", 100, 100, 10_000);
    await until(() => slow.closedAfter !== undefined, 6000, "the slow upload to be cut");
    expect(slow.closedAfter!).toBeGreaterThan(900);
    expect(slow.closedAfter!).toBeLessThan(3500);
    expect(slow.answer.split(" ")[1]).toBe("408");
  }, 20_000);

  test("time the handler spends before reading the body is not the client's: a whole body sent at once waits and is read", async () => {
    const { port } = await startClear(NAME, { port: 0 }, { dispatch, minBodyRate: 100_000, minBodyRateGrace: 200 });
    const body = Buffer.alloc(1024 * 1024, 0x63);
    const res = await post(port, "/late", body);
    expect(res.status).toBe(200);
    expect(res.body).toBe(String(body.length));
  }, 20_000);

  test("minBodyRate: 0 turns it off; invalid values are refused when the listener starts", async () => {
    const { port } = await startClear(NAME, { port: 0 }, { dispatch, minBodyRate: 0, minBodyRateGrace: 100 });
    const t = trickle(port, "/echo", 1, 200, 2500);
    await until(() => t.closedAfter !== undefined, 5000, "the client to give up");
    // Still open when the client gave up after 2.5 s (25 × the grace).
    expect(t.closedAfter!).toBeGreaterThan(2400);
    expect(t.answer).toBe("");
    await stopListener(NAME);
    for (const bad of [{ minBodyRate: -1 }, { minBodyRate: "1k" }, { minBodyRate: Number.NaN }, { minBodyRate: Infinity }, { minBodyRateGrace: 0 }, { minBodyRateGrace: "10s" }]) {
      const start = (): unknown => startClear(NAME, { port: 0 }, { dispatch, ...(bad as object) });
      expect(start).toThrow(CorralError);
      expect(start).toThrow(/minBodyRate/);
    }
  }, 20_000);
});
