// The drops phase: reads the members' drop counts (NodeTunnel status.drops, which the tunnel cache keeps: only
// peer lists are stripped from it) and decides plaintext drop episodes per pair (plan/drops.ts), remembering
// between passes only the last counts of members and when each dropping pair last rose. Adds the Event of
// episodes that started, asks for a pass when the next one ends, and returns what the Degraded condition says.
import type { NodeTunnel } from '../../api/v1alpha1/nodetunnel.types.js';
import type { ConditionFacts } from '../plan/conditions.js';
import { dropEpisodes, plaintextDropped, type DropMemory } from '../plan/drops.js';
import { requeueWithin, type Scope } from './overlaynetwork.scope.js';

export class DropTracker {
  private readonly memory = new Map<string, DropMemory>();

  constructor(private readonly episodeMs?: number) {}

  forget(overlay: string): void {
    this.memory.delete(overlay);
  }

  track(
    scope: Scope,
    members: ReadonlySet<string>,
    tunnels: readonly NodeTunnel[],
  ): NonNullable<ConditionFacts['drops']> {
    const mode = scope.overlay.spec.dataPlane?.mode ?? 'FailClosed';
    const reports = tunnels.flatMap((t) =>
      t.status?.drops?.peers ? [{ node: t.spec.nodeName, peers: t.status.drops.peers }] : [],
    );
    const nowMs = scope.now.getTime();
    const d = dropEpisodes(this.memory.get(scope.name), reports, members, nowMs, this.episodeMs);
    this.memory.set(scope.name, d.memory);
    if (d.started.length > 0) scope.events.push(plaintextDropped(mode, d.started));
    // the condition clears once the episode is over, with no report to wake us
    if (d.nextEndMs !== undefined) requeueWithin(scope, Math.max(d.nextEndMs - nowMs, 1));
    return { mode, pairs: d.dropping };
  }
}
