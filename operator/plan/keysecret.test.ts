import { decodeKey, encodeKey, fingerprint } from '../../lib/keys.js';
import { newBoxKeyPair, Sealer, unseal, type BoxKeyPair } from '../../lib/seal.js';
import { pairOwner, type SealedPair, privateKeyContext, pskContext } from '../../lib/contract/keysecret.js';
import {
  PLAN_DERIVE_WORK,
  PLAN_STEP_WORK,
  planDigests,
  planKeySecret,
  planKeySecretSteps,
  servingPrivateKey,
  type KeyPlanInput,
  type Member,
} from './keysecret.js';

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
    const atA = unseal(
      p.sealed[p.a]!,
      operator.publicKey,
      envelopes.get(p.a)!,
      pskContext('o', p.a, p.b, p.epoch),
    );
    const atB = unseal(
      p.sealed[p.b]!,
      operator.publicKey,
      envelopes.get(p.b)!,
      pskContext('o', p.a, p.b, p.epoch),
    );
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

/**
 * Per pair of `next`: whether its PSK is new, i.e. its fingerprint is none of `before`'s (so a PSK moved from
 * one pair to another counts as old), with the PSK itself unsealed to make sure the fingerprint is its own.
 */
function newPsksPerPair(before: readonly SealedPair[], next: readonly SealedPair[]): string[] {
  const old = new Set(before.map((p) => p.fingerprint));
  return next.map((p) => {
    const psk = unseal(
      p.sealed[p.a]!,
      operator.publicKey,
      envelopes.get(p.a)!,
      pskContext('o', p.a, p.b, p.epoch),
    );
    if (fingerprint(psk) !== p.fingerprint) return `${p.a}/${p.b}: fingerprint is not its PSK's`;
    return `${p.a}/${p.b}: ${old.has(p.fingerprint) ? 'old' : 'new'} PSK`;
  });
}

test('a new epoch gives every pair a new PSK', () => {
  const first = planKeySecret(base, sealer);
  const next = planKeySecret({ ...base, epoch: 2, existing: first.payload }, sealer);
  expect(next.changed).toBe(true);
  expect(newPsksPerPair(first.payload.pairs, next.payload.pairs)).toEqual(['a/c: new PSK', 'b/c: new PSK']);
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
  const p0 = next.payload.pairs[0]!;
  expect(() =>
    unseal(p0.sealed.a!, operator.publicKey, fresh, pskContext('o', p0.a, p0.b, p0.epoch)),
  ).not.toThrow();
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
  const priv = unseal(
    entry!.sealed,
    operator.publicKey,
    envelopes.get('c')!,
    privateKeyContext('o', 'c', entry!.epoch),
  );
  expect(decodeKey(encodeKey(priv))).toHaveLength(32);
  const again = planKeySecret({ ...base, custody: 'Operator', existing: plan.payload }, sealer);
  expect(again.publicKey).toBe(plan.publicKey);
  expect(again.changed).toBe(false);
});

