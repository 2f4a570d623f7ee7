// The OverlayNetwork controller: turns an overlay into one NodeTunnel per selected node, seals the pair keys
// into one Secret per node, and aggregates what the agents report into per-pair status.
//
// reconcile(name) reads everything from the informer caches and never trusts event payloads (STYLE 5); the
// one exception is a key Secret's sealed data, which is not cached (~300 MB at 1,000 nodes) and is read from
// the API server only when that Secret's plan may change (overlaynetwork.keysecrets.ts). A pass runs named
// phases over one scope (overlaynetwork.scope.ts), each in a file of its own with its own cache: key Secrets,
// rotation, tunnels, pairs, status; deletion is the finalize phase. Desired state comes from pure functions
// (plan/), and only the difference is written, so an unchanged world causes no API write at all. Loops over
// nodes and pairs yield to the event loop, so a pass over a large overlay never holds up lease renewals,
// watches or /healthz for long. The first failing phase ends the pass (no later phase runs).
import type { KubernetesObject, V1Node } from '@kubernetes/client-node';
import { OVERLAY_LABEL } from '../../api/v1alpha1/groupversion.js';
import type { NodeTunnel } from '../../api/v1alpha1/nodetunnel.types.js';
import { parseOverlayNetwork } from '../../api/v1alpha1/overlaynetwork.types.js';
import { TunnelPeerRows } from '../../lib/contract/pairs.js';
import { describeError, isConflict } from '../../lib/kube.js';
import type { Logger } from '../../lib/log.js';
import { formatTime, setCondition } from '../../lib/runtime/conditions.js';
import { mapTo, type Manager } from '../../lib/runtime/manager.js';
import type { HandlerResult } from '../../lib/runtime/queue.js';
import { overlayConditions } from '../plan/conditions.js';
import { nonMemberPodCIDRs } from '../plan/nonmembers.js';
import { postQuantumCondition, postQuantumFacts } from '../plan/postquantum.js';
import { epochRolledForward, keySecretAltered, keySecretReplaced } from '../plan/events.js';
import { epochAfterRollback } from '../plan/rotation.js';
import type { Member } from '../plan/keysecret.js';
import { desiredTunnels, nodeView } from '../plan/tunnels.js';
import { NotLeaderError } from '../writer.js';
import { judgeSkew } from '../plan/skew.js';
import { applyConflicts, ConflictEvents, otherOverlays } from './overlaynetwork.conflicts.js';
import { finalize } from './overlaynetwork.finalize.js';
import { KeySecrets } from './overlaynetwork.keysecrets.js';
import { AgentLiveness } from './overlaynetwork.liveness.js';
import { DropTracker } from './overlaynetwork.drops.js';
import { PairTracker } from './overlaynetwork.pairs.js';
import { Rotation, scheduleOf } from './overlaynetwork.rotation.js';
import { FINALIZER, newScope, type OverlayControllerDeps, type Scope } from './overlaynetwork.scope.js';
import { StatusWriter } from './overlaynetwork.status.js';
import { Tunnels } from './overlaynetwork.tunnels.js';

export { countsOnly } from '../plan/conditions.js';
export { FINALIZER, MANAGED_BY } from './overlaynetwork.scope.js';
export type { KeySecretReader, OverlayControllerDeps, RotationMetrics } from './overlaynetwork.scope.js';
export { DEFAULT_STATUS_INTERVAL_MS } from './overlaynetwork.status.js';

/** NodeTunnel events start a pass this long after the first of a burst. */
export const TUNNEL_EVENT_DELAY_MS = 500;

export class OverlayNetworkController {
  readonly name = 'overlaynetwork';
  private readonly now: () => Date;
  private readonly peerRows: TunnelPeerRows;
  private readonly keySecrets: KeySecrets;
  private readonly rotation: Rotation;
  private readonly tunnels: Tunnels;
  private readonly pairs: PairTracker;
  private readonly drops: DropTracker;
  private readonly status: StatusWriter;
  private readonly conflictEvents = new ConflictEvents();
  private readonly liveness: AgentLiveness;

