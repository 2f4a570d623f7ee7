// The controller manager: owns the informers, one work queue per controller, the leader elector and the
// health/metrics server, and sequences them:
//   informers start → every cache has its first list (rule 4) → [leadership] → workers start → resync timer.
// Events on the kind a controller owns enqueue that object's key; events on other kinds go through the
// controller's mapping functions to the keys of the objects that own them (rule 2). Losing leadership stops
// the workers at once and ends the manager: the process should exit and start again as a candidate, which
// is simpler to get right than resuming with half-done state.
import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from '../log.js';
import { objectKey } from '../kube.js';
import { realClock, type Clock, type TimerHandle } from './clock.js';
import { Informer, type InformerOptions } from './informer.js';
import { LeaderElector, type LeaderElectorOptions } from './leader.js';
import { RuntimeMetrics } from './metrics.js';
import { WorkQueue, type HandlerResult } from './queue.js';
import { RuntimeServer } from './server.js';

export interface ReconcileContext {
  /** Aborts when the manager stops or this process stops leading: check it before every write. */
  signal: AbortSignal;
  log: Logger | undefined;
}

/** Maps an object of another kind to the keys of the objects that own it (none: return undefined or []). */
export type KeyMapper<T extends KubernetesObject = KubernetesObject> = (
  obj: T,
) => string | readonly string[] | undefined;

export interface WatchSpec {
  informer: Informer<KubernetesObject>;
  map: KeyMapper<KubernetesObject>;
  /**
   * Enqueue the keys this long after the event instead of at once: a burst of events (a thousand agents
   * reporting) then costs one pass per key and delay, not one per event. A key already due sooner keeps
   * its time.
   */
  delayMs?: number;
}

/** A watch on another kind: its events enqueue the keys `map` returns (the owning objects). */
export function watch<T extends KubernetesObject>(informer: Informer<T>, map: KeyMapper<T>): WatchSpec {
  return {
    informer,
    map: map as KeyMapper<KubernetesObject>,
  };
}

export interface ControllerSpec<T extends KubernetesObject = KubernetesObject> {
  name: string;
  /** The kind this controller owns: its events enqueue the object's own key; resync re-enqueues all of them. */
  for: Informer<T>;
  /** Other kinds whose events enqueue the keys of owning objects. */
  watches?: WatchSpec[];
  /** Reads the current state from the caches by key (rule 5); throw to retry with backoff. */
  reconcile(key: string, ctx: ReconcileContext): Promise<HandlerResult>;
  concurrency?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
}

export interface ManagerOptions {
  name: string;
  logger?: Logger;
  clock?: Clock;
  metrics?: RuntimeMetrics;
  /** Serve /healthz, /readyz and /metrics; omit for none. */
  server?: { host?: string; port: number };
  /** Campaign for this Lease and run the workers only while leading; omit to always run them (the agent). */
  leaderElection?: Omit<LeaderElectorOptions, 'onStartedLeading' | 'onStoppedLeading' | 'clock' | 'metrics'>;
  /** Re-enqueue every owned object at this interval (default 10 min; 0 disables). */
  resyncPeriodMs?: number;
  /** How long stop() waits for reconciles in flight (default 30 s). */
  shutdownTimeoutMs?: number;
}

export type StopReason = 'shutdown' | 'lost-leadership' | 'failed';

interface RegisteredController {
  spec: ControllerSpec<KubernetesObject>;
  queue: WorkQueue;
}

export class Manager {
  readonly metrics: RuntimeMetrics;
  readonly server: RuntimeServer | undefined;
  readonly leader: LeaderElector | undefined;
  /** Resolves with the reason once the manager has fully stopped. */
  readonly done: Promise<StopReason>;

  private readonly opts: ManagerOptions;
  private readonly clock: Clock;
  private readonly log: Logger | undefined;
  private readonly informers = new Set<Informer<KubernetesObject>>();
  private readonly controllers: RegisteredController[] = [];
  private readonly stopController = new AbortController();
  private resolveDone!: (r: StopReason) => void;
  private started = false;
  private stopping: Promise<void> | undefined;
  private workersRunning = false;
  private resyncTimer: TimerHandle | undefined;
  /** Aborts when the manager stops or, with leader election, when the current term ends. */
  private workSignal: AbortSignal;

