// The preamble integration and e2e tests share: API clients for the control plane globalSetup started, the
// overlay's NodeTunnel status as an agent wrote it, and for the lab scenarios the ordered-scenario guard, the
// log tails a failure prints, the wait for "every pair encrypted" and the overlay's removal at the end.
// Importing it needs a kubeconfig (globalSetup writes one); unit tests never import it.
import { CoordinationV1Api, CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { agentLeaseName } from '../../lib/contract/liveness.js';
import {
  API_VERSION,
  GROUP,
  NODE_LABEL,
  NODE_TUNNEL_KIND,
  NODE_TUNNEL_PLURAL,
  OVERLAY_LABEL,
  OVERLAY_NETWORK_KIND,
  OVERLAY_NETWORK_PLURAL,
  VERSION,
  nodeTunnelName,
} from '../../api/v1alpha1/groupversion.js';
import type { NodeTunnelStatus } from '../../api/v1alpha1/nodetunnel.types.js';
import {
  KEY_NAMESPACE,
  describeProgress,
  kubectl,
  waitAllEncrypted,
  WaitError,
} from '../../hack/deploy/deploy.js';
import { keySecretName } from '../../lib/contract/keysecret.js';
import { isNotFound } from '../../lib/kube.js';
import { IDENTITY_NAME, IDENTITY_PUBLIC_KEY } from '../../lib/contract/identity.js';
import { kubeConfig, kubeconfigPath } from './cluster.js';
import type { Deployment } from './deploy.js';
import { until } from './wait.js';

export const kc: KubeConfig = kubeConfig();
export const core = kc.makeApiClient(CoreV1Api);
export const custom = kc.makeApiClient(CustomObjectsApi);
export const leases = kc.makeApiClient(CoordinationV1Api);

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The status of `overlay`'s NodeTunnel of `node` (empty before its agent wrote one). */
export async function tunnelStatus(overlay: string, node: string): Promise<NodeTunnelStatus> {
  const obj = (await custom.getClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: NODE_TUNNEL_PLURAL,
    name: nodeTunnelName(overlay, node),
  })) as { status?: NodeTunnelStatus };
  return obj.status ?? {};
}

/** Waits until the agent of every node in `nodes` reports running `epoch` for the overlay. */
export async function everyAgentAt(
  overlay: string,
  nodes: readonly string[],
  epoch: number,
  timeoutMs: number,
): Promise<void> {
  await until(
    `every agent at epoch ${epoch}`,
    async () => {
      for (const n of nodes) if ((await tunnelStatus(overlay, n)).appliedEpoch !== epoch) return false;
      return true;
    },
    timeoutMs,
    250,
  );
}

/**
 * Scenarios that build on each other: after one fails, the later ones say so instead of failing obscurely.
 * `explain` may add what is known about a failure (e.g. another operator on the API server).
 */
export function scenarios(explain?: () => Promise<string | undefined>) {
  let failed: string | undefined;
  return async (name: string, body: () => Promise<void>): Promise<void> => {
    if (failed) throw new Error(`not run: scenario ${failed} failed`);
    failed = name;
    try {
      await body();
    } catch (err) {
      const more = explain ? await explain().catch(() => undefined) : undefined;
      if (more) throw new Error(`${String(err)}\n${more}`, { cause: err });
      throw err;
    }
    failed = undefined;
  };
}

/** The end of every log of a deployment, so a failure says what the operator and the agents were doing. */
export function logTails(deployment: Deployment | undefined): string {
  if (!deployment) return '';
  const logs = deployment.logs();
  const tail = (s: string) =>
    s
      .trim()
      .split('\n')
      .slice(-8)
      .map((l) => `    ${l.slice(0, 400)}`)
      .join('\n');
  let out = `\n--- operator (${deployment.operatorLog}):\n${tail(logs.operator)}`;
  for (const [node, log] of Object.entries(logs.nodes)) out += `\n--- ${node}:\n${tail(log)}`;
  return out;
}

/** Waits until every pair among `nodes` is encrypted; the ms it took. A timeout says how far it got. */
export async function allEncrypted(
  deployment: Deployment | undefined,
  overlay: string,
  nodes: string[],
  timeoutMs: number,
): Promise<number> {
  const t0 = Date.now();
  try {
    await waitAllEncrypted(kc, overlay, nodes, timeoutMs);
  } catch (err) {
    if (err instanceof WaitError)
      throw new Error(`${err.message}\n${describeProgress(err.last)}${logTails(deployment)}`, { cause: err });
    throw err;
  }
  return Date.now() - t0;
}

