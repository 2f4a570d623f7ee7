import { describe, expect, test } from '@jest/globals';
import { dropEpisodes, plaintextDropped, type DropMemory, type DropReport } from './drops.js';

const members = new Set(['a', 'b', 'c']);
const r = (node: string, peers: Record<string, number>): DropReport => ({
  node,
  peers: Object.entries(peers).map(([n, packets]) => ({ node: n, packets })),
});

/** Runs passes at the given times (s) with the given reports; returns each pass's dropping and started. */
function passes(steps: Array<[number, DropReport[]]>, episodeMs = 90_000) {
  let memory: DropMemory | undefined;
  return steps.map(([at, reports]) => {
    const d = dropEpisodes(memory, reports, members, at * 1000, episodeMs);
    memory = d.memory;
    return { dropping: d.dropping, started: d.started, nextEndS: d.nextEndMs && d.nextEndMs / 1000 };
  });
}

describe('dropEpisodes', () => {
  test.each<[string, Array<[number, DropReport[]]>, Array<{ dropping: string[]; started: string[] }>]>([
    [
      'the first pass only learns the counts; a rise after it starts an episode, once',
      [
        [0, [r('a', { b: 5 })]],
        [10, [r('a', { b: 7 })]],
        [40, [r('a', { b: 9 })]],
      ],
      [
        { dropping: [], started: [] },
        { dropping: ['a/b'], started: ['a/b'] },
        { dropping: ['a/b'], started: [] },
      ],
    ],
    [
      'a count that does not move is no episode, however often it is reported',
      [
        [0, [r('a', { b: 5 })]],
        [10, [r('a', { b: 5 })]],
        [20, [r('a', { b: 5 })]],
      ],
      [
        { dropping: [], started: [] },
        { dropping: [], started: [] },
        { dropping: [], started: [] },
      ],
    ],
    [
      'a peer first reported (it was zero) rises; either side names the same pair',
      [
        [0, []],
        [10, [r('b', { a: 1 })]],
        [20, [r('a', { b: 1 }), r('b', { a: 1 })]],
      ],
      [
        { dropping: [], started: [] },
        { dropping: ['a/b'], started: ['a/b'] },
        { dropping: ['a/b'], started: [] },
      ],
    ],
    [
      'the episode ends a window after the last rise; the next rise starts a new one',
      [
        [0, [r('a', { b: 1 })]],
        [10, [r('a', { b: 2 })]],
        [99, [r('a', { b: 2 })]],
        [100, [r('a', { b: 2 })]],
        [150, [r('a', { b: 3 })]],
      ],
      [
        { dropping: [], started: [] },
        { dropping: ['a/b'], started: ['a/b'] },
        { dropping: ['a/b'], started: [] },
        { dropping: [], started: [] },
        { dropping: ['a/b'], started: ['a/b'] },
      ],
    ],
    [
      'an agent that started again reports less: a new baseline, no rise',
      [
        [0, [r('a', { b: 50 })]],
        [10, [r('a', { b: 3 })]],
        [20, [r('a', { b: 4 })]],
      ],
      [
        { dropping: [], started: [] },
        { dropping: [], started: [] },
        { dropping: ['a/b'], started: ['a/b'] },
      ],
    ],
    [
      'reports by or about non-members are ignored',
      [
        [0, [r('a', { x: 1 }), r('x', { a: 1 })]],
        [10, [r('a', { x: 9 }), r('x', { a: 9 })]],
      ],
      [
        { dropping: [], started: [] },
        { dropping: [], started: [] },
      ],
    ],
    [
      'pairs come sorted, each named once',
      [
        [0, []],
        [10, [r('c', { b: 1, a: 1 }), r('b', { c: 1 })]],
      ],
      [
        { dropping: [], started: [] },
        { dropping: ['a/c', 'b/c'], started: ['a/c', 'b/c'] },
      ],
    ],
  ])('%s', (_name, steps, want) => {
    expect(passes(steps).map(({ dropping, started }) => ({ dropping, started }))).toEqual(want);
  });

  test('asks for a pass when the earliest episode ends', () => {
    expect(
      passes([
        [0, []],
        [10, [r('a', { b: 1 })]],
        [30, [r('a', { c: 1 })]],
      ]).map((p) => p.nextEndS),
    ).toEqual([undefined, 100, 100]);
  });

  test('memory holds members only', () => {
    const d = dropEpisodes(undefined, [r('a', { b: 1, x: 2 }), r('y', { a: 3 })], members, 0);
    expect([...d.memory.counts.keys()]).toEqual(['a\0b']);
  });
});

test('the Event: one Warning naming the pairs, at most ten, by mode', () => {
  const many = Array.from({ length: 12 }, (_, i) => `n${i}/n${i + 1}`);
  expect(plaintextDropped('FailClosed', ['a/b'])).toEqual({
    type: 'Warning',
    reason: 'PlaintextDropped',
    message: 'plaintext dropped by the fail-closed rules between a/b',
  });
  expect(plaintextDropped('Monitor', many).reason).toBe('PlaintextSent');
  expect(plaintextDropped('Monitor', many).message).toMatch(/n9\/n10 \(\+2 more\)$/);
});
