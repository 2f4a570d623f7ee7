// Per-pair encryption status. Each agent reports only what it sees from its own side; a pair counts as
// encrypted only when both ends report Encrypted at the same epoch, because one side's fresh handshake can
// hide a peer that still uses the other key (the handshake it saw may be from before the peer rotated).

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
  const pairs: Pair[] = [];
  const walk = walkPairs(nodes, reports, epoch, (a, b, state, reason) =>
    pairs.push({ a, b, state, reason: reason() }),
  );
  let step = walk.next();
  while (!step.done) step = walk.next();
  return { ...step.value, pairs };
}

/** Called once per pair, a < b, in order; `reason` builds the short reason only when asked. */
export type PairVisitor = (a: string, b: string, state: PairState, reason: () => string) => void;

/** How many pairs visitPairs judges between two turns of the event loop. */
const PAIRS_PER_SLICE = 20_000;

/**
 * computePairs without the list: each pair goes to `visit` and is forgotten, and the walk yields to the event
 * loop every PAIRS_PER_SLICE pairs. At 1,000 nodes a pass has 500k pairs: kept in a list they cost tens of
 * MB, and judged in one go they hold up lease renewals, watches and /healthz.
 */
export async function visitPairs(
  nodes: readonly string[],
  reports: readonly SideReport[],
  epoch: number | undefined,
  visit: PairVisitor,
): Promise<Omit<PairSummary, 'pairs'>> {
  const walk = walkPairs(nodes, reports, epoch, visit);
  for (;;) {
    const step = walk.next();
    if (step.done) return step.value;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

function* walkPairs(
  nodes: readonly string[],
  reports: readonly SideReport[],
  epoch: number | undefined,
  visit: PairVisitor,
): Generator<void, Omit<PairSummary, 'pairs'>> {
  const seen = new Map<string, Map<string, Side>>();
  for (const r of reports) seen.set(r.node, new Map(r.peers.map((p) => [p.node, p])));
  const sorted = [...new Set(nodes)].sort();
  let total = 0;
  let encrypted = 0;
  let degraded = 0;
  let slice = 0;
  for (let i = 0; i < sorted.length; i++) {
    const row = seen.get(sorted[i]!);
    for (let j = i + 1; j < sorted.length; j++) {
      const a = sorted[i]!;
      const b = sorted[j]!;
      const ab = row?.get(b);
      const ba = seen.get(b)?.get(a);
      const state = judgeState(ab, ba, epoch);
      total++;
      if (state === 'Encrypted') encrypted++;
      else if (state === 'Degraded') degraded++;
      visit(a, b, state, () => judge(a, b, ab, ba, epoch).reason);
      if (++slice === PAIRS_PER_SLICE) {
        slice = 0;
        yield;
      }
    }
  }
  return { total, encrypted, degraded };
}

/** judge(...).state without building the reason. */
function judgeState(ab: Side, ba: Side, epoch?: number): PairState {
  if (ab?.state === 'Stale' || ab?.state === 'KeyMismatch') return 'Degraded';
  if (ba?.state === 'Stale' || ba?.state === 'KeyMismatch') return 'Degraded';
  if (ab?.state === 'Encrypted' && ba?.state === 'Encrypted') {
    if (ab.epoch !== ba.epoch) return 'Degraded';
    return epoch !== undefined && ab.epoch !== epoch ? 'Pending' : 'Encrypted';
  }
  return 'Pending';
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
