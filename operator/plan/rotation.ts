// The rotation protocol as a pure step function (see DESIGN.md "Rotation (hitless)"): given what the API
// shows now, what is the next move? Every bit of progress lives in OverlayNetwork.status.rotation, so an
// operator restarted at any step computes the same next move from the same objects.
//
// Why the cutover waits for every live agent's acknowledgement: a node that switches to a key its peer has
// not staged cannot complete a handshake, and with a new private key its old sessions are gone at once.
// An agent whose liveness Lease expired is not waited for: it converges to the current epoch on return.

export type RotationScope = 'Keys' | 'PresharedKeys';

export interface RotationStatus {
  phase: 'Staging' | 'CuttingOver' | 'Verifying' | 'Backoff';
  scope: RotationScope;
  targetEpoch: number;
  startTime: string;
  cutoverTime?: string | undefined;
  attempt?: number | undefined;
  retryTime?: string | undefined;
  reason?: string | undefined;
}

export interface AgentView {
  node: string;
  live: boolean;
  stagedEpoch?: number | undefined;
  stagedPublicKey?: string | undefined;
}

export interface RotationTimings {
  /** how long live agents have to acknowledge staging before the attempt aborts ... */
  stageTimeoutMs: number;
  /**
   * ... plus this much per agent: the operator seals and writes every node's Secret before that node can
   * stage (at 1,000 nodes that alone took 47–67 s in the bench), so a fixed timeout would abort large
   * overlays every time.
   */
  stagePerAgentMs: number;
  /** how far in the future the cutover instant is set, so every agent sees it in time */
  cutoverDelayMs: number;
  /** how long to wait for every pair at the new epoch before completing anyway */
  verifyTimeoutMs: number;
  /** first retry delay after an abort; doubles per attempt up to maxBackoffMs */
  backoffBaseMs: number;
  maxBackoffMs: number;
}

export const DEFAULT_TIMINGS: RotationTimings = {
  stageTimeoutMs: 60_000,
  stagePerAgentMs: 100,
  cutoverDelayMs: 3_000,
  verifyTimeoutMs: 120_000,
  backoffBaseMs: 30_000,
  maxBackoffMs: 30 * 60_000,
};

export interface RotationInput {
  now: Date;
  epoch: number;
  rotation?: RotationStatus | undefined;
  /** a rotation requested by the schedule or by hand, when none is in progress */
  due?: { scope: RotationScope; reason: string } | undefined;
  agents: readonly AgentView[];
  /** pairs among live nodes, and how many of them both sides report Encrypted at the target epoch */
  pairsAtTarget: { total: number; encrypted: number };
  timings: RotationTimings;
  /**
   * Why no rotation may start now (agents outside the supported version skew, plan/skew.ts): a due rotation,
   * or the retry of an aborted one, waits and is reported as refused, naming them.
   */
  refuse?: string | undefined;
}

export type RotationStep =
  | { kind: 'idle' }
  | { kind: 'start'; rotation: RotationStatus }
  | { kind: 'wait'; afterMs: number; why: string }
  | { kind: 'cutover'; rotation: RotationStatus }
  | { kind: 'verify'; rotation: RotationStatus }
  | {
      kind: 'complete';
      epoch: number;
      scope: RotationScope;
      /** pairs not re-established in time */ incomplete: number;
      startTime: string;
    }
  | { kind: 'abort'; rotation: RotationStatus; reason: string }
  | { kind: 'retry'; rotation: RotationStatus }
  | { kind: 'refused'; reason: string; afterMs: number };

/** How often a refused rotation is looked at again (a changed NodeTunnel status wakes it sooner). */
export const REFUSED_RECHECK_MS = 30_000;

const iso = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');
const ms = (s: string | undefined) => (s ? new Date(s).getTime() : 0);

export function backoffMs(attempt: number, t: RotationTimings): number {
  return Math.min(t.backoffBaseMs * 2 ** Math.max(0, attempt - 1), t.maxBackoffMs);
}

