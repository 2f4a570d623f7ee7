import { REJECT_AFTER_MS, assessHandshake, needsProbe } from './peerstate.js';

const T = 1_000_000_000;
const s = (n: number): number => n * 1000;

test.each([
  [
    'never configured handshake',
    { configuredAt: T, latestHandshake: undefined, now: T + s(10) },
    'Handshaking',
  ],
  ['fresh handshake', { configuredAt: T, latestHandshake: T + s(2), now: T + s(10) }, 'Encrypted'],
  ['handshake 179 s old', { configuredAt: T, latestHandshake: T + s(1), now: T + s(180) }, 'Encrypted'],
  [
    'handshake 180 s old',
    { configuredAt: T - s(500), latestHandshake: T, now: T + REJECT_AFTER_MS },
    'Stale',
  ],
  [
    'handshake with the previous keys only',
    { configuredAt: T, latestHandshake: T - s(30), now: T + s(10) },
    'Handshaking',
  ],
  [
    'handshake within wg resolution of configuring',
    { configuredAt: T + 400, latestHandshake: T, now: T + s(5) },
    'Encrypted',
  ],
  [
    'old handshake, recently reconfigured endpoint',
    { configuredAt: T - s(300), reconfiguredAt: T, latestHandshake: T - s(100), now: T + s(90) },
    'Handshaking',
  ],
  [
    'adopted peer with a fresh handshake',
    { configuredAt: undefined, latestHandshake: T - s(30), now: T },
    'Encrypted',
  ],
  [
    'adopted peer with an old handshake',
    { configuredAt: undefined, latestHandshake: T - s(300), now: T },
    'Stale',
  ],
  [
    'adopted peer never handshaked',
    { configuredAt: undefined, latestHandshake: undefined, now: T },
    'Handshaking',
  ],
] as const)('%s → %s', (_name, obs, state) => {
  expect(assessHandshake(obs).state).toBe(state);
});

test('probes go to peers that are not encrypted or whose session is about to need a new handshake', () => {
  const now = T;
  expect(needsProbe(assessHandshake({ now, configuredAt: T - s(1), latestHandshake: undefined }), now)).toBe(
    true,
  );
  expect(
    needsProbe(assessHandshake({ now, configuredAt: T - s(200), latestHandshake: T - s(10) }), now),
  ).toBe(false);
  expect(
    needsProbe(assessHandshake({ now, configuredAt: T - s(200), latestHandshake: T - s(130) }), now),
  ).toBe(true);
  expect(
    needsProbe(assessHandshake({ now, configuredAt: T - s(500), latestHandshake: T - s(400) }), now),
  ).toBe(true);
});
