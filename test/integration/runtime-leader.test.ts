// Leader election against real coordination.k8s.io/v1 Leases (short durations to keep the tests fast).
import { jest } from '@jest/globals';
import { CoordinationV1Api, CoreV1Api, V1MicroTime } from '@kubernetes/client-node';
import { KubeLeaseClient, LeaderElector } from '../../lib/runtime/leader.js';
import { kubeConfig, uniqueName } from '../support/cluster.js';

jest.setTimeout(30_000);

const kc = kubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const coordination = kc.makeApiClient(CoordinationV1Api);
const ns = uniqueName('rt-leader');
const electors: LeaderElector[] = [];

function newElector(lease: string, identity: string, log: string[]): LeaderElector {
  const e = new LeaderElector({
    namespace: ns,
    name: lease,
    identity,
    client: new KubeLeaseClient(kc),
    leaseDurationMs: 3_000,
    renewDeadlineMs: 2_000,
    retryPeriodMs: 1_000,
    onStartedLeading: () => log.push(`${identity} started`),
    onStoppedLeading: (reason) => log.push(`${identity} stopped: ${reason}`),
  });
  electors.push(e);
  return e;
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const holder = async (lease: string): Promise<string | undefined> =>
  (await coordination.readNamespacedLease({ name: lease, namespace: ns })).spec?.holderIdentity;

beforeAll(async () => {
  await core.createNamespace({ body: { metadata: { name: ns } } });
});

afterAll(async () => {
  await Promise.all(electors.map((e) => e.stop({ release: false })));
  await core.deleteNamespace({ name: ns }).catch(() => undefined);
});

test('of two candidates exactly one leads; when it stops renewing the other takes over within the lease duration', async () => {
  const lease = uniqueName('lease');
  const log: string[] = [];
  const a = newElector(lease, 'a', log);
  const b = newElector(lease, 'b', log);
  a.start();
  b.start();
  await waitFor('a leader', () => a.isLeader() || b.isLeader());
  await new Promise((r) => setTimeout(r, 2_000)); // several renew rounds: still exactly one
  const [leader, other] = a.isLeader() ? [a, b] : [b, a];
  expect(other.isLeader()).toBe(false);
  expect(await holder(lease)).toBe(leader.identity);

  // The leader "crashes": it stops renewing and does not release.
  await leader.stop({ release: false });
  const last = await coordination.readNamespacedLease({ name: lease, namespace: ns });
  expect(last.spec?.holderIdentity).toBe(leader.identity);
  const lastRenewal = new Date(last.spec!.renewTime!).getTime();
  await waitFor('takeover', () => other.isLeader(), 15_000);
  const l = await coordination.readNamespacedLease({ name: lease, namespace: ns });
  expect(l.spec?.holderIdentity).toBe(other.identity);
  // Timed by the Lease's own records, not by this test's polling. The successor must wait out the lease (3 s
  // from the last renewal it saw) — never less; then it acquires at its next attempt (retry 1 s, jitter
  // 1.2), which may see the last renewal up to one retry late: 5.2 s, plus 2 s for a busy 2-core machine.
  const takeoverMs = new Date(l.spec!.acquireTime!).getTime() - lastRenewal;
  expect(takeoverMs).toBeGreaterThanOrEqual(3_000);
  expect(takeoverMs).toBeLessThanOrEqual(3_000 + 1_000 * 1.2 + 1_000 + 2_000);
  expect(l.spec?.leaseTransitions).toBe(1);
  expect(log).toEqual([
    `${leader.identity} started`,
    `${leader.identity} stopped: shutdown`,
    `${other.identity} started`,
  ]);
});

test('a leader that releases on shutdown is replaced at the successor’s next attempt', async () => {
  const lease = uniqueName('lease');
  const log: string[] = [];
  const a = newElector(lease, 'a', log);
  a.start();
  await waitFor('a leads', () => a.isLeader());
  const b = newElector(lease, 'b', log);
  b.start();
  await new Promise((r) => setTimeout(r, 500));
  await a.stop();
  const releasedAt = Date.now();
  expect(await holder(lease)).toBe('');
  await waitFor('b leads', () => b.isLeader(), 10_000);
  // no lease-duration wait: b acquired (by the Lease's record) at an attempt well before the 3 s a crashed
  // leader's lease would have made it wait (its next attempt is within 1.2 s; the rest is margin for a busy
  // machine)
  const acquired = (await coordination.readNamespacedLease({ name: lease, namespace: ns })).spec!
    .acquireTime!;
  expect(new Date(acquired).getTime() - releasedAt).toBeLessThan(3_000);
  expect(log).toEqual(['a started', 'a stopped: shutdown', 'b started']);
});

test('a deposed leader (another identity overwrites the Lease) notices and stops leading', async () => {
  const lease = uniqueName('lease');
  const log: string[] = [];
  const a = newElector(lease, 'a', log);
  a.start();
  await waitFor('a leads', () => a.isLeader());
  const term = a.signal;

  const current = await coordination.readNamespacedLease({ name: lease, namespace: ns });
  current.spec = {
    ...current.spec,
    holderIdentity: 'intruder',
    leaseDurationSeconds: 30,
    renewTime: new V1MicroTime(Date.now()),
    acquireTime: new V1MicroTime(Date.now()),
  };
  await coordination.replaceNamespacedLease({ name: lease, namespace: ns, body: current });
  const overwrittenAt = Date.now();

  await waitFor('a stops leading', () => log.includes('a stopped: lease taken by intruder'), 10_000);
  // at its next renewal (every 1 s), not when the intruder's 30 s lease runs out; 5 s leaves a busy 2-core
  // machine room for the renewal round trips
  expect(Date.now() - overwrittenAt).toBeLessThan(5_000);
  expect(a.isLeader()).toBe(false);
  expect(term.aborted).toBe(true);
  // It does not take the Lease back while the intruder's lease is valid.
  await new Promise((r) => setTimeout(r, 2_000));
  expect(await holder(lease)).toBe('intruder');
});
