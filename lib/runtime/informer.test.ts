import { KubeApiError, coreResources } from '../kube.js';
import { FakeClock, flushMicrotasks } from './testing/clock.js';
import { Informer, type EventHandler } from './informer.js';
import { FakeListWatchClient } from './testing/fakes.js';
import type { RawList, RawObject } from './rest.js';

const cm = (name: string, rv: string, data: Record<string, string> = {}): RawObject => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, namespace: 'ns', resourceVersion: rv },
  data,
});

const list = (rv: string, ...items: RawObject[]): RawList => ({ metadata: { resourceVersion: rv }, items });

function recorder(): { events: string[]; handler: EventHandler<RawObject> } {
  const events: string[] = [];
  const name = (o: RawObject): string => `${o.metadata?.name}@${o.metadata?.resourceVersion}`;
  return {
    events,
    handler: {
      onAdd: (o) => events.push(`add ${name(o)}`),
      onUpdate: (old, o) => events.push(`update ${name(old)}->${name(o)}`),
      onDelete: (o) => events.push(`delete ${name(o)}`),
    },
  };
}

function setup(
  opts: {
    stallTimeoutMs?: number;
    resyncPeriodMs?: number;
    pageSize?: number;
    metadataOnly?: boolean;
    transform?: (o: RawObject) => RawObject;
  } = {},
) {
  const clock = new FakeClock();
  const client = new FakeListWatchClient();
  const informer = new Informer<RawObject>({
    resource: coreResources.configmaps,
    namespace: 'ns',
    labelSelector: 'app=x',
    client,
    clock,
    watchTimeoutSeconds: 60,
    backoffBaseMs: 100,
    backoffMaxMs: 1_000,
    ...opts,
  });
  const rec = recorder();
  informer.addHandler(rec.handler);
  return { clock, client, informer, events: rec.events };
}

