// Version skew (issue #18 scenario 4) against the real API server, with stand-in agents that publish what
// they run in status.agent as the real agent does (test/support/standin.ts): an agent older than the
// supported skew is named in Degraded and an Event, a rotation asked for by hand is refused with a reason that
// names it (never a silent stall at the staging timeout), and once the agent runs a release inside the skew
// the same request starts the rotation.
import { Writable } from 'node:stream';
import { jest } from '@jest/globals';
import { CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { pino } from 'pino';
import {
  GROUP,
  OVERLAY_NETWORK_PLURAL,
  ROTATE_ANNOTATION,
  VERSION,
} from '../../api/v1alpha1/groupversion.js';
import { createOperator, type Operator } from '../../operator/app.js';
import { kubeConfig, uniqueName } from '../support/cluster.js';
import { installCRDs } from '../support/crds.js';
import { createNode, deleteNodes } from '../support/nodes.js';
import { deleteOverlays } from '../support/overlays.js';
import { AgentStandIn } from '../support/standin.js';
import { until } from '../support/wait.js';

jest.setTimeout(120_000);

const kc = kubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);
const run = uniqueName('skew');
const namespace = run;
const RUN_LABEL = 'sealmesh.io/test-run';
const logger = pino({ level: 'warn' }, new Writable({ write: (_c, _e, cb) => cb() }));
const OVL = `${run}-mesh`;
const nodeName = (i: number) => `${run}-n${i}`;
const NODES = [1, 2, 3];
let operator: Operator;
const standIns = new Map<number, AgentStandIn>();

type Condition = { type: string; status: string; reason: string; message: string };
interface Overlay {
  status?: {
    epoch?: number;
    rotation?: { phase: string; targetEpoch: number };
    pairs?: { total: number; encrypted: number };
    conditions?: Condition[];
  };
}

const overlay = async () =>
  (await custom.getClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: OVERLAY_NETWORK_PLURAL,
    name: OVL,
  })) as Overlay;
const condition = (o: Overlay, type: string) => o.status?.conditions?.find((c) => c.type === type);

async function events(reason: string) {
  const list = await core.listNamespacedEvent({
    namespace: 'default',
    fieldSelector: `involvedObject.name=${OVL}`,
  });
  return list.items.filter((e) => e.reason === reason);
}

beforeAll(async () => {
  await installCRDs(kc);
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  for (const i of NODES) {
    await createNode(core, {
      name: nodeName(i),
      labels: { [RUN_LABEL]: run, 'sealmesh.io/member': run },
      podCIDR: `10.249.${40 + i}.0/24`,
      internalIP: `198.18.4.${i}`,
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
    statusIntervalMs: 0,
    rotationTimings: { stageTimeoutMs: 60_000 },
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
      spec: { nodeSelector: { matchLabels: { 'sealmesh.io/member': run } }, addressPool: '100.76.0.0/24' },
    },
  });
  for (const i of NODES) {
    const s = new AgentStandIn(kc, OVL, nodeName(i), namespace);
    // n3 runs a release from before agents published one
    if (i === 3) s.agent = null;
    standIns.set(i, s);
    await until(`n${i} tunnel`, async () => {
      try {
        await s.publishKeys();
        return true;
      } catch {
        return undefined;
      }
    });
  }
  for (const i of NODES)
    for (const j of NODES)
      if (i < j) await until(`psk ${i}/${j}`, () => standIns.get(i)!.psk(nodeName(j), 1));
  for (const i of NODES) {
    await standIns.get(i)!.heartbeat();
    const peers = NODES.filter((j) => j !== i).map((j) => ({
      node: nodeName(j),
      state: 'Encrypted',
      epoch: 1,
    }));
    await standIns.get(i)!.report(peers, 1);
  }
  await until('3/3 encrypted', async () => (await overlay()).status?.pairs?.encrypted === 3);
});

afterAll(async () => {
  await deleteOverlays(kc, run);
  await operator?.stop();
  await deleteNodes(core, `${RUN_LABEL}=${run}`);
  await core.deleteNamespace({ name: namespace });
});

test('an agent outside the supported skew is named, a rotation is refused naming it, and starts once it is upgraded (agents one release older and newer take part)', async () => {
  // named: Degraded and one Event; its pairs carry on, so Ready stays True
  const degraded = await until('Degraded AgentVersionSkew', async () => {
    const c = condition(await overlay(), 'Degraded');
    return c?.reason === 'AgentVersionSkew' ? c : undefined;
  });
  expect(degraded.status).toBe('True');
  expect(degraded.message).toContain(`${nodeName(3)} (publishes no version: older than 0.2.0)`);
  expect(degraded.message).not.toContain(nodeName(1));
  expect(condition(await overlay(), 'Ready')).toMatchObject({ status: 'True' });
  const named = await until('an AgentVersionSkew Event', async () => (await events('AgentVersionSkew'))[0]);
  expect(named.type).toBe('Warning');
  expect(named.message).toContain(nodeName(3));

  // a rotation asked for by hand: refused, naming the agent; nothing staged, the epoch stays
  await custom.patchClusterCustomObject(
    {
      group: GROUP,
      version: VERSION,
      plural: OVERLAY_NETWORK_PLURAL,
      name: OVL,
      body: { metadata: { annotations: { [ROTATE_ANNOTATION]: 'skew-1' } } },
    },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
  const refused = await until('a RotationRefused Event', async () => (await events('RotationRefused'))[0]);
  expect(refused.type).toBe('Warning');
  expect(refused.message).toBe(
    `a rotation is due but not started, epoch 1 kept: agents cannot take part in a rotation: ${nodeName(3)} ` +
      '(publishes no version: older than 0.2.0)',
  );
  await new Promise((r) => setTimeout(r, 3_000)); // passes that see the same refusal
  const held = await overlay();
  expect(held.status?.rotation).toBeUndefined();
  expect(held.status?.epoch).toBe(1);
  expect(await events('RotationStarted')).toEqual([]);
  expect((await events('RotationRefused')).map((e) => e.count ?? 1)).toEqual([1]);

  // n3 upgraded to one release behind the operator, n1 one release ahead (both read its key payload): inside
  // the skew either way
  standIns.get(1)!.agent = { version: '0.3.0', keyPayloads: [2, 3] };
  await standIns.get(1)!.publishKeys();
  standIns.get(3)!.agent = { version: '0.1.9', keyPayloads: [2] };
  await standIns.get(3)!.publishKeys();
  const started = await until('the rotation starts', async () => {
    const o = await overlay();
    return o.status?.rotation ? o : undefined;
  });
  expect(started.status?.rotation).toMatchObject({ phase: 'Staging', targetEpoch: 2 });
  expect(condition(started, 'Degraded')?.reason).not.toBe('AgentVersionSkew');
  expect((await events('RotationStarted')).length).toBe(1);
});
