// Per-pair encryption status. Each agent reports only what it sees from its own side; a pair counts as
// encrypted only when both ends report Encrypted at the same epoch, because one side's fresh handshake can
// hide a peer that still uses the other key (the handshake it saw may be from before the peer rotated).
import { pairKey } from '../lib/keysecret.js';

export type PeerState = 'Encrypted' | 'Handshaking' | 'Stale' | 'KeyMismatch' | 'AwaitingPeer';

export interface SideReport {
  node: string;
  peers: ReadonlyArray<{ node: string; state: PeerState; epoch?: number | undefined }>;
}

export type PairState = 'Encrypted' | 'Pending' | 'Degraded';

export interface Pair {
  a: string;
  b: string;
  state: PairState;
  /** short reason, e.g. "a sees b Stale" */
  reason: string;
}

export interface PairSummary {
  total: number;
  encrypted: number;
  degraded: number;
  pairs: Pair[];
}

/**
 * With `epoch`, a pair is encrypted only when both sides report Encrypted at exactly that epoch (used while
 * a rotation is verified: encrypted at the old epoch does not count).
 */
export function computePairs(
  nodes: readonly string[],
  reports: readonly SideReport[],
  epoch?: number,
): PairSummary {
  const seen = new Map<string, Map<string, { state: PeerState; epoch?: number | undefined }>>();
  for (const r of reports) seen.set(r.node, new Map(r.peers.map((p) => [p.node, p])));
  const sorted = [...new Set(nodes)].sort();
  const pairs: Pair[] = [];
  for (let i = 0; i < sorted.length; i++) {
    for (let j = i + 1; j < sorted.length; j++) {
      const [a, b] = pairKey(sorted[i]!, sorted[j]!);
      const ab = seen.get(a)?.get(b);
      const ba = seen.get(b)?.get(a);
      pairs.push({ a, b, ...judge(a, b, ab, ba, epoch) });
    }
  }
  return {
    total: pairs.length,
    encrypted: pairs.filter((p) => p.state === 'Encrypted').length,
    degraded: pairs.filter((p) => p.state === 'Degraded').length,
    pairs,
  };
}

type Side = { state: PeerState; epoch?: number | undefined } | undefined;

function judge(
  a: string,
  b: string,
  ab: Side,
  ba: Side,
  epoch?: number,
): { state: PairState; reason: string } {
  for (const [from, to, side] of [
    [a, b, ab],
    [b, a, ba],
  ] as const) {
    if (side?.state === 'Stale' || side?.state === 'KeyMismatch') {
      return { state: 'Degraded', reason: `${from} sees ${to} ${side.state}` };
    }
  }
  if (ab?.state === 'Encrypted' && ba?.state === 'Encrypted') {
    if (ab.epoch === ba.epoch) {
      if (epoch !== undefined && ab.epoch !== epoch) {
        return { state: 'Pending', reason: `encrypted at epoch ${ab.epoch ?? 0}, not yet at ${epoch}` };
      }
      return { state: 'Encrypted', reason: `encrypted at epoch ${ab.epoch ?? 0}` };
    }
    return { state: 'Degraded', reason: `epochs differ: ${a} at ${ab.epoch ?? 0}, ${b} at ${ba.epoch ?? 0}` };
  }
  if (!ab) return { state: 'Pending', reason: `${a} has not reported ${b}` };
  if (!ba) return { state: 'Pending', reason: `${b} has not reported ${a}` };
  const waiting = ab.state !== 'Encrypted' ? [a, b, ab.state] : [b, a, ba.state];
  return { state: 'Pending', reason: `${waiting[0]} sees ${waiting[1]} ${waiting[2]}` };
}
