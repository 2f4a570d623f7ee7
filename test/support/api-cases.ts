// The shared table of good and bad API objects. The integration test sends each one to the real API server
// and to the zod schema and demands the same verdict from both; api/v1alpha1/cases.test.ts runs the zod
// half without a cluster.
import { API_VERSION, NODE_TUNNEL_KIND, OVERLAY_NETWORK_KIND } from '../../api/v1alpha1/groupversion.js';

export type Kind = typeof OVERLAY_NETWORK_KIND | typeof NODE_TUNNEL_KIND;

type Obj = Record<string, unknown> & { metadata: { name: string }; spec: Record<string, unknown> };

export function overlay(name: string, spec: Record<string, unknown> = {}): Obj {
  return {
    apiVersion: API_VERSION,
    kind: OVERLAY_NETWORK_KIND,
    metadata: { name },
    spec: { addressPool: '10.99.0.0/16', ...spec },
  };
}

export function tunnel(overlayName: string, node: string, spec: Record<string, unknown> = {}): Obj {
  return {
    apiVersion: API_VERSION,
    kind: NODE_TUNNEL_KIND,
    metadata: { name: `${overlayName}.${node}` },
    spec: {
      overlay: overlayName,
      nodeName: node,
      address: '10.99.0.7/16',
      endpoint: '198.18.0.7:51820',
      allowedIPs: ['10.99.0.7/32', '10.244.7.0/24'],
      listenPort: 51820,
      epoch: 1,
      ...spec,
    },
  };
}

export interface Case {
  name: string;
  kind: Kind;
  /** Builds the object; `id` is a unique, DNS-safe suffix for this run. */
  build: (id: string) => Obj;
  /** The field both the API server's message and a zod issue path must name. */
  field: string;
  /** When the rule is CEL, the message both sides share. */
  message?: string;
}

const key = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=';
const ov = (spec: Record<string, unknown>) => (id: string) => overlay(`bad-${id}`, spec);
const tu = (spec: Record<string, unknown>) => (id: string) => tunnel(`bad-${id}`, 'node-1', spec);
const keys = (k: Record<string, unknown>) => ({ keys: k });
const rotation = (r: Record<string, unknown>) => keys({ rotation: r });

