// WireGuard key helpers. Keys are 32 bytes: private keys are X25519 scalars (WireGuard clamps them itself),
// public keys are X25519 points, pre-shared keys are plain random bytes. They travel as base64, the form `wg`
// reads and prints. Generation is in-process (tweetnacl) so no key ever sits on a command line, and only
// fingerprints of keys are meant for logs, events and status.
import { createHash } from 'node:crypto';
import nacl from 'tweetnacl';

export const WG_KEY_LENGTH = 32;

export class KeyError extends Error {}

/** Throws unless `key` is 32 bytes and not all zero (the kernel treats an all-zero key as "no key"). */
export function validateKey(key: Uint8Array, what = 'key'): Uint8Array {
  if (key.length !== WG_KEY_LENGTH) {
    throw new KeyError(`${what} must be ${WG_KEY_LENGTH} bytes, got ${key.length}`);
  }
  if (key.every((b) => b === 0)) {
    throw new KeyError(`${what} is all zero`);
  }
  return key;
}

const base64Key = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/** Decodes a base64 WireGuard key (strictly: 44 characters, canonical padding) and validates it. */
export function decodeKey(encoded: string, what = 'key'): Uint8Array {
  // The message never quotes the value: it may be a secret.
  if (!base64Key.test(encoded)) {
    throw new KeyError(`${what} is not a base64-encoded ${WG_KEY_LENGTH}-byte key`);
  }
  return validateKey(new Uint8Array(Buffer.from(encoded, 'base64')), what);
}

/**
 * The X25519 points of small order (libsodium's blocklist: 0, 1, the two points of order 8, and p-1, p,
 * p+1 as non-canonical encodings), compared without the top bit, which X25519 ignores. With any of them as
 * a peer's public key the shared secret is all zero whatever the private key: a value sealed to it can be
 * opened by anyone, and a WireGuard peer with it authenticates nothing.
 */
const SMALL_ORDER_POINTS = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
  '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
].map((hex) => Buffer.from(hex, 'hex'));

/** True when `point` (32 bytes) is an X25519 point of small order, in any of its encodings. */
export function isSmallOrderPoint(point: Uint8Array): boolean {
  if (point.length !== WG_KEY_LENGTH) return false;
  return SMALL_ORDER_POINTS.some((p) => {
    for (let i = 0; i < 31; i++) if (p[i] !== point[i]) return false;
    return p[31] === (point[31]! & 0x7f);
  });
}

/** Throws unless `key` is a usable X25519 public key: 32 bytes, not of small order. */
export function validatePublicKey(key: Uint8Array, what = 'public key'): Uint8Array {
  validateKey(key, what);
  if (isSmallOrderPoint(key)) {
    throw new KeyError(`${what} is a small-order point (any shared secret with it is zero)`);
  }
  return key;
}

/** decodeKey for public keys: also refuses points of small order. */
export function decodePublicKey(encoded: string, what = 'public key'): Uint8Array {
  return validatePublicKey(decodeKey(encoded, what), what);
}

export function encodeKey(key: Uint8Array, what = 'key'): string {
  return Buffer.from(validateKey(key, what)).toString('base64');
}

/** True when `encoded` is a well-formed base64 WireGuard key. */
export function isKey(encoded: string): boolean {
  try {
    decodeKey(encoded);
    return true;
  } catch {
    return false;
  }
}

export interface WgKeyPair {
  privateKey: Uint8Array;
  /** base64, as `wg` prints it */
  publicKey: string;
}

export type RandomBytes = (n: number) => Uint8Array;
const defaultRandom: RandomBytes = (n) => nacl.randomBytes(n);

/** A new WireGuard key pair. X25519 clamps the scalar, so the public key equals what `wg pubkey` prints. */
export function generateKeyPair(random: RandomBytes = defaultRandom): WgKeyPair {
  const privateKey = validateKey(random(WG_KEY_LENGTH), 'generated private key');
  return { privateKey, publicKey: publicKeyOf(privateKey) };
}

export function publicKeyOf(privateKey: Uint8Array): string {
  return encodeKey(nacl.scalarMult.base(validateKey(privateKey, 'private key')), 'public key');
}

export function generatePresharedKey(random: RandomBytes = defaultRandom): Uint8Array {
  return validateKey(random(WG_KEY_LENGTH), 'generated pre-shared key');
}

/**
 * A short, stable identifier of a key that is safe to log: the first 8 bytes of SHA-256 over the raw key
 * bytes, as hex. A base64 string is decoded first, so both forms of one key have the same fingerprint.
 */
export function fingerprint(key: Uint8Array | string): string {
  const raw = typeof key === 'string' ? decodeKey(key) : validateKey(key);
  return createHash('sha256').update(raw).digest('hex').slice(0, 16);
}
