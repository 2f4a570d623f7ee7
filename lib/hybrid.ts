// Hybrid sealing (issue #17): key material sealed to a node that publishes an ML-KEM-768 encapsulation key next
// to its X25519 envelope key is protected by a key derived, with HKDF-SHA256, from BOTH the X25519 shared
// secret (operator sealing key × node envelope key) and an ML-KEM-768 shared secret, so a recording adversary
// must break both X25519 and ML-KEM to open it. The ML-KEM decapsulation key never leaves the node; the
// operator's own X25519 key lives in the cluster, so against someone holding an etcd backup the ML-KEM half is
// what protects.
//
// One encapsulation per (node, epoch), not per value: the operator encapsulates once to the node's key, puts
// the 1,088-byte ciphertext in the node's own key Secret of the epoch (a "KEM entry", named by kemId), and
// derives from both shared secrets a node key (hybridNodeKey). Each value then gets a key of its own,
// HKDF-Expand(node key, "sealmesh/sealed/v3|" + context) (RFC 5869), so a value copied to another pair, epoch,
// overlay or kind does not open, and is sealed with XSalsa20-Poly1305 (nacl.secretbox, as nacl.box does). The
// wire form is `pq1.<kemId>.<base64(nonce || box)>`: a classical value (lib/seal.ts) is plain base64, which has
// no '.', so both kinds can sit side by side in one Secret during an upgrade.
import {
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  decapsulate,
  encapsulate,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
} from 'node:crypto';
import nacl from 'tweetnacl';
import { isSmallOrderPoint } from './keys.js';
import { SealError, type RandomBytes } from './seal.js';

export const KEM_ALGORITHM = 'ml-kem-768';
/** FIPS 203 sizes of ML-KEM-768. */
export const KEM_PUBLIC_KEY_LENGTH = 1184;
export const KEM_CIPHERTEXT_LENGTH = 1088;
export const KEM_SEED_LENGTH = 64;

const HYBRID_PREFIX = 'pq1.';
const NODE_KEY_SALT = 'sealmesh/hybrid/v1';
const VALUE_KEY_LABEL = 'sealmesh/sealed/v3|';

export interface KemKeyPair {
  /** raw encapsulation key (1,184 bytes) */
  publicKey: Uint8Array;
  privateKey: KeyObject;
  /** the 64-byte seed (d || z) the key pair is made from: what the agent keeps on disk */
  seed: Uint8Array;
}

const defaultRandom: RandomBytes = (n) => nacl.randomBytes(n);

export function newKemKeyPair(): KemKeyPair {
  const { privateKey } = generateKeyPairSync(KEM_ALGORITHM);
  return kemKeyPairFromSeed(new Uint8Array(privateKey.export({ format: 'raw-seed' })));
}

export function kemKeyPairFromSeed(seed: Uint8Array): KemKeyPair {
  if (seed.length !== KEM_SEED_LENGTH) {
    throw new SealError(`ML-KEM seed must be ${KEM_SEED_LENGTH} bytes, got ${seed.length}`);
  }
  const privateKey = createPrivateKey({
    key: Buffer.from(seed),
    format: 'raw-seed',
    asymmetricKeyType: KEM_ALGORITHM,
  });
  const publicKey = new Uint8Array(createPublicKey(privateKey).export({ format: 'raw-public' }));
  return { publicKey, privateKey, seed: new Uint8Array(seed) };
}

/** A raw ML-KEM-768 encapsulation key, checked (length, and that OpenSSL accepts it: FIPS 203 modulus check). */
export function kemPublicKey(raw: Uint8Array): KeyObject {
  if (raw.length !== KEM_PUBLIC_KEY_LENGTH) {
    throw new SealError(`ML-KEM public key must be ${KEM_PUBLIC_KEY_LENGTH} bytes, got ${raw.length}`);
  }
  try {
    return createPublicKey({ key: Buffer.from(raw), format: 'raw-public', asymmetricKeyType: KEM_ALGORITHM });
  } catch {
    throw new SealError('ML-KEM public key is not a valid ML-KEM-768 encapsulation key');
  }
}

/** Decodes a published (base64) ML-KEM key; undefined when it is absent or invalid. */
export function decodeKemPublicKey(
  encoded: string | undefined,
): { raw: Uint8Array; key: KeyObject } | undefined {
  if (!encoded) return undefined;
  try {
    const raw = new Uint8Array(Buffer.from(encoded, 'base64'));
    return { raw, key: kemPublicKey(raw) };
  } catch {
    return undefined;
  }
}

/**
 * The fingerprint values are sealed to (`sealedTo`): of the X25519 key alone for a classical node (as
 * lib/keys.ts fingerprint: 16 hex), of both keys for a hybrid one, so a node that starts to publish an ML-KEM
 * key has its material sealed again, hybrid.
 */
export function hybridFingerprint(x25519: Uint8Array, kem: Uint8Array): string {
  return createHash('sha256')
    .update('sealmesh/hybrid-envelope|')
    .update(x25519)
    .update(kem)
    .digest('hex')
    .slice(0, 16);
}

/** Names a KEM ciphertext: base64url of the first 12 bytes of its SHA-256. */
export function kemIdOf(ciphertext: Uint8Array): string {
  return createHash('sha256').update(ciphertext).digest().subarray(0, 12).toString('base64url');
}

