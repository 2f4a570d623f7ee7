// Sealing benchmark (`npm run bench`): the operator's cost of sealing key material at N nodes (default 1,000),
// in process, without a control plane: the plans (operator/plan/keysecret.ts) and the encoding of the key
// Secrets, as the operator runs them. It prints, per scenario, the CPU time (process.cpuUsage: user+system)
// and the bytes of the Secrets' data (mean and largest per node), once with classical sealing (nodes that
// publish no ML-KEM key: what every node got before issue #17) and once hybrid (X25519 + ML-KEM-768):
//   1. a rotation: every node's Secret of a new epoch, every pair's PSK new (warm Sealer: the envelope keys
//      are those of the epoch before; hybrid: one ML-KEM encapsulation per node, as every epoch needs);
//   2. the same after an operator restart (cold Sealer and key-exchange book);
//   3. a join: the N-th node's Secret (it owns a pair with each of the others);
//   4. hybrid only: a join right after an operator restart: the exchanges with the N-1 others are made again,
//      and their own Secrets must be rewritten once to record them (counted, not planned here).
// Nodes join one after another, so node i owns i pairs: the largest Secret is the last node's.
//
//   BENCH_SEAL_NODES=1000
import nacl from 'tweetnacl';
import { encodeKeySecretData } from '../../lib/contract/keysecret.js';
import { newKemKeyPair } from '../../lib/hybrid.js';
import { Sealer } from '../../lib/seal.js';
import { KemBook } from '../../operator/plan/kembook.js';
import { planKeySecret, type Member, type Sealing } from '../../operator/plan/keysecret.js';

const N = Math.max(2, Number(process.env.BENCH_SEAL_NODES ?? 1000));
const OVERLAY = 'bench';

function members(hybrid: boolean): Member[] {
  const t0 = Date.parse('2026-01-01T00:00:00Z');
  return Array.from({ length: N }, (_, i) => ({
    name: `node-${String(i).padStart(4, '0')}`,
    createdAt: new Date(t0 + i * 1000).toISOString(),
    envelopePublicKey: Buffer.from(nacl.box.keyPair().publicKey).toString('base64'),
    envelopeKemPublicKey: hybrid ? Buffer.from(newKemKeyPair().publicKey).toString('base64') : undefined,
  }));
}

interface Figures {
  cpuMs: number;
  secrets: number;
  bytes: number;
  maxBytes: number;
  /** ML-KEM encapsulations made */
  encapsulations?: number;
  /** nodes whose own Secret must be rewritten to record an exchange made for them by another node's plan */
  rewrites?: number;
}

function cpuMs(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1000;
}

/** Plans and encodes the Secrets of `nodes` at `epoch`, as a rotation or a join does. */
function sealAll(sealing: Sealing, all: Member[], nodes: Member[], epoch: number): Figures {
  const start = process.cpuUsage();
  const encapsulations = sealing.kems?.encapsulations ?? 0;
  let bytes = 0;
  let maxBytes = 0;
  for (const m of nodes) {
    const plan = planKeySecret(
      { overlay: OVERLAY, node: m.name, epoch, presharedKeys: 'PerPair', custody: 'Node', members: all },
      sealing,
    );
    if (plan.kemRecorded) sealing.kems?.recorded(OVERLAY, m.name, plan.kemRecorded);
    const data = encodeKeySecretData(plan.payload);
    const size = Object.values(data).reduce((s, v) => s + v.length, 0);
    bytes += size;
    maxBytes = Math.max(maxBytes, size);
  }
  const cpu = cpuMs(start);
  if (!sealing.kems) return { cpuMs: cpu, secrets: nodes.length, bytes, maxBytes };
  return {
    cpuMs: cpu,
    secrets: nodes.length,
    bytes,
    maxBytes,
    encapsulations: sealing.kems.encapsulations - encapsulations,
    rewrites: sealing.kems.unrecordedNodes(OVERLAY, epoch).length,
  };
}

function scenarios(hybrid: boolean): Array<[string, Figures]> {
  const kind = hybrid ? 'hybrid' : 'classical';
  const all = members(hybrid);
  const operator = nacl.box.keyPair();
  const sealing = (): Sealing => ({
    sealer: new Sealer(operator),
    kems: hybrid ? new KemBook(operator) : undefined,
  });
  const warm = sealing();
  sealAll(warm, all, all, 1); // the epoch before: the Sealer knows every envelope key, the JIT is warm
  const rows: Array<[string, Figures]> = [
    [`${kind}: rotation (warm)`, sealAll(warm, all, all, 2)],
    [`${kind}: rotation after a restart`, sealAll(sealing(), all, all, 3)],
    [`${kind}: join of the last node (warm)`, sealAll(warm, all, all.slice(-1), 2)],
  ];
  if (hybrid) {
    rows.push([`${kind}: join right after a restart`, sealAll(sealing(), all, all.slice(-1), 2)]);
  }
  return rows;
}

function main(): void {
  const rows = [...scenarios(false), ...scenarios(true)];
  const fmt = (n: number) => String(Math.round(n)).padStart(12);
  const lines = [
    `\nsealmesh sealing cost at ${N} nodes (Node.js ${process.versions.node}, in process, CPU time user+system)\n`,
    `  ${'scenario'.padEnd(42)} ${'CPU ms'.padStart(10)} ${'CPU ms/node'.padStart(12)} ${'bytes/node'.padStart(11)} ${'max bytes'.padStart(10)} ${'total MiB'.padStart(10)} ${'ML-KEM encaps'.padStart(14)} ${'rewrites'.padStart(9)}`,
  ];
  for (const [name, f] of rows) {
    lines.push(
      `  ${name.padEnd(42)} ${fmt(f.cpuMs).slice(2)} ${(f.cpuMs / f.secrets).toFixed(2).padStart(12)} ${fmt(f.bytes / f.secrets).slice(1)} ${fmt(f.maxBytes).slice(2)} ${(f.bytes / 2 ** 20).toFixed(1).padStart(10)} ${String(f.encapsulations ?? '-').padStart(14)} ${String(f.rewrites ?? '-').padStart(9)}`,
    );
  }
  console.log(lines.join('\n'));
  console.log(JSON.stringify({ bench: 'seal', nodes: N, rows: Object.fromEntries(rows) }));
}

main();
