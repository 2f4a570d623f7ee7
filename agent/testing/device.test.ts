import { fingerprint, generateKeyPair, generatePresharedKey } from '../../lib/keys.js';
import { FakeWireGuardDevice } from './device.js';

const self = generateKeyPair();
const a = generateKeyPair();
const b = generateKeyPair();

async function ready(): Promise<FakeWireGuardDevice> {
  const dev = new FakeWireGuardDevice('wg0');
  await dev.ensureInterface({ addresses: ['10.100.0.1/24'], listenPort: 51820, privateKey: self.privateKey });
  return dev;
}

test('read() reports what was applied, like the real device', async () => {
  const dev = await ready();
  const psk = generatePresharedKey();
  await dev.upsertPeer({
    publicKey: a.publicKey,
    presharedKey: psk,
    endpoint: '198.18.0.3:51820',
    allowedIPs: ['10.244.2.9/24'],
    persistentKeepalive: 25,
  });
  expect(await dev.read()).toEqual({
    name: 'wg0',
    publicKey: self.publicKey,
    listenPort: 51820,
    peers: [
      {
        publicKey: a.publicKey,
        endpoint: '198.18.0.3:51820',
        allowedIPs: ['10.244.2.0/24'],
        rxBytes: 0,
        txBytes: 0,
        persistentKeepalive: 25,
        presharedKeySet: true,
        presharedKeyFingerprint: fingerprint(psk),
      },
    ],
  });
});

test('is absent before ensureInterface and after delete', async () => {
  const dev = new FakeWireGuardDevice();
  expect(await dev.read()).toBeUndefined();
  await expect(dev.upsertPeer({ publicKey: a.publicKey, allowedIPs: [] })).rejects.toThrow(/does not exist/);
  await dev.ensureInterface({ addresses: [], listenPort: 1, privateKey: self.privateKey });
  await dev.delete();
  expect(await dev.read()).toBeUndefined();
});

test('a new private key ends sessions; a new PSK or endpoint does not', async () => {
  const dev = await ready();
  await dev.upsertPeer({ publicKey: a.publicKey, allowedIPs: ['10.100.0.2/32'], endpoint: '198.18.0.3:1' });
  const at = new Date('2026-01-01T00:00:00Z');
  dev.handshake(a.publicKey, at, { rx: 10, tx: 20 });

  await dev.upsertPeer({
    publicKey: a.publicKey,
    presharedKey: generatePresharedKey(),
    allowedIPs: ['10.100.0.2/32'],
  });
  const peer = (await dev.read())!.peers[0]!;
  expect(peer.latestHandshake).toEqual(at);
  expect(peer.endpoint).toBe('198.18.0.3:1'); // kept when not given, as WireGuard does
  expect([peer.rxBytes, peer.txBytes]).toEqual([10, 20]);

  await dev.setPrivateKey(generateKeyPair().privateKey);
  expect((await dev.read())!.peers[0]!.latestHandshake).toBeUndefined();
});

test('allowed IPs belong to one peer at a time', async () => {
  const dev = await ready();
  await dev.upsertPeer({ publicKey: a.publicKey, allowedIPs: ['10.244.2.0/24', '10.100.0.2/32'] });
  await dev.upsertPeer({ publicKey: b.publicKey, allowedIPs: ['10.244.2.0/24'] });
  const peers = (await dev.read())!.peers;
  expect(peers.find((p) => p.publicKey === a.publicKey)?.allowedIPs).toEqual(['10.100.0.2/32']);
  expect(peers.find((p) => p.publicKey === b.publicKey)?.allowedIPs).toEqual(['10.244.2.0/24']);
});

test('records calls by fingerprint, never keys, and injects failures once', async () => {
  const dev = await ready();
  dev.failNext('upsertPeer', new Error('boom'));
  await expect(dev.upsertPeer({ publicKey: a.publicKey, allowedIPs: [] })).rejects.toThrow('boom');
  await dev.upsertPeer({ publicKey: a.publicKey, allowedIPs: [] });
  await dev.syncRoutes(['10.244.2.7/24', '10.244.2.0/24']);
  await dev.removePeer(a.publicKey);
  expect(dev.calls).toEqual([
    { method: 'ensureInterface' },
    { method: 'upsertPeer', detail: fingerprint(a.publicKey) },
    { method: 'upsertPeer', detail: fingerprint(a.publicKey) },
    { method: 'syncRoutes' },
    { method: 'removePeer', detail: fingerprint(a.publicKey) },
  ]);
  expect(dev.routes).toEqual(['10.244.2.0/24']);
  expect(JSON.stringify(dev.calls)).not.toContain(a.publicKey);
});

test('validates keys like the real device', async () => {
  const dev = new FakeWireGuardDevice();
  await expect(
    dev.ensureInterface({ addresses: [], listenPort: 1, privateKey: new Uint8Array(31) }),
  ).rejects.toThrow(/32 bytes/);
  await dev.ensureInterface({ addresses: [], listenPort: 1, privateKey: self.privateKey });
  await expect(dev.upsertPeer({ publicKey: 'x', allowedIPs: [] })).rejects.toThrow(/peer public key/);
  await expect(
    dev.upsertPeer({ publicKey: a.publicKey, presharedKey: new Uint8Array(32), allowedIPs: [] }),
  ).rejects.toThrow(/all zero/);
});
