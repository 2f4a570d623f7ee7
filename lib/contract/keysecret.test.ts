import {
  decodeKeySecretData,
  encodeKeySecretData,
  keySecretEpochName,
  keySecretName,
  pairOwner,
  type KeySecretPayload,
} from './keysecret.js';

const payload: KeySecretPayload = {
  version: 2,
  overlay: 'ovl',
  node: 'b',
  pairs: [
    {
      a: 'a',
      b: 'b',
      epoch: 3,
      fingerprint: 'f',
      sealedTo: { a: 'ea', b: 'eb' },
      sealed: { a: 'AAAA', b: 'BBBB' },
    },
  ],
  privateKeys: [],
  kems: [],
};

test('payload round-trips through Secret data', () => {
  expect(decodeKeySecretData(encodeKeySecretData(payload))).toEqual({ ok: true, payload });
});

test('a payload of another version (the previous one, 1, or a newer one) is refused naming the version read', () => {
  for (const version of [1, 3]) {
    const data = { 'keys.json': Buffer.from(JSON.stringify({ ...payload, version })).toString('base64') };
    expect(decodeKeySecretData(data)).toEqual({
      ok: false,
      error: `key payload version ${version}; this build reads 2 (version skew: see status.agent)`,
    });
  }
});

test.each([
  ['no data', undefined, /missing data key/],
  ['not base64 JSON', { 'keys.json': Buffer.from('{oops').toString('base64') }, /not valid JSON/],
  [
    'wrong shape',
    { 'keys.json': Buffer.from(JSON.stringify({ ...payload, pairs: [{ a: 1 }] })).toString('base64') },
    /pairs\.0\.a/,
  ],
])('a corrupted Secret (%s) is reported, not thrown', (_name, data, error) => {
  const got = decodeKeySecretData(data);
  expect(got.ok).toBe(false);
  expect(got.ok ? '' : got.error).toMatch(error);
});

test.each([
  [
    'later join owns',
    { name: 'a', createdAt: '2026-01-02T00:00:00Z' },
    { name: 'z', createdAt: '2026-01-01T00:00:00Z' },
    'a',
  ],
  // A tie is decided by the low bit of sha256("<smaller>/<larger>")[0]: even → the smaller name, odd → the
  // larger. sha256("a/z")[0] = 0xab (odd), sha256("a/c")[0] = 0x24 (even): neither name order decides.
  [
    'a tie with an odd pair hash goes to the larger name',
    { name: 'a', createdAt: '2026-01-01T00:00:00Z' },
    { name: 'z', createdAt: '2026-01-01T00:00:00Z' },
    'z',
  ],
  [
    'a tie with an even pair hash goes to the smaller name',
    { name: 'c', createdAt: '2026-01-01T00:00:00Z' },
    { name: 'a', createdAt: '2026-01-01T00:00:00Z' },
    'a',
  ],
  [
    'order of arguments does not matter',
    { name: 'z', createdAt: '2026-01-01T00:00:00Z' },
    { name: 'a', createdAt: '2026-01-02T00:00:00Z' },
    'a',
  ],
])('pairOwner: %s', (_name, x, y, want) => {
  expect(pairOwner(x, y)).toBe(want);
});

test('secret names stay within 253 characters and stay distinct', () => {
  const long = 'n'.repeat(250);
  expect(keySecretName('ovl', 'node-1')).toBe('sealmesh.ovl.node-1');
  expect(keySecretName('ovl', long).length).toBeLessThanOrEqual(253);
  expect(keySecretName('ovl', long)).not.toBe(keySecretName('ovl', `${long}x`));
  // Room is left for the epoch suffix: the longest epoch still gives a valid name.
  for (const n of ['node-1', long, 'n'.repeat(230)]) {
    expect(keySecretEpochName(keySecretName('ovl', n), Number.MAX_SAFE_INTEGER).length).toBeLessThanOrEqual(
      253,
    );
  }
  expect(keySecretEpochName('sealmesh.ovl.node-1', 7)).toBe('sealmesh.ovl.node-1.e7');
  expect(() => keySecretEpochName('x', -1)).toThrow(/invalid key epoch/);
  expect(() => keySecretEpochName('x', 1.5)).toThrow(/invalid key epoch/);
});

test('ties do not depend on argument order and spread ownership evenly', () => {
  const at = '2026-01-01T00:00:00Z';
  const nodes = Array.from({ length: 100 }, (_, i) => ({ name: `node-${i}`, createdAt: at }));
  const owned = new Map<string, number>();
  for (const x of nodes) {
    for (const y of nodes) {
      if (x.name >= y.name) continue;
      const owner = pairOwner(x, y);
      expect(pairOwner(y, x)).toBe(owner);
      owned.set(owner, (owned.get(owner) ?? 0) + 1);
    }
  }
  // 99 pairs per node: a fair split gives about 49.5 each; name order would give one node 99.
  expect(Math.max(...owned.values())).toBeLessThan(75);
});
