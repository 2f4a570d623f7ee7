import { matchesSelector, type LabelSelector } from './selector.js';

const labels = { role: 'worker', zone: 'a' };

test.each<[string, LabelSelector | undefined, boolean]>([
  ['absent selects all', undefined, true],
  ['empty selects all', {}, true],
  ['matchLabels hit', { matchLabels: { role: 'worker' } }, true],
  ['matchLabels miss', { matchLabels: { role: 'db' } }, false],
  ['In hit', { matchExpressions: [{ key: 'zone', operator: 'In', values: ['a', 'b'] }] }, true],
  ['In on a missing key', { matchExpressions: [{ key: 'gpu', operator: 'In', values: ['x'] }] }, false],
  ['NotIn excludes', { matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['a'] }] }, false],
  [
    'NotIn on a missing key matches',
    { matchExpressions: [{ key: 'gpu', operator: 'NotIn', values: ['x'] }] },
    true,
  ],
  ['Exists', { matchExpressions: [{ key: 'role', operator: 'Exists' }] }, true],
  ['DoesNotExist', { matchExpressions: [{ key: 'role', operator: 'DoesNotExist' }] }, false],
  [
    'all terms must hold',
    { matchLabels: { role: 'worker' }, matchExpressions: [{ key: 'zone', operator: 'In', values: ['b'] }] },
    false,
  ],
])('%s', (_name, selector, want) => {
  expect(matchesSelector(selector, labels)).toBe(want);
});
