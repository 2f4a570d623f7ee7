// The rotation phase: one step of the rotation protocol per pass. plan/rotation.ts decides (nextRotationStep);
// this gathers what it decides from (the trigger, the agents' liveness Leases and acknowledgements, during
// Verifying the pairs at the target epoch) and applies the step. Progress is written to status before any key
// Secret changes, so a restart at any point resumes from the API.
import { ROTATE_ANNOTATION } from '../../api/v1alpha1/groupversion.js';
import type { NodeTunnel } from '../../api/v1alpha1/nodetunnel.types.js';
import { visitPairRows, type PeerRow, type TunnelPeerRows } from '../../lib/contract/pairs.js';
import type { Logger } from '../../lib/log.js';
import { formatTime } from '../../lib/runtime/conditions.js';
import {
  NameSample,
  rotationAborted,
  rotationCompleted,
  rotationIncomplete,
  rotationRefused,
  rotationStarted,
} from '../plan/events.js';
import type { Member } from '../plan/keysecret.js';
import {
  DEFAULT_TIMINGS,
  leaseLive,
  nextRotationStep,
  type AgentView,
  type LeaseView,
  type RotationStep,
  type RotationTimings,
} from '../plan/rotation.js';
import { evaluateSchedule, rotationTrigger, scheduleInputOf, type ScheduleResult } from '../plan/schedule.js';
import { requeueWithin, type OverlayControllerDeps, type Scope } from './overlaynetwork.scope.js';
import type { StatusWriter } from './overlaynetwork.status.js';

/** Schedule and manual trigger, from the spec and the last rotation times in status. */
export function scheduleOf(scope: Scope): ScheduleResult {
  const created = new Date((scope.raw.metadata?.creationTimestamp as string | Date | undefined) ?? scope.now);
  return evaluateSchedule(scheduleInputOf(scope.overlay, created, scope.now));
}

export class Rotation {
  readonly timings: RotationTimings;
  /** per overlay, the reason of the refusal last reported: one Event per refusal, not one per pass */
  private readonly refused = new Map<string, string>();

  constructor(
    private readonly deps: Pick<
      OverlayControllerDeps,
      'namespace' | 'leases' | 'leaseName' | 'rotationMetrics' | 'timings'
    >,
    private readonly peerRows: TunnelPeerRows,
    private readonly status: StatusWriter,
    private readonly now: () => Date,
  ) {
    this.timings = { ...DEFAULT_TIMINGS, ...deps.timings };
  }

  private agentViews(members: Member[], tunnels: Map<string, NodeTunnel>): AgentView[] {
    const nowMs = this.now().getTime();
    return members.map((m) => {
      const lease = this.deps.leases?.get(
        this.deps.leaseName?.(m.name) ?? `sealmesh-agent-${m.name}`,
        this.deps.namespace,
      ) as LeaseView | undefined;
      const status = tunnels.get(m.name)?.status;
      return {
        node: m.name,
        live: leaseLive(lease, nowMs),
        stagedEpoch: status?.stagedEpoch,
        stagedPublicKey: status?.stagedPublicKey,
      };
    });
  }

  forget(overlay: string): void {
    this.refused.delete(overlay);
  }

