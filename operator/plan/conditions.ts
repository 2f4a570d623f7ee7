// The OverlayNetwork's conditions as pure functions over the facts of a pass (STYLE 7, 14). Degraded is the
// first hit of a named chain of checks (cert-manager's policy chain); Ready is False for the same problems
// except an aborted rotation, which leaves traffic encrypted at the old epoch.
import {
  deepEqual,
  setCondition,
  type Condition,
  type ConditionInput,
} from '../../lib/runtime/conditions.js';
import type { OverlayNetwork } from '../../api/v1alpha1/overlaynetwork.types.js';
import { dropMessage, dropReason } from './drops.js';
import { listNames, unusableNames } from './events.js';
import type { RotationStatus } from './rotation.js';

type Status = NonNullable<OverlayNetwork['status']>;

/** What the conditions are decided from. */
export interface ConditionFacts {
  generation: number | undefined;
  epoch: number;
  rotation: RotationStatus | undefined;
  addressPool: string;
  unusable: Array<{ node: string; reason: string }>;
  exhausted: string[];
  /** conflicts between members or with other overlays (plan/conflicts.ts), in the order found */
  conflicts?: ReadonlyArray<{ reason: string; message: string }>;
  /** agents outside the supported version skew (plan/skew.ts): rotations are refused while there are any */
  skew?: { reason: string; message: string } | undefined;
  /** members whose agent cannot program the device: another process holds the listen port */
  portInUse?: ReadonlyArray<{ node: string; port: number }>;
  /** agents that reported and stopped renewing their Lease (plan/liveness.ts) */
  unreachable?: ReadonlyArray<{ node: string; renewed: string | undefined }>;
  pairs: { total: number; encrypted: number; degraded: number; unknown?: number };
  /** pairs whose plaintext the agents' fail-closed rules matched lately (plan/drops.ts), and the mode */
  drops?: { mode: 'FailClosed' | 'Monitor'; pairs: string[] } | undefined;
}

export interface Problem {
  reason: string;
  message: string;
}

/** One named check: a problem, or undefined. */
export type Check = (f: ConditionFacts) => Problem | undefined;

export const poolExhausted: Check = (f) =>
  f.exhausted.length > 0
    ? {
        reason: 'AddressPoolExhausted',
        message: `address pool ${f.addressPool} is exhausted: no address for ${listNames(f.exhausted)}`,
      }
    : undefined;

export const conflicting: Check = (f) =>
  f.conflicts && f.conflicts.length > 0
    ? { reason: f.conflicts[0]!.reason, message: f.conflicts.map((c) => c.message).join('; ') }
    : undefined;

export const nodeUnusable: Check = (f) =>
  f.unusable.length > 0
    ? { reason: 'NodeUnusable', message: `not peered: ${unusableNames(f.unusable)}` }
    : undefined;

export const listenPortInUse: Check = (f) =>
  f.portInUse && f.portInUse.length > 0
    ? {
        reason: 'ListenPortInUse',
        message: `UDP port ${[...new Set(f.portInUse.map((p) => p.port))].join(', ')} taken by another process on ${listNames(
          f.portInUse.map((p) => p.node),
        )}: its device cannot be programmed`,
      }
    : undefined;

export const agentsUnreachable: Check = (f) =>
  f.unreachable && f.unreachable.length > 0
    ? {
        reason: 'AgentUnreachable',
        message:
          `agent(s) out of touch, Lease not renewed: ${listNames(f.unreachable.map((u) => u.node))}; ` +
          `${f.pairs.unknown ?? 0} pair(s) Unknown`,
      }
    : undefined;

export const agentVersionSkew: Check = (f) => f.skew;

export const pairsDegraded: Check = (f) =>
  f.pairs.degraded > 0
    ? { reason: 'PairsDegraded', message: `${f.pairs.degraded} pair(s) degraded` }
    : undefined;

export const rotationAborted: Check = (f) =>
  f.rotation?.phase === 'Backoff'
    ? {
        reason: 'RotationAborted',
        message: `rotation to epoch ${f.rotation.targetEpoch} aborted (attempt ${f.rotation.attempt ?? 1}): ${
          f.rotation.reason ?? ''
        }; retry at ${f.rotation.retryTime ?? ''}`,
      }
    : undefined;

export const plaintextDropped: Check = (f) =>
  f.drops && f.drops.pairs.length > 0
    ? { reason: dropReason(f.drops.mode), message: dropMessage(f.drops.mode, f.drops.pairs) }
    : undefined;

