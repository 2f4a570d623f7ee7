// Which prefixes an overlay's fail-closed rules protect on this node (../shared/DESIGN.md, "Fail-closed data
// plane"): every other member's tunnel address and allowed IPs (its pod CIDRs), known from the NodeTunnel
// specs before the member has keys or a PSK; the ranges the user declared for the overlay (typically the
// cluster's pod range, so a node whose NodeTunnel does not exist yet is covered too); every prefix a peer on
// the device still routes (a member's prefixes leave the set only after its peer is removed); minus this
// node's own tunnel address and pod CIDRs (its local traffic never takes the tunnel) and minus the pod CIDRs
// of nodes judged non-members. The result is a list of disjoint CIDRs, sorted, as an nft interval set holds
// them. Pure: table-tested in prefixes.test.ts.
import ipaddr from 'ipaddr.js';

export interface ProtectedInput {
  /** other members' prefixes: tunnel addresses (any prefix length: taken as host routes) and allowed IPs */
  members: readonly string[];
  /** what the user declared for the overlay (spec.dataPlane.protectedRanges) */
  declared: readonly string[];
  /** allowed IPs of the peers on the device now */
  onDevice: readonly string[];
  /** this node's own tunnel address and pod CIDRs */
  own: readonly string[];
  /** pod CIDRs of nodes judged non-members */
  nonMembers: readonly string[];
}

type Family = 4 | 6;
interface Interval {
  family: Family;
  lo: bigint;
  hi: bigint;
}

/** Disjoint, sorted CIDRs: (members ∪ declared ∪ onDevice) − (own ∪ nonMembers). */
export function protectedPrefixes(input: ProtectedInput): string[] {
  const add = [...input.members, ...input.declared, ...input.onDevice].map(toInterval);
  const remove = [...input.own, ...input.nonMembers].map(toInterval);
  const out: string[] = [];
  for (const family of [4, 6] as const) {
    const kept = subtract(
      union(add.filter((i) => i.family === family)),
      union(remove.filter((i) => i.family === family)),
    );
    for (const i of kept) out.push(...toCidrs(i));
  }
  return out;
}

/** Who an element of the set is for: a member node, or none (the rest of the declared ranges). */
export interface ProtectedElement {
  prefix: string;
  node?: string;
}

export interface AttributedInput {
  /** other members' prefixes by node (tunnel address as a host, allowed IPs) */
  members: ReadonlyArray<{ node: string; prefixes: readonly string[] }>;
  declared: readonly string[];
  /** allowed IPs of the peers on the device now, with their node when known */
  onDevice: ReadonlyArray<{ node?: string | undefined; prefixes: readonly string[] }>;
  own: readonly string[];
  nonMembers: readonly string[];
}

/**
 * The set's elements: what protectedPrefixes covers, cut so that every member's prefixes are elements of
 * their own (not merged with a neighbour or swallowed by a declared range), each counting for its node. The
 * rest (declared ranges, peers on the device of unknown node) is covered by elements for no node. A prefix
 * two members claim goes to the first by name. Disjoint, sorted as protectedPrefixes sorts.
 */
export function protectedElements(input: AttributedInput): ProtectedElement[] {
  const covered = protectedPrefixes({
    members: input.members.flatMap((m) => m.prefixes),
    declared: input.declared,
    onDevice: input.onDevice.flatMap((d) => d.prefixes),
    own: input.own,
    nonMembers: input.nonMembers,
  }).map(toInterval);
  const owners = new Map<string, string[]>();
  for (const m of [...input.members, ...input.onDevice.filter((d) => d.node !== undefined)])
    owners.set(m.node!, [...(owners.get(m.node!) ?? []), ...m.prefixes]);
  const out: Array<{ i: Interval; node?: string }> = [];
  for (const family of [4, 6] as const) {
    let rest = covered.filter((i) => i.family === family);
    for (const node of [...owners.keys()].sort()) {
      const mine = union(
        owners
          .get(node)!
          .map(toInterval)
          .filter((i) => i.family === family),
      );
      // what of the node's prefixes is still to be covered: rest ∩ mine = rest − (rest − mine)
      const taken = subtract(rest, subtract(rest, mine));
      for (const i of taken) out.push({ i, node });
      rest = subtract(rest, taken);
    }
    for (const i of rest) out.push({ i });
  }
  out.sort((a, b) => a.i.family - b.i.family || (a.i.lo < b.i.lo ? -1 : a.i.lo > b.i.lo ? 1 : 0));
  return out.flatMap(({ i, node }) => toCidrs(i).map((prefix) => (node ? { prefix, node } : { prefix })));
}

