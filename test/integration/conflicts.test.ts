// Conflicts are reported, not silently resolved (issue #14 item 4), against the real API server: overlapping
// pod CIDRs, two nodes with one envelope key, and two overlays on one port on shared nodes each give Degraded
// with the names, and `kubectl sealmesh status` (the bundled plugin) prints why.
import { AGENT_INFO } from '../../lib/contract/version.js';
import { execFile } from 'node:child_process';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { resolve } from 'node:path';
import {
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
} from '@kubernetes/client-node';
import { jest } from '@jest/globals';
import { pino } from 'pino';
import {
  GROUP,
  NODE_TUNNEL_PLURAL,
  OVERLAY_NETWORK_PLURAL,
  VERSION,
  nodeTunnelName,
} from '../../api/v1alpha1/groupversion.js';
import { keySecretNameAt } from '../../lib/contract/keysecret.js';
import { encodeKey } from '../../lib/keys.js';
import { newBoxKeyPair } from '../../lib/seal.js';
import { createOperator, type Operator } from '../../operator/app.js';
import { kubeConfig, kubeconfigPath, repoRoot, uniqueName } from '../support/cluster.js';
import { installCRDs } from '../support/crds.js';
import { createNode } from '../support/nodes.js';
import { deleteOverlays } from '../support/overlays.js';
import { until } from '../support/wait.js';

jest.setTimeout(120_000);

const execFileAsync = promisify(execFile);
const kc: KubeConfig = kubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);
const run = uniqueName('conf');
const namespace = run;
const RUN_LABEL = 'sealmesh.io/test-run';
const logger = pino({ level: 'warn' }, new Writable({ write: (_c, _e, cb) => cb() }));
let operator: Operator;

const nodeName = (i: number) => `${run}-n${i}`;
type Condition = { type: string; status: string; reason: string; message: string };
type Obj = { spec: Record<string, unknown>; status?: { conditions?: Condition[] } };

function memberNode(i: number, podCIDR: string): Promise<void> {
  return createNode(core, {
    name: nodeName(i),
    labels: { [RUN_LABEL]: run, 'sealmesh.io/member': run },
    podCIDR,
    internalIP: `198.18.1.${i}`,
  });
}

async function createOverlay(name: string, spec: Record<string, unknown>): Promise<void> {
  await custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: OVERLAY_NETWORK_PLURAL,
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'OverlayNetwork',
      metadata: { name },
      spec: { nodeSelector: { matchLabels: { 'sealmesh.io/member': run } }, ...spec },
    },
  });
}

async function degraded(overlay: string): Promise<Condition | undefined> {
  const o = (await custom.getClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: OVERLAY_NETWORK_PLURAL,
    name: overlay,
  })) as Obj;
  return o.status?.conditions?.find((c) => c.type === 'Degraded' && c.status === 'True');
}

async function tunnel(overlay: string, i: number): Promise<Obj> {
  return (await custom.getClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: NODE_TUNNEL_PLURAL,
    name: nodeTunnelName(overlay, nodeName(i)),
  })) as Obj;
}

