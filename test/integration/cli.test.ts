// The kubectl plugin as users get it: the one-file bundle that `npm run build` writes (the global setup
// builds it), copied under its plugin name into a directory with no node_modules anywhere above it, run by
// plain `node` against the real API server.
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { CustomObjectsApi } from '@kubernetes/client-node';
import { GROUP, OVERLAY_NETWORK_PLURAL, VERSION } from '../../api/v1alpha1/groupversion.js';
import { kubeConfig, kubeconfigPath, repoRoot, uniqueName } from '../support/cluster.js';
import { installCRDs } from '../support/crds.js';

const execFileAsync = promisify(execFile);
let dir: string;
let plugin: string;

beforeAll(async () => {
  await installCRDs(kubeConfig());
  dir = mkdtempSync(join(tmpdir(), 'sealmesh-plugin-'));
  for (let d = dir; d !== dirname(d); d = dirname(d)) {
    expect(existsSync(join(d, 'node_modules'))).toBe(false);
  }
  plugin = join(dir, 'kubectl-sealmesh');
  copyFileSync(resolve(repoRoot, 'dist/kubectl-sealmesh.cjs'), plugin);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the copied plugin by its shebang, from its own directory, with a PATH that has only node on it. */
async function runPlugin(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { PATH: dirname(process.execPath), HOME: dir, KUBECONFIG: kubeconfigPath, NO_COLOR: '1' };
  try {
    const { stdout, stderr } = await execFileAsync(plugin, args, { cwd: dir, env });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

test('--help prints the usage and exits 0; a bad command exits 2', async () => {
  const help = await runPlugin('--help');
  expect(help).toMatchObject({ code: 0 });
  expect(help.stdout).toContain('usage: kubectl sealmesh status [OVERLAY]');
  const bad = await runPlugin('frobnicate');
  expect(bad.code).toBe(2);
  expect(bad.stderr).toContain('unknown command frobnicate');
});

test('status reads an overlay from the API server; a missing one exits 1 naming it', async () => {
  const name = uniqueName('cli');
  const custom = kubeConfig().makeApiClient(CustomObjectsApi);
  await custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: OVERLAY_NETWORK_PLURAL,
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'OverlayNetwork',
      metadata: { name },
      spec: { nodeSelector: { matchLabels: { 'sealmesh.io/cli-test': name } }, addressPool: '10.98.0.0/24' },
    },
  });
  try {
    const shown = await runPlugin('status', name);
    expect(shown.stderr).toBe('');
    expect(shown).toMatchObject({ code: 0 });
    expect(shown.stdout).toContain(`OverlayNetwork ${name}: 0 nodes, 0/0 pairs encrypted`);
    const missing = await runPlugin('status', `${name}-gone`);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`overlaynetwork ${name}-gone not found`);
  } finally {
    await custom.deleteClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: OVERLAY_NETWORK_PLURAL,
      name,
    });
  }
});
