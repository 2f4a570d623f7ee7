import { z } from 'zod';
import { isSmallOrderPoint } from '../../lib/keys.js';
import {
  CRON,
  DURATION,
  WIREGUARD_KEY,
  ZERO_KEY,
  celString,
  cidr,
  cron,
  cronError,
  duration,
  endpoint,
  isTimeZone,
  isWireGuardKey,
  listMap,
  listSet,
  parseCIDR,
  parseDuration,
  parseEndpoint,
  parseIP,
  timeZone,
  x25519PublicKey,
  SMALL_ORDER_KEYS,
  withRules,
} from './validation.js';

describe('parseIP follows Go netip and the Kubernetes CEL ip library', () => {
  test.each([
    ['10.0.0.1', 4],
    ['0.0.0.0', 4],
    ['255.255.255.255', 4],
    ['::', 6],
    ['::1', 6],
    ['fd00:99::7', 6],
    ['FD00:99::7', 6],
    ['1:2:3:4:5:6:7:8', 6],
    ['1:2:3:4:5:6:7::', 6],
    ['::2:3:4:5:6:7:8', 6],
    ['::1.2.3.4', 6],
    ['64:ff9b::1.2.3.4', 6],
  ])('%s is IPv%d', (s, family) => {
    expect(parseIP(s)?.family).toBe(family);
  });

  test.each([
    '',
    '10.0.0',
    '10.0.0.1.2',
    '010.0.0.1',
    '10.0.0.256',
    '0x0a.0.0.1',
    ' 10.0.0.1',
    '10.0.0.1 ',
    '1::2::3',
    ':1::',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7:8::',
    '12345::1',
    'fe80::1%eth0',
    '::ffff:1.2.3.4',
    '::ffff:0:0',
    '1.2.3.4::',
    '::1.2.3',
    '::01.2.3.4',
    'g::1',
  ])('%j is not an IP', (s) => {
    expect(parseIP(s)).toBeUndefined();
  });

  test('IPv4-compatible and IPv4-mapped forms give the bytes Go gives', () => {
    expect(parseIP('::1.2.3.4')?.bytes).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
    expect(parseIP('fd00::0102:0304')?.bytes.slice(12)).toEqual([1, 2, 3, 4]);
  });
});

describe('parseCIDR', () => {
  test.each([
    ['10.99.0.0/16', 4, 16, true],
    ['10.99.0.1/16', 4, 16, false],
    ['10.99.0.1/32', 4, 32, true],
    ['0.0.0.0/0', 4, 0, true],
    ['192.168.7.4/30', 4, 30, true],
    ['192.168.7.6/30', 4, 30, false],
    ['fd00:99::/64', 6, 64, true],
    ['fd00:99::1/64', 6, 64, false],
    ['fd00:99::4/126', 6, 126, true],
    ['fd00:99::7/128', 6, 128, true],
    ['fd00:99:0:0:8000::/65', 6, 65, true],
    ['fd00:99:0:0:4000::/65', 6, 65, false],
  ])('%s: IPv%d /%d, masked %s', (s, family, prefixLength, masked) => {
    expect(parseCIDR(s)).toMatchObject({ family, prefixLength, masked });
  });

  test.each([
    '10.99.0.0',
    '10.99.0.0/',
    '10.99.0.0/33',
    'fd00::/129',
    '10.99.0.0/016',
    '10.99.0.0/-1',
    '10.99.0.0/+8',
    '/8',
    '10.99.0.0/8/8',
    '::ffff:10.0.0.0/104',
    'fe80::%eth0/64',
  ])('%j is not a CIDR', (s) => {
    expect(parseCIDR(s)).toBeUndefined();
  });
});

