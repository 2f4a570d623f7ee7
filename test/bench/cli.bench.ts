// CLI start-up benchmark (`npm run bench`, first): the kubectl plugin as users run it — the one-file bundle
// from `npm run build` (hack/bundle.mjs), copied as `kubectl-sealmesh` into a directory with no
// node_modules and started by its shebang — against `node -e 0` on the same machine, interleaved so both see
// the same load. Target: `kubectl sealmesh --help` within 3x of `node -e 0` (medians). Also times
// `kubectl sealmesh status` against the bench's API server, for reference (a missing overlay: one request).
//
//   BENCH_CLI_RUNS=21  runs of each command (after one warm-up run each)
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { repoRoot } from '../support/cluster.js';

const RUNS = Math.max(3, Number(process.env.BENCH_CLI_RUNS ?? 21));
const TARGET_RATIO = 3;
const OUT_DIR = resolve(repoRoot, '.local', 'bench');

interface Stats {
  medianMs: number;
  minMs: number;
  maxMs: number;
}

function stats(ms: number[]): Stats {
  const s = [...ms].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { medianMs: round(median), minMs: round(s[0]!), maxMs: round(s[s.length - 1]!) };
}
const round = (ms: number) => Math.round(ms * 10) / 10;

/** Wall time of one run, in ms; fails the bench if the exit code is not the expected one. */
function timed(file: string, args: string[], env: NodeJS.ProcessEnv, cwd: string, code = 0): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(file, args, { env, cwd, encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== code) {
    throw new Error(`${file} ${args.join(' ')} exited ${r.status} (want ${code}): ${r.stderr.slice(0, 300)}`);
  }
  return ms;
}

function main(): number {
  execFileSync(process.execPath, [resolve(repoRoot, 'hack/bundle.mjs')], { stdio: 'inherit' });
  const dir = mkdtempSync(join(tmpdir(), 'sealmesh-cli-bench-'));
  try {
    const plugin = join(dir, 'kubectl-sealmesh');
    copyFileSync(resolve(repoRoot, 'dist/kubectl-sealmesh.cjs'), plugin);
    const env = { PATH: dirname(process.execPath), HOME: dir, KUBECONFIG: process.env.KUBECONFIG ?? '' };
    const node = process.execPath;
    const missing = `bench-missing-${process.pid}`;
    const withCluster = env.KUBECONFIG !== '';
    // warm-up: the page cache holds node and the bundle for every measured run alike
    timed(node, ['-e', '0'], env, dir);
    timed(plugin, ['--help'], env, dir);
    const base: number[] = [];
    const help: number[] = [];
    const status: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      base.push(timed(node, ['-e', '0'], env, dir));
      help.push(timed(plugin, ['--help'], env, dir));
      if (withCluster) status.push(timed(plugin, ['status', missing], env, dir, 1));
    }
    const report = {
      node: process.versions.node,
      runs: RUNS,
      nodeE0: stats(base),
      help: stats(help),
      status: withCluster ? stats(status) : undefined,
      ratio: round(stats(help).medianMs / stats(base).medianMs),
      target: TARGET_RATIO,
    };
    const verdict = report.ratio <= TARGET_RATIO ? 'OK' : 'MISS';
    const row = (name: string, s: Stats) =>
      `  ${name.padEnd(36)} ${String(s.medianMs).padStart(8)} ${String(s.minMs).padStart(8)} ${String(s.maxMs).padStart(8)}`;
    console.log(
      [
        `\nsealmesh CLI start-up (Node.js ${report.node}, ${RUNS} runs each, bundle run from a directory without node_modules)\n`,
        `  ${'command'.padEnd(36)} ${'median'.padStart(8)} ${'min'.padStart(8)} ${'max'.padStart(8)}  (ms)`,
        row('node -e 0', report.nodeE0),
        row('kubectl-sealmesh --help', report.help),
        ...(report.status ? [row('kubectl-sealmesh status (1 request)', report.status)] : []),
        `\n  --help / node -e 0: ${report.ratio}x (target <= ${TARGET_RATIO}x: ${verdict})\n`,
      ].join('\n'),
    );
    mkdirSync(OUT_DIR, { recursive: true });
    const json = resolve(OUT_DIR, 'cli.json');
    writeFileSync(json, JSON.stringify(report, null, 2) + '\n');
    console.log(`figures: ${json}`);
    return 0;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

try {
  process.exit(main());
} catch (err) {
  console.error(`cli bench failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