  constructor(opts: ManagerOptions) {
    this.opts = opts;
    this.clock = opts.clock ?? realClock;
    this.log = opts.logger?.child({ manager: opts.name });
    this.metrics = opts.metrics ?? new RuntimeMetrics();
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    this.workSignal = this.stopController.signal;
    if (opts.server) {
      this.server = new RuntimeServer({ ...opts.server, registry: this.metrics.registry, logger: this.log });
      // Leader and standby are both ready: a standby has warm caches and can take over at once.
      this.server.addReadyCheck('informers-synced', () => this.hasSynced());
    }
    if (opts.leaderElection) {
      this.leader = new LeaderElector({
        ...opts.leaderElection,
        clock: this.clock,
        metrics: this.metrics,
        logger: opts.leaderElection.logger ?? this.log,
        onStartedLeading: () => this.startWorkers(),
        onStoppedLeading: (reason) => {
          if (reason !== 'shutdown') void this.stop('lost-leadership');
        },
      });
    }
  }

  /** A new informer that shares this manager's clock, logger and metrics, registered with it. */
  newInformer<T extends KubernetesObject>(opts: InformerOptions): Informer<T> {
    return this.addInformer(
      new Informer<T>({ clock: this.clock, logger: this.log, metrics: this.metrics, ...opts }),
    );
  }

  /** Register an informer that no controller owns (e.g. a cache read by reconcilers). Idempotent. */
  addInformer<T extends KubernetesObject>(informer: Informer<T>): Informer<T> {
    if (this.started) throw new Error(`manager ${this.opts.name}: addInformer after start`);
    this.informers.add(informer);
    return informer;
  }

  addController<T extends KubernetesObject>(spec: ControllerSpec<T>): WorkQueue {
    if (this.started) throw new Error(`manager ${this.opts.name}: addController after start`);
    if (this.controllers.some((c) => c.spec.name === spec.name)) {
      throw new Error(`manager ${this.opts.name}: duplicate controller ${spec.name}`);
    }
    const log = this.log?.child({ controller: spec.name });
    const queue = new WorkQueue({
      name: spec.name,
      concurrency: spec.concurrency,
      baseDelayMs: spec.baseDelayMs,
      maxDelayMs: spec.maxDelayMs,
      clock: this.clock,
      logger: log,
      metrics: this.metrics,
      handler: (key) => spec.reconcile(key, { signal: this.workSignal, log: log?.child({ key }) }),
    });
    this.addInformer(spec.for);
    spec.for.addHandler(keyHandler(queue, (obj) => objectKey(obj), log));
    for (const w of spec.watches ?? []) {
      this.addInformer(w.informer);
      w.informer.addHandler(keyHandler(queue, w.map, log, w.delayMs));
    }
    this.controllers.push({ spec, queue });
    return queue;
  }

  hasSynced(): boolean {
    return this.started && [...this.informers].every((i) => i.hasSynced());
  }

  /** True while workers run (leading, or always without leader election). */
  isActive(): boolean {
    return this.workersRunning;
  }

  /**
   * Starts the server and informers, waits for every cache's first list, then starts the workers (or, with
   * leader election, campaigns and starts them on becoming leader). Resolves once the caches are synced;
   * rejects if the manager is stopped first.
   */
  async start(): Promise<void> {
    if (this.started) throw new Error(`manager ${this.opts.name}: already started`);
    this.started = true;
    const stop = this.stopController.signal;
    try {
      await this.server?.start();
      for (const inf of this.informers) inf.start();
      const synced = await Promise.all([...this.informers].map((i) => i.waitForSync(stop)));
      if (!synced.every(Boolean)) throw new Error(`manager ${this.opts.name}: stopped before caches synced`);
      this.log?.info({ informers: [...this.informers].map((i) => i.name) }, 'caches synced');
    } catch (err) {
      await this.stop('failed');
      throw err;
    }
    if (this.leader) this.leader.start();
    else this.startWorkers();
  }

  /**
   * For a process's main: start, stop on SIGTERM/SIGINT, and resolve with why the manager ended (exit
   * non-zero on anything but 'shutdown', so the pod restarts and campaigns again).
   */
  async run(): Promise<StopReason> {
    const removeHandlers = this.installSignalHandlers();
    try {
      await this.start();
      return await this.done;
    } catch (err) {
      this.log?.error({ err }, 'manager failed to start');
      return 'failed';
    } finally {
      removeHandlers();
    }
  }