describe('rotation (one Secret per epoch)', () => {
  test("the target epoch's Secret holds only that epoch's PSKs, and becomes the current one unchanged", () => {
    const current = planKeySecret(base, sealer).payload;
    const staged = planKeySecret({ ...base, epoch: 2 }, sealer);
    expect(staged.payload.pairs.map((p) => `${p.a}/${p.b}@${p.epoch}`)).toEqual(['a/c@2', 'b/c@2']);
    expect(newPsksPerPair(current.pairs, staged.payload.pairs)).toEqual(['a/c: new PSK', 'b/c: new PSK']);
    // After completion the same epoch is planned without the rotation: nothing to write.
    const done = planKeySecret({ ...base, epoch: 2, existing: staged.payload }, sealer);
    expect(done.changed).toBe(false);
    expect(done.newPairs).toEqual([]);
  });

  test('material of another epoch in an existing Secret is dropped', () => {
    const current = planKeySecret(base, sealer).payload;
    const mixed = {
      ...current,
      pairs: [...current.pairs, ...planKeySecret({ ...base, epoch: 2 }, sealer).payload.pairs],
    };
    const plan = planKeySecret({ ...base, existing: mixed }, sealer);
    expect(plan.changed).toBe(true);
    expect(plan.payload.pairs).toEqual(current.pairs);
  });

  test('Operator custody: a Keys rotation makes a new private key, a PSK-only one carries the key', () => {
    const op = { ...base, custody: 'Operator' as const };
    const current = planKeySecret(op, sealer);
    const carried = servingPrivateKey(current.payload);
    expect(carried?.epoch).toBe(1);

    const pskOnly = planKeySecret({ ...op, epoch: 2, carried }, sealer);
    expect(pskOnly.payload.privateKeys).toEqual(current.payload.privateKeys);
    expect(pskOnly.publicKey).toBe(current.publicKey);
    const afterPskOnly = planKeySecret({ ...op, epoch: 2, existing: pskOnly.payload }, sealer);
    expect(afterPskOnly.changed).toBe(false);
    expect(afterPskOnly.publicKey).toBe(current.publicKey);

    const keys = planKeySecret({ ...op, epoch: 2, newPrivateKey: true, carried }, sealer);
    expect(keys.payload.privateKeys.map((k) => k.epoch)).toEqual([2]);
    expect(keys.publicKey).not.toBe(current.publicKey);
    const afterKeys = planKeySecret({ ...op, epoch: 2, existing: keys.payload }, sealer);
    expect(afterKeys.changed).toBe(false);
    expect(afterKeys.publicKey).toBe(keys.publicKey);
  });

  test('Operator custody: a carried key sealed to an old envelope key, or of a later epoch, is not used', () => {
    const op = { ...base, custody: 'Operator' as const };
    const current = planKeySecret(op, sealer);
    const carried = servingPrivateKey(current.payload)!;
    const stale = planKeySecret({ ...op, epoch: 2, carried: { ...carried, sealedTo: 'old' } }, sealer);
    expect(stale.publicKey).not.toBe(current.publicKey);
    expect(stale.payload.privateKeys.map((k) => k.epoch)).toEqual([2]);
    const later = planKeySecret({ ...op, epoch: 1, carried: { ...carried, epoch: 5 } }, sealer);
    expect(later.publicKey).not.toBe(current.publicKey);
  });
});

test('planning yields after every PLAN_STEP_WORK of work, counting shared keys not derived yet', () => {
  const n = 60;
  const many: Member[] = Array.from({ length: n }, (_, i) => ({
    name: `n${String(i).padStart(3, '0')}`,
    createdAt: t0,
    envelopePublicKey: encodeKey(newBoxKeyPair().publicKey), // each its own: a cold Sealer derives n + 1 keys
  }));
  many.push({ name: 'z', createdAt: t1, envelopePublicKey: pub('c') }); // joined last: owns all its pairs
  const input = { ...base, node: 'z', members: many };
  const fresh = new Sealer(operator);
  const run = (i: KeyPlanInput) => {
    const steps = planKeySecretSteps(i, fresh);
    let yields = 0;
    let next = steps.next();
    for (; !next.done; next = steps.next()) yields++;
    return { yields, plan: next.value };
  };
  const cold = run(input);
  expect(cold.plan.payload.pairs).toHaveLength(n);
  expect(cold.yields).toBe(Math.floor((n + (n + 1) * PLAN_DERIVE_WORK) / PLAN_STEP_WORK));
  // The same peers at the next epoch: shared keys cached, n pairs of work.
  const warm = run({ ...input, epoch: 2 });
  expect(warm.yields).toBe(Math.floor(n / PLAN_STEP_WORK));
  expect(warm.plan.payload.pairs.map((p) => `${p.a}/${p.b}`)).toEqual(
    planKeySecret({ ...input, epoch: 2 }, sealer).payload.pairs.map((p) => `${p.a}/${p.b}`),
  );
  // Nothing new to seal: no yield at all.
  expect(planKeySecretSteps({ ...input, existing: cold.plan.payload }, fresh).next().done).toBe(true);
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

  test('epoch, custody and PSK mode are covered, a rotation scope is not; without PSKs peers are not', () => {
    const d = planDigests(input(world));
    const g = (extra: Partial<KeyPlanInput>) => planDigests(input(world, extra)).get('a');
    expect(g({ epoch: 2 })).not.toBe(d.get('a'));
    // A staged Secret keeps its digest when its epoch becomes the current one (completion reads nothing).
    expect(g({ newPrivateKey: true })).toBe(d.get('a'));
    expect(g({ custody: 'Operator' })).not.toBe(d.get('a'));
    expect(g({ presharedKeys: 'Disabled' })).not.toBe(d.get('a'));
    const off = (ms: Member[]) => planDigests(input(ms, { presharedKeys: 'Disabled' }));
    expect(off(withKey(world, 'h', undefined)).get('a')).toBe(off(world).get('a'));
    expect(off(withKey(world, 'a', undefined)).get('a')).not.toBe(off(world).get('a'));
  });
});
