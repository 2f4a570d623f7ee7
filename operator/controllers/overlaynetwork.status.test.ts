import { pino } from 'pino';
import type { OverlayNetwork } from '../../api/v1alpha1/overlaynetwork.types.js';
import { KubeApiError } from '../../lib/kube.js';
import { NotLeaderError, type OperatorWriter } from '../writer.js';
import { newScope, type Scope } from './overlaynetwork.scope.js';
import { StatusWriter } from './overlaynetwork.status.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');

function setup(status: NonNullable<OverlayNetwork['status']>, opts: { eventError?: Error } = {}) {
  const writes: Array<{ name: string; rv: string | undefined; body: Record<string, unknown> }> = [];
  const events: string[] = [];
  let nowMs = T0;
  const writer = {
    replaceOverlayStatus: (name: string, rv: string | undefined, body: Record<string, unknown>) => {
      writes.push({ name, rv, body });
      return Promise.resolve();
    },
    event: (e: { reason: string }) => {
      if (opts.eventError) return Promise.reject(opts.eventError);
      events.push(e.reason);
      return Promise.resolve();
    },
  } as unknown as OperatorWriter;
  const status$ = new StatusWriter(
    { writer, logger: pino({ level: 'silent' }), statusIntervalMs: 2000 },
    () => new Date(nowMs),
  );
  const overlay = {
    apiVersion: 'sealmesh.io/v1alpha1',
    kind: 'OverlayNetwork',
    metadata: { name: 'mesh', generation: 3, resourceVersion: '7', uid: 'u' },
    spec: { addressPool: '10.0.0.0/24', keys: { custody: 'Node', presharedKeys: 'PerPair' } },
    status,
  } as unknown as OverlayNetwork;
  const scope = (): Scope => newScope(overlay, overlay, 'mesh', new Date(nowMs));
  return { writes, events, status: status$, scope, advance: (ms: number) => (nowMs += ms) };
}

const counts = (encrypted: number) => ({
  pairs: { total: 3, encrypted, degraded: 0 },
  encryptedSummary: `${encrypted}/3`,
});

test('no write when nothing changed', async () => {
  const { writes, status, scope } = setup({ epoch: 1, observedGeneration: 3, ...counts(1) });
  await status.write(scope(), { status: counts(1) });
  expect(writes).toEqual([]);
});

test('a write that changes only counts waits for the interval after the last write', async () => {
  const { writes, status, scope, advance } = setup({ epoch: 1, observedGeneration: 2, ...counts(1) });
  await status.write(scope(), { status: counts(1) }); // observedGeneration moves: written
  expect(writes).toHaveLength(1);
  advance(500);
  const s = scope();
  s.overlay = { ...s.overlay, status: writes[0]!.body };
  await status.write(s, { status: counts(2) });
  expect(writes).toHaveLength(1);
  expect(s.requeueAfterMs).toBe(1500);
  advance(1500);
  await status.write(s, { status: counts(2) });
  expect(writes).toHaveLength(2);
});

test('a field that went away is sent as null; later steps compare with what was written', async () => {
  const { writes, status, scope } = setup({ epoch: 1, nextRotationTime: '2026-02-01T00:00:00Z' });
  const s = scope();
  await status.write(s, { status: { nextRotationTime: undefined } });
  expect(writes[0]).toMatchObject({
    rv: '7',
    body: { nextRotationTime: null, observedGeneration: 3, epoch: 1 },
  });
  expect(s.raw.metadata?.resourceVersion).toBeUndefined();
  expect(s.overlay.status).toEqual({ epoch: 1, observedGeneration: 3 });
});

test('a nested field that went away is sent as null too (a merge patch keeps what it does not mention)', async () => {
  const { writes, status, scope } = setup({
    epoch: 1,
    pairs: { total: 3, encrypted: 1, degraded: 0, unknown: 2 },
  });
  await status.write(scope(), { status: { pairs: { total: 3, encrypted: 3, degraded: 0 } } });
  expect(writes[0]).toMatchObject({
    body: { pairs: { total: 3, encrypted: 3, degraded: 0, unknown: null } },
  });
});

test('persist writes progress without observedGeneration and with the Rotating condition during a rotation', async () => {
  const { writes, status, scope } = setup({ epoch: 1 });
  const s = scope();
  s.rotation = { phase: 'Staging', scope: 'Keys', targetEpoch: 2, startTime: 't' };
  s.deferred = { lastRotateRequest: 'x' };
  await status.persist(s, { rotation: s.rotation });
  expect(writes[0]!.body).not.toHaveProperty('observedGeneration');
  expect(writes[0]!.body).toMatchObject({
    lastRotateRequest: 'x',
    conditions: [{ type: 'Rotating', status: 'True', reason: 'Staging' }],
  });
  expect(s.deferred).toBeUndefined();
});

test('paused: Ready=False, Paused', async () => {
  const { writes, status, scope } = setup({ epoch: 1 });
  await status.write(scope(), { paused: true });
  expect(writes[0]!.body).toMatchObject({ conditions: [{ reason: 'Paused' }], observedGeneration: 3 });
});

test('flushEvents: a failed Event is logged, not raised; losing leadership is raised', async () => {
  const ok = setup({}, { eventError: new KubeApiError('POST: HTTP 500', 500) });
  const s = ok.scope();
  s.events.push({ type: 'Normal', reason: 'NodeJoined', message: 'joined: a' });
  await ok.status.flushEvents(s);
  expect(s.events).toEqual([]);
  const lost = setup({}, { eventError: new NotLeaderError() });
  const s2 = lost.scope();
  s2.events.push({ type: 'Normal', reason: 'NodeJoined', message: 'joined: a' });
  await expect(lost.status.flushEvents(s2)).rejects.toBeInstanceOf(NotLeaderError);
});
