// A corral node in its own OS process, for the cluster tests: imports the BUILT package
// (dist/index.js), starts the cluster with the options given as JSON in argv[2], and obeys
// commands from the test over the IPC channel (serialization "advanced": child_process.fork
// for a node on Redis; over IPC a node:cluster worker of the test process, whose channel also
// carries the cluster's own messages, which this file leaves alone).
//
// Protocol: the parent sends { id, cmd, ...args }; the node answers { id, ok: true, value } or
// { id, ok: false, error: { name, code, message } }. At start it sends { type: "ready", info }
// or { type: "startError", error }.
//
// Pids cross the IPC channel as strings; in messages, { $pid: "<n.1>" } stands for a pid,
// { $newRef: true } for a fresh makeRef(). What a collector received is reported with pids as
// { $pid, local, same } (same: it is the very Pid object of a live process spawned here) and
// refs as { $ref }.
import * as corral from "../../dist/index.js";

const { Pid, Ref, send, spawn, exit, isAlive, makeRef, join, leave, members, whichGroups, broadcast, answer, ok } = corral;

const opts = JSON.parse(process.argv[2] ?? "{}");

/** Live pids of the processes spawned here, by their printed form. */
const procs = new Map();
/** What each collector received, encoded, by pid string. */
const records = new Map();
/** When each collector received each message (Date.now()), by pid string. */
const times = new Map();
/** Monitor refs made here, by their printed form. */
const refs = new Map();

const CTL = Symbol("ctl");

function encode(v, seen = 0) {
  if (seen > 20) return "<deep>";
  if (v instanceof Pid) {
    const s = String(v);
    return { $pid: s, local: v.node === corral.nodeName(), same: procs.get(s) === v };
  }
  if (v instanceof Ref) return { $ref: String(v) };
  if (Array.isArray(v)) return v.map((x) => encode(x, seen + 1));
  if (v instanceof Map) return new Map([...v].map(([k, x]) => [encode(k, seen + 1), encode(x, seen + 1)]));
  if (v instanceof Set) return new Set([...v].map((x) => encode(x, seen + 1)));
  if (v instanceof Error) {
    return { $error: { name: v.name, message: v.message, isError: true, ctor: v.constructor?.name } };
  }
  if (v instanceof Date || ArrayBuffer.isView(v) || v instanceof ArrayBuffer) return v;
  if (v !== null && typeof v === "object") {
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = encode(x, seen + 1);
    return o;
  }
  return v;
}

function decode(v) {
  if (Array.isArray(v)) return v.map(decode);
  if (v instanceof Map) return new Map([...v].map(([k, x]) => [decode(k), decode(x)]));
  if (v instanceof Set) return new Set([...v].map(decode));
  if (v instanceof Date || ArrayBuffer.isView(v) || v instanceof ArrayBuffer || v instanceof Error) return v;
  if (v !== null && typeof v === "object") {
    if (typeof v.$pid === "string") return Pid.parse(v.$pid);
    if (v.$newRef === true) return makeRef();
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = decode(x);
    return o;
  }
  return v;
}

function reason(r) {
  if (r !== null && typeof r === "object" && typeof r.crash === "string") return { crash: new Error(r.crash) };
  return decode(r);
}

/** A process that records every message; a message with a replyTo pid is echoed back as { echo: msg, by }. */
function collector({ trap = false } = {}) {
  return async (ctx) => {
    if (trap) ctx.trapExit(true);
    const rec = [];
    const at = [];
    records.set(String(ctx.self), rec);
    times.set(String(ctx.self), at);
    for (;;) {
      const msg = await ctx.receive();
      if (msg !== null && typeof msg === "object" && msg[CTL]) {
        const r = msg[CTL](ctx);
        if (r === "stop") return;
        continue;
      }
      rec.push(encode(msg));
      at.push(Date.now());
      if (msg !== null && typeof msg === "object" && msg.replyTo instanceof Pid) send(msg.replyTo, { echo: msg, by: ctx.self });
    }
  };
}

/** A gen_server that answers each call at once with { echo, node, caller } (test/support/call-node.mjs has the full one). */
const server = {
  init: () => null,
  handleCall: (request, from, st) => answer({ echo: request, node: corral.nodeName(), caller: from.caller }, st),
  handleInfo: (_msg, st) => ok(st),
};

/** Runs fn as the process pid (inside it) and resolves with its result. */
function asProcess(pidStr, fn) {
  const pid = procs.get(pidStr);
  if (pid === undefined || !isAlive(pid)) throw Object.assign(new Error(`no live process ${pidStr} here`), { code: "TEST_NOPROC" });
  return new Promise((resolve, reject) => {
    send(pid, {
      [CTL]: (ctx) => {
        try {
          const out = fn(ctx);
          resolve(out === "stop" ? true : out);
          return out;
        } catch (err) {
          reject(err);
          return undefined;
        }
      },
    });
  });
}

