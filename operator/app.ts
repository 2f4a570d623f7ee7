// Wires the operator together: informers, the OverlayNetwork controller, leader election, the health and
// metrics server. main.ts runs one; the integration tests run several in one process (two replicas).
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { CoreV1Api, type KubeConfig, type KubernetesObject, type V1Secret } from '@kubernetes/client-node';
import { Counter, Gauge, Histogram } from 'prom-client';
import { GROUP, NODE_TUNNEL_PLURAL, OVERLAY_NETWORK_PLURAL, VERSION } from '../api/v1alpha1/groupversion.js';
import { collectionPath, coreResources, customResource, isNotFound } from '../lib/kube.js';
import type { Logger } from '../lib/log.js';
import { Informer } from '../lib/runtime/informer.js';
import { KubeLeaseClient } from '../lib/runtime/leader.js';
import { Manager } from '../lib/runtime/manager.js';
import { RuntimeMetrics } from '../lib/runtime/metrics.js';
import { KubeRest } from '../lib/runtime/rest.js';
import { Sealer } from '../lib/seal.js';
import { agentLeaseName } from '../lib/contract/liveness.js';
import {
  MANAGED_BY,
  OverlayNetworkController,
  type KeySecretReader,
  type RotationMetrics,
} from './controllers/overlaynetwork.controller.js';
import { TunnelPeerRows } from '../lib/contract/pairs.js';
import type { RotationTimings } from './plan/rotation.js';
import { loadOrCreateIdentity } from './identity.js';
import { KubeOperatorWriter, type WriteCounter } from './writer.js';

export interface OperatorOptions {
  kc: KubeConfig;
  logger: Logger;
  /** Namespace of the operator: its identity Secret and leader Lease. */
  namespace: string;
  /** Namespace agents may read: sealed key Secrets and the operator's public key (default: namespace). */
  keyNamespace?: string;
  identity?: string;
  leaderElection?: boolean;
  leaseName?: string;
  leaseDurationMs?: number;
  server?: { host?: string; port: number };
  concurrency?: number;
  resyncPeriodMs?: number;
  writeCounter?: WriteCounter;
  metrics?: RuntimeMetrics;
  /** rotation timeouts (tests shorten them) */
  rotationTimings?: Partial<RotationTimings>;
  /** least time between two status writes that change only pair counts (default 2 s) */
  statusIntervalMs?: number | undefined;
  /** how long NodeTunnel events are batched before a pass (default TUNNEL_EVENT_DELAY_MS) */
  tunnelEventDelayMs?: number;
}

