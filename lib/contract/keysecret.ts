// Layout of the Secrets that carry sealed key material, shared by the operator (writer) and the agents
// (readers). One Secret per (overlay, node, key epoch) in the operator's namespace. A pair's PSK lives in the
// Secret of exactly one of its two nodes, the pair's owner, sealed once for each end: the node that joined
// later owns the pair, so a node joining an overlay of N nodes costs one Secret write (its own), not N.
//
// One Secret per epoch, not one per node holding every epoch: a rotation creates each node's Secret of the new
// epoch (one write per node) and removes the old epoch's material with one delete-collection request by label,
// instead of rewriting every node's Secret a second time without it. The Secret of epoch N holds only epoch
// N's pairs (and, in Operator custody, the private key serving epoch N).
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { KEY_PAYLOADS_READ } from './version.js';

export const KEY_SECRET_DATA_KEY = 'keys.json';
export const KEY_SECRET_TYPE = 'sealmesh.io/sealed-keys';
/**
 * On a key Secret: the digest of the plan inputs its data was planned from (operator/plan/keysecret.ts planDigests),
 * so the operator can tell an up-to-date Secret from its metadata alone, without reading the sealed data.
 */
export const PLAN_DIGEST_ANNOTATION = 'sealmesh.io/plan-digest';
/** On a key Secret in Operator custody: the node's WireGuard public key at the current epoch (public). */
export const PUBLIC_KEY_ANNOTATION = 'sealmesh.io/public-key';

const sealedValue = z.string().min(1).max(512);

export const sealedPairSchema = z.object({
  /** the two nodes, a < b */
  a: z.string(),
  b: z.string(),
  epoch: z.number().int().nonnegative(),
  /** fingerprint of the PSK (never the PSK) */
  fingerprint: z.string(),
  /** envelope-key fingerprints the PSK was sealed to, per node: a changed envelope key means re-seal */
  sealedTo: z.record(z.string(), z.string()),
  /** node → base64(nonce || box) (classical), or pq1.<kem id>.base64(nonce || box) (hybrid, lib/hybrid.ts) */
  sealed: z.record(z.string(), sealedValue),
});
export type SealedPair = z.infer<typeof sealedPairSchema>;

export const sealedPrivateKeySchema = z.object({
  epoch: z.number().int().nonnegative(),
  publicKey: z.string(),
  sealedTo: z.string(),
  sealed: sealedValue,
});
export type SealedPrivateKey = z.infer<typeof sealedPrivateKeySchema>;

/**
 * An ML-KEM-768 key exchange with one node (lib/hybrid.ts), recorded in that node's own Secret of the epoch:
 * values sealed hybrid to the node, in any Secret of the epoch, name it by `id`.
 */
export const kemEntrySchema = z.object({
  id: z.string().min(1).max(32),
  node: z.string(),
  /** the node's hybrid envelope fingerprint (X25519 and ML-KEM keys) the exchange was made with */
  sealedTo: z.string(),
  /** base64 ML-KEM-768 ciphertext (1,088 bytes) */
  ciphertext: z.string().min(1).max(2048),
});
export type KemEntry = z.infer<typeof kemEntrySchema>;

export const keySecretPayloadSchema = z.object({
  /**
   * 2: sealed values carry their context (lib/seal.ts contextTag); a version-1 Secret is not read. Hybrid
   * values (`pq1.…`, lib/hybrid.ts) and `kems` were added without a new version on purpose: an agent that
   * predates them ignores `kems` (unknown fields are dropped) and is only ever sealed to classically, so a
   * Secret holding both kinds stays readable by every agent during an upgrade.
   */
  version: z.literal(2),
  overlay: z.string(),
  node: z.string(),
  pairs: z.array(sealedPairSchema),
  /** Operator custody only: this node's WireGuard private keys, by epoch */
  privateKeys: z.array(sealedPrivateKeySchema).default([]),
  /** ML-KEM key exchanges with this node at this epoch (hybrid sealing); earlier ones stay while in use */
  kems: z.array(kemEntrySchema).default([]),
});
export type KeySecretPayload = z.infer<typeof keySecretPayloadSchema>;
/** A payload as written: fields with defaults may be left out. */
export type KeySecretPayloadInput = z.input<typeof keySecretPayloadSchema>;

