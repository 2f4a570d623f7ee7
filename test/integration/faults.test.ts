// Faults the operator survives (issue #18), against the real API server, with stand-in agents:
// - scenario 2, an agent out of touch: a node's agent that stops renewing its liveness Lease (its node cut off
//   from the API) no longer counts as reporting: once its Lease expires its pairs read Unknown, Degraded says
//   AgentUnreachable naming it, and an Event says so; when it renews again, status is current again within
//   seconds and another Event says it is back;
// - scenario 3, a Node deleted while the operator is down: when an operator comes back, the node's NodeTunnel
//   and key Secret go, an Event says so, the other nodes' specs are not rewritten and every other pair keeps
//   its key.
import { Writable } from 'node:stream';
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { jest } from '@jest/globals';
import { pino } from 'pino';
import {
  GROUP,
  NODE_LABEL,
  NODE_TUNNEL_PLURAL,
  OVERLAY_LABEL,
  OVERLAY_NETWORK_PLURAL,
  VERSION,
} from '../../api/v1alpha1/groupversion.js';
import { decodeKeySecretData } from '../../lib/contract/keysecret.js';
import { createOperator, type Operator } from '../../operator/app.js';
import { kubeConfig, uniqueName } from '../support/cluster.js';
import { installCRDs } from '../support/crds.js';
import { createNode, deleteNodes } from '../support/nodes.js';
import { deleteOverlays } from '../support/overlays.js';
import { AgentStandIn } from '../support/standin.js';
import { until } from '../support/wait.js';

jest.setTimeout(120_000);

const kc: KubeConfig = kubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);
const run = uniqueName('fault');
const namespace = run;
const RUN_LABEL = 'sealmesh.io/test-run';
const logger = pino({ level: 'warn' }, new Writable({ write: (_c, _e, cb) => cb() }));
const OVL = `${run}-mesh`;
const nodeName = (i: number) => `${run}-n${i}`;
/** Short Leases, so the test waits seconds, not the agents' default 40 s. */
const LEASE_SECONDS = 3;
let operator: Operator;
const operatorOptions = () => ({
  kc,
  logger,
  namespace,
  identity: uniqueName('replica'),
  leaseName: `${run}-lease`,
  leaseDurationMs: 4_000,
  resyncPeriodMs: 0,
  statusIntervalMs: 0,
});
const standIns = new Map<number, AgentStandIn>();

interface Overlay {
  status?: {
    pairs?: { total: number; encrypted: number; degraded: number; unknown?: number };
    conditions?: Array<{ type: string; status: string; reason: string; message: string }>;
  };
}

