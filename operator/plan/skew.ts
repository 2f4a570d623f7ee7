// Version skew between the operator and its agents (issue #18 scenario 4), judged from what each agent
// publishes in status.agent (lib/contract/version.ts). Pure: the controller turns the verdict into the
// overlay's Degraded reason, a Warning Event, and a refused rotation that names the agents — an agent that
// cannot read what a rotation writes would otherwise stall it until the staging timeout.
import {
  KEY_PAYLOAD_VERSION,
  parseRelease,
  RELEASE,
  releasesApart,
  SUPPORTED_SKEW,
  type AgentInfo,
} from '../../lib/contract/version.js';
import { listNames } from './events.js';

export interface SkewMember {
  node: string;
  /** whether the agent has written its NodeTunnel status at all (an agent not started yet is not skewed) */
  reported: boolean;
  agent?: AgentInfo | undefined;
}

export interface SkewOperator {
  release: string;
  keyPayload: number;
}

export const THIS_OPERATOR: SkewOperator = { release: RELEASE, keyPayload: KEY_PAYLOAD_VERSION };

export interface Unsupported {
  node: string;
  /** why, for people: the version it publishes and what is wrong with it */
  why: string;
}

export interface SkewVerdict {
  unsupported: Unsupported[];
  /** the Degraded reason and Event, when any agent is unsupported */
  problem?: { reason: 'AgentVersionSkew'; message: string };
  /** why a rotation may not start now, naming the agents */
  refuseRotation?: string;
}

/** Why an agent is outside the supported skew, or undefined when it is inside. */
export function whyUnsupported(agent: AgentInfo | undefined, op: SkewOperator): string | undefined {
  const mine = parseRelease(op.release);
  if (!agent) return `publishes no version: older than 0.2.0`;
  const theirs = parseRelease(agent.version);
  if (!theirs || !mine) return `publishes version "${agent.version.slice(0, 40)}", not a release`;
  const apart = releasesApart(theirs, mine);
  if (apart > SUPPORTED_SKEW) {
    const dir = theirs.major < mine.major || (theirs.major === mine.major && theirs.minor < mine.minor);
    return `${agent.version}: ${apart === Infinity ? 'another major version' : `${apart} releases`} ${dir ? 'older' : 'newer'}`;
  }
  if (!agent.keyPayloads.includes(op.keyPayload)) {
    return `${agent.version}: reads key payload ${agent.keyPayloads.join('/') || 'none'}, not ${op.keyPayload}`;
  }
  return undefined;
}

/** The members whose agents are outside the supported skew, and what the overlay says of them. */
export function judgeSkew(members: readonly SkewMember[], op: SkewOperator = THIS_OPERATOR): SkewVerdict {
  const unsupported = members
    .filter((m) => m.reported)
    .flatMap((m) => {
      const why = whyUnsupported(m.agent, op);
      return why === undefined ? [] : [{ node: m.node, why }];
    })
    .sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  if (unsupported.length === 0) return { unsupported };
  const named = listNames(unsupported.map((u) => `${u.node} (${u.why})`));
  return {
    unsupported,
    problem: {
      reason: 'AgentVersionSkew',
      message:
        `agents outside the supported version skew (one release either side of the operator's ${op.release}, ` +
        `reading key payload ${op.keyPayload}): ${named}; rotations are refused until they are upgraded`,
    },
    refuseRotation: `agents cannot take part in a rotation: ${named}`,
  };
}