export interface Operator {
  manager: Manager;
  controller: OverlayNetworkController;
  /** Resolves once caches are synced (workers start when leading). */
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** NodeTunnel events start a pass this long after the first of a burst. */
export const TUNNEL_EVENT_DELAY_MS = 500;

export async function createOperator(o: OperatorOptions): Promise<Operator> {
  const rest = new KubeRest(o.kc);
  const keyNamespace = o.keyNamespace ?? o.namespace;
  const log = o.logger;
  const informer = (opts: ConstructorParameters<typeof Informer>[0]) =>
    new Informer<KubernetesObject>({ logger: log, ...opts });
  const overlays = informer({
    client: rest,
    resource: customResource(GROUP, VERSION, OVERLAY_NETWORK_PLURAL, { kind: 'OverlayNetwork' }),
  });
  // The cache keeps no peer lists: at 1,000 nodes each tunnel reports 999 peers (~130 KB), 130 MB in all,
  // and the pair computation needs only each peer's state and epoch (peerRows, 8 KB per tunnel).
  const peerRows = new TunnelPeerRows();
  const tunnels = informer({
    client: rest,
    resource: customResource(GROUP, VERSION, NODE_TUNNEL_PLURAL, { kind: 'NodeTunnel' }),
    transform: peerRows.strip,
    pageSize: 100,
  });
  const nodes = informer({ client: rest, resource: coreResources.nodes });
  // Metadata only: the sealed data of a 1,000-node overlay is ~300 MB; the controller reads the one Secret a
  // plan needs when it needs it (secretReader).
  const secrets = informer({
    client: rest,
    resource: coreResources.secrets,
    namespace: keyNamespace,
    labelSelector: Object.entries(MANAGED_BY)
      .map(([k, v]) => `${k}=${v}`)
      .join(','),
    metadataOnly: true,
  });
  const secretReader: KeySecretReader = {
    async read(namespace, name) {
      try {
        return await rest.getJSON<V1Secret>(
          `${collectionPath(coreResources.secrets, namespace)}/${encodeURIComponent(name)}`,
        );
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },
  };
  // Agents' liveness Leases: a rotation waits only for agents whose Lease is fresh.
  const leases = informer({ client: rest, resource: coreResources.leases, namespace: keyNamespace });
  const identity = await loadOrCreateIdentity(o.kc.makeApiClient(CoreV1Api), o.namespace, keyNamespace);
  log.info({ sealingKey: identity.fingerprint }, 'operator identity loaded');

  const id = o.identity ?? `${hostname()}-${randomBytes(4).toString('hex')}`;
  const metrics = o.metrics ?? new RuntimeMetrics();
  const writes = new Counter({
    name: 'sealmesh_operator_writes_total',
    help: 'Object writes the API server accepted, by kind of write.',
    labelNames: ['kind'],
    registers: [metrics.registry],
  });
  const rotationSeconds = new Histogram({
    name: 'sealmesh_rotation_duration_seconds',
    help: 'Time from the start of staging to the completion of a key rotation.',
    labelNames: ['overlay', 'scope'],
    buckets: [1, 2, 5, 10, 20, 30, 60, 120, 300, 600],
    registers: [metrics.registry],
  });
  // The longest the event loop was held up since the last scrape: a reconcile that does not yield shows here
  // (leader-lease renewals, watches and /healthz all wait for it).
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  new Gauge({
    name: 'sealmesh_event_loop_delay_max_seconds',
    help: 'Longest event-loop delay since the previous scrape (reset by each scrape).',
    registers: [metrics.registry],
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
    registers: [metrics.registry],
    collect() {
      this.reset();
      const now = Date.now();
      for (const [overlay, t] of lastRotation) {
        this.set({ overlay, kind: 'private' }, (now - t.keys) / 1000);
        this.set({ overlay, kind: 'preshared' }, (now - t.psk) / 1000);
      }
    },
  });
  const rotationMetrics: RotationMetrics = {
    completed: (overlay, scope, seconds) => rotationSeconds.observe({ overlay, scope }, seconds),
    keyTimes: (overlay, keys, psk) => lastRotation.set(overlay, { keys: keys.getTime(), psk: psk.getTime() }),
  };
  const counter: WriteCounter = {
    count(kind) {
      writes.inc({ kind });
      o.writeCounter?.count(kind);
    },
  };
  const manager = new Manager({
    name: 'sealmesh-operator',
    logger: log,
    metrics,
    server: o.server,
    resyncPeriodMs: o.resyncPeriodMs,
    leaderElection:
      o.leaderElection === false
        ? undefined
        : {
            namespace: o.namespace,
            name: o.leaseName ?? 'sealmesh-operator',
            identity: id,
            client: new KubeLeaseClient(o.kc),
            leaseDurationMs: o.leaseDurationMs,
            logger: log,
          },
  });
  const writer = new KubeOperatorWriter(
    o.kc,
    () => manager.isActive() && (manager.leader?.isLeader() ?? true),
    // Events about cluster-scoped objects must live in "default": the API server rejects them elsewhere, and
    // that is where `kubectl describe overlaynetwork` looks.
    'default',
    counter,
    rest,
  );
  const controller = new OverlayNetworkController({
    namespace: keyNamespace,
    overlays,
    nodes,
    tunnels,
    peerRows,
    secrets,
    secretReader,
    leases,
    leaseName: agentLeaseName,
    timings: o.rotationTimings,
    statusIntervalMs: o.statusIntervalMs,
    rotationMetrics,
    writer,
    sealer: new Sealer(identity.keyPair),
    logger: log,
  });
  manager.addController({
    name: controller.name,
    for: overlays,
    concurrency: o.concurrency ?? 2,
    watches: [
      { informer: nodes, map: (obj: KubernetesObject) => controller.keysFor('node', obj) },
      // Agents report often and, in a rollout or a rotation, all at once; a pass over a large overlay judges
      // every pair (500k at 1,000 nodes), so reports are taken in batches.
      {
        informer: tunnels,
        map: (obj: KubernetesObject) => controller.keysFor('tunnel', obj),
        delayMs: o.tunnelEventDelayMs ?? TUNNEL_EVENT_DELAY_MS,
      },
      { informer: secrets, map: (obj: KubernetesObject) => controller.keysFor('secret', obj) },
      { informer: leases, map: (obj: KubernetesObject) => controller.keysFor('lease', obj) },
    ],
    reconcile: (key) => controller.reconcile(key),
  });
  return {
    manager,
    controller,
    start: () => manager.start(),
    stop: async () => {
      await manager.stop('shutdown');
      loopDelay.disable();
    },
  };
}