  /** One step of the rotation protocol, applied to the scope (and written where agents must see it). */
  async step(
    scope: Scope,
    members: Member[],
    tunnels: Map<string, NodeTunnel>,
    rows: Map<string, PeerRow | undefined>,
    log: Logger,
    refuse?: string,
  ): Promise<RotationStep> {
    const { overlay } = scope;
    let due: ReturnType<typeof rotationTrigger>['due'];
    let request: string | undefined;
    if (!scope.rotation) {
      ({ due, request } = rotationTrigger(
        scope.raw.metadata?.annotations?.[ROTATE_ANNOTATION],
        overlay.status?.lastRotateRequest ?? undefined,
        () => scheduleOf(scope).due,
      ));
    }
    const agents = this.agentViews(members, tunnels);
    const target = scope.rotation?.targetEpoch ?? scope.epoch + 1;
    const live = new Set(agents.filter((a) => a.live).map((a) => a.node));
    // Only the Verifying phase looks at the pairs (O(N²) at N live nodes): no other pass pays for them.
    const atTarget = { total: 0, encrypted: 0 };
    const notAtTarget = new NameSample();
    if (scope.rotation?.phase === 'Verifying') {
      const counts = await visitPairRows(
        this.peerRows.ids,
        [...live],
        [...rows].filter(([node]) => live.has(node)).map(([node, row]) => ({ node, row })),
        target,
        (a, b, state) => {
          if (state !== 'Encrypted') notAtTarget.addPair(a, b);
        },
      );
      atTarget.total = counts.total;
      atTarget.encrypted = counts.encrypted;
    }
    const step = nextRotationStep({
      now: scope.now,
      epoch: scope.epoch,
      rotation: scope.rotation,
      due,
      agents,
      pairsAtTarget: atTarget,
      timings: this.timings,
      refuse,
    });
    if (step.kind !== 'refused') this.refused.delete(scope.name);
    switch (step.kind) {
      case 'idle':
        return step;
      case 'wait':
        requeueWithin(scope, step.afterMs);
        return step;
      case 'refused':
        if (this.refused.get(scope.name) !== step.reason) {
          this.refused.set(scope.name, step.reason);
          scope.events.push(rotationRefused(scope.epoch, step.reason));
          log.warn({ reason: step.reason }, 'rotation refused');
        }
        requeueWithin(scope, step.afterMs);
        return step;
      case 'start':
      case 'retry':
        scope.rotation = step.rotation;
        await this.status.persist(scope, {
          rotation: step.rotation,
          ...(request !== undefined ? { lastRotateRequest: request } : {}),
        });
        scope.events.push(rotationStarted(step.rotation));
        log.info({ epoch: step.rotation.targetEpoch, scope: step.rotation.scope }, 'rotation staging');
        requeueWithin(scope, 1000);
        return step;
      case 'cutover':
      case 'verify':
        scope.rotation = step.rotation;
        // The cutover instant must reach the agents before it passes, whatever else this pass does. Verifying
        // changes nothing the agents act on: the pass's last status write carries it.
        if (step.kind === 'cutover') await this.status.persist(scope, { rotation: step.rotation });
        else scope.deferred = { ...scope.deferred, rotation: step.rotation };
        if (step.kind === 'cutover')
          log.info({ cutoverTime: step.rotation.cutoverTime }, 'rotation cutover set');
        requeueWithin(scope, step.kind === 'cutover' ? this.timings.cutoverDelayMs : 1000);
        return step;
      case 'abort':
        // The staged Secrets stay for the retry, which stages the same epoch: nothing waits on this write.
        scope.rotation = step.rotation;
        scope.deferred = { ...scope.deferred, rotation: step.rotation };
        scope.events.push(rotationAborted(step.rotation, scope.epoch, step.reason));
        this.deps.rotationMetrics?.aborted(scope.name, step.rotation.scope);
        log.warn({ epoch: step.rotation.targetEpoch, reason: step.reason }, 'rotation aborted');
        requeueWithin(
          scope,
          Math.max(new Date(step.rotation.retryTime ?? 0).getTime() - scope.now.getTime(), 1000),
        );
        return step;
      case 'complete': {
        const when = formatTime(scope.now);
        scope.epoch = step.epoch;
        scope.rotation = undefined;
        await this.status.persist(scope, {
          epoch: step.epoch,
          rotation: undefined,
          ...(step.scope === 'Keys' ? { lastRotationTime: when } : { lastPresharedKeyRotationTime: when }),
        });
        const seconds = (scope.now.getTime() - new Date(step.startTime).getTime()) / 1000;
        scope.events.push(rotationCompleted(step.epoch, step.scope, seconds));
        if (step.incomplete > 0)
          scope.events.push(rotationIncomplete(step.incomplete, step.epoch, notAtTarget));
        this.deps.rotationMetrics?.completed(scope.name, step.scope, seconds, step.incomplete);
        log.info({ epoch: step.epoch, scope: step.scope, seconds }, 'rotation completed');
        return step;
      }
    }
  }
}
