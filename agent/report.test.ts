import { pino } from 'pino';
import type { NodeTunnelStatus } from '../api/v1alpha1/nodetunnel.types.js';
import type { OverlayRuntime } from './pass.js';
import { deviceFailure, StatusReport } from './report.js';

test('a listen port held by another process is named as such; any other device error is a DeviceError', () => {
  expect(
    deviceFailure('wg set sm-1 failed: Unable to modify interface: Address already in use', 51890),
  ).toEqual({
    reason: 'ListenPortInUse',
    message:
      'UDP port 51890 is taken by another process on this node (wg set sm-1 failed: Unable to modify interface: Address already in use)',
  });
  expect(deviceFailure('ip link add failed: Operation not permitted', 51890)).toEqual({
    reason: 'DeviceError',
    message: 'ip link add failed: Operation not permitted',
  });
});

test('a device that could not be programmed: no peer stays Encrypted on an earlier report, and Encrypted is False', () => {
  const report = new StatusReport(
    { patchNodeTunnelStatus: () => Promise.reject(new Error('unused')) },
    () => undefined,
    pino({ level: 'silent' }),
  );
  const since = '2026-01-01T00:00:00Z';
  const mine = {
    metadata: { name: 'ovl.n2', uid: 'u', resourceVersion: '5', generation: 1 },
    status: {
      peers: [
        { node: 'n1', state: 'Encrypted', since, epoch: 1 },
        { node: 'n3', state: 'AwaitingPeer', since, epoch: 1 },
      ],
      summary: { encrypted: 1, total: 2 },
      peersSummary: '1/2',
      conditions: [
        {
          type: 'Encrypted',
          status: 'True',
          reason: 'AllPeersEncrypted',
          message: '',
          lastTransitionTime: since,
        },
      ],
    },
  };
  const rt = {} as OverlayRuntime;
  const now = Date.parse('2026-01-01T00:05:00Z');
  const down = report.notApplied(
    rt,
    mine,
    now,
    'ListenPortInUse',
    'UDP port 51890 is taken',
    true,
  ) as NodeTunnelStatus;
  expect(down.peers).toEqual([
    {
      node: 'n1',
      state: 'Handshaking',
      since: '2026-01-01T00:05:00Z',
      epoch: 1,
      message: 'device not programmed: ListenPortInUse',
    },
    { node: 'n3', state: 'AwaitingPeer', since, epoch: 1 },
  ]);
  expect(down.peersSummary).toBe('0/2');
  expect(down.summary).toEqual({ encrypted: 0, total: 2 });
  expect(down.conditions?.find((c) => c.type === 'Encrypted')).toMatchObject({
    status: 'False',
    message: '0/2 peers encrypted: the device is not programmed (ListenPortInUse)',
  });
  expect(down.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
    status: 'False',
    reason: 'ListenPortInUse',
  });
  // any other failure (no key yet, rules): the device runs as it was, the peers as last reported
  const other = report.notApplied(rt, mine, now, 'KeysPending', 'waiting') as NodeTunnelStatus;
  expect(other.peers).toEqual(mine.status.peers);
});
