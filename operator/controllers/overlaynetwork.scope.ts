// What the OverlayNetwork controller's phases share: their dependencies, and the scope of one pass (cluster-
// api's machine scope). Each phase file receives the scope and keeps its own cache between passes.
import type { KubernetesObject, V1Secret } from '@kubernetes/client-node';
import type { OverlayNetwork } from '../../api/v1alpha1/overlaynetwork.types.js';
import type { TunnelPeerRows } from '../../lib/contract/pairs.js';
import type { Logger } from '../../lib/log.js';
import type { Informer } from '../../lib/runtime/informer.js';
import type { Sealer } from '../../lib/seal.js';
import type { OverlayEvent } from '../plan/events.js';
import type { RotationStatus, RotationTimings } from '../plan/rotation.js';
import type { OperatorWriter } from '../writer.js';

export const FINALIZER = 'sealmesh.io/cleanup';
export const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'sealmesh' };

/**
 * Loops over nodes yield to the event loop after this many. Decoding and planning a large overlay's Secrets
 * takes seconds; without yielding, leader-lease renewals (renewDeadline 10 s), watches and /healthz all wait
 * for the whole step.
 */
export const YIELD_EVERY = 20;

export interface OverlayControllerDeps {
  namespace: string;
  overlays: Informer<KubernetesObject>;
  nodes: Informer<KubernetesObject>;
  tunnels: Informer<KubernetesObject>;
  /**
   * The tunnels' peer reports as rows. Give the same instance's `strip` to the tunnel informer as its
   * transform, so the cache holds no peer lists; without it rows are built from the cached peer lists.
   */
  peerRows?: TunnelPeerRows;
  /** key Secrets, metadata only (their sealed data is read through `secretReader` when a plan needs it) */
  secrets: Informer<KubernetesObject>;
  secretReader: KeySecretReader;
  /** agents' liveness Leases in the key namespace (sealmesh-agent-<node>) */
  leases?: Informer<KubernetesObject> | undefined;
  /** node name → Lease name, as the agent names its liveness Lease */
  leaseName?: (node: string) => string;
  writer: OperatorWriter;
  timings?: Partial<RotationTimings> | undefined;
  /** how long a pair counts as dropping plaintext after its drop count last rose (default 90 s; plan/drops.ts) */
  dropEpisodeMs?: number | undefined;
  /** least time between two status writes that change only pair counts (default 2 s) */
  statusIntervalMs?: number | undefined;
  rotationMetrics?: RotationMetrics | undefined;
  sealer: Sealer;
  logger: Logger;
  now?: () => Date;
}

/** Reads one Secret, data included, from the API server. */
export interface KeySecretReader {
  /** undefined when it does not exist */
  read(namespace: string, name: string): Promise<V1Secret | undefined>;
}

export interface RotationMetrics {
  /**
   * a rotation completed: its scope, how long it took from first stage to completion, and how many pairs
   * were not encrypted at the new epoch when it completed (0: outcome completed, more: incomplete)
   */
  completed(overlay: string, scope: string, seconds: number, incompletePairs: number): void;
  /** a rotation attempt aborted (it is retried after a backoff) */
  aborted(overlay: string, scope: string): void;
  /** the schedule's view of the overlay's keys, for key-age and next-rotation gauges */
  keyTimes(overlay: string, times: KeyTimes): void;
  /** the pair counts of the pass, for the pairs-by-state gauge */
  pairs(
    overlay: string,
    counts: { total: number; encrypted: number; degraded: number; unknown: number },
  ): void;
  /** how many pairs' PSKs are sealed post-quantum, and how many nodes are not (plan/postquantum.ts) */
  postQuantum?(
    overlay: string,
    facts: { pairs: number; postQuantumPairs: number; classical: string[] },
  ): void;
  /** the overlay is gone: drop its series */
  forget(overlay: string): void;
}

/** When the overlay's private keys (and PSKs) were last renewed, and when they are next due, if scheduled. */
export interface KeyTimes {
  lastKeys: Date;
  lastPsk: Date;
  nextRotationTime?: Date | undefined;
  nextPresharedKeyRotationTime?: Date | undefined;
}

export type OverlayStatus = NonNullable<OverlayNetwork['status']>;

/** One pass over one overlay. */
export interface Scope {
  /** the cached object; after a status write, with that status and no resourceVersion (overlaynetwork.status.ts) */
  raw: KubernetesObject & { status?: OverlayNetwork['status'] };
  overlay: OverlayNetwork;
  name: string;
  /** the overlay's key epoch: moves on a lost key Secret (keysecrets) or a completed rotation (rotation) */
  epoch: number;
  /** the rotation under way, as the rotation phase left it */
  rotation?: RotationStatus | undefined;
  /** the pass's instant */
  now: Date;
  /** the soonest any phase wants the next pass (requeueWithin) */
  requeueAfterMs?: number | undefined;
  /**
   * Status fields decided in this pass that nothing else waits for: written with the pass's next status
   * write (cluster-api's deferred patch), so they cost no write of their own.
   */
  deferred?: Partial<OverlayStatus> | undefined;
  /** Events of the pass, recorded after its last status write (or when it fails: status.flushEvents) */
  events: OverlayEvent[];
}

export function newScope(raw: Scope['raw'], overlay: OverlayNetwork, name: string, now: Date): Scope {
  return {
    raw,
    overlay,
    name,
    epoch: overlay.status?.epoch ?? 1,
    rotation: overlay.status?.rotation,
    now,
    events: [],
  };
}

/** The next pass within `ms` at the latest (the soonest of every phase's wish wins). */
export function requeueWithin(scope: Scope, ms: number): void {
  scope.requeueAfterMs = Math.min(scope.requeueAfterMs ?? Infinity, ms);
}
