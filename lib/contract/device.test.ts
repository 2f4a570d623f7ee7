import { desiredDevice, durationSeconds, type TunnelView } from './device.js';

const key = (c: string) => `${c.repeat(42)}A=`;
const tunnel = (
  node: string,
  n: number,
  status?: { publicKey?: string },
  publicKey?: string,
): TunnelView => ({
  spec: {
    nodeName: node,
    address: `100.64.0.${n}/24`,
    endpoint: `198.18.0.${n}:51820`,
    allowedIPs: [`100.64.0.${n}/32`, `10.244.${n}.0/24`],
    listenPort: 51820,
    mtu: 1420,
    persistentKeepalive: '25s',
    epoch: 1,
    publicKey,
  },
  status,
});

const tunnels = [
  tunnel('n1', 1, { publicKey: key('a') }),
  tunnel('n2', 2, { publicKey: key('b') }),
  tunnel('n3', 3, {}),
];

test.each([
  ['Node custody reads public keys from status', 'n1', 'Node' as const, ['n2'], ['n3']],
  ['a node never peers with itself', 'n2', 'Node' as const, ['n1'], ['n3']],
  ['Operator custody reads public keys from spec', 'n1', 'Operator' as const, [], ['n2', 'n3']],
])('%s', (_name, self, custody, peers, awaiting) => {
  const got = desiredDevice(self, tunnels, custody)!;
  expect(got.peers.map((p) => p.node)).toEqual(peers);
  expect(got.awaiting).toEqual(awaiting);
});

test('a peer gets its endpoint, allowed IPs and our keepalive', () => {
  const got = desiredDevice('n1', tunnels, 'Node')!;
  expect(got).toMatchObject({ addresses: ['100.64.0.1/24'], listenPort: 51820, mtu: 1420 });
  expect(got.peers[0]).toEqual({
    node: 'n2',
    publicKey: key('b'),
    endpoint: '198.18.0.2:51820',
    allowedIPs: ['100.64.0.2/32', '10.244.2.0/24'],
    persistentKeepalive: 25,
  });
});

test('a node without its own tunnel has no device; a tunnel being deleted is not a peer', () => {
  expect(desiredDevice('n9', tunnels, 'Node')).toBeUndefined();
  const deleting = { ...tunnels[1]!, metadata: { deletionTimestamp: '2026-01-01T00:00:00Z' } };
  expect(desiredDevice('n1', [tunnels[0]!, deleting], 'Node')!.peers).toEqual([]);
});

test.each([
  ['25s', 25],
  ['1m30s', 90],
  ['2h', 7200],
  ['0s', 0],
  [undefined, 0],
  ['bogus', 0],
])('durationSeconds(%s) = %d', (d, want) => {
  expect(durationSeconds(d)).toBe(want);
});
