import {
  DEFAULT_TIMINGS,
  leaseLive,
  nextRotationStep,
  type LeaseView,
  type RotationInput,
  type RotationStatus,
  epochAfterRollback,
  REFUSED_RECHECK_MS,
} from './rotation.js';

const t0 = new Date('2026-01-01T00:00:00Z');
const at = (s: number) => new Date(t0.getTime() + s * 1000);
const base: RotationInput = {
  now: t0,
  epoch: 4,
  agents: [
    { node: 'a', live: true },
    { node: 'b', live: true },
  ],
  pairsAtTarget: { total: 1, encrypted: 0 },
  timings: DEFAULT_TIMINGS,
};
const staging: RotationStatus = {
  phase: 'Staging',
  scope: 'Keys',
  targetEpoch: 5,
  startTime: '2026-01-01T00:00:00Z',
  attempt: 1,
};
const staged = (epoch: number, key = true) => ({
  stagedEpoch: epoch,
  stagedPublicKey: key ? 'K' : undefined,
});

test('nothing due, nothing to do', () => {
  expect(nextRotationStep(base)).toEqual({ kind: 'idle' });
});

test('a due rotation starts staging the next epoch', () => {
  const step = nextRotationStep({ ...base, due: { scope: 'PresharedKeys', reason: 'manual' } });
  expect(step).toMatchObject({
    kind: 'start',
    rotation: { phase: 'Staging', scope: 'PresharedKeys', targetEpoch: 5, attempt: 1 },
  });
});

test('cutover only once every live agent staged; an expired agent is not waited for', () => {
  const oneMissing = nextRotationStep({
    ...base,
    now: at(5),
    rotation: staging,
    agents: [
      { node: 'a', live: true, ...staged(5) },
      { node: 'b', live: true, ...staged(4) },
    ],
  });
  expect(oneMissing.kind).toBe('wait');
  const step = nextRotationStep({
    ...base,
    now: at(5),
    rotation: staging,
    agents: [
      { node: 'a', live: true, ...staged(5) },
      { node: 'b', live: false },
    ],
  });
  expect(step).toMatchObject({
    kind: 'cutover',
    rotation: { phase: 'CuttingOver', cutoverTime: '2026-01-01T00:00:08Z' },
  });
});

test('a Keys rotation also needs the staged public key', () => {
  const step = nextRotationStep({
    ...base,
    now: at(1),
    rotation: staging,
    agents: [{ node: 'a', live: true, ...staged(5, false) }],
  });
  expect(step.kind).toBe('wait');
});

test('missing acknowledgements abort with the reason and back off, then retry the same epoch', () => {
  const step = nextRotationStep({
    ...base,
    now: at(61),
    rotation: staging,
    agents: [
      { node: 'a', live: true, ...staged(5) },
      { node: 'b', live: true },
    ],
  });
  expect(step).toMatchObject({
    kind: 'abort',
    rotation: { phase: 'Backoff', retryTime: '2026-01-01T00:01:31Z' },
  });
  if (step.kind !== 'abort') throw new Error('unreachable');
  expect(step.reason).toContain('b');
  expect(nextRotationStep({ ...base, now: at(61), rotation: step.rotation }).kind).toBe('wait');
  expect(nextRotationStep({ ...base, now: at(91), rotation: step.rotation })).toMatchObject({
    kind: 'retry',
    rotation: { phase: 'Staging', targetEpoch: 5, attempt: 2 },
  });
});

test('backoff doubles per attempt', () => {
  const step = nextRotationStep({
    ...base,
    now: at(61),
    rotation: { ...staging, attempt: 3 },
    agents: [{ node: 'a', live: true }],
  });
  expect(step).toMatchObject({ kind: 'abort', rotation: { retryTime: '2026-01-01T00:03:01Z' } });
});

test('cutover instant, then verify, then complete when every pair is at the target epoch', () => {
  const cutting: RotationStatus = { ...staging, phase: 'CuttingOver', cutoverTime: '2026-01-01T00:00:10Z' };
  expect(nextRotationStep({ ...base, now: at(9), rotation: cutting })).toMatchObject({
    kind: 'wait',
    afterMs: 1000,
  });
  expect(nextRotationStep({ ...base, now: at(10), rotation: cutting })).toMatchObject({ kind: 'verify' });
  const verifying: RotationStatus = { ...cutting, phase: 'Verifying' };
  expect(nextRotationStep({ ...base, now: at(11), rotation: verifying }).kind).toBe('wait');
  expect(
    nextRotationStep({
      ...base,
      now: at(11),
      rotation: verifying,
      pairsAtTarget: { total: 1, encrypted: 1 },
    }),
  ).toMatchObject({ kind: 'complete', epoch: 5, scope: 'Keys', incomplete: 0 });
});

