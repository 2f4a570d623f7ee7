// Sealing of key material with nacl.box (X25519 + XSalsa20-Poly1305). The operator seals every PSK (and,
// in Operator custody, every private key) to the envelope key of the node that will use it; the agent opens
// it with its envelope private key and the operator's published public key. box is authenticated, so a
// value sealed by anyone but the operator fails to open: that is the "sealed by the operator" check.
import { createHash } from 'node:crypto';
import nacl from 'tweetnacl';
import { generatePresharedKey, isSmallOrderPoint, type RandomBytes } from './keys.js';

export interface BoxKeyPair {
  publicKey: Uint8Array;
  secretKey: Uint8Array;
}

export type { RandomBytes };

const defaultRandom: RandomBytes = (n) => nacl.randomBytes(n);

export class SealError extends Error {}

export function newBoxKeyPair(random: RandomBytes = defaultRandom): BoxKeyPair {
  return nacl.box.keyPair.fromSecretKey(random(nacl.box.secretKeyLength));
}

export function boxKeyPairFromSecret(secretKey: Uint8Array): BoxKeyPair {
  if (secretKey.length !== nacl.box.secretKeyLength) {
    throw new SealError(
      `envelope secret key must be ${nacl.box.secretKeyLength} bytes, got ${secretKey.length}`,
    );
  }
  return nacl.box.keyPair.fromSecretKey(secretKey);
}

/** 32 random bytes: a WireGuard pre-shared key (lib/keys.ts generates and validates it). */
export function newPresharedKey(random: RandomBytes = defaultRandom): Uint8Array {
  try {
    return generatePresharedKey(random);
  } catch {
    throw new SealError('random source returned an unusable key');
  }
}

/** The wire form of a sealed value: base64(nonce || box). */
function frame(nonce: Uint8Array, boxed: Uint8Array): string {
  const out = new Uint8Array(nonce.length + boxed.length);
  out.set(nonce, 0);
  out.set(boxed, nonce.length);
  return Buffer.from(out).toString('base64');
}

function unframe(sealed: string): { nonce: Uint8Array; boxed: Uint8Array } {
  const raw = new Uint8Array(Buffer.from(sealed, 'base64'));
  if (raw.length < nacl.box.nonceLength + nacl.box.overheadLength) {
    throw new SealError('sealed value is too short');
  }
  return { nonce: raw.subarray(0, nacl.box.nonceLength), boxed: raw.subarray(nacl.box.nonceLength) };
}

/**
 * The other side's envelope key must be a proper point: with one of small order the X25519 shared secret is
 * zero, so a box "sealed" to it is open to anyone who knows the key (it is public).
 */
function checkPeerKey(publicKey: Uint8Array, role: 'sender' | 'recipient'): void {
  if (publicKey.length !== nacl.box.publicKeyLength) {
    throw new SealError(`${role} envelope key must be ${nacl.box.publicKeyLength} bytes`);
  }
  if (isSmallOrderPoint(publicKey)) {
    throw new SealError(`${role} envelope key is a small-order point (the shared secret would be zero)`);
  }
}

/** Length of the context tag sealed in front of every value. */
const CONTEXT_TAG_LENGTH = 16;

/**
 * What a sealed value is for (issue #14 item 3): the tag of its context (e.g. "psk|overlay|a|b|epoch") goes
 * inside the box with the value, so a value copied to another pair, epoch, overlay or kind opens, but is
 * refused. The box already binds sender and recipient.
 */
export function contextTag(context: string): Uint8Array {
  return new Uint8Array(createHash('sha256').update(`sealmesh/sealed/v2|${context}`).digest()).subarray(
    0,
    CONTEXT_TAG_LENGTH,
  );
}

function withTag(plaintext: Uint8Array, context: string): Uint8Array {
  const out = new Uint8Array(CONTEXT_TAG_LENGTH + plaintext.length);
  out.set(contextTag(context), 0);
  out.set(plaintext, CONTEXT_TAG_LENGTH);
  return out;
}

function withoutTag(opened: Uint8Array, context: string): Uint8Array {
  const tag = contextTag(context);
  const ok = opened.length >= CONTEXT_TAG_LENGTH && tag.every((b, i) => b === opened[i]);
  if (!ok) {
    opened.fill(0);
    throw new SealError(`sealed value belongs to another context than ${context}`);
  }
  const value = opened.slice(CONTEXT_TAG_LENGTH);
  opened.fill(0);
  return value;
}

/** Seals one value for `context`; for many values from one sender use a Sealer. */
export function seal(
  plaintext: Uint8Array,
  recipientPublicKey: Uint8Array,
  sender: BoxKeyPair,
  context: string,
  random: RandomBytes = defaultRandom,
): string {
  return new Sealer(sender, random).seal(plaintext, recipientPublicKey, context);
}

/** Opens a value sealed for `context`; a value sealed for any other context is refused. */
export function unseal(
  sealed: string,
  senderPublicKey: Uint8Array,
  recipient: BoxKeyPair,
  context: string,
): Uint8Array {
  checkPeerKey(senderPublicKey, 'sender');
  const { nonce, boxed } = unframe(sealed);
  const opened = nacl.box.open(boxed, nonce, senderPublicKey, recipient.secretKey);
  if (!opened) {
    throw new SealError('sealed value does not open: not sealed by the expected sender for this recipient');
  }
  return withoutTag(opened, context);
}

/**
 * Seals many values from one sender. nacl.box does an X25519 scalar multiplication per call; the shared
 * key of each recipient is computed once and cached, so sealing the PSKs of a 1,000-node overlay costs
 * 1,000 scalar multiplications instead of a million.
 */
export class Sealer {
  private readonly shared = new Map<string, Uint8Array>();

  constructor(
    readonly sender: BoxKeyPair,
    private readonly random: RandomBytes = defaultRandom,
  ) {}

  private sharedKey(recipientPublicKey: Uint8Array): Uint8Array {
    const id = Buffer.from(recipientPublicKey).toString('base64');
    let key = this.shared.get(id);
    if (!key) {
      checkPeerKey(recipientPublicKey, 'recipient');
      key = nacl.box.before(recipientPublicKey, this.sender.secretKey);
      this.shared.set(id, key);
    }
    return key;
  }

  /**
   * Computes and caches the shared key of a recipient; true when it was not cached yet (an X25519 scalar
   * multiplication, ~1 ms in tweetnacl: callers pacing their work count it).
   */
  prepare(recipientPublicKey: Uint8Array): boolean {
    const known = this.shared.has(Buffer.from(recipientPublicKey).toString('base64'));
    if (!known) this.sharedKey(recipientPublicKey);
    return !known;
  }

  seal(plaintext: Uint8Array, recipientPublicKey: Uint8Array, context: string): string {
    const nonce = this.random(nacl.box.nonceLength);
    const tagged = withTag(plaintext, context);
    try {
      return frame(nonce, nacl.box.after(tagged, nonce, this.sharedKey(recipientPublicKey)));
    } finally {
      tagged.fill(0);
    }
  }

  /** The sender can open what it sealed, because the shared key is symmetric. */
  open(sealed: string, recipientPublicKey: Uint8Array, context: string): Uint8Array {
    const { nonce, boxed } = unframe(sealed);
    const opened = nacl.box.open.after(boxed, nonce, this.sharedKey(recipientPublicKey));
    if (!opened) throw new SealError('sealed value does not open');
    return withoutTag(opened, context);
  }
}