  constructor(private readonly deps: OverlayControllerDeps) {
    this.now = deps.now ?? (() => new Date());
    this.peerRows = deps.peerRows ?? new TunnelPeerRows();
    this.status = new StatusWriter(deps, this.now);
    this.keySecrets = new KeySecrets(deps);
    this.rotation = new Rotation(deps, this.peerRows, this.status, this.now);
    this.tunnels = new Tunnels(deps, this.peerRows);
    this.pairs = new PairTracker(this.peerRows);
    this.liveness = new AgentLiveness(deps);
    this.drops = new DropTracker(deps.dropEpisodeMs);
  }

  /**
   * The controller's watches (kubebuilder's SetupWithManager, STYLE 2): every event enqueues the key of the
   * overlay it affects.
   */
  setupWithManager(
    manager: Manager,
    opts: { concurrency?: number | undefined; tunnelEventDelayMs?: number | undefined } = {},
  ): void {
    const { overlays, nodes, tunnels, secrets, leases } = this.deps;
    manager.addController({
      name: this.name,
      for: overlays,
      concurrency: opts.concurrency ?? 2,
      watches: [
        // A node's labels decide which overlays select it, and a label change can move it out of one: every
        // overlay is a candidate. Overlays are few; nodes are many.
        { informer: nodes, map: mapTo.all(overlays) },
        // Agents report often and, in a rollout or a rotation, all at once; a pass over a large overlay judges
        // every pair (500k at 1,000 nodes), so reports are taken in batches.
        {
          informer: tunnels,
          map: mapTo.label(OVERLAY_LABEL),
          delayMs: opts.tunnelEventDelayMs ?? TUNNEL_EVENT_DELAY_MS,
        },
        { informer: secrets, map: mapTo.label(OVERLAY_LABEL) },
        // Liveness matters while a rotation waits for acknowledgements, and to overlays that count the Lease's
        // agent out of touch (it is back). Renewals of agents in touch start no pass.
        ...(leases
          ? [
              {
                informer: leases,
                map: (l: KubernetesObject) => [...this.rotating(), ...this.liveness.overlaysOf(l)],
              },
            ]
          : []),
      ],
      reconcile: (key) => this.reconcile(key),
    });
  }

  /** The overlays with a rotation under way. */
  private rotating(): string[] {
    return this.deps.overlays
      .list()
      .filter((o) => (o as { status?: { rotation?: unknown } }).status?.rotation)
      .map((o) => o.metadata?.name ?? '');
  }

  async reconcile(name: string): Promise<HandlerResult> {
    const raw = this.deps.overlays.get(name);
    if (!raw) {
      this.pairs.forget(name);
      this.drops.forget(name);
      this.deps.rotationMetrics?.forget(name);
      this.status.forget(name);
      this.keySecrets.forget(name);
      this.conflictEvents.forget(name);
      this.rotation.forget(name);
      this.liveness.forget(name);
      return;
    }
    const log = this.deps.logger.child({
      controller: this.name,
      key: name,
      generation: raw.metadata?.generation,
    });
    let scope: Scope | undefined;
    try {
      if (raw.metadata?.deletionTimestamp) {
        return await finalize(
          this.deps,
          { tunnels: this.tunnels, keySecrets: this.keySecrets },
          raw,
          log,
          () => {
            this.pairs.forget(name);
            this.deps.rotationMetrics?.forget(name);
          },
        );
      }
      const parsed = parseOverlayNetwork(raw);
      if (!parsed.ok) {
        await this.status.writeInvalid(raw, parsed.error);
        return;
      }
      scope = newScope(raw, parsed.value, name, this.now());
      if (!(raw.metadata?.finalizers ?? []).includes(FINALIZER)) {
        // The finalizer goes on before anything is created, so nothing can be orphaned (STYLE 8).
        await this.deps.writer.setOverlayFinalizers(name, raw.metadata?.resourceVersion, [
          ...(raw.metadata?.finalizers ?? []),
          FINALIZER,
        ]);
        return; // the update event brings us back with the new resourceVersion
      }
      if (scope.overlay.spec.paused) {
        await this.status.write(scope, { paused: true });
        return;
      }
      return await this.sync(scope, log);
    } catch (err) {
      if (err instanceof NotLeaderError) return;
      // Events of steps already written (a rotation completed, a node joined) are not repeated by the next
      // pass: record them even when a later step of this pass failed.
      if (scope && scope.events.length > 0) await this.status.flushEvents(scope).catch(() => undefined);
      if (isConflict(err)) {
        log.debug('conflict, retrying with fresh cache');
      }
      throw new Error(`failed to reconcile OverlayNetwork ${name}: ${describeError(err)}`, { cause: err });
    }
  }

