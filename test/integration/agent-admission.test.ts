// Per-node isolation on the real API server: the agent admission policies from config/rbac (applied as a user
// installs them) against tokens of the agent service account, one bound to node A's Node object (it carries
// A's node-name claim, as a DaemonSet pod's token does) and one without the claim. A may write its own
// NodeTunnel status and its own Lease and nothing else; refusals name the policy. Deletes and metadata
// changes are refused by RBAC before admission; a second part widens RBAC on purpose to show that the policy
// refuses them on its own too.
import { jest } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  RbacAuthorizationV1Api,
  setHeaderOptions,
  type V1Lease,
} from '@kubernetes/client-node';
import { GROUP, NODE_TUNNEL_PLURAL, VERSION } from '../../api/v1alpha1/groupversion.js';
import {
  AGENT_SERVICE_ACCOUNT,
  KEY_NAMESPACE,
  SYSTEM_NAMESPACE,
  applyBase,
  serviceAccountToken,
  writeTokenKubeconfig,
} from '../../hack/deploy/deploy.js';
import { describeError } from '../../lib/kube.js';
import { generateKeyPair } from '../../lib/keys.js';
import { kubeConfig, kubeconfigPath, uniqueName } from '../support/cluster.js';
import { until } from '../support/wait.js';

jest.setTimeout(60_000);

const TUNNEL_POLICY = "ValidatingAdmissionPolicy 'sealmesh-agent-nodetunnels'";
const LEASE_POLICY = "ValidatingAdmissionPolicy 'sealmesh-agent-leases'";
const NO_CLAIM = "the agent's token carries no node-name claim";

const admin = kubeConfig();
const run = uniqueName('iso');
const nodeA = `${run}-a`;
const nodeB = `${run}-b`;
const tunnel = (node: string) => `${run}.${node}`;
const lease = (node: string) => `sealmesh-agent-${node}`;
let dir: string;
let asA: KubeConfig;
let asNoClaim: KubeConfig;

function tokenKubeconfig(token: string, file: string): KubeConfig {
  writeTokenKubeconfig(admin, AGENT_SERVICE_ACCOUNT, token, join(dir, file));
  const kc = new KubeConfig();
  kc.loadFromFile(join(dir, file));
  return kc;
}

/** Resolves with the error message of a refused call; fails the test if the call succeeds. */
async function refused(call: Promise<unknown>): Promise<string> {
  try {
    await call;
  } catch (err) {
    return describeError(err);
  }
  throw new Error('the request was accepted');
}

const statusPatch = (kc: KubeConfig, node: string) =>
  kc.makeApiClient(CustomObjectsApi).patchClusterCustomObjectStatus(
    {
      group: GROUP,
      version: VERSION,
      plural: NODE_TUNNEL_PLURAL,
      name: tunnel(node),
      body: { status: { publicKey: generateKeyPair().publicKey } },
    },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );

const leaseBody = (node: string, holder = node): V1Lease => ({
  metadata: { name: lease(node), namespace: KEY_NAMESPACE },
  spec: { holderIdentity: holder, leaseDurationSeconds: 40 },
});

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sealmesh-iso-'));
  await applyBase(kubeconfigPath);
  const core = admin.makeApiClient(CoreV1Api);
  const custom = admin.makeApiClient(CustomObjectsApi);
  const uids: Record<string, string> = {};
  for (const [i, node] of [nodeA, nodeB].entries()) {
    const created = await core.createNode({ body: { metadata: { name: node } } });
    uids[node] = created.metadata?.uid ?? '';
    await custom.createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: NODE_TUNNEL_PLURAL,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'NodeTunnel',
        metadata: { name: tunnel(node), labels: { 'sealmesh.io/overlay': run } },
        spec: {
          overlay: run,
          nodeName: node,
          address: `10.97.0.${i + 1}/24`,
          endpoint: `198.18.0.${i + 2}:51820`,
          allowedIPs: [`10.97.0.${i + 1}/32`],
          listenPort: 51820,
          epoch: 1,
          secretRef: { namespace: KEY_NAMESPACE, name: `sealmesh.${run}.${node}.e1` },
        },
      },
    });
  }
  await admin.makeApiClient(CoordinationV1Api).createNamespacedLease({
    namespace: KEY_NAMESPACE,
    body: leaseBody(nodeB),
  });
  asA = tokenKubeconfig(
    await serviceAccountToken(admin, AGENT_SERVICE_ACCOUNT, 600, { name: nodeA, uid: uids[nodeA]! }),
    'a.kubeconfig',
  );
  asNoClaim = tokenKubeconfig(
    await serviceAccountToken(admin, AGENT_SERVICE_ACCOUNT, 600),
    'none.kubeconfig',
  );
  // A new policy takes effect once the API server's admission informer has it: wait for the first refusal.
  await until('the agent admission policy in effect', async () =>
    (await refused(statusPatch(asA, nodeB))).includes(TUNNEL_POLICY),
  );
});

