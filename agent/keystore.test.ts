import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { publicKeyOf } from '../lib/keys.js';
import { KeyStore } from './keystore.js';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'sealmesh-keystore-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

test('the envelope key is created once with mode 0600 in a 0700 dir and reused', async () => {
  const dir = join(root, 'state');
  const first = new KeyStore(dir);
  await first.init();
  const a = await first.envelopeKeyPair();
  expect((await stat(dir)).mode & 0o777).toBe(0o700);
  expect((await stat(join(dir, 'envelope.key'))).mode & 0o777).toBe(0o600);
  const again = new KeyStore(dir);
  await again.init();
  const b = await again.envelopeKeyPair();
  expect(Buffer.from(b.publicKey).equals(Buffer.from(a.publicKey))).toBe(true);
});

test('the ML-KEM envelope key is kept as its seed (0600) and reused; with post-quantum off none is loaded', async () => {
  const dir = join(root, 'pq');
  const first = new KeyStore(dir);
  await first.init();
  const a = await first.envelopeKeyPair();
  expect(a.kem?.publicKey.length).toBe(1184);
  expect((await stat(join(dir, 'envelope-mlkem.key'))).mode & 0o777).toBe(0o600);
  const b = await new KeyStore(dir).envelopeKeyPair();
  expect(Buffer.from(b.kem!.publicKey).equals(Buffer.from(a.kem!.publicKey))).toBe(true);
  const off = await new KeyStore(dir, undefined, false).envelopeKeyPair();
  expect(off.kem).toBeUndefined();
  expect(Buffer.from(off.publicKey).equals(Buffer.from(a.publicKey))).toBe(true);
  await writeFile(join(dir, 'envelope-mlkem.key'), 'AAAA\n');
  await expect(new KeyStore(dir).envelopeKeyPair()).rejects.toThrow(/expected 64 bytes/);
});

test('an existing state dir with loose permissions is tightened', async () => {
  const dir = join(root, 'loose');
  await new KeyStore(dir).init();
  const { chmod } = await import('node:fs/promises');
  await chmod(dir, 0o755);
  await new KeyStore(dir).init();
  expect((await stat(dir)).mode & 0o777).toBe(0o700);
});

test('WireGuard keys are kept per overlay and epoch, old epochs pruned, an overlay removed', async () => {
  const ks = new KeyStore(join(root, 's'));
  await ks.init();
  const k1 = await ks.wireGuardKeyPair('ovl', 1);
  expect((await ks.wireGuardKeyPair('ovl', 1)).publicKey).toBe(k1.publicKey);
  expect(publicKeyOf(k1.privateKey)).toBe(k1.publicKey);
  const k2 = await ks.wireGuardKeyPair('ovl', 2);
  expect(k2.publicKey).not.toBe(k1.publicKey);
  expect((await stat(join(root, 's', 'overlays', 'ovl', 'wg-2.key'))).mode & 0o777).toBe(0o600);
  expect((await stat(join(root, 's', 'overlays', 'ovl'))).mode & 0o777).toBe(0o700);
  await ks.pruneEpochs('ovl', 2);
  await expect(stat(join(root, 's', 'overlays', 'ovl', 'wg-1.key'))).rejects.toMatchObject({
    code: 'ENOENT',
  });
  expect(await ks.overlays()).toEqual(['ovl']);
  await ks.removeOverlay('ovl');
  expect(await ks.overlays()).toEqual([]);
});

test('a corrupt key file is an error, never silently replaced; bad overlay names are refused', async () => {
  const dir = join(root, 'c');
  const ks = new KeyStore(dir);
  await ks.init();
  await writeFile(join(dir, 'envelope.key'), 'not a key\n');
  await expect(ks.envelopeKeyPair()).rejects.toThrow(/corrupt/);
  expect(await readFile(join(dir, 'envelope.key'), 'utf8')).toBe('not a key\n');
  await expect(ks.wireGuardKeyPair('../etc', 1)).rejects.toThrow(/invalid overlay name/);
});

test('rotation keys: read without creating, a new key replaces a stored one, a key carried to an epoch', async () => {
  const ks = new KeyStore(join(root, 'r'));
  await ks.init();
  expect(await ks.storedWireGuardKeyPair('ovl', 2)).toBeUndefined();
  const k1 = await ks.wireGuardKeyPair('ovl', 1);
  const staged = await ks.newWireGuardKeyPair('ovl', 2);
  expect((await ks.storedWireGuardKeyPair('ovl', 2))?.publicKey).toBe(staged.publicKey);
  const again = await ks.newWireGuardKeyPair('ovl', 2);
  expect(again.publicKey).not.toBe(staged.publicKey);
  expect((await ks.storedWireGuardKeyPair('ovl', 2))?.publicKey).toBe(again.publicKey);
  await ks.storeWireGuardKey('ovl', 3, k1.privateKey);
  expect((await ks.storedWireGuardKeyPair('ovl', 3))?.publicKey).toBe(k1.publicKey);
  expect((await stat(join(root, 'r', 'overlays', 'ovl', 'wg-3.key'))).mode & 0o777).toBe(0o600);
});
