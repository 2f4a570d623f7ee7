// The agent process as the DaemonSet runs it (agent/main.ts), against the real API server: /healthz answers
// at once, /readyz once its caches synced and passes run (what the pod's probes ask), and SIGTERM exits 0.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { jest } from '@jest/globals';
import { CoreV1Api } from '@kubernetes/client-node';
import { kubeConfig, kubeconfigPath, repoRoot, uniqueName } from '../support/cluster.js';
import { installCRDs } from '../support/crds.js';

jest.setTimeout(90_000);

const kc = kubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const ns = uniqueName('agent-health');
const stateDir = mkdtempSync(join(tmpdir(), 'sealmesh-agent-health-'));

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

async function status(port: number, path: string): Promise<number | undefined> {
  try {
    return (await fetch(`http://127.0.0.1:${port}${path}`)).status;
  } catch {
    return undefined;
  }
}

beforeAll(async () => {
  await installCRDs(kc);
  await core.createNamespace({ body: { metadata: { name: ns } } });
});

afterAll(async () => {
  await core.deleteNamespace({ name: ns }).catch(() => undefined);
  rmSync(stateDir, { recursive: true, force: true });
});

test('/healthz answers, /readyz turns ready once the agent runs, SIGTERM exits 0', async () => {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      resolve(repoRoot, 'agent/main.ts'),
      '--node',
      uniqueName('node'),
      '--state-dir',
      join(stateDir, 'state'),
      '--namespace',
      ns,
      '--health-port',
      String(port),
    ],
    { cwd: repoRoot, env: { ...process.env, KUBECONFIG: kubeconfigPath }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  try {
    const wait = async (path: string, want: number): Promise<void> => {
      const deadline = Date.now() + 40_000;
      while ((await status(port, path)) !== want) {
        if (Date.now() > deadline || child.exitCode !== null)
          throw new Error(`${path} never answered ${want}:\n${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await wait('/healthz', 200);
    await wait('/readyz', 200);
    expect(out).toContain('agent running');
    child.kill('SIGTERM');
    await expect(exited).resolves.toBe(0);
    expect(await status(port, '/healthz')).toBeUndefined(); // the server went with the process
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});