afterAll(async () => {
  const custom = admin.makeApiClient(CustomObjectsApi);
  const leases = admin.makeApiClient(CoordinationV1Api);
  const core = admin.makeApiClient(CoreV1Api);
  for (const node of [nodeA, nodeB]) {
    await custom
      .deleteClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: NODE_TUNNEL_PLURAL,
        name: tunnel(node),
      })
      .catch(() => undefined);
    await leases
      .deleteNamespacedLease({ name: lease(node), namespace: KEY_NAMESPACE })
      .catch(() => undefined);
    await core.deleteNode({ name: node }).catch(() => undefined);
  }
  rmSync(dir, { recursive: true, force: true });
});

test("with node A's token: A's own NodeTunnel status and Lease are written", async () => {
  await statusPatch(asA, nodeA);
  const leases = asA.makeApiClient(CoordinationV1Api);
  const created = await leases.createNamespacedLease({ namespace: KEY_NAMESPACE, body: leaseBody(nodeA) });
  created.spec = { ...created.spec, leaseDurationSeconds: 41 };
  await leases.replaceNamespacedLease({ name: lease(nodeA), namespace: KEY_NAMESPACE, body: created });
});

test("with node A's token: B's NodeTunnel status, B's Lease, another holder or new labels are refused by the policy", async () => {
  const tunnelMsg = await refused(statusPatch(asA, nodeB));
  expect(tunnelMsg).toContain(TUNNEL_POLICY);
  expect(tunnelMsg).toContain(
    `the agent of node ${nodeA} may write only its own NodeTunnel, not the one of node ${nodeB}`,
  );

  const leases = asA.makeApiClient(CoordinationV1Api);
  const current = await leases.readNamespacedLease({ name: lease(nodeB), namespace: KEY_NAMESPACE });
  current.spec = { ...current.spec, holderIdentity: nodeA };
  const updateMsg = await refused(
    leases.replaceNamespacedLease({ name: lease(nodeB), namespace: KEY_NAMESPACE, body: current }),
  );
  expect(updateMsg).toContain(LEASE_POLICY);
  expect(updateMsg).toContain(`may write only its own Lease ${lease(nodeA)}, not ${lease(nodeB)}`);
  // nor may A's own Lease claim another holder
  const own = await leases.readNamespacedLease({ name: lease(nodeA), namespace: KEY_NAMESPACE });
  own.spec = { ...own.spec, holderIdentity: nodeB };
  const holderMsg = await refused(
    leases.replaceNamespacedLease({ name: lease(nodeA), namespace: KEY_NAMESPACE, body: own }),
  );
  expect(holderMsg).toContain(LEASE_POLICY);
  expect(holderMsg).toContain(`may name only that node as its holder`);
  // nor change its labels (RBAC lets an agent update its Lease: only the policy stands in the way)
  const labelled = await leases.readNamespacedLease({ name: lease(nodeA), namespace: KEY_NAMESPACE });
  labelled.metadata = { ...labelled.metadata, labels: { 'sealmesh.io/node': nodeB } };
  const labelMsg = await refused(
    leases.replaceNamespacedLease({ name: lease(nodeA), namespace: KEY_NAMESPACE, body: labelled }),
  );
  expect(labelMsg).toContain(LEASE_POLICY);
  expect(labelMsg).toContain('an agent may not change labels, annotations, finalizers or ownerReferences');
});

