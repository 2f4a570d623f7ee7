import { describe, expect, test } from '@jest/globals';
import { prefixDiff, protectedPrefixes, rangeToCidrs, type ProtectedInput } from './prefixes.js';

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
