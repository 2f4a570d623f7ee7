import {
  computePairs,
  NodeIds,
  peerRow,
  rowHasEncryptedAt,
  TunnelPeerRows,
  visitPairRows,
  visitPairs,
  type SideReport,
} from './pairs.js';
import type { PeerState } from '../../api/v1alpha1/nodetunnel.types.js';

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
    'stalled on one side',
    [
      { node: 'a', peers: [enc('b')] },
      { node: 'b', peers: [{ node: 'a', state: 'Stalled', epoch: 1 }] },
    ],
    'Degraded',
    'b receives nothing from a while sending (Stalled; b re-created the peer once)',
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
    'Stalled',
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
    // The rule, spelled out on plain reports (the walk judges packed numbers).
    const sa = c.ab ? { state: c.ab, epoch: 1 } : undefined;
    const sb = c.ba ? { state: c.ba, epoch: c.eb } : undefined;
    const bad = (x?: { state: string }) =>
      x?.state === 'Stale' || x?.state === 'KeyMismatch' || x?.state === 'Stalled';
    const rule =
      bad(sa) || bad(sb)
        ? 'Degraded'
        : sa?.state === 'Encrypted' && sb?.state === 'Encrypted'
          ? sa.epoch !== sb.epoch
            ? 'Degraded'
            : c.target !== undefined && sa.epoch !== c.target
              ? 'Pending'
              : 'Encrypted'
          : 'Pending';
    expect(want.pairs[0]!.state).toBe(rule);
    const seen: unknown[] = [];
    const got = await visitPairs(['b', 'a'], reports, c.target, (a, b, state, reason) =>
      seen.push({ a, b, state, reason: reason() }),
    );
    expect(seen).toEqual(want.pairs);
    expect(got).toEqual({ total: want.total, encrypted: want.encrypted, degraded: want.degraded });
    // The state (judged without building a reason) agrees with the reason given for it.
    const { state, reason } = want.pairs[0]!;
    if (state === 'Encrypted') expect(reason).toMatch(/^encrypted at epoch/);
    else if (state === 'Degraded') expect(reason).toMatch(/Stale|Stalled|KeyMismatch|epochs differ/);
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

describe('compact rows', () => {
  test('rows built before a name was known still answer for it (not reported)', async () => {
    const ids = new NodeIds();
    const early = peerRow(ids, [enc('b', 3)]); // built before 'a' and 'c' had ids
    const late = peerRow(ids, [enc('a', 3), enc('c', 3)]);
    const got: string[] = [];
    const counts = await visitPairRows(
      ids,
      ['a', 'b', 'c'],
      [
        { node: 'a', row: early },
        { node: 'b', row: late },
        { node: 'c', row: undefined },
      ],
      3,
      (a, b, state, reason) => got.push(`${a}/${b} ${state}: ${reason()}`),
    );
    expect(got).toEqual([
      'a/b Encrypted: encrypted at epoch 3',
      'a/c Pending: a has not reported c',
      'b/c Pending: c has not reported b',
    ]);
    expect(counts).toEqual({ total: 3, encrypted: 1, degraded: 0 });
  });

  test('rowHasEncryptedAt looks for Encrypted at exactly that epoch', () => {
    const ids = new NodeIds();
    const row = peerRow(ids, [enc('a', 4), { node: 'b', state: 'Stale', epoch: 5 }]);
    expect(rowHasEncryptedAt(row, 4)).toBe(true);
    expect(rowHasEncryptedAt(row, 5)).toBe(false);
    expect(rowHasEncryptedAt(peerRow(ids, []), 4)).toBe(false);
  });

  test('large epochs survive packing', () => {
    const e = 2 ** 40 + 1;
    const reports: SideReport[] = [
      { node: 'a', peers: [enc('b', e)] },
      { node: 'b', peers: [enc('a', e)] },
    ];
    expect(computePairs(['a', 'b'], reports, e)).toMatchObject({ encrypted: 1 });
    expect(computePairs(['a', 'b'], reports, e - 1)).toMatchObject({ encrypted: 0 });
  });

  test('TunnelPeerRows.strip drops the peer list from the object and keeps it as a row', () => {
    const rows = new TunnelPeerRows();
    for (const node of ['b', 'c', 'd', 'x']) rows.strip({ spec: { nodeName: node } }); // the members
    const raw = {
      metadata: { name: 'ovl.a', resourceVersion: '7' },
      status: {
        appliedEpoch: 2,
        peers: [
          { node: 'b', state: 'Encrypted', epoch: 2, since: 't' },
          { node: 'c', state: 'NotAState', epoch: 2 },
          { node: 'd', state: 'Stale', epoch: 'two' },
        ],
      },
    };
    const stripped = rows.strip(raw);
    expect(stripped).toEqual({ metadata: raw.metadata, status: { appliedEpoch: 2 } });
    expect(raw.status.peers).toHaveLength(3); // the input is not modified
    const row = rows.rowOf(stripped)!;
    expect(rowHasEncryptedAt(row, 2)).toBe(true);
    expect(Array.from(row).filter((code) => code !== 0)).toHaveLength(1); // malformed entries: not reported
    expect(rows.rowOf({ status: {} })).toBeUndefined();
    const unstripped = { status: { peers: [{ node: 'x', state: 'Encrypted', epoch: 9 }] } };
    expect(rowHasEncryptedAt(rows.rowOf(unstripped)!, 9)).toBe(true);
    expect(rows.rowOf(unstripped)).toBe(rows.rowOf(unstripped)); // remembered
    const plain = { metadata: { name: 'no-status' } };
    expect(rows.strip(plain)).toBe(plain);
  });

  test('TunnelPeerRows: names an agent invents get no number and no room in any row (S7)', () => {
    const rows = new TunnelPeerRows();
    for (const node of ['a', 'b']) rows.strip({ spec: { nodeName: node } });
    let last: object | undefined;
    // 20 writes of 4,096 invented names each (the CRD's maxItems), the way a hostile agent would repeat them
    for (let w = 0; w < 20; w++) {
      const peers = [enc('b'), ...Array.from({ length: 4096 }, (_, i) => enc(`ghost-${w}-${i}`))];
      last = rows.strip({ spec: { nodeName: 'a' }, status: { peers } });
      const row = rows.rowOf(last)!;
      expect(row.length).toBeLessThanOrEqual(2);
      expect(rowHasEncryptedAt(row, 1)).toBe(true);
    }
    expect(rows.ids.size).toBe(2);
  });

  test('TunnelPeerRows: a peer reported before its own tunnel was seen counts once it is', () => {
    const rows = new TunnelPeerRows();
    // a relist delivers a's tunnel (reporting b) before b's tunnel
    const a = rows.strip({ spec: { nodeName: 'a' }, status: { peers: [enc('b', 3)] } });
    expect(rowHasEncryptedAt(rows.rowOf(a)!, 3)).toBe(false);
    rows.strip({ spec: { nodeName: 'b' } });
    const row = rows.rowOf(a)!;
    expect(row[rows.ids.get('b')!]).toBeGreaterThan(0);
    expect(rowHasEncryptedAt(row, 3)).toBe(true);
    expect(rows.rowOf(a)).toBe(row); // folded once, remembered
  });
});
