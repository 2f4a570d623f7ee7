import { deepEqual, formatTime, setCondition, type Condition } from './conditions.js';

const t0 = new Date('2026-01-01T00:00:00.123Z');
const t1 = new Date('2026-01-01T01:00:00Z');

describe('setCondition', () => {
  test('adds a new condition with lastTransitionTime = now (second precision)', () => {
    const out = setCondition(
      undefined,
      { type: 'Ready', status: 'True', reason: 'Ok', message: 'fine', observedGeneration: 1 },
      t0,
    );
    expect(out).toEqual([
      {
        type: 'Ready',
        status: 'True',
        reason: 'Ok',
        message: 'fine',
        observedGeneration: 1,
        lastTransitionTime: '2026-01-01T00:00:00Z',
      },
    ]);
  });

  test('keeps lastTransitionTime when the status did not change, but updates reason/message/generation', () => {
    const first = setCondition(
      [],
      { type: 'Ready', status: 'False', reason: 'A', message: 'a', observedGeneration: 1 },
      t0,
    );
    const second = setCondition(
      first,
      { type: 'Ready', status: 'False', reason: 'B', message: 'b', observedGeneration: 2 },
      t1,
    );
    expect(second[0]).toEqual({
      type: 'Ready',
      status: 'False',
      reason: 'B',
      message: 'b',
      observedGeneration: 2,
      lastTransitionTime: formatTime(t0),
    });
  });

  test('moves lastTransitionTime when the status changed', () => {
    const first = setCondition([], { type: 'Ready', status: 'False', reason: 'A', message: '' }, t0);
    const second = setCondition(first, { type: 'Ready', status: 'True', reason: 'A', message: '' }, t1);
    expect(second[0]?.lastTransitionTime).toBe('2026-01-01T01:00:00Z');
  });

  test('leaves other conditions in place and does not mutate the input', () => {
    const input: Condition[] = [
      { type: 'Ready', status: 'True', reason: 'r', message: '', lastTransitionTime: 'x' },
      { type: 'Degraded', status: 'False', reason: 'r', message: '', lastTransitionTime: 'y' },
    ];
    const frozen = JSON.stringify(input);
    const out = setCondition(input, { type: 'Ready', status: 'False', reason: 'Broken', message: 'm' }, t1);
    expect(JSON.stringify(input)).toBe(frozen);
    expect(out.map((c) => c.type)).toEqual(['Ready', 'Degraded']);
    expect(out[1]).toBe(input[1]);
  });
});

describe('deepEqual', () => {
  test.each([
    [{ a: 1, b: [1, 2, { c: 'x' }] }, { b: [1, 2, { c: 'x' }], a: 1 }, true],
    [{ a: 1 }, { a: 1, b: undefined }, true],
    [{ a: 1 }, { a: 2 }, false],
    [[1, 2], [2, 1], false],
    [[], {}, false],
    [null, {}, false],
    [{ a: null }, { a: undefined }, false],
    ['1', 1, false],
    [new Date(5), new Date(5), true],
  ])('%j vs %j → %s', (a, b, expected) => {
    expect(deepEqual(a, b)).toBe(expected);
  });

  test('re-setting an unchanged condition leaves status equal, so no write is needed', () => {
    const status = {
      conditions: setCondition(
        [],
        { type: 'Ready', status: 'True', reason: 'r', message: 'm', observedGeneration: 3 },
        t0,
      ),
    };
    const next = {
      conditions: setCondition(
        status.conditions,
        { type: 'Ready', status: 'True', reason: 'r', message: 'm', observedGeneration: 3 },
        t1,
      ),
    };
    expect(deepEqual(status, next)).toBe(true);
  });
});
