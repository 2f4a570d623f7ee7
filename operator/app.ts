// Wires the operator together: informers, the OverlayNetwork controller, leader election, the health and
// metrics server. main.ts runs one; the integration tests run several in one process (two replicas).
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { CoreV1Api, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { GROUP, NODE_TUNNEL_PLURAL, OVERLAY_NETWORK_PLURAL, VERSION } from '../api/v1alpha1/groupversion.js';
import { coreResources, customResource } from '../lib/kube.js';
import type { Logger } from '../lib/log.js';
import { Informer } from '../lib/runtime/informer.js';
import { KubeLeaseClient } from '../lib/runtime/leader.js';
import { Manager } from '../lib/runtime/manager.js';
import { RuntimeMetrics } from '../lib/runtime/metrics.js';
import { KubeRest } from '../lib/runtime/rest.js';
import { Sealer } from '../lib/seal.js';
import { MANAGED_BY, OverlayNetworkController } from './controllers/overlaynetwork.controller.js';
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
  const tunnels = informer({
    client: rest,
    resource: customResource(GROUP, VERSION, NODE_TUNNEL_PLURAL, { kind: 'NodeTunnel' }),
  });
  const nodes = informer({ client: rest, resource: coreResources.nodes });
  const secrets = informer({
    client: rest,
    resource: coreResources.secrets,
    namespace: keyNamespace,
    labelSelector: Object.entries(MANAGED_BY)
      .map(([k, v]) => `${k}=${v}`)
      .join(','),
  });
  const identity = await loadOrCreateIdentity(o.kc.makeApiClient(CoreV1Api), o.namespace, keyNamespace);
  log.info({ sealingKey: identity.fingerprint }, 'operator identity loaded');

  const id = o.identity ?? `${hostname()}-${randomBytes(4).toString('hex')}`;
  const metrics = o.metrics ?? new RuntimeMetrics();
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
    o.writeCounter,
  );
  const controller = new OverlayNetworkController({
    namespace: keyNamespace,
    overlays,
    nodes,
    tunnels,
    secrets,
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
      { informer: tunnels, map: (obj: KubernetesObject) => controller.keysFor('tunnel', obj) },
      { informer: secrets, map: (obj: KubernetesObject) => controller.keysFor('secret', obj) },
    ],
    reconcile: (key) => controller.reconcile(key),
  });
  return {
    manager,
    controller,
    start: () => manager.start(),
    stop: () => manager.stop('shutdown'),
  };
}
