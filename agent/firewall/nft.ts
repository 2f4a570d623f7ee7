// Firewall on top of the `nft` command-line tool. Reads with `nft -j list table`, writes one script through
// `nft -f` (one kernel transaction: elements deleted and added, a rule replaced, or a set re-created, with no
// moment in between). Every overlay's objects are named after its WireGuard device, and every rule carries a
// comment that says what it is ("sealmesh <device> <dir> <mode>"), so a sync compares comments, not rule
// expressions, and a rule whose mode or device changed is replaced while its siblings keep their counters.
//
// The sets carry a counter per element and a sync changes only the elements that differ, so every member's
// prefixes keep their own count of would-be plaintext (what agent/drops.ts attributes to peers). The rules
// test the interface before the set (`oifname != dev ip daddr @set`): a lookup that matches counts on the
// element, so traffic that leaves through the tunnel must never reach it. A table of the version before
// (sets without counters, the lookup first) is re-made in one transaction: rules and sets deleted and added
// again, never a moment without them; its counters start again from zero.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removePolicyRouting } from '../device/policy.js';
import { localRunner, CommandError, type CommandRunner } from '../device/wgcli.js';
import {
  TABLE,
  type Counter,
  type DataPlaneMode,
  type Firewall,
  type OverlayRules,
  type OverlayRulesState,
} from './firewall.js';
import { disjointCidrs, rangeToCidrs } from './prefixes.js';

/** Base chains: traffic this node sends, traffic it forwards (pods), traffic that arrives. */
const CHAINS = {
  output: 'type filter hook output priority 0; policy accept;',
  forward: 'type filter hook forward priority 0; policy accept;',
  prerouting: 'type filter hook prerouting priority -150; policy accept;',
} as const;
type Chain = keyof typeof CHAINS;

/** The rules of one overlay: where they go and what they match (the interface first: see the top). */
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
      { chain: 'output', comment: `out${fam}`, body: `oifname != ${dev} ${proto} daddr ${set} ${verdict}` },
      { chain: 'forward', comment: `fwd${fam}`, body: `oifname != ${dev} ${proto} daddr ${set} ${verdict}` },
      {
        chain: 'prerouting',
        comment: `in${fam}`,
        body: `iifname != ${dev} ${proto} saddr ${set} ${verdict}`,
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
  /** `[{counter: null}]` on a set whose elements carry counters */
  stmt?: Array<Record<string, unknown>>;
}

/** One element as the kernel holds it: how a script names it, the CIDRs it covers, its counter. */
export interface ParsedElement {
  key: string;
  cidrs: string[];
  counter: Counter;
}

interface SetState {
  elements: ParsedElement[];
  /** the set carries per-element counters (a set of the version before does not) */
  counters: boolean;
}
interface Table {
  chains: Set<string>;
  sets: Map<string, SetState>;
  rules: NftRule[];
}

