import { renderMatrix } from './matrix.js';

test('a plain matrix marks each pair once per side, diagonal dashed', () => {
  const out = renderMatrix(
    ['b', 'a', 'c'],
    [
      { a: 'a', b: 'b', state: 'Encrypted', reason: '' },
      { a: 'a', b: 'c', state: 'Degraded', reason: '' },
    ],
    false,
  );
  const rows = out.split('\n');
  expect(rows[1]).toMatch(/^a\s+1\s+- E X$/);
  expect(rows[2]).toMatch(/^b\s+2\s+E - \.$/);
  expect(rows[3]).toMatch(/^c\s+3\s+X \. -$/);
  expect(out).not.toContain('\x1b[');
});

test('colour only when asked', () => {
  expect(renderMatrix(['a', 'b'], [{ a: 'a', b: 'b', state: 'Encrypted', reason: '' }], true)).toContain(
    '\x1b[32m',
  );
});
