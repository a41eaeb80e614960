import WebSocket from "ws";
import { within } from "./dist.js";

/** A WebSocket client that keeps every message it receives. */
export interface Client {
  readonly ws: WebSocket;
  readonly messages: { data: Buffer; binary: boolean }[];
  readonly texts: () => string[];
  readonly closed: Promise<{ code: number; reason: string }>;
  /** Resolves once some text message satisfies pred, within the wait the client was opened with. */
  readonly waitFor: (pred: (text: string) => boolean, what: string) => Promise<string>;
}

/** Opens a WebSocket to url (within waitMs) and keeps what it receives. */
export async function connectClient(url: string, waitMs: number): Promise<Client> {
  const ws = new WebSocket(url);
  const messages: { data: Buffer; binary: boolean }[] = [];
  const waiters: (() => void)[] = [];
  ws.on("message", (data, binary) => {
    messages.push({ data: Buffer.isBuffer(data) ? data : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]), binary });
    for (const w of waiters.splice(0)) w();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  await within(
    new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    }),
    waitMs,
    `the WebSocket ${url} to open`,
  );
  const texts = (): string[] => messages.filter((m) => !m.binary).map((m) => m.data.toString("utf8"));
  const waitFor = (pred: (text: string) => boolean, what: string): Promise<string> =>
    within(
      new Promise<string>((resolve) => {
        const check = (): void => {
          const hit = texts().find(pred);
          if (hit !== undefined) resolve(hit);
          else waiters.push(check);
        };
        check();
      }),
      waitMs,
      what,
    );
  return { ws, messages, texts, closed, waitFor };
}

/** The ws:// URL of a path on an http:// server. */
export const wsUrl = (httpUrl: string, pathAndQuery: string): string => new URL(pathAndQuery, httpUrl.replace(/^http/, "ws")).href;