/**
 * Deletes the overlay and waits for it to go (the operator removes what it made first). An operator that died
 * cannot drop its finalizer: after `timeoutMs` the finalizer is cleared and the timeout is returned as an
 * error message. Returns the errors.
 */
export async function removeOverlay(overlay: string, timeoutMs = 30_000): Promise<string[]> {
  const errors: string[] = [];
  try {
    await custom.deleteClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: OVERLAY_NETWORK_PLURAL,
      name: overlay,
    });
    await until(
      'the overlay to be deleted',
      async () => {
        try {
          await custom.getClusterCustomObject({
            group: GROUP,
            version: VERSION,
            plural: OVERLAY_NETWORK_PLURAL,
            name: overlay,
          });
          return false;
        } catch (err) {
          if (isNotFound(err)) return true;
          throw err;
        }
      },
      timeoutMs,
      250,
    ).catch(async (err: unknown) => {
      errors.push(String(err));
      await kubectl(kubeconfigPath, [
        'patch',
        'overlaynetwork',
        overlay,
        '--type=merge',
        '-p',
        '{"metadata":{"finalizers":null}}',
      ]).catch(() => undefined);
    });
  } catch (err) {
    if (!isNotFound(err)) errors.push(`deleting overlay ${overlay}: ${String(err)}`);
  }
  return errors;
}

/** Deletes the liveness Leases the agents of `nodes` left (agents may not delete Leases). Returns errors. */
export async function deleteAgentLeases(nodes: readonly string[]): Promise<string[]> {
  const errors: string[] = [];
  for (const n of nodes) {
    await leases
      .deleteNamespacedLease({ namespace: KEY_NAMESPACE, name: agentLeaseName(n) })
      .catch((err: unknown) => {
        if (!isNotFound(err)) errors.push(`deleting the Lease of ${n}: ${String(err)}`);
      });
  }
  return errors;
}

/** One node of a hand-made overlay: what its NodeTunnel's spec says. */
export interface HandMadeTunnel {
  node: string;
  /** with its prefix, e.g. 10.97.0.1/24 */
  address: string;
  endpoint: string;
  allowedIPs: string[];
}

/**
 * Tests that play the operator (agent integration and e2e): the operator's published sealing key in
 * `namespace` (made here), a paused OverlayNetwork (an operator on the same control plane leaves it alone)
 * and one NodeTunnel per node at epoch 1, pointing at the node's key Secret.
 */
export async function handMadeOverlay(o: {
  namespace: string;
  overlay: string;
  operatorPublicKey: Uint8Array;
  addressPool: string;
  tunnels: readonly HandMadeTunnel[];
}): Promise<void> {
  await core.createNamespace({ body: { metadata: { name: o.namespace } } });
  await core.createNamespacedConfigMap({
    namespace: o.namespace,
    body: {
      metadata: { name: IDENTITY_NAME },
      data: { [IDENTITY_PUBLIC_KEY]: Buffer.from(o.operatorPublicKey).toString('base64') },
    },
  });
  await custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: OVERLAY_NETWORK_PLURAL,
    body: {
      apiVersion: API_VERSION,
      kind: OVERLAY_NETWORK_KIND,
      metadata: { name: o.overlay },
      spec: { addressPool: o.addressPool, paused: true },
    },
  });
  for (const t of o.tunnels) {
    await custom.createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: NODE_TUNNEL_PLURAL,
      body: {
        apiVersion: API_VERSION,
        kind: NODE_TUNNEL_KIND,
        metadata: {
          name: nodeTunnelName(o.overlay, t.node),
          labels: { [OVERLAY_LABEL]: o.overlay, [NODE_LABEL]: t.node },
        },
        spec: {
          overlay: o.overlay,
          nodeName: t.node,
          address: t.address,
          endpoint: t.endpoint,
          allowedIPs: t.allowedIPs,
          listenPort: 51820,
          persistentKeepalive: '25s',
          epoch: 1,
          secretRef: { namespace: o.namespace, name: keySecretName(o.overlay, t.node) },
        },
      },
    });
  }
}
