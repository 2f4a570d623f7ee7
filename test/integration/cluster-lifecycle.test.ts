// hack/cluster.sh on a throw-away state directory: `up` survives a crashed previous run, and `down` leaves
// no process of ours and no data behind. The shared control plane of the test run is not touched.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { repoRoot } from '../support/cluster.js';

const script = resolve(repoRoot, 'hack/cluster.sh');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function cluster(dir: string, ...args: string[]): string {
  return execFileSync('bash', [script, ...args], {
    env: { ...process.env, SEALMESH_LOCAL_DIR: dir },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

const pidOf = (dir: string, name: string) =>
  Number(readFileSync(join(dir, 'cluster', `${name}.pid`), 'utf8'));

test('up recovers from a crashed run and down removes every process and all data', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sealmesh-cluster-'));
  try {
    cluster(dir, 'up');
    expect(cluster(dir, 'status')).toMatch(/^running: /);
    const firstApi = pidOf(dir, 'kube-apiserver');
    const firstEtcd = pidOf(dir, 'etcd');
    // Simulate a crash: the API server dies, its PID file stays behind.
    process.kill(firstApi, 'SIGKILL');
    expect(() => cluster(dir, 'status')).toThrow();
    cluster(dir, 'up');
    const api = pidOf(dir, 'kube-apiserver');
    const etcd = pidOf(dir, 'etcd');
    expect(api).not.toBe(firstApi);
    expect(alive(firstEtcd)).toBe(false); // the half-dead old plane was cleaned away, not left running
    expect(alive(api) && alive(etcd)).toBe(true);
    const kubectl = join(
      execFileSync('bash', [resolve(repoRoot, 'hack/kube/build.sh')], { encoding: 'utf8' }).trim(),
      'kubectl',
    );
    expect(
      execFileSync(kubectl, ['--kubeconfig', join(dir, 'kubeconfig'), 'get', '--raw', '/readyz'], {
        encoding: 'utf8',
      }),
    ).toBe('ok');
    cluster(dir, 'down');
    expect(alive(api)).toBe(false);
    expect(alive(etcd)).toBe(false);
    expect(existsSync(join(dir, 'cluster'))).toBe(false);
    expect(existsSync(join(dir, 'kubeconfig'))).toBe(false);
    // down is idempotent
    cluster(dir, 'down');
  } finally {
    try {
      cluster(dir, 'down');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}, 120_000);
