import { desiredTunnels, type NodeView, type OverlayView } from './tunnels.js';

const overlay: OverlayView = {
  name: 'mesh',
  nodeSelector: { matchLabels: { 'sealmesh.io/member': 'yes' } },
  addressPool: '100.64.0.0/24',
  listenPort: 51820,
  persistentKeepalive: '25s',
  routePodCIDRs: true,
  epoch: 1,
};

const node = (name: string, n: number, over: Partial<NodeView> = {}): NodeView => ({
  name,
  labels: { 'sealmesh.io/member': 'yes' },
  deleting: false,
  internalIPs: [`198.18.0.${n}`],
  podCIDRs: [`10.244.${n}.0/24`],
  ...over,
});

test('selected nodes get a tunnel with address, endpoint and allowed IPs', () => {
  const got = desiredTunnels(overlay, [node('a', 1), node('b', 2)], new Map());
  expect(got.tunnels.get('b')).toEqual({
    overlay: 'mesh',
    nodeName: 'b',
    address: '100.64.0.2/24',
    endpoint: '198.18.0.2:51820',
    allowedIPs: ['100.64.0.2/32', '10.244.2.0/24'],
    listenPort: 51820,
    persistentKeepalive: '25s',
    epoch: 1,
  });
});

test.each<[string, NodeView, string]>([
  ['unlabelled', node('x', 9, { labels: {} }), 'not selected'],
  ['being deleted', node('x', 9, { deleting: true }), 'not selected'],
  ['without InternalIP', node('x', 9, { internalIPs: [] }), 'unusable'],
])('a node %s gets no tunnel', (_name, n, kind) => {
  const got = desiredTunnels(overlay, [node('a', 1), n], new Map());
  expect([...got.tunnels.keys()]).toEqual(['a']);
  expect(got.unusable.map((u) => u.node)).toEqual(kind === 'unusable' ? ['x'] : []);
});

test('existing addresses are kept; exhaustion is reported', () => {
  const small = { ...overlay, addressPool: '100.64.0.0/30' };
  const got = desiredTunnels(
    small,
    [node('a', 1), node('b', 2), node('c', 3)],
    new Map([['c', '100.64.0.1/30']]),
  );
  expect(got.tunnels.get('c')?.address).toBe('100.64.0.1/30');
  expect(got.tunnels.get('a')?.address).toBe('100.64.0.2/30');
  expect(got.exhausted).toEqual(['b']);
});

test('IPv6 underlay endpoints are bracketed; pod CIDRs are optional; MTU passes through', () => {
  const v6 = { ...overlay, addressPool: 'fd00:5ea1::/64', routePodCIDRs: false, mtu: 1380 };
  const got = desiredTunnels(v6, [node('a', 1, { internalIPs: ['fd00:18::1'] })], new Map());
  expect(got.tunnels.get('a')).toMatchObject({
    address: 'fd00:5ea1::1/64',
    endpoint: '[fd00:18::1]:51820',
    allowedIPs: ['fd00:5ea1::1/128'],
    mtu: 1380,
  });
});
