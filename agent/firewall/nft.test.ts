import { readFileSync } from 'node:fs';
import { describe, expect, test } from '@jest/globals';
import { CommandError, type CommandRunner } from '../device/wgcli.js';
import { elements, NftFirewall } from './nft.js';

/** A runner that answers `nft -j list table` from `table` (undefined: none) and records every nft -f script. */
function scripted(table: unknown[] | undefined): { run: CommandRunner; scripts: string[] } {
  const scripts: string[] = [];
  const run: CommandRunner = (argv) => {
    if (argv.join(' ') === 'nft -j list table inet sealmesh') {
      if (!table) return Promise.reject(new CommandError(argv, 'Error: No such file or directory', 1));
      return Promise.resolve({ stdout: JSON.stringify({ nftables: table }), stderr: '' });
    }
    if (argv[0] === 'nft' && argv[1] === '-f') {
      scripts.push(readFileSync(argv[2]!, 'utf8'));
      return Promise.resolve({ stdout: '', stderr: '' });
    }
    if (argv[0] === 'ip') return Promise.resolve({ stdout: '[]', stderr: '' });
    return Promise.reject(new Error(`unexpected ${argv.join(' ')}`));
  };
  return { run, scripts };
}

const rule = (chain: string, handle: number, comment: string, packets = 0) => ({
  rule: {
    family: 'inet',
    table: 'sealmesh',
    chain,
    handle,
    comment,
    expr: [{ counter: { packets, bytes: 0 } }],
  },
});
const chains = ['output', 'forward', 'prerouting'].map((name) => ({ chain: { name } }));
const comments = (mode: string) =>
  ['out4', 'fwd4', 'in4', 'out6', 'fwd6', 'in6'].map((d) => `sealmesh sm-a ${d} ${mode}`);
const chainOf = (c: string) => (c.includes('out') ? 'output' : c.includes('fwd') ? 'forward' : 'prerouting');

describe('NftFirewall.sync', () => {
  test('no table: one transaction makes table, chains, sets, elements and six rules', async () => {
    const { run, scripts } = scripted(undefined);
    const changes = await new NftFirewall({ run }).sync({
      device: 'sm-a',
      mode: 'FailClosed',
      prefixes: ['10.244.2.0/24', '10.95.0.2/32'],
    });
    expect(scripts).toHaveLength(1);
    const s = scripts[0]!;
    expect(s).toContain('add table inet sealmesh');
    expect(s).toContain(
      'add chain inet sealmesh output { type filter hook output priority 0; policy accept; }',
    );
    expect(s).toContain('add element inet sealmesh ov_sm_2da_v4 { 10.95.0.2/32, 10.244.2.0/24 }');
    expect(s).toContain(
      'add rule inet sealmesh output ip daddr @ov_sm_2da_v4 oifname != "sm-a" counter drop comment "sealmesh sm-a out4 FailClosed"',
    );
    expect(s).toContain(
      'add rule inet sealmesh prerouting ip saddr @ov_sm_2da_v4 iifname != "sm-a" counter drop comment "sealmesh sm-a in4 FailClosed"',
    );
    expect(s.match(/^add rule/gm)).toHaveLength(6);
    expect(changes[0]).toBe('table inet sealmesh created');
  });

  test('adopted as found: nothing is written when the kernel holds what is wanted', async () => {
    const table = [
      { table: { name: 'sealmesh' } },
      ...chains,
      { set: { name: 'ov_sm_2da_v4', elem: [{ prefix: { addr: '10.244.2.0', len: 24 } }] } },
      { set: { name: 'ov_sm_2da_v6' } },
      ...comments('FailClosed').map((c, i) => rule(chainOf(c), i + 10, c, 5)),
    ];
    const { run, scripts } = scripted(table);
    const fw = new NftFirewall({ run });
    expect(await fw.sync({ device: 'sm-a', mode: 'FailClosed', prefixes: ['10.244.2.0/24'] })).toEqual([]);
    expect(scripts).toEqual([]);
    expect((await fw.read())?.get('sm-a')).toEqual({
      device: 'sm-a',
      mode: 'FailClosed',
      prefixes: ['10.244.2.0/24'],
      matched: { packets: 30, bytes: 0 },
    });
  });

  test('a mode change replaces the rules in the same transaction; a set change flushes and refills it', async () => {
    const table = [
      { table: { name: 'sealmesh' } },
      ...chains,
      { set: { name: 'ov_sm_2da_v4', elem: ['10.95.0.2'] } },
      { set: { name: 'ov_sm_2da_v6' } },
      ...comments('FailClosed').map((c, i) => rule(chainOf(c), i + 10, c)),
    ];
    const { run, scripts } = scripted(table);
    await new NftFirewall({ run }).sync({ device: 'sm-a', mode: 'Monitor', prefixes: ['10.244.0.0/16'] });
    const lines = scripts[0]!.trim().split('\n');
    expect(lines.slice(0, 2)).toEqual([
      'flush set inet sealmesh ov_sm_2da_v4',
      'add element inet sealmesh ov_sm_2da_v4 { 10.244.0.0/16 }',
    ]);
    expect(lines.filter((l) => l.startsWith('add rule')).every((l) => l.includes(' counter comment'))).toBe(
      true,
    );
    expect(lines.filter((l) => l.startsWith('delete rule'))).toHaveLength(6);
  });

  test('remove: the overlay’s rules and sets, and the table with the last overlay', async () => {
    const table = [
      { table: { name: 'sealmesh' } },
      ...chains,
      { set: { name: 'ov_sm_2da_v4' } },
      { set: { name: 'ov_sm_2da_v6' } },
      rule('output', 10, 'sealmesh sm-a out4 FailClosed'),
    ];
    const { run, scripts } = scripted(table);
    await new NftFirewall({ run }).remove('sm-a');
    expect(scripts[0]!.trim().split('\n')).toEqual([
      'delete rule inet sealmesh output handle 10',
      'delete set inet sealmesh ov_sm_2da_v4',
      'delete set inet sealmesh ov_sm_2da_v6',
      'delete table inet sealmesh',
    ]);
  });
});

test('elements: addresses, prefixes and ranges as disjoint CIDRs', () => {
  expect(
    elements([
      '10.95.0.2',
      { prefix: { addr: '10.244.2.0', len: 24 } },
      { range: ['10.244.4.0', '10.244.5.255'] },
      { elem: { val: 'fd00::1' } },
    ]),
  ).toEqual(['10.95.0.2/32', '10.244.2.0/24', '10.244.4.0/23', 'fd00::1/128']);
});
