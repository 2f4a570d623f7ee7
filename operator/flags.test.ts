import { parseFlagDuration, timingsFromFlags } from './flags.js';

test.each([
  ['250ms', 250],
  ['90s', 90_000],
  ['2m', 120_000],
  ['1h30m', 5_400_000],
])('%s is %d ms', (value, ms) => {
  expect(parseFlagDuration('x', value)).toBe(ms);
});

test.each(['', '5', '1.5s', '-3s', '2d', '3 s'])('"%s" is refused, naming the flag', (value) => {
  expect(() => parseFlagDuration('rotation-verify-timeout', value)).toThrow(
    /--rotation-verify-timeout: ".*" is not a duration/,
  );
});

test('flags map to rotation timings; absent flags are left to the defaults', () => {
  expect(
    timingsFromFlags({
      'rotation-stage-timeout': '2m',
      'rotation-stage-per-agent': '50ms',
      'rotation-cutover-delay': '5s',
      'rotation-verify-timeout': '3m',
      'rotation-backoff': '10s',
      'rotation-max-backoff': '1h',
    }),
  ).toEqual({
    stageTimeoutMs: 120_000,
    stagePerAgentMs: 50,
    cutoverDelayMs: 5_000,
    verifyTimeoutMs: 180_000,
    backoffBaseMs: 10_000,
    maxBackoffMs: 3_600_000,
  });
  expect(timingsFromFlags({ namespace: 'x' })).toEqual({});
});

test.each([
  [{ 'rotation-cutover-delay': '500ms' }, /cutover-delay: at least 1s/],
  [{ 'rotation-verify-timeout': '0s' }, /verify-timeout: must be more than 0/],
  [{ 'rotation-backoff': '1m', 'rotation-max-backoff': '30s' }, /max-backoff: must not be shorter/],
])('impossible timings are refused: %j', (flags, message) => {
  expect(() => timingsFromFlags(flags)).toThrow(message);
});
