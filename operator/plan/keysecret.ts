// What a node's key Secret of one epoch should hold: the PSKs at that epoch of the pairs this node owns, each
// sealed to both ends, and (Operator custody) the WireGuard private key serving that epoch. Pure apart from
// the injected randomness: an existing entry is kept as long as it was sealed to the envelope keys the two
// ends publish now, so an unchanged world plans an unchanged Secret and causes no write.
import { createHash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { decodePublicKey, fingerprint, generateKeyPair } from '../../lib/keys.js';
import {
  pairKey,
  pairOwner,
  type KeySecretPayload,
  type SealedPair,
  type SealedPrivateKey,
  privateKeyContext,
  pskContext,
} from '../../lib/contract/keysecret.js';
import { decodeKemPublicKey, hybridFingerprint, hybridKemId, sealHybridValue } from '../../lib/hybrid.js';
import { newPresharedKey, type RandomBytes, type Sealer } from '../../lib/seal.js';
import type { HybridEnvelope, KemBook, KemEntry } from './kembook.js';

export interface Member {
  name: string;
  createdAt: string | undefined;
  /** base64 X25519 envelope public key the node's agent published, once it has */
  envelopePublicKey?: string | undefined;
  /** base64 ML-KEM-768 encapsulation key the agent published next to it (hybrid sealing), once it has */
  envelopeKemPublicKey?: string | undefined;
}

export interface KeyPlanInput {
  overlay: string;
  node: string;
  /** the epoch of this Secret: the overlay's current epoch, or the one a rotation stages */
  epoch: number;
  /**
   * Operator custody, when this Secret has no usable private key yet: true when the epoch is staged by a
   * rotation of scope Keys (a new key is made for it); otherwise `carried`, the key serving the epoch before,
   * is copied in (a PSK-only rotation keeps the private keys), or a new key is made when there is none.
   */
  newPrivateKey?: boolean | undefined;
  carried?: SealedPrivateKey | undefined;
  /** the KEM entry `carried` was sealed with, when hybrid (it lives in the Secret of the epoch before) */
  carriedKem?: KemEntry | undefined;
  presharedKeys: 'PerPair' | 'Disabled';
  custody: 'Node' | 'Operator';
  members: readonly Member[];
  existing?: KeySecretPayload | undefined;
}

export interface KeyPlan {
  payload: KeySecretPayload;
  changed: boolean;
  /** Operator custody: the node's public key at this epoch */
  publicKey?: string | undefined;
  /** pairs whose PSK was generated in this plan, as "a/b@epoch" (for logs: names only) */
  newPairs: string[];
  /** the id of the node's current key exchange when the payload holds it (KemBook.recorded) */
  kemRecorded?: string | undefined;
}

/**
 * Decoded envelope keys by Member object: a pass plans every member's Secret against the same members array,
 * so without it each envelope key is decoded and fingerprinted once per member (N² SHA-256 at N nodes).
 */
const envelopes = new WeakMap<
  Member,
  { encoded: string; kem: string | undefined; value: HybridEnvelope | undefined }
>();

/**
 * Decoded ML-KEM keys by their base64 text: members are new objects every pass, and decoding 1,000 of them
 * (an OpenSSL key object each) took tens of ms per pass. Bounded: a key no one publishes any more goes first.
 */
const kemKeys = new Map<string, ReturnType<typeof decodeKemPublicKey>>();
const KEM_KEYS_KEPT = 16_384;

function kemKeyOf(encoded: string | undefined): ReturnType<typeof decodeKemPublicKey> {
  if (!encoded) return undefined;
  if (kemKeys.has(encoded)) {
    const hit = kemKeys.get(encoded);
    kemKeys.delete(encoded); // most recently used last
    kemKeys.set(encoded, hit);
    return hit;
  }
  const decoded = decodeKemPublicKey(encoded);
  if (kemKeys.size >= KEM_KEYS_KEPT) kemKeys.delete(kemKeys.keys().next().value!);
  kemKeys.set(encoded, decoded);
  return decoded;
}

/**
 * A member's envelope key, decoded, with its fingerprint (cached per Member object); undefined if invalid.
 * With a valid ML-KEM key too (`kem`) the fingerprint is the hybrid one: values sealed to the node before it
 * published that key no longer match it and are sealed again, hybrid. An invalid ML-KEM key is ignored (the
 * node is sealed to classically, and the overlay says it is not post-quantum).
 */
export function envelopeOf(m: Member | undefined): HybridEnvelope | undefined {
  if (!m?.envelopePublicKey) return undefined;
  const hit = envelopes.get(m);
  if (hit?.encoded === m.envelopePublicKey && hit.kem === m.envelopeKemPublicKey) return hit.value;
  let value: HybridEnvelope | undefined;
  try {
    const key = decodePublicKey(m.envelopePublicKey, `envelope key of ${m.name}`);
    const kem = kemKeyOf(m.envelopeKemPublicKey);
    value = kem ? { key, fp: hybridFingerprint(key, kem.raw), kem } : { key, fp: fingerprint(key) };
  } catch {
    value = undefined;
  }
  envelopes.set(m, { encoded: m.envelopePublicKey, kem: m.envelopeKemPublicKey, value });
  return value;
}

/** How a plan seals: the Sealer (classical), and the KemBook for nodes that publish an ML-KEM key. */
export interface Sealing {
  sealer: Sealer;
  /** absent: everything is sealed classically (as before issue #17) */
  kems?: KemBook | undefined;
}

/**
 * Seals `plaintext` to `node` at `epoch`: hybrid when the node publishes an ML-KEM key (and a KemBook is
 * given), classical otherwise. Returns the work it cost (PLAN_DERIVE_WORK for a new key exchange).
 */
function sealTo(
  s: Sealing,
  overlay: string,
  node: string,
  epoch: number,
  env: HybridEnvelope,
  plaintext: Uint8Array,
  context: string,
): { sealed: string; work: number } {
  if (env.kem && s.kems) {
    const x = s.kems.exchange(overlay, node, epoch, env);
    return {
      sealed: sealHybridValue(plaintext, x.nodeKey, x.entry.id, context),
      work: x.fresh ? PLAN_DERIVE_WORK : 0,
    };
  }
  const work = s.sealer.prepare(env.key) ? PLAN_DERIVE_WORK : 0;
  return { sealed: s.sealer.seal(plaintext, env.key, context), work };
}

/**
 * The Secret of one epoch. Material of other epochs has no place in it: a Secret planned from an existing one
 * drops it. In Operator custody a private key keeps the epoch it was made for: a PSK-only rotation carries it
 * into the next epoch's Secret, a rotation of scope Keys makes a new one.
 */
export function planKeySecret(input: KeyPlanInput, sealer: Sealer | Sealing, random?: RandomBytes): KeyPlan {
  const steps = planKeySecretSteps(input, sealer, random);
  for (;;) {
    const next = steps.next();
    if (next.done) return next.value;
  }
}

/**
 * Work between two yields of planKeySecretSteps, in new pairs sealed (~0.1 ms each: two nacl.box.after);
 * a recipient whose shared key the Sealer has not derived yet counts PLAN_DERIVE_WORK more (~1 ms). So a
 * step is ~6 ms, and a caller can give the event loop a turn in between: a Secret of 1,000 new pairs takes
 * ~30-90 ms to seal in one go, and ~1 s when none of its peers' shared keys is cached.
 */
export const PLAN_STEP_WORK = 64;
export const PLAN_DERIVE_WORK = 10;

/** planKeySecret as a generator: it yields after every PLAN_STEP_WORK of work and returns the plan. */
export function* planKeySecretSteps(
  input: KeyPlanInput,
  sealing: Sealer | Sealing,
  random?: RandomBytes,
): Generator<void, KeyPlan, undefined> {
  const s: Sealing = 'sealer' in sealing ? sealing : { sealer: sealing };
  const me = input.members.find((m) => m.name === input.node);
  const mine = envelopeOf(me);
  const epoch = input.epoch;
  const existingPairs = new Map((input.existing?.pairs ?? []).map((p) => [`${p.a}/${p.b}@${p.epoch}`, p]));
  const pairs: SealedPair[] = [];
  const newPairs: string[] = [];
  let work = 0;
  if (me && mine && input.presharedKeys === 'PerPair') {
    for (const peer of [...input.members].sort((x, y) => (x.name < y.name ? -1 : 1))) {
      if (peer.name === me.name || pairOwner(me, peer) !== me.name) continue;
      const theirs = envelopeOf(peer);
      if (!theirs) continue;
      const [a, b] = pairKey(me.name, peer.name);
      const fps = { [me.name]: mine.fp, [peer.name]: theirs.fp };
      const old = existingPairs.get(`${a}/${b}@${epoch}`);
      if (old && old.sealedTo[a] === fps[a] && old.sealedTo[b] === fps[b]) {
        pairs.push(old);
        continue;
      }
      const psk = newPresharedKey(random);
      const context = pskContext(input.overlay, a, b, epoch);
      const forMe = sealTo(s, input.overlay, me.name, epoch, mine, psk, context);
      const forPeer = sealTo(s, input.overlay, peer.name, epoch, theirs, psk, context);
      work += 1 + forMe.work + forPeer.work;
      pairs.push({
        a,
        b,
        epoch,
        fingerprint: fingerprint(psk),
        sealedTo: { [a]: fps[a]!, [b]: fps[b]! },
        sealed: { [me.name]: forMe.sealed, [peer.name]: forPeer.sealed },
      });
      psk.fill(0);
      newPairs.push(`${a}/${b}@${epoch}`);
      if (work >= PLAN_STEP_WORK) {
        work = 0;
        yield;
      }
    }
  }
  const privateKeys: SealedPrivateKey[] = [];
  let publicKey: string | undefined;
  if (input.custody === 'Operator' && mine) {
    const usable = (k: SealedPrivateKey | undefined): k is SealedPrivateKey =>
      k !== undefined && k.sealedTo === mine.fp && k.epoch <= epoch;
    // The newest usable entry already here; else a new one for a rotation of scope Keys; else the carried one.
    const kept = (input.existing?.privateKeys ?? []).filter(usable).sort((x, y) => y.epoch - x.epoch)[0];
    let entry = kept ?? (!input.newPrivateKey && usable(input.carried) ? input.carried : undefined);
    if (!entry) {
      const kp = generateKeyPair(random);
      const context = privateKeyContext(input.overlay, input.node, epoch);
      entry = {
        epoch,
        publicKey: kp.publicKey,
        sealedTo: mine.fp,
        sealed: sealTo(s, input.overlay, input.node, epoch, mine, kp.privateKey, context).sealed,
      };
      kp.privateKey.fill(0);
    }
    privateKeys.push(entry);
    publicKey = entry.publicKey;
  }
  const { kems, kemRecorded } = kemEntries(input, s, mine, privateKeys[0]);
  const payload: KeySecretPayload = {
    version: 2,
    overlay: input.overlay,
    node: input.node,
    pairs,
    privateKeys,
    kems,
  };
  return {
    payload,
    changed: !isDeepStrictEqual(payload, input.existing),
    publicKey,
    newPairs,
    kemRecorded,
  };
}

/**
 * The KEM entries of a node's own Secret: those already there for its current envelope (values in other
 * Secrets may name them), and the exchange the operator seals to it with now. Within one operator process an
 * unchanged Secret stays unchanged; after a restart a Secret planned again gets a new exchange next to the
 * earlier ones.
 */
function kemEntries(
  input: KeyPlanInput,
  s: Sealing,
  mine: HybridEnvelope | undefined,
  privateKey: SealedPrivateKey | undefined,
): { kems: KemEntry[]; kemRecorded?: string } {
  if (!mine?.kem) return { kems: [] };
  const kems = (input.existing?.kems ?? []).filter((k) => k.node === input.node && k.sealedTo === mine.fp);
  // A private key carried from the epoch before names an exchange recorded there: it comes along.
  const carried = input.carriedKem;
  if (
    carried &&
    privateKey === input.carried &&
    carried.node === input.node &&
    carried.sealedTo === mine.fp &&
    hybridKemId(privateKey?.sealed ?? '') === carried.id &&
    !kems.some((k) => k.id === carried.id)
  ) {
    kems.push(carried);
  }
  // The node's exchange of this epoch, made here if no plan made it yet: values sealed to the node in other
  // Secrets then use the one its own Secret records (an exchange another plan makes first is added here).
  const current =
    s.kems && (input.presharedKeys === 'PerPair' || input.custody === 'Operator')
      ? s.kems.exchange(input.overlay, input.node, input.epoch, mine).entry
      : undefined;
  if (!current) return { kems };
  if (!kems.some((k) => k.id === current.id)) kems.push(current);
  return { kems, kemRecorded: current.id };
}

/** The private key an Operator-custody Secret holds for its epoch (the one to carry into the next epoch). */
export function servingPrivateKey(payload: KeySecretPayload | undefined): SealedPrivateKey | undefined {
  return [...(payload?.privateKeys ?? [])].sort((x, y) => y.epoch - x.epoch)[0];
}

/**
 * Bump when planKeySecret starts to depend on something else, or writes another payload version, so every
 * stored digest goes stale. 3: context-bound sealed values (payload version 2): an upgraded operator rewrites
 * every Secret of the old format instead of trusting its digest.
 */
const PLAN_DIGEST_VERSION = 3;

/**
 * For each member, a digest of everything planKeySecret reads for that member's Secret besides the Secret
 * itself: if it is unchanged and the Secret is the plan made from it, planning again changes nothing, and
 * the Secret's data need not even be read.
 *
 * A node's pairs are those it owns: peers that joined earlier (pairOwner), and some peers that joined in the
 * same instant. So the digest covers, besides the node's own fields, every member (name, join time, envelope
 * key) that joined no later than the node, hashed in join order with one running hash: O(N) for a whole
 * overlay. A node joining later changes no earlier node's digest, which keeps a join at one Secret write and
 * one Secret read. The tie group is covered whole, which is conservative: at worst an extra read.
 *
 * `newPrivateKey` and `carried` are left out on purpose: they matter only while the Secret holds no usable
 * private key, that is when it is first planned (a changed envelope key is in the digest). So a staged Secret
 * keeps its digest when its epoch becomes the current one, and completing a rotation reads no Secret.
 */
export function planDigests(
  input: Omit<KeyPlanInput, 'node' | 'existing' | 'newPrivateKey' | 'carried'>,
): Map<string, string> {
  const common = JSON.stringify({
    v: PLAN_DIGEST_VERSION,
    overlay: input.overlay,
    epoch: input.epoch,
    presharedKeys: input.presharedKeys,
    custody: input.custody,
  });
  const joined = (m: Member): number => {
    const t = m.createdAt === undefined ? 0 : new Date(m.createdAt).getTime();
    // An unparsable time owns nothing (pairOwner compares NaN as neither earlier nor later): put it last,
    // where its own digest covers every member and it is in no one else's.
    return Number.isNaN(t) ? Infinity : t;
  };
  const sorted = input.members
    .map((m) => ({ m, t: joined(m) }))
    .sort((x, y) => x.t - y.t || (x.m.name < y.m.name ? -1 : x.m.name > y.m.name ? 1 : 0));
  const out = new Map<string, string>();
  const running = createHash('sha256');
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j < sorted.length && sorted[j]!.t === sorted[i]!.t) {
      const { m, t } = sorted[j]!;
      running.update(`${JSON.stringify(digestFields(m, t))}\n`);
      j++;
    }
    // Without per-pair keys, a node's Secret holds its own material only: no peer matters.
    const peers = input.presharedKeys === 'PerPair' ? running.copy().digest('base64') : '';
    for (let k = i; k < j; k++) {
      const { m } = sorted[k]!;
      out.set(
        m.name,
        createHash('sha256')
          .update(`${common}\n${JSON.stringify(digestFields(m, m.createdAt ?? null))}\n${peers}`)
          .digest('base64'),
      );
    }
    i = j;
  }
  return out;
}

/**
 * What a member contributes to plan digests: its name, join time and envelope key, and its hybrid envelope
 * fingerprint only when it publishes an ML-KEM key, so that the digests of a classical overlay are those an
 * operator before issue #17 stored (an upgrade re-plans nothing until agents publish ML-KEM keys).
 */
function digestFields(m: Member, joined: number | string | null): unknown[] {
  const fields: unknown[] = [m.name, joined, m.envelopePublicKey ?? ''];
  if (m.envelopeKemPublicKey) fields.push(envelopeOf(m)?.fp ?? 'invalid');
  return fields;
}
