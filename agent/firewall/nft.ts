// Firewall on top of the `nft` command-line tool. Reads with `nft -j list table`, writes one script through
// `nft -f` (one kernel transaction: a set's elements are flushed and re-added, or a rule replaced, with no
// moment in between). Every overlay's objects are named after its WireGuard device, and every rule carries a
// comment that says what it is ("sealmesh <device> <dir> <mode>"), so a sync compares comments, not rule
// expressions, and a rule whose mode or device changed is replaced while its siblings keep their counters.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removePolicyRouting } from '../device/policy.js';
import { localRunner, CommandError, type CommandRunner } from '../device/wgcli.js';
import {
  TABLE,
  type DataPlaneMode,
  type Firewall,
  type OverlayRules,
  type OverlayRulesState,
} from './firewall.js';
import { protectedPrefixes, rangeToCidrs } from './prefixes.js';

/** Base chains: traffic this node sends, traffic it forwards (pods), traffic that arrives. */
const CHAINS = {
  output: 'type filter hook output priority 0; policy accept;',
  forward: 'type filter hook forward priority 0; policy accept;',
  prerouting: 'type filter hook prerouting priority -150; policy accept;',
} as const;
type Chain = keyof typeof CHAINS;

/** The rules of one overlay: where they go and what they match. */
function wantedRules(r: OverlayRules): { chain: Chain; comment: string; body: string }[] {
  const id = setId(r.device);
  const verdict = r.mode === 'FailClosed' ? 'counter drop' : 'counter';
  const out: { chain: Chain; comment: string; body: string }[] = [];
  for (const [fam, proto] of [
    ['4', 'ip'],
    ['6', 'ip6'],
  ] as const) {
    const set = `@${id}_v${fam}`;
    const dev = JSON.stringify(r.device);
    out.push(
      { chain: 'output', comment: `out${fam}`, body: `${proto} daddr ${set} oifname != ${dev} ${verdict}` },
      { chain: 'forward', comment: `fwd${fam}`, body: `${proto} daddr ${set} oifname != ${dev} ${verdict}` },
      {
        chain: 'prerouting',
        comment: `in${fam}`,
        body: `${proto} saddr ${set} iifname != ${dev} ${verdict}`,
      },
    );
  }
  return out.map((x) => ({ ...x, comment: `sealmesh ${r.device} ${x.comment} ${r.mode}` }));
}

/** nft set names take [A-Za-z0-9_]; interface names may have '-', '.', '+', '='. */
function setId(device: string): string {
  return `ov_${device.replace(/[^A-Za-z0-9_]/g, (c) => `_${c.charCodeAt(0).toString(16)}`)}`;
}

interface NftRule {
  chain: string;
  handle: number;
  comment?: string;
  expr?: Array<Record<string, unknown>>;
}
interface NftSet {
  name: string;
  elem?: unknown[];
}
interface Table {
  chains: Set<string>;
  sets: Map<string, string[]>;
  rules: NftRule[];
}

export interface NftFirewallOptions {
  run?: CommandRunner;
  /** where the script for `nft -f` is written (no secrets in it); default the OS temp dir */
  scriptDir?: string;
}

export class NftFirewall implements Firewall {
  private readonly run: CommandRunner;
  private readonly scriptDir: string;

  constructor(options: NftFirewallOptions = {}) {
    this.run = options.run ?? localRunner();
    this.scriptDir = options.scriptDir ?? tmpdir();
  }

  async sync(rules: OverlayRules): Promise<string[]> {
    const prefixes = protectedPrefixes({
      members: rules.prefixes,
      declared: [],
      onDevice: [],
      own: [],
      nonMembers: [],
    });
    const table = await this.table();
    const id = setId(rules.device);
    const lines: string[] = [];
    const changes: string[] = [];
    if (!table) {
      lines.push(`add table inet ${TABLE}`);
      changes.push(`table inet ${TABLE} created`);
    }
    for (const [chain, spec] of Object.entries(CHAINS)) {
      if (!table?.chains.has(chain)) lines.push(`add chain inet ${TABLE} ${chain} { ${spec} }`);
    }
    for (const fam of ['4', '6'] as const) {
      const name = `${id}_v${fam}`;
      const want = prefixes.filter((p) => p.includes(':') === (fam === '6'));
      const have = table?.sets.get(name);
      if (have === undefined)
        lines.push(
          `add set inet ${TABLE} ${name} { type ${fam === '4' ? 'ipv4_addr' : 'ipv6_addr'}; flags interval; }`,
        );
      if ((have ?? []).join(',') !== want.join(',')) {
        if (have !== undefined) lines.push(`flush set inet ${TABLE} ${name}`);
        if (want.length) lines.push(`add element inet ${TABLE} ${name} { ${want.join(', ')} }`);
        changes.push(`set ${name}: ${have?.join(',') || '(empty)'} -> ${want.join(',') || '(empty)'}`);
      }
    }
    const wanted = wantedRules(rules);
    const mine = (table?.rules ?? []).filter((r) => r.comment?.startsWith(`sealmesh ${rules.device} `));
    for (const w of wanted) {
      if (mine.some((r) => r.chain === w.chain && r.comment === w.comment)) continue;
      lines.push(`add rule inet ${TABLE} ${w.chain} ${w.body} comment ${JSON.stringify(w.comment)}`);
      changes.push(`rule added: ${w.comment}`);
    }
    for (const r of mine) {
      if (wanted.some((w) => w.chain === r.chain && w.comment === r.comment)) continue;
      lines.push(`delete rule inet ${TABLE} ${r.chain} handle ${r.handle}`);
      changes.push(`rule removed: ${r.comment ?? `handle ${r.handle}`}`);
    }
    if (lines.length) await this.apply(lines);
    return changes;
  }

