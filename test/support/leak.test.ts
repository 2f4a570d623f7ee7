import { expect, test } from '@jest/globals';
import { countPlaintext } from './leak.js';

test('countPlaintext counts packets to or from a protected range by kind, and nothing else', () => {
  const lines = [
    '03:01:02.000001 IP 198.18.0.2.51820 > 198.18.0.3.51820: UDP, length 128',
    '03:01:02.000002 IP 198.18.0.2 > 10.244.3.1: ICMP echo request, id 7, seq 1, length 64',
    '03:01:02.000003 IP 10.244.3.1 > 198.18.0.2: ICMP echo reply, id 7, seq 1, length 64',
    '03:01:02.000004 IP 198.18.0.2.41000 > 10.244.3.1.8080: Flags [S], seq 1, win 64240, length 0',
    '03:01:02.000005 IP 10.95.0.1.5353 > 198.18.0.3.5353: UDP, length 20',
    '03:01:02.000006 IP 198.18.0.2 > 198.18.0.3: ICMP 198.18.0.3 udp port 51820 unreachable, length 156',
    '03:01:02.000007 ARP, Request who-has 198.18.0.1 tell 198.18.0.2, length 28',
  ];
  const p = countPlaintext(lines, ['10.244.0.0/16', '10.95.0.0/24']);
  expect(p).toMatchObject({ icmp: 2, tcp: 1, udp: 1, other: 0, total: 4 });
  expect(p.sample).toHaveLength(4);
  expect(countPlaintext(lines, ['10.250.0.0/16']).total).toBe(0);
});
