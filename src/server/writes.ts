// Cowboy's one write per callback (its commands become one iolist), across the frames of a turn.

/**
 * Write coalescing: the connection corks its port when more than one frame may come from
 * it in a turn (a callback with several frames, more messages waiting) and flushes it when
 * its mailbox is empty, so they leave in one syscall; raw ws makes one write per send.
 * Corked ports are also flushed once after the turn (a nextTick queued from the scheduler's
 * microtask runs when it is done), in case a process yields with mail left.
 */
const corked: Array<{ flush(): void }> = [];

/** Flushes `port` when the current turn is done, if it has not flushed itself before. */
export function flushAfterTurn(port: { flush(): void }): void {
  corked.push(port);
  if (corked.length === 1) process.nextTick(flushCorked);
}

function flushCorked(): void {
  for (let i = 0; i < corked.length; i++) corked[i]!.flush();
  corked.length = 0;
}