test('a token without the node-name claim may write nothing, not even a status', async () => {
  for (const node of [nodeA, nodeB]) {
    const msg = await refused(statusPatch(asNoClaim, node));
    expect(msg).toContain(TUNNEL_POLICY);
    expect(msg).toContain(NO_CLAIM);
  }
  const leases = asNoClaim.makeApiClient(CoordinationV1Api);
  const current = await leases.readNamespacedLease({ name: lease(nodeA), namespace: KEY_NAMESPACE });
  const msg = await refused(
    leases.replaceNamespacedLease({ name: lease(nodeA), namespace: KEY_NAMESPACE, body: current }),
  );
  expect(msg).toContain(LEASE_POLICY);
  expect(msg).toContain(NO_CLAIM);
});

test('deletes and metadata changes: refused by RBAC, and by the policy when RBAC is widened', async () => {
  const custom = asA.makeApiClient(CustomObjectsApi);
  const del = () =>
    custom.deleteClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: NODE_TUNNEL_PLURAL,
      name: tunnel(nodeA),
    });
  expect(await refused(del())).toMatch(
    /forbidden: User "system:serviceaccount:sealmesh-system:sealmesh-agent" cannot delete/,
  );

  // Widen RBAC on purpose, as a mistaken Role might: the policy still refuses.
  const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
  const widen = `${run}-widen`;
  await rbac.createClusterRole({
    body: {
      metadata: { name: widen },
      rules: [
        { apiGroups: [GROUP], resources: [NODE_TUNNEL_PLURAL], verbs: ['update', 'patch', 'delete'] },
        { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['delete'] },
      ],
    },
  });
  await rbac.createClusterRoleBinding({
    body: {
      metadata: { name: widen },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: widen },
      subjects: [{ kind: 'ServiceAccount', name: AGENT_SERVICE_ACCOUNT, namespace: SYSTEM_NAMESPACE }],
    },
  });
  try {
    const delMsg = await until('RBAC widened, the policy refuses the delete', async () => {
      const msg = await refused(del());
      return msg.includes(TUNNEL_POLICY) ? msg : undefined;
    });
    expect(delMsg).toContain('an agent may only update NodeTunnel status');

    const labelMsg = await refused(
      custom.patchClusterCustomObject(
        {
          group: GROUP,
          version: VERSION,
          plural: NODE_TUNNEL_PLURAL,
          name: tunnel(nodeA),
          body: { metadata: { labels: { 'sealmesh.io/overlay': 'elsewhere' } } },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      ),
    );
    expect(labelMsg).toContain(TUNNEL_POLICY);
    expect(labelMsg).toContain('an agent may only update NodeTunnel status');

    const leaseMsg = await refused(
      asA
        .makeApiClient(CoordinationV1Api)
        .deleteNamespacedLease({ name: lease(nodeA), namespace: KEY_NAMESPACE }),
    );
    expect(leaseMsg).toContain(LEASE_POLICY);
    expect(leaseMsg).toContain('an agent may only create and update its liveness Lease');
  } finally {
    await rbac.deleteClusterRoleBinding({ name: widen });
    await rbac.deleteClusterRole({ name: widen });
  }
  // the refused writes changed nothing
  const kept = (await admin.makeApiClient(CustomObjectsApi).getClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: NODE_TUNNEL_PLURAL,
    name: tunnel(nodeA),
  })) as { metadata: { labels: Record<string, string> } };
  expect(kept.metadata.labels['sealmesh.io/overlay']).toBe(run);
});
