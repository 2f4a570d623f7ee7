import { FakeClock, flushMicrotasks } from './testing/clock.js';
import { FakeLeaseClient } from './testing/fakes.js';
import { LeaderElector, type LeaderElectorOptions, type LeaseClient } from './leader.js';

function elector(
  client: LeaseClient,
  clock: FakeClock,
  identity: string,
  events: string[],
  overrides: Partial<LeaderElectorOptions> = {},
): LeaderElector {
  return new LeaderElector({
    namespace: 'ns',
    name: 'lease',
    identity,
    client,
    clock,
    leaseDurationMs: 3_000,
    renewDeadlineMs: 2_000,
    retryPeriodMs: 1_000,
    jitter: 0,
    onStartedLeading: () => events.push(`${identity} started`),
    onStoppedLeading: (reason) => events.push(`${identity} stopped: ${reason}`),
    ...overrides,
  });
}

describe('LeaderElector', () => {
  test('creates a missing Lease, leads, and renews every retry period', async () => {
    const clock = new FakeClock();
    const client = new FakeLeaseClient();
    const events: string[] = [];
    const a = elector(client, clock, 'a', events);
    a.start();
    await flushMicrotasks();
    expect(a.isLeader()).toBe(true);
    expect(a.signal.aborted).toBe(false);
    expect(events).toEqual(['a started']);
    expect(client.state?.record).toMatchObject({
      holderIdentity: 'a',
      leaseDurationSeconds: 3,
      leaseTransitions: 0,
    });
    const firstRenew = client.state?.record.renewTime ?? 0;
    await clock.advance(1_000);
    expect(client.state?.record.renewTime).toBe(firstRenew + 1_000);
    expect(client.state?.record.acquireTime).toBe(firstRenew);
    await clock.advance(10_000);
    expect(a.isLeader()).toBe(true);
    await a.stop();
  });

  test('only one of two candidates leads', async () => {
    const clock = new FakeClock();
    const client = new FakeLeaseClient();
    const events: string[] = [];
    const a = elector(client, clock, 'a', events);
    const b = elector(client, clock, 'b', events);
    a.start();
    b.start();
    await clock.advance(20_000);
    expect([a.isLeader(), b.isLeader()]).toEqual([true, false]);
    expect(b.currentLeader()).toBe('a');
    expect(events).toEqual(['a started']);
    await b.stop();
    await a.stop();
  });

  test('a leader that stops renewing is replaced once the lease duration has passed', async () => {
    const clock = new FakeClock();
    const client = new FakeLeaseClient();
    const events: string[] = [];
    const a = elector(client, clock, 'a', events);
    const b = elector(client, clock, 'b', events);
    a.start();
    await flushMicrotasks();
    b.start();
    await clock.advance(2_000);
    const lastRenewal = client.state!.record.renewTime!;
    await a.stop({ release: false }); // crashed: no release
    const leading = b.waitForLeadership();
    // the first instant b leads, to 100 ms
    let tookOverAt: number | undefined;
    for (let step = 0; step < 100 && tookOverAt === undefined; step++) {
      await clock.advance(100);
      if (b.isLeader()) tookOverAt = clock.now();
    }
    await expect(leading).resolves.toBe(true);
    // b judges expiry from when it saw a's last renewal (at its next attempt, at most one retry period late),
    // so it takes over no sooner than the lease duration after that renewal, and at its first attempt after
    // the expiry: within [3 s, 3 s + 2 retry periods] of the last renewal.
    expect(tookOverAt! - lastRenewal).toBeGreaterThanOrEqual(3_000);
    expect(tookOverAt! - lastRenewal).toBeLessThanOrEqual(3_000 + 2 * 1_000);
    expect(client.state?.record).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
    await b.stop();
  });

  test('release on shutdown lets the successor take over at its next attempt', async () => {
    const clock = new FakeClock();
    const client = new FakeLeaseClient();
    const events: string[] = [];
    const a = elector(client, clock, 'a', events);
    const b = elector(client, clock, 'b', events);
    a.start();
    await flushMicrotasks();
    b.start();
    await clock.advance(500);
    await a.stop();
    expect(client.state?.record).toMatchObject({ holderIdentity: '', leaseDurationSeconds: 1 });
    expect(events).toEqual(['a started', 'a stopped: shutdown']);
    await clock.advance(1_000);
    expect(b.isLeader()).toBe(true);
    await b.stop();
  });

  test('a deposed leader (Lease overwritten by another identity) stops leading at its next renewal', async () => {
    const clock = new FakeClock();
    const client = new FakeLeaseClient();
    const events: string[] = [];
    const a = elector(client, clock, 'a', events);
    a.start();
    await flushMicrotasks();
    const term = a.signal;
    client.write({
      holderIdentity: 'intruder',
      leaseDurationSeconds: 30,
      renewTime: clock.now(),
      leaseTransitions: 1,
    });
    await clock.advance(1_000);
    expect(a.isLeader()).toBe(false);
    expect(term.aborted).toBe(true);
    expect(events).toEqual(['a started', 'a stopped: lease taken by intruder']);
    // It does not grab the Lease back while the intruder's lease is valid.
    await clock.advance(10_000);
    expect(client.state?.record.holderIdentity).toBe('intruder');
    await a.stop();
  });

  test('a leader that cannot reach the API server stops at the renew deadline, even if requests hang', async () => {
    const clock = new FakeClock();
    const client = new FakeLeaseClient();
    const events: string[] = [];
    const a = elector(client, clock, 'a', events);
    a.start();
    await flushMicrotasks();
    const acquiredAt = clock.now();
    client.hang = true;
    await clock.advance(1_999);
    expect(a.isLeader()).toBe(true);
    await clock.advance(1);
    expect(a.isLeader()).toBe(false);
    // stopped before anyone else could take over: before the Lease it last renewed expires for the others
    const rec = client.state!.record;
    expect(rec.holderIdentity).toBe('a');
    expect(clock.now()).toBeLessThan((rec.renewTime ?? acquiredAt) + rec.leaseDurationSeconds * 1000);
    expect(events).toEqual(['a started', 'a stopped: renew deadline exceeded']);
    client.hang = false;
    await a.stop();
  });

  test('failed renewals within the deadline keep leadership', async () => {
    const clock = new FakeClock();
    const client = new FakeLeaseClient();
    const events: string[] = [];
    const a = elector(client, clock, 'a', events, { renewDeadlineMs: 2_500 });
    a.start();
    await flushMicrotasks();
    client.fail = true;
    await clock.advance(1_000); // one failed renewal
    expect(a.isLeader()).toBe(true);
    client.fail = false;
    await clock.advance(1_000); // renewed at 2 s, before the 2.5 s deadline
    await clock.advance(2_000);
    expect(a.isLeader()).toBe(true);
    expect(events).toEqual(['a started']);
    await a.stop();
  });

  test('rejects inconsistent timings', () => {
    const mk = (renewDeadlineMs: number): LeaderElector =>
      new LeaderElector({
        namespace: 'n',
        name: 'l',
        identity: 'x',
        client: new FakeLeaseClient(),
        leaseDurationMs: 3_000,
        renewDeadlineMs,
        retryPeriodMs: 1_000,
      });
    expect(() => mk(3_000)).toThrow(/renewDeadline/);
    expect(() => mk(900)).toThrow(/retryPeriod/);
  });
});

describe('LeaderElector.waitForLeadership', () => {
  test('may be called before start(), and resolves false on stop()', async () => {
    const clock = new FakeClock();
    const client = new FakeLeaseClient();
    client.write({ holderIdentity: 'other', leaseDurationSeconds: 30, renewTime: 0, leaseTransitions: 0 });
    const a = elector(client, clock, 'a', []);
    const early = a.waitForLeadership();
    a.start();
    await clock.advance(2_000);
    await a.stop();
    await expect(early).resolves.toBe(false);
    await expect(a.waitForLeadership()).resolves.toBe(false);
  });

  test('resolves true when leadership is acquired', async () => {
    const clock = new FakeClock();
    const a = elector(new FakeLeaseClient(), clock, 'a', []);
    const leading = a.waitForLeadership();
    a.start();
    await expect(leading).resolves.toBe(true);
    await a.stop();
  });
});
