// Visible drops (issue #13 item 4): the fail-closed rules count per set element (agent/firewall/nft.ts), and
// every member's prefixes are elements of their own (prefixes.ts, protectedElements), so a count belongs to
// one peer node or to none (the rest of the declared ranges). DropCounter turns the kernel's element counters
// into totals per peer that only grow (Prometheus counters, agent/metrics.ts): an element added later counts
// from zero, one whose counter went down was re-made (a set re-made, an element that changed) and counts
// again from its new value. A restarted agent starts from the kernel's counters, which outlive it.
//
// The totals go into the NodeTunnel status (status.drops) at a bounded rate (dropsDue): with the next report
// the agent writes anyway, and on their own at most once per interval while they change; never while they
// do not.
import type { PeerDrops, TunnelDrops } from '../api/v1alpha1/nodetunnel.types.js';
import { deepEqual } from '../lib/runtime/conditions.js';
import type { Counter } from './firewall/firewall.js';

/** How long drop counts that changed may wait for a status write of their own (default). */
export const DEFAULT_DROPS_REPORT_INTERVAL_MS = 30_000;

export interface DropTotals {
  /** by peer node name */
  peers: Map<string, Counter>;
  /** packets to or from protected prefixes no member owns */
  unattributed: Counter;
}

const zero = (): Counter => ({ packets: 0, bytes: 0 });

export class DropCounter {
  private readonly last = new Map<string, Counter>();
  readonly totals: DropTotals = { peers: new Map(), unattributed: zero() };

  /**
   * Adds what every element counted since the last call. `owner` names the peer node of each element (CIDR)
   * as the pass attributed it; an element without one counts as unattributed.
   */
  observe(elements: ReadonlyMap<string, Counter>, owner: ReadonlyMap<string, string>): DropTotals {
    for (const [prefix, now] of elements) {
      const before = this.last.get(prefix);
      // lower than before: the element was re-made and counts from zero again
      const grew = before && now.packets >= before.packets && now.bytes >= before.bytes;
      const delta = grew ? { packets: now.packets - before.packets, bytes: now.bytes - before.bytes } : now;
      this.last.set(prefix, { ...now });
      if (delta.packets === 0 && delta.bytes === 0) continue;
      const node = owner.get(prefix);
      let total = this.totals.unattributed;
      if (node !== undefined) {
        total = this.totals.peers.get(node) ?? zero();
        this.totals.peers.set(node, total);
      }
      total.packets += delta.packets;
      total.bytes += delta.bytes;
    }
    for (const prefix of this.last.keys()) if (!elements.has(prefix)) this.last.delete(prefix);
    return this.totals;
  }
}

/** status.drops: peers with a count above zero, by name; undefined when nothing was ever counted. */
export function dropsStatus(totals: DropTotals | undefined): TunnelDrops | undefined {
  if (!totals) return undefined;
  const peers: PeerDrops[] = [...totals.peers]
    .filter(([, c]) => c.packets > 0)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([node, c]) => ({ node, packets: c.packets, bytes: c.bytes }));
  const u = totals.unattributed;
  if (peers.length === 0 && u.packets === 0) return undefined;
  return {
    ...(peers.length ? { peers } : {}),
    ...(u.packets > 0 ? { unattributed: { packets: u.packets, bytes: u.bytes } } : {}),
  };
}

/**
 * Whether changed drop counts alone justify a status write now: they changed, and the last write that
 * carried a change of them is at least `intervalMs` ago (or there was none).
 */
export function dropsDue(
  stored: TunnelDrops | undefined,
  next: TunnelDrops | undefined,
  lastWriteMs: number | undefined,
  nowMs: number,
  intervalMs: number,
): boolean {
  if (deepEqual(stored ?? null, next ?? null)) return false;
  return lastWriteMs === undefined || nowMs - lastWriteMs >= intervalMs;
}
