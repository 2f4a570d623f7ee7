import type { NodeTunnel } from '../api/v1alpha1/nodetunnel.types.js';
import { guardedElements, guardedPrefixes, type DataPlane } from './guard.js';

const tunnel = (node: string, address: string, allowedIPs: string[]): NodeTunnel =>
  ({ spec: { nodeName: node, address, allowedIPs } }) as unknown as NodeTunnel;
const tunnels = [
  tunnel('a', '10.99.0.1/24', ['10.244.1.0/24']),
  tunnel('b', '10.99.0.2/24', ['10.244.2.0/24']),
];
const plane = (nonMembers?: string[]): DataPlane => ({
  mode: 'FailClosed',
  protectedRanges: ['10.244.0.0/22'],
  nonMembers,
});

test.each([
  {
    what: 'without non-members: members and the declared range, minus own; b’s pod CIDR not merged with the rest',
    nonMembers: undefined,
    onDevice: [],
    want: ['10.99.0.2/32', '10.244.0.0/24', '10.244.2.0/24', '10.244.3.0/24'],
  },
  {
    what: "a non-member's pod CIDR leaves the declared range",
    nonMembers: ['10.244.3.0/24'],
    onDevice: [],
    want: ['10.99.0.2/32', '10.244.0.0/24', '10.244.2.0/24'],
  },
  {
    what: "a non-member listed with a member's pod CIDR leaves nothing of it",
    nonMembers: ['10.244.2.0/23'],
    onDevice: [],
    want: ['10.99.0.2/32', '10.244.0.0/24', '10.244.2.0/24'],
  },
  {
    what: 'a node leaving (a non-member now) stays protected while its peer is on the device',
    nonMembers: ['10.244.3.0/24'],
    onDevice: ['10.99.0.3/32', '10.244.3.0/24'],
    want: ['10.99.0.2/32', '10.99.0.3/32', '10.244.0.0/24', '10.244.2.0/24', '10.244.3.0/24'],
  },
  {
    what: 'entries that are not CIDRs are skipped (they stay protected)',
    nonMembers: ['nonsense', '10.244.0.7', '10.244.3.0/24'],
    onDevice: [],
    want: ['10.99.0.2/32', '10.244.0.0/24', '10.244.2.0/24'],
  },
])('$what', ({ nonMembers, onDevice, want }) => {
  expect(guardedPrefixes('a', tunnels, plane(nonMembers), onDevice)).toEqual(want);
});

test('guardedElements: each element for the node it protects; a peer on the device for its node; the rest for none', () => {
  expect(
    guardedElements('a', tunnels, plane(['10.244.3.0/24']), [
      { node: 'c', prefixes: ['10.99.0.3/32', '10.244.3.0/24'] },
    ]),
  ).toEqual([
    { prefix: '10.99.0.2/32', node: 'b' },
    { prefix: '10.99.0.3/32', node: 'c' },
    { prefix: '10.244.0.0/24' },
    { prefix: '10.244.2.0/24', node: 'b' },
    { prefix: '10.244.3.0/24', node: 'c' },
  ]);
});
