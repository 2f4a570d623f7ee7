import type { OverlayNetwork } from '../../api/v1alpha1/overlaynetwork.types.js';
import {
  agentsUnreachable,
  countsOnly,
  listenPortInUse,
  degradedCondition,
  nodeUnusable,
  overlayConditions,
  pairsDegraded,
  plaintextDropped,
  poolExhausted,
  readyCondition,
  rotatingCondition,
  rotationAborted,
  type ConditionFacts,
} from './conditions.js';

type Status = NonNullable<OverlayNetwork['status']>;

const cond = (type: string, status: string, reason: string, message: string) => ({
  type,
  status: status as 'True' | 'False',
  reason,
  message,
  lastTransitionTime: '2026-01-01T00:00:00Z',
});

describe('countsOnly', () => {
  const base = {
    epoch: 2,
    nodes: 4,
    pairs: { total: 6, encrypted: 3, degraded: 0 },
    encryptedSummary: '3/6',
    conditions: [cond('Ready', 'False', 'PairsPending', '3/6 pairs encrypted')],
  };

  test('new counts and count messages only', () => {
    expect(
      countsOnly(base, {
        ...base,
        pairs: { total: 6, encrypted: 5, degraded: 0 },
        encryptedSummary: '5/6',
        conditions: [cond('Ready', 'False', 'PairsPending', '5/6 pairs encrypted')],
      }),
    ).toBe(true);
  });

  test.each<[string, Partial<Status>]>([
    ['a condition changes status', { conditions: [cond('Ready', 'True', 'AllPairsEncrypted', '6/6')] }],
    ['a condition changes reason', { conditions: [cond('Ready', 'False', 'PairsDegraded', '3/6')] }],
    ['a condition appears', { conditions: [...base.conditions, cond('Rotating', 'False', 'Idle', '')] }],
    ['the node count changes', { nodes: 5 }],
    ['the epoch changes', { epoch: 3 }],
    ['a rotation starts', { rotation: { phase: 'Staging', scope: 'Keys', targetEpoch: 3, startTime: 't' } }],
  ])('not when %s', (_what, change) => {
    expect(countsOnly(base, { ...base, ...change })).toBe(false);
  });
});

const facts = (f: Partial<ConditionFacts> = {}): ConditionFacts => ({
  generation: 2,
  epoch: 1,
  rotation: undefined,
  addressPool: '10.0.0.0/30',
  unusable: [],
  exhausted: [],
  pairs: { total: 3, encrypted: 3, degraded: 0 },
  ...f,
});
const backoff = {
  phase: 'Backoff' as const,
  scope: 'Keys' as const,
  targetEpoch: 2,
  startTime: 't0',
  attempt: 2,
  retryTime: 't9',
  reason: 'stage timeout',
};

describe('checks', () => {
  test.each([
    [
      'poolExhausted',
      poolExhausted,
      facts({ exhausted: ['c'] }),
      'AddressPoolExhausted',
      'address pool 10.0.0.0/30 is exhausted: no address for c',
    ],
    [
      'nodeUnusable',
      nodeUnusable,
      facts({ unusable: [{ node: 'b', reason: 'no IP' }] }),
      'NodeUnusable',
      'not peered: b (no IP)',
    ],
    [
      'listenPortInUse',
      listenPortInUse,
      facts({ portInUse: [{ node: 'b', port: 51890 }] }),
      'ListenPortInUse',
      'UDP port 51890 taken by another process on b: its device cannot be programmed',
    ],
    [
      'agentsUnreachable',
      agentsUnreachable,
      facts({
        unreachable: [{ node: 'c', renewed: 't' }],
        pairs: { total: 3, encrypted: 1, degraded: 0, unknown: 2 },
      }),
      'AgentUnreachable',
      'agent(s) out of touch, Lease not renewed: c; 2 pair(s) Unknown',
    ],
    [
      'pairsDegraded',
      pairsDegraded,
      facts({ pairs: { total: 3, encrypted: 1, degraded: 2 } }),
      'PairsDegraded',
      '2 pair(s) degraded',
    ],
    [
      'rotationAborted',
      rotationAborted,
      facts({ rotation: backoff }),
      'RotationAborted',
      'rotation to epoch 2 aborted (attempt 2): stage timeout; retry at t9',
    ],
    [
      'plaintextDropped',
      plaintextDropped,
      facts({ drops: { mode: 'FailClosed', pairs: ['a/b', 'b/c'] } }),
      'PlaintextDropped',
      'plaintext dropped by the fail-closed rules between a/b, b/c',
    ],
    [
      'plaintextDropped in Monitor mode',
      plaintextDropped,
      facts({ drops: { mode: 'Monitor', pairs: ['a/b'] } }),
      'PlaintextSent',
      'plaintext sent and counted (Monitor mode) between a/b',
    ],
  ])('%s hits', (_name, check, f, reason, message) => {
    expect(check(f)).toEqual({ reason, message });
    expect(check(facts())).toBeUndefined();
  });
});

