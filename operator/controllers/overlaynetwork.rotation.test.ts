import type { KubernetesObject } from '@kubernetes/client-node';
import { pino } from 'pino';
import type { NodeTunnel } from '../../api/v1alpha1/nodetunnel.types.js';
import type { OverlayNetwork } from '../../api/v1alpha1/overlaynetwork.types.js';
import { TunnelPeerRows } from '../../lib/contract/pairs.js';
import type { Informer } from '../../lib/runtime/informer.js';
import { Rotation } from './overlaynetwork.rotation.js';
import { newScope, type OverlayStatus, type Scope } from './overlaynetwork.scope.js';
import type { StatusWriter } from './overlaynetwork.status.js';

const NOW = new Date('2026-01-01T00:10:00Z');

function setup(status: OverlayStatus, annotations: Record<string, string> = {}, live = true) {
  const persisted: Array<Partial<OverlayStatus>> = [];
  const statusWriter = {
    persist: (_s: Scope, fields: Partial<OverlayStatus>) => (persisted.push(fields), Promise.resolve()),
  } as unknown as StatusWriter;
  const lease = { spec: { renewTime: '2026-01-01T00:09:50Z', leaseDurationSeconds: live ? 40 : 1 } };
  const leases = { get: () => lease } as unknown as Informer<KubernetesObject>;
  const rotation = new Rotation(
    { namespace: 'keys', leases, leaseName: (n) => `sealmesh-agent-${n}` },
    new TunnelPeerRows(),
    statusWriter,
    () => NOW,
  );
  const overlay = {
    metadata: { name: 'mesh', annotations, creationTimestamp: '2026-01-01T00:00:00Z' },
    spec: { addressPool: '10.0.0.0/24', keys: { custody: 'Node', presharedKeys: 'PerPair' } },
    status,
  } as unknown as OverlayNetwork;
  const scope = newScope(overlay, overlay, 'mesh', NOW);
  const members = [
    { name: 'a', createdAt: undefined, envelopePublicKey: undefined },
    { name: 'b', createdAt: undefined, envelopePublicKey: undefined },
  ];
  const tunnels = new Map<string, NodeTunnel>();
  const step = () => rotation.step(scope, members, tunnels, new Map(), pino({ level: 'silent' }));
  return { scope, persisted, step };
}

test('a new rotate annotation starts a rotation: written at once with the request, an Event, a pass in 1 s', async () => {
  const { scope, persisted, step } = setup({ epoch: 1 }, { 'sealmesh.io/rotate': 'psk:now' });
  expect((await step()).kind).toBe('start');
  expect(persisted).toMatchObject([
    { rotation: { phase: 'Staging', scope: 'PresharedKeys', targetEpoch: 2 }, lastRotateRequest: 'psk:now' },
  ]);
  expect(scope.events.map((e) => e.reason)).toEqual(['RotationStarted']);
  expect(scope.requeueAfterMs).toBe(1000);
});

test('an annotation already acted on and no schedule: idle, nothing written', async () => {
  const { scope, persisted, step } = setup(
    { epoch: 1, lastRotateRequest: 'x' },
    { 'sealmesh.io/rotate': 'x' },
  );
  expect((await step()).kind).toBe('idle');
  expect(persisted).toEqual([]);
  expect(scope.events).toEqual([]);
  expect(scope.requeueAfterMs).toBeUndefined();
});
