// The types of corral/client as a user meets them (checked by tsc, not run): ws's WebSocket fits the option, and misuse does not compile.
import { WebSocket } from "ws";
import { connect, type CloseInfo, type Connection, type ConnectionState, type TransportName } from "corral/client";

const conn: Connection = connect("ws://127.0.0.1:8080/live", {
  WebSocket,
  transports: ["websocket", "longpoll"],
  heartbeatMs: 25_000,
  backoff: { initialMs: 50, maxMs: 5000 },
  onopen() {},
  onmessage(data) {
    const both: string | Uint8Array = data;
    if (typeof data !== "string") data.byteLength satisfies number;
    void both;
  },
  ondisconnect() {},
  onreconnect() {},
  onclose(info) {
    info.code satisfies number;
    info.reason satisfies string;
  },
});
connect(new URL("https://example.com/live"));
conn.send("text");
conn.send(new Uint8Array(4));
conn.send(Buffer.from("a Buffer is a Uint8Array"));
conn.close();
conn.close(4000, "done");
const state: ConnectionState = conn.state;
const transport: TransportName | null = conn.transport;
void state;
void transport;
const info: CloseInfo = { code: 4404, reason: "no such session" };
void info;

// @ts-expect-error -- not a transport
connect("/live", { transports: ["sse"] });
// @ts-expect-error -- the options are known
connect("/live", { reconnect: true });
// @ts-expect-error -- a string is not a WebSocket constructor
connect("/live", { WebSocket: "ws" });
// @ts-expect-error -- onmessage gets a string or a Uint8Array, not only a string
connect("/live", { onmessage: (data: string) => data.length });
// @ts-expect-error -- send takes text or bytes
conn.send({ json: true });
// @ts-expect-error -- state is read-only
conn.state = "open";
// @ts-expect-error -- not a state
if (conn.state === "closing") void 0;
// @ts-expect-error -- transport may be null
conn.transport.length;