describe('cidr schema', () => {
  const pool = cidr({ description: 'pool', network: true, prefix: { 4: [8, 30], 6: [64, 126] } });
  test.each([
    ['10.99.0.0/16', undefined],
    ['fd00::/64', undefined],
    ['10.99.0.1/16', 'must be a network address'],
    ['10.99.0.0/31', 'prefix length must be /8 to /30 for IPv4 and /64 to /126 for IPv6'],
    ['fd00::/63', 'prefix length must be'],
    ['bogus', 'must be a CIDR'],
  ])('%s → %s', (s, message) => {
    const r = pool.safeParse(s);
    if (message === undefined) expect(r.success).toBe(true);
    else expect(r.error?.issues.map((i) => i.message)).toEqual([expect.stringContaining(message)]);
  });

  test('an interface address may have host bits', () => {
    expect(cidr({ description: 'a', network: false }).safeParse('10.99.0.7/16').success).toBe(true);
  });
});

describe('durations', () => {
  test.each([
    ['0s', 0],
    ['25s', 25],
    ['10m', 600],
    ['1h30m', 5400],
    ['1h1s', 3601],
    ['720h', 2592000],
    ['18h12m15s', 65535],
    ['00025s', 25],
    ['99999h99999m99999s', 99999 * 3661],
  ])('%s is %d seconds', (s, seconds) => {
    expect(parseDuration(s)).toBe(seconds);
  });

  test.each([
    '',
    '0',
    '25',
    '1.5s',
    '1ms',
    '1d',
    '-1s',
    '+1s',
    '1S',
    '1s1m',
    '1m1h',
    '1h 1m',
    's',
    '100000s',
    ' 1s',
  ])('%j is not a duration', (s) => {
    expect(parseDuration(s)).toBeUndefined();
  });

  const d = duration({ description: 'd', min: '10m', max: '720h' });
  test.each([
    ['10m', true],
    ['9m59s', false],
    ['720h', true],
    ['720h1s', false],
  ])('bounded duration %s valid: %s', (s, ok) => {
    expect(d.safeParse(s).success).toBe(ok);
  });

  test('the bounds are checked in CEL with the same limits', () => {
    const rules = z.globalRegistry.get(d)?.['x-kubernetes-validations']?.map((r) => r.rule) ?? [];
    expect(rules).toEqual([
      `self.matches(${celString(DURATION)})`,
      `!self.matches(${celString(DURATION)}) || duration(self) >= duration('10m')`,
      `!self.matches(${celString(DURATION)}) || duration(self) <= duration('720h')`,
    ]);
  });
});

describe('WireGuard keys', () => {
  const real = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=';
  test.each([
    [real, true],
    [Buffer.alloc(32, 255).toString('base64'), true],
    [ZERO_KEY, false],
    [real.slice(0, 43), false], // no padding
    [`${real.slice(0, 42)}h=`, false], // non-canonical: the low bits of the last character are set
    [Buffer.alloc(31, 1).toString('base64'), false],
    [Buffer.alloc(33, 1).toString('base64'), false],
    [`${real.slice(0, 10)}-_${real.slice(12)}`, false], // URL-safe alphabet
    ['', false],
  ])('%j valid: %s', (s, ok) => {
    expect(isWireGuardKey(s)).toBe(ok);
    expect(x25519PublicKey('k').safeParse(s).success).toBe(ok);
  });

  test.each(SMALL_ORDER_KEYS.map((k) => [k]))('%s: a point of small order is no public key', (k) => {
    expect(isWireGuardKey(k)).toBe(k !== ZERO_KEY);
    const parsed = x25519PublicKey('k').safeParse(k);
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues.map((i) => i.message)).toContain(
      'must not be an X25519 point of small order (its shared secret with any key is zero)',
    );
    // the same points as lib/keys refuses, written twice (CEL needs the encodings, the agent the bytes)
    expect(isSmallOrderPoint(Buffer.from(k, 'base64'))).toBe(true);
  });

  test('the regex accepts exactly the canonical encodings of 32 bytes', () => {
    // Every possible last-significant character: only the 16 with zero low bits decode back unchanged.
    const re = new RegExp(WIREGUARD_KEY);
    for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/') {
      const s = `${'B'.repeat(42)}${c}=`;
      const canonical = Buffer.from(Buffer.from(s, 'base64')).toString('base64') === s;
      expect(re.test(s)).toBe(canonical);
    }
  });
});

