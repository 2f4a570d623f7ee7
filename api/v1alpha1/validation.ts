// Validators shared by the zod schemas (operator and agent) and the CRD (API server). Every rule is written
// once as a pair: a CEL expression for `x-kubernetes-validations` and a TypeScript predicate with the same
// meaning and the same message, so the API server and the zod schema reject the same input for the same
// reason. Regular expressions use only the subset on which ECMAScript and RE2 (CEL's `matches`) agree:
// anchors, groups, alternation, character classes and counted repetition; no \s, \d, lookaround or flags.
//
// A few checks cannot be expressed in CEL at reasonable cost (reversed cron ranges, cron dates that never
// occur, unknown IANA time zones). They are zod-only: the operator reports them as InvalidSpec.
import { CronExpressionParser } from 'cron-parser';
import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import type { CelRule } from './groupversion.js';

// ---------------------------------------------------------------------------------------------------------
// Rules: one CEL expression and one predicate per rule.

export interface Rule<T> {
  /** CEL, evaluated by the API server with `self` bound to the value (and `oldSelf` for transition rules). */
  rule: string;
  message: string;
  /** Relative path (`.mtu`) of the field the rule is about, when it is attached to a parent object. */
  fieldPath?: string;
  /** The same rule in TypeScript. Must return true for values a guard in `rule` skips. */
  test: (value: T) => boolean;
}

/** Attaches rules to a schema: the predicates as a zod refinement, the CEL as CRD metadata. */
export function withRules<S extends z.ZodType>(schema: S, rules: Rule<z.output<S>>[]): S {
  const previous = z.globalRegistry.get(schema)?.['x-kubernetes-validations'] ?? [];
  const refined = schema.superRefine((value, ctx) => {
    for (const r of rules) {
      if (!r.test(value)) {
        ctx.addIssue({
          code: 'custom',
          message: r.message,
          path: fieldPathToArray(r.fieldPath),
          input: value,
        });
      }
    }
  });
  const cel: CelRule[] = rules.map(({ rule, message, fieldPath }) =>
    fieldPath === undefined ? { rule, message } : { rule, message, fieldPath },
  );
  return refined.meta({ 'x-kubernetes-validations': [...previous, ...cel] });
}

function fieldPathToArray(fieldPath: string | undefined): string[] {
  return fieldPath === undefined ? [] : fieldPath.split('.').filter((p) => p !== '');
}

