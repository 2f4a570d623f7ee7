import { epochView, keyAt, type AgentOverlayStatus } from './epoch.js';

const NOW = Date.UTC(2026, 10, 21, 6, 0, 0);
const iso = (offsetMs: number): string => new Date(NOW + offsetMs).toISOString();
const rotation = (
  phase: 'Staging' | 'CuttingOver' | 'Verifying' | 'Backoff',
  extra: { cutoverTime?: string; targetEpoch?: number; scope?: 'Keys' | 'PresharedKeys' } = {},
): AgentOverlayStatus['rotation'] => ({
  phase,
  scope: extra.scope ?? 'Keys',
  targetEpoch: extra.targetEpoch ?? 4,
  startTime: iso(-10_000),
  ...(extra.cutoverTime !== undefined ? { cutoverTime: extra.cutoverTime } : {}),
});

test.each<[string, AgentOverlayStatus | undefined, number, ReturnType<typeof epochView>]>([
  ['no status: spec.epoch', undefined, 2, { base: 2, run: 2, cutover: false }],
  ['status.epoch wins over spec.epoch', { epoch: 3 }, 1, { base: 3, run: 3, cutover: false }],
  [
    'staging: run the current epoch, stage the target',
    { epoch: 3, rotation: rotation('Staging') },
    3,
    { base: 3, run: 3, rotation: { target: 4, scope: 'Keys' }, cutover: false },
  ],
  [
    'cutting over, instant ahead: wake up then',
    { epoch: 3, rotation: rotation('CuttingOver', { cutoverTime: iso(3000) }) },
    3,
    { base: 3, run: 3, rotation: { target: 4, scope: 'Keys' }, cutover: false, cutoverAt: NOW + 3000 },
  ],
  [
    'cutting over, instant reached: run the target',
    { epoch: 3, rotation: rotation('CuttingOver', { cutoverTime: iso(0), scope: 'PresharedKeys' }) },
    3,
    { base: 3, run: 4, rotation: { target: 4, scope: 'PresharedKeys' }, cutover: true },
  ],
  [
    'verifying (late agent): run the target',
    { epoch: 3, rotation: rotation('Verifying', { cutoverTime: iso(-60_000) }) },
    3,
    { base: 3, run: 4, rotation: { target: 4, scope: 'Keys' }, cutover: true },
  ],
  [
    'cutting over without an instant: not yet',
    { epoch: 3, rotation: rotation('CuttingOver') },
    3,
    { base: 3, run: 3, rotation: { target: 4, scope: 'Keys' }, cutover: false },
  ],
  [
    'backoff: the old epoch stays, nothing staged',
    { epoch: 3, rotation: rotation('Backoff', { cutoverTime: iso(-1000) }) },
    3,
    { base: 3, run: 3, cutover: false },
  ],
  [
    'a target at or below the epoch is a leftover',
    { epoch: 4, rotation: rotation('Verifying', { cutoverTime: iso(-1000) }) },
    3,
    { base: 4, run: 4, cutover: false },
  ],
])('%s', (_name, status, specEpoch, want) => {
  expect(epochView(status, specEpoch, NOW)).toEqual(want);
});

test.each([
  ['runs the epoch', { appliedEpoch: 2, publicKey: 'P2', stagedEpoch: 2, stagedPublicKey: 'P2' }, 2, 'P2'],
  ['staged the epoch', { appliedEpoch: 1, publicKey: 'P1', stagedEpoch: 2, stagedPublicKey: 'P2' }, 2, 'P2'],
  ['still at the old epoch, key there', { appliedEpoch: 1, publicKey: 'P1', stagedEpoch: 2 }, 1, 'P1'],
  ['neither runs nor staged it', { appliedEpoch: 1, publicKey: 'P1', stagedEpoch: 1 }, 2, undefined],
  ['already past it', { appliedEpoch: 3, publicKey: 'P3', stagedEpoch: 3 }, 2, undefined],
  ['no status', undefined, 1, undefined],
])('keyAt: %s', (_name, status, epoch, want) => {
  expect(keyAt({ status }, epoch)).toBe(want);
});
