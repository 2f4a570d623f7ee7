// Tunnel address allocation from an overlay's addressPool. The allocator is pure: the addresses already
// recorded in NodeTunnel specs are the only state, so allocations survive operator restarts and the API
// server's optimistic concurrency on NodeTunnel creation is what keeps two writers from colliding.
import ipaddr from 'ipaddr.js';

export interface Pool {
  family: 4 | 6;
  network: bigint;
  prefixLength: number;
  bits: number;
}

export interface Allocation {
  /** node → address without prefix, e.g. "100.64.0.7" */
  assigned: Map<string, string>;
  /** nodes that wanted an address the pool could not give */
  exhausted: string[];
}

function toBigInt(addr: ipaddr.IPv4 | ipaddr.IPv6): bigint {
  return addr.toByteArray().reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);
}

function fromBigInt(value: bigint, family: 4 | 6): string {
  const len = family === 4 ? 4 : 16;
  const bytes: number[] = [];
  for (let i = 0; i < len; i++) {
    bytes.unshift(Number(value & 0xffn));
    value >>= 8n;
  }
  return ipaddr.fromByteArray(bytes).toString();
}

export function parsePool(cidr: string): Pool {
  const [addr, prefixLength] = ipaddr.parseCIDR(cidr);
  const family = addr.kind() === 'ipv4' ? 4 : 6;
  const bits = family === 4 ? 32 : 128;
  const hostBits = BigInt(bits - prefixLength);
  const network = (toBigInt(addr) >> hostBits) << hostBits;
  return { family, network, prefixLength, bits };
}

/** First and last usable host: the network address is never handed out, nor the IPv4 broadcast. */
function usableRange(pool: Pool): [bigint, bigint] {
  const size = 1n << BigInt(pool.bits - pool.prefixLength);
  const last = pool.network + size - 1n;
  return [pool.network + 1n, pool.family === 4 ? last - 1n : last];
}

export function poolContains(pool: Pool, address: string): boolean {
  if (!ipaddr.isValid(address)) return false;
  const parsed = ipaddr.parse(address);
  if ((parsed.kind() === 'ipv4' ? 4 : 6) !== pool.family) return false;
  const [first, last] = usableRange(pool);
  const v = toBigInt(parsed);
  return v >= first && v <= last;
}

/**
 * Keeps every valid, unique, in-pool address already held and gives each node without one the lowest free
 * address, in node-name order so that the result does not depend on event order. When two nodes claim the
 * same address, the first by name keeps it and the other is re-allocated.
 */
export function allocate(
  cidr: string,
  existing: ReadonlyMap<string, string>,
  nodes: readonly string[],
): Allocation {
  const pool = parsePool(cidr);
  const sorted = [...new Set(nodes)].sort();
  const used = new Set<bigint>();
  const assigned = new Map<string, string>();
  for (const node of sorted) {
    const current = existing.get(node);
    if (current === undefined || !poolContains(pool, current)) continue;
    const v = toBigInt(ipaddr.parse(current));
    if (used.has(v)) continue;
    used.add(v);
    assigned.set(node, fromBigInt(v, pool.family));
  }
  const [first, last] = usableRange(pool);
  const exhausted: string[] = [];
  let cursor = first;
  for (const node of sorted) {
    if (assigned.has(node)) continue;
    while (cursor <= last && used.has(cursor)) cursor++;
    if (cursor > last) {
      exhausted.push(node);
      continue;
    }
    used.add(cursor);
    assigned.set(node, fromBigInt(cursor, pool.family));
  }
  return { assigned, exhausted };
}

/** Number of addresses the pool can hand out. */
export function poolCapacity(cidr: string): bigint {
  const [first, last] = usableRange(parsePool(cidr));
  return last >= first ? last - first + 1n : 0n;
}