/** Each prefix normalized (host bits cleared, a bare address a host), sorted; an error if two overlap. */
export function disjointCidrs(list: readonly string[]): string[] {
  const all = list.map(toInterval);
  const sorted = [...all].sort((a, b) => a.family - b.family || (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0));
  for (let k = 1; k < sorted.length; k++) {
    const [a, b] = [sorted[k - 1]!, sorted[k]!];
    if (a.family === b.family && b.lo <= a.hi)
      throw new Error(`set elements overlap: ${toCidrs(a).join(',')} and ${toCidrs(b).join(',')}`);
  }
  return sorted.flatMap(toCidrs);
}

/** What changes from `have` to `want` (both lists of CIDRs), in words for the log. */
export function prefixDiff(
  have: readonly string[],
  want: readonly string[],
): { added: string[]; removed: string[] } {
  const h = new Set(have);
  const w = new Set(want);
  return { added: want.filter((p) => !h.has(p)), removed: have.filter((p) => !w.has(p)) };
}

/** The addresses first..last (an nft range element) as the fewest CIDRs. */
export function rangeToCidrs(first: string, last: string): string[] {
  const a = toInterval(first);
  const b = toInterval(last);
  if (a.family !== b.family) throw new Error(`range ${first}-${last} mixes address families`);
  return toCidrs({ family: a.family, lo: a.lo, hi: b.hi });
}

/** An address (a host) or a CIDR as an interval; tunnel addresses like 10.99.0.7/16 count as the host. */
function toInterval(s: string): Interval {
  const hostOnly = !s.includes('/');
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  let len: number;
  try {
    [addr, len] = hostOnly ? [ipaddr.parse(s), -1] : ipaddr.parseCIDR(s);
  } catch {
    throw new Error(`invalid prefix '${s}'`);
  }
  const family: Family = addr.kind() === 'ipv4' ? 4 : 6;
  const bits = family === 4 ? 32 : 128;
  if (len < 0) len = bits;
  const value = toBig(addr);
  const size = 1n << BigInt(bits - len);
  const lo = (value / size) * size;
  return { family, lo, hi: lo + size - 1n };
}

function union(list: Interval[]): Interval[] {
  const sorted = [...list].sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0));
  const out: Interval[] = [];
  for (const i of sorted) {
    const last = out[out.length - 1];
    if (last && i.lo <= last.hi + 1n) {
      if (i.hi > last.hi) last.hi = i.hi;
    } else out.push({ ...i });
  }
  return out;
}

function subtract(from: Interval[], cut: Interval[]): Interval[] {
  let out = from;
  for (const c of cut) {
    const next: Interval[] = [];
    for (const i of out) {
      if (c.hi < i.lo || c.lo > i.hi) {
        next.push(i);
        continue;
      }
      if (c.lo > i.lo) next.push({ family: i.family, lo: i.lo, hi: c.lo - 1n });
      if (c.hi < i.hi) next.push({ family: i.family, lo: c.hi + 1n, hi: i.hi });
    }
    out = next;
  }
  return out;
}

/** The fewest CIDRs that cover exactly [lo, hi]. */
function toCidrs(i: Interval): string[] {
  const bits = i.family === 4 ? 32 : 128;
  const out: string[] = [];
  let lo = i.lo;
  while (lo <= i.hi) {
    let len = bits;
    // grow the block while it stays aligned at lo and inside the interval
    while (len > 0) {
      const size = 1n << BigInt(bits - len + 1);
      if (lo % size !== 0n || lo + size - 1n > i.hi) break;
      len--;
    }
    out.push(`${fromBig(lo, i.family)}/${len}`);
    lo += 1n << BigInt(bits - len);
  }
  return out;
}

function toBig(addr: ipaddr.IPv4 | ipaddr.IPv6): bigint {
  return addr.toByteArray().reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);
}

function fromBig(v: bigint, family: Family): string {
  const n = family === 4 ? 4 : 16;
  const bytes: number[] = [];
  for (let k = n - 1; k >= 0; k--) bytes.push(Number((v >> BigInt(8 * k)) & 0xffn));
  return ipaddr.fromByteArray(bytes).toString();
}
