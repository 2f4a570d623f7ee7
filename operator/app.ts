// Wires the operator together: informers, the OverlayNetwork controller (which declares its own watches),
// leader election, the health and metrics server (metrics: metrics.ts). main.ts runs one; the integration tests run several in one process (two replicas).
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { CoreV1Api, type KubeConfig, type KubernetesObject, type V1Secret } from '@kubernetes/client-node';
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
} from './controllers/overlaynetwork.controller.js';
import { TunnelPeerRows } from '../lib/contract/pairs.js';
import type { RotationTimings } from './plan/rotation.js';
import { loadOrCreateIdentity, watchPublishedIdentity } from './identity.js';
import { operatorMetrics } from './metrics.js';
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
  /** how often the leader checks that its published sealing key is still its own (default 30 s) */
  identityCheckMs?: number;
}

export interface Operator {
  manager: Manager;
  controller: OverlayNetworkController;
  /** Resolves once caches are synced (workers start when leading). */
  start(): Promise<void>;
  stop(): Promise<void>;
}

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
  const opMetrics = operatorMetrics(metrics.registry, o.writeCounter);
  const { counter, rotationMetrics } = opMetrics;
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
  const stopIdentityChecks = watchPublishedIdentity({
    core: o.kc.makeApiClient(CoreV1Api),
    namespace: keyNamespace,
    identity,
    intervalMs: o.identityCheckMs ?? 30_000,
    logger: log,
    active: () => manager.isActive() && (manager.leader?.isLeader() ?? true),
  });
  controller.setupWithManager(manager, {
    concurrency: o.concurrency,
    tunnelEventDelayMs: o.tunnelEventDelayMs,
  });
  return {
    manager,
    controller,
    start: () => manager.start(),
    stop: async () => {
      stopIdentityChecks();
      await manager.stop('shutdown');
      opMetrics.stop();
    },
  };
}
