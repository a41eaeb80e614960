// @ts-check
/**
 * The baseline: a minimal server on `ws` alone doing the same work as corral-server.js,
 * written the way one would without corral:
 *
 *   /echo   ws.on("message", (d, isBinary) => ws.send(d, { binary: isBinary }))
 *   /idle   nothing per connection; the app reaches its sockets through wss.clients
 *           (ws's default clientTracking), and pushes by looping over them
 *   /push   one setTimeout chain per connection, sending "tick" each second
 *
 * Started by bench/ws/rig.js with `node --expose-gc`; driven over IPC (bench/ws/control.js).
 */
import { WebSocketServer } from "ws";
import { commonCommands, ready, serve } from "./control.js";

const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" });

wss.on("connection", (ws, req) => {
  switch (req.url) {
    case "/echo":
      ws.on("message", (d, isBinary) => ws.send(/** @type {Buffer} */ (d), { binary: isBinary }));
      return;
    case "/push":
    case "/push-live": {
      /** @type {NodeJS.Timeout} */
      let timer;
      const tick = () => {
        ws.send("tick");
        timer = setTimeout(tick, 1000);
      };
      timer = setTimeout(tick, 1000);
      ws.on("close", () => clearTimeout(timer));
      return;
    }
    case "/idle":
      return;
    default:
      ws.close(1008, "no such path");
  }
});

await new Promise((resolve, reject) => {
  wss.once("listening", resolve);
  wss.once("error", reject);
});
const address = wss.address();
if (typeof address !== "object" || address === null) throw new Error("raw server: no address");

serve({
  ...commonCommands(),
  conns: () => wss.clients.size,
  /** From app code: loop over the sockets (there are no groups: the same loop twice). */
  sendAll: (/** @type {{ via: "each" | "group", msg: string }} */ a) => {
    let n = 0;
    const t0 = process.hrtime.bigint();
    for (const ws of wss.clients) {
      ws.send(a.msg);
      n++;
    }
    const t1 = process.hrtime.bigint();
    return { t0, t1, n };
  },
  join: () => wss.clients.size,
});
ready({ port: address.port });
