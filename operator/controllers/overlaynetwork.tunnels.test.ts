import type { KubernetesObject } from '@kubernetes/client-node';
import { pino } from 'pino';
import type { NodeTunnel } from '../../api/v1alpha1/nodetunnel.types.js';
import type { OverlayNetwork } from '../../api/v1alpha1/overlaynetwork.types.js';
import { TunnelPeerRows } from '../../lib/contract/pairs.js';
import type { Informer } from '../../lib/runtime/informer.js';
import type { OperatorWriter } from '../writer.js';
import { newScope } from './overlaynetwork.scope.js';
import { Tunnels, type DesiredSpecs } from './overlaynetwork.tunnels.js';

const overlay = {
  metadata: { name: 'mesh', uid: 'u1' },
  spec: { addressPool: '10.0.0.0/24', keys: { custody: 'Node', presharedKeys: 'PerPair' } },
  status: { epoch: 2 },
} as unknown as OverlayNetwork;

const spec = (node: string, address: string) => ({
  overlay: 'mesh',
  nodeName: node,
  address,
  endpoint: `198.18.0.${address.split('.')[3]?.split('/')[0]}:51820`,
  allowedIPs: [address.replace(/\/24$/, '/32')],
  listenPort: 51820,
  persistentKeepalive: '25s',
});

const tunnelObj = (node: string, address: string, epoch: number): KubernetesObject & NodeTunnel =>
  ({
    apiVersion: 'sealmesh.io/v1alpha1',
    kind: 'NodeTunnel',
    metadata: { name: `mesh.${node}`, labels: { 'sealmesh.io/overlay': 'mesh' }, resourceVersion: '1' },
    spec: { ...spec(node, address), epoch, secretRef: { namespace: 'keys', name: `sealmesh.mesh.${node}` } },
  }) as unknown as KubernetesObject & NodeTunnel;

function setup(cached: KubernetesObject[]) {
  const calls: string[] = [];
  const writer = {
    createTunnel: (b: { metadata: { name: string } }) => (
      calls.push(`create ${b.metadata.name}`),
      Promise.resolve()
    ),
    replaceTunnel: (name: string) => (calls.push(`replace ${name}`), Promise.resolve()),
    deleteTunnel: (name: string) => (calls.push(`delete ${name}`), Promise.resolve()),
  } as unknown as OperatorWriter;
  const tunnels = { list: () => cached } as unknown as Informer<KubernetesObject>;
  const phase = new Tunnels(
    { tunnels, writer, logger: pino({ level: 'silent' }), namespace: 'keys' },
    new TunnelPeerRows(),
  );
  return { phase, calls };
}

test('read: the overlay’s valid tunnels; an invalid one is skipped', async () => {
  const bad = { ...tunnelObj('c', '10.0.0.3/24', 1), spec: { nodeName: 'c' } };
  const other = {
    ...tunnelObj('d', '10.0.0.4/24', 1),
    metadata: { name: 'x.d', labels: { 'sealmesh.io/overlay': 'x' } },
  };
  const { phase } = setup([tunnelObj('a', '10.0.0.1/24', 1), bad, other]);
  expect((await phase.read('mesh')).map((t) => t.tunnel.spec.nodeName)).toEqual(['a']);
});

test('sync: creates joined nodes, replaces changed specs, leaves unchanged ones, deletes departed nodes', async () => {
  const a = tunnelObj('a', '10.0.0.1/24', 1);
  const b = tunnelObj('b', '10.0.0.2/24', 1);
  const c = tunnelObj('c', '10.0.0.3/24', 1);
  const { phase, calls } = setup([a, b, c]);
  const desired: DesiredSpecs = new Map([
    ['a', { ...spec('a', '10.0.0.1/24'), epoch: 2 }],
    ['b', { ...spec('b', '10.0.0.2/24'), listenPort: 51821, epoch: 2 }],
    ['n', { ...spec('n', '10.0.0.9/24'), epoch: 2 }],
  ]);
  const scope = newScope(overlay, overlay, 'mesh', new Date());
  await phase.sync(
    scope,
    desired,
    new Map([
      ['a', a],
      ['b', b],
      ['c', c],
    ]),
    new Map(),
  );
  // a keeps the epoch it joined at: a rotation rewrites no NodeTunnel
  expect(calls).toEqual(['replace mesh.b', 'create mesh.n', 'delete mesh.c']);
  expect(scope.events.map((e) => `${e.reason}: ${e.message}`)).toEqual([
    'NodeJoined: joined: n',
    'NodeLeft: left: c',
  ]);
});
