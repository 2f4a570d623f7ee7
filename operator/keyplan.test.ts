import { decodeKey, encodeKey } from '../lib/keys.js';
import { newBoxKeyPair, Sealer, unseal, type BoxKeyPair } from '../lib/seal.js';
import { pairOwner } from '../lib/keysecret.js';
import { planDigests, planKeySecret, type KeyPlanInput, type Member } from './keyplan.js';

const operator = newBoxKeyPair();
const sealer = new Sealer(operator);
const envelopes = new Map<string, BoxKeyPair>(['a', 'b', 'c'].map((n) => [n, newBoxKeyPair()]));
const pub = (n: string) => encodeKey(envelopes.get(n)!.publicKey);
const t0 = '2026-01-01T00:00:00Z';
const t1 = '2026-01-02T00:00:00Z';

const members: Member[] = [
  { name: 'a', createdAt: t0, envelopePublicKey: pub('a') },
  { name: 'b', createdAt: t0, envelopePublicKey: pub('b') },
  { name: 'c', createdAt: t1, envelopePublicKey: pub('c') }, // joined later: owns both of its pairs
];
const base: KeyPlanInput = {
  overlay: 'o',
  node: 'c',
  epoch: 1,
  presharedKeys: 'PerPair',
  custody: 'Node',
  members,
};

test('the later node owns its pairs, and both ends unseal the same PSK', () => {
  const plan = planKeySecret(base, sealer);
  expect(plan.payload.pairs.map((p) => `${p.a}/${p.b}`)).toEqual(['a/c', 'b/c']);
  for (const p of plan.payload.pairs) {
    const atA = unseal(p.sealed[p.a]!, operator.publicKey, envelopes.get(p.a)!);
    const atB = unseal(p.sealed[p.b]!, operator.publicKey, envelopes.get(p.b)!);
    expect(Buffer.from(atA)).toEqual(Buffer.from(atB));
    expect(JSON.stringify(p)).not.toContain(Buffer.from(atA).toString('base64'));
  }
  expect(planKeySecret({ ...base, node: 'a' }, sealer).payload.pairs.length).toBeLessThanOrEqual(1);
});

test('an unchanged world plans no change', () => {
  const first = planKeySecret(base, sealer);
  const again = planKeySecret({ ...base, existing: first.payload }, sealer);
  expect(again.changed).toBe(false);
  expect(again.newPairs).toEqual([]);
});

test('a new epoch gives every pair a new PSK', () => {
  const first = planKeySecret(base, sealer);
  const next = planKeySecret({ ...base, epoch: 2, existing: first.payload }, sealer);
  expect(next.changed).toBe(true);
  expect(next.payload.pairs.map((p) => p.fingerprint)).not.toEqual(
    first.payload.pairs.map((p) => p.fingerprint),
  );
  expect(next.payload.pairs.every((p) => p.epoch === 2)).toBe(true);
});

test('a peer with a new envelope key gets its pair re-keyed, the others are kept', () => {
  const first = planKeySecret(base, sealer);
  const fresh = newBoxKeyPair();
  const moved = members.map((m) =>
    m.name === 'a' ? { ...m, envelopePublicKey: encodeKey(fresh.publicKey) } : m,
  );
  const next = planKeySecret({ ...base, members: moved, existing: first.payload }, sealer);
  expect(next.newPairs).toEqual(['a/c@1']);
  expect(next.payload.pairs[1]).toEqual(first.payload.pairs[1]);
  expect(() => unseal(next.payload.pairs[0]!.sealed.a!, operator.publicKey, fresh)).not.toThrow();
});

test('a peer without an envelope key yet is skipped; PSKs Disabled gives no pairs', () => {
  const pending = members.map((m) => (m.name === 'b' ? { name: 'b', createdAt: t0 } : m));
  expect(planKeySecret({ ...base, members: pending }, sealer).payload.pairs.map((p) => p.b)).toEqual(['c']);
  expect(planKeySecret({ ...base, presharedKeys: 'Disabled' }, sealer).payload.pairs).toEqual([]);
});

test('Operator custody seals a private key to the node and exposes only the public key', () => {
  const plan = planKeySecret({ ...base, custody: 'Operator' }, sealer);
  expect(plan.publicKey).toBeDefined();
  const [entry] = plan.payload.privateKeys;
  const priv = unseal(entry!.sealed, operator.publicKey, envelopes.get('c')!);
  expect(decodeKey(encodeKey(priv))).toHaveLength(32);
  const again = planKeySecret({ ...base, custody: 'Operator', existing: plan.payload }, sealer);
  expect(again.publicKey).toBe(plan.publicKey);
  expect(again.changed).toBe(false);
});