  /** Stop on SIGTERM/SIGINT. Returns a function that removes the handlers. */
  installSignalHandlers(): () => void {
    const onSignal = (sig: NodeJS.Signals): void => {
      this.log?.info({ signal: sig }, 'shutting down');
      void this.stop('shutdown');
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
    return () => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    };
  }

  /**
   * Stops the workers first (waiting for reconciles in flight, up to shutdownTimeoutMs), then releases
   * leadership, so nothing writes after another process may have taken over; then the watches and the server.
   */
  stop(reason: StopReason = 'shutdown'): Promise<void> {
    this.stopping ??= this.doStop(reason);
    return this.stopping;
  }

  private async doStop(reason: StopReason): Promise<void> {
    this.stopController.abort(new Error(`manager stopping: ${reason}`));
    this.workersRunning = false;
    this.clock.clearTimeout(this.resyncTimer);
    const timeoutMs = this.opts.shutdownTimeoutMs ?? 30_000;
    const drained = Promise.all(this.controllers.map((c) => c.queue.shutdown()));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<'timeout'>(
      (resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)),
    );
    if ((await Promise.race([drained, timedOut])) === 'timeout') {
      this.log?.warn({ timeoutMs }, 'reconciles still running at shutdown timeout');
    }
    clearTimeout(timer);
    await this.leader?.stop({ release: true });
    await Promise.all([...this.informers].map((i) => i.stop()));
    await this.server?.close();
    if (reason === 'lost-leadership') this.log?.error('lost leadership; manager stopped');
    else this.log?.info({ reason }, 'manager stopped');
    this.resolveDone(reason);
  }

  private startWorkers(): void {
    if (this.workersRunning || this.stopController.signal.aborted) return;
    this.workersRunning = true;
    if (this.leader) this.workSignal = AbortSignal.any([this.stopController.signal, this.leader.signal]);
    for (const c of this.controllers) {
      // Everything owned is reconciled once at start, whatever events were seen while standing by.
      for (const key of c.spec.for.keys()) c.queue.add(key);
      c.queue.start();
    }
    this.log?.info({ controllers: this.controllers.map((c) => c.spec.name) }, 'workers started');
    this.scheduleResync();
  }

  private scheduleResync(): void {
    const period = this.opts.resyncPeriodMs ?? 600_000;
    if (period <= 0) return;
    const jittered = period * (0.9 + Math.random() * 0.2);
    this.resyncTimer = this.clock.setTimeout(() => {
      if (!this.workersRunning) return;
      for (const c of this.controllers) for (const key of c.spec.for.keys()) c.queue.add(key);
      this.scheduleResync();
    }, jittered);
  }
}

function keyHandler<T extends KubernetesObject>(
  queue: WorkQueue,
  map: KeyMapper<T>,
  log: Logger | undefined,
  delayMs = 0,
) {
  const enqueue = (obj: T): void => {
    let keys: string | readonly string[] | undefined;
    try {
      keys = map(obj);
    } catch (err) {
      log?.error({ err, object: objectKey(obj) }, 'key mapping failed');
      return;
    }
    if (keys === undefined) return;
    for (const key of typeof keys === 'string' ? [keys] : keys) if (key) queue.addAfter(key, delayMs);
  };
  return {
    onAdd: enqueue,
    // Both: when the owner reference changed, the old and the new owner need to look again.
    onUpdate: (oldObj: T, newObj: T) => {
      enqueue(oldObj);
      if (oldObj !== newObj) enqueue(newObj);
    },
    onDelete: enqueue,
  };
}

/** KeyMapper helpers for the usual ownership links. */
export const mapTo = {
  /** Owners of a given kind, from metadata.ownerReferences (cluster-scoped owners: key = name). */
  owner(kind: string, opts: { namespaced?: boolean } = {}): KeyMapper {
    return (obj) =>
      (obj.metadata?.ownerReferences ?? [])
        .filter((r) => r.kind === kind)
        .map((r) =>
          opts.namespaced && obj.metadata?.namespace ? `${obj.metadata.namespace}/${r.name}` : r.name,
        );
  },
  /** The value of a label, as a cluster-scoped key. */
  label(label: string): KeyMapper {
    return (obj) => obj.metadata?.labels?.[label];
  },
  /** Every key of `informer`: for objects (like Nodes) that any owned object may select. */
  all<O extends KubernetesObject>(informer: Informer<O>): KeyMapper {
    return () => informer.keys();
  },
};
