// Bounded concurrency and cooperative CPU work, for loops over many objects (a 1,000-node overlay's Secrets,
// its 500k pairs): long work gives the event loop back, so lease renewals, watches and /healthz run between.

/** Resolves in a later turn of the event loop (after pending I/O callbacks). */
export const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Runs fn over items with at most `limit` at a time. On the first failure no new item starts; the ones under
 * way finish, then the failure is thrown.
 */
export async function forEachLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (!failure && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.err;
}

/**
 * Runs synchronous functions one at a time, each in a turn of the event loop of its own: what concurrent
 * requests bring back together is not processed in one go, so timers, watches and lease renewals run between.
 */
export class Turns {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => T): Promise<T> {
    const result = this.tail.then(yieldToEventLoop).then(fn);
    this.tail = result.catch(() => undefined);
    return result;
  }

  /**
   * Runs a generator to its end, each stretch between two `yield`s in a turn of its own (work queued
   * meanwhile by other callers runs in between); resolves to what it returns.
   */
  async steps<R>(gen: Generator<unknown, R, undefined>): Promise<R> {
    for (;;) {
      const next = await this.run(() => gen.next());
      if (next.done) return next.value;
    }
  }
}
