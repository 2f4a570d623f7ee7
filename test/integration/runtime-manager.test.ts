// The controller manager end to end against the real API server: informers, mapping of secondary events to
// owner keys, leader election with standby takeover, the health/metrics server and graceful shutdown.
import { jest } from '@jest/globals';
import { CoordinationV1Api, CoreV1Api, type V1ConfigMap, type V1Secret } from '@kubernetes/client-node';
import { coreResources } from '../../lib/kube.js';
import { KubeLeaseClient } from '../../lib/runtime/leader.js';
import { Manager, watch } from '../../lib/runtime/manager.js';
import { RuntimeMetrics } from '../../lib/runtime/metrics.js';
import { KubeRest } from '../../lib/runtime/rest.js';
import { kubeConfig, uniqueName } from '../support/cluster.js';

jest.setTimeout(40_000);

const kc = kubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const coordination = kc.makeApiClient(CoordinationV1Api);
const ns = uniqueName('rt-manager');
const managers: Manager[] = [];

async function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A manager whose one controller owns labelled ConfigMaps and maps Secrets to them by the `owner` label. */
function newManager(identity: string, lease: string, reconciled: string[]): Manager {
  const rest = new KubeRest(kc);
  const manager = new Manager({
    name: identity,
    metrics: new RuntimeMetrics(),
    server: { host: '127.0.0.1', port: 0 },
    resyncPeriodMs: 0,
    leaderElection: {
      namespace: ns,
      name: lease,
      identity,
      client: new KubeLeaseClient(kc),
      leaseDurationMs: 3_000,
      renewDeadlineMs: 2_000,
      retryPeriodMs: 1_000,
    },
  });
  const configMaps = manager.newInformer<V1ConfigMap>({
    resource: coreResources.configmaps,
    namespace: ns,
    labelSelector: 'rt-test=yes',
    client: rest,
  });
  const secrets = manager.newInformer<V1Secret>({
    resource: coreResources.secrets,
    namespace: ns,
    labelSelector: 'owner',
    client: rest,
  });
  manager.addController({
    name: 'configmap',
    for: configMaps,
    watches: [
      watch(secrets, (s) => (s.metadata?.labels?.owner ? `${ns}/${s.metadata.labels.owner}` : undefined)),
    ],
    reconcile: (key, ctx) => {
      if (ctx.signal.aborted) return Promise.resolve(); // a deposed leader must not act
      reconciled.push(key);
      return Promise.resolve();
    },
  });
  managers.push(manager);
  return manager;
}

async function http(manager: Manager, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${manager.server!.port()}${path}`);
  return { status: res.status, body: await res.text() };
}

beforeAll(async () => {
  await core.createNamespace({ body: { metadata: { name: ns } } });
});

afterAll(async () => {
  await Promise.all(managers.map((m) => m.stop()));
  await core.deleteNamespace({ name: ns }).catch(() => undefined);
});

test('reconciles owned objects and the owners of secondary objects; serves health, readiness and metrics', async () => {
  const lease = uniqueName('lease');
  const reconciled: string[] = [];
  await core.createNamespacedConfigMap({
    namespace: ns,
    body: { metadata: { name: 'pre', labels: { 'rt-test': 'yes' } } },
  });
  const m = newManager('m1', lease, reconciled);
  await m.start();
  expect(m.hasSynced()).toBe(true);
  await expect(http(m, '/readyz')).resolves.toMatchObject({ status: 200 });
  await expect(http(m, '/healthz')).resolves.toMatchObject({ status: 200 });
  await waitFor('leading and reconciling pre', () => reconciled.includes(`${ns}/pre`));
  expect(m.leader?.isLeader()).toBe(true);

  await core.createNamespacedConfigMap({
    namespace: ns,
    body: { metadata: { name: 'a', labels: { 'rt-test': 'yes' } } },
  });
  await waitFor('reconcile of a', () => reconciled.includes(`${ns}/a`));
  const before = reconciled.filter((k) => k === `${ns}/a`).length;
  await core.createNamespacedSecret({
    namespace: ns,
    body: { metadata: { name: 's', labels: { owner: 'a' } }, stringData: { note: 'not a key' } },
  });
  await waitFor(
    'secret event maps to its owner',
    () => reconciled.filter((k) => k === `${ns}/a`).length > before,
  );

  const metrics = await http(m, '/metrics');
  expect(metrics.body).toMatch(/sealmesh_reconcile_total\{controller="configmap",result="success"\} [1-9]/);
  expect(metrics.body).toContain('sealmesh_leader{lease="' + lease + '"} 1');
  expect(metrics.body).toMatch(
    /sealmesh_informer_cache_objects\{informer="configmaps\/rt-manager-[0-9a-f]+"\} [1-9]/,
  );

  await m.stop();
  await expect(m.done).resolves.toBe('shutdown');
  const l = await coordination.readNamespacedLease({ name: lease, namespace: ns });
  expect(l.spec?.holderIdentity).toBe(''); // released
});

test('a standby is ready but idle, and takes over (reconciling everything) when the leader shuts down', async () => {
  const lease = uniqueName('lease');
  const r1: string[] = [];
  const r2: string[] = [];
  await core.createNamespacedConfigMap({
    namespace: ns,
    body: { metadata: { name: 'b', labels: { 'rt-test': 'yes' } } },
  });
  const m1 = newManager('leader', lease, r1);
  await m1.start();
  await waitFor('m1 leads', () => m1.isActive());
  const m2 = newManager('standby', lease, r2);
  await m2.start();
  await new Promise((r) => setTimeout(r, 1_500));
  expect(m2.isActive()).toBe(false);
  await expect(http(m2, '/readyz')).resolves.toMatchObject({ status: 200 });
  expect(r2).toEqual([]);

  await m1.stop();
  await waitFor('m2 takes over', () => m2.isActive(), 5_000);
  await waitFor('m2 reconciles b', () => r2.includes(`${ns}/b`));
  await m2.stop();
});