describe('Degraded and Ready', () => {
  test.each<[string, Partial<ConditionFacts>, string, string, string]>([
    ['all well', {}, 'False/AsExpected', 'True/AllPairsEncrypted', 'no problems'],
    [
      'pairs pending',
      { pairs: { total: 3, encrypted: 1, degraded: 0 } },
      'False/AsExpected',
      'False/PairsPending',
      'no problems',
    ],
    [
      'pool exhausted and a node unusable: the first hit names the reason, the message lists both',
      { exhausted: ['c'], unusable: [{ node: 'b', reason: 'no IP' }] },
      'True/AddressPoolExhausted',
      'False/AddressPoolExhausted',
      'address pool 10.0.0.0/30 is exhausted: no address for c; not peered: b (no IP)',
    ],
    [
      'agents outside the version skew degrade but keep Ready (their pairs carry on at the current epoch)',
      { skew: { reason: 'AgentVersionSkew', message: 'agents outside the supported version skew: c' } },
      'True/AgentVersionSkew',
      'True/AllPairsEncrypted',
      'agents outside the supported version skew: c',
    ],
    [
      'an aborted rotation degrades but keeps Ready',
      { rotation: backoff },
      'True/RotationAborted',
      'True/AllPairsEncrypted',
      'rotation to epoch 2 aborted (attempt 2): stage timeout; retry at t9',
    ],
    [
      'pairs dropping plaintext degrade but keep Ready (no pair is worse off); no drops, no hit',
      { drops: { mode: 'FailClosed', pairs: ['a/b'] } },
      'True/PlaintextDropped',
      'True/AllPairsEncrypted',
      'plaintext dropped by the fail-closed rules between a/b',
    ],
    [
      'drops come after the other problems',
      { rotation: backoff, drops: { mode: 'FailClosed', pairs: ['a/b'] } },
      'True/RotationAborted',
      'True/AllPairsEncrypted',
      'rotation to epoch 2 aborted (attempt 2): stage timeout; retry at t9; plaintext dropped by the fail-closed rules between a/b',
    ],
    [
      'no pair dropping',
      { drops: { mode: 'FailClosed', pairs: [] } },
      'False/AsExpected',
      'True/AllPairsEncrypted',
      'no problems',
    ],
  ])('%s', (_name, f, degraded, ready, message) => {
    const d = degradedCondition(facts(f));
    const r = readyCondition(facts(f));
    expect(`${d.status}/${d.reason}`).toBe(degraded);
    expect(`${r.status}/${r.reason}`).toBe(ready);
    expect(d.message).toBe(message);
    expect(r.message).toBe(`${facts(f).pairs.encrypted}/${facts(f).pairs.total} pairs encrypted`);
  });
});

describe('rotatingCondition', () => {
  test.each<[string, ConditionFacts['rotation'], string]>([
    ['idle', undefined, 'False/Idle/keys at epoch 1'],
    ['backoff', backoff, 'False/Backoff/retry at t9'],
    [
      'cutting over',
      { phase: 'CuttingOver', scope: 'PresharedKeys', targetEpoch: 2, startTime: 't0', cutoverTime: 't5' },
      'True/CuttingOver/PresharedKeys rotation to epoch 2, cutover at t5',
    ],
  ])('%s', (_name, rotation, want) => {
    const c = rotatingCondition({ generation: 2, epoch: 1, rotation });
    expect(`${c.status}/${c.reason}/${c.message}`).toBe(want);
  });
});

test('overlayConditions sets Degraded, Rotating, Ready in order and keeps unchanged transition times', () => {
  const t0 = new Date('2026-01-01T00:00:00Z');
  const first = overlayConditions([], facts(), t0);
  expect(first.map((c) => c.type)).toEqual(['Degraded', 'Rotating', 'Ready']);
  const later = overlayConditions(
    first,
    facts({ pairs: { total: 4, encrypted: 4, degraded: 0 } }),
    new Date('2026-01-02T00:00:00Z'),
  );
  expect(later.map((c) => c.lastTransitionTime)).toEqual(first.map((c) => c.lastTransitionTime));
});
