// A de-duplicating key work queue (STYLE rule 3: queue keys, not events).
//
// - A key added while it is waiting is merged into the waiting entry.
// - A key added while it is being processed is processed once more after the current pass ends, never
//   concurrently with itself (the handler always reads the newest state from the cache, so one extra pass
//   covers any number of events that arrived meanwhile).
// - A failed pass is retried with per-key exponential backoff; a successful pass clears the backoff.
// - `addAfter` schedules a key (e.g. at the next rotation time); the earliest pending schedule wins.
// - At most `concurrency` keys are processed at once; `shutdown()` stops taking work and waits for passes in
//   flight.
import type { Logger } from '../log.js';
import { realClock, type Clock, type TimerHandle } from './clock.js';
import type { RuntimeMetrics } from './metrics.js';

/** What a handler returns: nothing (done), or a request to run the key again after a delay. */
export type HandlerResult = void | { requeueAfterMs?: number };

export type KeyHandler = (key: string) => Promise<HandlerResult>;

export interface WorkQueueOptions {
  /** Used in logs and metric labels (the controller name). */
  name: string;
  handler: KeyHandler;
  /** Keys processed at once (default 1). */
  concurrency?: number;
  /** First retry delay after a failure (default 200 ms); doubles per consecutive failure. */
  baseDelayMs?: number;
  /** Retry delay cap (default 60 s). */
  maxDelayMs?: number;
  clock?: Clock;
  logger?: Logger;
  metrics?: RuntimeMetrics;
}

interface Scheduled {
  at: number;
  timer: TimerHandle;
}

export class WorkQueue {
  readonly name: string;
  private readonly handler: KeyHandler;
  private readonly concurrency: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly clock: Clock;
  private readonly log: Logger | undefined;
  private readonly metrics: RuntimeMetrics | undefined;

  /** Keys ready to run, in arrival order (a Set keeps insertion order and merges duplicates). */
  private readonly ready = new Set<string>();
  private readonly processing = new Set<string>();
  /** Keys added while processing: run again once the current pass ends. */
  private readonly again = new Set<string>();
  private readonly scheduled = new Map<string, Scheduled>();
  private readonly failures = new Map<string, number>();

  private started = false;
  private shuttingDown = false;
  private idleWaiters: (() => void)[] = [];

  constructor(opts: WorkQueueOptions) {
    this.name = opts.name;
    this.handler = opts.handler;
    this.concurrency = Math.max(1, opts.concurrency ?? 1);
    this.baseDelayMs = opts.baseDelayMs ?? 200;
    this.maxDelayMs = opts.maxDelayMs ?? 60_000;
    this.clock = opts.clock ?? realClock;
    this.log = opts.logger;
    this.metrics = opts.metrics;
  }

  /** Begin processing. Keys added before start() wait (rule 4: nothing runs before the caches are synced). */
  start(): void {
    if (this.shuttingDown) throw new Error(`work queue ${this.name}: start after shutdown`);
    this.started = true;
    this.pump();
  }

  add(key: string): void {
    if (this.shuttingDown) return;
    this.metrics?.queueAdds.inc({ controller: this.name });
    if (this.processing.has(key)) {
      this.again.add(key);
      return;
    }
    if (this.ready.has(key)) return;
    this.ready.add(key);
    this.updateDepth();
    this.pump();
  }

  /** Add `key` after `ms`. If the key is already scheduled earlier, the earlier time is kept. */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) return this.add(key);
    const at = this.clock.now() + ms;
    const existing = this.scheduled.get(key);
    if (existing && existing.at <= at) return;
    if (existing) this.clock.clearTimeout(existing.timer);
    const timer = this.clock.setTimeout(() => {
      this.scheduled.delete(key);
      this.add(key);
    }, ms);
    this.scheduled.set(key, { at, timer });
  }

  /** Add `key` after its backoff delay, and grow the delay for the next failure. */
  addRateLimited(key: string): void {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    this.metrics?.queueRetries.inc({ controller: this.name });
    this.addAfter(key, this.backoffDelay(n));
  }

  /** Delay that the n-th consecutive failure (0-based) waits. */
  backoffDelay(n: number): number {
    return Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** Math.min(n, 40));
  }

  /** Clear the backoff of `key` (done automatically after a successful pass). */
  forget(key: string): void {
    this.failures.delete(key);
  }

  /** Consecutive failures recorded for `key`. */
  numRequeues(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** Keys waiting to run now (not in flight, not scheduled for later). */
  len(): number {
    return this.ready.size;
  }

  inFlight(): number {
    return this.processing.size;
  }

  isScheduled(key: string): boolean {
    return this.scheduled.has(key);
  }

  isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  /**
   * Stop taking work: waiting and scheduled keys are dropped, passes in flight finish. Resolves when no pass
   * is in flight. Idempotent.
   */
  async shutdown(): Promise<void> {
    this.shuttingDown = true;
    this.ready.clear();
    this.again.clear();
    for (const s of this.scheduled.values()) this.clock.clearTimeout(s.timer);
    this.scheduled.clear();
    this.updateDepth();
    if (this.processing.size === 0) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    while (this.started && !this.shuttingDown && this.processing.size < this.concurrency) {
      const key = this.ready.values().next().value;
      if (key === undefined) break;
      this.ready.delete(key);
      this.processing.add(key);
      this.updateDepth();
      void this.run(key);
    }
  }

  private async run(key: string): Promise<void> {
    const start = performance.now();
    let result: HandlerResult = undefined;
    let failed = false;
    try {
      result = await this.handler(key);
    } catch (err) {
      failed = true;
      // Logged here, once, because this is where the error is handled (by retrying).
      this.log?.error(
        { controller: this.name, key, err, retries: this.numRequeues(key) },
        'reconcile failed; retrying with backoff',
      );
    }
    const seconds = (performance.now() - start) / 1000;
    this.metrics?.reconcileDuration.observe({ controller: this.name }, seconds);
    this.processing.delete(key);
    if (failed) {
      this.metrics?.reconcileTotal.inc({ controller: this.name, result: 'error' });
      this.metrics?.reconcileErrors.inc({ controller: this.name });
      if (!this.shuttingDown) this.addRateLimited(key);
    } else {
      this.forget(key);
      const after = result?.requeueAfterMs;
      this.metrics?.reconcileTotal.inc({
        controller: this.name,
        result: after !== undefined ? 'requeue' : 'success',
      });
      if (after !== undefined && !this.shuttingDown) this.addAfter(key, after);
    }
    if (this.again.delete(key) && !this.shuttingDown) {
      this.ready.add(key);
      this.updateDepth();
    }
    if (this.shuttingDown && this.processing.size === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
    this.pump();
  }

  private updateDepth(): void {
    this.metrics?.queueDepth.set({ controller: this.name }, this.ready.size);
  }
}
