import { deviceFailure } from './report.js';

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
