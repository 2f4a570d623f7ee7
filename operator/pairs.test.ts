import { computePairs, visitPairs, type PeerState, type SideReport } from './pairs.js';

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

describe('visitPairs', () => {
  const states: Array<PeerState | undefined> = [
    undefined,
    'Encrypted',
    'Handshaking',
    'Stale',
    'KeyMismatch',
    'AwaitingPeer',
  ];
  // Every combination of what the two sides report, at two epochs, judged with and without a target epoch.
  const cases = states.flatMap((ab) =>
    states.flatMap((ba) =>
      [1, 2].flatMap((eb) => [undefined, 1, 2].map((target) => ({ ab, ba, eb, target }))),
    ),
  );

  test.each(cases)('$ab/$ba (b at epoch $eb, target $target): same pair as computePairs', async (c) => {
    const reports: SideReport[] = [
      { node: 'a', peers: c.ab ? [{ node: 'b', state: c.ab, epoch: 1 }] : [] },
      { node: 'b', peers: c.ba ? [{ node: 'a', state: c.ba, epoch: c.eb }] : [] },
    ];
    const want = computePairs(['a', 'b'], reports, c.target);
    const seen: unknown[] = [];
    const got = await visitPairs(['b', 'a'], reports, c.target, (a, b, state, reason) =>
      seen.push({ a, b, state, reason: reason() }),
    );
    expect(seen).toEqual(want.pairs);
    expect(got).toEqual({ total: want.total, encrypted: want.encrypted, degraded: want.degraded });
    // The state (judged without building a reason) agrees with the reason given for it.
    const { state, reason } = want.pairs[0]!;
    if (state === 'Encrypted') expect(reason).toMatch(/^encrypted at epoch/);
    else if (state === 'Degraded') expect(reason).toMatch(/Stale|KeyMismatch|epochs differ/);
    else expect(reason).not.toMatch(/Stale$|KeyMismatch$|epochs differ/);
  });

  test('a large overlay is walked in order, in slices, without building a list', async () => {
    const nodes = Array.from({ length: 300 }, (_, i) => `n${String(i).padStart(3, '0')}`);
    const reports: SideReport[] = nodes.map((n) => ({
      node: n,
      peers: nodes.filter((p) => p !== n).map((p) => enc(p)),
    }));
    let turns = 0;
    const ticker = setInterval(() => turns++, 0);
    let last = '';
    let ordered = true;
    const got = await visitPairs([...nodes].reverse(), reports, undefined, (a, b) => {
      const key = `${a}/${b}`;
      if (!(a < b) || !(key > last)) ordered = false;
      last = key;
    });
    clearInterval(ticker);
    expect(got).toEqual({ total: 44_850, encrypted: 44_850, degraded: 0 });
    expect(ordered).toBe(true);
    expect(turns).toBeGreaterThan(0); // timers ran while the walk was under way
  });
});