describe('endpoints', () => {
  test.each([
    ['198.18.0.7:51820', '198.18.0.7', 51820],
    ['node-1.example.com:1', 'node-1.example.com', 1],
    ['a:65535', 'a', 65535],
    ['[2001:db8::7]:51820', '2001:db8::7', 51820],
    ['[::1.2.3.4]:5', '::1.2.3.4', 5],
  ])('%s', (s, host, port) => {
    expect(parseEndpoint(s)).toEqual({ host, port });
    expect(endpoint('e').safeParse(s).success).toBe(true);
  });

  test.each([
    ['2001:db8::7:51820', 'must be host:port'],
    ['198.18.0.7', 'must be host:port'],
    ['198.18.0.7:', 'must be host:port'],
    ['Node-1:5', 'must be host:port'],
    ['a_b:5', 'must be host:port'],
    ['[fe80::1%eth0]:5', 'must be host:port'],
    ['[2001:db8::7]', 'must be host:port'],
    ['198.18.0.256:5', 'host must be a valid IP address'],
    ['1.2.3:5', 'host must be a valid IP address'],
    ['[198.18.0.7]:5', 'host must be a valid IP address'],
    ['[::ffff:1.2.3.4]:5', 'host must be a valid IP address'],
    ['[1::2::3]:5', 'host must be a valid IP address'],
    ['a:0', 'port must be between 1 and 65535'],
    ['a:65536', 'port must be between 1 and 65535'],
    ['[::1]:99999', 'port must be between 1 and 65535'],
  ])('%s: %s', (s, message) => {
    expect(parseEndpoint(s)).toBeUndefined();
    const r = endpoint('e').safeParse(s);
    expect(r.error?.issues.map((i) => i.message)).toEqual([expect.stringContaining(message)]);
  });
});

describe('cron', () => {
  test.each([
    '* * * * *',
    '0 3 * * 0',
    '*/15 * * * *',
    '5/15 * * * *',
    '0-59/7 0-23 1-31 1-12 0-7',
    '30 2 1 * *',
    '0 3 * JAN-mar Mon-FRI',
    '0 3 1,15 */2 sun',
    '00  03 * * 7',
    '0 0 29 2 *',
    '0 0 30 2 0', // day-of-month OR day-of-week: Sundays in February
  ])('%j is valid', (s) => {
    expect(cronError(s)).toBeUndefined();
    expect(cron('c').safeParse(s).success).toBe(true);
  });

  // What CEL catches too: the syntax and every field's range.
  test.each([
    '',
    '0 3 * *',
    '0 0 3 * * 0',
    '60 * * * *',
    '* 24 * * *',
    '* * 0 * *',
    '* * 32 * *',
    '* * * 0 *',
    '* * * 13 *',
    '* * * * 8',
    '*/0 * * * *',
    '*/60 * * * *',
    '000 * * * *',
    ' 0 3 * * *',
    '0 3 * * * ',
    '0\t3 * * *',
    '@daily',
    '0 3 ? * *',
    '0 3 L * *',
    '0 3 * * 1#2',
    'H * * * *',
    '0 3 * * sunday',
    '0, 3 * * *',
    '1-2-3 * * * *',
  ])('%j is rejected by the shared regex', (s) => {
    expect(new RegExp(CRON).test(s)).toBe(false);
    expect(cronError(s)).toMatch(/must be a 5-field cron expression/);
  });

  // What only zod catches.
  test.each([
    ['0 5-1 * * *', 'hour range 5-1 is reversed'],
    ['0 3 * * fri-mon', 'day-of-week range fri-mon is reversed'],
    ['0 3 * dec-jan *', 'month range dec-jan is reversed'],
    ['0 3 31 2 *', 'not a usable cron expression'],
    ['0 3 31 4,6,9,11 *', 'not a usable cron expression'],
    ['0,0 3 * * *', 'not a usable cron expression'],
  ])('%j: %s (zod only)', (s, message) => {
    expect(new RegExp(CRON).test(s)).toBe(true);
    expect(cronError(s)).toContain(message);
    const r = cron('c').safeParse(s);
    expect(r.error?.issues.map((i) => i.message)).toEqual([expect.stringContaining(message)]);
  });
});

