// Epochs only increase (issue #14 item 3, security review S9), against the real API server: the CRD refuses a
// status.epoch that goes down, and when agents report having run an epoch above status.epoch (what an etcd
// restore to an older state looks like to the operator) the operator moves the overlay past it, with an
// Event, rather than back to retired keys.
import { Writable } from 'node:stream';
import {
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
} from '@kubernetes/client-node';
import { jest } from '@jest/globals';
import { pino } from 'pino';
import { GROUP, OVERLAY_NETWORK_PLURAL, VERSION } from '../../api/v1alpha1/groupversion.js';
import { describeError } from '../../lib/kube.js';
import { createOperator, type Operator } from '../../operator/app.js';
import { kubeConfig, uniqueName } from '../support/cluster.js';
import { installCRDs } from '../support/crds.js';
import { createNode } from '../support/nodes.js';
import { deleteOverlays } from '../support/overlays.js';
import { AgentStandIn } from '../support/standin.js';
import { until } from '../support/wait.js';

jest.setTimeout(120_000);

const kc: KubeConfig = kubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);
const run = uniqueName('epoch');
const namespace = run;
const RUN_LABEL = 'sealmesh.io/test-run';
const logger = pino({ level: 'warn' }, new Writable({ write: (_c, _e, cb) => cb() }));
const OVL = `${run}-mesh`;
const nodeName = (i: number) => `${run}-n${i}`;
let operator: Operator;

async function overlayEpoch(): Promise<number | undefined> {
  const o = (await custom.getClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: OVERLAY_NETWORK_PLURAL,
    name: OVL,
  })) as { status?: { epoch?: number } };
  return o.status?.epoch;
}

beforeAll(async () => {
  await installCRDs(kc);
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  for (const i of [1, 2]) {
    await createNode(core, {
      name: nodeName(i),
      labels: { [RUN_LABEL]: run, 'sealmesh.io/member': run },
      podCIDR: `10.250.${i}.0/24`,
      internalIP: `198.18.2.${i}`,
    });
  }
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
  await custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: OVERLAY_NETWORK_PLURAL,
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'OverlayNetwork',
      metadata: { name: OVL },
      spec: { nodeSelector: { matchLabels: { 'sealmesh.io/member': run } }, addressPool: '100.74.0.0/24' },
    },
  });
});

afterAll(async () => {
  await deleteOverlays(kc, run);
  await operator?.stop();
  const nodes = await core.listNode({ labelSelector: `${RUN_LABEL}=${run}` });
  for (const n of nodes.items) await core.deleteNode({ name: n.metadata!.name! });
});

test('an agent that ran a later epoch than status.epoch moves the overlay past it, with an Event', async () => {
  await until('epoch 1', async () => ((await overlayEpoch()) === 1 ? true : undefined));
  const n1 = new AgentStandIn(kc, OVL, nodeName(1), namespace);
  await until('n1 tunnel', async () => {
    try {
      await n1.publishKeys();
      return true;
    } catch {
      return undefined;
    }
  });
  // n1 ran epoch 4 before the overlay's status was restored from an older backup
  await n1.report([{ node: nodeName(2), state: 'Encrypted', epoch: 4 }], 4);
  await until('epoch 5', async () => ((await overlayEpoch()) === 5 ? true : undefined));
  const events = await until('EpochRolledForward event', async () => {
    const list = await core.listNamespacedEvent({
      namespace: 'default',
      fieldSelector: `involvedObject.name=${OVL}`,
    });
    const e = list.items.find((x) => x.reason === 'EpochRolledForward');
    return e ?? undefined;
  });
  expect(events.message).toContain(`${nodeName(1)} already ran epoch 4; moving to epoch 5`);
});

test('the CRD refuses a status.epoch that goes down', async () => {
  const err = await custom
    .patchClusterCustomObjectStatus(
      {
        group: GROUP,
        version: VERSION,
        plural: OVERLAY_NETWORK_PLURAL,
        name: OVL,
        body: { status: { epoch: 2 } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    )
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  expect(err).toBeDefined();
  expect(describeError(err)).toContain('epoch must not decrease');
  expect(await overlayEpoch()).toBe(5);
});