/** Quotes a string for a CEL single-quoted literal. */
export function celString(s: string): string {
  return `'${s.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
}

/** A regex rule: `self.matches(re)` in CEL, `RegExp.test` in TypeScript. */
export function matchesRule(source: string, message: string): Rule<string> {
  const re = new RegExp(source);
  return { rule: `self.matches(${celString(source)})`, message, test: (v) => re.test(v) };
}

// ---------------------------------------------------------------------------------------------------------
// Names and labels (Kubernetes' own syntax).

export const DNS1123_LABEL = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
const SUBDOMAIN_BODY = '[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*';
export const DNS1123_SUBDOMAIN = `^${SUBDOMAIN_BODY}$`;
/** A label key: optional DNS-subdomain prefix and `/`, then a name of at most 63 characters. */
export const QUALIFIED_NAME = `^(${SUBDOMAIN_BODY}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`;
/** A label value: empty, or at most 63 characters starting and ending with an alphanumeric. */
export const LABEL_VALUE = '^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$';

export function dnsSubdomain(description: string, maxLength = 253) {
  return z
    .string()
    .min(1)
    .max(maxLength)
    .regex(new RegExp(DNS1123_SUBDOMAIN), 'must be a lowercase DNS-1123 subdomain')
    .describe(description);
}

export function dnsLabel(description: string) {
  return z
    .string()
    .min(1)
    .max(63)
    .regex(new RegExp(DNS1123_LABEL), 'must be a lowercase DNS-1123 label')
    .describe(description);
}

// ---------------------------------------------------------------------------------------------------------
// IP addresses and CIDRs, accepting exactly what the Kubernetes CEL `ip`/`cidr` libraries accept: Go's
// net/netip syntax (no leading zeros in IPv4 octets or in the prefix length, no IPv6 zone), and no
// IPv4-mapped IPv6 addresses.

export interface ParsedIP {
  family: 4 | 6;
  bytes: number[];
}

export function parseIP(s: string): ParsedIP | undefined {
  if (ipaddr.IPv4.isValidFourPartDecimal(s)) {
    return { family: 4, bytes: ipaddr.IPv4.parse(s).toByteArray() };
  }
  const bytes = parseIPv6(s);
  if (bytes === undefined) return undefined;
  const mapped = bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
  return mapped ? undefined : { family: 6, bytes };
}

/**
 * IPv6 text to 16 bytes, following Go's netip.ParseAddr. Not ipaddr.js: it accepts zones and reads the
 * IPv4-compatible form `::1.2.3.4` as the IPv4-mapped `::ffff:1.2.3.4`.
 */
function parseIPv6(s: string): number[] | undefined {
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const groups = (part: string): number[] | undefined => {
    if (part === '') return [];
    const out: number[] = [];
    const pieces = part.split(':');
    for (const [i, p] of pieces.entries()) {
      if (i === pieces.length - 1 && p.includes('.')) {
        if (!ipaddr.IPv4.isValidFourPartDecimal(p)) return undefined;
        const [a = 0, b = 0, c = 0, d = 0] = ipaddr.IPv4.parse(p).toByteArray();
        out.push((a << 8) | b, (c << 8) | d);
      } else if (/^[0-9A-Fa-f]{1,4}$/.test(p)) {
        out.push(parseInt(p, 16));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const head = groups(halves[0] ?? '');
  const tail = halves.length === 2 ? groups(halves[1] ?? '') : [];
  if (head === undefined || tail === undefined) return undefined;
  // An embedded IPv4 address may only end the address.
  if (halves.length === 2 && (halves[0] ?? '').includes('.')) return undefined;
  let all: number[];
  if (halves.length === 2) {
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return undefined;
    all = [...head, ...new Array<number>(missing).fill(0), ...tail];
  } else {
    if (head.length !== 8) return undefined;
    all = head;
  }
  return all.flatMap((g) => [g >> 8, g & 0xff]);
}

export interface ParsedCIDR extends ParsedIP {
  prefixLength: number;
  /** True when every bit after the prefix is zero (a network address, not an interface address). */
  masked: boolean;
}

export function parseCIDR(s: string): ParsedCIDR | undefined {
  const slash = s.lastIndexOf('/');
  if (slash < 0) return undefined;
  const bits = s.slice(slash + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(bits)) return undefined;
  const ip = parseIP(s.slice(0, slash));
  if (ip === undefined) return undefined;
  const prefixLength = Number(bits);
  if (prefixLength > ip.bytes.length * 8) return undefined;
  const masked = ip.bytes.every((byte, i) => {
    const keep = Math.max(0, Math.min(8, prefixLength - i * 8));
    return (byte & (0xff >> keep)) === 0;
  });
  return { ...ip, prefixLength, masked };
}

export type PrefixRange = Record<4 | 6, readonly [number, number]>;

export interface CidrOptions {
  description: string;
  /** Require a network address (all host bits zero). */
  network: boolean;
  prefix?: PrefixRange;
}

const CIDR_MAX_LENGTH = 49; // longest IPv6 text (45, with embedded IPv4) + "/128"

export function cidrRules(opts: Omit<CidrOptions, 'description'>): Rule<string>[] {
  const rules: Rule<string>[] = [
    {
      rule: 'isCIDR(self)',
      message: 'must be a CIDR such as 10.99.0.0/16 or fd00:99::/64',
      test: (v) => parseCIDR(v) !== undefined,
    },
  ];
  if (opts.network) {
    rules.push({
      rule: '!isCIDR(self) || cidr(self) == cidr(self).masked()',
      message: 'must be a network address: all bits after the prefix length must be zero',
      test: (v) => parseCIDR(v)?.masked ?? true,
    });
  }
  const p = opts.prefix;
  if (p !== undefined) {
    rules.push({
      rule:
        `!isCIDR(self) || (cidr(self).ip().family() == 4 ` +
        `? (cidr(self).prefixLength() >= ${p[4][0]} && cidr(self).prefixLength() <= ${p[4][1]}) ` +
        `: (cidr(self).prefixLength() >= ${p[6][0]} && cidr(self).prefixLength() <= ${p[6][1]}))`,
      message: `prefix length must be /${p[4][0]} to /${p[4][1]} for IPv4 and /${p[6][0]} to /${p[6][1]} for IPv6`,
      test: (v) => {
        const c = parseCIDR(v);
        if (c === undefined) return true;
        const [min, max] = p[c.family];
        return c.prefixLength >= min && c.prefixLength <= max;
      },
    });
  }
  return rules;
}

export function cidr(opts: CidrOptions) {
  return withRules(z.string().max(CIDR_MAX_LENGTH).describe(opts.description), cidrRules(opts));
}

// ---------------------------------------------------------------------------------------------------------
// Durations: whole hours, minutes and seconds in Go syntax (`25s`, `10m`, `1h30m`), at most five digits
// per unit so that no value overflows Go's time.Duration in CEL's `duration()`.

export const DURATION = '^([0-9]{1,5}h([0-9]{1,5}m)?([0-9]{1,5}s)?|[0-9]{1,5}m([0-9]{1,5}s)?|[0-9]{1,5}s)$';
const DURATION_RE = new RegExp(DURATION);

/** Seconds in a duration string, or undefined when it is not one. */
export function parseDuration(s: string): number | undefined {
  if (!DURATION_RE.test(s)) return undefined;
  let seconds = 0;
  for (const [, n, unit] of s.matchAll(/([0-9]+)([hms])/g)) {
    seconds += Number(n) * (unit === 'h' ? 3600 : unit === 'm' ? 60 : 1);
  }
  return seconds;
}

export interface DurationOptions {
  description: string;
  min?: string;
  max?: string;
}

export function durationRules(opts: Omit<DurationOptions, 'description'>): Rule<string>[] {
  const rules = [
    matchesRule(
      DURATION,
      'must be a duration in whole hours, minutes and seconds, such as 25s, 10m or 1h30m',
    ),
  ];
  const guard = `!self.matches(${celString(DURATION)})`;
  const bound = (op: '>=' | '<=', limit: string, message: string): Rule<string> => {
    const limitSeconds = parseDuration(limit);
    if (limitSeconds === undefined) throw new Error(`bad duration limit ${limit}`);
    return {
      rule: `${guard} || duration(self) ${op} duration(${celString(limit)})`,
      message,
      test: (v) => {
        const s = parseDuration(v);
        return s === undefined || (op === '>=' ? s >= limitSeconds : s <= limitSeconds);
      },
    };
  };
  if (opts.min !== undefined) rules.push(bound('>=', opts.min, `must be at least ${opts.min}`));
  if (opts.max !== undefined) rules.push(bound('<=', opts.max, `must be at most ${opts.max}`));
  return rules;
}

export function duration(opts: DurationOptions) {
  return withRules(z.string().max(20).describe(opts.description), durationRules(opts));
}

// ---------------------------------------------------------------------------------------------------------
// WireGuard and X25519 keys: standard base64 of exactly 32 bytes is 44 characters, the last one `=`, and
// the 43rd character carries only 4 data bits, so it is one of 16 letters (the canonical encoding).

export const WIREGUARD_KEY = '^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$';
export const ZERO_KEY = `${'A'.repeat(43)}=`;

const WIREGUARD_KEY_RE = new RegExp(WIREGUARD_KEY);

export function isWireGuardKey(s: string): boolean {
  if (!WIREGUARD_KEY_RE.test(s)) return false;
  const bytes = Buffer.from(s, 'base64');
  return bytes.length === 32 && bytes.some((b) => b !== 0);
}

export function wireGuardKeyRules(): Rule<string>[] {
  return [
    matchesRule(WIREGUARD_KEY, 'must be a base64-encoded 32-byte key (44 characters ending in =)'),
    {
      rule: `self != ${celString(ZERO_KEY)}`,
      message: 'must not be the all-zero key',
      test: (v) => v !== ZERO_KEY,
    },
  ];
}

/**
 * The encodings (top bit clear and set) of the X25519 points of small order: as a public key, each gives an
 * all-zero shared secret whatever the other side's private key (lib/keys.ts refuses the same points).
 */
export const SMALL_ORDER_KEYS: readonly string[] = [
  'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
  'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAIA=',
  'AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
  'AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAIA=',
  '4Ot6fDtBuK4WVuP68Z/EatoJjeucMrH9hmIFFl9JuAA=',
  '4Ot6fDtBuK4WVuP68Z/EatoJjeucMrH9hmIFFl9JuIA=',
  'X5yVvKNQjCSx0LFVnIPvWwREXMRYHI6G2CJO3dCfEVc=',
  'X5yVvKNQjCSx0LFVnIPvWwREXMRYHI6G2CJO3dCfEdc=',
  '7P///////////////////////////////////////38=',
  '7P////////////////////////////////////////8=',
  '7f///////////////////////////////////////38=',
  '7f////////////////////////////////////////8=',
  '7v///////////////////////////////////////38=',
  '7v////////////////////////////////////////8=',
];

/** A public key: a WireGuard key that is not a point of small order. */
export function publicKeyRules(): Rule<string>[] {
  return [
    ...wireGuardKeyRules(),
    {
      rule: `!(self in [${SMALL_ORDER_KEYS.map(celString).join(', ')}])`,
      message: 'must not be an X25519 point of small order (its shared secret with any key is zero)',
      test: (v) => !SMALL_ORDER_KEYS.includes(v),
    },
  ];
}

/** An X25519 public key (WireGuard or envelope): refuses points of small order too. */
export function x25519PublicKey(description: string) {
  return withRules(z.string().max(44).describe(description), publicKeyRules());
}

// ---------------------------------------------------------------------------------------------------------
// Endpoints: `host:port` where host is a lowercase DNS name or an IPv4 address, or `[IPv6]:port`.

const ENDPOINT_NAME = `^${SUBDOMAIN_BODY}:[0-9]{1,5}$`;
const ENDPOINT_V6 = '^\\[[0-9A-Fa-f:.]+\\]:[0-9]{1,5}$';
const ENDPOINT_NAME_RE = new RegExp(ENDPOINT_NAME);
const ENDPOINT_V6_RE = new RegExp(ENDPOINT_V6);

export interface ParsedEndpoint {
  host: string;
  port: number;
}

/** Splits an endpoint that passes the syntax rule; no check of the IP or port range. */
function splitEndpoint(s: string): ParsedEndpoint | undefined {
  if (s.startsWith('[') ? !ENDPOINT_V6_RE.test(s) : !ENDPOINT_NAME_RE.test(s)) return undefined;
  const colon = s.lastIndexOf(':');
  const host = s.startsWith('[') ? s.slice(1, s.lastIndexOf(']')) : s.slice(0, colon);
  return { host, port: Number(s.slice(colon + 1)) };
}

function endpointHostOK({ host }: ParsedEndpoint, bracketed: boolean): boolean {
  if (bracketed) return parseIP(host)?.family === 6;
  return !/^[0-9.]+$/.test(host) || parseIP(host)?.family === 4;
}

export function parseEndpoint(s: string): ParsedEndpoint | undefined {
  const e = splitEndpoint(s);
  if (e === undefined || !endpointHostOK(e, s.startsWith('[')) || e.port < 1 || e.port > 65535)
    return undefined;
  return e;
}

export function endpointRules(): Rule<string>[] {
  const syntax = `(self.startsWith('[') ? self.matches(${celString(ENDPOINT_V6)}) : self.matches(${celString(ENDPOINT_NAME)}))`;
  const v6Host = "self.substring(1, self.lastIndexOf(']'))";
  const v4Host = "self.substring(0, self.lastIndexOf(':'))";
  return [
    {
      rule: syntax,
      message: 'must be host:port with a lowercase DNS name or IPv4 address as host, or [IPv6]:port',
      test: (v) => splitEndpoint(v) !== undefined,
    },
    {
      rule:
        `!${syntax} || (self.startsWith('[') ? (isIP(${v6Host}) && ip(${v6Host}).family() == 6) ` +
        `: (!${v4Host}.matches('^[0-9.]+$') || isIP(${v4Host})))`,
      message: 'host must be a valid IP address (IPv4 plain, IPv6 in brackets) or a DNS name',
      test: (v) => {
        const e = splitEndpoint(v);
        return e === undefined || endpointHostOK(e, v.startsWith('['));
      },
    },
    {
      rule:
        `!${syntax} || (int(self.substring(self.lastIndexOf(':') + 1)) >= 1 ` +
        `&& int(self.substring(self.lastIndexOf(':') + 1)) <= 65535)`,
      message: 'port must be between 1 and 65535',
      test: (v) => {
        const e = splitEndpoint(v);
        return e === undefined || (e.port >= 1 && e.port <= 65535);
      },
    },
  ];
}

export function endpoint(description: string) {
  return withRules(z.string().max(261).describe(description), endpointRules());
}

// ---------------------------------------------------------------------------------------------------------
// Cron: exactly five fields (minute hour day-of-month month day-of-week). CEL checks the syntax and that
// every number is in its field's range; the zod schema also rejects reversed ranges (`5-1`) and dates that
// never occur (`0 0 31 2 *`), via cron-parser.

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

/** `jan` → `[jJ][aA][nN]`: case-insensitive without flags, which RE2 and ECMAScript spell differently. */
function anyCase(words: string[]): string {
  return words.map((w) => [...w].map((c) => `[${c}${c.toUpperCase()}]`).join('')).join('|');
}

interface CronField {
  name: string;
  /** Regex alternatives for one value, exactly the field's range (numbers, and names where allowed). */
  value: string;
  /** Regex alternatives for a step: 1 up to the field's span. */
  step: string;
  names?: string[];
  namesStart?: number;
}

const CRON_FIELDS: CronField[] = [
  { name: 'minute', value: '[0-5]?[0-9]', step: '[1-9]|[1-5][0-9]' },
  { name: 'hour', value: '[01]?[0-9]|2[0-3]', step: '[1-9]|1[0-9]|2[0-3]' },
  { name: 'day-of-month', value: '0?[1-9]|[12][0-9]|3[01]', step: '[1-9]|[12][0-9]|3[01]' },
  {
    name: 'month',
    value: `0?[1-9]|1[0-2]|${anyCase(MONTHS)}`,
    step: '[1-9]|1[0-2]',
    names: MONTHS,
    namesStart: 1,
  },
  {
    name: 'day-of-week',
    value: `[0-7]|${anyCase(DAYS)}`,
    step: '[1-7]',
    names: DAYS,
    namesStart: 0,
  },
];

function cronFieldPattern(f: CronField): string {
  const item = `([*]|(${f.value})(-(${f.value}))?)(/(${f.step}))?`;
  return `${item}(,${item})*`;
}

export const CRON = `^${CRON_FIELDS.map((f) => `(${cronFieldPattern(f)})`).join(' +')}$`;
const CRON_RE = new RegExp(CRON);

export const CRON_MESSAGE =
  'must be a 5-field cron expression (minute hour day-of-month month day-of-week) using numbers in range, ' +
  'month/day names, *, a-b ranges, lists and /steps';

function cronValue(f: CronField, s: string): number {
  const i = f.names?.indexOf(s.toLowerCase()) ?? -1;
  return i >= 0 ? i + (f.namesStart ?? 0) : Number(s);
}

/** Why a cron expression is invalid, or undefined when it is valid. */
export function cronError(expr: string): string | undefined {
  if (!CRON_RE.test(expr)) return CRON_MESSAGE;
  const fields = expr.split(/ +/);
  for (const [i, f] of CRON_FIELDS.entries()) {
    for (const item of (fields[i] ?? '').split(',')) {
      const range = item.split('/')[0] ?? '';
      const [a, b] = range.split('-');
      if (a === undefined || b === undefined) continue;
      if (cronValue(f, a) > cronValue(f, b)) return `${f.name} range ${range} is reversed`;
    }
  }
  try {
    CronExpressionParser.parse(expr, { currentDate: new Date(0) });
  } catch (err) {
    return `is not a usable cron expression: ${(err as Error).message}`;
  }
  return undefined;
}

export function cron(description: string) {
  return withRules(z.string().max(128).describe(description), [matchesRule(CRON, CRON_MESSAGE)]).superRefine(
    (v, ctx) => {
      // Only what CEL cannot see: the syntax failure above already reported its own issue.
      if (!CRON_RE.test(v)) return;
      const err = cronError(v);
      if (err !== undefined) ctx.addIssue({ code: 'custom', message: err, input: v });
    },
  );
}

// ---------------------------------------------------------------------------------------------------------
// Time zones: CEL checks the shape of an IANA name; the zod schema asks the runtime's time-zone database.

export const TIME_ZONE = '^[A-Za-z][-A-Za-z0-9_+]*(/[-A-Za-z0-9_+]+){0,3}$';
const TIME_ZONE_RE = new RegExp(TIME_ZONE);

export function isTimeZone(tz: string): boolean {
  if (!TIME_ZONE_RE.test(tz)) return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

export function timeZone(description: string) {
  return withRules(z.string().max(64).describe(description), [
    matchesRule(TIME_ZONE, 'must be an IANA time zone name such as UTC or Europe/Berlin'),
  ]).superRefine((v, ctx) => {
    if (TIME_ZONE_RE.test(v) && !isTimeZone(v)) {
      ctx.addIssue({ code: 'custom', message: `unknown time zone ${JSON.stringify(v)}`, input: v });
    }
  });
}

// ---------------------------------------------------------------------------------------------------------
// Lists that the API server treats as maps (`x-kubernetes-list-type: map`): duplicate keys are an error
// on both sides.

export function listMap<S extends z.ZodType>(item: S, keys: string[], maxItems: number) {
  return z
    .array(item)
    .max(maxItems)
    .superRefine((items, ctx) => {
      const seen = new Set<string>();
      items.forEach((it, i) => {
        const k = JSON.stringify(keys.map((key) => (it as Record<string, unknown>)[key]));
        if (seen.has(k))
          ctx.addIssue({ code: 'custom', message: `duplicate entry for ${keys.join(', ')}`, path: [i] });
        seen.add(k);
      });
    })
    .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': keys });
}

/** A list of unique strings (`x-kubernetes-list-type: set`). */
export function listSet<S extends z.ZodType<string>>(item: S, maxItems: number) {
  return z
    .array(item)
    .max(maxItems)
    .superRefine((items, ctx) => {
      items.forEach((it, i) => {
        if (items.indexOf(it) !== i)
          ctx.addIssue({ code: 'custom', message: `duplicate value ${it}`, path: [i] });
      });
    })
    .meta({ 'x-kubernetes-list-type': 'set' });
}
