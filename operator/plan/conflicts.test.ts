import { randomBytes } from 'node:crypto';
import { findConflicts, overlaps, rangeOf, type ConflictFacts, type ConflictMember } from './conflicts.js';

const KEYS = new Map<string, string>();
/** A stable, well-formed key per label. */
const key = (label: string): string => {
  if (!KEYS.has(label)) KEYS.set(label, randomBytes(32).toString('base64'));
  return KEYS.get(label)!;
};

const member = (node: string, i: number, extra: Partial<ConflictMember> = {}): ConflictMember => ({
  node,
  publicKey: key(`pub-${node}`),
  envelopePublicKey: key(`env-${node}`),
  podCIDRs: [`10.244.${i}.0/24`],
  internalIPs: [`198.18.0.${i}`],
  ...extra,
});

const facts = (change: Partial<ConflictFacts> = {}): ConflictFacts => ({
  addressPool: '100.64.0.0/24',
  listenPort: 51890,
  members: [member('n1', 1), member('n2', 2), member('n3', 3)],
  others: [],
  ...change,
});

test('a clean overlay has no conflicts', () => {
  const c = findConflicts(facts());
  expect(c.problems).toEqual([]);
  expect(c.sharedEnvelopeKeys.size).toBe(0);
  expect(c.withheld.size).toBe(0);
});

test.each<[string, Partial<ConflictFacts>, string, RegExp, Record<string, string[]>]>([
  [
    'two nodes with the same public key (a cloned image)',
    { members: [member('n1', 1), member('n2', 2, { publicKey: key('pub-n1') }), member('n3', 3)] },
    'KeyConflict',
    /^nodes n1, n2 publish the same public key \([0-9a-f]{16}\)/,
    {},
  ],
  [
    'overlapping pod CIDRs: both withheld',
    {
      members: [
        member('n1', 1, { podCIDRs: ['10.244.0.0/16'] }),
        member('n2', 2),
        member('n3', 3, { podCIDRs: ['10.245.0.0/24'] }),
      ],
    },
    'AddressConflict',
    /^pod CIDRs overlap: n1 10\.244\.0\.0\/16 \/ n2 10\.244\.2\.0\/24; neither is routed$/,
    { n1: ['10.244.0.0/16'], n2: ['10.244.2.0/24'] },
  ],
  [
    'a pod CIDR inside the address pool',
    { members: [member('n1', 1, { podCIDRs: ['100.64.0.128/25'] }), member('n2', 2)] },
    'AddressConflict',
    /^pod CIDRs overlap the address pool 100\.64\.0\.0\/24: n1 100\.64\.0\.128\/25; not routed$/,
    { n1: ['100.64.0.128/25'] },
  ],
  [
    "a pod CIDR that holds another node's underlay address",
    { members: [member('n1', 1, { podCIDRs: ['198.18.0.0/24'] }), member('n2', 2)] },
    'AddressConflict',
    /^pod CIDRs cover node addresses: n1 198\.18\.0\.0\/24 holds n1's address 198\.18\.0\.1, n1 198\.18\.0\.0\/24 holds n2's/,
    { n1: ['198.18.0.0/24'] },
  ],
  [
    "agents that refuse the operator's published sealing key",
    { members: [member('n1', 1), member('n2', 2, { operatorKeyRefused: true }), member('n3', 3)] },
    'OperatorKeyChanged',
    /^agents of n2 refuse the published sealing key: it is not the one they pinned/,
    {},
  ],
  [
    'another overlay on the same port on shared nodes',
    {
      others: [{ name: 'other', addressPool: '100.65.0.0/24', listenPort: 51890, nodes: ['n2', 'n9', 'n1'] }],
    },
    'PortConflict',
    /^overlay other also listens on port 51890 on n1, n2$/,
    {},
  ],
  [
    "another overlay's pool overlapping, on shared nodes",
    { others: [{ name: 'other', addressPool: '100.64.0.0/16', listenPort: 51891, nodes: ['n3'] }] },
    'AddressConflict',
    /^address pool 100\.64\.0\.0\/24 overlaps 100\.64\.0\.0\/16 of overlay other, on n3$/,
    {},
  ],
])('%s', (_name, change, reason, message, withheld) => {
  const c = findConflicts(facts(change));
  expect(c.problems.map((p) => p.reason)).toEqual([reason]);
  expect(c.problems[0]!.message).toMatch(message);
  expect(Object.fromEntries([...c.withheld].map(([n, s]) => [n, [...s].sort()]))).toEqual(withheld);
});

test('a shared envelope key: both nodes are named and nothing is sealed to either', () => {
  const c = findConflicts(
    facts({
      members: [member('n1', 1), member('n2', 2), member('n3', 3, { envelopePublicKey: key('env-n1') })],
    }),
  );
  expect(c.problems.map((p) => p.reason)).toEqual(['KeyConflict']);
  expect(c.problems[0]!.message).toMatch(/^nodes n1, n3 publish the same envelope key/);
  expect([...c.sharedEnvelopeKeys].sort()).toEqual(['n1', 'n3']);
});

test('no conflict: other overlays on other nodes, or on other ports and pools; IPv4 and IPv6 apart', () => {
  const c = findConflicts(
    facts({
      others: [
        { name: 'elsewhere', addressPool: '100.64.0.0/24', listenPort: 51890, nodes: ['n7'] },
        { name: 'beside', addressPool: '100.66.0.0/24', listenPort: 51891, nodes: ['n1', 'n2'] },
      ],
      members: [member('n1', 1, { podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'] }), member('n2', 2)],
    }),
  );
  expect(c.problems).toEqual([]);
  // a node's own CIDRs never conflict with each other
  expect(
    findConflicts(facts({ members: [member('n1', 1, { podCIDRs: ['10.244.0.0/16', '10.244.1.0/24'] })] }))
      .problems,
  ).toEqual([]);
});

test('rangeOf and overlaps', () => {
  expect(overlaps(rangeOf('10.0.0.0/8')!, rangeOf('10.1.2.3')!)).toBe(true);
  expect(overlaps(rangeOf('10.0.0.0/24')!, rangeOf('10.0.1.0/24')!)).toBe(false);
  expect(overlaps(rangeOf('::/0')!, rangeOf('10.0.0.0/8')!)).toBe(false);
  expect(rangeOf('not-a-cidr')).toBeUndefined();
});

test('the overlap sweep finds every pair among thousands of members without comparing all pairs', () => {
  const members = Array.from({ length: 4000 }, (_, i) =>
    member(`n${i}`, 0, { podCIDRs: [`10.${Math.floor(i / 256)}.${i % 256}.0/24`], internalIPs: [] }),
  );
  members.push(member('wide', 0, { podCIDRs: ['10.3.0.0/16'], internalIPs: [] }));
  const c = findConflicts(facts({ members, addressPool: '100.64.0.0/16' }));
  // 10.3.0.0/16 overlaps the 256 members of 10.3.x.0/24 (n768..n1023)
  expect(c.withheld.size).toBe(257);
  expect(c.problems).toHaveLength(1);
  expect(c.problems[0]!.message).toMatch(/\(\+\d+ more\)/);
});
