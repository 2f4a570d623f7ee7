import { agentLiveness } from './liveness.js';

const now = Date.parse('2026-12-02T10:00:00Z');
const lease = (renewedSecondsAgo: number, duration = 40) => ({
  spec: { renewTime: new Date(now - renewedSecondsAgo * 1000).toISOString(), leaseDurationSeconds: duration },
});

test('an agent that reported and stopped renewing is unreachable (one without a Lease is starting); the earliest live expiry is when to look again', () => {
  expect(
    agentLiveness(
      [
        { node: 'n3', lease: lease(41), reported: true },
        { node: 'n1', lease: lease(5), reported: true },
        { node: 'n2', lease: lease(30), reported: true },
        { node: 'n4', lease: undefined, reported: true },
      ],
      now,
    ),
  ).toEqual({
    unreachable: [{ node: 'n3', renewed: new Date(now - 41_000).toISOString() }],
    nextExpiry: now + 10_000,
  });
});

test('a node whose agent never reported is pending, not unreachable; no live Lease: nothing to look at', () => {
  expect(
    agentLiveness(
      [
        { node: 'new', lease: undefined, reported: false },
        { node: 'old', lease: lease(100), reported: false },
      ],
      now,
    ),
  ).toEqual({ unreachable: [], nextExpiry: undefined });
});
