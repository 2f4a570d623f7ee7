// The name of an agent's liveness Lease in the key namespace: the agent renews it (agent/liveness.ts), the
// operator reads it to decide which agents a rotation waits for.
import { createHash } from 'node:crypto';

const PREFIX = 'sealmesh-agent-';
const MAX_NAME = 253;

/** `sealmesh-agent-<node>`, or a hash of the node name when that would exceed a DNS subdomain's length. */
export function agentLeaseName(node: string): string {
  const name = `${PREFIX}${node}`;
  if (name.length <= MAX_NAME) return name;
  return `${PREFIX}${createHash('sha256').update(node).digest('hex').slice(0, 32)}`;
}
