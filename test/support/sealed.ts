// Opening sealed values in a test, as the node they were sealed to opens them (agent/keymaterial.ts), with the
// keys in that node's state dir: classical values with its X25519 envelope key, hybrid ones (issue #17) with
// that and its ML-KEM seed, from the KEM entries of the Secrets at hand. Keys opened here are for leak checks
// and fingerprint comparisons; never print them.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { KemEntry } from '../../lib/contract/keysecret.js';
import {
  decapsulateWith,
  hybridKemId,
  hybridNodeKey,
  isHybridValue,
  kemKeyPairFromSeed,
  openHybridValue,
  x25519Shared,
  type KemKeyPair,
} from '../../lib/hybrid.js';
import { boxKeyPairFromSecret, unseal, type BoxKeyPair } from '../../lib/seal.js';

export interface NodeEnvelope {
  box: BoxKeyPair;
  kem?: KemKeyPair;
  /** the files' base64 text (for leak searches) */
  texts: string[];
}

/** A node's envelope keys from its state dir; undefined before its agent made them. */
export function nodeEnvelope(stateDir: string): NodeEnvelope | undefined {
  const read = (f: string) => {
    const path = resolve(stateDir, f);
    return existsSync(path) ? readFileSync(path, 'utf8').trim() : undefined;
  };
  const box = read('envelope.key');
  if (!box) return undefined;
  const kem = read('envelope-mlkem.key');
  return {
    box: boxKeyPairFromSecret(new Uint8Array(Buffer.from(box, 'base64'))),
    ...(kem ? { kem: kemKeyPairFromSeed(new Uint8Array(Buffer.from(kem, 'base64'))) } : {}),
    texts: [box, ...(kem ? [kem] : [])],
  };
}

/** Opens a value sealed to `node` in `context`; `kems`: the KEM entries of the Secrets that may hold its exchange. */
export function openSealed(
  node: string,
  env: NodeEnvelope,
  sealed: string,
  operatorKey: Uint8Array,
  context: string,
  kems: readonly KemEntry[],
): Uint8Array {
  if (!isHybridValue(sealed)) return unseal(sealed, operatorKey, env.box, context);
  const entry = kems.find((k) => k.id === hybridKemId(sealed) && k.node === node);
  if (!entry) throw new Error(`no ML-KEM exchange ${hybridKemId(sealed)} for ${node} in the Secrets`);
  if (!env.kem) throw new Error(`${node} has no ML-KEM key but a value is sealed hybrid to it`);
  const ciphertext = new Uint8Array(Buffer.from(entry.ciphertext, 'base64'));
  const nodeKey = hybridNodeKey(
    x25519Shared(env.box.secretKey, operatorKey),
    decapsulateWith(env.kem.privateKey, ciphertext),
    {
      operatorPublicKey: operatorKey,
      nodePublicKey: env.box.publicKey,
      nodeKemPublicKey: env.kem.publicKey,
      ciphertext,
    },
  );
  return openHybridValue(sealed, nodeKey, context);
}
