// erlang:error(badarg) and friends: every error the runtime throws, with a stable code.
/** Every error the runtime throws carries a stable code, as ws does. */
export type ErrorCode =
  | "ERR_BADARG"
  | "ERR_NOT_IN_PROCESS"
  | "ERR_NOPROC"
  | "ERR_NAME_TAKEN"
  | "ERR_UNKNOWN_NAME"
  | "ERR_BAD_RESULT"
  | "ERR_BODY_TOO_LARGE"
  // call: the callee did not answer in time; it ended before answering ({exit, Reason} in Erlang);
  // its behaviour has no way to take a call.
  | "ERR_CALL_TIMEOUT"
  | "ERR_CALL_EXIT"
  | "ERR_CALL_UNHANDLED"
  // readBody: the connection closed, or the client was cut for sending below minBodyRate, before the whole body.
  | "ERR_BODY_INCOMPLETE"
  // Erlang's {error, already_started | already_present | not_found | running | restarting | Reason}
  // from supervisor calls.
  | "ERR_ALREADY_STARTED"
  | "ERR_ALREADY_PRESENT"
  | "ERR_NOT_FOUND"
  | "ERR_RUNNING"
  | "ERR_RESTARTING"
  | "ERR_START_FAILED"
  // startCluster: Redis cannot be reached; another live node has this node's name.
  | "ERR_CLUSTER_CONNECT"
  | "ERR_NODE_NAME_TAKEN";

export class CorralError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, opts?: { cause?: unknown }) {
    super(message, opts?.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "CorralError";
    this.code = code;
  }
}

export function badarg(message: string): CorralError {
  return new CorralError("ERR_BADARG", message);
}

/** A short, bounded rendering of a value for error messages and crash reports. */
export function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value.length > 80 ? value.slice(0, 80) + "…" : value);
  if (typeof value === "function") return `function ${value.name || "(anonymous)"}`;
  if (typeof value !== "object" || value === null) return String(value);
  try {
    const json = JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : v));
    if (json !== undefined) return json.length > 120 ? json.slice(0, 120) + "…" : json;
  } catch {
    // circular or otherwise not JSON: fall through to the constructor name
  }
  return `[object ${value.constructor?.name ?? "Object"}]`;
}