export const badCases: Case[] = [
  // fail-closed data plane
  {
    name: 'protected range is not a CIDR',
    kind: 'OverlayNetwork',
    build: ov({ dataPlane: { protectedRanges: ['10.244.0.0'] } }),
    field: 'spec.dataPlane.protectedRanges[0]',
    message: 'must be a CIDR',
  },
  {
    name: 'protected range has host bits set',
    kind: 'OverlayNetwork',
    build: ov({ dataPlane: { protectedRanges: ['10.244.0.1/16'] } }),
    field: 'spec.dataPlane.protectedRanges[0]',
    message: 'must be a network address',
  },
  {
    name: 'data plane mode unknown',
    kind: 'OverlayNetwork',
    build: ov({ dataPlane: { mode: 'Open' } }),
    field: 'spec.dataPlane.mode',
  },
  // CIDRs
  {
    name: 'pool is an address, not a CIDR',
    kind: 'OverlayNetwork',
    build: ov({ addressPool: '10.99.0.0' }),
    field: 'spec.addressPool',
    message: 'must be a CIDR',
  },
  {
    name: 'pool has host bits set',
    kind: 'OverlayNetwork',
    build: ov({ addressPool: '10.99.0.1/16' }),
    field: 'spec.addressPool',
    message: 'must be a network address',
  },
  {
    name: 'IPv4 pool /31 leaves no room',
    kind: 'OverlayNetwork',
    build: ov({ addressPool: '10.99.0.0/31' }),
    field: 'spec.addressPool',
    message: 'prefix length must be',
  },
  {
    name: 'IPv4 pool /7 too large',
    kind: 'OverlayNetwork',
    build: ov({ addressPool: '10.0.0.0/7' }),
    field: 'spec.addressPool',
    message: 'prefix length must be',
  },
  {
    name: 'IPv6 pool /48 too large',
    kind: 'OverlayNetwork',
    build: ov({ addressPool: 'fd00:99::/48' }),
    field: 'spec.addressPool',
    message: 'prefix length must be',
  },
  {
    name: 'IPv6 pool /127 leaves no room',
    kind: 'OverlayNetwork',
    build: ov({ addressPool: 'fd00:99::/127' }),
    field: 'spec.addressPool',
    message: 'prefix length must be',
  },
  {
    name: 'IPv4-mapped IPv6 pool',
    kind: 'OverlayNetwork',
    build: ov({ addressPool: '::ffff:10.99.0.0/112' }),
    field: 'spec.addressPool',
    message: 'must be a CIDR',
  },
  {
    name: 'leading zero in an octet',
    kind: 'OverlayNetwork',
    build: ov({ addressPool: '10.099.0.0/16' }),
    field: 'spec.addressPool',
    message: 'must be a CIDR',
  },
  {
    name: 'leading zero in the prefix length',
    kind: 'OverlayNetwork',
    build: ov({ addressPool: '10.99.0.0/016' }),
    field: 'spec.addressPool',
    message: 'must be a CIDR',
  },
  // ports, MTU, keepalive
  { name: 'listenPort 0', kind: 'OverlayNetwork', build: ov({ listenPort: 0 }), field: 'spec.listenPort' },
  {
    name: 'listenPort 65536',
    kind: 'OverlayNetwork',
    build: ov({ listenPort: 65536 }),
    field: 'spec.listenPort',
  },
  { name: 'mtu above 9000', kind: 'OverlayNetwork', build: ov({ mtu: 9001 }), field: 'spec.mtu' },
  { name: 'mtu below 576', kind: 'OverlayNetwork', build: ov({ mtu: 500 }), field: 'spec.mtu' },
  {
    name: 'mtu below 1280 on an IPv6 pool',
    kind: 'OverlayNetwork',
    build: ov({ addressPool: 'fd00:99::/64', mtu: 1200 }),
    field: 'spec.mtu',
    message: 'at least 1280 when addressPool is IPv6',
  },
  {
    name: 'keepalive above 65535s',
    kind: 'OverlayNetwork',
    build: ov({ persistentKeepalive: '18h13m' }),
    field: 'spec.persistentKeepalive',
    message: 'must be at most 65535s',
  },
  {
    name: 'keepalive with a fraction',
    kind: 'OverlayNetwork',
    build: ov({ persistentKeepalive: '2.5s' }),
    field: 'spec.persistentKeepalive',
    message: 'must be a duration',
  },
  {
    name: 'keepalive without a unit',
    kind: 'OverlayNetwork',
    build: ov({ persistentKeepalive: '25' }),
    field: 'spec.persistentKeepalive',
    message: 'must be a duration',
  },
  // enums
  {
    name: 'custody is not Node or Operator',
    kind: 'OverlayNetwork',
    build: ov(keys({ custody: 'Cluster' })),
    field: 'spec.keys.custody',
  },
  {
    name: 'presharedKeys is not PerPair or Disabled',
    kind: 'OverlayNetwork',
    build: ov(keys({ presharedKeys: 'Shared' })),
    field: 'spec.keys.presharedKeys',
  },
  // cron
  {
    name: 'cron with 4 fields',
    kind: 'OverlayNetwork',
    build: ov(rotation({ schedule: '0 3 * *' })),
    field: 'spec.keys.rotation.schedule',
    message: 'must be a 5-field cron expression',
  },
  {
    name: 'cron with 6 fields (seconds)',
    kind: 'OverlayNetwork',
    build: ov(rotation({ schedule: '0 0 3 * * 0' })),
    field: 'spec.keys.rotation.schedule',
    message: 'must be a 5-field cron expression',
  },
  {
    name: 'cron minute 60',
    kind: 'OverlayNetwork',
    build: ov(rotation({ schedule: '60 3 * * 0' })),
    field: 'spec.keys.rotation.schedule',
    message: 'must be a 5-field cron expression',
  },
  {
    name: 'cron hour 24',
    kind: 'OverlayNetwork',
    build: ov(rotation({ schedule: '0 24 * * 0' })),
    field: 'spec.keys.rotation.schedule',
    message: 'must be a 5-field cron expression',
  },
  {
    name: 'cron day-of-month 0',
    kind: 'OverlayNetwork',
    build: ov(rotation({ schedule: '0 3 0 * *' })),
    field: 'spec.keys.rotation.schedule',
    message: 'must be a 5-field cron expression',
  },
  {
    name: 'cron month 13',
    kind: 'OverlayNetwork',
    build: ov(rotation({ schedule: '0 3 1 13 *' })),
    field: 'spec.keys.rotation.schedule',
    message: 'must be a 5-field cron expression',
  },
  {
    name: 'cron day-of-week 8',
    kind: 'OverlayNetwork',
    build: ov(rotation({ schedule: '0 3 * * 8' })),
    field: 'spec.keys.rotation.schedule',
    message: 'must be a 5-field cron expression',
  },
  {
    name: 'cron step 0',
    kind: 'OverlayNetwork',
    build: ov(rotation({ schedule: '*/0 * * * *' })),
    field: 'spec.keys.rotation.schedule',
    message: 'must be a 5-field cron expression',
  },
  {
    name: 'cron macro',
    kind: 'OverlayNetwork',
    build: ov(rotation({ schedule: '@weekly' })),
    field: 'spec.keys.rotation.schedule',
    message: 'must be a 5-field cron expression',
  },
  {
    name: 'cron L and # extensions',
    kind: 'OverlayNetwork',
    build: ov(rotation({ schedule: '0 3 L * 1#2' })),
    field: 'spec.keys.rotation.schedule',
    message: 'must be a 5-field cron expression',
  },
  {
    name: 'PSK cron bad too',
    kind: 'OverlayNetwork',
    build: ov(rotation({ presharedKeys: { schedule: '0 3 * * * *' } })),
    field: 'spec.keys.rotation.presharedKeys.schedule',
    message: 'must be a 5-field cron expression',
  },
  // rotation intervals and structure
  {
    name: 'interval below the 10m minimum',
    kind: 'OverlayNetwork',
    build: ov(rotation({ interval: '9m59s' })),
    field: 'spec.keys.rotation.interval',
    message: 'must be at least 10m',
  },
  {
    name: 'interval in days',
    kind: 'OverlayNetwork',
    build: ov(rotation({ interval: '30d' })),
    field: 'spec.keys.rotation.interval',
    message: 'must be a duration',
  },
  {
    name: 'PSK interval below the minimum',
    kind: 'OverlayNetwork',
    build: ov(rotation({ presharedKeys: { interval: '1m' } })),
    field: 'spec.keys.rotation.presharedKeys.interval',
    message: 'must be at least 10m',
  },
  {
    name: 'empty rotation',
    kind: 'OverlayNetwork',
    build: ov(rotation({})),
    field: 'spec.keys.rotation',
    message: 'set a schedule, an interval or a presharedKeys cadence',
  },
  {
    name: 'empty PSK rotation',
    kind: 'OverlayNetwork',
    build: ov(rotation({ interval: '24h', presharedKeys: {} })),
    field: 'spec.keys.rotation.presharedKeys',
    message: 'set a schedule, an interval or both',
  },
  {
    name: 'timeZone without a schedule',
    kind: 'OverlayNetwork',
    build: ov(rotation({ interval: '24h', timeZone: 'UTC' })),
    field: 'spec.keys.rotation.timeZone',
    message: 'timeZone applies only to a schedule',
  },
  {
    name: 'timeZone that is not a zone name',
    kind: 'OverlayNetwork',
    build: ov(rotation({ schedule: '0 3 * * *', timeZone: 'UTC+2 hours' })),
    field: 'spec.keys.rotation.timeZone',
    message: 'must be an IANA time zone name',
  },
  {
    name: 'PSK rotation with PSKs disabled',
    kind: 'OverlayNetwork',
    build: ov(keys({ presharedKeys: 'Disabled', rotation: { presharedKeys: { interval: '1h' } } })),
    field: 'spec.keys.rotation.presharedKeys',
    message: 'needs presharedKeys: PerPair',
  },
  // label selector
  {
    name: 'In without values',
    kind: 'OverlayNetwork',
    build: ov({ nodeSelector: { matchExpressions: [{ key: 'zone', operator: 'In' }] } }),
    field: 'spec.nodeSelector.matchExpressions[0].values',
    message: 'values must be non-empty for In and NotIn',
  },
  {
    name: 'NotIn with empty values',
    kind: 'OverlayNetwork',
    build: ov({ nodeSelector: { matchExpressions: [{ key: 'zone', operator: 'NotIn', values: [] }] } }),
    field: 'spec.nodeSelector.matchExpressions[0].values',
    message: 'values must be non-empty for In and NotIn',
  },
  {
    name: 'Exists with values',
    kind: 'OverlayNetwork',
    build: ov({ nodeSelector: { matchExpressions: [{ key: 'gpu', operator: 'Exists', values: ['yes'] }] } }),
    field: 'spec.nodeSelector.matchExpressions[0].values',
    message: 'empty for Exists and DoesNotExist',
  },
  {
    name: 'unknown selector operator',
    kind: 'OverlayNetwork',
    build: ov({ nodeSelector: { matchExpressions: [{ key: 'zone', operator: 'Equals', values: ['a'] }] } }),
    field: 'spec.nodeSelector.matchExpressions[0].operator',
  },
  {
    name: 'selector key with a space',
    kind: 'OverlayNetwork',
    build: ov({ nodeSelector: { matchExpressions: [{ key: 'my zone', operator: 'Exists' }] } }),
    field: 'spec.nodeSelector.matchExpressions[0].key',
    message: 'must be a label key',
  },
  {
    name: 'matchLabels key with two slashes',
    kind: 'OverlayNetwork',
    build: ov({ nodeSelector: { matchLabels: { 'a/b/c': 'x' } } }),
    field: 'spec.nodeSelector.matchLabels',
    message: 'every key must be a label key',
  },
  {
    name: 'matchLabels value with a space',
    kind: 'OverlayNetwork',
    build: ov({ nodeSelector: { matchLabels: { zone: 'zone a' } } }),
    field: 'spec.nodeSelector.matchLabels',
    message: 'must be a label value',
  },
  // names
  {
    name: 'overlay name longer than a label value',
    kind: 'OverlayNetwork',
    build: (id) => overlay(`bad-${id}-${'x'.repeat(60)}`),
    field: 'metadata.name',
    message: 'metadata.name must be at most 63 characters',
  },
  {
    name: 'tunnel name is not <overlay>.<node>',
    kind: 'NodeTunnel',
    build: (id) => ({ ...tunnel(`bad-${id}`, 'node-1'), metadata: { name: `bad-${id}.node-2` } }),
    field: 'metadata.name',
    message: 'metadata.name must be <spec.overlay>.<spec.nodeName>',
  },
  {
    name: 'nodeName with capitals',
    kind: 'NodeTunnel',
    build: (id) => ({ ...tunnel(`bad-${id}`, 'Node-1'), metadata: { name: `bad-${id}.node-1` } }),
    field: 'spec.nodeName',
  },
  // WireGuard keys
  {
    name: 'all-zero public key',
    kind: 'NodeTunnel',
    build: tu({ publicKey: `${'A'.repeat(43)}=` }),
    field: 'spec.publicKey',
    message: 'must not be the all-zero key',
  },
  {
    name: 'public key of small order (1)',
    kind: 'NodeTunnel',
    build: tu({ publicKey: 'AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=' }),
    field: 'spec.publicKey',
    message: 'must not be an X25519 point of small order',
  },
  {
    name: 'public key of 31 bytes',
    kind: 'NodeTunnel',
    build: tu({ publicKey: Buffer.alloc(31, 7).toString('base64') }),
    field: 'spec.publicKey',
    message: 'must be a base64-encoded 32-byte key',
  },
  {
    name: 'public key of 33 bytes',
    kind: 'NodeTunnel',
    build: tu({ publicKey: Buffer.alloc(33, 7).toString('base64') }),
    field: 'spec.publicKey',
  },
  {
    name: 'public key with non-canonical padding bits',
    kind: 'NodeTunnel',
    build: tu({ publicKey: `${key.slice(0, 42)}h=` }),
    field: 'spec.publicKey',
    message: 'must be a base64-encoded 32-byte key',
  },
  {
    name: 'public key in URL-safe base64',
    kind: 'NodeTunnel',
    build: tu({ publicKey: `${key.slice(0, 10)}-_${key.slice(12)}` }),
    field: 'spec.publicKey',
    message: 'must be a base64-encoded 32-byte key',
  },
  // endpoints
  {
    name: 'IPv6 endpoint without brackets',
    kind: 'NodeTunnel',
    build: tu({ endpoint: 'fd00::7:51820' }),
    field: 'spec.endpoint',
    message: 'must be host:port',
  },
  {
    name: 'endpoint without a port',
    kind: 'NodeTunnel',
    build: tu({ endpoint: '198.18.0.7' }),
    field: 'spec.endpoint',
    message: 'must be host:port',
  },
  {
    name: 'endpoint port 0',
    kind: 'NodeTunnel',
    build: tu({ endpoint: '198.18.0.7:0' }),
    field: 'spec.endpoint',
    message: 'port must be between 1 and 65535',
  },
  {
    name: 'endpoint port 65536',
    kind: 'NodeTunnel',
    build: tu({ endpoint: 'node-7.example.com:65536' }),
    field: 'spec.endpoint',
    message: 'port must be between 1 and 65535',
  },
  {
    name: 'endpoint IPv4 out of range',
    kind: 'NodeTunnel',
    build: tu({ endpoint: '198.18.0.256:51820' }),
    field: 'spec.endpoint',
    message: 'host must be a valid IP address',
  },
  {
    name: 'endpoint IPv4 in brackets',
    kind: 'NodeTunnel',
    build: tu({ endpoint: '[198.18.0.7]:51820' }),
    field: 'spec.endpoint',
    message: 'host must be a valid IP address',
  },
  {
    name: 'endpoint with an IPv6 zone',
    kind: 'NodeTunnel',
    build: tu({ endpoint: '[fe80::7%eth0]:51820' }),
    field: 'spec.endpoint',
    message: 'must be host:port',
  },
  {
    name: 'endpoint with an uppercase host name',
    kind: 'NodeTunnel',
    build: tu({ endpoint: 'Node-7:51820' }),
    field: 'spec.endpoint',
    message: 'must be host:port',
  },
  // tunnel addresses and lists
  {
    name: 'tunnel address without a prefix',
    kind: 'NodeTunnel',
    build: tu({ address: '10.99.0.7' }),
    field: 'spec.address',
    message: 'must be a CIDR',
  },
  {
    name: 'allowedIPs entry with host bits',
    kind: 'NodeTunnel',
    build: tu({ allowedIPs: ['10.244.7.1/24'] }),
    field: 'spec.allowedIPs[0]',
    message: 'must be a network address',
  },
  {
    name: 'allowedIPs duplicate',
    kind: 'NodeTunnel',
    build: tu({ allowedIPs: ['10.99.0.7/32', '10.99.0.7/32'] }),
    field: 'spec.allowedIPs[1]',
  },
  { name: 'negative epoch', kind: 'NodeTunnel', build: tu({ epoch: -1 }), field: 'spec.epoch' },
  {
    name: 'secretRef namespace with capitals',
    kind: 'NodeTunnel',
    build: tu({ secretRef: { namespace: 'Sealmesh', name: 'x' } }),
    field: 'spec.secretRef.namespace',
  },
];

