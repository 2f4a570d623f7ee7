// The liveness phase (issue #18 scenario 2): which members' agents are out of touch (plan/liveness.ts), the
// Events when an agent goes out of touch and when it is back, a pass when the first live Lease runs out (a
// Lease that is not renewed sends no event), and which overlays a Lease's renewal concerns, so an agent back
// in touch shows in status within seconds.
import type { KubernetesObject } from '@kubernetes/client-node';
import type { NodeTunnel } from '../../api/v1alpha1/nodetunnel.types.js';
import { agentLeaseName } from '../../lib/contract/liveness.js';
import { agentsBack, agentsUnreachable } from '../plan/events.js';
import { agentLiveness, type Unreachable } from '../plan/liveness.js';
import type { LeaseView } from '../plan/rotation.js';
import { requeueWithin, type OverlayControllerDeps, type Scope } from './overlaynetwork.scope.js';

/** Looked at again this long after the first live Lease expires (renewals race the expiry). */
const EXPIRY_SLACK_MS = 500;

export class AgentLiveness {
  /** by overlay: the Lease names of its agents out of touch at its last pass */
  private readonly outOfTouch = new Map<string, Map<string, string>>();

  constructor(private readonly deps: Pick<OverlayControllerDeps, 'namespace' | 'leases' | 'leaseName'>) {}

  forget(overlay: string): void {
    this.outOfTouch.delete(overlay);
  }

  /** The overlays whose pass a change of this Lease concerns: those that count its agent out of touch. */
  overlaysOf(lease: KubernetesObject): string[] {
    const name = lease.metadata?.name ?? '';
    return [...this.outOfTouch].filter(([, leases]) => leases.has(name)).map(([overlay]) => overlay);
  }

  /** The members out of touch (empty without a Lease informer), with Events for what changed. */
  judge(scope: Scope, nodes: Iterable<string>, tunnels: Map<string, NodeTunnel>): Unreachable[] {
    if (!this.deps.leases) return [];
    const leaseName = (node: string) => this.deps.leaseName?.(node) ?? agentLeaseName(node);
    const agents = [...nodes].map((node) => ({
      node,
      lease: this.deps.leases!.get(leaseName(node), this.deps.namespace) as LeaseView | undefined,
      reported: tunnels.get(node)?.status !== undefined,
    }));
    const nowMs = scope.now.getTime();
    const verdict = agentLiveness(agents, nowMs);
    if (verdict.nextExpiry !== undefined) requeueWithin(scope, verdict.nextExpiry - nowMs + EXPIRY_SLACK_MS);
    const before = this.outOfTouch.get(scope.name);
    const now = new Map(verdict.unreachable.map((u) => [leaseName(u.node), u.node]));
    // The first pass after a start learns the baseline, as the pairs phase does.
    if (before) {
      const gone = verdict.unreachable.filter((u) => !before.has(leaseName(u.node)));
      const back = [...before].filter(([lease]) => !now.has(lease)).map(([, node]) => node);
      if (gone.length > 0) scope.events.push(agentsUnreachable(gone));
      if (back.length > 0) scope.events.push(agentsBack(back));
    }
    this.outOfTouch.set(scope.name, now);
    return verdict.unreachable;
  }
}
