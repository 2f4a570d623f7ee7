import { coreResources, customResource } from '../kube.js';
import { FakeClock, flushMicrotasks } from './testing/clock.js';
import { FakeLeaseClient, FakeListWatchClient } from './testing/fakes.js';
import { Informer } from './informer.js';
import { Manager, mapTo, watch, type ReconcileContext } from './manager.js';
import { RuntimeMetrics } from './metrics.js';
import type { RawObject } from './rest.js';

const overlay = (name: string, rv: string): RawObject => ({
  apiVersion: 'sealmesh.io/v1alpha1',
  kind: 'OverlayNetwork',
  metadata: { name, resourceVersion: rv },
});
const tunnel = (name: string, owner: string, rv: string): RawObject => ({
  apiVersion: 'sealmesh.io/v1alpha1',
  kind: 'NodeTunnel',
  metadata: {
    name,
    resourceVersion: rv,
    ownerReferences: [{ apiVersion: 'sealmesh.io/v1alpha1', kind: 'OverlayNetwork', name: owner, uid: 'u' }],
  },
});
const list = (rv: string, ...items: RawObject[]) => ({ metadata: { resourceVersion: rv }, items });

function setup(opts: { leader?: FakeLeaseClient; resyncPeriodMs?: number; delayMs?: number } = {}) {
  const clock = new FakeClock();
  const overlaysClient = new FakeListWatchClient();
  const tunnelsClient = new FakeListWatchClient();
  const common = { clock, watchTimeoutSeconds: 60, backoffBaseMs: 100 };
  const overlays = new Informer<RawObject>({
    ...common,
    resource: customResource('sealmesh.io', 'v1alpha1', 'overlaynetworks'),
    client: overlaysClient,
  });
  const tunnels = new Informer<RawObject>({
    ...common,
    resource: customResource('sealmesh.io', 'v1alpha1', 'nodetunnels'),
    client: tunnelsClient,
  });
  const reconciled: string[] = [];
  const contexts: ReconcileContext[] = [];
  let release: (() => void) | undefined;
  const manager = new Manager({
    name: 'test',
    clock,
    metrics: new RuntimeMetrics(undefined, { defaultMetrics: false }),
    resyncPeriodMs: opts.resyncPeriodMs ?? 0,
    shutdownTimeoutMs: 1_000,
    leaderElection: opts.leader && {
      namespace: 'ns',
      name: 'lease',
      identity: 'me',
      client: opts.leader,
      leaseDurationMs: 3_000,
      renewDeadlineMs: 2_000,
      retryPeriodMs: 1_000,
      jitter: 0,
    },
  });
  manager.addController({
    name: 'overlay',
    for: overlays,
    watches: [{ ...watch(tunnels, mapTo.owner('OverlayNetwork')), delayMs: opts.delayMs ?? 0 }],
    reconcile: async (key, ctx) => {
      reconciled.push(key);
      contexts.push(ctx);
      if (key === 'slow') await new Promise<void>((r) => (release = r));
    },
  });
  return {
    clock,
    overlaysClient,
    tunnelsClient,
    overlays,
    tunnels,
    manager,
    reconciled,
    contexts,
    release: () => release?.(),
  };
}