async function publishEnvelopeKey(overlay: string, i: number, key: string): Promise<void> {
  await custom.patchClusterCustomObjectStatus(
    {
      group: GROUP,
      version: VERSION,
      plural: NODE_TUNNEL_PLURAL,
      name: nodeTunnelName(overlay, nodeName(i)),
      body: { status: { envelopePublicKey: key, agent: AGENT_INFO } },
    },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
}

async function secretExists(name: string): Promise<boolean> {
  const list = await core.listNamespacedSecret({ namespace, fieldSelector: `metadata.name=${name}` });
  return list.items.length > 0;
}

beforeAll(async () => {
  await installCRDs(kc);
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  operator = await createOperator({
    kc,
    logger,
    namespace,
    identity: uniqueName('replica'),
    leaseName: `${run}-lease`,
    leaseDurationMs: 4_000,
    resyncPeriodMs: 0,
  });
  await operator.start();
  await memberNode(1, '10.249.1.0/24');
  await memberNode(2, '10.249.2.0/24');
  // n3's pod CIDR covers n1's and n2's
  await memberNode(3, '10.249.0.0/16');
});

afterAll(async () => {
  await deleteOverlays(kc, run);
  await operator?.stop();
  const nodes = await core.listNode({ labelSelector: `${RUN_LABEL}=${run}` });
  for (const n of nodes.items) await core.deleteNode({ name: n.metadata!.name! });
});

const A = `${run}-a`;

test('overlapping pod CIDRs: Degraded AddressConflict naming the nodes; neither CIDR is routed', async () => {
  await createOverlay(A, { addressPool: '100.72.0.0/24', listenPort: 51890 });
  const d = await until('AddressConflict', async () => {
    const c = await degraded(A);
    return c?.reason === 'AddressConflict' ? c : undefined;
  });
  expect(d.message).toContain(`${nodeName(3)} 10.249.0.0/16`);
  expect(d.message).toContain(`${nodeName(1)} 10.249.1.0/24`);
  expect(d.message).toContain(`${nodeName(2)} 10.249.2.0/24`);
  for (const [i, cidr] of [
    [1, '10.249.1.0/24'],
    [2, '10.249.2.0/24'],
    [3, '10.249.0.0/16'],
  ] as const) {
    const allowed = (await tunnel(A, i)).spec.allowedIPs as string[];
    expect(allowed).not.toContain(cidr);
    expect(allowed).toHaveLength(1); // the tunnel address only
  }
});

test('two nodes with one envelope key: KeyConflict naming both; nothing is sealed to either', async () => {
  const shared = encodeKey(newBoxKeyPair().publicKey);
  await publishEnvelopeKey(A, 1, shared);
  await publishEnvelopeKey(A, 2, shared);
  await publishEnvelopeKey(A, 3, encodeKey(newBoxKeyPair().publicKey));
  const d = await until('KeyConflict', async () => {
    const c = await degraded(A);
    return c?.message.includes('envelope key') ? c : undefined;
  });
  expect(d.reason).toBe('KeyConflict');
  expect(d.message).toContain(`nodes ${nodeName(1)}, ${nodeName(2)} publish the same envelope key`);
  // n3 has a key of its own: its Secret is written; n1's and n2's are not
  await until('n3 sealed to', () => secretExists(keySecretNameAt(A, nodeName(3), 1)));
  expect(await secretExists(keySecretNameAt(A, nodeName(1), 1))).toBe(false);
  expect(await secretExists(keySecretNameAt(A, nodeName(2), 1))).toBe(false);
});

test('two overlays on one port on shared nodes: PortConflict in the new one; the plugin prints why', async () => {
  const B = `${run}-b`;
  await createOverlay(B, { addressPool: '100.73.0.0/24', listenPort: 51890 });
  const d = await until('PortConflict', async () => {
    const c = await degraded(B);
    return c?.message.includes('listens on port') ? c : undefined;
  });
  expect(d.message).toContain(
    `overlay ${A} also listens on port 51890 on ${nodeName(1)}, ${nodeName(2)}, ${nodeName(3)}`,
  );
  const env = { ...process.env, KUBECONFIG: kubeconfigPath, NO_COLOR: '1' };
  const out = await execFileAsync(
    process.execPath,
    [resolve(repoRoot, 'dist/kubectl-sealmesh.cjs'), 'status', B],
    { env },
  ).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }));
  expect(out.stdout).toContain(`Degraded: ${d.reason}: `);
  expect(out.stdout).toContain(`overlay ${A} also listens on port 51890`);
});

test("agents that refuse the operator's sealing key: Degraded names them and an Event says so", async () => {
  await custom.patchClusterCustomObjectStatus(
    {
      group: GROUP,
      version: VERSION,
      plural: NODE_TUNNEL_PLURAL,
      name: nodeTunnelName(A, nodeName(3)),
      body: {
        status: {
          conditions: [
            {
              type: 'OperatorKeyTrusted',
              status: 'False',
              reason: 'OperatorKeyChanged',
              message: 'the operator identity publishes another sealing key',
              lastTransitionTime: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
            },
          ],
        },
      },
    },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
  const d = await until('OperatorKeyChanged in Degraded', async () => {
    const c = await degraded(A);
    return c?.message.includes('refuse the published sealing key') ? c : undefined;
  });
  expect(d.message).toContain(`agents of ${nodeName(3)} refuse the published sealing key`);
  const event = await until('OperatorKeyChanged Event', async () => {
    const list = await core.listNamespacedEvent({
      namespace: 'default',
      fieldSelector: `involvedObject.name=${A}`,
    });
    return list.items.find((e) => e.reason === 'OperatorKeyChanged');
  });
  expect(event.type).toBe('Warning');
  expect(event.message).toContain(nodeName(3));
});