export interface GoodCase {
  name: string;
  kind: Kind;
  build: (id: string) => Obj;
}

const gov = (spec: Record<string, unknown>) => (id: string) => overlay(`good-${id}`, spec);
const gtu = (spec: Record<string, unknown>) => (id: string) => tunnel(`good-${id}`, 'node-1', spec);

export const goodCases: GoodCase[] = [
  { name: 'minimal overlay (defaults fill the rest)', kind: 'OverlayNetwork', build: gov({}) },
  { name: 'IPv4 /30 pool', kind: 'OverlayNetwork', build: gov({ addressPool: '192.168.7.4/30' }) },
  { name: 'IPv4 /8 pool', kind: 'OverlayNetwork', build: gov({ addressPool: '10.0.0.0/8' }) },
  {
    name: 'IPv6 /126 pool, MTU 1280',
    kind: 'OverlayNetwork',
    build: gov({ addressPool: 'fd00:99::4/126', mtu: 1280 }),
  },
  { name: 'IPv6 pool in uppercase hex', kind: 'OverlayNetwork', build: gov({ addressPool: 'FD00:99::/64' }) },
  { name: 'IPv4 pool with a small MTU', kind: 'OverlayNetwork', build: gov({ mtu: 576 }) },
  {
    name: 'keepalive off, max port',
    kind: 'OverlayNetwork',
    build: gov({ persistentKeepalive: '0s', listenPort: 65535 }),
  },
  {
    name: 'keepalive at the 65535s maximum',
    kind: 'OverlayNetwork',
    build: gov({ persistentKeepalive: '18h12m15s' }),
  },
  {
    name: 'cron with names, ranges, lists and steps',
    kind: 'OverlayNetwork',
    build: gov(
      rotation({ schedule: '*/15 1-5/2 1,15 JAN-mar mon-FRI', timeZone: 'America/Argentina/Buenos_Aires' }),
    ),
  },
  {
    name: 'cron with 7 for Sunday and extra spaces',
    kind: 'OverlayNetwork',
    build: gov(rotation({ schedule: '00  03 * * 7' })),
  },
  {
    name: 'schedule and interval together',
    kind: 'OverlayNetwork',
    build: gov(rotation({ schedule: '0 3 * * 0', interval: '720h' })),
  },
  {
    name: 'interval exactly at the minimum',
    kind: 'OverlayNetwork',
    build: gov(rotation({ interval: '10m' })),
  },
  {
    name: 'PSK-only rotation',
    kind: 'OverlayNetwork',
    build: gov(rotation({ presharedKeys: { schedule: '0 * * * *', timeZone: 'Etc/GMT+5' } })),
  },
  {
    name: 'Operator custody without PSKs',
    kind: 'OverlayNetwork',
    build: gov(keys({ custody: 'Operator', presharedKeys: 'Disabled', rotation: { interval: '1h30m' } })),
  },
  {
    name: 'full label selector',
    kind: 'OverlayNetwork',
    build: gov({
      nodeSelector: {
        matchLabels: { 'kubernetes.io/os': 'linux', tier: '' },
        matchExpressions: [
          { key: 'node.example.com/zone', operator: 'NotIn', values: ['z-1', 'z_2'] },
          { key: 'gpu', operator: 'DoesNotExist', values: [] },
        ],
      },
    }),
  },
  {
    name: 'tunnel with everything',
    kind: 'NodeTunnel',
    build: gtu({
      mtu: 1420,
      persistentKeepalive: '0s',
      publicKey: key,
      secretRef: { namespace: 'sealmesh-system', name: 'sealed.node-1' },
    }),
  },
  {
    name: 'tunnel with a bracketed IPv6 endpoint',
    kind: 'NodeTunnel',
    build: gtu({ address: 'fd00:99::7/64', endpoint: '[2001:db8::7]:51820', allowedIPs: ['fd00:99::7/128'] }),
  },
  {
    name: 'tunnel with an IPv4-compatible IPv6 endpoint',
    kind: 'NodeTunnel',
    build: gtu({ endpoint: '[::198.18.0.7]:1' }),
  },
  {
    name: 'tunnel with a DNS endpoint',
    kind: 'NodeTunnel',
    build: gtu({ endpoint: 'node-1.lab.example.com:51820' }),
  },
];