describe('rotation', () => {
  test('staging adds target-epoch PSKs and keeps the current ones; completion drops the old', () => {
    const current = planKeySecret(base, sealer).payload;
    const staged = planKeySecret(
      { ...base, target: { epoch: 2, newPrivateKey: false }, existing: current },
      sealer,
    );
    expect(staged.payload.pairs.map((p) => `${p.a}/${p.b}@${p.epoch}`)).toEqual([
      'a/c@1',
      'a/c@2',
      'b/c@1',
      'b/c@2',
    ]);
    expect(staged.payload.pairs.filter((p) => p.epoch === 1)).toEqual(current.pairs);
    const again = planKeySecret(
      { ...base, target: { epoch: 2, newPrivateKey: false }, existing: staged.payload },
      sealer,
    );
    expect(again.changed).toBe(false);
    const done = planKeySecret({ ...base, epoch: 2, existing: staged.payload }, sealer);
    expect(done.payload.pairs).toEqual(staged.payload.pairs.filter((p) => p.epoch === 2));
    expect(done.newPairs).toEqual([]);
  });

  test('Operator custody: a Keys rotation stages a new private key, a PSK-only one keeps the key', () => {
    const op = { ...base, custody: 'Operator' as const };
    const current = planKeySecret(op, sealer);
    const pskOnly = planKeySecret(
      { ...op, target: { epoch: 2, newPrivateKey: false }, existing: current.payload },
      sealer,
    );
    expect(pskOnly.payload.privateKeys).toEqual(current.payload.privateKeys);
    const afterPskOnly = planKeySecret({ ...op, epoch: 2, existing: pskOnly.payload }, sealer);
    expect(afterPskOnly.publicKey).toBe(current.publicKey);
    expect(afterPskOnly.payload.privateKeys).toEqual(current.payload.privateKeys);

    const keys = planKeySecret(
      { ...op, target: { epoch: 2, newPrivateKey: true }, existing: current.payload },
      sealer,
    );
    expect(keys.payload.privateKeys.map((k) => k.epoch)).toEqual([1, 2]);
    expect(keys.publicKey).toBe(current.publicKey);
    const afterKeys = planKeySecret({ ...op, epoch: 2, existing: keys.payload }, sealer);
    expect(afterKeys.payload.privateKeys.map((k) => k.epoch)).toEqual([2]);
    expect(afterKeys.publicKey).not.toBe(current.publicKey);
    expect(afterKeys.publicKey).toBe(keys.payload.privateKeys[1]!.publicKey);
  });
});

describe('planDigests', () => {
  // Eight nodes joining at four instants (two per instant), each with its own envelope key.
  const names = ['h', 'g', 'f', 'e', 'd', 'c', 'b', 'a'];
  const keys = new Map(names.map((n) => [n, encodeKey(newBoxKeyPair().publicKey)]));
  const at = (i: number) => `2026-01-0${1 + Math.floor(i / 2)}T00:00:00Z`;
  const world: Member[] = names.map((n, i) => ({
    name: n,
    createdAt: at(i),
    envelopePublicKey: keys.get(n),
  }));
  const input = (ms: Member[], extra: Partial<KeyPlanInput> = {}) => ({ ...base, members: ms, ...extra });
  const withKey = (ms: Member[], name: string, key: string | undefined) =>
    ms.map((m) => (m.name === name ? { ...m, envelopePublicKey: key } : m));

  test('a member changing its envelope key changes the digest of every node owning a pair with it', () => {
    const before = planDigests(input(world));
    for (const changed of names) {
      const after = planDigests(input(withKey(world, changed, encodeKey(newBoxKeyPair().publicKey))));
      for (const m of world) {
        const owns =
          m.name === changed ||
          pairOwner(
            m,
            world.find((x) => x.name === changed)!,
          ) === m.name;
        if (owns) expect(after.get(m.name)).not.toBe(before.get(m.name));
        // Only members joining no earlier than the changed one can own a pair with it.
        const earlier = new Date(m.createdAt!) < new Date(world.find((x) => x.name === changed)!.createdAt!);
        if (earlier) expect(after.get(m.name)).toBe(before.get(m.name));
      }
    }
  });

  test('a node joining later changes no other digest, and equal digests mean an unchanged plan', () => {
    const before = planDigests(input(world));
    const plans = new Map(
      world.map((m) => [m.name, planKeySecret({ ...input(world), node: m.name }, sealer)]),
    );
    const joiner: Member = { name: 'z', createdAt: '2026-02-01T00:00:00Z', envelopePublicKey: pub('a') };
    const grown = [...world, joiner];
    const after = planDigests(input(grown));
    for (const m of world) {
      expect(after.get(m.name)).toBe(before.get(m.name));
      const again = planKeySecret(
        { ...input(grown), node: m.name, existing: plans.get(m.name)!.payload },
        sealer,
      );
      expect(again.changed).toBe(false);
    }
    expect(after.get('z')).toBeDefined();
  });

  test('a member leaving changes the digests of the members that owned pairs with it', () => {
    const before = planDigests(input(world));
    const gone = 'f'; // joined at the second instant
    const after = planDigests(input(world.filter((m) => m.name !== gone)));
    const leaver = world.find((m) => m.name === gone)!;
    for (const m of world) {
      if (m.name === gone) continue;
      if (pairOwner(m, leaver) === m.name) expect(after.get(m.name)).not.toBe(before.get(m.name));
    }
    expect(after.get('h')).toBe(before.get('h')); // joined first, owns nothing with f
  });

  test('epoch, rotation target, custody and PSK mode are covered; without PSKs peers are not', () => {
    const d = planDigests(input(world));
    const g = (extra: Partial<KeyPlanInput>) => planDigests(input(world, extra)).get('a');
    expect(g({ epoch: 2 })).not.toBe(d.get('a'));
    expect(g({ target: { epoch: 2, newPrivateKey: false } })).not.toBe(d.get('a'));
    expect(g({ target: { epoch: 2, newPrivateKey: true } })).not.toBe(
      g({ target: { epoch: 2, newPrivateKey: false } }),
    );
    expect(g({ custody: 'Operator' })).not.toBe(d.get('a'));
    expect(g({ presharedKeys: 'Disabled' })).not.toBe(d.get('a'));
    const off = (ms: Member[]) => planDigests(input(ms, { presharedKeys: 'Disabled' }));
    expect(off(withKey(world, 'h', undefined)).get('a')).toBe(off(world).get('a'));
    expect(off(withKey(world, 'a', undefined)).get('a')).not.toBe(off(world).get('a'));
  });
});