describe('Informer', () => {
  test('first list fills the cache, marks it synced, then watches from the list resourceVersion', async () => {
    const { client, informer, events } = setup();
    client.listResults.push(list('10', cm('a', '5'), cm('b', '6')));
    const synced = informer.waitForSync();
    expect(informer.hasSynced()).toBe(false);
    informer.start();
    await expect(synced).resolves.toBe(true);
    expect(events).toEqual(['add a@5', 'add b@6']);
    expect(informer.get('a', 'ns')?.metadata?.resourceVersion).toBe('5');
    expect(informer.keys()).toContain('ns/b');
    expect(informer.list().map((o) => o.metadata?.name)).toEqual(['a', 'b']);
    expect(client.listQueries[0]).toMatchObject({ labelSelector: 'app=x', limit: 500 });
    expect(client.current().query).toMatchObject({
      resourceVersion: '10',
      allowWatchBookmarks: true,
      labelSelector: 'app=x',
      timeoutSeconds: 60,
    });
    await informer.stop();
  });

  test('watch events update the cache and reach handlers; bookmarks only move the resourceVersion', async () => {
    const { client, informer, events } = setup();
    client.listResults.push(list('10'));
    informer.start();
    await informer.waitForSync();
    await flushMicrotasks();
    client.send({ type: 'ADDED', object: cm('a', '11') });
    client.send({ type: 'MODIFIED', object: cm('a', '12', { k: 'v' }) });
    client.send({ type: 'BOOKMARK', object: { metadata: { resourceVersion: '13' } } });
    expect(informer.get('a', 'ns')).toMatchObject({ data: { k: 'v' } });
    client.send({ type: 'DELETED', object: cm('a', '14') });
    expect(informer.get('a', 'ns')).toBeUndefined();
    expect(events).toEqual(['add a@11', 'update a@11->a@12', 'delete a@14']);
    expect(informer.lastResourceVersion()).toBe('14');
    await informer.stop();
  });

  test('a watch the server closes is resumed from the last resourceVersion without a relist', async () => {
    const { client, informer, clock } = setup();
    client.listResults.push(list('10'));
    informer.start();
    await informer.waitForSync();
    await flushMicrotasks();
    client.send({ type: 'BOOKMARK', object: { metadata: { resourceVersion: '20' } } });
    await clock.advance(5_000);
    client.current().cb.onClose();
    await flushMicrotasks();
    expect(client.watches).toHaveLength(2);
    expect(client.current().query.resourceVersion).toBe('20');
    expect(client.listQueries).toHaveLength(1);
    await informer.stop();
  });

  test('a watch error restarts the watch after an exponential backoff', async () => {
    const { client, informer, clock } = setup();
    client.listResults.push(list('10'));
    informer.start();
    await informer.waitForSync();
    await flushMicrotasks();
    client.current().cb.onClose(new Error('connection reset'));
    await flushMicrotasks();
    expect(client.activeWatches()).toBe(0);
    await clock.advance(99);
    expect(client.activeWatches()).toBe(0);
    await clock.advance(1);
    expect(client.activeWatches()).toBe(1);
    // Second consecutive failure waits twice as long.
    client.current().cb.onClose(new KubeApiError('boom', 500));
    await clock.advance(199);
    expect(client.activeWatches()).toBe(0);
    await clock.advance(1);
    expect(client.activeWatches()).toBe(1);
    expect(client.current().query.resourceVersion).toBe('10');
    await informer.stop();
  });

  test('410 Gone relists and emits the differences, including deletions missed while disconnected', async () => {
    const { client, informer, events } = setup();
    client.listResults.push(list('10', cm('keep', '1'), cm('change', '2'), cm('gone', '3')));
    informer.start();
    await informer.waitForSync();
    await flushMicrotasks();
    events.length = 0;
    client.listResults.push(list('50', cm('keep', '1'), cm('change', '40'), cm('new', '45')));
    client.send({
      type: 'ERROR',
      object: { kind: 'Status', code: 410, reason: 'Expired', message: 'too old' },
    });
    await flushMicrotasks();
    expect(events.sort()).toEqual(['add new@45', 'delete gone@3', 'update change@2->change@40'].sort());
    expect(informer.keys().sort()).toEqual(['ns/change', 'ns/keep', 'ns/new']);
    expect(client.current().query.resourceVersion).toBe('50');
    await informer.stop();
  });

  test('410 as an HTTP status of the watch request also relists', async () => {
    const { client, informer } = setup();
    client.listResults.push(list('10'));
    informer.start();
    await informer.waitForSync();
    await flushMicrotasks();
    client.listResults.push(list('60', cm('x', '55')));
    client.current().cb.onClose(new KubeApiError('gone', 410, 'Expired'));
    await flushMicrotasks();
    expect(client.listQueries).toHaveLength(2);
    expect(informer.get('x', 'ns')).toBeDefined();
    expect(client.current().query.resourceVersion).toBe('60');
    await informer.stop();
  });

  test('a 410 that repeats right after relisting backs off instead of spinning', async () => {
    const { client, informer, clock } = setup();
    client.listResults.push(list('10'), list('20'), list('30'));
    informer.start();
    await informer.waitForSync();
    await flushMicrotasks();
    const gone = { type: 'ERROR', object: { code: 410, message: 'too old' } };
    client.send(gone); // first 410: relist at once
    await flushMicrotasks();
    expect(client.listQueries).toHaveLength(2);
    client.send(gone); // again, before anything was delivered: wait first
    await flushMicrotasks();
    expect(client.listQueries).toHaveLength(2);
    await clock.advance(200);
    expect(client.listQueries).toHaveLength(3);
    await informer.stop();
  });

  test('a watch that stalls (no event, no bookmark) is restarted by the watchdog', async () => {
    const { client, informer, clock } = setup({ stallTimeoutMs: 10_000 });
    client.listResults.push(list('10'));
    informer.start();
    await informer.waitForSync();
    await flushMicrotasks();
    const first = client.current();
    await clock.advance(9_000);
    client.send({ type: 'BOOKMARK', object: { metadata: { resourceVersion: '11' } } }); // resets the watchdog
    await clock.advance(9_000);
    expect(first.aborted).toBe(false);
    await clock.advance(1_000);
    expect(first.aborted).toBe(true);
    await clock.advance(100); // backoff
    expect(client.activeWatches()).toBe(1);
    expect(client.current().query.resourceVersion).toBe('11');
    await informer.stop();
  });

  test('restartWatch() ends the current watch and resumes from the last resourceVersion', async () => {
    const { client, informer } = setup();
    client.listResults.push(list('10'));
    informer.start();
    await informer.waitForSync();
    await flushMicrotasks();
    client.send({ type: 'ADDED', object: cm('a', '12') });
    const first = client.current();
    informer.restartWatch();
    await flushMicrotasks(); // no backoff for a requested restart
    expect(first.aborted).toBe(true);
    expect(client.current().query.resourceVersion).toBe('12');
    expect(client.listQueries).toHaveLength(1);
    await informer.stop();
  });

  test('a failed first list is retried with backoff; waitForSync resolves after it succeeds', async () => {
    const { client, informer, clock } = setup();
    client.listResults.push(new Error('connection refused'), list('10', cm('a', '1')));
    let synced: boolean | undefined;
    void informer.waitForSync().then((ok) => (synced = ok));
    informer.start();
    await flushMicrotasks();
    expect(synced).toBeUndefined();
    await clock.advance(100);
    expect(synced).toBe(true);
    expect(informer.list()).toHaveLength(1);
    await informer.stop();
  });

  test('lists page by page', async () => {
    const { client, informer } = setup({ pageSize: 2 });
    client.listResults.push(
      { metadata: { resourceVersion: '9', continue: 'tok' }, items: [cm('a', '1'), cm('b', '2')] },
      { metadata: { resourceVersion: '10' }, items: [cm('c', '3')] },
    );
    informer.start();
    await informer.waitForSync();
    await flushMicrotasks();
    expect(informer.keys()).toEqual(['ns/a', 'ns/b', 'ns/c']);
    expect(client.listQueries.map((q) => q.continue)).toEqual([undefined, 'tok']);
    expect(client.current().query.resourceVersion).toBe('10');
    await informer.stop();
  });

  test('transform applies to every listed and watched object before it is cached or handed on', async () => {
    const strip = (o: RawObject): RawObject => ({
      ...o,
      data: { size: String(Object.keys(o.data ?? {}).length) },
    });
    const { client, informer, events } = setup({ pageSize: 1, transform: strip });
    client.listResults.push(
      { metadata: { resourceVersion: '9', continue: 'tok' }, items: [cm('a', '1', { x: '1', y: '2' })] },
      { metadata: { resourceVersion: '10' }, items: [cm('b', '2', { x: '1' })] },
    );
    const seen: unknown[] = [];
    informer.addHandler({ onUpdate: (_old, o) => seen.push(o.data), onDelete: (o) => seen.push(o.data) });
    informer.start();
    await informer.waitForSync();
    await flushMicrotasks();
    expect(informer.get('a', 'ns')?.data).toEqual({ size: '2' });
    expect(informer.get('b', 'ns')?.data).toEqual({ size: '1' });
    client.send({ type: 'MODIFIED', object: cm('a', '11', { x: '1', y: '2', z: '3' }) });
    expect(informer.get('a', 'ns')?.data).toEqual({ size: '3' });
    client.send({ type: 'DELETED', object: cm('b', '12', { x: '1', y: '2', z: '3', w: '4' }) });
    expect(seen).toEqual([{ size: '3' }, { size: '4' }]);
    expect(events).toEqual(['add a@1', 'add b@2', 'update a@1->a@11', 'delete b@12']);
    await informer.stop();
  });

  test('managedFields are never cached, listed or watched', async () => {
    const withFields = (name: string, rv: string): RawObject => ({
      ...cm(name, rv),
      metadata: {
        ...cm(name, rv).metadata,
        managedFields: [{ manager: 'agent', fieldsV1: { 'f:data': {} } }],
      },
    });
    const { client, informer } = setup();
    client.listResults.push(list('10', withFields('a', '5')));
    informer.start();
    await informer.waitForSync();
    await flushMicrotasks();
    client.send({ type: 'ADDED', object: withFields('b', '11') });
    for (const name of ['a', 'b']) {
      const cached = informer.get(name, 'ns')!;
      expect(cached.metadata).not.toHaveProperty('managedFields');
      expect(cached.metadata?.resourceVersion).toBeDefined();
    }
    await informer.stop();
  });

  test('metadataOnly asks for metadata on every list page and watch; without it nothing is asked', async () => {
    const { client, informer } = setup({ metadataOnly: true, pageSize: 1 });
    client.listResults.push(
      { metadata: { resourceVersion: '9', continue: 'tok' }, items: [cm('a', '1')] },
      { metadata: { resourceVersion: '10' }, items: [cm('b', '2')] },
    );
    informer.start();
    await informer.waitForSync();
    await flushMicrotasks();
    expect(client.listOptions).toEqual([{ metadataOnly: true }, { metadataOnly: true }]);
    expect(client.current().options).toEqual({ metadataOnly: true });
    await informer.stop();

    const plain = setup();
    plain.client.listResults.push(list('10'));
    plain.informer.start();
    await plain.informer.waitForSync();
    await flushMicrotasks();
    expect(plain.client.listOptions).toEqual([undefined]);
    expect(plain.client.current().options).toBeUndefined();
    await plain.informer.stop();
  });

  test('resync re-emits every cached object as an update', async () => {
    const { client, informer, clock, events } = setup({ resyncPeriodMs: 30_000 });
    client.listResults.push(list('10', cm('a', '1'), cm('b', '2')));
    informer.start();
    await informer.waitForSync();
    await flushMicrotasks();
    events.length = 0;
    await clock.advance(30_000);
    expect(events).toEqual(['update a@1->a@1', 'update b@2->b@2']);
    await informer.stop();
    await clock.advance(60_000);
    expect(events).toHaveLength(2);
  });

  test('stop() ends the watch, and waitForSync on a never-synced informer resolves false', async () => {
    const { client, informer } = setup();
    client.listResults.push(new Error('down'));
    informer.start();
    const synced = informer.waitForSync();
    await informer.stop();
    await expect(synced).resolves.toBe(false);
    expect(client.activeWatches()).toBe(0);
  });

  test('a throwing handler does not break the informer or other handlers', async () => {
    const { client, informer, events } = setup();
    informer.addHandler({
      onAdd: () => {
        throw new Error('handler bug');
      },
    });
    client.listResults.push(list('10', cm('a', '1')));
    informer.start();
    await informer.waitForSync();
    await flushMicrotasks();
    client.send({ type: 'ADDED', object: cm('b', '11') });
    expect(events).toEqual(['add a@1', 'add b@11']);
    await informer.stop();
  });
});