/**
 * Cases only the zod schema rejects, by design: CEL cannot afford these checks. The integration test proves
 * the API server accepts them and the zod schema does not, so the operator reports InvalidSpec.
 */
export const zodOnlyCases: Case[] = [
  {
    name: 'reversed cron range',
    kind: 'OverlayNetwork',
    build: ov(rotation({ schedule: '0 5-1 * * *' })),
    field: 'spec.keys.rotation.schedule',
    message: 'range 5-1 is reversed',
  },
  {
    name: 'reversed day names',
    kind: 'OverlayNetwork',
    build: ov(rotation({ schedule: '0 3 * * fri-mon' })),
    field: 'spec.keys.rotation.schedule',
    message: 'range fri-mon is reversed',
  },
  {
    name: 'cron date that never occurs',
    kind: 'OverlayNetwork',
    build: ov(rotation({ schedule: '0 3 31 2 *' })),
    field: 'spec.keys.rotation.schedule',
    message: 'not a usable cron expression',
  },
  {
    name: 'cron list with a duplicate value',
    kind: 'OverlayNetwork',
    build: ov(rotation({ schedule: '0,0 3 * * *' })),
    field: 'spec.keys.rotation.schedule',
    message: 'duplicate values',
  },
  {
    name: 'unknown time zone',
    kind: 'OverlayNetwork',
    build: ov(rotation({ schedule: '0 3 * * *', timeZone: 'Mars/Olympus_Mons' })),
    field: 'spec.keys.rotation.timeZone',
    message: 'unknown time zone',
  },
];

