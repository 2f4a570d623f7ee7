import { expect, test } from '@jest/globals';
import { countPlaintext, linesBefore, plaintextByPair } from './leak.js';

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
  // an address without a port is the whole address (not a.b.c with port d): a /32 matches exactly it
  expect(countPlaintext(lines, ['10.244.3.1/32']).total).toBe(3);
  expect(countPlaintext(lines, ['10.244.3.0/32']).total).toBe(0);
});

test('plaintextByPair counts plaintext by the pair of nodes it was between, the rest as other', () => {
  const nodes = [
    { name: 'n1', underlayIP: '198.18.0.2', podCIDR: '10.244.1.0/24' },
    { name: 'n2', underlayIP: '198.18.0.3', podCIDR: '10.244.2.0/24' },
    { name: 'n3', underlayIP: '198.18.0.4', podCIDR: '10.244.3.0/24' },
  ];
  const lines = [
    '03:01:02.000001 IP 198.18.0.2.51890 > 198.18.0.3.51890: UDP, length 128',
    '03:01:02.000002 IP 198.18.0.2 > 10.244.3.1: ICMP echo request, id 7, seq 1, length 64',
    '03:01:02.000003 IP 10.244.3.1 > 198.18.0.2: ICMP echo reply, id 7, seq 1, length 64',
    '03:01:02.000004 IP 10.244.2.1.41000 > 10.244.3.1.8080: Flags [S], seq 1, win 64240, length 0',
    '03:01:02.000005 IP 198.18.0.4 > 10.244.9.1: ICMP echo request, id 8, seq 1, length 64',
    '03:01:02.000006 IP 198.18.0.2 > 198.18.0.3: ICMP 198.18.0.3 udp port 51890 unreachable, length 156',
  ];
  expect(plaintextByPair(lines, ['10.244.0.0/16'], nodes)).toEqual({
    'n1<->n3': 2,
    'n2<->n3': 1,
    other: 1,
  });
  expect(plaintextByPair(lines, ['10.250.0.0/16'], nodes)).toEqual({});
});

test('linesBefore keeps the lines stamped before the cut (tcpdump local time of day)', () => {
  const at = (h: number, m: number, sec: number, ms: number) =>
    new Date(2026, 11, 2, h, m, sec, ms).getTime();
  const lines = [
    '10:00:00.100000 IP 10.244.1.1 > 10.244.2.1: ICMP echo request',
    '10:00:00.600000 IP 10.244.1.1 > 10.244.2.1: ICMP echo request',
    'tcpdump: listening on br0',
  ];
  expect(linesBefore(lines, at(10, 0, 0, 500))).toEqual([lines[0]]);
  expect(linesBefore(lines, at(9, 59, 59, 0))).toEqual([]);
  expect(linesBefore(['23:59:59.900000 IP a > b: UDP'], at(0, 0, 1, 0) + 86_400_000)).toHaveLength(1);
});
