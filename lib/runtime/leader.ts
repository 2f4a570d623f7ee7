// Leader election with a coordination.k8s.io/v1 Lease, following client-go's leaderelection:
// - a candidate takes the Lease when it is free (empty holder) or expired, and renews it every retryPeriod;
// - expiry is judged by this process's own clock from when it last saw the Lease record change (not by
//   comparing renewTime with our clock), so clock skew between nodes cannot make two leaders;
// - writes use the Lease's resourceVersion (optimistic concurrency), so two candidates cannot both win;
// - a leader that has not renewed successfully within renewDeadline (< leaseDuration) stops leading at once,
//   from a timer that does not wait for a hung request, and a leader that finds another holder in the Lease
//   stops at once: a deposed leader must stop writing before anyone else may start;
// - on shutdown the leader releases the Lease (empty holder, 1 s duration) so a successor takes over fast.
import { CoordinationV1Api, V1MicroTime, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import type { Logger } from '../log.js';
import { describeError, isConflict, isNotFound } from '../kube.js';
import { realClock, sleep, type Clock, type TimerHandle } from './clock.js';
import type { RuntimeMetrics } from './metrics.js';

export interface LeaseRecord {
  holderIdentity: string;
  leaseDurationSeconds: number;
  /** Milliseconds since the epoch. */
  acquireTime?: number;
  renewTime?: number;
  leaseTransitions: number;
}

export interface LeaseState {
  record: LeaseRecord;
  resourceVersion: string;
}

/** The Lease operations the elector needs; unit tests supply an in-memory fake. */
export interface LeaseClient {
  /** undefined when the Lease does not exist. */
  get(namespace: string, name: string): Promise<LeaseState | undefined>;
  /** Fails with 409 when it already exists. */
  create(namespace: string, name: string, record: LeaseRecord): Promise<LeaseState>;
  /** Fails with 409 when resourceVersion is not the current one. */
  update(namespace: string, name: string, record: LeaseRecord, resourceVersion: string): Promise<LeaseState>;
}

export interface LeaderElectorOptions {
  namespace: string;
  name: string;
  /** Unique per process (e.g. pod name + random suffix). */
  identity: string;
  client: LeaseClient;
  /** How long others wait before taking over a Lease that is not renewed (default 15 s). */
  leaseDurationMs?: number;
  /** A leader that cannot renew for this long stops leading (default 2/3 of the lease duration). */
  renewDeadlineMs?: number;
  /** Interval between renewals and acquisition attempts (default 1/3 of the lease duration). */
  retryPeriodMs?: number;
  /** Random extra wait between acquisition attempts, as a fraction of retryPeriod (default 0.2). */
  jitter?: number;
  clock?: Clock;
  logger?: Logger;
  metrics?: RuntimeMetrics;
  /** Called when this process becomes leader; `signal` aborts when it stops leading. */
  onStartedLeading?: (signal: AbortSignal) => void;
  /** Called when this process stops leading (deposed, renew deadline passed, or released on shutdown). */
  onStoppedLeading?: (reason: string) => void;
  /** Called when the observed holder changes (including to this process). */
  onNewLeader?: (identity: string) => void;
}

type AttemptResult = { ok: true } | { ok: false; holder?: string; error?: unknown };

export class LeaderElector {
  readonly identity: string;
  private readonly o: Required<
    Pick<LeaderElectorOptions, 'leaseDurationMs' | 'renewDeadlineMs' | 'retryPeriodMs' | 'jitter'>
  > &
    LeaderElectorOptions;
  private readonly clock: Clock;
  private readonly log: Logger | undefined;

  private running = false;
  /** stop() was called (start() clears it). */
  private stopped = false;
  private stopController = new AbortController();
  private loop: Promise<void> | undefined;
  private leading = false;
  private term: AbortController | undefined;
  /** Leadership is valid until this instant unless renewed (start of the last good renewal + deadline). */
  private validUntil = 0;
  private deadlineTimer: TimerHandle | undefined;
  private observed: { key: string; at: number; holder: string } | undefined;
  private lastHolder = '';
  private leaderWaiters: ((ok: boolean) => void)[] = [];

  constructor(opts: LeaderElectorOptions) {
    const leaseDurationMs = opts.leaseDurationMs ?? 15_000;
    this.o = {
      ...opts,
      leaseDurationMs,
      renewDeadlineMs: opts.renewDeadlineMs ?? Math.floor((leaseDurationMs * 2) / 3),
      retryPeriodMs: opts.retryPeriodMs ?? Math.floor(leaseDurationMs / 3),
      jitter: opts.jitter ?? 0.2,
    };
    if (this.o.renewDeadlineMs >= leaseDurationMs) {
      throw new Error('leader election: renewDeadline must be shorter than leaseDuration');
    }
    if (this.o.retryPeriodMs >= this.o.renewDeadlineMs) {
      throw new Error('leader election: retryPeriod must be shorter than renewDeadline');
    }
    this.identity = opts.identity;
    this.clock = opts.clock ?? realClock;
    this.log = opts.logger?.child({ lease: `${opts.namespace}/${opts.name}`, identity: opts.identity });
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.stopped = false;
    this.stopController = new AbortController();
    this.loop = this.run();
  }

  /**
   * True while this process holds the Lease. Checks the deadline against the clock too, so it turns false
   * on time even if the event loop was too busy to run the deadline timer.
   */
  isLeader(): boolean {
    return this.leading && this.clock.now() < this.validUntil;
  }

  /** Aborts when the current term ends; already aborted when not leading. Writers check it. */
  get signal(): AbortSignal {
    return this.leading && this.term ? this.term.signal : AbortSignal.abort(new Error('not leader'));
  }

  /** The holder this process last saw in the Lease ('' when free or unknown). */
  currentLeader(): string {
    return this.lastHolder;
  }

  /**
   * Resolves true when this process becomes leader (it may be called before start()), false when stopped or
   * `signal` aborts first.
   */
  waitForLeadership(signal?: AbortSignal): Promise<boolean> {
    if (this.isLeader()) return Promise.resolve(true);
    if (signal?.aborted || this.stopped) return Promise.resolve(false);
    return new Promise((resolve) => {
      const onAbort = (): void => {
        this.leaderWaiters = this.leaderWaiters.filter((w) => w !== waiter);
        resolve(false);
      };
      const waiter = (ok: boolean): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve(ok);
      };
      this.leaderWaiters.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Stop campaigning; a leader releases the Lease (unless `release` is false) and stops leading. */
  async stop(opts: { release?: boolean } = {}): Promise<void> {
    this.stopped = true;
    if (!this.running) return this.notifyWaiters(false);
    this.running = false;
    this.stopController.abort();
    await this.loop;
    if (this.leading) {
      if (opts.release ?? true) await this.release();
      this.stopLeading('shutdown');
    }
    this.notifyWaiters(false);
  }

  private async run(): Promise<void> {
    const stop = this.stopController.signal;
    while (this.running) {
      if (!this.leading) {
        const attemptStart = this.clock.now();
        const res = await this.tryAcquireOrRenew(attemptStart);
        if (!this.running) {
          // Stopped mid-attempt: if we just took the Lease, stop() releases it.
          if (res.ok) this.beginTerm(attemptStart);
          break;
        }
        if (res.ok) this.beginTerm(attemptStart);
        else {
          if (res.error !== undefined)
            this.log?.warn({ err: describeError(res.error) }, 'failed to acquire lease');
          const wait = this.o.retryPeriodMs * (1 + Math.random() * this.o.jitter);
          await sleep(this.clock, wait, stop);
        }
        continue;
      }
      await sleep(this.clock, this.o.retryPeriodMs, stop);
      if (!this.running || !this.leading) continue;
      const attemptStart = this.clock.now();
      const res = await this.tryAcquireOrRenew(attemptStart);
      if (!this.leading) continue; // the deadline passed while the request was in flight
      if (res.ok) this.extendTerm(attemptStart);
      else if (res.holder !== undefined && res.holder !== this.identity) {
        this.stopLeading(`lease taken by ${res.holder}`);
      } else if (res.error !== undefined && this.running) {
        this.log?.warn(
          { err: describeError(res.error) },
          'failed to renew lease; retrying until the renew deadline',
        );
      }
    }
  }

  private async tryAcquireOrRenew(now: number): Promise<AttemptResult> {
    const { client, namespace, name } = this.o;
    const timeout = this.o.retryPeriodMs;
    const stop = this.stopController.signal;
    try {
      const current = await withTimeout(this.clock, client.get(namespace, name), timeout, 'get lease', stop);
      if (!current) {
        await withTimeout(
          this.clock,
          client.create(namespace, name, {
            holderIdentity: this.identity,
            leaseDurationSeconds: Math.ceil(this.o.leaseDurationMs / 1000),
            acquireTime: now,
            renewTime: now,
            leaseTransitions: 0,
          }),
          timeout,
          'create lease',
          stop,
        );
        this.observe(this.identity, `created:${now}`, now);
        return { ok: true };
      }
      const r = current.record;
      this.observe(r.holderIdentity, `${current.resourceVersion}`, now);
      const observedAt = this.observed?.at ?? now;
      const heldByOther = r.holderIdentity !== '' && r.holderIdentity !== this.identity;
      if (heldByOther && observedAt + r.leaseDurationSeconds * 1000 > now) {
        return { ok: false, holder: r.holderIdentity };
      }
      const renewing = r.holderIdentity === this.identity;
      await withTimeout(
        this.clock,
        client.update(
          namespace,
          name,
          {
            holderIdentity: this.identity,
            leaseDurationSeconds: Math.ceil(this.o.leaseDurationMs / 1000),
            acquireTime: renewing ? (r.acquireTime ?? now) : now,
            renewTime: now,
            leaseTransitions: renewing ? r.leaseTransitions : r.leaseTransitions + 1,
          },
          current.resourceVersion,
        ),
        timeout,
        'update lease',
        stop,
      );
      if (!renewing) this.log?.info({ previous: r.holderIdentity || '(none)' }, 'took over lease');
      this.observe(this.identity, `updated:${now}`, now);
      return { ok: true };
    } catch (error) {
      // A conflict means someone else wrote the Lease first; the next attempt reads who.
      return isConflict(error) ? { ok: false } : { ok: false, error };
    }
  }

  private observe(holder: string, key: string, now: number): void {
    if (this.observed?.key !== key) this.observed = { key, at: now, holder };
    if (holder !== this.lastHolder) {
      this.lastHolder = holder;
      if (holder !== '') this.o.onNewLeader?.(holder);
    }
  }

  private beginTerm(attemptStart: number): void {
    if (attemptStart + this.o.renewDeadlineMs <= this.clock.now()) return; // took too long to count
    this.leading = true;
    this.term = new AbortController();
    this.extendTerm(attemptStart);
    this.o.metrics?.leader.set({ lease: this.o.name }, 1);
    this.log?.info('started leading');
    this.notifyWaiters(true);
    try {
      this.o.onStartedLeading?.(this.term.signal);
    } catch (err) {
      this.log?.error({ err }, 'onStartedLeading failed');
    }
  }

  private extendTerm(attemptStart: number): void {
    this.validUntil = attemptStart + this.o.renewDeadlineMs;
    this.clock.clearTimeout(this.deadlineTimer);
    const remaining = this.validUntil - this.clock.now();
    if (remaining <= 0) return this.stopLeading('renew deadline exceeded');
    this.deadlineTimer = this.clock.setTimeout(() => this.stopLeading('renew deadline exceeded'), remaining);
  }

  private stopLeading(reason: string): void {
    if (!this.leading) return;
    this.leading = false;
    this.validUntil = 0;
    this.clock.clearTimeout(this.deadlineTimer);
    this.term?.abort(new Error(`leadership lost: ${reason}`));
    this.o.metrics?.leader.set({ lease: this.o.name }, 0);
    if (reason === 'shutdown') this.log?.info('stopped leading');
    else this.log?.warn({ reason }, 'stopped leading');
    try {
      this.o.onStoppedLeading?.(reason);
    } catch (err) {
      this.log?.error({ err }, 'onStoppedLeading failed');
    }
  }

  private async release(): Promise<void> {
    const { client, namespace, name } = this.o;
    try {
      const current = await withTimeout(
        this.clock,
        client.get(namespace, name),
        this.o.retryPeriodMs,
        'get lease',
      );
      if (!current || current.record.holderIdentity !== this.identity) return;
      const now = this.clock.now();
      await withTimeout(
        this.clock,
        client.update(
          namespace,
          name,
          {
            holderIdentity: '',
            leaseDurationSeconds: 1,
            acquireTime: now,
            renewTime: now,
            leaseTransitions: current.record.leaseTransitions,
          },
          current.resourceVersion,
        ),
        this.o.retryPeriodMs,
        'release lease',
      );
      this.log?.info('released lease');
    } catch (err) {
      // Not fatal: the successor waits out the lease duration instead.
      this.log?.warn({ err: describeError(err) }, 'failed to release lease');
    }
  }

  private notifyWaiters(ok: boolean): void {
    const waiters = this.leaderWaiters;
    this.leaderWaiters = [];
    for (const w of waiters) w(ok);
  }
}

/** Bounds a Lease request by `ms` and by `stop`, so neither the loop nor stop() waits on a hung request. */
function withTimeout<T>(
  clock: Clock,
  p: Promise<T>,
  ms: number,
  what: string,
  stop?: AbortSignal,
): Promise<T> {
  let timer: TimerHandle | undefined;
  let onAbort: (() => void) | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = clock.setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
    onAbort = () => reject(new Error(`${what}: stopped`));
    if (stop?.aborted) onAbort();
    else stop?.addEventListener('abort', onAbort, { once: true });
  });
  return Promise.race([p, timeout]).finally(() => {
    clock.clearTimeout(timer);
    if (onAbort) stop?.removeEventListener('abort', onAbort);
  });
}

/** LeaseClient over the API server's coordination.k8s.io/v1 Leases. */
export class KubeLeaseClient implements LeaseClient {
  private readonly api: CoordinationV1Api;

  constructor(kc: KubeConfig) {
    this.api = kc.makeApiClient(CoordinationV1Api);
  }

  async get(namespace: string, name: string): Promise<LeaseState | undefined> {
    try {
      return fromLease(await this.api.readNamespacedLease({ name, namespace }));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async create(namespace: string, name: string, record: LeaseRecord): Promise<LeaseState> {
    return fromLease(await this.api.createNamespacedLease({ namespace, body: toLease(name, record) }));
  }

  async update(
    namespace: string,
    name: string,
    record: LeaseRecord,
    resourceVersion: string,
  ): Promise<LeaseState> {
    const body = toLease(name, record);
    body.metadata!.resourceVersion = resourceVersion;
    return fromLease(await this.api.replaceNamespacedLease({ name, namespace, body }));
  }
}

function toLease(name: string, r: LeaseRecord): V1Lease {
  // V1MicroTime serialises with the microsecond precision the API server requires for MicroTime fields.
  return {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name },
    spec: {
      holderIdentity: r.holderIdentity,
      leaseDurationSeconds: r.leaseDurationSeconds,
      acquireTime: r.acquireTime !== undefined ? new V1MicroTime(r.acquireTime) : undefined,
      renewTime: r.renewTime !== undefined ? new V1MicroTime(r.renewTime) : undefined,
      leaseTransitions: r.leaseTransitions,
    },
  };
}

function fromLease(l: V1Lease): LeaseState {
  // client-node 1.4 types these as V1MicroTime but hands back the wire string; accept both.
  const ms = (t: unknown): number | undefined =>
    t instanceof Date ? t.getTime() : typeof t === 'string' ? Date.parse(t) : undefined;
  return {
    resourceVersion: l.metadata?.resourceVersion ?? '',
    record: {
      holderIdentity: l.spec?.holderIdentity ?? '',
      leaseDurationSeconds: l.spec?.leaseDurationSeconds ?? 0,
      acquireTime: ms(l.spec?.acquireTime),
      renewTime: ms(l.spec?.renewTime),
      leaseTransitions: l.spec?.leaseTransitions ?? 0,
    },
  };
}
