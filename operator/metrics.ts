// The operator's own Prometheus metrics, next to the runtime's (lib/runtime/metrics.ts): writes by kind, key
// rotation durations, outcomes and key ages, pairs by state, and the longest event-loop block since the last
// scrape. config/prometheus/ alerts and charts on them (config/prometheus/prometheus.test.ts checks the names).
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { RotationMetrics } from './controllers/overlaynetwork.controller.js';
import type { PairCounts } from './controllers/overlaynetwork.pairs.js';
import type { KeyTimes } from './controllers/overlaynetwork.scope.js';
import type { WriteCounter } from './writer.js';

const ROTATION_SCOPES = ['Keys', 'PresharedKeys'] as const;
const ROTATION_OUTCOMES = ['completed', 'incomplete', 'aborted'] as const;
type RotationOutcome = (typeof ROTATION_OUTCOMES)[number];

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
  const keyTimes = new Map<string, KeyTimes>();
  new Gauge({
    name: 'sealmesh_key_age_seconds',
    help: 'Age of the keys in use, per overlay: kind=private (WireGuard private keys) or preshared.',
    labelNames: ['overlay', 'kind'],
    registers: [registry],
    collect() {
      this.reset();
      const now = Date.now();
      for (const [overlay, t] of keyTimes) {
        this.set({ overlay, kind: 'private' }, (now - t.lastKeys.getTime()) / 1000);
        this.set({ overlay, kind: 'preshared' }, (now - t.lastPsk.getTime()) / 1000);
      }
    },
  });
  // Timestamps, Prometheus style: `time() - x` is the age, and alerts compare them without the operator's clock.
  new Gauge({
    name: 'sealmesh_last_rotation_timestamp_seconds',
    help: 'Unix time the keys in use were made, per overlay: the last completed rotation of that kind (private: Keys rotations; preshared: either kind), or the overlay creation.',
    labelNames: ['overlay', 'kind'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [overlay, t] of keyTimes) {
        this.set({ overlay, kind: 'private' }, t.lastKeys.getTime() / 1000);
        this.set({ overlay, kind: 'preshared' }, t.lastPsk.getTime() / 1000);
      }
    },
  });
  new Gauge({
    name: 'sealmesh_next_rotation_timestamp_seconds',
    help: 'Unix time the schedule (spec.keys.rotation) wants the next rotation, per overlay and kind; absent without a schedule. In the past: the keys are older than the schedule allows.',
    labelNames: ['overlay', 'kind'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [overlay, t] of keyTimes) {
        if (t.nextRotationTime) this.set({ overlay, kind: 'private' }, t.nextRotationTime.getTime() / 1000);
        if (t.nextPresharedKeyRotationTime)
          this.set({ overlay, kind: 'preshared' }, t.nextPresharedKeyRotationTime.getTime() / 1000);
      }
    },
  });
  const pairCounts = new Map<string, PairCounts>();
  new Gauge({
    name: 'sealmesh_pairs',
    help: 'Node pairs per overlay and state (Encrypted, Pending, Degraded, Unknown: an agent out of touch), as the last pass judged them from both sides of each pair.',
    labelNames: ['overlay', 'state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [overlay, c] of pairCounts) {
        this.set({ overlay, state: 'Encrypted' }, c.encrypted);
        this.set({ overlay, state: 'Pending' }, c.total - c.encrypted - c.degraded - c.unknown);
        this.set({ overlay, state: 'Degraded' }, c.degraded);
        this.set({ overlay, state: 'Unknown' }, c.unknown);
      }
    },
  });
  const postQuantum = new Map<string, { pairs: number; postQuantumPairs: number; classicalNodes: number }>();
  new Gauge({
    name: 'sealmesh_pairs_post_quantum',
    help: "Node pairs per overlay whose pre-shared key is sealed post-quantum (X25519 + ML-KEM-768: both nodes publish an ML-KEM key), and all pairs (sealed='all').",
    labelNames: ['overlay', 'sealed'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [overlay, c] of postQuantum) {
        this.set({ overlay, sealed: 'hybrid' }, c.postQuantumPairs);
        this.set({ overlay, sealed: 'all' }, c.pairs);
      }
    },
  });
  new Gauge({
    name: 'sealmesh_nodes_classical_sealing',
    help: 'Nodes per overlay that publish no ML-KEM key: material sealed to them is protected by X25519 only.',
    labelNames: ['overlay'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [overlay, c] of postQuantum) this.set({ overlay }, c.classicalNodes);
    },
  });
  const rotations = new Counter({
    name: 'sealmesh_rotations_total',
    help: 'Key rotations per overlay, scope (Keys, PresharedKeys) and outcome: completed (every pair at the new epoch), incomplete (completed with pairs left behind), aborted (an attempt that gave up; it is retried).',
    labelNames: ['overlay', 'scope', 'outcome'],
    registers: [registry],
  });
  // Every series of an overlay starts at 0, so `increase()` sees its first abort.
  const rotationSeries = (overlay: string) =>
    ROTATION_SCOPES.flatMap((scope) => ROTATION_OUTCOMES.map((outcome) => ({ overlay, scope, outcome })));
  const rotate = (overlay: string, scope: string, outcome: RotationOutcome) => {
    if (!pairCounts.has(overlay)) for (const l of rotationSeries(overlay)) rotations.inc(l, 0);
    rotations.inc({ overlay, scope, outcome });
  };
  return {
    counter: {
      count(kind) {
        writes.inc({ kind });
        also?.count(kind);
      },
    },
    rotationMetrics: {
      completed(overlay, scope, seconds, incompletePairs) {
        rotationSeconds.observe({ overlay, scope }, seconds);
        rotate(overlay, scope, incompletePairs > 0 ? 'incomplete' : 'completed');
      },
      aborted: (overlay, scope) => rotate(overlay, scope, 'aborted'),
      keyTimes: (overlay, times) => keyTimes.set(overlay, times),
      pairs(overlay, counts) {
        if (!pairCounts.has(overlay)) for (const l of rotationSeries(overlay)) rotations.inc(l, 0);
        pairCounts.set(overlay, { ...counts });
      },
      postQuantum(overlay, f) {
        postQuantum.set(overlay, {
          pairs: f.pairs,
          postQuantumPairs: f.postQuantumPairs,
          classicalNodes: f.classical.length,
        });
      },
      forget(overlay) {
        keyTimes.delete(overlay);
        postQuantum.delete(overlay);
        pairCounts.delete(overlay);
        for (const l of rotationSeries(overlay)) rotations.remove(l);
        for (const scope of ROTATION_SCOPES) rotationSeconds.remove({ overlay, scope });
      },
    },
    stop: () => loopDelay.disable(),
  };
}