/** Room kept after the stem for `.e<epoch>` (epochs are safe integers: at most 16 digits). */
const EPOCH_SUFFIX_ROOM = 18;

/**
 * The name stem of a node's key Secrets (NodeTunnel spec.secretRef.name); see keySecretEpochName. Secret names
 * are DNS subdomains of at most 253 characters; long overlay+node names are hashed.
 */
export function keySecretName(overlay: string, node: string): string {
  const name = `sealmesh.${overlay}.${node}`;
  if (name.length <= 253 - EPOCH_SUFFIX_ROOM) return name;
  const digest = createHash('sha256').update(`${overlay}/${node}`).digest('hex').slice(0, 16);
  return `sealmesh.${overlay.slice(0, 100)}.${digest}`;
}

/** The Secret holding a node's material of one key epoch, from the node's stem (keySecretName). */
export function keySecretEpochName(stem: string, epoch: number): string {
  if (!Number.isSafeInteger(epoch) || epoch < 0) throw new Error(`invalid key epoch ${epoch}`);
  return `${stem}.e${epoch}`;
}

/** The name of a node's key Secret of one epoch (keySecretEpochName of the node's keySecretName). */
export function keySecretNameAt(overlay: string, node: string, epoch: number): string {
  return keySecretEpochName(keySecretName(overlay, node), epoch);
}

export function pairKey(x: string, y: string): [string, string] {
  return x < y ? [x, y] : [y, x];
}

export interface Joined {
  name: string;
  /** when the node's NodeTunnel was created (RFC 3339 or epoch ms) */
  createdAt: string | number | Date | undefined;
}

/**
 * The owner of a pair is the node that joined later. Ties (nodes created in one pass) are decided by a hash of
 * the pair, so that no Secret ends up holding every pair of a large overlay (a 1 MiB object limit applies).
 */
export function pairOwner(x: Joined, y: Joined): string {
  const tx = x.createdAt === undefined ? 0 : new Date(x.createdAt).getTime();
  const ty = y.createdAt === undefined ? 0 : new Date(y.createdAt).getTime();
  if (tx !== ty) return tx > ty ? x.name : y.name;
  const [a, b] = pairKey(x.name, y.name);
  return (createHash('sha256').update(`${a}/${b}`).digest()[0]! & 1) === 0 ? a : b;
}

export function encodeKeySecretData(payload: KeySecretPayloadInput): Record<string, string> {
  return { [KEY_SECRET_DATA_KEY]: Buffer.from(JSON.stringify(payload)).toString('base64') };
}

export type Decoded = { ok: true; payload: KeySecretPayload } | { ok: false; error: string };

/** Decodes a Secret's data; a corrupted Secret is reported, never thrown. */
export function decodeKeySecretData(data: Record<string, string> | undefined): Decoded {
  const raw = data?.[KEY_SECRET_DATA_KEY];
  if (raw === undefined) return { ok: false, error: `missing data key ${KEY_SECRET_DATA_KEY}` };
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(raw, 'base64').toString('utf8'));
  } catch {
    return { ok: false, error: `${KEY_SECRET_DATA_KEY} is not valid JSON` };
  }
  const version = (json as { version?: unknown } | null)?.version;
  if (typeof version === 'number' && !KEY_PAYLOADS_READ.includes(version)) {
    return {
      ok: false,
      error: `key payload version ${version}; this build reads ${KEY_PAYLOADS_READ.join('/')} (version skew: see status.agent)`,
    };
  }
  const parsed = keySecretPayloadSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return {
      ok: false,
      error: `${KEY_SECRET_DATA_KEY}: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`,
    };
  }
  return { ok: true, payload: parsed.data };
}

/** The sealing context of a pair's PSK: bound to the overlay, the pair and the epoch. */
export function pskContext(overlay: string, a: string, b: string, epoch: number): string {
  return `psk|${overlay}|${a}|${b}|${epoch}`;
}

/** The sealing context of a node's WireGuard private key (Operator custody). */
export function privateKeyContext(overlay: string, node: string, epoch: number): string {
  return `wg|${overlay}|${node}|${epoch}`;
}
