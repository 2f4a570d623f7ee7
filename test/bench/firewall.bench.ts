// Fail-closed rules benchmark (`npm run bench`; issue 13, "Done when": the cost of a join for the rules at
// 1,000 members). In a network namespace of the bench's own (no control plane, no lab), the agent's real
// rules: NftFirewall (agent/firewall/nft.ts) with the protected set computed by guardedPrefixes
// (agent/guard.ts) for an overlay of BENCH_FW_MEMBERS (default 1,000) members, each a tunnel /32 and a pod /24
// in its NodeTunnel spec, plus a declared range. Then BENCH_FW_JOINS (default 15) times: one member more, one
// sync (timed, as the agent runs it: read the table, compute, write one script), and one sync back without it.
// A CommandRunner wrapped around the real one counts every `nft` invocation and the size of each `nft -f`
// script, to show that a join is ONE `nft -f` (one kernel transaction) and what goes into it.
//
// Two address layouts, because the set's size depends on them:
//   contiguous  as IPAM hands out tunnel addresses and a CNI pod CIDRs; the declared range is the cluster's
//               pod range and covers every pod CIDR (each member's prefixes stay elements of their own, so
//               drops count per peer: about two elements a member, plus the declared rest);
//   scattered   every other tunnel address and every other /24, and a declared range that covers none of
//               them: about two elements a member. A sync deletes and adds only the elements that differ.
// Needs root (ip netns, nft). Prints figures; the exit code is non-zero only when the bench itself failed.
//
//   BENCH_FW_MEMBERS=1000  BENCH_FW_JOINS=15
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { guardedPrefixes } from '../../agent/guard.js';
import { NftFirewall } from '../../agent/firewall/nft.js';
import { localRunner, nsenterRunner, type CommandRunner } from '../../agent/device/wgcli.js';
import type { NodeTunnel } from '../../api/v1alpha1/nodetunnel.types.js';
import { repoRoot } from '../support/cluster.js';

const MEMBERS = Math.max(2, Number(process.env.BENCH_FW_MEMBERS ?? 1000));
const JOINS = Math.max(1, Number(process.env.BENCH_FW_JOINS ?? 15));
const OUT_DIR = resolve(repoRoot, '.local', 'bench');
/** the overlay's WireGuard interface name: the rules only name it, it need not exist */
const DEVICE = 'sm-bench01';

type Layout = 'contiguous' | 'scattered';

/** The NodeTunnel spec fields guardedPrefixes reads (the rest of a NodeTunnel plays no part in the rules). */
function tunnel(layout: Layout, i: number): NodeTunnel {
  const slot = layout === 'contiguous' ? i : 2 * i;
  const host = slot + 1; // in 10.96.0.0/19: 8,190 addresses
  const pod = layout === 'contiguous' ? slot : slot + 2048; // /24 number from 10.0.0.0
  return {
    spec: {
      nodeName: `node-${i}`,
      address: `10.96.${host >> 8}.${host & 255}/19`,
      allowedIPs: [`10.96.${host >> 8}.${host & 255}/32`, `10.${pod >> 8}.${pod & 255}.0/24`],
    },
  } as unknown as NodeTunnel;
}

/** contiguous: the pod range (10.0.0.0/14, 1,024 /24s); scattered: a range that holds no member's prefix */
const declared = (layout: Layout): string[] => [layout === 'contiguous' ? '10.0.0.0/14' : '10.200.0.0/16'];

interface Stats {
  min: number;
  median: number;
  max: number;
}
function stats(values: number[]): Stats {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  const r = (x: number) => Math.round(x * 100) / 100;
  return { min: r(s[0]!), median: r(median), max: r(s[s.length - 1]!) };
}

/** The real runner inside the namespace, counting what goes through it. */
class CountingRunner {
  calls: { argv: string[]; ms: number; scriptBytes?: number; scriptLines?: number }[] = [];
  readonly run: CommandRunner;
  constructor(netns: string) {
    const inner = nsenterRunner(`/run/netns/${netns}`, undefined, localRunner({ timeoutMs: 60_000 }));
    this.run = async (argv) => {
      const call: (typeof this.calls)[number] = { argv: [...argv], ms: 0 };
      if (argv[0] === 'nft' && argv[1] === '-f' && argv[2]) {
        const script = readFileSync(argv[2], 'utf8');
        call.scriptBytes = Buffer.byteLength(script);
        call.scriptLines = script.split('\n').filter(Boolean).length;
      }
      const t0 = performance.now();
      try {
        return await inner(argv);
      } finally {
        call.ms = performance.now() - t0;
        this.calls.push(call);
      }
    };
  }
  take() {
    const c = this.calls;
    this.calls = [];
    return c;
  }
}

interface LayoutFigures {
  layout: Layout;
  members: number;
  setElements: number;
  installMs: number;
  installScriptBytes: number;
  join: {
    syncMs: Stats;
    nftFMs: Stats;
    listMs: Stats;
    nftInvocations: number[];
    nftFInvocations: number[];
    scriptBytes: Stats;
    scriptLines: Stats;
  };
  leave: { syncMs: Stats };
}