  /** The phases of a pass over a live overlay, in order. */
  private async sync(scope: Scope, log: Logger): Promise<HandlerResult> {
    const { overlay, name } = scope;
    const spec = overlay.spec;
    const nodes = this.deps.nodes.list().map((n) => nodeView(n as V1Node));
    const ofOverlay = await this.tunnels.read(name);
    const existing = new Map(ofOverlay.map(({ tunnel: t }) => [t.spec.nodeName, t]));
    const rows = new Map(ofOverlay.map(({ tunnel: t, row }) => [t.spec.nodeName, row]));
    const desired = desiredTunnels(
      {
        name,
        nodeSelector: spec.nodeSelector,
        addressPool: spec.addressPool,
        listenPort: spec.listenPort,
        mtu: spec.mtu,
        persistentKeepalive: spec.persistentKeepalive,
        routePodCIDRs: spec.routePodCIDRs,
        epoch: scope.epoch,
      },
      nodes,
      new Map([...existing].map(([node, t]) => [node, t.spec.address])),
    );

    // Conflicts (duplicated keys, overlapping CIDRs, another overlay on the port): reported, and what they
    // touch is neither sealed to nor routed.
    const conflicts = applyConflicts(
      scope,
      desired,
      nodes,
      existing,
      otherOverlays(name, this.deps.overlays.list(), nodes),
    );
    if (conflicts.problems.length > 0)
      log.warn({ conflicts: conflicts.problems }, 'conflicts in the overlay');
    // Agents outside the supported version skew: named in Degraded and an Event; rotations wait for them.
    const skew = judgeSkew(
      [...desired.tunnels.keys()].map((node) => {
        const s = existing.get(node)?.status;
        const reported =
          s?.envelopePublicKey !== undefined ||
          s?.appliedEpoch !== undefined ||
          (s?.conditions?.length ?? 0) > 0;
        return { node, reported, agent: s?.agent };
      }),
    );
    scope.events.push(
      ...this.conflictEvents.events(name, [...conflicts.problems, ...(skew.problem ? [skew.problem] : [])]),
    );

    // Keys first: in Operator custody the tunnel spec carries the public key of the sealed private key.
    const members: Member[] = [...existing.values()]
      .filter((t) => desired.tunnels.has(t.spec.nodeName))
      .map((t) => ({
        name: t.spec.nodeName,
        createdAt: t.metadata.creationTimestamp as string | undefined,
        envelopePublicKey: conflicts.sharedEnvelopeKeys.has(t.spec.nodeName)
          ? undefined
          : t.status?.envelopePublicKey,
        envelopeKemPublicKey: t.status?.envelopeMLKEMPublicKey,
      }));
    const behind = epochAfterRollback(
      scope.epoch,
      scope.rotation !== undefined,
      members.map((m) => ({ node: m.name, appliedEpoch: existing.get(m.name)?.status?.appliedEpoch })),
    );
    if (behind) {
      scope.epoch = behind.epoch;
      scope.events.push(epochRolledForward(behind.nodes, behind.seen, behind.epoch));
      log.warn({ nodes: behind.nodes, seen: behind.seen, epoch: behind.epoch }, 'status.epoch was behind');
      await this.status.persist(scope, { epoch: scope.epoch });
    }
    const { lost, altered } = scope.rotation
      ? { lost: [], altered: [] }
      : await this.keySecrets.lost(scope, members, existing, rows);
    if (lost.length > 0 || altered.length > 0) {
      // Old keys are gone with their Secret, or a Secret holds values the operator did not seal: they are
      // never re-created or kept, everything moves to a new epoch.
      scope.epoch += 1;
      if (lost.length > 0) scope.events.push(keySecretReplaced(lost, scope.epoch));
      if (altered.length > 0) scope.events.push(keySecretAltered(altered, scope.epoch));
      log.warn(
        { nodes: lost, altered, epoch: scope.epoch },
        'key Secret lost or altered; moving to a new epoch',
      );
      await this.status.persist(scope, { epoch: scope.epoch });
    }
    await this.rotation.step(scope, members, existing, rows, log, skew.refuseRotation);
    const publicKeys = await this.keySecrets.sync(scope, members, log);
    await this.tunnels.sync(scope, desired.tunnels, existing, publicKeys);
    const unreachable = this.liveness.judge(scope, desired.tunnels.keys(), existing);
    const pairs = await this.pairs.track(scope, desired, rows, new Set(unreachable.map((u) => u.node)));
    const drops = this.drops.track(scope, new Set(desired.tunnels.keys()), [...existing.values()]);

    const pq = postQuantumFacts(members, spec.keys.presharedKeys);
    const conditions = setCondition(
      overlayConditions(
        scope.overlay.status?.conditions ?? [],
        {
          generation: scope.raw.metadata?.generation,
          epoch: scope.epoch,
          rotation: scope.rotation,
          addressPool: spec.addressPool,
          unusable: desired.unusable,
          exhausted: desired.exhausted,
          conflicts: conflicts.problems,
          skew: skew.problem,
          unreachable,
          portInUse: portInUse(desired.tunnels.keys(), existing),
          pairs,
          drops,
        },
        scope.now,
      ),
      postQuantumCondition(pq, scope.raw.metadata?.generation),
      scope.now,
    );
    // After the rotation phase: a rotation it completed moved the last rotation times.
    const schedule = scheduleOf(scope);
    this.deps.rotationMetrics?.keyTimes(name, schedule);
    this.deps.rotationMetrics?.pairs(name, pairs);
    this.deps.rotationMetrics?.postQuantum?.(name, pq);
    const nonMembers = nonMemberPodCIDRs(nodes, {
      nodeSelector: spec.nodeSelector,
      declared: spec.dataPlane.protectedRanges ?? [],
      memberPrefixes: [...desired.tunnels.values()].flatMap((t) => [
        t.address.split('/')[0]!,
        ...t.allowedIPs,
      ]),
    });
    if (nonMembers.truncated > 0)
      log.warn(
        { left: nonMembers.truncated },
        'too many non-member pod CIDRs to publish; the rest stay protected',
      );
    await this.status.write(scope, {
      status: {
        ...scope.deferred,
        nodes: desired.tunnels.size,
        nonMemberPodCIDRs: nonMembers.cidrs.length > 0 ? nonMembers.cidrs : undefined,
        pairs: { ...pairs, unknown: pairs.unknown > 0 ? pairs.unknown : undefined },
        encryptedSummary: `${pairs.encrypted}/${pairs.total}`,
        conditions,
        nextRotationTime: schedule.nextRotationTime && formatTime(schedule.nextRotationTime),
        nextPresharedKeyRotationTime:
          schedule.nextPresharedKeyRotationTime && formatTime(schedule.nextPresharedKeyRotationTime),
      },
    });
    await this.status.flushEvents(scope);
    // Last: deleting a completed rotation's old Secrets can take the API server tens of seconds at 1,000
    // nodes, and nothing above waits on it.
    await this.keySecrets.deleteStale(scope, new Set(desired.tunnels.keys()), log);
    const nextDue = [schedule.nextRotationTime, schedule.nextPresharedKeyRotationTime]
      .filter((d): d is Date => d !== undefined)
      .map((d) => Math.max(d.getTime() - scope.now.getTime(), 1000));
    const requeue = Math.min(scope.requeueAfterMs ?? Infinity, ...nextDue);
    // Timers beyond a day are left to the periodic resync.
    return Number.isFinite(requeue) ? { requeueAfterMs: Math.min(requeue, 86_400_000) } : undefined;
  }
}

/** Members whose agent reports its device unprogrammable because another process holds the listen port. */
function portInUse(
  nodes: Iterable<string>,
  tunnels: Map<string, NodeTunnel>,
): Array<{ node: string; port: number }> {
  const out: Array<{ node: string; port: number }> = [];
  for (const node of nodes) {
    const t = tunnels.get(node);
    const ready = t?.status?.conditions?.find((c) => c.type === 'Ready');
    if (t && ready?.status === 'False' && ready.reason === 'ListenPortInUse')
      out.push({ node, port: t.spec.listenPort });
  }
  return out;
}
