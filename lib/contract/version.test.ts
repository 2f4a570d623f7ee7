import { readFileSync } from 'node:fs';
import {
  AGENT_INFO,
  KEY_PAYLOAD_VERSION,
  KEY_PAYLOADS_READ,
  parseRelease,
  RELEASE,
  releasesApart,
} from './version.js';

test('the release moves with package.json and the Helm chart', () => {
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
  const chart = readFileSync('charts/sealmesh/Chart.yaml', 'utf8');
  expect(pkg.version).toBe(RELEASE);
  expect(chart).toMatch(new RegExp(`^version: ${RELEASE.replace(/\./g, '\\.')}$`, 'm'));
  expect(chart).toMatch(new RegExp(`^appVersion: ${RELEASE.replace(/\./g, '\\.')}$`, 'm'));
});

test('this build reads the key payload it writes, and says so', () => {
  expect(KEY_PAYLOADS_READ).toContain(KEY_PAYLOAD_VERSION);
  expect(AGENT_INFO).toEqual({ version: RELEASE, keyPayloads: [...KEY_PAYLOADS_READ] });
});

test.each<[string, ReturnType<typeof parseRelease>]>([
  ['0.2.0', { major: 0, minor: 2, patch: 0 }],
  ['v1.10.3', { major: 1, minor: 10, patch: 3 }],
  ['0.3.0-rc.1', { major: 0, minor: 3, patch: 0 }],
  ['0.2', undefined],
  ['latest', undefined],
  ['0.2.0 ', undefined],
])('parseRelease(%j)', (v, want) => {
  expect(parseRelease(v)).toEqual(want);
});

test('releases apart: minors within a major, another major out of reach', () => {
  const r = (v: string) => parseRelease(v)!;
  expect(releasesApart(r('0.2.0'), r('0.1.9'))).toBe(1);
  expect(releasesApart(r('0.1.0'), r('0.3.0'))).toBe(2);
  expect(releasesApart(r('0.2.0'), r('0.2.7'))).toBe(0);
  expect(releasesApart(r('1.0.0'), r('0.9.0'))).toBe(Infinity);
});
