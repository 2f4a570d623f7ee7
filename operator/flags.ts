// Operator flags that take durations: the rotation timings and the status-write interval.
import { parseDuration } from '../api/v1alpha1/validation.js';
import type { RotationTimings } from './plan/rotation.js';

/** Milliseconds in `250ms`, or in a Go-style duration of whole units (`90s`, `2m`, `1h30m`). */
export function parseFlagDuration(flag: string, value: string): number {
  const ms = /^([0-9]{1,9})ms$/.exec(value);
  if (ms) return Number(ms[1]);
  const seconds = parseDuration(value);
  if (seconds === undefined) {
    throw new Error(`--${flag}: "${value}" is not a duration (examples: 500ms, 90s, 2m, 1h30m)`);
  }
  return seconds * 1000;
}

/** flag name → the timing it sets; each flag's default is DEFAULT_TIMINGS. */
export const TIMING_FLAGS: Record<string, keyof RotationTimings> = {
  'rotation-stage-timeout': 'stageTimeoutMs',
  'rotation-stage-per-agent': 'stagePerAgentMs',
  'rotation-cutover-delay': 'cutoverDelayMs',
  'rotation-verify-timeout': 'verifyTimeoutMs',
  'rotation-backoff': 'backoffBaseMs',
  'rotation-max-backoff': 'maxBackoffMs',
};

/** The timings given on the command line; a bad value or an impossible combination throws. */
export function timingsFromFlags(values: Record<string, string | undefined>): Partial<RotationTimings> {
  const out: Partial<RotationTimings> = {};
  for (const [flag, key] of Object.entries(TIMING_FLAGS)) {
    const v = values[flag];
    if (v !== undefined) out[key] = parseFlagDuration(flag, v);
  }
  if (out.cutoverDelayMs !== undefined && out.cutoverDelayMs < 1000) {
    throw new Error('--rotation-cutover-delay: at least 1s, so that every agent sees the instant before it');
  }
  for (const key of ['stageTimeoutMs', 'verifyTimeoutMs', 'backoffBaseMs', 'maxBackoffMs'] as const) {
    if (out[key] === 0) {
      const flag = Object.keys(TIMING_FLAGS).find((f) => TIMING_FLAGS[f] === key)!;
      throw new Error(`--${flag}: must be more than 0`);
    }
  }
  if (
    out.backoffBaseMs !== undefined &&
    out.maxBackoffMs !== undefined &&
    out.maxBackoffMs < out.backoffBaseMs
  ) {
    throw new Error('--rotation-max-backoff: must not be shorter than --rotation-backoff');
  }
  return out;
}
