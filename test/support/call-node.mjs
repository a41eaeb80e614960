// Calls and casts inside the cluster tests' child nodes (test/support/cluster-node.mjs), which
// have no command for them. test/cluster/call.test.ts preloads this file into those nodes with
// NODE_OPTIONS="--import …"; in any other process it does nothing.
//
// Protocol, beside cluster-node.mjs's own (which ignores these messages: they have no numeric
// id): the parent sends { callCmd, cmd, ...args }; the node answers { callCmd, ok: true, value }
// or { callCmd, ok: false, error: { name, code, message } }. Pids cross IPC as strings, refs as
// { $ref }, Maps and Sets as themselves, errors as { $error: message }.
const main = process.argv[1] ?? "";

if (typeof process.send === "function" && main.endsWith("cluster-node.mjs")) {
  // The very module cluster-node.mjs imports: one runtime.
  const corral = await import("../../dist/index.js");
  const { answer, call, cast, makeRef, ok, Pid, Ref, replyTo, self, sendAfter, spawn, stop } = corral;

  /** Each server's state by pid string: what it took (["call", request] / ["cast", msg] / ["info", msg]) and the calls it holds. */
  const servers = new Map();

  const encode = (v, depth = 0) => {
    if (depth > 20) return "<deep>";
    if (v instanceof Pid) return String(v);
    if (v instanceof Ref) return { $ref: String(v) };
    if (v instanceof Error) return { $error: v.message };
    if (Array.isArray(v)) return v.map((x) => encode(x, depth + 1));
    if (v instanceof Map) return new Map([...v].map(([k, x]) => [encode(k, depth + 1), encode(x, depth + 1)]));
    if (v instanceof Set) return new Set([...v].map((x) => encode(x, depth + 1)));
    if (v !== null && typeof v === "object" && !(v instanceof Date) && !ArrayBuffer.isView(v)) {
      const o = {};
      for (const [k, x] of Object.entries(v)) o[k] = encode(x, depth + 1);
      return o;
    }
    return v;
  };

  /** A gen_server whose request ({ op, ... }) says how to answer. */
  const server = {
    init: (s) => s,
    handleCall(request, from, s) {
      s.log.push(["call", request]);
      switch (request?.op) {
        case "echo":
          return answer(request.v, s);
        case "rich":
          // Pids, refs, Maps, Sets and Dates of both nodes, as one answer.
          return answer(
            {
              request,
              me: self(),
              from,
              ref: makeRef(),
              byPid: new Map([
                [self(), "the server"],
                [from.pid, "the call"],
              ]),
              set: new Set([self(), "x"]),
              when: new Date(Date.UTC(2024, 1, 29)),
            },
            s,
          );
        case "later":
          s.held.push(from);
          sendAfter(request.ms, self(), { release: request.v });
          return ok(s);
        case "hold":
          s.held.push(from);
          return ok(s);
        case "crash":
          throw new Error(request.message);
        case "badAnswer":
          // An answer v8 cannot carry to the caller's node.
          return answer({ fn: () => 1 }, s);
        case "stop":
          return stop(s, request.reason);
        case "callBack":
          // A call from this node to a process of the caller's node, inside handleCall.
          return call(Pid.parse(request.to), request.request, 2000).then(
            (v) => answer({ gotBack: v }, s),
            (err) => answer({ failedBack: err.code, reason: err.reason }, s),
          );
        default:
          return answer({ unknownOp: request }, s);
      }
    },
    handleCast(msg, s) {
      s.log.push(["cast", msg]);
      return ok(s);
    },
    handleInfo(msg, s) {
      s.log.push(["info", msg]);
      if (msg !== null && typeof msg === "object" && "release" in msg) for (const from of s.held.splice(0)) replyTo(from, msg.release);
      return ok(s);
    },
  };

  const commands = {
    /** Spawns a server; resolves with its pid. */
    server: ({ name }) => {
      const s = { log: [], held: [] };
      const pid = spawn(server, s, name === undefined ? undefined : { name });
      servers.set(String(pid), s);
      return pid;
    },
    /** What a server took so far. */
    log: ({ pid }) => servers.get(pid)?.log ?? [],
    /** Answers a server's held calls with replyTo from app code here, outside any process. */
    release: ({ pid, value }) => {
      const s = servers.get(pid);
      if (s === undefined) throw new Error(`no server ${pid} here`);
      const held = s.held.splice(0);
      for (const from of held) replyTo(from, value);
      return held.length;
    },
    /** call from app code here; settles with { value } or { code, reason }. */
    call: ({ to, request, timeoutMs }) =>
      call(Pid.parse(to), request, timeoutMs).then(
        (value) => ({ value }),
        (err) => ({ code: err.code, reason: err.reason, message: err.message }),
      ),
    cast: ({ to, msg }) => {
      cast(Pid.parse(to), msg);
      return true;
    },
  };

  process.on("message", async (m) => {
    if (m === null || typeof m !== "object" || typeof m.callCmd !== "number") return;
    const fn = commands[m.cmd];
    try {
      if (fn === undefined) throw new Error(`unknown call command ${m.cmd}`);
      process.send({ callCmd: m.callCmd, ok: true, value: encode(await fn(m)) });
    } catch (err) {
      process.send({ callCmd: m.callCmd, ok: false, error: { name: err?.name, code: err?.code, message: String(err?.message ?? err) } });
    }
  });
}
