import { describe, expect, test } from '@jest/globals';
import { DropCounter, dropsDue, dropsStatus } from './drops.js';

const c = (packets: number, bytes = packets * 100) => ({ packets, bytes });

describe('DropCounter', () => {
  const owner = new Map([
    ['10.96.0.2/32', 'b'],
    ['10.244.2.0/24', 'b'],
    ['10.244.3.0/24', 'c'],
  ]);

  test('attributes each element to its node, the rest to none; a restarted agent starts from the kernel', () => {
    const d = new DropCounter();
    const t = d.observe(
      new Map([
        ['10.96.0.2/32', c(1)],
        ['10.244.2.0/24', c(2)],
        ['10.244.3.0/24', c(0)],
        ['10.244.0.0/24', c(5)],
      ]),
      owner,
    );
    expect(t.peers).toEqual(new Map([['b', c(3)]]));
    expect(t.unattributed).toEqual(c(5));
  });

  test('adds only what grew; an element that went down was re-made and counts from its new value', () => {
    const d = new DropCounter();
    d.observe(new Map([['10.244.2.0/24', c(10)]]), owner);
    d.observe(new Map([['10.244.2.0/24', c(12)]]), owner);
    expect(d.totals.peers.get('b')).toEqual(c(12));
    // re-made (a migration, an element replaced): 3 since
    d.observe(new Map([['10.244.2.0/24', c(3)]]), owner);
    expect(d.totals.peers.get('b')).toEqual(c(15));
    // gone, and back later from zero: what it counts then is new
    d.observe(new Map(), owner);
    d.observe(new Map([['10.244.2.0/24', c(1)]]), owner);
    expect(d.totals.peers.get('b')).toEqual(c(16));
  });

  test('totals never go down (they are Prometheus counters)', () => {
    const d = new DropCounter();
    let last = 0;
    for (const v of [4, 9, 2, 2, 7, 0, 1]) {
      d.observe(new Map([['10.244.3.0/24', c(v)]]), owner);
      const now = d.totals.peers.get('c')?.packets ?? 0;
      expect(now).toBeGreaterThanOrEqual(last);
      last = now;
    }
    expect(last).toBe(4 + 5 + 2 + 5 + 1);
  });
});

test('dropsStatus: only peers above zero, by name; nothing at all is no field', () => {
  expect(dropsStatus(undefined)).toBeUndefined();
  expect(dropsStatus({ peers: new Map([['b', c(0)]]), unattributed: c(0) })).toBeUndefined();
  expect(
    dropsStatus({
      peers: new Map([
        ['c', c(2)],
        ['b', c(1)],
        ['d', c(0)],
      ]),
      unattributed: c(4),
    }),
  ).toEqual({
    peers: [
      { node: 'b', packets: 1, bytes: 100 },
      { node: 'c', packets: 2, bytes: 200 },
    ],
    unattributed: { packets: 4, bytes: 400 },
  });
});

describe('dropsDue: a write of their own only for changed counts, at most once per interval', () => {
  const a = { peers: [{ node: 'b', packets: 1, bytes: 100 }] };
  const b = { peers: [{ node: 'b', packets: 2, bytes: 200 }] };
  test.each([
    ['unchanged, however long ago', a, a, 0, 1e9, false],
    ['unchanged, none stored', undefined, undefined, undefined, 1e9, false],
    ['first counts, never written', undefined, a, undefined, 0, true],
    ['changed within the interval', a, b, 1000, 30_999, false],
    ['changed, interval over', a, b, 1000, 31_000, true],
  ] as const)('%s', (_name, stored, next, last, now, want) => {
    expect(dropsDue(stored, next, last, now, 30_000)).toBe(want);
  });
});
