import { clusterInfo, listenerInfo, processInfo, processes, type HttpHandler } from "corral";

const started = Date.now();

export interface StatsOptions {
  /** The listener whose WebSocket connections are counted. */
  readonly listener: string;
}

/** GET /api/stats: what the runtime holds right now, as JSON; in a cluster also this node's name and the other nodes up. */
export const statsHandler: HttpHandler<null, StatsOptions> = {
  init(req, opts) {
    let hibernated = 0;
    let mailbox = 0;
    const all = processes();
    for (const pid of all) {
      const info = processInfo(pid);
      if (info === undefined) continue;
      if (info.hibernated) hibernated++;
      mailbox += info.messageQueueLen;
    }
    const cluster = clusterInfo();
    const stats = {
      processes: all.length,
      connections: listenerInfo(opts.listener)?.connections ?? 0,
      hibernated,
      mailbox,
      uptime: Math.round((Date.now() - started) / 1000),
      ...(cluster === undefined ? {} : { node: cluster.node, nodes: cluster.nodes.sort() }),
    };
    req.reply(200, { "content-type": "application/json", "cache-control": "no-store" }, JSON.stringify(stats));
    return { type: "ok", req, state: null };
  },
};
