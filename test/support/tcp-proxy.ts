/**
 * A TCP proxy between a client and a listener on 127.0.0.1, standing in for the network.
 * It can:
 * - cut every connection (a reset, as when a phone changes networks);
 * - go silent on them, or on the one that carries a kind of request (a NAT that forgot the
 *   mapping: nothing arrives, nothing closes);
 * - delay a kind of request (a slow uplink);
 * - refuse new connections (the network is gone);
 * - answer 502 to a kind of session request (a proxy that breaks WebSockets, or buffers
 *   event streams).
 * It logs every request it sees, by the session transport it belongs to.
 */
import { createServer, connect, type Server, type Socket } from "node:net";

export type RequestKind = "websocket" | "eventsource" | "longpoll" | "post" | "other";

export interface ProxiedRequest {
  readonly kind: RequestKind;
  readonly target: string;
  /** "blocked": answered 502 here; "lost": sent on a line gone silent, so it never arrived. */
  readonly fate: "passed" | "blocked" | "lost";
}

interface Pair {
  readonly client: Socket;
  readonly upstream: Socket;
  silent: boolean;
}

/** A request line and its headers, wherever one starts in a chunk from the client (a body never looks like one here). */
const REQUEST = /(GET|POST|PUT|DELETE|HEAD|OPTIONS) (\S+) HTTP\/1\.1\r\n([\s\S]*?)\r\n\r\n/g;
const BAD_GATEWAY = "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: 7\r\nconnection: close\r\n\r\nblocked";

function kindOf(method: string, target: string, headers: string): RequestKind {
  if (method === "POST") return "post";
  if (/^upgrade:\s*websocket\s*$/im.test(headers)) return "websocket";
  const t = new URL(target, "http://x").searchParams.get("t");
  return t === "es" ? "eventsource" : t === "poll" ? "longpoll" : "other";
}

function kill(s: Socket): void {
  // A reset where the socket has one, as a network drop looks to the far end.
  if (!s.destroyed && s.readyState === "open") s.resetAndDestroy();
  else s.destroy();
}

export class TcpProxy {
  /** Every request seen, in order. */
  readonly requests: ProxiedRequest[] = [];
  /** Requests of these kinds get 502 and their connection closed, never reaching the listener. */
  readonly block = new Set<RequestKind>();
  /** A request of these kinds is lost, and its connection goes silent with it: the request is never answered, and never fails. */
  readonly swallow = new Set<RequestKind>();
  /** Requests of these kinds reach the listener this many ms late (a slow uplink); what follows them on their connection waits too. */
  readonly delay = new Map<RequestKind, number>();
  private readonly pairs = new Set<Pair>();
  private refusing = false;

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(targetPort: number): Promise<TcpProxy> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const proxy = new TcpProxy(server, (server.address() as { port: number }).port);
    server.on("connection", (client) => proxy.accept(client, targetPort));
    return proxy;
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** The connections open now (silent ones included). */
  get open(): number {
    return this.pairs.size;
  }

  /** Resets every connection, both ways; returns how many there were. */
  cut(): number {
    const n = this.pairs.size;
    for (const p of this.pairs) this.drop(p);
    return n;
  }

  /** Every connection open now stops carrying bytes either way, and its closes are not passed on; returns how many. */
  silence(): number {
    for (const p of this.pairs) p.silent = true;
    return this.pairs.size;
  }

  /** New connections are refused from now on (the listening socket closes), and every open one is cut. */
  async refuse(): Promise<void> {
    if (this.refusing) return;
    this.refusing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.cut();
    await closed;
  }

  stop(): Promise<void> {
    return this.refuse();
  }

  private accept(client: Socket, targetPort: number): void {
    const upstream = connect(targetPort, "127.0.0.1");
    const pair: Pair = { client, upstream, silent: false };
    this.pairs.add(pair);
    let waiting = 0;
    let chain = Promise.resolve();
    const forward = (chunk: Buffer) => {
      if (!pair.silent && !upstream.destroyed) upstream.write(chunk);
    };
    client.on("data", (chunk: Buffer) => {
      const text = chunk.toString("latin1");
      let blocked = false;
      let late = 0;
      for (const m of text.matchAll(REQUEST)) {
        const kind = kindOf(m[1]!, m[2]!, m[3]!);
        if (this.swallow.has(kind)) pair.silent = true;
        const refused = !pair.silent && this.block.has(kind);
        this.requests.push({ kind, target: m[2]!, fate: pair.silent ? "lost" : refused ? "blocked" : "passed" });
        blocked ||= refused;
        late = Math.max(late, this.delay.get(kind) ?? 0);
      }
      if (pair.silent) return;
      if (blocked) {
        this.pairs.delete(pair);
        upstream.destroy();
        client.end(BAD_GATEWAY);
      } else if (late === 0 && waiting === 0) {
        forward(chunk);
      } else {
        // Bytes keep their order: everything behind a late request waits for it.
        waiting++;
        chain = chain.then(() => new Promise((resolve) => setTimeout(resolve, late))).then(() => {
          waiting--;
          forward(chunk);
        });
      }
    });
    upstream.on("data", (chunk: Buffer) => {
      if (!pair.silent) client.write(chunk);
    });
    // A close on one side is passed on to the other, unless the line has gone silent.
    const closed = () => {
      if (!pair.silent) this.drop(pair);
    };
    client.on("close", closed);
    upstream.on("close", closed);
    client.on("error", () => {});
    upstream.on("error", () => {});
  }

  private drop(pair: Pair): void {
    this.pairs.delete(pair);
    kill(pair.client);
    kill(pair.upstream);
  }
}
