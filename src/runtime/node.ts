// erlang:node/0: this node's name, carried by every pid and ref.
import { badarg } from "./errors.js";

/**
 * This node's name: every pid and ref carries it. A cluster transport (later) gives each
 * node a unique one; a single process keeps Erlang's default.
 */
let name = "nonode@nohost";
let frozen = false;

export function nodeName(): string {
  return name;
}

/** Names this node; only before the first pid exists, since pids carry the name. */
export function setNodeName(newName: string): void {
  if (typeof newName !== "string" || !/^[A-Za-z0-9_@\-.]+$/.test(newName) || newName.startsWith(".")) {
    throw badarg(`setNodeName: invalid node name ${JSON.stringify(newName)}`);
  }
  if (frozen && newName !== name) throw badarg("setNodeName: pids already exist on this node");
  name = newName;
}

/** Called when the first pid or ref is made. */
export function freezeNodeName(): void {
  frozen = true;
}
