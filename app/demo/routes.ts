import { fileURLToPath } from "node:url";
import { bullet, compileRoutes, staticDir, staticFile, type Dispatch, type HttpHandler } from "corral";
import { broadcastHandler } from "./broadcast.js";
import { chatHandler } from "./chat.js";
import { echoHandler } from "./echo.js";
import { gameHandler } from "./game.js";
import { guideHandler } from "./guide.js";
import { tellingPid } from "./session.js";
import { statsHandler } from "./stats.js";

/** The demo's page and assets: priv/ at the package root, two folders up from app/demo/ and three from its build, dist/app/demo/. */
export const PRIV_DIR = fileURLToPath(new URL(import.meta.url.endsWith(".ts") ? "../../priv/" : "../../../priv/", import.meta.url));

/**
 * The page's Content-Security-Policy: scripts, styles and sockets from its own origin only, no
 * inline code, no plugins, no framing. CSP Level 3's 'self' covers the same origin's ws: and wss:.
 */
export const PAGE_CSP = [
  "default-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

/** The headers every page and asset goes out with. */
const PAGE_HEADERS = { "content-security-policy": PAGE_CSP, "x-content-type-options": "nosniff", "referrer-policy": "no-referrer" };
const ASSET_HEADERS = { "x-content-type-options": "nosniff" };

/** A handler that sets these response headers, then lets handler answer. */
function withHeaders<S, O>(handler: HttpHandler<S, O>, headers: Readonly<Record<string, string>>): HttpHandler<S, O> {
  return {
    init(req, opts) {
      for (const [name, value] of Object.entries(headers)) req.setRespHeader(name, value);
      return handler.init(req, opts);
    },
  };
}

/** The demo's page, with its security headers. */
export const demoPage = (): HttpHandler => withHeaders(staticFile(`${PRIV_DIR}index.html`, { charset: "utf-8" }), PAGE_HEADERS);

/** The page's scripts and styles, under a route ending in [...]. */
export const demoAssets = (): HttpHandler => withHeaders(staticDir(`${PRIV_DIR}static`, { charset: "utf-8" }), ASSET_HEADERS);

/** corral/client, the session client the page imports, as the package ships it (found through the package's own export, as an installed app would). */
export const demoClient = (): HttpHandler => withHeaders(staticFile(fileURLToPath(import.meta.resolve("corral/client")), { charset: "utf-8" }), ASSET_HEADERS);

export interface DemoOptions {
  /** The guide's push interval, in ms (its route opts, [{heartbeat, 5000}] in Cowboy's guide). Default 5000. */
  readonly guideHeartbeat?: number;
  /** The sessions' heartbeat (bullet's heartbeatMs): an idle long-poll is answered after this long. Default 25000. */
  readonly sessionHeartbeatMs?: number;
}

/**
 * Every demo route; `listener` is the name the stats count connections of. The guide, the
 * chat and the game are each served twice, by the same handler: as a plain WebSocket
 * (/websocket, /chat, /game) and as a bullet() session (/live/...), which the page uses.
 */
export function demoDispatch(listener: string, options: DemoOptions = {}): Dispatch {
  const heartbeat = options.guideHeartbeat ?? 5000;
  // A client that drops and comes back within the window finds its session, nothing lost.
  const session = { resumeWindowMs: 30_000, heartbeatMs: options.sessionHeartbeatMs };
  return compileRoutes([
    {
      host: "_",
      paths: [
        ["/", demoPage()],
        ["/websocket", guideHandler, { heartbeat }],
        ["/echo", echoHandler],
        ["/chat", chatHandler],
        ["/broadcast", broadcastHandler],
        ["/game", gameHandler],
        ["/live/guide", bullet(tellingPid(guideHandler), session), { heartbeat }],
        ["/live/chat", bullet(tellingPid(chatHandler), session)],
        ["/live/game", bullet(tellingPid(gameHandler), session)],
        ["/api/stats", statsHandler, { listener }],
        ["/static/corral-client.js", demoClient()],
        ["/static/[...]", demoAssets()],
      ],
    },
  ]);
}
