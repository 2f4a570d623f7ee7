import { goodStatus, tunnel } from '../../test/support/api-cases.js';
import { nodeTunnelUpdateError, parseNodeTunnel, type NodeTunnel } from './nodetunnel.types.js';

function parsed(t: unknown): NodeTunnel {
  const r = parseNodeTunnel(t);
  if (!r.ok) throw new Error(r.error);
  return r.value;
}

test('defaults and a full status', () => {
  const t = parsed({ ...tunnel('blue', 'worker-1'), status: goodStatus });
  expect(t.spec.persistentKeepalive).toBe('25s');
  expect(t.status?.peers?.map((p) => [p.node, p.state])).toEqual([
    ['node-2', 'Encrypted'],
    ['node-3', 'Stale'],
  ]);
});

test('the name must be <overlay>.<node>', () => {
  const r = parseNodeTunnel({ ...tunnel('blue', 'worker-1'), metadata: { name: 'blue-worker-1' } });
  expect(r.ok).toBe(false);
  if (!r.ok) expect(r.error).toBe('metadata.name: metadata.name must be <spec.overlay>.<spec.nodeName>');
});

test('dotted overlay and node names compose', () => {
  expect(parseNodeTunnel(tunnel('blue.team', 'worker-1.example.com')).ok).toBe(true);
});

test('a tunnel whose spec is missing fields is an error listing each', () => {
  const r = parseNodeTunnel({
    ...tunnel('blue', 'worker-1'),
    spec: { overlay: 'blue', nodeName: 'worker-1' },
  });
  expect(r.ok).toBe(false);
  if (!r.ok) {
    expect(r.issues.map((i) => i.path)).toEqual(
      expect.arrayContaining([
        'spec.address',
        'spec.endpoint',
        'spec.allowedIPs',
        'spec.listenPort',
        'spec.epoch',
      ]),
    );
  }
});

test.each<[string, (s: NodeTunnel['spec']) => void, string | undefined]>([
  ['nothing', () => undefined, undefined],
  ['a higher epoch', (s) => (s.epoch = 5), undefined],
  ['a new endpoint', (s) => (s.endpoint = '198.18.0.9:51820'), undefined],
  ['another overlay', (s) => (s.overlay = 'red'), 'spec.overlay: overlay is immutable'],
  ['another node', (s) => (s.nodeName = 'worker-2'), 'spec.nodeName: nodeName is immutable'],
  ['a lower epoch', (s) => (s.epoch = 0), 'spec.epoch: epoch must not decrease'],
])('an update changing %s', (_, change, error) => {
  const old = parsed(tunnel('blue', 'worker-1'));
  const next = structuredClone(old);
  change(next.spec);
  expect(nodeTunnelUpdateError(old, next)).toBe(error);
});
