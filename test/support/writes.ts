import { Socket } from "node:net";

/**
 * Runs `fn` while counting the socket writes made in this process by every socket but
 * `client`'s: one entry per write, the number of chunks it carried (a writev has several).
 * A client in the same process reads whatever has arrived at once, so its reads cannot show
 * how many writes the server made; this counts them where they are made.
 */
export async function serverWrites(client: Socket, fn: () => Promise<void>): Promise<number[]> {
  const proto = Socket.prototype as unknown as Record<"_write" | "_writev", (this: Socket, ...args: unknown[]) => void>;
  const { _write: write, _writev: writev } = proto;
  const writes: number[] = [];
  proto._write = function (this: Socket, ...args: unknown[]) {
    if (this !== client) writes.push(1);
    write.apply(this, args);
  };
  proto._writev = function (this: Socket, ...args: unknown[]) {
    if (this !== client) writes.push((args[0] as unknown[]).length);
    writev.apply(this, args);
  };
  try {
    await fn();
  } finally {
    proto._write = write;
    proto._writev = writev;
  }
  return writes;
}