async function overlay(): Promise<Overlay> {
  return (await custom.getClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: OVERLAY_NETWORK_PLURAL,
    name: OVL,
  })) as Overlay;
}

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
  for (const i of [1, 2, 3]) {
    await createNode(core, {
      name: nodeName(i),
      labels: { [RUN_LABEL]: run, 'sealmesh.io/member': run },
      podCIDR: `10.251.${i}.0/24`,
      internalIP: `198.18.3.${i}`,
    });
  }
  operator = await createOperator(operatorOptions());
  await operator.start();
  await custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: OVERLAY_NETWORK_PLURAL,
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'OverlayNetwork',
      metadata: { name: OVL },
      spec: { nodeSelector: { matchLabels: { 'sealmesh.io/member': run } }, addressPool: '100.75.0.0/24' },
    },
  });
  for (const i of [1, 2, 3]) {
    const s = new AgentStandIn(kc, OVL, nodeName(i), namespace);
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
  for (const i of [1, 2, 3])
    for (const j of [1, 2, 3])
      if (i < j) await until(`psk ${i}/${j}`, () => standIns.get(i)!.psk(nodeName(j), 1));
  for (const i of [1, 2, 3]) {
    await standIns.get(i)!.heartbeat(LEASE_SECONDS);
    const peers = [1, 2, 3]
      .filter((j) => j !== i)
      .map((j) => ({ node: nodeName(j), state: 'Encrypted', epoch: 1 }));
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

test('an agent that stops renewing its Lease: its pairs read Unknown with AgentUnreachable naming it, and it is current again seconds after it renews', async () => {
  // n1 and n2 keep renewing; n3 is cut off
  let renewing = true;
  const renew = (async () => {
    while (renewing) {
      for (const i of [1, 2]) await standIns.get(i)!.heartbeat(LEASE_SECONDS);
      await new Promise((r) => setTimeout(r, 500));
    }
  })();
  try {
    const encryptedEvents = (await events('PairEncrypted')).length;
    const cutAt = Date.now();
    const out = await until(
      'n3 out of touch',
      async () => {
        const o = await overlay();
        return o.status?.pairs?.unknown === 2 ? o : undefined;
      },
      30_000,
      100,
    );
    const noticed = Date.now() - cutAt;
    expect(out.status?.pairs).toEqual({ total: 3, encrypted: 1, degraded: 0, unknown: 2 });
    const degraded = out.status?.conditions?.find((c) => c.type === 'Degraded');
    expect(degraded).toMatchObject({ status: 'True', reason: 'AgentUnreachable' });
    expect(degraded?.message).toContain(`Lease not renewed: ${nodeName(3)}; 2 pair(s) Unknown`);
    expect(out.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'False',
      reason: 'AgentUnreachable',
    });
    const gone = await until('an AgentUnreachable Event', async () => (await events('AgentUnreachable'))[0]);
    expect(gone.message).toContain(`agent out of touch (Lease not renewed since `);
    expect(gone.message).toContain(`): ${nodeName(3)}; its pairs are Unknown`);

    const backAt = Date.now();
    await standIns.get(3)!.heartbeat(LEASE_SECONDS);
    const back = await until(
      'n3 current again',
      async () => {
        const o = await overlay();
        return o.status?.pairs?.encrypted === 3 && o.status.pairs.unknown === undefined ? o : undefined;
      },
      10_000,
      100,
    );
    const current = Date.now() - backAt;
    process.stdout.write(
      `[liveness] Lease of ${LEASE_SECONDS} s: Unknown ${noticed} ms after the last renewal; current again ${current} ms after the renewal\n`,
    );
    expect(back.status?.conditions?.find((c) => c.type === 'Degraded')?.status).toBe('False');
    const returned = await until('an AgentReachable Event', async () => (await events('AgentReachable'))[0]);
    expect(returned.message).toBe(`agent back in touch: ${nodeName(3)}`);
    // back without a PairEncrypted Event: its pairs never stopped
    expect((await events('PairEncrypted')).length).toBe(encryptedEvents);
  } finally {
    renewing = false;
    await renew;
  }
});

test("a Node deleted while the operator is down: its NodeTunnel and key Secret go when an operator is back, with an Event; the other nodes' specs are not rewritten and every other pair keeps its key", async () => {
  const tunnels = async () =>
    (
      (await custom.listClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: NODE_TUNNEL_PLURAL,
        labelSelector: `${OVERLAY_LABEL}=${OVL}`,
      })) as { items: Array<{ metadata: { generation: number }; spec: { nodeName: string } }> }
    ).items;
  const secrets = async () =>
    (await core.listNamespacedSecret({ namespace, labelSelector: `${OVERLAY_LABEL}=${OVL}` })).items;
  const before = await tunnels();
  const secretsBefore = await secrets();
  expect(before.map((t) => t.spec.nodeName).sort()).toEqual([1, 2, 3].map(nodeName));
  await operator.stop();
  await core.deleteNode({ name: nodeName(3) });
  operator = await createOperator(operatorOptions());
  await operator.start();
  const after = await until('n3 NodeTunnel gone', async () => {
    const t = await tunnels();
    return t.length === 2 ? t : undefined;
  });
  await until('n3 key Secret gone', async () =>
    (await secrets()).every((s) => s.metadata?.labels?.[NODE_LABEL] !== nodeName(3)),
  );
  const left = await until('a NodeLeft Event', async () => (await events('NodeLeft'))[0]);
  expect(left.message).toContain(nodeName(3));
  // the others: the same specs (generation unchanged)
  for (const t of after) {
    const was = before.find((b) => b.spec.nodeName === t.spec.nodeName);
    expect(t.metadata.generation).toBe(was?.metadata.generation);
    expect(t.spec).toEqual(was?.spec);
  }
  // A Secret that held a pair with the departed node is rewritten without it (which node owns a pair depends
  // on join order); every other pair keeps its key.
  const pairKeys = (list: Awaited<ReturnType<typeof secrets>>) =>
    new Map(
      list.flatMap((s) => {
        const d = decodeKeySecretData(s.data);
        return d.ok ? d.payload.pairs.map((p) => [`${p.a}/${p.b}`, p.fingerprint] as const) : [];
      }),
    );
  const was = pairKeys(secretsBefore);
  const now = await until('the pairs without n3', async () => {
    const m = pairKeys(await secrets());
    return [...m.keys()].some((k) => k.split('/').includes(nodeName(3))) ? undefined : m;
  });
  expect([...was.keys()].filter((k) => !k.split('/').includes(nodeName(3))).length).toBe(1);
  for (const [pair, fp] of was) if (!pair.split('/').includes(nodeName(3))) expect(now.get(pair)).toBe(fp);
  expect(now.size).toBe(1);
  const o = await until('1/1', async () => {
    const x = await overlay();
    return x.status?.pairs?.total === 1 ? x : undefined;
  });
  expect(o.status?.pairs).toMatchObject({ total: 1, encrypted: 1 });
});
