import WebSocket from "ws";
import { connect, type CloseInfo, type Connection, type ConnectOptions } from "corral/client";

/** A corral/client connection that records what it is told, in order. */
export interface Recorder {
  conn: Connection;
  messages: (string | Uint8Array)[];
  events: string[];
  closes: CloseInfo[];
}

/** Connects with ws's WebSocket; reconnects back off between 0 and 20-100 ms unless options say otherwise. */
export function recordedClient(url: string, options: ConnectOptions = {}): Recorder {
  const r: Omit<Recorder, "conn"> & { conn?: Connection } = { messages: [], events: [], closes: [] };
  r.conn = connect(url, {
    WebSocket,
    backoff: { initialMs: 20, maxMs: 100 },
    ...options,
    onopen: () => r.events.push("open"),
    onmessage: (data) => r.messages.push(data),
    ondisconnect: () => r.events.push("disconnect"),
    onreconnect: () => r.events.push("reconnect"),
    onclose: (info) => {
      r.events.push("close");
      r.closes.push(info);
    },
  });
  return r as Recorder;
}
