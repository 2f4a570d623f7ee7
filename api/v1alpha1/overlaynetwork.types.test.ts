import { readFileSync, readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { load } from 'js-yaml';
import { overlay } from '../../test/support/api-cases.js';
import { OVERLAY_LABEL, nodeTunnelName } from './groupversion.js';
import { parseNodeTunnel } from './nodetunnel.types.js';
import { parseOverlayNetwork } from './overlaynetwork.types.js';

const samples = resolve(import.meta.dirname, '..', '..', 'config', 'samples');

test('the API server defaults are zod defaults too', () => {
  const r = parseOverlayNetwork(overlay('o'));
  if (!r.ok) throw new Error(r.error);
  expect(r.value.spec).toEqual({
    addressPool: '10.99.0.0/16',
    listenPort: 51890,
    persistentKeepalive: '25s',
    routePodCIDRs: true,
    keys: { custody: 'Node', presharedKeys: 'PerPair' },
    dataPlane: { mode: 'FailClosed' },
    paused: false,
  });
  expect(r.value.apiVersion).toBe('sealmesh.io/v1alpha1');
  expect(r.value.kind).toBe('OverlayNetwork');
});

test('objects from a list without apiVersion and kind still parse', () => {
  const { apiVersion: _a, kind: _k, ...bare } = overlay('o');
  expect(parseOverlayNetwork(bare).ok).toBe(true);
});

test.each(readdirSync(samples).filter((f) => f.startsWith('sealmesh_')))('sample %s parses', (file) => {
  const obj = load(readFileSync(resolve(samples, file), 'utf8')) as { kind: string };
  const r = obj.kind === 'NodeTunnel' ? parseNodeTunnel(obj) : parseOverlayNetwork(obj);
  if (!r.ok) throw new Error(r.error);
});

test('the rotation sample has a schedule, a time zone and a PSK cadence', () => {
  const obj = load(readFileSync(resolve(samples, 'sealmesh_v1alpha1_overlaynetwork.yaml'), 'utf8'));
  const r = parseOverlayNetwork(obj);
  if (!r.ok) throw new Error(r.error);
  expect(r.value.spec.keys.rotation).toEqual({
    schedule: '0 3 * * 0',
    timeZone: 'UTC',
    presharedKeys: { interval: '24h' },
  });
});

test.each<[string, unknown, string]>([
  ['not an object', 'hello', 'Invalid input: expected object, received string'],
  ['null', null, 'expected object'],
  ['no metadata', { spec: { addressPool: '10.0.0.0/8' } }, 'metadata'],
  ['no spec', { metadata: { name: 'o' } }, 'spec: Invalid input: expected object, received undefined'],
  ['another apiVersion', { ...overlay('o'), apiVersion: 'sealmesh.io/v1' }, 'apiVersion'],
  ['another kind', { ...overlay('o'), kind: 'NodeTunnel' }, 'kind'],
  [
    'a port as a string',
    overlay('o', { listenPort: '51820' }),
    'spec.listenPort: Invalid input: expected number',
  ],
])('an invalid object (%s) is a readable error, never an exception', (_, obj, message) => {
  const r = parseOverlayNetwork(obj);
  expect(r.ok).toBe(false);
  if (!r.ok) expect(r.error).toContain(message);
});

test('several problems are all reported, each with its path', () => {
  const r = parseOverlayNetwork(overlay('o', { addressPool: 'fd00::/64', mtu: 1000, listenPort: 0 }));
  expect(r.ok).toBe(false);
  if (!r.ok) {
    expect(r.issues.map((i) => i.path).sort()).toEqual(['spec.listenPort', 'spec.mtu']);
    expect(r.error).toContain('spec.mtu: mtu must be at least 1280 when addressPool is IPv6');
    expect(r.error).toContain('; ');
  }
});

test('an IPv4 pool may have an MTU below 1280', () => {
  expect(parseOverlayNetwork(overlay('o', { mtu: 1000 })).ok).toBe(true);
});

test('an overlay name must fit in a label value', () => {
  const r = parseOverlayNetwork(overlay('x'.repeat(64)));
  expect(r.ok).toBe(false);
  if (!r.ok) {
    expect(r.error).toContain('metadata.name: metadata.name must be at most 63 characters');
    expect(r.error).toContain(OVERLAY_LABEL);
  }
  expect(parseOverlayNetwork(overlay('x'.repeat(63))).ok).toBe(true);
});

test('nodeTunnelName', () => {
  expect(nodeTunnelName('blue', 'worker-1')).toBe('blue.worker-1');
});
