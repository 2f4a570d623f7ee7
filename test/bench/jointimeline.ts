// Where a join's time goes (issue #15 item 0), for the lab bench: from the moment a joining node's Node object
// appears until the overlay counts every pair encrypted, when each step was first seen. API objects are timed
// by watches in this process (when the bench saw them, not their second-resolution timestamps); the agents'
// steps come from their logs (pino's millisecond `time`), read after the join.
import type { KubeConfig } from '@kubernetes/client-node';
import {
  GROUP,
  NODE_LABEL,
  NODE_TUNNEL_PLURAL,
  OVERLAY_LABEL,
  VERSION,
} from '../../api/v1alpha1/groupversion.js';
import { coreResources, customResource } from '../../lib/kube.js';
import { Informer } from '../../lib/runtime/informer.js';
import { KubeRest, type RawObject } from '../../lib/runtime/rest.js';

/** The steps of a join, in the order they must happen. */
export const JOIN_STEPS = [
  'tunnelCreated',
  'secretWritten',
  'joinerRunning',
  'joinerDevice',
  'peersDevice',
  'joinerReported',
  'peersReported',
  'counted',
] as const;
export type JoinStep = (typeof JOIN_STEPS)[number];

export const STEP_LABELS: Record<JoinStep, string> = {
  tunnelCreated: 'its NodeTunnel created (operator)',
  secretWritten: 'its key Secret written (operator)',
  joinerRunning: 'its agent running',
  joinerDevice: 'its device holds every peer',
  peersDevice: "every other node's device holds it",
  joinerReported: 'its status: every peer Encrypted',
  peersReported: "every other node's status: it Encrypted",
  counted: 'the overlay counts every pair encrypted',
};

/** Seconds after the Node appeared, per step (undefined: not seen). */
export type Timeline = Partial<Record<JoinStep, number>>;

/** First-seen times of each node's NodeTunnel and key Secrets in one overlay, by watch. */
export class JoinWatch {
  private readonly tunnels: Informer<RawObject>;
  private readonly secrets: Informer<RawObject>;
  readonly tunnelSeen = new Map<string, number>();
  readonly secretSeen = new Map<string, number>();

  constructor(kc: KubeConfig, overlay: string, keyNamespace: string) {
    const client = new KubeRest(kc);
    const labelSelector = `${OVERLAY_LABEL}=${overlay}`;
    this.tunnels = new Informer<RawObject>({
      client,
      resource: customResource(GROUP, VERSION, NODE_TUNNEL_PLURAL),
      labelSelector,
    });
    this.secrets = new Informer<RawObject>({
      client,
      resource: coreResources.secrets,
      namespace: keyNamespace,
      labelSelector,
    });
    const seen = (into: Map<string, number>) => (o: RawObject) => {
      const labels = (o.metadata as { labels?: Record<string, string> } | undefined)?.labels;
      const node = labels?.[NODE_LABEL];
      if (node && !into.has(node)) into.set(node, Date.now());
    };
    this.tunnels.addHandler({ onAdd: seen(this.tunnelSeen) });
    this.secrets.addHandler({ onAdd: seen(this.secretSeen) });
  }

  async start(): Promise<void> {
    this.tunnels.start();
    this.secrets.start();
    const ok = await Promise.all([this.tunnels.waitForSync(), this.secrets.waitForSync()]);
    if (ok.includes(false)) throw new Error('the join watches stopped before their first list');
  }

  async stop(): Promise<void> {
    await Promise.all([this.tunnels.stop(), this.secrets.stop()]);
  }
}

interface LogLine {
  time?: number;
  msg?: string;
  overlay?: string;
  peer?: string;
  peers?: string;
}

function lines(text: string, since: number, overlay: string): LogLine[] {
  const out: LogLine[] = [];
  for (const raw of text.split('\n')) {
    if (!raw.startsWith('{')) continue;
    try {
      const l = JSON.parse(raw) as LogLine;
      if ((l.time ?? 0) >= since && (l.overlay === undefined || l.overlay === overlay)) out.push(l);
    } catch {
      // not a log line of the agent's
    }
  }
  return out;
}

/**
 * The agents' steps of one join, from their logs: the joiner's "agent running", its last first-time "peer
 * configured" (every peer on its device), each other node's "peer configured" of the joiner, and the first
 * "status updated" with every peer encrypted on each side. Times in ms since the epoch.
 */
export function agentSteps(
  logs: Readonly<Record<string, string>>,
  joiner: string,
  others: readonly string[],
  overlay: string,
  since: number,
): Pick<Timeline, 'joinerRunning' | 'joinerDevice' | 'peersDevice' | 'joinerReported' | 'peersReported'> {
  const mine = lines(logs[joiner] ?? '', since, overlay);
  const out: ReturnType<typeof agentSteps> = {};
  out.joinerRunning = mine.find((l) => l.msg === 'agent running')?.time;
  const configured = new Map<string, number>();
  for (const l of mine)
    if (l.msg === 'peer configured' && l.peer && !configured.has(l.peer)) configured.set(l.peer, l.time!);
  if (others.every((o) => configured.has(o))) out.joinerDevice = Math.max(...configured.values());
  const all = `${others.length}/${others.length}`;
  out.joinerReported = mine.find((l) => l.msg === 'status updated' && l.peers === all)?.time;
  const device: number[] = [];
  const reported: number[] = [];
  for (const o of others) {
    const theirs = lines(logs[o] ?? '', since, overlay);
    const c = theirs.find((l) => l.msg === 'peer configured' && l.peer === joiner)?.time;
    if (c !== undefined) device.push(c);
    // their status lists the joiner Encrypted once it reports L/L (L = the others and the joiner, less itself)
    const r = theirs.find(
      (l) => l.msg === 'status updated' && l.peers === all && (l.time ?? 0) >= (c ?? 0),
    )?.time;
    if (r !== undefined) reported.push(r);
  }
  if (device.length === others.length) out.peersDevice = Math.max(...device);
  if (reported.length === others.length) out.peersReported = Math.max(...reported);
  return out;
}

/** Every step in seconds after the Node appeared. */
export function joinTimeline(nodeAt: number, at: Partial<Record<JoinStep, number | undefined>>): Timeline {
  const t: Timeline = {};
  for (const s of JOIN_STEPS) {
    const v = at[s];
    if (v !== undefined) t[s] = Math.round(v - nodeAt) / 1000;
  }
  return t;
}

/** One line per join: each step's time after the Node appeared, and the longest stretch between two steps. */
export function describeTimeline(t: Timeline): string {
  const parts = JOIN_STEPS.map((s) => {
    const v = t[s];
    return `${s} ${v === undefined ? '-' : `${v.toFixed(2)}s`}`;
  });
  let longest: { from: string; to: JoinStep; s: number } | undefined;
  let prev: { step: string; at: number } = { step: 'Node', at: 0 };
  for (const s of JOIN_STEPS) {
    const v = t[s];
    if (v === undefined) continue;
    const d = v - prev.at;
    if (!longest || d > longest.s) longest = { from: prev.step, to: s, s: d };
    prev = { step: s, at: Math.max(prev.at, v) };
  }
  return `${parts.join(', ')}${longest ? `; longest: ${longest.from} -> ${longest.to} ${longest.s.toFixed(2)}s` : ''}`;
}
