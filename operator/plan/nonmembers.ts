// Which pod CIDRs the agents leave out of an overlay's fail-closed rules (issue #13 item 1; ../shared/DESIGN.md,
// "Fail-closed data plane"): a declared protected range (typically the cluster's whole pod range) also covers
// nodes the overlay does not select, and their pods must stay reachable the CNI's way. The operator knows the
// Nodes and the selector; agents read no Nodes, so the result is published in the overlay's status. A node
// the selector matches is never left out, whether or not it has a NodeTunnel yet: traffic to a node still
// joining is dropped, not sent in the clear. Pure: table-tested in nonmembers.test.ts.
import { MAX_NON_MEMBER_POD_CIDRS } from '../../api/v1alpha1/overlaynetwork.types.js';
import { matchesSelector, type LabelSelector } from '../../lib/selector.js';
import { overlaps, rangeOf, type Range } from './conflicts.js';
import type { NodeView } from './tunnels.js';

/** At most this many CIDRs in status.nonMemberPodCIDRs; beyond it the rest stay protected (dropped). */
export const MAX_NON_MEMBER_CIDRS = MAX_NON_MEMBER_POD_CIDRS;

export interface NonMemberInput {
  nodeSelector?: LabelSelector | undefined;
  /** spec.dataPlane.protectedRanges */
  declared: readonly string[];
  /** every member's tunnel address and allowed IPs: never left out, even when a non-member claims them */
  memberPrefixes: readonly string[];
}

export interface NonMembers {
  /** sorted, unique, at most MAX_NON_MEMBER_CIDRS */
  cidrs: string[];
  /** how many more there were (they stay protected) */
  truncated: number;
}

/** Pod CIDRs of nodes the overlay does not select that lie in a declared range and touch no member's prefix. */
export function nonMemberPodCIDRs(nodes: readonly NodeView[], input: NonMemberInput): NonMembers {
  const ranges = (list: readonly string[]) => list.map(rangeOf).filter((r): r is Range => r !== undefined);
  const declared = ranges(input.declared);
  const members = ranges(input.memberPrefixes);
  if (declared.length === 0) return { cidrs: [], truncated: 0 };
  const out = new Set<string>();
  for (const node of nodes) {
    if (!node.deleting && matchesSelector(input.nodeSelector, node.labels)) continue;
    for (const cidr of node.podCIDRs) {
      const r = rangeOf(cidr);
      if (!r) continue;
      if (!declared.some((d) => overlaps(d, r)) || members.some((m) => overlaps(m, r))) continue;
      out.add(cidr);
    }
  }
  const sorted = [...out].sort(byAddress);
  return {
    cidrs: sorted.slice(0, MAX_NON_MEMBER_CIDRS),
    truncated: Math.max(0, sorted.length - MAX_NON_MEMBER_CIDRS),
  };
}

function byAddress(a: string, b: string): number {
  const x = rangeOf(a)!;
  const y = rangeOf(b)!;
  return x.family - y.family || (x.first < y.first ? -1 : x.first > y.first ? 1 : a < b ? -1 : a > b ? 1 : 0);
}
