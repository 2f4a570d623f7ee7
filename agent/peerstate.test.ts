import {
  KICK_AFTER_MS,
  KICK_WINDOW_MS,
  REJECT_AFTER_MS,
  assessHandshake,
  kickRecheckAt,
  needsProbe,
  shouldKickHandshake,
} from './peerstate.js';

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

describe('shouldKickHandshake', () => {
  const waiting = { state: 'Handshaking' };
  const base = {
    now: T + KICK_AFTER_MS,
    assessment: waiting,
    configuredAt: T,
    kickedAt: undefined as number | undefined,
    ownPublicKey: 'AAAA',
    peerPublicKey: 'BBBB',
  };
  test.each([
    ['no handshake 1 s after the keys: kick', {}, true],
    ['999 ms after the keys: too early', { now: T + KICK_AFTER_MS - 1 }, false],
    ['the other end of the pair never kicks', { ownPublicKey: 'BBBB', peerPublicKey: 'AAAA' }, false],
    ['encrypted: nothing to restart', { assessment: { state: 'Encrypted', handshakeAt: T } }, false],
    [
      'waiting, but with a handshake under these keys (reconfigured endpoint)',
      { assessment: { state: 'Handshaking', handshakeAt: T - 1 } },
      false,
    ],
    ['KeyMismatch: the device is wrong, not the handshake', { assessment: { state: 'KeyMismatch' } }, false],
    ['adopted peer (keys not applied by this run)', { configuredAt: undefined }, false],
    ['kicked 999 ms ago', { now: T + 3000, kickedAt: T + 2001 }, false],
    ['kicked 1 s ago', { now: T + 3000, kickedAt: T + 2000 }, true],
    ['at the end of the window', { now: T + KICK_WINDOW_MS }, false],
    ['just inside the window', { now: T + KICK_WINDOW_MS - 1, kickedAt: T + 3000 }, true],
  ])('%s', (_name, change, want) => {
    expect(shouldKickHandshake({ ...base, ...change })).toBe(want);
  });

  test('exactly one end of a pair kicks, whatever the keys', () => {
    for (const [x, y] of [
      ['k1', 'k2'],
      ['Zz', 'aa'],
      ['+/', '09'],
    ]) {
      const one = shouldKickHandshake({ ...base, ownPublicKey: x!, peerPublicKey: y! });
      const other = shouldKickHandshake({ ...base, ownPublicKey: y!, peerPublicKey: x! });
      expect(one !== other).toBe(true);
    }
  });

  test('kickRecheckAt asks for a pass soon while a kick may still come, and not after', () => {
    const o = { now: T, assessment: waiting, configuredAt: T, ownPublicKey: 'AAAA', peerPublicKey: 'BBBB' };
    expect(kickRecheckAt(o)).toBe(T + KICK_AFTER_MS / 4);
    expect(kickRecheckAt({ ...o, now: T + KICK_WINDOW_MS })).toBeUndefined();
    expect(kickRecheckAt({ ...o, ownPublicKey: 'CCCC' })).toBeUndefined();
    expect(kickRecheckAt({ ...o, assessment: { state: 'Encrypted', handshakeAt: T } })).toBeUndefined();
  });
});