async function benchLayout(netns: string, layout: Layout): Promise<LayoutFigures> {
  const counting = new CountingRunner(netns);
  const fw = new NftFirewall({ run: counting.run });
  await fw.uninstall();
  counting.take();
  const base = Array.from({ length: MEMBERS }, (_, i) => tunnel(layout, i));
  const joiner = tunnel(layout, MEMBERS);
  const self = base[0]!.spec.nodeName;
  const dataPlane = { mode: 'FailClosed' as const, protectedRanges: declared(layout) };
  const rules = (tunnels: NodeTunnel[]) => ({
    device: DEVICE,
    mode: dataPlane.mode,
    prefixes: guardedPrefixes(self, tunnels, dataPlane, []),
  });
  const before = rules(base);
  const after = rules([...base, joiner]);
  if (before.prefixes.join() === after.prefixes.join())
    throw new Error(`${layout}: the joiner changes nothing in the set`);

  let t0 = performance.now();
  await fw.sync(before);
  const installMs = performance.now() - t0;
  const install = counting.take();
  const read = await fw.read();
  const held = read?.get(DEVICE)?.prefixes.length ?? 0;
  counting.take();
  if (held !== before.prefixes.length)
    throw new Error(`${layout}: the kernel holds ${held} elements, want ${before.prefixes.length}`);

  const join = { sync: [] as number[], f: [] as number[], list: [] as number[], bytes: [] as number[] };
  const lines: number[] = [];
  const invocations: number[] = [];
  const fInvocations: number[] = [];
  const leave: number[] = [];
  for (let i = 0; i < JOINS; i++) {
    t0 = performance.now();
    const changes = await fw.sync(after);
    join.sync.push(performance.now() - t0);
    const calls = counting.take();
    if (changes.length === 0) throw new Error(`${layout}: the join's sync changed nothing`);
    const f = calls.filter((c) => c.argv[1] === '-f');
    invocations.push(calls.filter((c) => c.argv[0] === 'nft').length);
    fInvocations.push(f.length);
    join.f.push(f.reduce((a, c) => a + c.ms, 0));
    join.list.push(calls.filter((c) => c.argv[1] === '-j').reduce((a, c) => a + c.ms, 0));
    join.bytes.push(f.reduce((a, c) => a + (c.scriptBytes ?? 0), 0));
    lines.push(f.reduce((a, c) => a + (c.scriptLines ?? 0), 0));
    if (i === 0) {
      const now = (await fw.read())?.get(DEVICE)?.prefixes ?? [];
      if (now.join() !== after.prefixes.join())
        throw new Error(`${layout}: the kernel's set is not the joined one`);
      counting.take();
    }
    t0 = performance.now();
    await fw.sync(before);
    leave.push(performance.now() - t0);
    counting.take();
  }
  await fw.uninstall();
  return {
    layout,
    members: MEMBERS,
    setElements: after.prefixes.length,
    installMs: Math.round(installMs * 100) / 100,
    installScriptBytes: install.reduce((a, c) => a + (c.scriptBytes ?? 0), 0),
    join: {
      syncMs: stats(join.sync),
      nftFMs: stats(join.f),
      listMs: stats(join.list),
      nftInvocations: [...new Set(invocations)],
      nftFInvocations: [...new Set(fInvocations)],
      scriptBytes: stats(join.bytes),
      scriptLines: stats(lines),
    },
    leave: { syncMs: stats(leave) },
  };
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error('firewall bench: needs root (ip netns, nft); not run');
    return 1;
  }
  const netns = `sealmesh-bench-fw-${process.pid}`;
  execFileSync('ip', ['netns', 'add', netns]);
  try {
    const figures: LayoutFigures[] = [];
    for (const layout of ['contiguous', 'scattered'] as const) figures.push(await benchLayout(netns, layout));
    const s = (x: Stats) => `${x.min} / ${x.median} / ${x.max}`;
    const out = [
      `\nfail-closed rules: a join at ${MEMBERS} members (nft ${nftVersion()}, ${JOINS} joins per layout, ms min / median / max)\n`,
    ];
    for (const f of figures) {
      out.push(
        `  ${f.layout}: set of ${f.setElements} elements (${f.members} members + the joiner); install ${f.installMs} ms (script ${f.installScriptBytes} B)`,
        `    join: sync ${s(f.join.syncMs)}  of which nft -f ${s(f.join.nftFMs)}, nft -j list ${s(f.join.listMs)}`,
        `          nft invocations per join ${f.join.nftInvocations.join('/')} (nft -f: ${f.join.nftFInvocations.join('/')}), ` +
          `script ${s(f.join.scriptBytes)} B, ${s(f.join.scriptLines)} lines`,
        `    leave: sync ${s(f.leave.syncMs)}`,
      );
    }
    console.log(out.join('\n'));
    mkdirSync(OUT_DIR, { recursive: true });
    const json = resolve(OUT_DIR, 'firewall.json');
    writeFileSync(json, JSON.stringify({ members: MEMBERS, joins: JOINS, figures }, null, 2) + '\n');
    console.log(`figures: ${json}`);
    const notOne = figures.filter((f) => f.join.nftFInvocations.join() !== '1');
    if (notOne.length) {
      console.error(
        `firewall bench: a join took other than one nft -f in ${notOne.map((f) => f.layout).join(', ')}`,
      );
      return 1;
    }
    return 0;
  } finally {
    execFileSync('ip', ['netns', 'del', netns]);
  }
}

function nftVersion(): string {
  try {
    return execFileSync('nft', ['--version'], { encoding: 'utf8' })
      .trim()
      .replace(/^nftables /, '');
  } catch {
    return '?';
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`firewall bench failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