test('verification gives up after its timeout and completes naming the pairs left behind', () => {
  const verifying: RotationStatus = { ...staging, phase: 'Verifying', cutoverTime: '2026-01-01T00:00:10Z' };
  expect(nextRotationStep({ ...base, now: at(130), rotation: verifying })).toMatchObject({
    kind: 'complete',
    incomplete: 1,
  });
});

test('a refusal (agents outside the version skew) holds a due rotation and the retry of an aborted one, not one under way', () => {
  const refuse = 'agents cannot take part in a rotation: c (publishes no version: older than 0.2.0)';
  const due = { scope: 'Keys' as const, reason: 'manual' };
  expect(nextRotationStep({ ...base, refuse })).toEqual({ kind: 'idle' });
  expect(nextRotationStep({ ...base, due, refuse })).toEqual({
    kind: 'refused',
    reason: refuse,
    afterMs: REFUSED_RECHECK_MS,
  });
  const backoff: RotationStatus = { ...staging, phase: 'Backoff', retryTime: '2026-01-01T00:01:00Z' };
  expect(nextRotationStep({ ...base, rotation: backoff, refuse, now: at(30) }).kind).toBe('wait');
  expect(nextRotationStep({ ...base, rotation: backoff, refuse, now: at(60) })).toMatchObject({
    kind: 'refused',
    reason: refuse,
  });
  expect(nextRotationStep({ ...base, rotation: backoff, now: at(60) }).kind).toBe('retry');
  // under way: the staging timeout names whoever does not stage
  const agents = [
    { node: 'a', live: true, ...staged(5) },
    { node: 'b', live: true, ...staged(5) },
  ];
  expect(nextRotationStep({ ...base, rotation: staging, agents, refuse }).kind).toBe('cutover');
});

test('the staging timeout grows with the number of agents', () => {
  const agents = Array.from({ length: 1000 }, (_, i) => ({ node: `n${i}`, live: true }));
  // 60 s + 1000 × 100 ms = 160 s: at 100 s a 1,000-node overlay is still staging, a 2-node one has aborted.
  expect(nextRotationStep({ ...base, now: at(100), rotation: staging, agents }).kind).toBe('wait');
  expect(nextRotationStep({ ...base, now: at(100), rotation: staging }).kind).toBe('abort');
  expect(nextRotationStep({ ...base, now: at(160), rotation: staging, agents }).kind).toBe('abort');
});

describe('leaseLive', () => {
  const now = Date.parse('2026-01-01T00:01:00Z');
  test.each<[string, LeaseView | undefined, boolean]>([
    ['no Lease', undefined, false],
    ['never renewed', { spec: { leaseDurationSeconds: 40 } }, false],
    [
      'renewed within its duration',
      { spec: { renewTime: '2026-01-01T00:00:30Z', leaseDurationSeconds: 40 } },
      true,
    ],
    ['expired', { spec: { renewTime: '2026-01-01T00:00:10Z', leaseDurationSeconds: 40 } }, false],
    [
      'expiring exactly now',
      { spec: { renewTime: '2026-01-01T00:00:20Z', leaseDurationSeconds: 40 } },
      false,
    ],
    ['no duration', { spec: { renewTime: '2026-01-01T00:00:59Z' } }, false],
  ])('%s', (_name, lease, live) => {
    expect(leaseLive(lease, now)).toBe(live);
  });
});

describe('epochAfterRollback', () => {
  const at = (node: string, appliedEpoch?: number) => ({ node, appliedEpoch });
  test.each([
    ['nobody ahead', 5, false, [at('a', 5), at('b', 4), at('c')], undefined],
    [
      'two nodes ahead: one above the highest',
      2,
      false,
      [at('b', 5), at('a', 4), at('c', 2)],
      { epoch: 6, seen: 5, nodes: ['a', 'b'] },
    ],
    ['during a rotation agents run the target: not a rollback', 2, true, [at('a', 3)], undefined],
  ])('%s', (_name, epoch, rotating, applied, want) => {
    expect(epochAfterRollback(epoch, rotating, applied)).toEqual(want);
  });
});