/** The checks that make Ready False, in order; the first names the reason. */
export const READY_CHECKS: readonly Check[] = [
  conflicting,
  poolExhausted,
  nodeUnusable,
  listenPortInUse,
  agentsUnreachable,
  pairsDegraded,
];
/**
 * The checks that make Degraded True, in order: Degraded's reason is the first hit, its message all hits.
 * An agent outside the version skew does not make Ready False: its pairs carry on at the current epoch.
 * Drops do not make Ready False: the pairs that matter carry on encrypted, and a join drops a little.
 */
export const DEGRADED_CHECKS: readonly Check[] = [
  ...READY_CHECKS,
  agentVersionSkew,
  rotationAborted,
  plaintextDropped,
];

export function evaluate(checks: readonly Check[], facts: ConditionFacts): Problem[] {
  return checks.map((check) => check(facts)).filter((p): p is Problem => p !== undefined);
}

export function degradedCondition(facts: ConditionFacts): ConditionInput {
  const problems = evaluate(DEGRADED_CHECKS, facts);
  return problems.length > 0
    ? {
        type: 'Degraded',
        status: 'True',
        reason: problems[0]!.reason,
        message: problems.map((p) => p.message).join('; '),
        observedGeneration: facts.generation,
      }
    : {
        type: 'Degraded',
        status: 'False',
        reason: 'AsExpected',
        message: 'no problems',
        observedGeneration: facts.generation,
      };
}

export function readyCondition(facts: ConditionFacts): ConditionInput {
  const problems = evaluate(READY_CHECKS, facts);
  const { encrypted, total } = facts.pairs;
  const message = `${encrypted}/${total} pairs encrypted`;
  return encrypted === total && problems.length === 0
    ? {
        type: 'Ready',
        status: 'True',
        reason: 'AllPairsEncrypted',
        message,
        observedGeneration: facts.generation,
      }
    : {
        type: 'Ready',
        status: 'False',
        reason: problems.length > 0 ? problems[0]!.reason : 'PairsPending',
        message,
        observedGeneration: facts.generation,
      };
}

/** Rotating: True with the phase while a rotation stages, cuts over or verifies. */
export function rotatingCondition(
  f: Pick<ConditionFacts, 'generation' | 'epoch' | 'rotation'>,
): ConditionInput {
  const rotation = f.rotation;
  return rotation && rotation.phase !== 'Backoff'
    ? {
        type: 'Rotating',
        status: 'True',
        reason: rotation.phase,
        message: `${rotation.scope} rotation to epoch ${rotation.targetEpoch}${
          rotation.cutoverTime ? `, cutover at ${rotation.cutoverTime}` : ''
        }`,
        observedGeneration: f.generation,
      }
    : {
        type: 'Rotating',
        status: 'False',
        reason: rotation ? 'Backoff' : 'Idle',
        message: rotation ? `retry at ${rotation.retryTime ?? ''}` : `keys at epoch ${f.epoch}`,
        observedGeneration: f.generation,
      };
}

/** Degraded, Rotating and Ready, in that order, set on `prior` (lastTransitionTime kept where unchanged). */
export function overlayConditions(
  prior: readonly Condition[],
  facts: ConditionFacts,
  now: Date,
): Condition[] {
  let conditions = setCondition(prior, degradedCondition(facts), now);
  conditions = setCondition(conditions, rotatingCondition(facts), now);
  return setCondition(conditions, readyCondition(facts), now);
}

/** Ready=False, reason Paused: the whole status of a paused overlay's pass besides observedGeneration. */
export function pausedCondition(generation: number | undefined): ConditionInput {
  return {
    type: 'Ready',
    status: 'False',
    reason: 'Paused',
    message: 'spec.paused is true',
    observedGeneration: generation,
  };
}

/** Ready=False, reason InvalidSpec, with the validation error (at most 1 KiB). */
export function invalidSpecCondition(generation: number | undefined, error: string): ConditionInput {
  return {
    type: 'Ready',
    status: 'False',
    reason: 'InvalidSpec',
    message: error.slice(0, 1024),
    observedGeneration: generation,
  };
}

/**
 * Whether two statuses differ only in pair counts: `pairs`, `encryptedSummary` and the
 * messages of conditions whose status and reason are unchanged.
 */
export function countsOnly(a: Status, b: Status): boolean {
  const shape = (st: Status) => ({
    ...st,
    pairs: undefined,
    encryptedSummary: undefined,
    conditions: (st.conditions ?? []).map((c) => ({ ...c, message: undefined })),
  });
  return deepEqual(shape(a), shape(b));
}
