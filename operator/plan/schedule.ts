// When the next rotation is due. A cadence is a 5-field cron schedule (cron-parser, in UTC unless a time
// zone is given) and/or an interval; whichever comes first wins. The next time is computed from the last
// rotation (or the overlay's creation), so an operator that was down past several slots finds one slot in
// the past and rotates once on start, not once per missed slot.
import { CronExpressionParser } from 'cron-parser';
import { ROTATE_ANNOTATION, ROTATE_PSK_ONLY_PREFIX } from '../../api/v1alpha1/groupversion.js';
import type { OverlayNetwork } from '../../api/v1alpha1/overlaynetwork.types.js';
import { parseDuration } from '../../api/v1alpha1/validation.js';

export interface Cadence {
  schedule?: string | undefined;
  interval?: string | undefined;
  timeZone?: string | undefined;
}

export function nextAfter(cadence: Cadence | undefined, last: Date): Date | undefined {
  if (!cadence) return undefined;
  const candidates: Date[] = [];
  if (cadence.schedule) {
    const expr = CronExpressionParser.parse(cadence.schedule, {
      currentDate: last,
      tz: cadence.timeZone ?? 'UTC',
    });
    candidates.push(expr.next().toDate());
  }
  const seconds = cadence.interval ? parseDuration(cadence.interval) : undefined;
  if (seconds !== undefined && seconds > 0) candidates.push(new Date(last.getTime() + seconds * 1000));
  if (candidates.length === 0) return undefined;
  return new Date(Math.min(...candidates.map((d) => d.getTime())));
}

export interface Due {
  scope: 'Keys' | 'PresharedKeys';
  reason: string;
}

export interface ScheduleInput {
  rotation?: (Cadence & { presharedKeys?: Cadence | undefined }) | undefined;
  presharedKeysEnabled: boolean;
  created: Date;
  lastRotationTime?: Date | undefined;
  lastPresharedKeyRotationTime?: Date | undefined;
  now: Date;
}

export interface ScheduleResult {
  due?: Due | undefined;
  /** when the private keys were last renewed (the last full rotation, or creation) */
  lastKeys: Date;
  /** when the PSKs were last renewed (the later of lastKeys and the last PSK-only rotation) */
  lastPsk: Date;
  nextRotationTime?: Date | undefined;
  nextPresharedKeyRotationTime?: Date | undefined;
}

/** A full rotation renews the PSKs too, so the PSK cadence counts from whichever rotation came last. */
export function evaluateSchedule(i: ScheduleInput): ScheduleResult {
  const lastKeys = i.lastRotationTime ?? i.created;
  const nextRotationTime = nextAfter(i.rotation, lastKeys);
  const lastPsk = new Date(Math.max(lastKeys.getTime(), i.lastPresharedKeyRotationTime?.getTime() ?? 0));
  const nextPresharedKeyRotationTime = i.presharedKeysEnabled
    ? nextAfter(i.rotation?.presharedKeys, lastPsk)
    : undefined;
  let due: Due | undefined;
  if (nextRotationTime && nextRotationTime <= i.now) {
    due = { scope: 'Keys', reason: `scheduled at ${nextRotationTime.toISOString()}` };
  } else if (nextPresharedKeyRotationTime && nextPresharedKeyRotationTime <= i.now) {
    due = {
      scope: 'PresharedKeys',
      reason: `pre-shared keys scheduled at ${nextPresharedKeyRotationTime.toISOString()}`,
    };
  }
  return { due, lastKeys, lastPsk, nextRotationTime, nextPresharedKeyRotationTime };
}

/** The schedule's input from an overlay (its spec's cadences, its status's last rotation times). */
export function scheduleInputOf(overlay: OverlayNetwork, created: Date, now: Date): ScheduleInput {
  const status = overlay.status;
  return {
    rotation: overlay.spec.keys.rotation,
    presharedKeysEnabled: overlay.spec.keys.presharedKeys === 'PerPair',
    created,
    lastRotationTime: status?.lastRotationTime ? new Date(status.lastRotationTime) : undefined,
    lastPresharedKeyRotationTime: status?.lastPresharedKeyRotationTime
      ? new Date(status.lastPresharedKeyRotationTime)
      : undefined,
    now,
  };
}

/**
 * Why a rotation starts now, if one does: a new value of the rotate annotation (`request`, recorded in status
 * as lastRotateRequest so it triggers once; prefixed `psk:` for pre-shared keys only), else the schedule.
 */
export function rotationTrigger(
  annotation: string | undefined,
  lastRequest: string | undefined,
  scheduled: () => Due | undefined,
): { due?: Due | undefined; request?: string } {
  if (annotation !== undefined && annotation !== lastRequest) {
    return {
      due: {
        scope: annotation.startsWith(ROTATE_PSK_ONLY_PREFIX) ? 'PresharedKeys' : 'Keys',
        reason: `requested by annotation ${ROTATE_ANNOTATION}=${annotation.slice(0, 63)}`,
      },
      request: annotation,
    };
  }
  return { due: scheduled() };
}
