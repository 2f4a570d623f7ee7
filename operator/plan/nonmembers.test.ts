import { MAX_NON_MEMBER_CIDRS, nonMemberPodCIDRs } from './nonmembers.js';
import type { NodeView } from './tunnels.js';

const node = (name: string, podCIDRs: string[], member = false, deleting = false): NodeView => ({
  name,
  labels: member ? { mesh: 'yes' } : {},
  deleting,
  internalIPs: [],
  podCIDRs,
});
const selector = { matchLabels: { mesh: 'yes' } };

test.each([
  {
    what: 'pod CIDRs of unselected nodes inside a declared range, sorted by address',
    nodes: [
      node('m1', ['10.244.1.0/24'], true),
      node('x10', ['10.244.10.0/24']),
      node('x2', ['10.244.2.0/24', 'fd00:244:2::/64']),
    ],
    declared: ['10.244.0.0/16', 'fd00:244::/32'],
    members: ['10.244.1.0/24', '10.96.0.1/32'],
    want: ['10.244.2.0/24', '10.244.10.0/24', 'fd00:244:2::/64'],
  },
  {
    what: 'a selected node without a NodeTunnel yet (joining) is not left out',
    nodes: [node('joiner', ['10.244.3.0/24'], true)],
    declared: ['10.244.0.0/16'],
    members: [],
    want: [],
  },
  {
    what: 'outside every declared range, or no declared range: nothing to leave out',
    nodes: [node('x', ['10.245.0.0/24'])],
    declared: ['10.244.0.0/16'],
    members: [],
    want: [],
  },
  {
    what: "a non-member claiming a member's prefix (a conflict) stays protected",
    nodes: [node('x', ['10.244.1.0/25']), node('y', ['10.244.7.0/24'])],
    declared: ['10.244.0.0/16'],
    members: ['10.244.1.0/24'],
    want: ['10.244.7.0/24'],
  },
  {
    what: 'a member being deleted is a non-member; unparsable CIDRs are skipped; duplicates once',
    nodes: [
      node('d', ['10.244.4.0/24'], true, true),
      node('bad', ['nonsense']),
      node('dup', ['10.244.5.0/24']),
      node('dup2', ['10.244.5.0/24']),
    ],
    declared: ['10.244.0.0/16'],
    members: [],
    want: ['10.244.4.0/24', '10.244.5.0/24'],
  },
])('$what', ({ nodes, declared, members, want }) => {
  expect(nonMemberPodCIDRs(nodes, { nodeSelector: selector, declared, memberPrefixes: members })).toEqual({
    cidrs: want,
    truncated: 0,
  });
});

test('no declared range: nothing is left out', () => {
  expect(
    nonMemberPodCIDRs([node('x', ['10.244.2.0/24'])], {
      nodeSelector: selector,
      declared: [],
      memberPrefixes: [],
    }),
  ).toEqual({ cidrs: [], truncated: 0 });
});

test('bounded: beyond the limit the rest stay protected and are counted', () => {
  const many = Array.from({ length: MAX_NON_MEMBER_CIDRS + 3 }, (_, i) =>
    node(`x${i}`, [`10.${(i >> 8) & 255}.${i & 255}.0/24`]),
  );
  const r = nonMemberPodCIDRs(many, { nodeSelector: selector, declared: ['10.0.0.0/8'], memberPrefixes: [] });
  expect(r.cidrs).toHaveLength(MAX_NON_MEMBER_CIDRS);
  expect(r.truncated).toBe(3);
  expect(r.cidrs[0]).toBe('10.0.0.0/24');
});
