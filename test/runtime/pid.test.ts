import { afterEach, beforeEach, describe, expect, test } from "vitest";
import {
  CorralError,
  exit,
  isAlive,
  isDown,
  makeRef,
  monitor,
  nodeName,
  ok,
  Pid,
  processCount,
  processInfo,
  Ref,
  setNodeName,
  spawn,
  stop,
  type DownMessage,
} from "../../src/index.js";
import { captureLogs, until } from "../support/helpers.js";

/** A process that stays alive until it gets "stop". */
function idle(): Pid {
  return spawn({
    init: () => null,
    handleInfo: (msg: unknown, s: null) => (msg === "stop" ? stop(s) : ok(s)),
  });
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CorralError);
    return (err as CorralError).code;
  }
  return undefined;
}

let baseline = 0;
beforeEach(() => {
  captureLogs();
  baseline = processCount();
});
afterEach(async () => {
  await until(() => processCount() === baseline, 2000, "the test's processes to end");
});

describe("Pid", () => {
  test("the default node is nonode@nohost and a pid prints as <node.id>", async () => {
    expect(nodeName()).toBe("nonode@nohost");
    const pid = idle();
    expect(pid).toBeInstanceOf(Pid);
    expect(pid.node).toBe("nonode@nohost");
    expect(Number.isSafeInteger(pid.id)).toBe(true);
    expect(pid.toString()).toBe(`<nonode@nohost.${pid.id}>`);
    expect(String(pid)).toMatch(/^<nonode@nohost\.\d+>$/);
    expect(JSON.stringify({ pid })).toBe(`{"pid":"<nonode@nohost.${pid.id}>"}`);
    exit(pid, "kill");
    await until(() => !isAlive(pid));
  });

  test("each process gets its own pid", async () => {
    const pids = Array.from({ length: 50 }, () => idle());
    expect(new Set(pids.map(String)).size).toBe(50);
    for (let i = 1; i < pids.length; i++) expect(pids[i]!.equals(pids[0])).toBe(false);
    for (const p of pids) exit(p, "kill");
    await until(() => pids.every((p) => !isAlive(p)));
  });

  test("Pid.parse round-trips and returns the very same object for a live pid", async () => {
    const pid = idle();
    const text = pid.toString();
    const parsed = Pid.parse(text);
    expect(parsed).toBe(pid);
    expect(parsed.toString()).toBe(text);
    expect(processInfo(parsed)?.pid).toBe(pid);
    exit(pid, "kill");
    await until(() => !isAlive(pid));
  });

  test("a parsed dead pid equals the original, though it is a new object", async () => {
    const pid = idle();
    const text = pid.toString();
    exit(pid, "kill");
    await until(() => !isAlive(pid));
    const parsed = Pid.parse(text);
    expect(parsed.toString()).toBe(text);
    expect(parsed.equals(pid)).toBe(true);
    expect(pid.equals(parsed)).toBe(true);
    expect(Pid.parse(text).equals(parsed)).toBe(true);
    expect(isAlive(parsed)).toBe(false);
    expect(processInfo(parsed)).toBeUndefined();
  });

  test("equals tells pids apart by id and by node, and is false for non-pids", async () => {
    const a = idle();
    const b = idle();
    expect(a.equals(a)).toBe(true);
    expect(a.equals(b)).toBe(false);
    const remote = Pid.parse(`<other@host.${a.id}>`);
    expect(remote.node).toBe("other@host");
    expect(remote.id).toBe(a.id);
    expect(remote.equals(a)).toBe(false);
    expect(a.equals(remote)).toBe(false);
    expect(isAlive(remote)).toBe(false);
    expect(a.equals(a.toString())).toBe(false);
    expect(a.equals({ node: a.node, id: a.id })).toBe(false);
    expect(a.equals(undefined)).toBe(false);
    exit(a, "kill");
    exit(b, "kill");
    await until(() => !isAlive(a) && !isAlive(b));
  });

  test("Pid.parse of a pid that never existed gives a dead pid", () => {
    const pid = Pid.parse("<nonode@nohost.987654321>");
    expect(pid.id).toBe(987654321);
    expect(pid.node).toBe("nonode@nohost");
    expect(isAlive(pid)).toBe(false);
  });

  test.each([
    [""],
    ["<>"],
    ["nonode@nohost.1"],
    ["<nonode@nohost.1"],
    ["<nonode@nohost>"],
    ["<nonode@nohost.x>"],
    ["<nonode@nohost.-1>"],
    ["<nonode@nohost.1.5>x"],
    ["<.1>"],
    ["<nonode@nohost.99999999999999999999>"],
  ])("Pid.parse(%j) throws ERR_BADARG", (text) => {
    expect(codeOf(() => Pid.parse(text))).toBe("ERR_BADARG");
  });

  test("Pid.parse of a non-string throws ERR_BADARG", () => {
    for (const bad of [42, null, undefined, {}, ["<nonode@nohost.1>"]]) {
      expect(codeOf(() => Pid.parse(bad as unknown as string))).toBe("ERR_BADARG");
    }
  });

  test("the node name cannot change once pids exist", async () => {
    const pid = idle();
    expect(codeOf(() => setNodeName("elsewhere@host"))).toBe("ERR_BADARG");
    expect(nodeName()).toBe("nonode@nohost");
    expect(pid.node).toBe("nonode@nohost");
    exit(pid, "kill");
    await until(() => !isAlive(pid));
  });
});

describe("Ref", () => {
  test("makeRef gives unique refs printed #Ref<node.id>", () => {
    const refs = Array.from({ length: 1000 }, () => makeRef());
    expect(new Set(refs.map(String)).size).toBe(1000);
    for (const r of refs) {
      expect(r).toBeInstanceOf(Ref);
      expect(r.toString()).toMatch(/^#Ref<nonode@nohost\.\d+>$/);
    }
    const r = refs[0]!;
    expect(r.toString()).toBe(`#Ref<${r.node}.${r.id}>`);
    expect(JSON.stringify([r])).toBe(`["${r.toString()}"]`);
  });

  test("equals is identity of node and id", () => {
    const a = makeRef();
    const b = makeRef();
    expect(a.equals(a)).toBe(true);
    expect(a.equals(b)).toBe(false);
    expect(b.equals(a)).toBe(false);
    expect(a.equals(a.toString())).toBe(false);
    expect(a.equals(null)).toBe(false);
  });

  test("a monitor's ref is a unique Ref and comes back in the DOWN message", async () => {
    const target = idle();
    const downs: DownMessage[] = [];
    let refs: Ref[] = [];
    const watcher = spawn({
      init: () => {
        refs = [monitor(target), monitor(target)];
        return null;
      },
      handleInfo: (msg: unknown, s: null) => {
        if (isDown(msg)) downs.push(msg);
        return downs.length === 2 ? stop(s) : ok(s);
      },
    });
    await until(() => refs.length === 2);
    expect(refs[0]).toBeInstanceOf(Ref);
    expect(refs[0]!.toString()).toMatch(/^#Ref<nonode@nohost\.\d+>$/);
    expect(refs[0]!.equals(refs[1])).toBe(false);
    exit(target, "shutdown");
    await until(() => !isAlive(watcher));
    expect(downs.map((d) => d.ref)).toEqual(expect.arrayContaining(refs));
    expect(downs[0]!.ref === refs[0] || downs[0]!.ref === refs[1]).toBe(true);
    expect(downs[0]!.ref).not.toBe(downs[1]!.ref);
  });
});