/** Transition rules: the API server checks them against the stored object, zod via nodeTunnelUpdateIssues. */
export interface UpdateCase {
  name: string;
  change: (spec: Record<string, unknown>) => void;
  field: string;
  message: string;
}

export const badUpdates: UpdateCase[] = [
  {
    name: 'overlay changes',
    change: (s) => (s.overlay = 'other'),
    field: 'spec.overlay',
    message: 'overlay is immutable',
  },
  {
    name: 'nodeName changes',
    change: (s) => (s.nodeName = 'node-2'),
    field: 'spec.nodeName',
    message: 'nodeName is immutable',
  },
  {
    name: 'epoch goes back',
    change: (s) => (s.epoch = 0),
    field: 'spec.epoch',
    message: 'epoch must not decrease',
  },
];

/** Status written through the status subresource (the agent's side of a NodeTunnel). */
export interface StatusCase {
  name: string;
  status: Record<string, unknown>;
  field: string;
  message?: string;
}

const now = '2026-01-01T00:00:00Z';
const peer = (node: string, extra: Record<string, unknown> = {}) => ({
  node,
  state: 'Encrypted',
  since: now,
  epoch: 1,
  ...extra,
});
const ready = { type: 'Ready', status: 'True', reason: 'Applied', message: '', lastTransitionTime: now };

