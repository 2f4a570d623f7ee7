// The informer against the real API server: list, watch, restarts and relists.
import { CoreV1Api, type V1ConfigMap } from '@kubernetes/client-node';
import { coreResources } from '../../lib/kube.js';
import { Informer, type EventHandler } from '../../lib/runtime/informer.js';
import { RuntimeMetrics } from '../../lib/runtime/metrics.js';
import {
  KubeRest,
  type ListWatchClient,
  type Query,
  type RawList,
  type WatchCallbacks,
  type WatchHandle,
} from '../../lib/runtime/rest.js';
import { jest } from '@jest/globals';
import { kubeConfig, uniqueName } from '../support/cluster.js';

jest.setTimeout(30_000);

const kc = kubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const ns = uniqueName('rt-informer');
const informers: Informer<V1ConfigMap>[] = [];

/** The real client, with a switch that makes new watches silent (a connection that delivers nothing). */
class SilenceableClient implements ListWatchClient {
  silent = false;
  constructor(private readonly real: KubeRest) {}
  list(path: string, query: Query, signal?: AbortSignal): Promise<RawList> {
    return this.real.list(path, query, signal);
  }
  watch(path: string, query: Query, cb: WatchCallbacks): WatchHandle {
    if (this.silent) return { abort: () => {} };
    return this.real.watch(path, query, cb);
  }
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function recorder(): { events: string[]; handler: EventHandler<V1ConfigMap> } {
  const events: string[] = [];
  return {
    events,
    handler: {
      onAdd: (o) => events.push(`add ${o.metadata?.name}`),
      onUpdate: (old, o) => {
        if (old.metadata?.resourceVersion !== o.metadata?.resourceVersion)
          events.push(`update ${o.metadata?.name}`);
      },
      onDelete: (o) => events.push(`delete ${o.metadata?.name}`),
    },
  };
}

function newInformer(
  client: ListWatchClient,
  extra: Partial<ConstructorParameters<typeof Informer>[0]> = {},
): { informer: Informer<V1ConfigMap>; events: string[]; metrics: RuntimeMetrics } {
  const metrics = new RuntimeMetrics(undefined, { defaultMetrics: false });
  const informer = new Informer<V1ConfigMap>({
    resource: coreResources.configmaps,
    namespace: ns,
    labelSelector: 'rt-test=yes',
    client,
    metrics,
    backoffBaseMs: 100,
    backoffMaxMs: 1_000,
    ...extra,
  });
  const rec = recorder();
  informer.addHandler(rec.handler);
  informers.push(informer);
  return { informer, events: rec.events, metrics };
}

const labelled = { 'rt-test': 'yes' };
const createCm = (
  name: string,
  data: Record<string, string> = {},
  labels: Record<string, string> = labelled,
) => core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name, labels }, data } });
const deleteCm = (name: string) => core.deleteNamespacedConfigMap({ name, namespace: ns });
const patchData = async (name: string, data: Record<string, string>) => {
  const cm = await core.readNamespacedConfigMap({ name, namespace: ns });
  cm.data = data;
  await core.replaceNamespacedConfigMap({ name, namespace: ns, body: cm });
};

async function restarts(metrics: RuntimeMetrics, reason: string): Promise<number> {
  const v = (await metrics.watchRestarts.get()).values.find((x) => x.labels.reason === reason);
  return v?.value ?? 0;
}

beforeAll(async () => {
  await core.createNamespace({ body: { metadata: { name: ns } } });
});

afterAll(async () => {
  await Promise.all(informers.map((i) => i.stop()));
  // Without a namespace controller the namespace stays Terminating; its objects are ours and unique anyway.
  await core.deleteNamespace({ name: ns }).catch(() => undefined);
});

test('lists on start, waitForSync resolves, and add/update/delete events arrive (label selector applies)', async () => {
  await createCm('pre', { k: '0' });
  const { informer, events } = newInformer(new KubeRest(kc));
  informer.start();
  await expect(informer.waitForSync()).resolves.toBe(true);
  expect(informer.hasSynced()).toBe(true);
  expect(informer.get('pre', ns)?.data).toEqual({ k: '0' });

  await createCm('other', {}, { 'rt-test': 'no' });
  await createCm('x', { k: '1' });
  await waitFor('add x', () => informer.get('x', ns) !== undefined);
  await patchData('x', { k: '2' });
  await waitFor('update x', () => informer.get('x', ns)?.data?.k === '2');
  await deleteCm('x');
  await waitFor('delete x', () => informer.get('x', ns) === undefined);

  expect(events).toEqual(['add pre', 'add x', 'update x', 'delete x']);
  expect(informer.get('other', ns)).toBeUndefined();
  await informer.stop();
});

