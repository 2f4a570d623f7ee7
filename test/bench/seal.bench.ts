// Sealing benchmark (`npm run bench`): the operator's cost of sealing key material at N nodes (default 1,000),
// in process, without a control plane: the plans (operator/plan/keysecret.ts) and the encoding of the key
// Secrets, as the operator runs them. It prints, per scenario, the CPU time (process.cpuUsage: user+system)
// and the bytes of the Secrets' data (mean and largest per node):
//   1. a rotation: every node's Secret of a new epoch, every pair's PSK new (warm Sealer: the envelope keys
//      are those of the epoch before);
//   2. the same after an operator restart (cold Sealer: every shared secret derived again);
//   3. a join: the N-th node's Secret (it owns a pair with each of the others).
// Nodes join one after another, so node i owns i pairs: the largest Secret is the last node's.
//
//   BENCH_SEAL_NODES=1000
import nacl from 'tweetnacl';
import { encodeKeySecretData } from '../../lib/contract/keysecret.js';
import { Sealer } from '../../lib/seal.js';
import { planKeySecret, type Member } from '../../operator/plan/keysecret.js';

const N = Math.max(2, Number(process.env.BENCH_SEAL_NODES ?? 1000));
const OVERLAY = 'bench';

function members(): Member[] {
  const t0 = Date.parse('2026-01-01T00:00:00Z');
  return Array.from({ length: N }, (_, i) => ({
    name: `node-${String(i).padStart(4, '0')}`,
    createdAt: new Date(t0 + i * 1000).toISOString(),
    envelopePublicKey: Buffer.from(nacl.box.keyPair().publicKey).toString('base64'),
  }));
}

interface Figures {
  cpuMs: number;
  secrets: number;
  bytes: number;
  maxBytes: number;
}

function cpuMs(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1000;
}

/** Plans and encodes the Secrets of `nodes` at `epoch`, as a rotation or a join does. */
function sealAll(sealer: Sealer, all: Member[], nodes: Member[], epoch: number): Figures {
  const start = process.cpuUsage();
  let bytes = 0;
  let maxBytes = 0;
  for (const m of nodes) {
    const plan = planKeySecret(
      { overlay: OVERLAY, node: m.name, epoch, presharedKeys: 'PerPair', custody: 'Node', members: all },
      sealer,
    );
    const data = encodeKeySecretData(plan.payload);
    const size = Object.values(data).reduce((s, v) => s + v.length, 0);
    bytes += size;
    maxBytes = Math.max(maxBytes, size);
  }
  return { cpuMs: cpuMs(start), secrets: nodes.length, bytes, maxBytes };
}

function main(): void {
  const all = members();
  const operator = nacl.box.keyPair();
  const warm = new Sealer(operator);
  sealAll(warm, all, all, 1); // the epoch before: the Sealer knows every envelope key, the JIT is warm
  const rows: Array<[string, Figures]> = [
    ['rotation (warm Sealer)', sealAll(warm, all, all, 2)],
    ['rotation after a restart (cold Sealer)', sealAll(new Sealer(operator), all, all, 3)],
    ['join of the last node (warm Sealer)', sealAll(warm, all, all.slice(-1), 4)],
  ];
  const fmt = (n: number) => String(Math.round(n)).padStart(12);
  const lines = [
    `\nsealmesh sealing cost at ${N} nodes (Node.js ${process.versions.node}, in process, CPU time user+system)\n`,
    `  ${'scenario'.padEnd(40)} ${'CPU ms'.padStart(12)} ${'CPU ms/node'.padStart(12)} ${'bytes/node'.padStart(12)} ${'max bytes'.padStart(12)} ${'total MiB'.padStart(12)}`,
  ];
  for (const [name, f] of rows) {
    lines.push(
      `  ${name.padEnd(40)} ${fmt(f.cpuMs)} ${(f.cpuMs / f.secrets).toFixed(2).padStart(12)} ${fmt(f.bytes / f.secrets)} ${fmt(f.maxBytes)} ${(f.bytes / 2 ** 20).toFixed(1).padStart(12)}`,
    );
  }
  console.log(lines.join('\n'));
  console.log(JSON.stringify({ bench: 'seal', nodes: N, rows: Object.fromEntries(rows) }));
}

main();
