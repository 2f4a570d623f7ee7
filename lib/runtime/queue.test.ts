import { FakeClock, flushMicrotasks } from './testing/clock.js';
import { RuntimeMetrics } from './metrics.js';
import { WorkQueue, type HandlerResult } from './queue.js';

/** A handler whose passes the test finishes by hand, recording what ran when. */
class ControlledHandler {
  readonly started: string[] = [];
  readonly active = new Map<string, number>();
  maxConcurrent = 0;
  maxSameKey = 0;
  private pending: { key: string; resolve: (r: HandlerResult) => void; reject: (e: Error) => void }[] = [];

  readonly handler = (key: string): Promise<HandlerResult> => {
    this.started.push(key);
    const n = (this.active.get(key) ?? 0) + 1;
    this.active.set(key, n);
    this.maxSameKey = Math.max(this.maxSameKey, n);
    this.maxConcurrent = Math.max(this.maxConcurrent, this.activeCount());
    return new Promise<HandlerResult>((resolve, reject) => {
      this.pending.push({ key, resolve, reject });
    }).finally(() => this.active.set(key, (this.active.get(key) ?? 1) - 1));
  };

  activeCount(): number {
    return [...this.active.values()].reduce((a, b) => a + b, 0);
  }

  inFlightKeys(): string[] {
    return this.pending.map((p) => p.key);
  }

  async finish(key: string, outcome: HandlerResult | Error = undefined): Promise<void> {
    const i = this.pending.findIndex((p) => p.key === key);
    if (i < 0) throw new Error(`no pass in flight for ${key}`);
    const [p] = this.pending.splice(i, 1);
    if (outcome instanceof Error) p!.reject(outcome);
    else p!.resolve(outcome);
    await flushMicrotasks();
  }
}

function newQueue(h: ControlledHandler, clock: FakeClock, concurrency = 1): WorkQueue {
  return new WorkQueue({
    name: 'test',
    handler: h.handler,
    concurrency,
    clock,
    baseDelayMs: 200,
    maxDelayMs: 60_000,
  });
}