  async remove(device: string): Promise<void> {
    const table = await this.table();
    if (!table) return;
    const id = setId(device);
    const lines: string[] = [];
    for (const r of table.rules) {
      if (r.comment?.startsWith(`sealmesh ${device} `))
        lines.push(`delete rule inet ${TABLE} ${r.chain} handle ${r.handle}`);
    }
    for (const name of table.sets.keys())
      if (name.startsWith(`${id}_v`)) lines.push(`delete set inet ${TABLE} ${name}`);
    const others = [...table.sets.keys()].filter((n) => !n.startsWith(`${id}_v`));
    // the table goes with the last overlay (rules first: a set in use cannot be deleted)
    if (others.length === 0) lines.push(`delete table inet ${TABLE}`);
    if (lines.length) await this.apply(lines);
    // the node left its last overlay: sealmesh's policy rule goes with the table
    if (others.length === 0) await removePolicyRouting(this.run);
  }

  async read(): Promise<Map<string, OverlayRulesState> | undefined> {
    const table = await this.table();
    if (!table) return undefined;
    const out = new Map<string, OverlayRulesState>();
    for (const r of table.rules) {
      const m = /^sealmesh (\S+) (?:out|fwd|in)[46] (FailClosed|Monitor)$/.exec(r.comment ?? '');
      if (!m) continue;
      const [, device = '', mode] = m;
      let o = out.get(device);
      if (!o) {
        const id = setId(device);
        o = {
          device,
          mode: mode as DataPlaneMode,
          prefixes: [...(table.sets.get(`${id}_v4`) ?? []), ...(table.sets.get(`${id}_v6`) ?? [])],
          matched: { packets: 0, bytes: 0 },
        };
        out.set(device, o);
      }
      for (const e of r.expr ?? []) {
        const c = e.counter as { packets?: number; bytes?: number } | undefined;
        if (c) {
          o.matched.packets += c.packets ?? 0;
          o.matched.bytes += c.bytes ?? 0;
        }
      }
    }
    return out;
  }

  async uninstall(): Promise<void> {
    if (await this.table()) await this.run(['nft', 'delete', 'table', 'inet', TABLE]);
  }

  private async table(): Promise<Table | undefined> {
    let stdout: string;
    try {
      ({ stdout } = await this.run(['nft', '-j', 'list', 'table', 'inet', TABLE]));
    } catch (err) {
      if (err instanceof CommandError && /No such file or directory|does not exist/i.test(err.stderr))
        return undefined;
      throw err;
    }
    let parsed: { nftables?: Array<Record<string, unknown>> };
    try {
      parsed = JSON.parse(stdout) as typeof parsed;
    } catch {
      throw new Error(`unexpected output from nft -j list table inet ${TABLE}: not JSON`);
    }
    const t: Table = { chains: new Set(), sets: new Map(), rules: [] };
    for (const item of parsed.nftables ?? []) {
      if (item.chain) t.chains.add((item.chain as { name: string }).name);
      if (item.set) {
        const s = item.set as NftSet;
        t.sets.set(s.name, elements(s.elem ?? []));
      }
      if (item.rule) t.rules.push(item.rule as NftRule);
    }
    return t;
  }

  private async apply(lines: string[]): Promise<void> {
    const dir = await mkdtemp(join(this.scriptDir, 'sealmesh-nft-'));
    try {
      const path = join(dir, 'rules.nft');
      await writeFile(path, `${lines.join('\n')}\n`, { mode: 0o600 });
      await this.run(['nft', '-f', path]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

/** A set's elements as nft -j prints them (address, prefix or range) to normalized, disjoint CIDRs. */
export function elements(elem: unknown[]): string[] {
  const cidrs: string[] = [];
  for (const e of elem) {
    if (typeof e === 'string') cidrs.push(e);
    else if (e && typeof e === 'object') {
      const o = e as {
        prefix?: { addr: string; len: number };
        range?: [string, string];
        elem?: { val?: unknown };
      };
      if (o.prefix) cidrs.push(`${o.prefix.addr}/${o.prefix.len}`);
      else if (o.range) cidrs.push(...rangeToCidrs(o.range[0], o.range[1]));
      else if (o.elem?.val !== undefined) cidrs.push(...elements([o.elem.val]));
    }
  }
  return protectedPrefixes({ members: cidrs, declared: [], onDevice: [], own: [], nonMembers: [] });
}
