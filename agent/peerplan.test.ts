import { peerConfig, peerDiff, verifyPeer, type PeerConfig } from './peerplan.js';
import type { PeerState as DevicePeer } from './device/device.js';
import type { DesiredPeer } from '../lib/contract/device.js';

const KEY = Buffer.alloc(32, 7).toString('base64');
const onDevice = (d: Partial<DevicePeer> = {}): DevicePeer => ({
  publicKey: KEY,
  endpoint: '198.18.0.2:51820',
  allowedIPs: ['10.0.0.2/32', '10.244.1.0/24'],
  rxBytes: 0,
  txBytes: 0,
  persistentKeepalive: 25,
  presharedKeySet: true,
  presharedKeyFingerprint: 'psk1',
  ...d,
});
const want = (w: Partial<PeerConfig> = {}): PeerConfig => ({
  publicKey: KEY,
  allowedIPs: ['10.0.0.2/32', '10.244.1.0/24'],
  pskFingerprint: 'psk1',
  persistentKeepalive: 25,
  endpoint: '198.18.0.2:51820',
  ...w,
});

// Kilo's topology_test.go style: {name, actual, want, result}.
test.each<[string, DevicePeer | undefined, PeerConfig, string | undefined]>([
  ['the same', onDevice(), want(), undefined],
  [
    'allowed IPs in another order are the same',
    onDevice({ allowedIPs: ['10.244.1.0/24', '10.0.0.2/32'] }),
    want(),
    undefined,
  ],
  ['missing', undefined, want(), /is not on the device/.source],
  [
    'an allowed IP more',
    onDevice(),
    want({ allowedIPs: ['10.0.0.2/32'] }),
    'allowed IPs on the device (10.0.0.2/32, 10.244.1.0/24) are not 10.0.0.2/32',
  ],
  [
    'no allowed IPs on the device',
    onDevice({ allowedIPs: [] }),
    want(),
    'allowed IPs on the device (none) are not 10.0.0.2/32, 10.244.1.0/24',
  ],
  [
    'another PSK',
    onDevice(),
    want({ pskFingerprint: 'psk2' }),
    'pre-shared key on the device is psk1, intended psk2',
  ],
  [
    'a PSK where none is intended',
    onDevice(),
    want({ pskFingerprint: undefined }),
    'pre-shared key on the device is psk1, intended none',
  ],
  [
    'keepalive off on the device',
    onDevice({ persistentKeepalive: undefined }),
    want(),
    'persistent keepalive on the device is 0 s, intended 25 s',
  ],
  [
    'keepalive not compared when not wanted',
    onDevice({ persistentKeepalive: 5 }),
    want({ persistentKeepalive: undefined }),
    undefined,
  ],
  [
    'another endpoint',
    onDevice({ endpoint: '198.18.0.9:51820' }),
    want(),
    'endpoint 198.18.0.9:51820 is not 198.18.0.2:51820',
  ],
  [
    'endpoint not compared when not wanted',
    onDevice({ endpoint: undefined }),
    want({ endpoint: undefined }),
    undefined,
  ],
])('peerDiff: %s', (_name, actual, config, result) => {
  const diff = peerDiff(actual, config);
  if (result === undefined) expect(diff).toBeUndefined();
  else if (actual === undefined) expect(diff).toMatch(new RegExp(result));
  else expect(diff).toBe(result);
});

describe('verifyPeer (the read-back)', () => {
  const peer: DesiredPeer = {
    node: 'b',
    publicKey: KEY,
    endpoint: '198.18.0.2:51820',
    allowedIPs: ['10.244.1.0/24', '10.0.0.2/32', '10.0.0.2/32'],
    persistentKeepalive: 25,
  };
  const psk = { kind: 'ok' as const, key: new Uint8Array(32), fingerprint: 'psk1' };

  test('compares allowed IPs (normalised, de-duplicated) and the PSK, not endpoint or keepalive', () => {
    expect(verifyPeer(onDevice({ endpoint: 'roamed:1', persistentKeepalive: 0 }), peer, psk)).toBeUndefined();
    expect(peerConfig(peer, psk).allowedIPs).toEqual(['10.0.0.2/32', '10.244.1.0/24']);
  });

  test.each<[string, DevicePeer | undefined, string]>([
    ['missing after applying', undefined, /^peer .* is missing from the device after applying$/.source],
    [
      'the kernel kept no PSK',
      onDevice({ presharedKeyFingerprint: undefined }),
      /^pre-shared key on the device is none, intended psk1$/.source,
    ],
  ])('%s', (_name, actual, result) => {
    expect(verifyPeer(actual, peer, psk)).toMatch(new RegExp(result));
  });
});