export function nextRotationStep(i: RotationInput): RotationStep {
  const now = i.now.getTime();
  const r = i.rotation;
  if (!r) {
    if (!i.due) return { kind: 'idle' };
    if (i.refuse) return { kind: 'refused', reason: i.refuse, afterMs: REFUSED_RECHECK_MS };
    return {
      kind: 'start',
      rotation: {
        phase: 'Staging',
        scope: i.due.scope,
        targetEpoch: i.epoch + 1,
        startTime: iso(i.now),
        attempt: 1,
        reason: i.due.reason,
      },
    };
  }
  switch (r.phase) {
    case 'Backoff': {
      const at = ms(r.retryTime);
      if (now < at) return { kind: 'wait', afterMs: at - now, why: 'backing off after an aborted attempt' };
      if (i.refuse) return { kind: 'refused', reason: i.refuse, afterMs: REFUSED_RECHECK_MS };
      return {
        kind: 'retry',
        rotation: {
          phase: 'Staging',
          scope: r.scope,
          targetEpoch: r.targetEpoch,
          startTime: iso(i.now),
          attempt: (r.attempt ?? 1) + 1,
          reason: r.reason,
        },
      };
    }
    case 'Staging': {
      const live = i.agents.filter((a) => a.live);
      const missing = live.filter(
        (a) => a.stagedEpoch !== r.targetEpoch || (r.scope === 'Keys' && !a.stagedPublicKey),
      );
      if (missing.length === 0 && live.length > 0) {
        return {
          kind: 'cutover',
          rotation: {
            ...r,
            phase: 'CuttingOver',
            cutoverTime: iso(new Date(now + i.timings.cutoverDelayMs)),
          },
        };
      }
      const stageMs = i.timings.stageTimeoutMs + i.timings.stagePerAgentMs * i.agents.length;
      const deadline = ms(r.startTime) + stageMs;
      if (now >= deadline) {
        const reason =
          live.length === 0
            ? 'no live agent to stage the new keys'
            : `not staged within ${stageMs / 1000}s by: ${missing
                .map((a) => a.node)
                .slice(0, 10)
                .join(', ')}${missing.length > 10 ? ` (+${missing.length - 10} more)` : ''}`;
        const attempt = r.attempt ?? 1;
        return {
          kind: 'abort',
          reason,
          rotation: {
            ...r,
            phase: 'Backoff',
            cutoverTime: undefined,
            retryTime: iso(new Date(now + backoffMs(attempt, i.timings))),
            reason,
          },
        };
      }
      return {
        kind: 'wait',
        afterMs: Math.min(deadline - now, 5_000),
        why: `${missing.length} agent(s) staging`,
      };
    }
    case 'CuttingOver': {
      const at = ms(r.cutoverTime);
      if (now < at) return { kind: 'wait', afterMs: at - now, why: 'waiting for the cutover instant' };
      return { kind: 'verify', rotation: { ...r, phase: 'Verifying' } };
    }
    case 'Verifying': {
      const done = i.pairsAtTarget.encrypted === i.pairsAtTarget.total;
      const deadline = ms(r.cutoverTime) + i.timings.verifyTimeoutMs;
      if (done || now >= deadline) {
        return {
          kind: 'complete',
          epoch: r.targetEpoch,
          scope: r.scope,
          incomplete: i.pairsAtTarget.total - i.pairsAtTarget.encrypted,
          startTime: r.startTime,
        };
      }
      return {
        kind: 'wait',
        afterMs: Math.min(deadline - now, 2_000),
        why: `${i.pairsAtTarget.total - i.pairsAtTarget.encrypted} pair(s) not yet at epoch ${r.targetEpoch}`,
      };
    }
  }
}

/** An agent's liveness Lease as the operator reads it (coordination.k8s.io/v1, the fields it needs). */
export interface LeaseView {
  spec?: { renewTime?: string; leaseDurationSeconds?: number };
}

/** Whether the Lease was renewed within its duration before `nowMs` (no Lease: not live). */
export function leaseLive(lease: LeaseView | undefined, nowMs: number): boolean {
  const renew = lease?.spec?.renewTime ? new Date(lease.spec.renewTime).getTime() : 0;
  return renew + (lease?.spec?.leaseDurationSeconds ?? 0) * 1000 > nowMs;
}

/**
 * Epochs only increase (security review S9): when agents report having run an epoch above status.epoch
 * (status restored from an older etcd backup, or rolled back by hand) outside a rotation, the overlay moves to
 * one above the highest reported, with fresh material, rather than back to keys already retired. Returns the
 * new epoch and the nodes that were ahead, or undefined when status.epoch is not behind.
 */
export function epochAfterRollback(
  epoch: number,
  rotating: boolean,
  applied: ReadonlyArray<{ node: string; appliedEpoch: number | undefined }>,
): { epoch: number; seen: number; nodes: string[] } | undefined {
  if (rotating) return undefined;
  let seen = epoch;
  for (const a of applied) if (a.appliedEpoch !== undefined && a.appliedEpoch > seen) seen = a.appliedEpoch;
  if (seen <= epoch) return undefined;
  const nodes = applied
    .filter((a) => (a.appliedEpoch ?? 0) > epoch)
    .map((a) => a.node)
    .sort();
  return { epoch: seen + 1, seen, nodes };
}
