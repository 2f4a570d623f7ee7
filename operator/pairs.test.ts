import { computePairs, type SideReport } from './pairs.js';

const enc = (node: string, epoch = 1) => ({ node, state: 'Encrypted' as const, epoch });

test.each<[string, SideReport[], string, string]>([
  [
    'both encrypted at one epoch',
    [
      { node: 'a', peers: [enc('b')] },
      { node: 'b', peers: [enc('a')] },
    ],
    'Encrypted',
    'epoch 1',
  ],
  ['one side only', [{ node: 'a', peers: [enc('b')] }], 'Pending', 'b has not reported a'],
  [
    'epochs differ',
    [
      { node: 'a', peers: [enc('b', 2)] },
      { node: 'b', peers: [enc('a', 1)] },
    ],
    'Degraded',
    'epochs differ',
  ],
  [
    'stale on one side',
    [
      { node: 'a', peers: [enc('b')] },
      { node: 'b', peers: [{ node: 'a', state: 'Stale', epoch: 1 }] },
    ],
    'Degraded',
    'b sees a Stale',
  ],
  [
    'key mismatch',
    [
      { node: 'a', peers: [{ node: 'b', state: 'KeyMismatch' }] },
      { node: 'b', peers: [enc('a')] },
    ],
    'Degraded',
    'a sees b KeyMismatch',
  ],
  [
    'handshaking',
    [
      { node: 'a', peers: [{ node: 'b', state: 'Handshaking' }] },
      { node: 'b', peers: [enc('a')] },
    ],
    'Pending',
    'a sees b Handshaking',
  ],
  ['nobody reported', [], 'Pending', 'a has not reported b'],
])('%s', (_name, reports, state, reason) => {
  const got = computePairs(['b', 'a'], reports);
  expect(got.total).toBe(1);
  expect(got.pairs[0]).toMatchObject({ a: 'a', b: 'b', state });
  expect(got.pairs[0]!.reason).toContain(reason);
});

test('counts over a 4-node overlay', () => {
  const nodes = ['n1', 'n2', 'n3', 'n4'];
  const reports: SideReport[] = nodes.map((n) => ({
    node: n,
    peers: nodes.filter((p) => p !== n).map((p) => enc(p)),
  }));
  reports[3] = { node: 'n4', peers: [enc('n1'), enc('n2'), { node: 'n3', state: 'Stale', epoch: 1 }] };
  expect(computePairs(nodes, reports)).toMatchObject({ total: 6, encrypted: 5, degraded: 1 });
});

test('with an epoch, only pairs at that epoch count as encrypted', () => {
  const reports: SideReport[] = [
    { node: 'a', peers: [enc('b', 1)] },
    { node: 'b', peers: [enc('a', 1)] },
  ];
  expect(computePairs(['a', 'b'], reports, 2)).toMatchObject({ encrypted: 0, degraded: 0 });
  expect(computePairs(['a', 'b'], reports, 1)).toMatchObject({ encrypted: 1 });
});
