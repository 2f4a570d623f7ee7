// Whether the overlay's pre-shared keys are sealed post-quantum (issue #17), as a pure function of the members
// (STYLE 6): a pair's PSK is sealed hybrid (X25519 + ML-KEM-768, lib/hybrid.ts) when both of its nodes publish
// a valid ML-KEM key, and with X25519 only otherwise. The plan follows the members in the same pass
// (KeySecrets.sync runs before the status is written), so this is what the Secrets hold once that pass wrote.
// The condition's messages carry no counts (the metric does): a joining node publishing its keys must not
// cause a status write of its own (the operator bench's join target).
import type { ConditionInput } from '../../lib/runtime/conditions.js';
import { envelopeOf, type Member } from './keysecret.js';

export interface PostQuantumFacts {
  presharedKeys: 'PerPair' | 'Disabled';
  /** members with an envelope key (something can be sealed to them) */
  nodes: number;
  /** of those, the ones that publish no (valid) ML-KEM key, by name */
  classical: string[];
  /** pairs between members with an envelope key */
  pairs: number;
  /** pairs whose two nodes both publish an ML-KEM key: their PSK is sealed hybrid */
  postQuantumPairs: number;
}

export function postQuantumFacts(
  members: readonly Member[],
  presharedKeys: 'PerPair' | 'Disabled',
): PostQuantumFacts {
  let nodes = 0;
  let hybrid = 0;
  const classical: string[] = [];
  for (const m of members) {
    const env = envelopeOf(m);
    if (!env) continue;
    nodes++;
    if (env.kem) hybrid++;
    else classical.push(m.name);
  }
  classical.sort();
  const pairsOf = (n: number) => (n * (n - 1)) / 2;
  return { presharedKeys, nodes, classical, pairs: pairsOf(nodes), postQuantumPairs: pairsOf(hybrid) };
}

const LISTED = 10;

export function postQuantumCondition(f: PostQuantumFacts, generation: number | undefined): ConditionInput {
  const base = { type: 'PostQuantum', observedGeneration: generation } as const;
  if (f.presharedKeys === 'Disabled') {
    return {
      ...base,
      status: 'False',
      reason: 'PresharedKeysDisabled',
      message:
        'spec.keys.presharedKeys is Disabled: the tunnels rest on the classical WireGuard handshake alone',
    };
  }
  if (f.classical.length > 0) {
    const names = f.classical.slice(0, LISTED).join(', ');
    const more = f.classical.length > LISTED ? ` and ${f.classical.length - LISTED} more` : '';
    return {
      ...base,
      status: 'False',
      reason: 'ClassicalNodes',
      message:
        `${f.classical.length} node(s) publish no ML-KEM key (${names}${more}): their pairs' pre-shared keys ` +
        'are sealed with X25519 only',
    };
  }
  return {
    ...base,
    status: 'True',
    reason: 'HybridSealed',
    message:
      "every pair's pre-shared key is sealed with X25519 and ML-KEM-768; the WireGuard handshake itself " +
      'stays classical',
  };
}
