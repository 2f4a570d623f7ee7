import { allocate, poolCapacity } from './ipam.js';

const m = (entries: Record<string, string>) => new Map(Object.entries(entries));

describe('allocate', () => {
  test.each([
    [
      'fresh IPv4 pool, name order',
      '100.64.0.0/24',
      {},
      ['b', 'a'],
      { a: '100.64.0.1', b: '100.64.0.2' },
      [],
    ],
    [
      'keeps existing addresses',
      '100.64.0.0/24',
      { b: '100.64.0.9' },
      ['a', 'b'],
      { a: '100.64.0.1', b: '100.64.0.9' },
      [],
    ],
    [
      'fills the lowest gap',
      '100.64.0.0/24',
      { a: '100.64.0.1', c: '100.64.0.3' },
      ['a', 'b', 'c'],
      { a: '100.64.0.1', b: '100.64.0.2', c: '100.64.0.3' },
      [],
    ],
    [
      're-allocates an address outside the pool',
      '100.64.0.0/24',
      { a: '10.0.0.1' },
      ['a'],
      { a: '100.64.0.1' },
      [],
    ],
    [
      're-allocates the second of a duplicate',
      '100.64.0.0/24',
      { a: '100.64.0.5', b: '100.64.0.5' },
      ['a', 'b'],
      { a: '100.64.0.5', b: '100.64.0.1' },
      [],
    ],
    [
      'never the network or broadcast address',
      '100.64.0.0/30',
      { a: '100.64.0.0', b: '100.64.0.3' },
      ['a', 'b'],
      { a: '100.64.0.1', b: '100.64.0.2' },
      [],
    ],
    [
      'exhaustion names who got nothing',
      '100.64.0.0/30',
      {},
      ['a', 'b', 'c'],
      { a: '100.64.0.1', b: '100.64.0.2' },
      ['c'],
    ],
    ['IPv6', 'fd00:5ea1::/64', {}, ['n1', 'n2'], { n1: 'fd00:5ea1::1', n2: 'fd00:5ea1::2' }, []],
    ['IPv6 with host bits in the CIDR', 'fd00:5ea1::17/120', {}, ['n1'], { n1: 'fd00:5ea1::1' }, []],
    ['ignores a garbage address', '100.64.0.0/24', { a: 'not-an-ip' }, ['a'], { a: '100.64.0.1' }, []],
    ['drops nodes no longer wanted', '100.64.0.0/24', { gone: '100.64.0.1' }, ['a'], { a: '100.64.0.1' }, []],
  ])('%s', (_name, pool, existing, nodes, want, exhausted) => {
    const got = allocate(pool, m(existing), nodes);
    expect(Object.fromEntries(got.assigned)).toEqual(want);
    expect(got.exhausted).toEqual(exhausted);
  });

  test('1,000 nodes at once get 1,000 distinct addresses', () => {
    const nodes = Array.from({ length: 1000 }, (_, i) => `node-${i}`);
    const got = allocate('100.64.0.0/16', new Map(), nodes);
    expect(new Set(got.assigned.values()).size).toBe(1000);
    expect(got.exhausted).toEqual([]);
  });

  test('is stable: allocating again from its own output changes nothing', () => {
    const nodes = ['x', 'y', 'z'];
    const first = allocate('100.64.0.0/24', m({ y: '100.64.0.7' }), nodes);
    const second = allocate('100.64.0.0/24', first.assigned, [...nodes].reverse());
    expect(second.assigned).toEqual(first.assigned);
  });
});

test.each([
  ['100.64.0.0/24', 254n],
  ['100.64.0.0/30', 2n],
  ['fd00::/120', 255n],
])('capacity of %s', (pool, want) => {
  expect(poolCapacity(pool)).toBe(want);
});
