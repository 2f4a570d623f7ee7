import { readFileSync } from 'node:fs';
import { describe, expect, test } from '@jest/globals';
import { CommandError, type CommandRunner } from '../device/wgcli.js';
import { elements, NftFirewall, parseElements } from './nft.js';

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

/** A rule as nft -j prints it: this version's shape (the interface first) unless `old`. */
const rule = (chain: string, handle: number, comment: string, packets = 0, old = false) => {
  const iface = {
    match: {
      op: '!=',
      left: { meta: { key: chain === 'prerouting' ? 'iifname' : 'oifname' } },
      right: 'sm-a',
    },
  };
  const lookup = {
    match: { op: '==', left: { payload: { protocol: 'ip', field: 'daddr' } }, right: '@set' },
  };
  return {
    rule: {
      family: 'inet',
      table: 'sealmesh',
      chain,
      handle,
      comment,
      expr: [
        ...(old ? [lookup, iface] : [iface, lookup]),
        { counter: { packets, bytes: 0 } },
        { drop: null },
      ],
    },
  };
};
/** A set as nft -j prints it; with per-element counters unless `old`. */
const set = (name: string, elem?: unknown[], old = false) => ({
  set: { name, ...(elem ? { elem } : {}), ...(old ? {} : { stmt: [{ counter: null }] }) },
});
const counted = (val: unknown, packets: number, bytes: number) => ({
  elem: { val, counter: { packets, bytes } },
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
    expect(s).toContain('add set inet sealmesh ov_sm_2da_v4 { type ipv4_addr; flags interval; counter; }');
    expect(s).toContain('add element inet sealmesh ov_sm_2da_v4 { 10.95.0.2/32, 10.244.2.0/24 }');
    // the interface first: traffic that leaves through the tunnel never reaches the set's counters
    expect(s).toContain(
      'add rule inet sealmesh output oifname != "sm-a" ip daddr @ov_sm_2da_v4 counter drop comment "sealmesh sm-a out4 FailClosed"',
    );
    expect(s).toContain(
      'add rule inet sealmesh prerouting iifname != "sm-a" ip saddr @ov_sm_2da_v4 counter drop comment "sealmesh sm-a in4 FailClosed"',
    );
    expect(s.match(/^add rule/gm)).toHaveLength(6);
    expect(changes[0]).toBe('table inet sealmesh created');
  });

  test('adopted as found: nothing is written when the kernel holds what is wanted', async () => {
    const table = [
      { table: { name: 'sealmesh' } },
      ...chains,
      set('ov_sm_2da_v4', [
        counted('10.95.0.2', 7, 588),
        counted({ prefix: { addr: '10.244.2.0', len: 24 } }, 23, 1932),
      ]),
      set('ov_sm_2da_v6'),
      ...comments('FailClosed').map((c, i) => rule(chainOf(c), i + 10, c, 5)),
    ];
    const { run, scripts } = scripted(table);
    const fw = new NftFirewall({ run });
    const prefixes = ['10.95.0.2/32', '10.244.2.0/24'];
    expect(await fw.sync({ device: 'sm-a', mode: 'FailClosed', prefixes })).toEqual([]);
    expect(scripts).toEqual([]);
    expect((await fw.read())?.get('sm-a')).toEqual({
      device: 'sm-a',
      mode: 'FailClosed',
      prefixes,
      matched: { packets: 30, bytes: 0 },
      elements: new Map([
        ['10.95.0.2/32', { packets: 7, bytes: 588 }],
        ['10.244.2.0/24', { packets: 23, bytes: 1932 }],
      ]),
    });
  });

  test('a mode change replaces the rules in the same transaction; a set change touches only the elements that differ', async () => {
    const table = [
      { table: { name: 'sealmesh' } },
      ...chains,
      set('ov_sm_2da_v4', [
        counted('10.95.0.2', 1, 84),
        counted({ prefix: { addr: '10.244.0.0', len: 16 } }, 2, 168),
      ]),
      set('ov_sm_2da_v6'),
      ...comments('FailClosed').map((c, i) => rule(chainOf(c), i + 10, c)),
    ];
    const { run, scripts } = scripted(table);
    // a member's pod CIDR is cut out of the declared range: the range goes, its pieces and the CIDR come
    await new NftFirewall({ run }).sync({
      device: 'sm-a',
      mode: 'Monitor',
      prefixes: ['10.95.0.2/32', '10.244.0.0/23', '10.244.2.0/24', '10.244.3.0/24'],
    });
    const lines = scripts[0]!.trim().split('\n');
    // 10.95.0.2 stays (and keeps its counter): neither deleted nor added; no flush
    expect(lines.slice(0, 2)).toEqual([
      'delete element inet sealmesh ov_sm_2da_v4 { 10.244.0.0/16 }',
      'add element inet sealmesh ov_sm_2da_v4 { 10.244.0.0/23, 10.244.2.0/24, 10.244.3.0/24 }',
    ]);
    expect(scripts[0]).not.toContain('flush');
    expect(lines.filter((l) => l.startsWith('add rule')).every((l) => l.includes(' counter comment'))).toBe(
      true,
    );
    expect(lines.filter((l) => l.startsWith('delete rule'))).toHaveLength(6);
  });

  test('remove: the overlay’s rules and sets, and the table with the last overlay', async () => {
    const table = [
      { table: { name: 'sealmesh' } },
      ...chains,
      set('ov_sm_2da_v4'),
      set('ov_sm_2da_v6'),
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

describe('a table of the version before (sets without counters, the set looked up first)', () => {
  const old = [
    { table: { name: 'sealmesh' } },
    ...chains,
    set('ov_sm_2da_v4', ['10.95.0.2', { prefix: { addr: '10.244.2.0', len: 23 } }], true),
    set('ov_sm_2da_v6', undefined, true),
    ...comments('FailClosed').map((c, i) => rule(chainOf(c), i + 10, c, 5, true)),
  ];

  test('is re-made in one transaction: rules, then sets, deleted and added again', async () => {
    const { run, scripts } = scripted(old);
    const changes = await new NftFirewall({ run }).sync({
      device: 'sm-a',
      mode: 'FailClosed',
      prefixes: ['10.95.0.2/32', '10.244.2.0/24', '10.244.3.0/24'],
    });
    expect(scripts).toHaveLength(1);
    const lines = scripts[0]!.trim().split('\n');
    expect(lines.slice(0, 6)).toEqual(
      [10, 11, 12, 13, 14, 15].map((h) => expect.stringMatching(`handle ${h}$`)),
    );
    expect(lines.slice(6, 9)).toEqual([
      'delete set inet sealmesh ov_sm_2da_v4',
      'add set inet sealmesh ov_sm_2da_v4 { type ipv4_addr; flags interval; counter; }',
      'add element inet sealmesh ov_sm_2da_v4 { 10.95.0.2/32, 10.244.2.0/24, 10.244.3.0/24 }',
    ]);
    expect(lines.filter((l) => l.startsWith('add rule'))).toHaveLength(6);
    expect(
      lines
        .filter((l) => l.startsWith('add rule'))
        .every((l) => / (o|i)ifname != "sm-a" ip6? [sd]addr /.test(l)),
    ).toBe(true);
    expect(changes[0]).toBe('sets of sm-a re-made with per-element counters');
  });

  test('rules of the old shape in sets with counters are replaced, the sets kept', async () => {
    const table = [
      ...old.filter((x) => !('set' in x)),
      set('ov_sm_2da_v4', ['10.95.0.2']),
      set('ov_sm_2da_v6'),
    ];
    const { run, scripts } = scripted(table);
    await new NftFirewall({ run }).sync({ device: 'sm-a', mode: 'FailClosed', prefixes: ['10.95.0.2/32'] });
    const lines = scripts[0]!.trim().split('\n');
    expect(lines.filter((l) => l.startsWith('add rule'))).toHaveLength(6);
    expect(lines.filter((l) => l.startsWith('delete rule'))).toHaveLength(6);
    expect(lines.some((l) => l.includes(' set '))).toBe(false);
  });
});

test('elements: addresses, prefixes and ranges, each its own, with their counters', () => {
  const elem = [
    '10.95.0.2',
    { prefix: { addr: '10.244.2.0', len: 24 } },
    { prefix: { addr: '10.244.3.0', len: 24 } },
    { range: ['10.244.4.0', '10.244.5.255'] },
    { elem: { val: 'fd00::1' } },
    counted({ prefix: { addr: 'fd00:244:3::', len: 64 } }, 3, 300),
  ];
  // neighbours stay apart (10.244.2.0/24 and 10.244.3.0/24 are not merged)
  expect(elements(elem)).toEqual([
    '10.95.0.2/32',
    '10.244.2.0/24',
    '10.244.3.0/24',
    '10.244.4.0/23',
    'fd00::1/128',
    'fd00:244:3::/64',
  ]);
  expect(parseElements(elem).at(-1)).toEqual({
    key: 'fd00:244:3::/64',
    cidrs: ['fd00:244:3::/64'],
    counter: { packets: 3, bytes: 300 },
  });
  expect(parseElements(elem)[3]!.key).toBe('10.244.4.0-10.244.5.255');
});