export const goodStatus: Record<string, unknown> = {
  observedGeneration: 1,
  envelopePublicKey: key,
  publicKey: key,
  appliedEpoch: 1,
  stagedEpoch: 1,
  peers: [
    peer('node-2', { lastHandshakeTime: now }),
    peer('node-3', { state: 'Stale', message: 'no handshake for 200s' }),
  ],
  summary: { encrypted: 1, total: 2 },
  peersSummary: '1/2',
  conditions: [ready, { ...ready, type: 'Encrypted', status: 'False', reason: 'PeersStale' }],
};

export const badStatuses: StatusCase[] = [
  {
    name: 'two entries for one peer',
    status: { peers: [peer('node-2'), peer('node-2')] },
    field: 'status.peers[1]',
  },
  {
    name: 'unknown peer state',
    status: { peers: [peer('node-2', { state: 'Up' })] },
    field: 'status.peers[0].state',
  },
  {
    name: 'peer without since',
    status: { peers: [{ node: 'node-2', state: 'Encrypted', epoch: 1 }] },
    field: 'status.peers[0].since',
  },
  {
    name: 'all-zero envelope key',
    status: { envelopePublicKey: `${'A'.repeat(43)}=` },
    field: 'status.envelopePublicKey',
    message: 'must not be the all-zero key',
  },
  {
    name: 'envelope key of small order (order 8)',
    status: { envelopePublicKey: '4Ot6fDtBuK4WVuP68Z/EatoJjeucMrH9hmIFFl9JuAA=' },
    field: 'status.envelopePublicKey',
    message: 'must not be an X25519 point of small order',
  },
  {
    name: 'public key of small order (p + 1, top bit set)',
    status: { publicKey: '7v////////////////////////////////////////8=' },
    field: 'status.publicKey',
    message: 'must not be an X25519 point of small order',
  },
  {
    name: 'condition status Yes',
    status: { conditions: [{ ...ready, status: 'Yes' }] },
    field: 'status.conditions[0].status',
  },
  { name: 'two Ready conditions', status: { conditions: [ready, ready] }, field: 'status.conditions[1]' },
  { name: 'negative applied epoch', status: { appliedEpoch: -1 }, field: 'status.appliedEpoch' },
];
