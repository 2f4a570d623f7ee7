// Plaintext drop episodes of an overlay's pairs, as a pure function over the agents' reports (issue #13 item
// 4). Each agent reports, per peer node, how many would-be plaintext packets its fail-closed rules matched
// (NodeTunnel status.drops, cumulative). A pair is dropping while either side's count for the other rose
// between two of its reports within the last episode window; an episode starts when a pair that was not
// dropping rises, and ends a window after its last rise. The operator's own clock decides (agents' clocks
// may be off), and the first pass after a start only learns the counts (a restarted operator does not
// announce drops that happened before). Agents write changed counts at most every 30 s (agent/drops.ts),
// so the default window of 90 s spans two of their writes.
type DataPlaneMode = 'FailClosed' | 'Monitor';
import { listNames, type OverlayEvent } from './events.js';

export const DEFAULT_DROP_EPISODE_MS = 90_000;

/** One member's report: its cumulative count per peer node (absent: zero). */
export interface DropReport {
  node: string;
  peers: ReadonlyArray<{ node: string; packets: number }>;
}

/** What the operator remembers per overlay between passes. */
export interface DropMemory {
  /** `from\0to` → the last count `from` reported for `to` */
  counts: Map<string, number>;
  /** pair `a/b` (a < b) → when a rise was last seen (ms) */
  lastRise: Map<string, number>;
}

export interface DropDecision {
  memory: DropMemory;
  /** pairs dropping now, `a/b` with a < b, sorted */
  dropping: string[];
  /** pairs whose episode started in this pass (the Event names them), sorted */
  started: string[];
  /** when the next episode ends (the next pass that must look), if one is under way */
  nextEndMs?: number;
}

const pairName = (a: string, b: string): string => (a < b ? `${a}/${b}` : `${b}/${a}`);

export function dropEpisodes(
  previous: DropMemory | undefined,
  reports: readonly DropReport[],
  members: ReadonlySet<string>,
  nowMs: number,
  episodeMs = DEFAULT_DROP_EPISODE_MS,
): DropDecision {
  const counts = new Map<string, number>();
  const lastRise = new Map<string, number>();
  const active = (at: number | undefined): boolean => at !== undefined && nowMs - at < episodeMs;
  for (const [pair, at] of previous?.lastRise ?? []) if (active(at)) lastRise.set(pair, at);
  const wasDropping = new Set(lastRise.keys());
  const rising = new Set<string>();
  for (const r of reports) {
    if (!members.has(r.node)) continue;
    // counts only of members (bounded by membership: an agent cannot grow the operator's memory)
    for (const p of r.peers) {
      if (!members.has(p.node) || p.node === r.node) continue;
      const key = `${r.node}\0${p.node}`;
      counts.set(key, p.packets);
      // a count lower than before is an agent that started again: a new baseline, no rise
      if (previous && p.packets > (previous.counts.get(key) ?? 0)) rising.add(pairName(r.node, p.node));
    }
  }
  for (const pair of rising) lastRise.set(pair, nowMs);
  const dropping = [...lastRise.keys()].sort();
  const started = [...rising].filter((p) => !wasDropping.has(p)).sort();
  const ends = [...lastRise.values()].map((at) => at + episodeMs);
  return {
    memory: { counts, lastRise },
    dropping,
    started,
    ...(ends.length ? { nextEndMs: Math.min(...ends) } : {}),
  };
}

/** The Degraded reason: plaintext dropped (FailClosed) or sent and counted (Monitor). */
export const dropReason = (mode: DataPlaneMode): string =>
  mode === 'Monitor' ? 'PlaintextSent' : 'PlaintextDropped';

export function dropMessage(mode: DataPlaneMode, pairs: string[]): string {
  return mode === 'Monitor'
    ? `plaintext sent and counted (Monitor mode) between ${listNames(pairs)}`
    : `plaintext dropped by the fail-closed rules between ${listNames(pairs)}`;
}

/** One Warning per pass, naming the pairs whose episode started: each pair once per episode. */
export const plaintextDropped = (mode: DataPlaneMode, pairs: string[]): OverlayEvent => ({
  type: 'Warning',
  reason: dropReason(mode),
  message: dropMessage(mode, pairs),
});
