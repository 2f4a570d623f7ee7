// The node's secrets on disk: the envelope key (X25519, the operator seals key material to its public half),
// its post-quantum half (an ML-KEM-768 key kept as its 64-byte seed: the operator seals hybrid to a node that
// publishes it, lib/hybrid.ts) and, in Node custody, one WireGuard private key per overlay per epoch. Nothing here ever leaves the node:
// the state dir is 0700, every key file 0600, written to a temporary file first and renamed, so a crash never
// leaves a half-written key behind. Files hold base64 so an operator can inspect them with ordinary tools.
import { chmod, mkdir, open, readdir, readFile, rename, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, publicKeyOf, validateKey, type RandomBytes, type WgKeyPair } from '../lib/keys.js';
import { KEM_SEED_LENGTH, kemKeyPairFromSeed, newKemKeyPair, type KemKeyPair } from '../lib/hybrid.js';
import { boxKeyPairFromSecret, newBoxKeyPair, type BoxKeyPair } from '../lib/seal.js';

const ENVELOPE_FILE = 'envelope.key';
const ENVELOPE_KEM_FILE = 'envelope-mlkem.key';

/** The envelope: X25519, and ML-KEM-768 unless post-quantum sealing is turned off on this node. */
export interface EnvelopeKeys extends BoxKeyPair {
  kem?: KemKeyPair | undefined;
}
/** The operator's sealing public key, pinned on first use (issue #14 item 2). */
export const OPERATOR_KEY_FILE = 'operator.pub';
const OVERLAYS_DIR = 'overlays';
/** The highest epoch run, per overlay (keystore.epochFloor). */
const EPOCH_FILE = 'epoch.json';
const KEY_FILE = /^wg-(\d+)\.key$/;
// Overlay names are DNS-1123 labels (they are label values); anything else must not become a path.
const OVERLAY_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export class KeyStore {
  constructor(
    readonly dir: string,
    private readonly random?: RandomBytes,
    /** false: publish no ML-KEM key (as an agent before issue #17 did); the key file stays */
    private readonly postQuantum = true,
  ) {}

  /** Creates the state dir (0700) and tightens its mode if it already existed. */
  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await chmod(this.dir, 0o700);
  }

  /** The envelope key pairs: created on first start, reused afterwards. */
  async envelopeKeyPair(): Promise<EnvelopeKeys> {
    const path = join(this.dir, ENVELOPE_FILE);
    const existing = await readKeyFile(path);
    let box: BoxKeyPair;
    if (existing) box = boxKeyPairFromSecret(existing);
    else {
      box = this.random ? newBoxKeyPair(this.random) : newBoxKeyPair();
      await writeKeyFile(path, box.secretKey);
    }
    return this.postQuantum ? { ...box, kem: await this.kemKeyPair() } : box;
  }

  private async kemKeyPair(): Promise<KemKeyPair> {
    const path = join(this.dir, ENVELOPE_KEM_FILE);
    const seed = await readKeyFile(path, KEM_SEED_LENGTH);
    if (seed) return kemKeyPairFromSeed(seed);
    const fresh = newKemKeyPair();
    await writeKeyFile(path, fresh.seed);
    return fresh;
  }

  /** The operator's sealing public key this node pinned, or undefined before the first one was seen. */
  async pinnedOperatorKey(): Promise<Uint8Array | undefined> {
    return readKeyFile(join(this.dir, OPERATOR_KEY_FILE));
  }

  /** Pins the operator's sealing public key: from now on only material sealed by it is opened. */
  async pinOperatorKey(key: Uint8Array): Promise<void> {
    await writeKeyFile(join(this.dir, OPERATOR_KEY_FILE), key);
  }

  /**
   * The highest epoch this node ran for the overlay with this UID (security review S9): read back after a
   * restart, so an overlay status restored to an older epoch is refused, not followed.
   */
  async epochFloor(overlay: string): Promise<{ uid: string; epoch: number } | undefined> {
    let text: string;
    try {
      text = await readFile(join(this.overlayDir(overlay), EPOCH_FILE), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const v = JSON.parse(text) as { uid?: unknown; epoch?: unknown };
    return typeof v.uid === 'string' && Number.isSafeInteger(v.epoch)
      ? { uid: v.uid, epoch: v.epoch as number }
      : undefined;
  }

  async setEpochFloor(overlay: string, floor: { uid: string; epoch: number }): Promise<void> {
    await this.ensureOverlay(overlay);
    await writeFileAtomic(join(this.overlayDir(overlay), EPOCH_FILE), `${JSON.stringify(floor)}\n`);
  }

  private overlayDir(overlay: string): string {
    if (!OVERLAY_NAME.test(overlay)) throw new Error(`invalid overlay name ${JSON.stringify(overlay)}`);
    return join(this.dir, OVERLAYS_DIR, overlay);
  }

  /** Marks that this node has state for `overlay` (so a restart can clean up an overlay it has left). */
  async ensureOverlay(overlay: string): Promise<void> {
    await mkdir(join(this.dir, OVERLAYS_DIR), { recursive: true, mode: 0o700 });
    await mkdir(this.overlayDir(overlay), { recursive: true, mode: 0o700 });
  }

  /** Node custody: this node's WireGuard key pair for `overlay` at `epoch`, generated on first use. */
  async wireGuardKeyPair(overlay: string, epoch: number): Promise<WgKeyPair> {
    await this.ensureOverlay(overlay);
    return (
      (await this.storedWireGuardKeyPair(overlay, epoch)) ?? (await this.newWireGuardKeyPair(overlay, epoch))
    );
  }

  /** Node custody: this node's stored key pair for `overlay` at `epoch`, or undefined when none is stored. */
  async storedWireGuardKeyPair(overlay: string, epoch: number): Promise<WgKeyPair | undefined> {
    const existing = await readKeyFile(this.wgKeyPath(overlay, epoch));
    if (!existing) return undefined;
    const privateKey = validateKey(existing, `stored private key of overlay ${overlay} epoch ${epoch}`);
    return { privateKey, publicKey: publicKeyOf(privateKey) };
  }

  /** Node custody: a new key pair for `overlay` at `epoch`, replacing any stored one (a staged key not used). */
  async newWireGuardKeyPair(overlay: string, epoch: number): Promise<WgKeyPair> {
    await this.ensureOverlay(overlay);
    const pair = this.random ? generateKeyPair(this.random) : generateKeyPair();
    await writeKeyFile(this.wgKeyPath(overlay, epoch), pair.privateKey);
    return pair;
  }

  /**
   * Node custody: stores `privateKey` as the key of `epoch` (a pre-shared-key-only rotation carries the
   * current key into the next epoch, so that a restart finds it there).
   */
  async storeWireGuardKey(overlay: string, epoch: number, privateKey: Uint8Array): Promise<void> {
    await this.ensureOverlay(overlay);
    await writeKeyFile(this.wgKeyPath(overlay, epoch), validateKey(privateKey, 'private key'));
  }

  private wgKeyPath(overlay: string, epoch: number): string {
    if (!Number.isSafeInteger(epoch) || epoch < 0) throw new Error(`invalid epoch ${epoch}`);
    return join(this.overlayDir(overlay), `wg-${epoch}.key`);
  }

  /** Node custody: forget the keys of epochs below `keepFrom` (they can never be used again). */
  async pruneEpochs(overlay: string, keepFrom: number): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.overlayDir(overlay));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const name of names) {
      const m = KEY_FILE.exec(name);
      if (m && Number(m[1]) < keepFrom) await unlink(join(this.overlayDir(overlay), name));
    }
  }

  async removeOverlay(overlay: string): Promise<void> {
    await rm(this.overlayDir(overlay), { recursive: true, force: true });
  }

  /** Overlays this node kept state for. */
  async overlays(): Promise<string[]> {
    try {
      const entries = await readdir(join(this.dir, OVERLAYS_DIR), { withFileTypes: true });
      return entries.filter((e) => e.isDirectory() && OVERLAY_NAME.test(e.name)).map((e) => e.name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }
}

async function readKeyFile(path: string, length = 32): Promise<Uint8Array | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`failed to read key file ${path}: ${(err as Error).message}`, { cause: err });
  }
  const raw = new Uint8Array(Buffer.from(text.trim(), 'base64'));
  if (raw.length !== length)
    throw new Error(`key file ${path} is corrupt: expected ${length} bytes of base64`);
  return raw;
}

async function writeKeyFile(path: string, key: Uint8Array): Promise<void> {
  await writeFileAtomic(path, `${Buffer.from(key).toString('base64')}\n`);
}

/** Writes a 0600 file through a temporary one, synced, then renamed: a crash leaves the old file or the new. */
async function writeFileAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  // mode only applies when the file is created; 'wx' makes sure it is.
  await rm(tmp, { force: true });
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}
