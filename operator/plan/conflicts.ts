// Conflicts between an overlay's members and with other overlays, reported instead of silently resolved
// (security review S10, issue #14 item 4). Pure: the controller gathers the facts, this decides what is
// wrong, what must not be sealed to, and which pod CIDRs no tunnel may route.
import { fingerprint } from '../../lib/keys.js';
import { listNames } from './events.js';
import { parsePool } from './ipam.js';

export interface ConflictMember {
  node: string;
  /** the WireGuard public key the node publishes (Node custody) or was given (Operator custody) */
  publicKey?: string | undefined;
  envelopePublicKey?: string | undefined;
  /** the node's pod CIDRs, as its tunnel would route them */
  podCIDRs: readonly string[];
  /** the node's underlay addresses */
  internalIPs: readonly string[];
  /** its agent refuses the operator's published sealing key (NodeTunnel OperatorKeyTrusted=False) */
  operatorKeyRefused?: boolean;
}

export interface OtherOverlay {
  name: string;
  addressPool: string;
  listenPort: number;
  /** the nodes it selects */
  nodes: readonly string[];
}

export interface ConflictFacts {
  addressPool: string;
  listenPort: number;
  members: readonly ConflictMember[];
  others: readonly OtherOverlay[];
}

/** A key's fingerprint for a message (keys reach here validated; anything else is named as such). */
function shortKey(key: string): string {
  try {
    return fingerprint(key);
  } catch {
    return 'not a key';
  }
}

export interface ConflictProblem {
  reason: 'KeyConflict' | 'AddressConflict' | 'PortConflict' | 'OperatorKeyChanged';
  message: string;
}

export interface Conflicts {
  problems: ConflictProblem[];
  /** nodes that publish an envelope key another member publishes too: nothing is sealed to them */
  sharedEnvelopeKeys: Set<string>;
  /** per node, the pod CIDRs no tunnel routes (they overlap another claim) */
  withheld: Map<string, Set<string>>;
}

export interface Range {
  family: 4 | 6;
  first: bigint;
  last: bigint;
}

/** The addresses a CIDR (or a single address) covers; undefined when it does not parse. */
export function rangeOf(cidr: string): Range | undefined {
  try {
    const host = cidr.includes('/') ? cidr : `${cidr}/${cidr.includes(':') ? 128 : 32}`;
    const { family, network, prefixLength, bits } = parsePool(host);
    return { family, first: network, last: network + (1n << BigInt(bits - prefixLength)) - 1n };
  } catch {
    return undefined;
  }
}

export function overlaps(a: Range, b: Range): boolean {
  return a.family === b.family && a.first <= b.last && b.first <= a.last;
}

/** Members that publish the same key, as groups of two or more names. */
function sameKey(members: readonly ConflictMember[], key: (m: ConflictMember) => string | undefined) {
  const by = new Map<string, string[]>();
  for (const m of members) {
    const k = key(m);
    if (k) by.set(k, [...(by.get(k) ?? []), m.node]);
  }
  return [...by]
    .filter(([, nodes]) => nodes.length > 1)
    .map(([k, nodes]) => ({ key: k, nodes: nodes.sort() }));
}

interface Claim {
  node: string;
  cidr: string;
  range: Range;
}

/**
 * Pod CIDRs of different members that overlap, found by a sweep in address order (n log n: overlays have
 * thousands of members). Each overlapping pair once, as [earlier, later].
 */
function overlappingClaims(claims: Claim[]): Array<[Claim, Claim]> {
  const out: Array<[Claim, Claim]> = [];
  for (const family of [4, 6] as const) {
    const sorted = claims
      .filter((c) => c.range.family === family)
      .sort((a, b) => (a.range.first < b.range.first ? -1 : a.range.first > b.range.first ? 1 : 0));
    const open: Claim[] = [];
    for (const c of sorted) {
      for (let i = open.length - 1; i >= 0; i--) if (open[i]!.range.last < c.range.first) open.splice(i, 1);
      for (const o of open) if (o.node !== c.node) out.push([o, c]);
      open.push(c);
    }
  }
  return out;
}