describe('Manager', () => {
  test('starts workers only after every informer has its first list', async () => {
    const s = setup();
    s.overlaysClient.listResults.push(list('1', overlay('a', '1')));
    s.tunnelsClient.listResults.push(new Error('not yet'), list('1'));
    const started = s.manager.start();
    await flushMicrotasks();
    expect(s.manager.hasSynced()).toBe(false);
    expect(s.reconciled).toEqual([]);
    await s.clock.advance(100); // the tunnels informer retries its list
    await started;
    await flushMicrotasks();
    expect(s.manager.hasSynced()).toBe(true);
    expect(s.reconciled).toEqual(['a']);
    await s.manager.stop();
  });

  test('events on the owned kind enqueue its key; events on other kinds enqueue the owner', async () => {
    const s = setup();
    s.overlaysClient.listResults.push(list('1'));
    s.tunnelsClient.listResults.push(list('1'));
    await s.manager.start();
    await flushMicrotasks();
    s.overlaysClient.send({ type: 'ADDED', object: overlay('a', '2') });
    await flushMicrotasks();
    s.tunnelsClient.send({ type: 'ADDED', object: tunnel('b.node1', 'b', '3') });
    await flushMicrotasks();
    s.tunnelsClient.send({ type: 'DELETED', object: tunnel('b.node1', 'b', '4') });
    await flushMicrotasks();
    expect(s.reconciled).toEqual(['a', 'b', 'b']);
    await s.manager.stop();
    await expect(s.manager.done).resolves.toBe('shutdown');
  });

  test('a watch with delayMs takes a burst of events as one reconcile, delayMs after the first', async () => {
    const s = setup({ delayMs: 500 });
    s.overlaysClient.listResults.push(list('1'));
    s.tunnelsClient.listResults.push(list('1'));
    await s.manager.start();
    await flushMicrotasks();
    for (let i = 0; i < 20; i++) {
      s.tunnelsClient.send({ type: 'ADDED', object: tunnel(`b.node${i}`, 'b', String(10 + i)) });
      await s.clock.advance(10);
    }
    expect(s.reconciled).toEqual([]);
    await s.clock.advance(300); // 500 ms after the first event
    await flushMicrotasks();
    expect(s.reconciled).toEqual(['b']);
    // The owned kind itself is not delayed.
    s.overlaysClient.send({ type: 'ADDED', object: overlay('a', '40') });
    await flushMicrotasks();
    expect(s.reconciled).toEqual(['b', 'a']);
    await s.manager.stop();
  });

  test('resync re-enqueues every owned object', async () => {
    const s = setup({ resyncPeriodMs: 60_000 });
    s.overlaysClient.listResults.push(list('1', overlay('a', '1'), overlay('b', '1')));
    s.tunnelsClient.listResults.push(list('1'));
    await s.manager.start();
    await flushMicrotasks();
    expect(s.reconciled.sort()).toEqual(['a', 'b']);
    await s.clock.advance(66_000); // period ± 10 % jitter
    expect(s.reconciled.sort()).toEqual(['a', 'a', 'b', 'b']);
    await s.manager.stop();
  });

  test('with leader election, a standby keeps caches warm (ready) but reconciles nothing', async () => {
    const lease = new FakeLeaseClient();
    lease.write({ holderIdentity: 'other', leaseDurationSeconds: 30, renewTime: 0, leaseTransitions: 0 });
    const s = setup({ leader: lease });
    s.overlaysClient.listResults.push(list('1', overlay('a', '1')));
    s.tunnelsClient.listResults.push(list('1'));
    await s.manager.start();
    await s.clock.advance(5_000);
    expect(s.manager.hasSynced()).toBe(true);
    expect(s.manager.isActive()).toBe(false);
    expect(s.reconciled).toEqual([]);
    // The other holder releases; we take over and reconcile everything.
    lease.write({ holderIdentity: '', leaseDurationSeconds: 1, renewTime: 0, leaseTransitions: 0 });
    await s.clock.advance(1_000);
    expect(s.manager.isActive()).toBe(true);
    expect(s.reconciled).toEqual(['a']);
    await s.manager.stop();
  });

  test('losing leadership aborts the work signal, stops the workers and ends the manager', async () => {
    const lease = new FakeLeaseClient();
    const s = setup({ leader: lease });
    s.overlaysClient.listResults.push(list('1', overlay('slow', '1')));
    s.tunnelsClient.listResults.push(list('1'));
    await s.manager.start();
    await flushMicrotasks();
    expect(s.manager.leader?.isLeader()).toBe(true);
    expect(s.reconciled).toEqual(['slow']);
    const ctx = s.contexts[0]!;
    expect(ctx.signal.aborted).toBe(false);
    lease.write({ holderIdentity: 'usurper', leaseDurationSeconds: 30, renewTime: 0, leaseTransitions: 1 });
    await s.clock.advance(1_000);
    expect(ctx.signal.aborted).toBe(true);
    expect(s.manager.isActive()).toBe(false);
    s.overlaysClient.send({ type: 'ADDED', object: overlay('late', '2') });
    s.release(); // the in-flight reconcile finishes; the manager then completes its stop
    await expect(s.manager.done).resolves.toBe('lost-leadership');
    expect(s.reconciled).toEqual(['slow']);
    expect(s.overlaysClient.activeWatches()).toBe(0);
    // It did not release a Lease it no longer holds.
    expect(lease.state?.record.holderIdentity).toBe('usurper');
  });

  test('shutdown waits for reconciles in flight, then releases the Lease and stops the watches', async () => {
    const lease = new FakeLeaseClient();
    const s = setup({ leader: lease });
    s.overlaysClient.listResults.push(list('1', overlay('slow', '1')));
    s.tunnelsClient.listResults.push(list('1'));
    await s.manager.start();
    await flushMicrotasks();
    let stopped = false;
    const stopping = s.manager.stop().then(() => (stopped = true));
    await flushMicrotasks();
    expect(stopped).toBe(false);
    expect(lease.state?.record.holderIdentity).toBe('me'); // no release while a reconcile may still write
    s.release();
    await stopping;
    expect(lease.state?.record.holderIdentity).toBe('');
    expect(s.tunnelsClient.activeWatches()).toBe(0);
    await expect(s.manager.done).resolves.toBe('shutdown');
  });

  test('start() fails, and the manager stops, if stopped before the caches sync', async () => {
    const s = setup();
    s.overlaysClient.listResults.push(new Error('down'));
    s.tunnelsClient.listResults.push(list('1'));
    const started = s.manager.start();
    await flushMicrotasks();
    await s.manager.stop();
    await expect(started).rejects.toThrow(/stopped before caches synced/);
  });

  test('core kinds and CRDs are addressed by the right paths', () => {
    const client = new FakeListWatchClient();
    const nodes = new Informer({ resource: coreResources.nodes, client });
    const secrets = new Informer({ resource: coreResources.secrets, namespace: 'sealmesh-system', client });
    expect(nodes.name).toBe('nodes');
    expect(secrets.name).toBe('secrets/sealmesh-system');
    expect(() => new Informer({ resource: coreResources.nodes, namespace: 'x', client })).toThrow(
      /cluster-scoped/,
    );
  });
});
