import { evaluateSchedule, nextAfter, rotationTrigger } from './schedule.js';

const t = (s: string) => new Date(s);

test.each([
  ['cron in UTC', { schedule: '0 3 * * *' }, '2026-01-01T05:00:00Z', '2026-01-02T03:00:00.000Z'],
  [
    'cron in a time zone',
    { schedule: '0 3 * * *', timeZone: 'Europe/Berlin' },
    '2026-01-01T05:00:00Z',
    '2026-01-02T02:00:00.000Z',
  ],
  ['interval', { interval: '1h30m' }, '2026-01-01T05:00:00Z', '2026-01-01T06:30:00.000Z'],
  [
    'earliest of both',
    { schedule: '0 3 * * *', interval: '1h' },
    '2026-01-01T05:00:00Z',
    '2026-01-01T06:00:00.000Z',
  ],
  ['day-of-week', { schedule: '0 0 * * 0' }, '2026-01-01T00:00:00Z', '2026-01-04T00:00:00.000Z'],
])('nextAfter: %s', (_name, cadence, last, want) => {
  expect(nextAfter(cadence, t(last))?.toISOString()).toBe(want);
});

test('no cadence, no next time', () => {
  expect(nextAfter(undefined, t('2026-01-01T00:00:00Z'))).toBeUndefined();
  expect(nextAfter({}, t('2026-01-01T00:00:00Z'))).toBeUndefined();
});

describe('evaluateSchedule', () => {
  const created = t('2026-01-01T00:00:00Z');

  test('not due before the slot', () => {
    const r = evaluateSchedule({
      rotation: { interval: '1h' },
      presharedKeysEnabled: true,
      created,
      now: t('2026-01-01T00:30:00Z'),
    });
    expect(r.due).toBeUndefined();
    expect(r.nextRotationTime?.toISOString()).toBe('2026-01-01T01:00:00.000Z');
  });

  test('several missed slots give one due rotation, and none once it is recorded', () => {
    const now = t('2026-01-05T12:00:00Z');
    const r = evaluateSchedule({
      rotation: { schedule: '0 * * * *' },
      presharedKeysEnabled: true,
      created,
      now,
    });
    expect(r.due?.scope).toBe('Keys');
    const after = evaluateSchedule({
      rotation: { schedule: '0 * * * *' },
      presharedKeysEnabled: true,
      created,
      lastRotationTime: now,
      now,
    });
    expect(after.due).toBeUndefined();
    expect(after.nextRotationTime?.toISOString()).toBe('2026-01-05T13:00:00.000Z');
  });

  test('a separate PSK cadence is due on its own and counts from the last full rotation', () => {
    const rotation = { interval: '720h', presharedKeys: { interval: '1h' } };
    const due = evaluateSchedule({
      rotation,
      presharedKeysEnabled: true,
      created,
      now: t('2026-01-01T01:00:00Z'),
    });
    expect(due.due?.scope).toBe('PresharedKeys');
    const later = evaluateSchedule({
      rotation,
      presharedKeysEnabled: true,
      created,
      lastRotationTime: t('2026-01-01T00:50:00Z'),
      now: t('2026-01-01T01:00:00Z'),
    });
    expect(later.due).toBeUndefined();
    expect(later.nextPresharedKeyRotationTime?.toISOString()).toBe('2026-01-01T01:50:00.000Z');
  });

  test('PSK cadence ignored when pre-shared keys are disabled', () => {
    const r = evaluateSchedule({
      rotation: { presharedKeys: { interval: '1h' } },
      presharedKeysEnabled: false,
      created,
      now: t('2026-02-01T00:00:00Z'),
    });
    expect(r.due).toBeUndefined();
    expect(r.nextPresharedKeyRotationTime).toBeUndefined();
  });
});

describe('rotationTrigger', () => {
  const scheduled = { scope: 'Keys' as const, reason: 'scheduled at t' };
  test.each<[string, string | undefined, string | undefined, string]>([
    ['no annotation: the schedule', undefined, undefined, 'Keys/scheduled at t/-'],
    ['a new annotation value', 'now', undefined, 'Keys/requested by annotation sealmesh.io/rotate=now/now'],
    [
      'psk: prefix rotates the PSKs only',
      'psk:1',
      'now',
      'PresharedKeys/requested by annotation sealmesh.io/rotate=psk:1/psk:1',
    ],
    ['a value already acted on: the schedule', 'now', 'now', 'Keys/scheduled at t/-'],
  ])('%s', (_name, annotation, last, want) => {
    const t = rotationTrigger(annotation, last, () => scheduled);
    expect(`${t.due?.scope}/${t.due?.reason}/${t.request ?? '-'}`).toBe(want);
  });

  test('the schedule is not evaluated when the annotation triggers', () => {
    expect(
      rotationTrigger('x', undefined, () => {
        throw new Error('evaluated');
      }).request,
    ).toBe('x');
  });
});

test('lastKeys and lastPsk: creation, the last full rotation, or a later PSK-only rotation', () => {
  const created = new Date('2026-01-01T00:00:00Z');
  const keys = new Date('2026-02-01T00:00:00Z');
  const psk = new Date('2026-03-01T00:00:00Z');
  const base = { presharedKeysEnabled: true, created, now: psk };
  expect(evaluateSchedule(base)).toMatchObject({ lastKeys: created, lastPsk: created });
  expect(
    evaluateSchedule({ ...base, lastRotationTime: keys, lastPresharedKeyRotationTime: created }),
  ).toMatchObject({
    lastKeys: keys,
    lastPsk: keys,
  });
  expect(
    evaluateSchedule({ ...base, lastRotationTime: keys, lastPresharedKeyRotationTime: psk }),
  ).toMatchObject({
    lastKeys: keys,
    lastPsk: psk,
  });
});
