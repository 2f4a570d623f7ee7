// Whether a key Secret holds only what the operator sealed (issue #14 item 3): a sealed value copied from
// another pair, epoch, overlay or node, or sealed by anyone but the operator, is refused by the agent; the
// operator must not keep it either (its plan keeps every entry still sealed to the current envelope keys).
// The operator can open what it sealed (the box's shared key is symmetric), so it checks each entry in the
// context it belongs to. Pure apart from the Sealer; names only in what it returns, never key material.
import { fingerprint, publicKeyOf } from '../../lib/keys.js';
import {
  pairKey,
  privateKeyContext,
  pskContext,
  type KeySecretPayload,
} from '../../lib/contract/keysecret.js';
import { hybridKemId, openHybridValue } from '../../lib/hybrid.js';
import type { Sealer } from '../../lib/seal.js';
import type { KemBook } from './kembook.js';
import { envelopeOf, type Member } from './keysecret.js';

export interface VerifyInput {
  overlay: string;
  /** the node the Secret belongs to */
  node: string;
  /** the epoch of the Secret (its name and label) */
  epoch: number;
  members: readonly Member[];
}

/** One entry that is not what the operator sealed, in words naming the pair or node (never a key). */
export interface Forged {
  /** "a/b@epoch" for a pair, "private-key@epoch" for Operator custody */
  entry: string;
  problem: string;
}

/**
 * Every entry of `payload` that does not open, in its own context, with the operator's sealing key, or opens
 * to a value other than the one its fingerprint names. Entries sealed to an envelope key the node no longer
 * publishes are skipped: they are stale, not forged, and the plan re-seals them.
 */
export function forgedEntries(
  payload: KeySecretPayload,
  input: VerifyInput,
  classical: Pick<Sealer, 'open'>,
  kems?: Pick<KemBook, 'nodeKey'>,
): Forged[] {
  const out: Forged[] = [];
  const sealer = opener(input.overlay, classical, kems);
  const byName = new Map(input.members.map((m) => [m.name, m]));
  if (payload.overlay !== input.overlay || payload.node !== input.node) {
    out.push({
      entry: 'payload',
      problem: `holds ${payload.overlay}/${payload.node}, not ${input.overlay}/${input.node}`,
    });
  }
  for (const pair of payload.pairs) {
    const id = `${pair.a}/${pair.b}@${pair.epoch}`;
    const [a, b] = pairKey(pair.a, pair.b);
    if (a !== pair.a || b !== pair.b || pair.epoch !== input.epoch || ![a, b].includes(input.node)) {
      out.push({ entry: id, problem: `does not belong in ${input.node}'s Secret of epoch ${input.epoch}` });
      continue;
    }
    for (const end of [a, b]) {
      const env = envelopeOf(byName.get(end));
      if (!env || env.fp !== pair.sealedTo[end]) continue; // stale: re-sealed by the plan
      const sealed = pair.sealed[end];
      const problem =
        sealed === undefined
          ? `has no value sealed to ${end}`
          : opensTo(
              sealer,
              sealed,
              end,
              env.key,
              pskContext(input.overlay, a, b, pair.epoch),
              pair.fingerprint,
            );
      if (problem) out.push({ entry: id, problem: `value for ${end} ${problem}` });
    }
  }
  const mine = envelopeOf(byName.get(input.node));
  for (const k of payload.privateKeys) {
    if (!mine || k.sealedTo !== mine.fp) continue;
    const id = `private-key@${k.epoch}`;
    let problem: string | undefined;
    try {
      const key = sealer.open(
        k.sealed,
        input.node,
        mine.key,
        privateKeyContext(input.overlay, input.node, k.epoch),
      );
      if (key === 'unknown') continue;
      try {
        if (publicKeyOf(key) !== k.publicKey)
          problem = 'opens to a key whose public half is not the one recorded';
      } finally {
        key.fill(0);
      }
    } catch {
      problem = 'does not open in its context with the operator sealing key';
    }
    if (problem) out.push({ entry: id, problem });
  }
  return out;
}

interface Opener {
  /** the value, or 'unknown' for a hybrid value sealed with a key exchange this process does not hold */
  open(sealed: string, node: string, recipient: Uint8Array, context: string): Uint8Array | 'unknown';
}

/**
 * Opens classical values with the Sealer, hybrid ones with the node key of their exchange. The operator keeps
 * node keys in memory only (plan/kembook.ts), so after a restart it cannot check hybrid values sealed before:
 * those are skipped here, not refused (the agent still refuses one that does not open in its context).
 */
function opener(overlay: string, classical: Pick<Sealer, 'open'>, kems?: Pick<KemBook, 'nodeKey'>): Opener {
  return {
    open(sealed, node, recipient, context) {
      const kemId = hybridKemId(sealed);
      if (kemId === undefined) return classical.open(sealed, recipient, context);
      const nodeKey = kems?.nodeKey(overlay, node, kemId);
      return nodeKey ? openHybridValue(sealed, nodeKey, context) : 'unknown';
    },
  };
}

function opensTo(
  sealer: Opener,
  sealed: string,
  node: string,
  recipient: Uint8Array,
  context: string,
  expected: string,
): string | undefined {
  let value: Uint8Array | 'unknown';
  try {
    value = sealer.open(sealed, node, recipient, context);
  } catch {
    return 'does not open in its context with the operator sealing key';
  }
  if (value === 'unknown') return undefined;
  try {
    if (value.length !== 32) return 'opens to something that is not a key';
    return fingerprint(value) === expected ? undefined : 'opens to a key other than its fingerprint names';
  } finally {
    value.fill(0);
  }
}

/** Keeps from `payload` the entries forgedEntries did not name (the plan re-seals what is left out). */
export function withoutForged(payload: KeySecretPayload, forged: readonly Forged[]): KeySecretPayload {
  const bad = new Set(forged.map((f) => f.entry));
  return {
    ...payload,
    pairs: payload.pairs.filter((p) => !bad.has(`${p.a}/${p.b}@${p.epoch}`)),
    privateKeys: payload.privateKeys.filter((k) => !bad.has(`private-key@${k.epoch}`)),
  };
}
