// The operator's own Prometheus metrics, next to the runtime's (lib/runtime/metrics.ts): writes by kind, key
// rotation durations and key ages, and the longest event-loop block since the last scrape.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { RotationMetrics } from './controllers/overlaynetwork.controller.js';
import type { WriteCounter } from './writer.js';

export interface OperatorMetrics {
  /** counts every write the API server accepted, and passes it on to `also` */
  counter: WriteCounter;
  rotationMetrics: RotationMetrics;
  /** stops the event-loop delay monitor */
  stop(): void;
}

export function operatorMetrics(registry: Registry, also?: WriteCounter): OperatorMetrics {
  const writes = new Counter({
    name: 'sealmesh_operator_writes_total',
    help: 'Object writes the API server accepted, by kind of write.',
    labelNames: ['kind'],
    registers: [registry],
  });
  const rotationSeconds = new Histogram({
    name: 'sealmesh_rotation_duration_seconds',
    help: 'Time from the start of staging to the completion of a key rotation.',
    labelNames: ['overlay', 'scope'],
    buckets: [1, 2, 5, 10, 20, 30, 60, 120, 300, 600],
    registers: [registry],
  });
  // The longest the event loop was held up since the last scrape: a reconcile that does not yield shows here
  // (leader-lease renewals, watches and /healthz all wait for it).
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  new Gauge({
    name: 'sealmesh_event_loop_delay_max_seconds',
    help: 'Longest event-loop delay since the previous scrape (reset by each scrape).',
    registers: [registry],
    collect() {
      this.set(loopDelay.max / 1e9);
      loopDelay.reset();
    },
  });
  const lastRotation = new Map<string, { keys: number; psk: number }>();
  new Gauge({
    name: 'sealmesh_key_age_seconds',
    help: 'Age of the keys in use, per overlay: kind=private (WireGuard private keys) or preshared.',
    labelNames: ['overlay', 'kind'],
    registers: [registry],
    collect() {
      this.reset();
      const now = Date.now();
      for (const [overlay, t] of lastRotation) {
        this.set({ overlay, kind: 'private' }, (now - t.keys) / 1000);
        this.set({ overlay, kind: 'preshared' }, (now - t.psk) / 1000);
      }
    },
  });
  return {
    counter: {
      count(kind) {
        writes.inc({ kind });
        also?.count(kind);
      },
    },
    rotationMetrics: {
      completed: (overlay, scope, seconds) => rotationSeconds.observe({ overlay, scope }, seconds),
      keyTimes: (overlay, keys, psk) =>
        lastRotation.set(overlay, { keys: keys.getTime(), psk: psk.getTime() }),
    },
    stop: () => loopDelay.disable(),
  };
}
