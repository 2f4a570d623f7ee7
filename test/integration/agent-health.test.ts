// The agent process as the DaemonSet runs it (agent/main.ts), against the real API server: /healthz answers
// at once, /readyz once its caches synced and passes run (what the pod's probes ask), /metrics on the metrics
// port with every agent metric's name, and SIGTERM exits 0.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { jest } from '@jest/globals';
import { CoreV1Api } from '@kubernetes/client-node';
import { kubeConfig, kubeconfigPath, repoRoot, uniqueName } from '../support/cluster.js';
import { installCRDs } from '../support/crds.js';
import { METRIC_NAMES } from '../../agent/metrics.js';

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

test('/healthz answers, /readyz turns ready once the agent runs, /metrics names every agent metric, SIGTERM exits 0', async () => {
  const port = await freePort();
  const metricsPort = await freePort();
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
      '--metrics-port',
      String(metricsPort),
      '--metrics-host',
      '127.0.0.1',
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
    // the metrics port serves the same checks, and the metrics
    expect(await status(metricsPort, '/readyz')).toBe(200);
    expect(await status(port, '/metrics')).toBe(200);
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    for (const name of Object.values(METRIC_NAMES)) expect(metrics).toContain(`# TYPE ${name} `);
    expect(metrics).toContain('# TYPE sealmesh_wireguard_sent_bytes_total counter');
    expect(metrics).toContain('# TYPE sealmesh_wireguard_latest_handshake_seconds gauge');
    expect(metrics).toContain('sealmesh_agent_process_cpu_seconds_total');
    child.kill('SIGTERM');
    await expect(exited).resolves.toBe(0);
    expect(await status(port, '/healthz')).toBeUndefined(); // the servers went with the process
    expect(await status(metricsPort, '/metrics')).toBeUndefined();
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});
