// Opening hybrid values on the node (lib/hybrid.ts): a value names the ML-KEM exchange it was sealed with; the
// exchange's ciphertext is in this node's own key Secret of the epoch. Decapsulating it and deriving the node
// key (X25519 with the operator's pinned key, and ML-KEM with this node's decapsulation key) is done once per
// exchange and cached here; the values themselves are cached per sealed value by KeyMaterial.
import type { KemEntry } from '../lib/contract/keysecret.js';
import {
  decapsulateWith,
  hybridKemId,
  hybridNodeKey,
  isHybridValue,
  openHybridValue,
  x25519Shared,
} from '../lib/hybrid.js';
import { SealError } from '../lib/seal.js';
import type { EnvelopeKeys } from './keystore.js';

/** A hybrid value names a key exchange that is not (yet) in this node's Secret: wait, it is not refused. */
export class KemMissing extends SealError {}

/** Node keys kept: a few exchanges per epoch (one more per operator restart), two epochs at a time. */
const MAX_NODE_KEYS = 64;

export class HybridOpener {
  /** node key by operator key | exchange id | ciphertext */
  private readonly nodeKeys = new Map<string, Uint8Array>();

  handles(sealed: string): boolean {
    return isHybridValue(sealed);
  }

  open(
    sealed: string,
    node: string,
    env: EnvelopeKeys,
    operatorKey: Uint8Array,
    context: string,
    kems: readonly KemEntry[],
  ): Uint8Array {
    if (!env.kem) throw new SealError('value is sealed post-quantum but this node has no ML-KEM key');
    const id = hybridKemId(sealed);
    const entry = kems.find((k) => k.id === id && k.node === node);
    if (!entry)
      throw new KemMissing(`waiting for the ML-KEM key exchange ${id ?? '?'} in this node's key Secret`);
    return openHybridValue(sealed, this.nodeKey(entry, env, operatorKey), context);
  }

  private nodeKey(entry: KemEntry, env: EnvelopeKeys, operatorKey: Uint8Array): Uint8Array {
    const cacheKey = `${Buffer.from(operatorKey).toString('base64')}|${entry.id}|${entry.ciphertext}`;
    const hit = this.nodeKeys.get(cacheKey);
    if (hit) return hit;
    const ciphertext = new Uint8Array(Buffer.from(entry.ciphertext, 'base64'));
    const kemSecret = decapsulateWith(env.kem!.privateKey, ciphertext);
    const x = x25519Shared(env.secretKey, operatorKey);
    const key = hybridNodeKey(x, kemSecret, {
      operatorPublicKey: operatorKey,
      nodePublicKey: env.publicKey,
      nodeKemPublicKey: env.kem!.publicKey,
      ciphertext,
    });
    x.fill(0);
    kemSecret.fill(0);
    if (this.nodeKeys.size >= MAX_NODE_KEYS) {
      const oldest = this.nodeKeys.keys().next().value!;
      this.nodeKeys.get(oldest)?.fill(0);
      this.nodeKeys.delete(oldest);
    }
    this.nodeKeys.set(cacheKey, key);
    return key;
  }
}