export function encapsulateTo(publicKey: KeyObject): { ciphertext: Uint8Array; sharedKey: Uint8Array } {
  const { ciphertext, sharedKey } = encapsulate(publicKey);
  return { ciphertext: new Uint8Array(ciphertext), sharedKey: new Uint8Array(sharedKey) };
}

export function decapsulateWith(privateKey: KeyObject, ciphertext: Uint8Array): Uint8Array {
  if (ciphertext.length !== KEM_CIPHERTEXT_LENGTH) {
    throw new SealError(`ML-KEM ciphertext must be ${KEM_CIPHERTEXT_LENGTH} bytes, got ${ciphertext.length}`);
  }
  // ML-KEM rejects implicitly: a tampered ciphertext yields another (pseudo-random) shared secret, never an
  // error, and the values then fail to open.
  return new Uint8Array(decapsulate(privateKey, Buffer.from(ciphertext)));
}

/** The X25519 shared secret (raw point) of one side's secret key and the other's public key. */
export function x25519Shared(secretKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  if (publicKey.length !== 32 || isSmallOrderPoint(publicKey)) {
    throw new SealError('X25519 key is not a proper 32-byte point');
  }
  return nacl.scalarMult(secretKey, publicKey);
}

export interface NodeKeyBinding {
  /** the operator's X25519 sealing public key */
  operatorPublicKey: Uint8Array;
  /** the node's X25519 envelope public key */
  nodePublicKey: Uint8Array;
  /** the node's ML-KEM encapsulation key */
  nodeKemPublicKey: Uint8Array;
  /** the ML-KEM ciphertext */
  ciphertext: Uint8Array;
}

/**
 * The key of one (node, KEM entry): HKDF-SHA256 with IKM = X25519 shared secret || ML-KEM shared secret (as
 * the TLS hybrid key exchange concatenates them), and info binding both parties' public keys and the
 * ciphertext (as the X-Wing combiner does), so a node key is never the same for two exchanges.
 */
export function hybridNodeKey(
  x25519Secret: Uint8Array,
  kemSecret: Uint8Array,
  binding: NodeKeyBinding,
): Uint8Array {
  if (x25519Secret.length !== 32 || kemSecret.length !== 32) {
    throw new SealError('hybrid key needs two 32-byte shared secrets');
  }
  const ikm = Buffer.concat([x25519Secret, kemSecret]);
  const info = Buffer.concat([
    Buffer.from('node-key|'),
    binding.operatorPublicKey,
    binding.nodePublicKey,
    createHash('sha256').update(binding.nodeKemPublicKey).digest(),
    createHash('sha256').update(binding.ciphertext).digest(),
  ]);
  try {
    return new Uint8Array(hkdfSync('sha256', ikm, NODE_KEY_SALT, info, 32));
  } finally {
    ikm.fill(0);
  }
}

/** HKDF-Expand (RFC 5869) of 32 bytes: one HMAC-SHA256 of info || 0x01. */
export function hkdfExpand32(prk: Uint8Array, info: Uint8Array | string): Uint8Array {
  return new Uint8Array(createHmac('sha256', prk).update(info).update(Buffer.of(1)).digest());
}

/** The key of one sealed value: bound to the node key and to the value's context (e.g. pskContext). */
export function valueKey(nodeKey: Uint8Array, context: string): Uint8Array {
  return hkdfExpand32(nodeKey, `${VALUE_KEY_LABEL}${context}`);
}

export function isHybridValue(sealed: string): boolean {
  return sealed.startsWith(HYBRID_PREFIX);
}

/** The KEM entry a hybrid value was sealed with; undefined for a classical value. */
export function hybridKemId(sealed: string): string | undefined {
  if (!isHybridValue(sealed)) return undefined;
  const end = sealed.indexOf('.', HYBRID_PREFIX.length);
  return end < 0 ? undefined : sealed.slice(HYBRID_PREFIX.length, end);
}

export function sealHybridValue(
  plaintext: Uint8Array,
  nodeKey: Uint8Array,
  kemId: string,
  context: string,
  random: RandomBytes = defaultRandom,
): string {
  const key = valueKey(nodeKey, context);
  try {
    const nonce = random(nacl.secretbox.nonceLength);
    const boxed = nacl.secretbox(plaintext, nonce, key);
    const out = new Uint8Array(nonce.length + boxed.length);
    out.set(nonce, 0);
    out.set(boxed, nonce.length);
    return `${HYBRID_PREFIX}${kemId}.${Buffer.from(out).toString('base64')}`;
  } finally {
    key.fill(0);
  }
}

/** Opens a hybrid value for `context`; a value of any other context, node key or content is refused. */
export function openHybridValue(sealed: string, nodeKey: Uint8Array, context: string): Uint8Array {
  const kemId = hybridKemId(sealed);
  if (kemId === undefined) throw new SealError('not a hybrid sealed value');
  const raw = new Uint8Array(Buffer.from(sealed.slice(HYBRID_PREFIX.length + kemId.length + 1), 'base64'));
  if (raw.length < nacl.secretbox.nonceLength + nacl.secretbox.overheadLength) {
    throw new SealError('sealed value is too short');
  }
  const key = valueKey(nodeKey, context);
  try {
    const opened = nacl.secretbox.open(
      raw.subarray(nacl.secretbox.nonceLength),
      raw.subarray(0, nacl.secretbox.nonceLength),
      key,
    );
    if (!opened) {
      throw new SealError(
        'hybrid sealed value does not open: not sealed for this node, key exchange and context',
      );
    }
    return opened;
  } finally {
    key.fill(0);
  }
}
