import { decodeKey, encodeKey } from '../lib/keys.js';
import { newBoxKeyPair, Sealer, unseal, type BoxKeyPair } from '../lib/seal.js';
import { planKeySecret, type KeyPlanInput, type Member } from './keyplan.js';

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
