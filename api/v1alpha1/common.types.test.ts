import { z } from 'zod';
import { LabelSelectorSchema, fieldPath, formatIssues, parseWith } from './common.types.js';

test.each<[PropertyKey[], string]>([
  [[], ''],
  [['spec'], 'spec'],
  [['spec', 'allowedIPs', 1], 'spec.allowedIPs[1]'],
  [['status', 'peers', 0, 'state'], 'status.peers[0].state'],
  [
    ['spec', 'nodeSelector', 'matchLabels', 'kubernetes.io/os'],
    'spec.nodeSelector.matchLabels.kubernetes.io/os',
  ],
])('fieldPath %j is %s, as the API server writes it', (path, want) => {
  expect(fieldPath(path)).toBe(want);
});

test('formatIssues joins issues and leaves root issues without a path', () => {
  expect(
    formatIssues([
      { path: '', message: 'bad object' },
      { path: 'spec.a', message: 'bad a' },
    ]),
  ).toBe('bad object; spec.a: bad a');
});

test('parseWith returns the parsed value or every issue', () => {
  const s = z.object({ a: z.int().max(3), b: z.string() });
  expect(parseWith(s, { a: 1, b: 'x' })).toEqual({ ok: true, value: { a: 1, b: 'x' } });
  const r = parseWith(s, { a: 9 });
  expect(r.ok).toBe(false);
  if (!r.ok) {
    expect(r.issues.map((i) => i.path)).toEqual(['a', 'b']);
    expect(r.error).toMatch(/^a: .*<=3; b: /);
  }
});

test.each<[string, unknown, boolean]>([
  ['empty selector', {}, true],
  ['matchLabels', { matchLabels: { 'kubernetes.io/os': 'linux', tier: '' } }, true],
  ['In with values', { matchExpressions: [{ key: 'zone', operator: 'In', values: ['a', 'b'] }] }, true],
  [
    'DoesNotExist with empty values',
    { matchExpressions: [{ key: 'gpu', operator: 'DoesNotExist', values: [] }] },
    true,
  ],
  ['In without values', { matchExpressions: [{ key: 'zone', operator: 'In' }] }, false],
  ['Exists with values', { matchExpressions: [{ key: 'zone', operator: 'Exists', values: ['a'] }] }, false],
  ['duplicate values', { matchExpressions: [{ key: 'zone', operator: 'In', values: ['a', 'a'] }] }, false],
  ['key with a space', { matchLabels: { 'a b': 'x' } }, false],
  ['key with an uppercase prefix', { matchLabels: { 'Example.com/a': 'x' } }, false],
  ['value of 64 characters', { matchLabels: { a: 'x'.repeat(64) } }, false],
  ['value ending in a dash', { matchLabels: { a: 'x-' } }, false],
])('label selector: %s', (_, sel, ok) => {
  expect(LabelSelectorSchema.safeParse(sel).success).toBe(ok);
});
