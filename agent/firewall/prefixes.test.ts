import { describe, expect, test } from '@jest/globals';
import {
  disjointCidrs,
  prefixDiff,
  protectedElements,
  protectedPrefixes,
  rangeToCidrs,
  type AttributedInput,
  type ProtectedElement,
  type ProtectedInput,
} from './prefixes.js';

const none: ProtectedInput = { members: [], declared: [], onDevice: [], own: [], nonMembers: [] };

describe('protectedPrefixes', () => {
  test.each<[string, Partial<ProtectedInput>, string[]]>([
    ['nothing', {}, []],
    [
      'members without keys still count: tunnel address and pod CIDR',
      { members: ['10.96.0.3/32', '10.244.3.0/24'] },
      ['10.96.0.3/32', '10.244.3.0/24'],
    ],
    ['a bare address is a host', { members: ['10.96.0.3'] }, ['10.96.0.3/32']],
    [
      'the declared pod range minus this node’s own pod CIDR and tunnel address',
      { declared: ['10.244.0.0/16'], own: ['10.244.1.0/24', '10.96.0.1/32'] },
      [
        '10.244.0.0/24',
        '10.244.2.0/23',
        '10.244.4.0/22',
        '10.244.8.0/21',
        '10.244.16.0/20',
        '10.244.32.0/19',
        '10.244.64.0/18',
        '10.244.128.0/17',
      ],
    ],
    [
      'members inside a declared range merge into it',
      { declared: ['10.244.0.0/16'], members: ['10.244.3.0/24', '10.96.0.3/32'] },
      ['10.96.0.3/32', '10.244.0.0/16'],
    ],
    [
      'pod CIDRs of non-members are left out',
      { declared: ['10.244.0.0/23'], nonMembers: ['10.244.1.0/24'] },
      ['10.244.0.0/24'],
    ],
    [
      'a peer still on the device keeps its prefixes until it is removed',
      { members: ['10.244.2.0/24'], onDevice: ['10.244.4.0/24', '10.96.0.3/32'] },
      ['10.96.0.3/32', '10.244.2.0/24', '10.244.4.0/24'],
    ],
    ['adjacent prefixes merge', { members: ['10.244.2.0/24', '10.244.3.0/24'] }, ['10.244.2.0/23']],
    [
      'IPv6 beside IPv4, IPv4 first',
      { members: ['fd00:99::3/128', '10.96.0.3/32', 'fd00:244:3::/64'] },
      ['10.96.0.3/32', 'fd00:99::3/128', 'fd00:244:3::/64'],
    ],
    ['a host CIDR given with host bits is its network', { members: ['10.244.3.7/24'] }, ['10.244.3.0/24']],
  ])('%s', (_name, input, want) => {
    expect(protectedPrefixes({ ...none, ...input })).toEqual(want);
  });

  test('an invalid prefix is an error that names it', () => {
    expect(() => protectedPrefixes({ ...none, declared: ['10.244.0.0/33'] })).toThrow("'10.244.0.0/33'");
  });
});

test('prefixDiff says what is added and removed', () => {
  expect(prefixDiff(['a', 'b'], ['b', 'c'])).toEqual({ added: ['c'], removed: ['a'] });
});

test('rangeToCidrs', () => {
  expect(rangeToCidrs('10.244.0.0', '10.244.2.255')).toEqual(['10.244.0.0/23', '10.244.2.0/24']);
});

describe('protectedElements: every member’s prefixes an element of its own, for its node', () => {
  const empty: AttributedInput = { members: [], declared: [], onDevice: [], own: [], nonMembers: [] };
  const b = { node: 'b', prefixes: ['10.96.0.2', '10.244.2.0/24'] };
  const c = { node: 'c', prefixes: ['10.96.0.3', '10.244.3.0/24'] };
  test.each<[string, Partial<AttributedInput>, ProtectedElement[]]>([
    [
      'neighbours are not merged: b’s and c’s pod CIDRs stay apart',
      { members: [b, c] },
      [
        { prefix: '10.96.0.2/32', node: 'b' },
        { prefix: '10.96.0.3/32', node: 'c' },
        { prefix: '10.244.2.0/24', node: 'b' },
        { prefix: '10.244.3.0/24', node: 'c' },
      ],
    ],
    [
      'a member inside the declared range is cut out of it; the rest is for no node',
      { members: [c], declared: ['10.244.0.0/22'], own: ['10.244.1.0/24'] },
      [
        { prefix: '10.96.0.3/32', node: 'c' },
        { prefix: '10.244.0.0/24' },
        { prefix: '10.244.2.0/24' },
        { prefix: '10.244.3.0/24', node: 'c' },
      ],
    ],
    [
      'a peer still on the device counts for its node; of unknown node, for none',
      {
        onDevice: [{ node: 'd', prefixes: ['10.244.4.0/24'] }, { prefixes: ['10.244.5.0/24'] }],
      },
      [{ prefix: '10.244.4.0/24', node: 'd' }, { prefix: '10.244.5.0/24' }],
    ],
    [
      'a prefix two members claim goes to the first by name, once',
      {
        members: [
          { node: 'y', prefixes: ['10.244.7.0/24'] },
          { node: 'x', prefixes: ['10.244.7.0/25'] },
        ],
      },
      [
        { prefix: '10.244.7.0/25', node: 'x' },
        { prefix: '10.244.7.128/25', node: 'y' },
      ],
    ],
    [
      'own prefixes are never covered, even inside a member’s',
      { members: [b], own: ['10.244.2.0/25'] },
      [
        { prefix: '10.96.0.2/32', node: 'b' },
        { prefix: '10.244.2.128/25', node: 'b' },
      ],
    ],
    [
      'IPv6 after IPv4, each family cut on its own',
      { members: [{ node: 'b', prefixes: ['fd00:244:2::/48', '10.96.0.2'] }], declared: ['fd00:244::/46'] },
      [
        { prefix: '10.96.0.2/32', node: 'b' },
        { prefix: 'fd00:244::/47' },
        { prefix: 'fd00:244:2::/48', node: 'b' },
        { prefix: 'fd00:244:3::/48' },
      ],
    ],
  ])('%s', (_name, input, want) => {
    const got = protectedElements({ ...empty, ...input });
    expect(got).toEqual(want);
    // the elements cover exactly what protectedPrefixes covers
    const flat = { ...empty, ...input };
    expect(
      protectedPrefixes({
        members: flat.members.flatMap((m) => m.prefixes),
        declared: flat.declared,
        onDevice: flat.onDevice.flatMap((d) => d.prefixes),
        own: flat.own,
        nonMembers: flat.nonMembers,
      }),
    ).toEqual(protectedPrefixes({ ...none, members: got.map((e) => e.prefix) }));
  });
});

test('disjointCidrs normalizes and sorts, keeps neighbours apart, refuses overlaps', () => {
  expect(disjointCidrs(['10.244.3.7/24', '10.96.0.2', '10.244.2.0/24', 'fd00::1'])).toEqual([
    '10.96.0.2/32',
    '10.244.2.0/24',
    '10.244.3.0/24',
    'fd00::1/128',
  ]);
  expect(() => disjointCidrs(['10.244.0.0/16', '10.244.3.0/24'])).toThrow('overlap');
});