const commands = {
  info: () => corral.clusterInfo(),
  nodes: () => corral.nodes(),
  nodeName: () => corral.nodeName(),
  spawn: ({ trap, name }) => {
    const pid = spawn(collector({ trap }), undefined, name ? { name } : undefined);
    procs.set(String(pid), pid);
    return String(pid);
  },
  server: () => {
    const pid = spawn(server, null);
    procs.set(String(pid), pid);
    return String(pid);
  },
  call: ({ to, request, ms }) => corral.call(Pid.parse(to), decode(request), ms),
  // A listener serving a bullet() route at path (an echo that names its node), for the sessions' cluster tests: its port.
  serveBullet: async ({ path, options }) => {
    const echo = {
      init: (req) => corral.upgrade(req, null),
      websocketHandle: (frame, st) => (frame.type === "text" ? corral.reply(corral.text(`${corral.nodeName()}:${frame.data}`), st) : ok(st)),
    };
    const routes = corral.compileRoutes([{ host: "_", paths: [[path, corral.bullet(echo, options)]] }]);
    return (await corral.startClear(`bullet-${process.pid}`, { port: 0 }, { dispatch: routes })).port;
  },
  startClusterPrimary: () => (corral.startClusterPrimary(), true),
  received: ({ pid }) => records.get(pid) ?? [],
  receivedAt: ({ pid }) => times.get(pid) ?? [],
  clear: ({ pid }) => {
    records.get(pid)?.splice(0);
    times.get(pid)?.splice(0);
    return true;
  },
  alive: ({ pid }) => isAlive(Pid.parse(pid)),
  send: ({ to, msg }) => {
    send(Pid.parse(to), decode(msg));
    return true;
  },
  sendAfter: ({ to, ms, msg }) => (corral.sendAfter(ms, Pid.parse(to), decode(msg)), true),
  /** From a fresh process: n messages { tag, seq } to `to`, seq counting from `from` (0), then it ends. */
  sendSeq: ({ to, n, tag, from = 0 }) =>
    new Promise((resolve) => {
      const dest = Pid.parse(to);
      spawn(async () => {
        for (let i = from; i < from + n; i++) send(dest, { tag, seq: i });
        resolve(true);
      });
    }),
  // With sync, the process then sends { sync } to the target: signals from one process to
  // another keep their order, so once the target has that message the monitor/link is in place.
  monitor: ({ pid, target, sync }) =>
    asProcess(pid, (ctx) => {
      const to = Pid.parse(target);
      const ref = ctx.monitor(to);
      refs.set(String(ref), ref);
      if (sync !== undefined) send(to, { sync });
      return ref;
    }),
  demonitor: ({ pid, ref }) => asProcess(pid, (ctx) => ctx.demonitor(refs.get(typeof ref === "string" ? ref : ref.$ref))),
  link: ({ pid, target, sync }) =>
    asProcess(pid, (ctx) => {
      const to = Pid.parse(target);
      ctx.link(to);
      if (sync !== undefined) send(to, { sync });
      return true;
    }),
  unlink: ({ pid, target }) => asProcess(pid, (ctx) => (ctx.unlink(Pid.parse(target)), true)),
  /** The process returns: it ends with reason "normal". */
  stop: ({ pid }) => asProcess(pid, () => "stop"),
  /** The process throws: it ends with { crash: Error(message) }. */
  crash: ({ pid, message }) =>
    new Promise((resolve) => {
      const p = procs.get(pid);
      send(p, {
        [CTL]: () => {
          resolve(true);
          throw new Error(message);
        },
      });
    }),
  exit: ({ target, reason: r }) => {
    exit(Pid.parse(target), reason(r));
    return true;
  },
  join: ({ group, pid }) => (join(group, Pid.parse(pid)), true),
  leave: ({ group, pid }) => leave(group, Pid.parse(pid)),
  members: ({ group }) => members(group).map(String),
  whichGroups: () => whichGroups(),
  broadcast: ({ group, msg, except }) => broadcast(group, decode(msg), except ? { except: Pid.parse(except) } : undefined),
  registerGlobal: ({ name, pid }) => corral.registerGlobal(name, Pid.parse(pid)).then(() => true),
  unregisterGlobal: ({ name }) => corral.unregisterGlobal(name).then(() => true),
  whereisGlobal: ({ name }) => corral.whereisGlobal(name).then((p) => (p === undefined ? null : String(p))),
  sendGlobal: ({ name, msg }) => corral.sendGlobal(name, decode(msg)).then(() => true),
  registeredGlobal: () => corral.registeredGlobal(),
  stopCluster: () => corral.stopCluster().then(() => true),
  /** Blocks this node's event loop for ms (a hung worker), answering only afterwards. */
  block: ({ ms }) => {
    const end = Date.now() + ms;
    while (Date.now() < end);
    return true;
  },
  quit: async () => {
    setTimeout(() => process.exit(0), 10);
    return true;
  },
};

function errorOf(err) {
  return { name: err?.name, code: err?.code, message: String(err?.message ?? err) };
}

process.on("message", async (m) => {
  if (m === null || typeof m !== "object" || typeof m.id !== "number") return;
  const fn = commands[m.cmd];
  try {
    if (fn === undefined) throw new Error(`unknown command ${m.cmd}`);
    const value = await fn(m);
    process.send({ id: m.id, ok: true, value: encode(value) });
  } catch (err) {
    process.send({ id: m.id, ok: false, error: errorOf(err) });
  }
});

if (opts.spawnFirst) spawn(async (ctx) => void (await ctx.receive()));
try {
  const info = await corral.startCluster(opts.cluster);
  process.send({ type: "ready", info: encode(info) });
} catch (err) {
  // With disconnectOnError the channel closes after the report, so the process ends by itself
  // unless something else (a reconnecting client, a timer) holds it open.
  process.send({ type: "startError", error: errorOf(err) }, () => {
    if (opts.disconnectOnError) process.disconnect();
  });
}
