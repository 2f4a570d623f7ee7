// The pairs phase: judges every pair of the overlay's nodes from both sides' reports (lib/contract/pairs.ts)
// and remembers, between passes, only what it needs to phrase Events about transitions: which pairs were
// Encrypted (one bit each) and which nodes were unusable.
import { NodeIds, visitPairRows, type PeerRow, type TunnelPeerRows } from '../../lib/contract/pairs.js';
import { NameSample, nodesUnusable, pairEvents, poolExhausted } from '../plan/events.js';
import type { DesiredTunnels } from '../plan/tunnels.js';
import type { Scope } from './overlaynetwork.scope.js';

/** What the controller remembers between passes, only to phrase Events about transitions. */
interface Memory {
  /** the pairs that were Encrypted */
  encrypted: PairSet;
  members: Set<string>;
  unusable: Set<string>;
  exhausted: boolean;
}

export interface PairCounts {
  total: number;
  encrypted: number;
  degraded: number;
  /** pairs with an agent out of touch (plan/liveness.ts): their last report is no longer news */
  unknown: number;
}

export class PairTracker {
  private readonly memory = new Map<string, Memory>();

  constructor(private readonly peerRows: TunnelPeerRows) {}

  forget(overlay: string): void {
    this.memory.delete(overlay);
  }

  /**
   * Judges the pairs of every node the overlay selects and adds the Events of what changed since the last
   * pass: pairs encrypted or lost, nodes newly unusable, the pool newly exhausted.
   */
  async track(
    scope: Scope,
    desired: DesiredTunnels,
    rows: Map<string, PeerRow | undefined>,
    unreachable: ReadonlySet<string> = new Set(),
  ): Promise<PairCounts> {
    const { name } = scope;
    const previous = this.memory.get(name);
    const memory: Memory = previous ?? {
      encrypted: new PairSet(new NodeIds()),
      members: new Set(),
      unusable: new Set(),
      exhausted: false,
    };
    // Pairs of every node the overlay selects, tunnel created in this pass or not: nodes and pair counts then
    // change together, so a join costs one status write, not one for the node and another for its pairs.
    const pairMembers = [...desired.tunnels.keys()];
    // After a cutover the devices run the target epoch; a pair is encrypted only at the epoch it should run.
    const runningEpoch =
      scope.rotation && (scope.rotation.phase === 'Verifying' || scope.rotation.phase === 'CuttingOver')
        ? scope.rotation.targetEpoch
        : scope.epoch;
    // While the nodes switch epochs every pair leaves Encrypted and comes back: the rotation's own Events say
    // so once; a pair Events only when it degrades (Stale, KeyMismatch, epochs differ).
    const switching = runningEpoch !== scope.epoch;
    // Pairs are judged one at a time and only remembered as bits: at 1,000 nodes there are 500k of them.
    const encrypted = memory.encrypted.fresh();
    const gained = new NameSample();
    const lostPairs = new NameSample();
    let unknown = 0;
    const pairs = await visitPairRows(
      this.peerRows.ids,
      pairMembers,
      [...rows]
        .filter(([node]) => desired.tunnels.has(node) && !unreachable.has(node))
        .map(([node, row]) => ({ node, row })),
      scope.rotation?.phase === 'Verifying' ? runningEpoch : undefined,
      (a, b, state, reason) => {
        const was = memory.encrypted.has(a, b);
        if (state !== 'Degraded' && unreachable.size > 0 && (unreachable.has(a) || unreachable.has(b))) {
          // Not judged (a Degraded verdict of the side still in touch stands): what was encrypted is
          // remembered, so an agent back in touch is no news by itself.
          unknown++;
          if (was) encrypted.add(a, b);
        } else if (state === 'Encrypted') {
          encrypted.add(a, b);
          if (!was && !switching) gained.addPair(a, b);
        } else if (was && (!switching || state === 'Degraded')) lostPairs.addPair(a, b, reason);
      },
    );
    // The first pass after a start only learns the baseline: a restarted operator does not re-announce.
    if (previous) scope.events.push(...pairEvents(gained, lostPairs));
    const unusable = new Set(desired.unusable.map((u) => u.node));
    const newlyUnusable = desired.unusable.filter((u) => !memory.unusable.has(u.node));
    if (newlyUnusable.length > 0) scope.events.push(nodesUnusable(newlyUnusable));
    if (desired.exhausted.length > 0 && !memory.exhausted) {
      scope.events.push(poolExhausted(scope.overlay.spec.addressPool, desired.exhausted));
    }
    this.memory.set(name, {
      encrypted,
      members: new Set(desired.tunnels.keys()),
      unusable,
      exhausted: desired.exhausted.length > 0,
    });
    return { total: pairs.total, encrypted: pairs.encrypted, degraded: pairs.degraded, unknown };
  }
}

/**
 * A set of node pairs as one bit per pair: 500k pairs of a 1,000-node overlay take 62 KB, where a Map keyed
 * by "a/b" took tens of MB. Nodes get numbers in the order first seen; pair (i, j), i < j, is bit
 * j(j-1)/2 + i, so a new node only appends bits. Sets made with fresh() share the numbering.
 */
export class PairSet {
  private bits = new Uint8Array(0);

  constructor(private readonly ids: NodeIds) {}

  /** An empty set numbering nodes as this one does. */
  fresh(): PairSet {
    return new PairSet(this.ids);
  }

  private index(a: string, b: string, assign: boolean): number | undefined {
    const i = assign ? this.ids.id(a) : this.ids.get(a);
    const j = assign ? this.ids.id(b) : this.ids.get(b);
    if (i === undefined || j === undefined) return undefined;
    const [lo, hi] = i < j ? [i, j] : [j, i];
    return (hi * (hi - 1)) / 2 + lo;
  }

  has(a: string, b: string): boolean {
    const k = this.index(a, b, false);
    return k !== undefined && k >> 3 < this.bits.length && (this.bits[k >> 3]! & (1 << (k & 7))) !== 0;
  }

  add(a: string, b: string): void {
    const k = this.index(a, b, true)!;
    if (k >> 3 >= this.bits.length) {
      const grown = new Uint8Array(Math.max((k >> 3) + 1, this.bits.length * 2));
      grown.set(this.bits);
      this.bits = grown;
    }
    this.bits[k >> 3]! |= 1 << (k & 7);
  }
}
