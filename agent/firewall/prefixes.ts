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
