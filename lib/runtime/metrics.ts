// Prometheus metrics shared by the runtime pieces. Each process makes one RuntimeMetrics on its own Registry
// (not prom-client's global one, so tests and several managers in one process never collide); controllers
// register their own metrics on `metrics.registry`.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface RuntimeMetricsOptions {
  /** Collect process/Node.js default metrics (default true). */
  defaultMetrics?: boolean;
  prefix?: string;
}

export class RuntimeMetrics {
  readonly registry: Registry;
  readonly queueDepth: Gauge<'controller'>;
  readonly queueAdds: Counter<'controller'>;
  readonly queueRetries: Counter<'controller'>;
  readonly reconcileTotal: Counter<'controller' | 'result'>;
  readonly reconcileErrors: Counter<'controller'>;
  readonly reconcileDuration: Histogram<'controller'>;
  readonly watchRestarts: Counter<'informer' | 'reason'>;
  readonly relists: Counter<'informer'>;
  readonly cacheObjects: Gauge<'informer'>;
  readonly leader: Gauge<'lease'>;

  constructor(registry = new Registry(), opts: RuntimeMetricsOptions = {}) {
    this.registry = registry;
    const p = opts.prefix ?? 'sealmesh_';
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: p });
    const registers = [registry];
    this.queueDepth = new Gauge({
      name: `${p}workqueue_depth`,
      help: 'Keys waiting to be reconciled (ready, not in flight).',
      labelNames: ['controller'],
      registers,
    });
    this.queueAdds = new Counter({
      name: `${p}workqueue_adds_total`,
      help: 'Keys added to the work queue.',
      labelNames: ['controller'],
      registers,
    });
    this.queueRetries = new Counter({
      name: `${p}workqueue_retries_total`,
      help: 'Keys requeued with backoff after a failed reconcile.',
      labelNames: ['controller'],
      registers,
    });
    this.reconcileTotal = new Counter({
      name: `${p}reconcile_total`,
      help: 'Reconciles by result (success, error, requeue).',
      labelNames: ['controller', 'result'],
      registers,
    });
    this.reconcileErrors = new Counter({
      name: `${p}reconcile_errors_total`,
      help: 'Reconciles that failed.',
      labelNames: ['controller'],
      registers,
    });
    this.reconcileDuration = new Histogram({
      name: `${p}reconcile_duration_seconds`,
      help: 'Time spent in reconcile.',
      labelNames: ['controller'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.watchRestarts = new Counter({
      name: `${p}watch_restarts_total`,
      help: 'Watches restarted, by reason (closed, error, stalled, gone, manual).',
      labelNames: ['informer', 'reason'],
      registers,
    });
    this.relists = new Counter({
      name: `${p}informer_lists_total`,
      help: 'Full lists done by an informer (first sync and every relist).',
      labelNames: ['informer'],
      registers,
    });
    this.cacheObjects = new Gauge({
      name: `${p}informer_cache_objects`,
      help: 'Objects in an informer cache.',
      labelNames: ['informer'],
      registers,
    });
    this.leader = new Gauge({
      name: `${p}leader`,
      help: '1 while this process holds the leader lease.',
      labelNames: ['lease'],
      registers,
    });
  }
}
