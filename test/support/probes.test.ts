import { maxGap, median, parsePing } from './probes.js';

const out = `PING 100.64.0.2 (100.64.0.2) 56(84) bytes of data.
64 bytes from 100.64.0.2: icmp_seq=1 ttl=64 time=0.5 ms
64 bytes from 100.64.0.2: icmp_seq=2 ttl=64 time=0.5 ms
64 bytes from 100.64.0.2: icmp_seq=6 ttl=64 time=0.5 ms
64 bytes from 100.64.0.2: icmp_seq=7 ttl=64 time=0.5 ms

--- 100.64.0.2 ping statistics ---
8 packets transmitted, 4 received, 50% packet loss, time 280ms`;

test('parsePing reads replied sequence numbers and the sent count', () => {
  const { replied, sent } = parsePing(out);
  expect([...replied]).toEqual([1, 2, 6, 7]);
  expect(sent).toBe(8);
});

test('maxGap is the longest run of lost probes, in time', () => {
  const { replied, sent } = parsePing(out);
  expect(maxGap(replied, sent, 40)).toBe(160); // seq 3,4,5 lost: from reply 2 to reply 6
  expect(maxGap(new Set([1, 2, 3]), 3, 40)).toBe(0);
});

test('median', () => {
  expect(median([3, 1, 2])).toBe(2);
  expect(median([4, 1, 2, 3])).toBe(2.5);
  expect(median([])).toBe(0);
});
