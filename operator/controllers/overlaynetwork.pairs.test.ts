import type { OverlayNetwork } from '../../api/v1alpha1/overlaynetwork.types.js';
import { peerRow, TunnelPeerRows, type PeerRow, type SideReport } from '../../lib/contract/pairs.js';
import type { DesiredTunnels } from '../plan/tunnels.js';
import { PairSet, PairTracker } from './overlaynetwork.pairs.js';
import { newScope } from './overlaynetwork.scope.js';
import { NodeIds } from '../../lib/contract/pairs.js';

const overlay = {
  metadata: { name: 'mesh' },
  spec: { addressPool: '10.0.0.0/30' },
  status: { epoch: 1 },
} as unknown as OverlayNetwork;

function desired(nodes: string[], unusable: DesiredTunnels['unusable'] = [], exhausted: string[] = []) {
  return {
    tunnels: new Map(nodes.map((n) => [n, {}])),
    unusable,
    exhausted,
  } as unknown as DesiredTunnels;
}

function pass(
  tracker: PairTracker,
  rows: TunnelPeerRows,
  d: DesiredTunnels,
  reports: SideReport[],
  unreachable: Set<string> = new Set(),
) {
  const scope = newScope(overlay, overlay, 'mesh', new Date());
  const byNode = new Map<string, PeerRow | undefined>(
    reports.map((r) => [r.node, peerRow(rows.ids, r.peers)]),
  );
  return tracker
    .track(scope, d, byNode, unreachable)
    .then((counts) => ({ counts, events: scope.events.map((e) => e.reason) }));
}

const both = (state: 'Encrypted' | 'Stale'): SideReport[] => [
  { node: 'a', peers: [{ node: 'b', state, epoch: 1 }] },
  { node: 'b', peers: [{ node: 'a', state: 'Encrypted', epoch: 1 }] },
];

test('the first pass learns the baseline; later passes report pairs gained and lost', async () => {
  const rows = new TunnelPeerRows();
  const tracker = new PairTracker(rows);
  expect(await pass(tracker, rows, desired(['a', 'b']), both('Encrypted'))).toEqual({
    counts: { total: 1, encrypted: 1, degraded: 0, unknown: 0 },
    events: [],
  });
  expect((await pass(tracker, rows, desired(['a', 'b']), both('Stale'))).events).toEqual([
    'PairLostEncryption',
  ]);
  expect((await pass(tracker, rows, desired(['a', 'b']), both('Encrypted'))).events).toEqual([
    'PairEncrypted',
  ]);
  tracker.forget('mesh');
  expect((await pass(tracker, rows, desired(['a', 'b']), both('Stale'))).events).toEqual([]);
});

test('unusable nodes and an exhausted pool are announced once, when they begin', async () => {
  const rows = new TunnelPeerRows();
  const tracker = new PairTracker(rows);
  const d = desired(['a'], [{ node: 'b', reason: 'node has no InternalIP address' }], ['c']);
  expect((await pass(tracker, rows, d, [])).events).toEqual(['NodeUnusable', 'AddressPoolExhausted']);
  expect((await pass(tracker, rows, d, [])).events).toEqual([]);
});

test('PairSet: one bit per pair, either order, sets share numbering', () => {
  const set = new PairSet(new NodeIds());
  set.add('a', 'b');
  set.add('c', 'a');
  expect([set.has('b', 'a'), set.has('a', 'c'), set.has('b', 'c'), set.has('x', 'a')]).toEqual([
    true,
    true,
    false,
    false,
  ]);
  expect(set.fresh().has('a', 'b')).toBe(false);
});

test("pairs of an agent out of touch are Unknown, not its last report; no Event either way; the other side's Stale stands", async () => {
  const rows = new TunnelPeerRows();
  const tracker = new PairTracker(rows);
  const three = desired(['a', 'b', 'c']);
  const all: SideReport[] = ['a', 'b', 'c'].map((n) => ({
    node: n,
    peers: ['a', 'b', 'c']
      .filter((p) => p !== n)
      .map((p) => ({ node: p, state: 'Encrypted' as const, epoch: 1 })),
  }));
  expect((await pass(tracker, rows, three, all)).counts).toEqual({
    total: 3,
    encrypted: 3,
    degraded: 0,
    unknown: 0,
  });
  expect(await pass(tracker, rows, three, all, new Set(['c']))).toEqual({
    counts: { total: 3, encrypted: 1, degraded: 0, unknown: 2 },
    events: [],
  });
  // back in touch: encrypted as before, and no PairEncrypted Event for pairs that never stopped
  expect(await pass(tracker, rows, three, all)).toEqual({
    counts: { total: 3, encrypted: 3, degraded: 0, unknown: 0 },
    events: [],
  });
  // a sees c Stale: that is known from a, whatever c's Lease says
  const staleAC = all.map((r) =>
    r.node === 'a'
      ? { ...r, peers: r.peers.map((p) => (p.node === 'c' ? { ...p, state: 'Stale' as const } : p)) }
      : r,
  );
  expect(await pass(tracker, rows, three, staleAC, new Set(['c']))).toEqual({
    counts: { total: 3, encrypted: 1, degraded: 1, unknown: 1 },
    events: ['PairLostEncryption'],
  });
});
