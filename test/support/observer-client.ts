import WebSocket from "ws";

/** An observer page's socket, as a test drives it. */
export interface ObserverClient {
  readonly ws: WebSocket;
  /** Sends a request to the observer, as the page does. */
  ask(m: unknown): void;
  /** The next message that passes pred, within ms (the default given to openObserver). */
  next<T>(pred: (m: Record<string, unknown>) => boolean, ms?: number): Promise<T>;
}

/** Opens the observer's socket at base (host:port) + path, with an origin of its own host. */
export async function openObserver(base: string, path = "/observer", defaultMs = 4000): Promise<ObserverClient> {
  const ws = new WebSocket(`ws://${base}${path}`, { origin: `http://${base}` });
  const waiting: { pred: (m: Record<string, unknown>) => boolean; resolve: (m: unknown) => void }[] = [];
  ws.on("message", (data) => {
    const m = JSON.parse(String(data)) as Record<string, unknown>;
    const i = waiting.findIndex((w) => w.pred(m));
    if (i >= 0) waiting.splice(i, 1)[0]!.resolve(m);
  });
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  const next = <T>(pred: (m: Record<string, unknown>) => boolean, ms = defaultMs): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no such message from the observer in time")), ms);
      waiting.push({ pred, resolve: (m) => (clearTimeout(timer), resolve(m as T)) });
    });
  return { ws, ask: (m) => ws.send(JSON.stringify(m)), next };
}
