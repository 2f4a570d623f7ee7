// The conflicts phase: gathers what plan/conflicts.ts judges (the members' keys, pod CIDRs and underlay
// addresses; the other overlays on the same nodes) and applies its verdict to the pass: pod CIDRs that
// overlap another claim leave the desired tunnels, and nothing is sealed to a node whose envelope key another
// member publishes too. The problems become the Degraded and Ready reasons (plan/conditions.ts).
import type { KubernetesObject } from '@kubernetes/client-node';
import type { NodeTunnel } from '../../api/v1alpha1/nodetunnel.types.js';
import { parseOverlayNetwork } from '../../api/v1alpha1/overlaynetwork.types.js';
import { matchesSelector } from '../../lib/selector.js';
import { findConflicts, type Conflicts, type OtherOverlay } from '../plan/conflicts.js';
import type { OverlayEvent } from '../plan/events.js';
import type { DesiredTunnels, NodeView } from '../plan/tunnels.js';
import type { Scope } from './overlaynetwork.scope.js';

/** The other overlays and the live nodes each selects. */
export function otherOverlays(
  self: string,
  overlays: readonly KubernetesObject[],
  nodes: readonly NodeView[],
): OtherOverlay[] {
  const out: OtherOverlay[] = [];
  for (const raw of overlays) {
    if (raw.metadata?.name === self || raw.metadata?.deletionTimestamp) continue;
    const parsed = parseOverlayNetwork({ ...raw, status: undefined });
    if (!parsed.ok || parsed.value.spec.paused) continue;
    const spec = parsed.value.spec;
    out.push({
      name: parsed.value.metadata.name,
      addressPool: spec.addressPool,
      listenPort: spec.listenPort,
      nodes: nodes
        .filter((n) => !n.deleting && matchesSelector(spec.nodeSelector, n.labels))
        .map((n) => n.name),
    });
  }
  return out;
}

/** Judges the pass's members and neighbours; takes withheld pod CIDRs out of `desired` in place. */
export function applyConflicts(
  scope: Scope,
  desired: DesiredTunnels,
  nodes: readonly NodeView[],
  existing: ReadonlyMap<string, NodeTunnel>,
  others: readonly OtherOverlay[],
): Conflicts {
  const spec = scope.overlay.spec;
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const conflicts = findConflicts({
    addressPool: spec.addressPool,
    listenPort: spec.listenPort,
    members: [...desired.tunnels.keys()].map((node) => {
      const t = existing.get(node);
      const view = byName.get(node);
      return {
        node,
        publicKey: t?.status?.publicKey ?? t?.spec.publicKey,
        envelopePublicKey: t?.status?.envelopePublicKey,
        podCIDRs: spec.routePodCIDRs ? (view?.podCIDRs ?? []) : [],
        internalIPs: view?.internalIPs ?? [],
        operatorKeyRefused:
          t?.status?.conditions?.some((c) => c.type === 'OperatorKeyTrusted' && c.status === 'False') ??
          false,
      };
    }),
    others,
  });
  for (const [node, cidrs] of conflicts.withheld) {
    const tunnel = desired.tunnels.get(node);
    if (tunnel) tunnel.allowedIPs = tunnel.allowedIPs.filter((c) => !cidrs.has(c));
  }
  return conflicts;
}

/**
 * One Warning Event per problem when it appears (reason = the problem's reason), none while it stays: the
 * problems of the last pass are remembered per overlay.
 */
export class ConflictEvents {
  private readonly seen = new Map<string, Set<string>>();

  events(overlay: string, problems: ReadonlyArray<{ reason: string; message: string }>): OverlayEvent[] {
    const before = this.seen.get(overlay) ?? new Set<string>();
    this.seen.set(overlay, new Set(problems.map((p) => p.message)));
    return problems
      .filter((p) => !before.has(p.message))
      .map((p) => ({ type: 'Warning' as const, reason: p.reason, message: p.message }));
  }

  forget(overlay: string): void {
    this.seen.delete(overlay);
  }
}
