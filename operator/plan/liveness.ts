// Which agents are out of touch (issue #18 scenario 2): an agent that reported and then stopped renewing its
// liveness Lease — its node cut off from the API server, its agent hung or gone — has a last report that is
// no longer news. Its data plane may well go on encrypting (the keys stay on the device), but the operator
// cannot know: its pairs read Unknown, not the state last reported, until the agent renews its Lease. Pure.
import { leaseLive, type LeaseView } from './rotation.js';

export interface AgentLiveness {
  node: string;
  lease: LeaseView | undefined;
  /** the node's agent has reported (its NodeTunnel has status): a node that never ran an agent is pending */
  reported: boolean;
}

export interface Unreachable {
  node: string;
  /** the Lease's last renewal (RFC 3339), when there is one */
  renewed: string | undefined;
}

export interface LivenessVerdict {
  /** agents that reported and whose Lease exists but is no longer renewed, by node name */
  unreachable: Unreachable[];
  /** ms since the epoch when the first live Lease runs out (the pass looks again then) */
  nextExpiry: number | undefined;
}

export function agentLiveness(agents: readonly AgentLiveness[], nowMs: number): LivenessVerdict {
  const unreachable: Unreachable[] = [];
  let nextExpiry: number | undefined;
  for (const a of agents) {
    if (leaseLive(a.lease, nowMs)) {
      const renew = new Date(a.lease!.spec!.renewTime!).getTime();
      const expiry = renew + (a.lease!.spec!.leaseDurationSeconds ?? 0) * 1000;
      if (nextExpiry === undefined || expiry < nextExpiry) nextExpiry = expiry;
    } else if (a.reported && a.lease) {
      // No Lease at all: an agent starting (it writes status first), or one taken off; nothing to say yet.
      unreachable.push({ node: a.node, renewed: a.lease?.spec?.renewTime });
    }
  }
  unreachable.sort((x, y) => (x.node < y.node ? -1 : x.node > y.node ? 1 : 0));
  return { unreachable, nextExpiry };
}
