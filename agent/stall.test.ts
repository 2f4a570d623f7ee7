import { observeStall, STALL_WINDOW_MS, type StallTrack } from './stall.js';

const W = STALL_WINDOW_MS;

/** Feeds observations [t, rx, tx] in order; the verdicts. */
function feed(steps: Array<[number, number, number]>) {
  let track: StallTrack | undefined;
  return steps.map(([t, rxBytes, txBytes]) => {
    const v = observeStall(track, t, { rxBytes, txBytes });
    track = v.track;
    return { t, stalled: v.stalled, remedy: v.remedy, recheckAt: v.recheckAt };
  });
}

test('received flat while sent grows for the window: stalled, remedied once', () => {
  expect(
    feed([
      [0, 100, 100],
      [10_000, 100, 200],
      [W, 100, 300],
      [W + 5_000, 100, 400],
    ]),
  ).toEqual([
    { t: 0, stalled: false, remedy: false, recheckAt: undefined },
    { t: 10_000, stalled: false, remedy: false, recheckAt: W },
    { t: W, stalled: true, remedy: true, recheckAt: undefined },
    { t: W + 5_000, stalled: true, remedy: false, recheckAt: undefined },
  ]);
});

test('idle both ways, or receiving, is never a stall', () => {
  expect(
    feed([
      [0, 100, 100],
      [W * 2, 100, 100],
    ]).map((v) => v.stalled),
  ).toEqual([false, false]);
  expect(
    feed([
      [0, 100, 100],
      [W - 1, 150, 400],
      [W * 2 - 2, 200, 800],
    ]).map((v) => v.stalled),
  ).toEqual([false, false, false]);
});

test('bytes back after a stall end it; a later stall is remedied again; counters going down start over', () => {
  const v = feed([
    [0, 100, 100],
    [W, 100, 200], // stalled, remedy
    [W + 1_000, 120, 300], // received: over
    [2 * W + 1_000, 120, 400], // stalled again, remedy again
    [2 * W + 2_000, 0, 0], // the peer was re-created: counters start over
    [2 * W + 3_000, 0, 50],
  ]);
  expect(v.map((x) => [x.stalled, x.remedy])).toEqual([
    [false, false],
    [true, true],
    [false, false],
    [true, true],
    [false, false],
    [false, false],
  ]);
});

test('a re-created peer (counters reset) that stays silent is stalled again but not remedied twice', () => {
  const v = feed([
    [0, 100, 100],
    [W, 100, 200], // stalled, remedied: the peer is re-created
    [W + 1_000, 0, 32], // re-created: counters from zero
    [2 * W + 1_000, 0, 500], // still nothing back
  ]);
  expect(v.map((x) => [x.stalled, x.remedy])).toEqual([
    [false, false],
    [true, true],
    [false, false],
    [true, false],
  ]);
});
