// SIGTERM on a real process running a leader-elected manager: it stops its workers and watches, releases
// the Lease (so a successor does not wait out the lease duration) and exits 0.
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { jest } from '@jest/globals';
import { CoordinationV1Api, CoreV1Api } from '@kubernetes/client-node';
import { kubeConfig, kubeconfigPath, repoRoot, uniqueName } from '../support/cluster.js';

jest.setTimeout(60_000);

const kc = kubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const coordination = kc.makeApiClient(CoordinationV1Api);
const ns = uniqueName('rt-sigterm');

beforeAll(async () => {
  await core.createNamespace({ body: { metadata: { name: ns } } });
});

afterAll(async () => {
  await core.deleteNamespace({ name: ns }).catch(() => undefined);
});

test('SIGTERM releases the Lease and exits 0', async () => {
  const lease = uniqueName('lease');
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      resolve(repoRoot, 'test/integration/fixtures/runtime-manager-main.ts'),
      ns,
      lease,
      'proc-1',
    ],
    { cwd: repoRoot, env: { ...process.env, KUBECONFIG: kubeconfigPath }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  try {
    const deadline = Date.now() + 30_000;
    while (!out.includes('LEADING')) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`fixture never led:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(
      (await coordination.readNamespacedLease({ name: lease, namespace: ns })).spec?.holderIdentity,
    ).toBe('proc-1');
    child.kill('SIGTERM');
    await expect(exited).resolves.toBe(0);
    expect(out).toContain('DONE shutdown');
    const l = await coordination.readNamespacedLease({ name: lease, namespace: ns });
    expect(l.spec?.holderIdentity).toBe('');
    expect(l.spec?.leaseDurationSeconds).toBe(1);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});
