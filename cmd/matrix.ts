// The pair matrix `kubectl sealmesh status` prints: one row and one column per node, each cell the state of
// that pair as the operator judges it (both sides must report Encrypted at the same epoch).
import type { Pair, PairState } from '../lib/contract/pairs.js';

const SYMBOL: Record<PairState, string> = { Encrypted: 'E', Pending: '.', Degraded: 'X' };
const COLOUR: Record<PairState, string> = {
  Encrypted: '\x1b[32m',
  Pending: '\x1b[33m',
  Degraded: '\x1b[31m',
};
const RESET = '\x1b[0m';

export function renderMatrix(nodes: readonly string[], pairs: readonly Pair[], colour: boolean): string {
  const sorted = [...nodes].sort();
  const state = new Map(pairs.map((p) => [`${p.a}/${p.b}`, p.state]));
  const index = sorted.map((_, i) => String(i + 1));
  const width = Math.max(...index.map((s) => s.length), 1);
  const nameWidth = Math.max(...sorted.map((n) => n.length), 4);
  const lines: string[] = [];
  lines.push(`${' '.repeat(nameWidth + width + 3)}${index.map((s) => s.padStart(width)).join(' ')}`);
  sorted.forEach((row, i) => {
    const cells = sorted.map((col) => {
      if (col === row) return '-'.padStart(width);
      const key = row < col ? `${row}/${col}` : `${col}/${row}`;
      const s = state.get(key) ?? 'Pending';
      const sym = SYMBOL[s].padStart(width);
      return colour ? `${COLOUR[s]}${sym}${RESET}` : sym;
    });
    lines.push(`${row.padEnd(nameWidth)} ${index[i]!.padStart(width)}  ${cells.join(' ')}`);
  });
  lines.push('E = encrypted (both sides, same epoch)   . = pending   X = degraded');
  return lines.join('\n');
}
