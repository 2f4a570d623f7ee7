import type { OverlayNetwork } from '../../api/v1alpha1/overlaynetwork.types.js';
import { countsOnly } from './overlaynetwork.controller.js';

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
