import { startSupervisor, type Pid } from "corral";
import { CHAT_ROOM } from "./chat.js";
import { presenceChild } from "./presence.js";

/** The demo's top supervisor, by its registered name. */
const DEMO_SUPERVISOR = "demo_sup";

/**
 * The demo's supervision tree, started permanent as an OTP release starts its application:
 * should it give up (its restart intensity reached), the node stops gracefully (WebSockets
 * closed with 1001, the cluster left) and exits 1, for `--workers`' primary or the service
 * manager to restart it, rather than serve on without it.
 */
export function startDemoSupervisor(): Pid {
  return startSupervisor({ strategy: "one_for_one", children: [presenceChild(CHAT_ROOM)] }, { name: DEMO_SUPERVISOR, permanent: true });
}
