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

test('sending with nothing received for the window: stalled, remedied once', () => {
  expect(
    feed([
      [0, 100, 100],
      [5_000, 100, 200], // sending into silence from here
      [5_000 + W - 1, 100, 300],
      [5_000 + W, 100, 400],
      [10_000 + W, 100, 500],
    ]),
  ).toEqual([
    { t: 0, stalled: false, remedy: false, recheckAt: undefined },
    { t: 5_000, stalled: false, remedy: false, recheckAt: 5_000 + W },
    { t: 5_000 + W - 1, stalled: false, remedy: false, recheckAt: 5_000 + W },
    { t: 5_000 + W, stalled: true, remedy: true, recheckAt: undefined },
    { t: 10_000 + W, stalled: true, remedy: false, recheckAt: undefined },
  ]);
});

test('idle both ways, or receiving while sending, is never a stall', () => {
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
      [W * 2, 200, 800],
      [W * 3, 250, 1200],
    ]).map((v) => v.stalled),
  ).toEqual([false, false, false, false]);
});

test('a re-created peer (counters from zero) that stays silent stays stalled and is not re-created twice', () => {
  const v = feed([
    [0, 100, 100],
    [1_000, 100, 200],
    [1_000 + W, 100, 300], // stalled: re-created
    [2_000 + W, 0, 32], // the new peer: sent, nothing received
    [3_000 + W, 0, 64],
  ]);
  expect(v.map((x) => [x.stalled, x.remedy])).toEqual([
    [false, false],
    [false, false],
    [true, true],
    [true, false],
    [true, false],
  ]);
});

test('bytes received end the stall; a later stall is remedied again', () => {
  const v = feed([
    [0, 100, 100],
    [1_000, 100, 200],
    [1_000 + W, 100, 300], // stalled, remedy
    [2_000 + W, 0, 32], // re-created
    [3_000 + W, 92, 64], // something came back: over
    [4_000 + W, 92, 96], // sending into silence again
    [4_000 + 2 * W, 92, 128], // stalled again: a new stall, remedied again
  ]);
  expect(v.map((x) => [x.stalled, x.remedy])).toEqual([
    [false, false],
    [false, false],
    [true, true],
    [true, false],
    [false, false],
    [false, false],
    [true, true],
  ]);
});