test('a watch the server closes (timeoutSeconds) is restarted and later events still arrive', async () => {
  const { informer, events, metrics } = newInformer(new KubeRest(kc), { watchTimeoutSeconds: 1 });
  informer.start();
  await informer.waitForSync();
  await new Promise((r) => setTimeout(r, 2_500));
  expect(await restarts(metrics, 'closed')).toBeGreaterThanOrEqual(1);
  await createCm('after-close');
  await waitFor('add after-close', () => events.includes('add after-close'));
  await informer.stop();
});

test('restartWatch() resumes from the last resourceVersion without losing events', async () => {
  const { informer, events, metrics } = newInformer(new KubeRest(kc));
  informer.start();
  await informer.waitForSync();
  await waitFor('watch open', () => informer.isWatching());
  informer.restartWatch();
  await createCm('after-restart');
  await waitFor('add after-restart', () => events.includes('add after-restart'));
  expect(await restarts(metrics, 'manual')).toBe(1);
  await informer.stop();
});

test('a watch that goes silent is restarted by the watchdog and catches up on what it missed', async () => {
  const client = new SilenceableClient(new KubeRest(kc));
  const { informer, events, metrics } = newInformer(client, { stallTimeoutMs: 1_500 });
  informer.start();
  await informer.waitForSync();
  await waitFor('watch open', () => informer.isWatching());
  client.silent = true;
  informer.restartWatch(); // the next watch "connects" but never delivers anything
  await new Promise((r) => setTimeout(r, 300));
  await createCm('during-stall');
  await new Promise((r) => setTimeout(r, 500));
  expect(events).not.toContain('add during-stall');
  client.silent = false;
  await waitFor('add during-stall', () => events.includes('add during-stall'));
  expect(await restarts(metrics, 'stalled')).toBeGreaterThanOrEqual(1);
  await informer.stop();
});

test('a relist after a disconnection emits the adds, updates and deletions missed meanwhile', async () => {
  const client = new SilenceableClient(new KubeRest(kc));
  const { informer, events } = newInformer(client, { stallTimeoutMs: 60_000 });
  await createCm('keep', { v: '1' });
  await createCm('change', { v: '1' });
  await createCm('remove');
  informer.start();
  await informer.waitForSync();
  await waitFor('watch open', () => informer.isWatching());
  client.silent = true;
  informer.restartWatch();
  await new Promise((r) => setTimeout(r, 200));
  await patchData('change', { v: '2' });
  await deleteCm('remove');
  await createCm('new');
  const before = events.length;
  client.silent = false;
  informer.relist(); // what a 410 Gone triggers
  await waitFor('relist', () => informer.get('new', ns) !== undefined);
  const missed = events.slice(before).filter((e) => /keep|change|remove|new/.test(e));
  expect(missed.sort()).toEqual(['add new', 'delete remove', 'update change']);
  expect(informer.get('change', ns)?.data).toEqual({ v: '2' });
  await informer.stop();
});

test("metadataOnly: list and watch deliver PartialObjectMetadata without the objects' data", async () => {
  await createCm('meta-pre', { big: 'x'.repeat(1000) });
  const { informer, events } = newInformer(new KubeRest(kc), { metadataOnly: true });
  informer.start();
  await informer.waitForSync();
  const listed = informer.get('meta-pre', ns) as unknown as Record<string, unknown>;
  expect(listed).toMatchObject({
    kind: 'PartialObjectMetadata',
    apiVersion: 'meta.k8s.io/v1',
    metadata: { name: 'meta-pre', labels: labelled },
  });
  expect(listed.data).toBeUndefined();

  await createCm('meta-new', { k: 'v' });
  await waitFor('add meta-new', () => informer.get('meta-new', ns) !== undefined);
  const rvBefore = informer.get('meta-new', ns)?.metadata?.resourceVersion;
  await patchData('meta-new', { k: 'changed' });
  await waitFor(
    'update meta-new',
    () => informer.get('meta-new', ns)?.metadata?.resourceVersion !== rvBefore,
  );
  const watched = informer.get('meta-new', ns) as unknown as Record<string, unknown>;
  expect(watched).toMatchObject({ kind: 'PartialObjectMetadata', metadata: { name: 'meta-new' } });
  expect(watched.data).toBeUndefined();
  await deleteCm('meta-new');
  await waitFor('delete meta-new', () => informer.get('meta-new', ns) === undefined);
  expect(events.filter((e) => e.includes('meta-'))).toEqual([
    'add meta-pre',
    'add meta-new',
    'update meta-new',
    'delete meta-new',
  ]);
  await informer.stop();
});