/** A rule of this version tests the interface before the set (the version before did it the other way). */
function currentShape(r: NftRule): boolean {
  const first = r.expr?.[0]?.match as { left?: { meta?: { key?: string } } } | undefined;
  const key = first?.left?.meta?.key;
  return key === 'oifname' || key === 'iifname';
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
    const prefixes = disjointCidrs(rules.prefixes);
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
    const mine = (table?.rules ?? []).filter((r) => r.comment?.startsWith(`sealmesh ${rules.device} `));
    const names = (['4', '6'] as const).map((fam) => `${id}_v${fam}`);
    // A table of the version before: its rules and sets are re-made in this same transaction (rules first:
    // a set in use cannot be deleted).
    const migrate = names.some((n) => table?.sets.get(n)?.counters === false);
    if (migrate) {
      for (const r of mine) lines.push(`delete rule inet ${TABLE} ${r.chain} handle ${r.handle}`);
      changes.push(`sets of ${rules.device} re-made with per-element counters`);
    }
    for (const fam of ['4', '6'] as const) {
      const name = `${id}_v${fam}`;
      const want = prefixes.filter((p) => p.includes(':') === (fam === '6'));
      const found = table?.sets.get(name);
      if (found && migrate) lines.push(`delete set inet ${TABLE} ${name}`);
      const have = migrate ? undefined : found;
      if (have === undefined)
        lines.push(
          `add set inet ${TABLE} ${name} { type ${fam === '4' ? 'ipv4_addr' : 'ipv6_addr'}; flags interval; counter; }`,
        );
      // Only what differs: the elements that stay keep their counters. Deletions first (the same
      // transaction may add an element that overlaps one it deletes).
      const wanted = new Set(want);
      const kept = new Set<string>();
      const gone: string[] = [];
      for (const e of have?.elements ?? []) {
        if (!e.key.includes('-') && wanted.has(e.cidrs[0]!)) kept.add(e.cidrs[0]!);
        else gone.push(e.key);
      }
      const added = want.filter((p) => !kept.has(p));
      if (gone.length) lines.push(`delete element inet ${TABLE} ${name} { ${gone.join(', ')} }`);
      if (added.length) lines.push(`add element inet ${TABLE} ${name} { ${added.join(', ')} }`);
      if (gone.length || added.length)
        changes.push(`set ${name}: +${added.join(',') || '(none)'} -${gone.join(',') || '(none)'}`);
    }
    const wanted = wantedRules(rules);
    const current = migrate ? [] : mine.filter(currentShape);
    for (const w of wanted) {
      if (current.some((r) => r.chain === w.chain && r.comment === w.comment)) continue;
      lines.push(`add rule inet ${TABLE} ${w.chain} ${w.body} comment ${JSON.stringify(w.comment)}`);
      if (!migrate) changes.push(`rule added: ${w.comment}`);
    }
    for (const r of migrate ? [] : mine) {
      if (current.includes(r) && wanted.some((w) => w.chain === r.chain && w.comment === r.comment)) continue;
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
        const sets = [table.sets.get(`${id}_v4`), table.sets.get(`${id}_v6`)];
        const elements = new Map<string, Counter>();
        for (const e of sets.flatMap((s) => s?.elements ?? []))
          // a range element (never written by sealmesh) counts on its first CIDR
          e.cidrs.forEach((c, i) => elements.set(c, i === 0 ? e.counter : { packets: 0, bytes: 0 }));
        o = {
          device,
          mode: mode as DataPlaneMode,
          prefixes: [...elements.keys()],
          matched: { packets: 0, bytes: 0 },
          elements,
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
        t.sets.set(s.name, {
          elements: parseElements(s.elem ?? []),
          counters: (s.stmt ?? []).some((x) => 'counter' in x),
        });
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

/** A set's elements as nft -j prints them (address, prefix, range; with a counter or not). */
export function parseElements(elem: unknown[]): ParsedElement[] {
  const out: ParsedElement[] = [];
  for (const e of elem) {
    let val: unknown = e;
    let counter: Counter = { packets: 0, bytes: 0 };
    const wrapped = (e as { elem?: { val?: unknown; counter?: Partial<Counter> } } | null)?.elem;
    if (wrapped && typeof e === 'object') {
      val = wrapped.val;
      counter = { packets: wrapped.counter?.packets ?? 0, bytes: wrapped.counter?.bytes ?? 0 };
    }
    if (typeof val === 'string') {
      out.push({ key: val, cidrs: disjointCidrs([val]), counter });
    } else if (val && typeof val === 'object') {
      const o = val as { prefix?: { addr: string; len: number }; range?: [string, string] };
      if (o.prefix) {
        const cidr = `${o.prefix.addr}/${o.prefix.len}`;
        out.push({ key: cidr, cidrs: disjointCidrs([cidr]), counter });
      } else if (o.range)
        out.push({
          key: `${o.range[0]}-${o.range[1]}`,
          cidrs: rangeToCidrs(o.range[0], o.range[1]),
          counter,
        });
    }
  }
  return out;
}

/** A set's elements as disjoint CIDRs (each element's own, not merged with its neighbours). */
export function elements(elem: unknown[]): string[] {
  return parseElements(elem).flatMap((e) => e.cidrs);
}
