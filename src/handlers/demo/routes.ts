import { fileURLToPath } from "node:url";
import { compileRoutes, staticDir, staticFile, type Dispatch } from "../../index.js";
import { broadcastHandler } from "./broadcast.js";
import { chatHandler } from "./chat.js";
import { echoHandler } from "./echo.js";
import { gameHandler } from "./game.js";
import { guideHandler } from "./guide.js";
import { statsHandler } from "./stats.js";

/** The demo's page and assets: priv/ at the package root (the same path from src/ and dist/). */
export const PRIV_DIR = fileURLToPath(new URL("../../../priv/", import.meta.url));

/** Every demo route; `listener` is the name the stats count connections of. */
export function demoDispatch(listener: string): Dispatch {
  return compileRoutes([
    {
      host: "_",
      paths: [
        ["/", staticFile(`${PRIV_DIR}index.html`, { charset: "utf-8" })],
        ["/websocket", guideHandler, { heartbeat: 5000 }],
        ["/echo", echoHandler],
        ["/chat", chatHandler],
        ["/broadcast", broadcastHandler],
        ["/game", gameHandler],
        ["/api/stats", statsHandler, { listener }],
        ["/static/[...]", staticDir(`${PRIV_DIR}static`, { charset: "utf-8" })],
      ],
    },
  ]);
}