describe('time zones', () => {
  test.each(['UTC', 'Europe/Berlin', 'America/Argentina/Buenos_Aires', 'Etc/GMT+5', 'EST'])('%s', (tz) => {
    expect(isTimeZone(tz)).toBe(true);
    expect(timeZone('t').safeParse(tz).success).toBe(true);
  });

  test.each([
    ['Mars/Olympus_Mons', 'unknown time zone'],
    ['UTC+2 hours', 'must be an IANA time zone name'],
    ['/UTC', 'must be an IANA time zone name'],
    ['', 'must be an IANA time zone name'],
  ])('%j: %s', (tz, message) => {
    expect(isTimeZone(tz)).toBe(false);
    expect(
      timeZone('t')
        .safeParse(tz)
        .error?.issues.map((i) => i.message),
    ).toEqual([expect.stringContaining(message)]);
  });
});

describe('rules', () => {
  test('celString escapes backslashes and quotes for a CEL literal', () => {
    expect(celString(`a'b\\c`)).toBe(`'a\\'b\\\\c'`);
  });

  test('withRules reports each failing rule at its fieldPath and records the CEL', () => {
    const s = withRules(z.object({ a: z.int(), b: z.int() }), [
      { rule: 'self.a < self.b', message: 'a must be below b', fieldPath: '.b', test: (v) => v.a < v.b },
      { rule: 'self.a >= 0', message: 'a must not be negative', fieldPath: '.a', test: (v) => v.a >= 0 },
    ]);
    expect(s.safeParse({ a: -1, b: -2 }).error?.issues.map((i) => [i.path, i.message])).toEqual([
      [['b'], 'a must be below b'],
      [['a'], 'a must not be negative'],
    ]);
    expect(z.globalRegistry.get(s)?.['x-kubernetes-validations']).toEqual([
      { rule: 'self.a < self.b', message: 'a must be below b', fieldPath: '.b' },
      { rule: 'self.a >= 0', message: 'a must not be negative', fieldPath: '.a' },
    ]);
  });

  test('withRules keeps rules attached earlier', () => {
    const once = withRules(z.string(), [
      { rule: 'size(self) > 0', message: 'empty', test: (v) => v.length > 0 },
    ]);
    const twice = withRules(once, [{ rule: 'size(self) < 5', message: 'long', test: (v) => v.length < 5 }]);
    expect(z.globalRegistry.get(twice)?.['x-kubernetes-validations']?.map((r) => r.message)).toEqual([
      'empty',
      'long',
    ]);
    expect(twice.safeParse('').error?.issues.map((i) => i.message)).toEqual(['empty']);
  });

  test('listMap rejects duplicate keys like the API server does', () => {
    const l = listMap(z.object({ node: z.string(), n: z.int() }), ['node'], 3);
    expect(
      l.safeParse([
        { node: 'a', n: 1 },
        { node: 'b', n: 1 },
      ]).success,
    ).toBe(true);
    expect(
      l.safeParse([
        { node: 'a', n: 1 },
        { node: 'a', n: 2 },
      ]).error?.issues[0]?.path,
    ).toEqual([1]);
    expect(
      l.safeParse([
        { node: 'a', n: 1 },
        { node: 'b', n: 1 },
        { node: 'c', n: 1 },
        { node: 'd', n: 1 },
      ]).success,
    ).toBe(false);
    expect(z.globalRegistry.get(l)).toMatchObject({
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['node'],
    });
  });

  test('listSet rejects duplicate values', () => {
    const l = listSet(z.string(), 4);
    expect(l.safeParse(['a', 'b']).success).toBe(true);
    expect(l.safeParse(['a', 'b', 'a']).error?.issues[0]?.path).toEqual([2]);
  });
});