/** What is wrong with the overlay's members and its neighbours, by the first-found order of the checks. */
export function findConflicts(f: ConflictFacts): Conflicts {
  const problems: ConflictProblem[] = [];
  const sharedEnvelopeKeys = new Set<string>();
  const withheld = new Map<string, Set<string>>();
  const withhold = (node: string, cidr: string): void => {
    withheld.set(node, (withheld.get(node) ?? new Set()).add(cidr));
  };

  for (const { key, nodes } of sameKey(f.members, (m) => m.publicKey)) {
    problems.push({
      reason: 'KeyConflict',
      message: `nodes ${listNames(nodes)} publish the same public key (${shortKey(key)}): cloned node state?`,
    });
  }
  for (const { key, nodes } of sameKey(f.members, (m) => m.envelopePublicKey)) {
    for (const n of nodes) sharedEnvelopeKeys.add(n);
    problems.push({
      reason: 'KeyConflict',
      message: `nodes ${listNames(nodes)} publish the same envelope key (${shortKey(key)}); nothing is sealed to them`,
    });
  }

  const refusing = f.members
    .filter((m) => m.operatorKeyRefused)
    .map((m) => m.node)
    .sort();
  if (refusing.length > 0) {
    problems.push({
      reason: 'OperatorKeyChanged',
      message:
        `agents of ${listNames(refusing)} refuse the published sealing key: it is not the one they pinned ` +
        `(the operator restores its own; a replaced identity needs operator.pub removed on every node)`,
    });
  }

  const pool = rangeOf(f.addressPool);
  const claims: Claim[] = [];
  for (const m of f.members) {
    for (const cidr of m.podCIDRs) {
      const range = rangeOf(cidr);
      if (range) claims.push({ node: m.node, cidr, range });
    }
  }
  const overlapping = overlappingClaims(claims);
  for (const [a, b] of overlapping) {
    withhold(a.node, a.cidr);
    withhold(b.node, b.cidr);
  }
  if (overlapping.length > 0) {
    const shown = overlapping.map(([a, b]) => `${a.node} ${a.cidr} / ${b.node} ${b.cidr}`);
    problems.push({
      reason: 'AddressConflict',
      message: `pod CIDRs overlap: ${listNames(shown)}; neither is routed`,
    });
  }
  const underlay = f.members.flatMap((m) =>
    m.internalIPs.flatMap((ip) => {
      const range = rangeOf(ip);
      return range ? [{ node: m.node, ip, range }] : [];
    }),
  );
  const intoPool: string[] = [];
  const overUnderlay: string[] = [];
  for (const c of claims) {
    if (pool && overlaps(pool, c.range)) {
      withhold(c.node, c.cidr);
      intoPool.push(`${c.node} ${c.cidr}`);
    }
    for (const u of underlay) {
      if (overlaps(u.range, c.range)) {
        withhold(c.node, c.cidr);
        overUnderlay.push(`${c.node} ${c.cidr} holds ${u.node}'s address ${u.ip}`);
      }
    }
  }
  if (intoPool.length > 0) {
    problems.push({
      reason: 'AddressConflict',
      message: `pod CIDRs overlap the address pool ${f.addressPool}: ${listNames(intoPool)}; not routed`,
    });
  }
  if (overUnderlay.length > 0) {
    problems.push({
      reason: 'AddressConflict',
      message: `pod CIDRs cover node addresses: ${listNames(overUnderlay)}; not routed`,
    });
  }

  const members = new Set(f.members.map((m) => m.node));
  for (const other of f.others) {
    const shared = other.nodes.filter((n) => members.has(n)).sort();
    const otherPool = rangeOf(other.addressPool);
    if (shared.length === 0) continue; // no node runs both: neither routes nor ports can clash
    if (pool && otherPool && overlaps(pool, otherPool)) {
      problems.push({
        reason: 'AddressConflict',
        message: `address pool ${f.addressPool} overlaps ${other.addressPool} of overlay ${other.name}, on ${listNames(shared)}`,
      });
    }
    if (other.listenPort === f.listenPort) {
      problems.push({
        reason: 'PortConflict',
        message: `overlay ${other.name} also listens on port ${f.listenPort} on ${listNames(shared)}`,
      });
    }
  }
  return { problems, sharedEnvelopeKeys, withheld };
}