describe('WorkQueue', () => {
  test('nothing runs before start(); keys added meanwhile are merged', async () => {
    const clock = new FakeClock();
    const h = new ControlledHandler();
    const q = newQueue(h, clock);
    q.add('a');
    q.add('a');
    q.add('b');
    await flushMicrotasks();
    expect(h.started).toEqual([]);
    expect(q.len()).toBe(2);
    q.start();
    await flushMicrotasks();
    expect(h.started).toEqual(['a']);
    await h.finish('a');
    expect(h.started).toEqual(['a', 'b']);
    await h.finish('b');
    expect(q.len()).toBe(0);
  });

  test('a key added while queued is processed once', async () => {
    const h = new ControlledHandler();
    const q = newQueue(h, new FakeClock());
    q.start();
    q.add('busy');
    q.add('x');
    q.add('x');
    q.add('x');
    await flushMicrotasks();
    await h.finish('busy');
    await h.finish('x');
    expect(h.started).toEqual(['busy', 'x']);
    expect(q.len()).toBe(0);
  });

  test('a key added while processing runs once more afterwards, never concurrently with itself', async () => {
    const h = new ControlledHandler();
    const q = newQueue(h, new FakeClock(), 4);
    q.start();
    q.add('k');
    await flushMicrotasks();
    expect(h.inFlightKeys()).toEqual(['k']);
    q.add('k');
    q.add('k');
    await flushMicrotasks();
    // Four workers are free, but the same key must not run twice at once.
    expect(h.inFlightKeys()).toEqual(['k']);
    await h.finish('k');
    expect(h.inFlightKeys()).toEqual(['k']);
    await h.finish('k');
    expect(h.started).toEqual(['k', 'k']);
    expect(h.maxSameKey).toBe(1);
    expect(q.inFlight()).toBe(0);
  });

  test('concurrency is bounded', async () => {
    const h = new ControlledHandler();
    const q = newQueue(h, new FakeClock(), 3);
    q.start();
    for (let i = 0; i < 10; i++) q.add(`k${i}`);
    await flushMicrotasks();
    expect(h.activeCount()).toBe(3);
    expect(q.len()).toBe(7);
    for (let i = 0; i < 10; i++) await h.finish(`k${i}`);
    expect(h.started).toHaveLength(10);
    expect(h.maxConcurrent).toBe(3);
  });

  test('failures back off exponentially up to the cap; success resets', async () => {
    const clock = new FakeClock();
    const h = new ControlledHandler();
    const q = newQueue(h, clock);
    q.start();
    expect([0, 1, 2, 3, 10, 20].map((n) => q.backoffDelay(n))).toEqual([200, 400, 800, 1600, 60_000, 60_000]);

    q.add('k');
    await flushMicrotasks();
    const expectedDelays = [200, 400, 800, 1600];
    for (const delay of expectedDelays) {
      await h.finish('k', new Error('boom'));
      expect(q.isScheduled('k')).toBe(true);
      await clock.advance(delay - 1);
      expect(h.inFlightKeys()).toEqual([]);
      await clock.advance(1);
      expect(h.inFlightKeys()).toEqual(['k']);
    }
    expect(q.numRequeues('k')).toBe(4);
    await h.finish('k');
    expect(q.numRequeues('k')).toBe(0);
    // After a success the next failure starts again from the base delay.
    q.add('k');
    await flushMicrotasks();
    await h.finish('k', new Error('boom'));
    await clock.advance(200);
    expect(h.inFlightKeys()).toEqual(['k']);
    await h.finish('k');
  });

  test('forget() clears the backoff of a key', () => {
    const q = newQueue(new ControlledHandler(), new FakeClock());
    q.addRateLimited('k');
    q.addRateLimited('k');
    expect(q.numRequeues('k')).toBe(2);
    q.forget('k');
    expect(q.numRequeues('k')).toBe(0);
  });

  test('addAfter runs the key at the scheduled time; the earliest schedule wins', async () => {
    const clock = new FakeClock();
    const h = new ControlledHandler();
    const q = newQueue(h, clock);
    q.start();
    q.addAfter('r', 5_000);
    q.addAfter('r', 9_000); // later: ignored
    q.addAfter('r', 3_000); // earlier: replaces
    await clock.advance(2_999);
    expect(h.started).toEqual([]);
    await clock.advance(1);
    expect(h.started).toEqual(['r']);
    await h.finish('r');
    await clock.advance(10_000);
    expect(h.started).toEqual(['r']);
  });

  test('a handler can ask to be requeued after a delay', async () => {
    const clock = new FakeClock();
    const h = new ControlledHandler();
    const q = newQueue(h, clock);
    q.start();
    q.add('k');
    await flushMicrotasks();
    await h.finish('k', { requeueAfterMs: 1_000 });
    expect(q.numRequeues('k')).toBe(0);
    await clock.advance(999);
    expect(h.started).toEqual(['k']);
    await clock.advance(1);
    expect(h.started).toEqual(['k', 'k']);
    await h.finish('k');
  });

  test('shutdown waits for passes in flight and drops waiting and scheduled keys', async () => {
    const clock = new FakeClock();
    const h = new ControlledHandler();
    const q = newQueue(h, clock, 2);
    q.start();
    q.add('a');
    q.add('b');
    q.add('c');
    q.addAfter('d', 100);
    await flushMicrotasks();
    let done = false;
    const stopped = q.shutdown().then(() => {
      done = true;
    });
    await flushMicrotasks();
    expect(done).toBe(false);
    q.add('e'); // ignored after shutdown
    await h.finish('a');
    expect(done).toBe(false);
    await h.finish('b', new Error('late failure is not retried'));
    await stopped;
    expect(done).toBe(true);
    await clock.advance(10_000);
    expect(h.started).toEqual(['a', 'b']);
    expect(clock.pending()).toBe(0);
  });

  test('shutdown with nothing in flight resolves at once', async () => {
    const q = newQueue(new ControlledHandler(), new FakeClock());
    q.start();
    await expect(q.shutdown()).resolves.toBeUndefined();
  });

  test('records depth, outcomes and retries in metrics', async () => {
    const metrics = new RuntimeMetrics(undefined, { defaultMetrics: false });
    const clock = new FakeClock();
    const h = new ControlledHandler();
    const q = new WorkQueue({ name: 'm', handler: h.handler, clock, metrics });
    q.add('a');
    q.add('b');
    expect((await metrics.queueDepth.get()).values[0]?.value).toBe(2);
    q.start();
    await flushMicrotasks();
    await h.finish('a', new Error('x'));
    await h.finish('b');
    const totals = (await metrics.reconcileTotal.get()).values.map((v) => [v.labels.result, v.value]);
    expect(totals).toEqual(
      expect.arrayContaining([
        ['error', 1],
        ['success', 1],
      ]),
    );
    expect((await metrics.queueRetries.get()).values[0]?.value).toBe(1);
    await q.shutdown();
  });
});
