import { newKemKeyPair } from '../../lib/hybrid.js';
import { encodeKey } from '../../lib/keys.js';
import { newBoxKeyPair } from '../../lib/seal.js';
import type { Member } from './keysecret.js';
import { postQuantumCondition, postQuantumFacts } from './postquantum.js';

const kemKey = Buffer.from(newKemKeyPair().publicKey).toString('base64');
const m = (name: string, kem: string | undefined, envelope = true): Member => ({
  name,
  createdAt: undefined,
  envelopePublicKey: envelope ? encodeKey(newBoxKeyPair().publicKey) : undefined,
  envelopeKemPublicKey: kem,
});

test.each<[string, Member[], 'PerPair' | 'Disabled', string, string, number, number]>([
  [
    'every node hybrid',
    [m('a', kemKey), m('b', kemKey), m('c', kemKey)],
    'PerPair',
    'True',
    'HybridSealed',
    3,
    3,
  ],
  [
    'one classical node',
    [m('a', kemKey), m('b', kemKey), m('c', undefined)],
    'PerPair',
    'False',
    'ClassicalNodes',
    1,
    3,
  ],
  [
    'an invalid ML-KEM key counts as none',
    [m('a', kemKey), m('b', 'AAAA')],
    'PerPair',
    'False',
    'ClassicalNodes',
    0,
    1,
  ],
  [
    'a node without envelope key is not counted yet',
    [m('a', kemKey), m('b', kemKey), m('c', undefined, false)],
    'PerPair',
    'True',
    'HybridSealed',
    1,
    1,
  ],
  [
    'no pre-shared keys',
    [m('a', kemKey), m('b', kemKey)],
    'Disabled',
    'False',
    'PresharedKeysDisabled',
    1,
    1,
  ],
])('%s', (_name, members, presharedKeys, status, reason, pqPairs, pairs) => {
  const facts = postQuantumFacts(members, presharedKeys);
  expect([facts.postQuantumPairs, facts.pairs]).toEqual([pqPairs, pairs]);
  const c = postQuantumCondition(facts, 4);
  expect([c.type, c.status, c.reason, c.observedGeneration]).toEqual(['PostQuantum', status, reason, 4]);
});

test('the message names the classical nodes (ten at most) and never a key', () => {
  const members = [
    m('hybrid', kemKey),
    ...Array.from({ length: 12 }, (_, i) => m(`old-${i + 10}`, undefined)),
  ];
  const c = postQuantumCondition(postQuantumFacts(members, 'PerPair'), 1);
  expect(c.message).toContain('12 node(s) publish no ML-KEM key (old-10, old-11');
  expect(c.message).toContain('and 2 more');
  for (const x of members) expect(c.message).not.toContain(x.envelopePublicKey!.slice(0, 12));
  expect(c.message).not.toContain(kemKey.slice(0, 12));
});
