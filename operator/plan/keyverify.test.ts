import { encodeKey } from '../../lib/keys.js';
import { newBoxKeyPair, Sealer, type BoxKeyPair } from '../../lib/seal.js';
import { pskContext, type KeySecretPayload } from '../../lib/contract/keysecret.js';
import { planKeySecret, type KeyPlanInput, type Member } from './keysecret.js';
import { forgedEntries, withoutForged, type VerifyInput } from './keyverify.js';

const operator = newBoxKeyPair();
const sealer = new Sealer(operator);
const envelopes = new Map<string, BoxKeyPair>(['a', 'b', 'c'].map((n) => [n, newBoxKeyPair()]));
const pub = (n: string) => encodeKey(envelopes.get(n)!.publicKey);
const members: Member[] = [
  { name: 'a', createdAt: '2026-01-01T00:00:00Z', envelopePublicKey: pub('a') },
  { name: 'b', createdAt: '2026-01-01T00:00:00Z', envelopePublicKey: pub('b') },
  { name: 'c', createdAt: '2026-01-02T00:00:00Z', envelopePublicKey: pub('c') }, // owns a/c and b/c
];
const base: KeyPlanInput = {
  overlay: 'o',
  node: 'c',
  epoch: 3,
  presharedKeys: 'PerPair',
  custody: 'Operator',
  members,
};
const at: VerifyInput = { overlay: 'o', node: 'c', epoch: 3, members };
const planned = (input: Partial<KeyPlanInput> = {}): KeySecretPayload =>
  planKeySecret({ ...base, ...input }, sealer).payload;
const copy = (p: KeySecretPayload): KeySecretPayload => JSON.parse(JSON.stringify(p)) as KeySecretPayload;

test('a Secret as the operator planned it holds nothing forged, in either custody', () => {
  expect(forgedEntries(planned(), at, sealer)).toEqual([]);
  expect(forgedEntries(planned({ custody: 'Node' }), at, sealer)).toEqual([]);
});

test('a sealed value copied from another pair of the same Secret is refused, naming the pair and the end', () => {
  const p = copy(planned());
  const [ac, bc] = p.pairs as [KeySecretPayload['pairs'][0], KeySecretPayload['pairs'][0]];
  expect([ac.a, bc.a]).toEqual(['a', 'b']);
  bc.sealed.c = ac.sealed.c!; // c's value of a/c, put where c's value of b/c was
  expect(forgedEntries(p, at, sealer)).toEqual([
    { entry: 'b/c@3', problem: 'value for c does not open in its context with the operator sealing key' },
  ]);
  expect(withoutForged(p, forgedEntries(p, at, sealer)).pairs.map((x) => `${x.a}/${x.b}`)).toEqual(['a/c']);
});

test('a pair copied whole from the Secret of an earlier epoch is refused, relabelled or not', () => {
  const earlier = planned({ epoch: 2 });
  const now = copy(planned());
  now.pairs[0] = { ...earlier.pairs[0]!, epoch: 3 }; // relabelled: its values were sealed for epoch 2
  expect(forgedEntries(now, at, sealer).map((f) => f.entry)).toEqual(['a/c@3', 'a/c@3']);
  const kept = copy(planned());
  kept.pairs[0] = earlier.pairs[0]!; // as it was: it does not belong in a Secret of epoch 3
  expect(forgedEntries(kept, at, sealer)).toEqual([
    { entry: 'a/c@2', problem: "does not belong in c's Secret of epoch 3" },
  ]);
});

test("a value sealed by another key than the operator's (a replaced identity) is refused", () => {
  const rogue = new Sealer(newBoxKeyPair());
  const p = copy(planned());
  const pair = p.pairs[0]!;
  pair.sealed.a = rogue.seal(
    new Uint8Array(32).fill(7),
    envelopes.get('a')!.publicKey,
    pskContext('o', 'a', 'c', 3),
  );
  expect(forgedEntries(p, at, sealer)).toEqual([
    { entry: 'a/c@3', problem: 'value for a does not open in its context with the operator sealing key' },
  ]);
});

test("another node's Secret, a swapped private key and a wrong fingerprint are each refused", () => {
  const theirs = planned({ node: 'b' }); // b owns no pair here, but holds its private key
  expect(forgedEntries(theirs, at, sealer)).toContainEqual({
    entry: 'payload',
    problem: 'holds o/b, not o/c',
  });
  const p = copy(planned());
  p.privateKeys[0] = { ...p.privateKeys[0]!, sealed: theirs.privateKeys[0]!.sealed };
  expect(forgedEntries(p, at, sealer)).toEqual([
    { entry: 'private-key@3', problem: 'does not open in its context with the operator sealing key' },
  ]);
  const q = copy(planned());
  q.privateKeys[0] = { ...q.privateKeys[0]!, publicKey: theirs.privateKeys[0]!.publicKey };
  q.pairs[1] = { ...q.pairs[1]!, fingerprint: q.pairs[0]!.fingerprint };
  expect(forgedEntries(q, at, sealer)).toEqual([
    { entry: 'b/c@3', problem: 'value for b opens to a key other than its fingerprint names' },
    { entry: 'b/c@3', problem: 'value for c opens to a key other than its fingerprint names' },
    { entry: 'private-key@3', problem: 'opens to a key whose public half is not the one recorded' },
  ]);
});

test('values sealed to an envelope key the node no longer publishes are stale, not forged', () => {
  const p = planned();
  const moved = members.map((m) =>
    m.name === 'a' ? { ...m, envelopePublicKey: encodeKey(newBoxKeyPair().publicKey) } : m,
  );
  const pair = p.pairs[0]!;
  const q = copy(p);
  q.pairs[0]!.sealed.a = 'garbage';
  expect(forgedEntries(q, { ...at, members: moved }, sealer)).toEqual([]);
  expect(pair.a).toBe('a');
});
