// The generated CRDs in a real API server, seen the way users see them: every sample applies, kubectl get
// shows the printer columns of DESIGN.md, short names and the sealmesh category work, and kubectl explain
// prints the field descriptions.
import { execFile, execFileSync } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { ApiextensionsV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { jest } from '@jest/globals';
import { load } from 'js-yaml';
import {
  GROUP,
  NODE_TUNNEL_KIND,
  NODE_TUNNEL_PLURAL,
  OVERLAY_NETWORK_PLURAL,
  VERSION,
  nodeTunnelName,
} from '../../api/v1alpha1/groupversion.js';
import { parseNodeTunnel } from '../../api/v1alpha1/nodetunnel.types.js';
import { parseOverlayNetwork } from '../../api/v1alpha1/overlaynetwork.types.js';
import { goodStatus, overlay, tunnel } from '../support/api-cases.js';
import { kubeConfig, kubeconfigPath, repoRoot, uniqueName } from '../support/cluster.js';
import { installCRDs } from '../support/crds.js';

jest.setTimeout(90_000);

const run = promisify(execFile);
const kc = kubeConfig();
const custom = kc.makeApiClient(CustomObjectsApi);
const created: { plural: string; name: string }[] = [];
let kubectlPath = '';

async function kubectl(...args: string[]): Promise<string> {
  const { stdout } = await run(kubectlPath, ['--kubeconfig', kubeconfigPath, ...args], { timeout: 30_000 });
  return stdout;
}

async function createObj(plural: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
  const obj = (await custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural,
    body,
  })) as Record<string, unknown>;
  created.push({ plural, name: (body.metadata as { name: string }).name });
  return obj;
}

async function setStatus(plural: string, name: string, status: Record<string, unknown>): Promise<void> {
  const current = (await custom.getClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural,
    name,
  })) as Record<string, unknown>;
  await custom.replaceClusterCustomObjectStatus({
    group: GROUP,
    version: VERSION,
    plural,
    name,
    body: { ...current, status },
  });
}

/** `kubectl get` table output → header cells and the row for `name`. */
function table(out: string, name: string): { header: string[]; row: Record<string, string> } {
  const lines = out.trim().split('\n');
  const header = (lines[0] ?? '').trim().split(/\s{2,}/);
  const line = lines.find((l) => l.startsWith(`${name} `)) ?? '';
  const cells = line.trim().split(/\s{2,}/);
  return { header, row: Object.fromEntries(header.map((h, i) => [h, cells[i] ?? ''])) };
}

beforeAll(async () => {
  kubectlPath = resolve(
    execFileSync('bash', [resolve(repoRoot, 'hack/kube/build.sh')], { encoding: 'utf8' }).trim(),
    'kubectl',
  );
  await installCRDs(kc);
});

afterAll(async () => {
  for (const { plural, name } of created) {
    await custom
      .deleteClusterCustomObject({ group: GROUP, version: VERSION, plural, name })
      .catch(() => undefined);
  }
});

test('the CRDs are cluster-scoped, with short names, the sealmesh category and a status subresource', async () => {
  const ext = kc.makeApiClient(ApiextensionsV1Api);
  for (const [plural, short] of [
    [OVERLAY_NETWORK_PLURAL, 'ovl'],
    [NODE_TUNNEL_PLURAL, 'ntun'],
  ] as const) {
    const crd = await ext.readCustomResourceDefinition({ name: `${plural}.${GROUP}` });
    expect(crd.spec.scope).toBe('Cluster');
    expect(crd.spec.names.shortNames).toEqual([short]);
    expect(crd.spec.names.categories).toEqual(['sealmesh']);
    expect(crd.spec.versions.map((v) => v.name)).toEqual([VERSION]);
    expect(crd.spec.versions[0]?.subresources?.status).toEqual({});
  }
});

test('every sample is accepted by the API server and parses with zod', async () => {
  const dir = resolve(repoRoot, 'config/samples');
  const files = (await readdir(dir)).filter((f) => f.startsWith('sealmesh_') && f.endsWith('.yaml'));
  expect(files.length).toBeGreaterThanOrEqual(4);
  const id = uniqueName('s').slice(2);
  for (const file of files) {
    const sample = load(await readFile(resolve(dir, file), 'utf8')) as {
      kind: string;
      metadata: { name: string };
      spec: Record<string, unknown>;
    };
    // Unique names, so a demo's "sample" overlay is never touched; the spec is the file's.
    const body = structuredClone(sample);
    if (body.kind === NODE_TUNNEL_KIND) {
      body.spec.overlay = `${String(body.spec.overlay)}-${id}`;
      body.metadata.name = nodeTunnelName(String(body.spec.overlay), String(body.spec.nodeName));
    } else {
      body.metadata.name = `${body.metadata.name}-${id}`;
    }
    const plural = body.kind === NODE_TUNNEL_KIND ? NODE_TUNNEL_PLURAL : OVERLAY_NETWORK_PLURAL;
    const stored = await createObj(plural, body);
    const parsed = body.kind === NODE_TUNNEL_KIND ? parseNodeTunnel(stored) : parseOverlayNetwork(stored);
    if (!parsed.ok) throw new Error(`${file}: ${parsed.error}`);
  }
});

test('the kustomizations build and apply (server dry run)', async () => {
  const crds = await kubectl('kustomize', resolve(repoRoot, 'config/crd'));
  expect(crds).toContain('name: overlaynetworks.sealmesh.io');
  expect(crds).toContain('name: nodetunnels.sealmesh.io');
  const samples = await kubectl('apply', '--dry-run=server', '-k', resolve(repoRoot, 'config/samples'));
  expect(samples.trim().split('\n')).toHaveLength(3);
  expect(samples).toMatch(
    /overlaynetwork\.sealmesh\.io\/sample (created|configured|unchanged) \(server dry run\)/,
  );
});

test('kubectl get ovl and ntun show the printer columns', async () => {
  const name = uniqueName('cols');
  await createObj(OVERLAY_NETWORK_PLURAL, overlay(name, { keys: { custody: 'Operator' } }));
  const now = '2026-01-01T00:00:00Z';
  await setStatus(OVERLAY_NETWORK_PLURAL, name, {
    observedGeneration: 1,
    nodes: 10,
    pairs: { total: 45, encrypted: 44, degraded: 1 },
    encryptedSummary: '44/45',
    epoch: 3,
    nextRotationTime: '2026-01-04T03:00:00Z',
    conditions: [
      { type: 'Ready', status: 'True', reason: 'AllPairsEncrypted', message: '', lastTransitionTime: now },
      { type: 'PostQuantum', status: 'True', reason: 'HybridSealed', message: '', lastTransitionTime: now },
    ],
  });
  const ovl = table(await kubectl('get', 'ovl', name), name);
  expect(ovl.header).toEqual(['NAME', 'NODES', 'ENCRYPTED', 'EPOCH', 'NEXT-ROTATION', 'READY', 'AGE']);
  expect(ovl.row).toMatchObject({
    NAME: name,
    NODES: '10',
    ENCRYPTED: '44/45',
    EPOCH: '3',
    'NEXT-ROTATION': '2026-01-04T03:00:00Z',
    READY: 'True',
  });
  const wide = table(await kubectl('get', 'ovl', name, '-o', 'wide'), name);
  expect(wide.row).toMatchObject({ POOL: '10.99.0.0/16', CUSTODY: 'Operator', 'POST-QUANTUM': 'True' });

  const t = tunnel(name, 'node-1');
  await createObj(NODE_TUNNEL_PLURAL, t);
  await setStatus(NODE_TUNNEL_PLURAL, t.metadata.name, goodStatus);
  const ntun = table(await kubectl('get', 'ntun', t.metadata.name), t.metadata.name);
  expect(ntun.header).toEqual([
    'NAME',
    'NODE',
    'OVERLAY',
    'ADDRESS',
    'ENDPOINT',
    'PEERS',
    'EPOCH',
    'READY',
    'AGE',
  ]);
  expect(ntun.row).toMatchObject({
    NODE: 'node-1',
    OVERLAY: name,
    ADDRESS: '10.99.0.7/16',
    ENDPOINT: '198.18.0.7:51820',
    PEERS: '1/2',
    EPOCH: '1',
    READY: 'True',
  });

  // The category lists both kinds.
  const all = await kubectl('get', 'sealmesh', '-o', 'name');
  expect(all).toContain(`overlaynetwork.sealmesh.io/${name}`);
  expect(all).toContain(`nodetunnel.sealmesh.io/${t.metadata.name}`);
});

test('kubectl explain prints the field descriptions', async () => {
  // The OpenAPI document is rebuilt asynchronously after a CRD change.
  const deadline = Date.now() + 30_000;
  let out = '';
  for (;;) {
    try {
      out = await kubectl('explain', 'overlaynetwork.spec.keys.rotation');
      if (out.includes('presharedKeys')) break;
    } catch {
      // not published yet
    }
    if (Date.now() > deadline) throw new Error(`kubectl explain never showed the schema: ${out}`);
    await new Promise((r) => setTimeout(r, 500));
  }
  // kubectl wraps descriptions at 80 columns.
  const flat = (s: string) => s.replace(/\s+/g, ' ');
  expect(flat(out)).toContain('Automatic key rotation. Without it keys rotate only on request');
  expect(out).toMatch(/schedule\s+<string>/);
  expect(flat(out)).toContain('a 5-field cron expression (minute hour day-of-month month day-of-week)');
  expect(out).toMatch(/interval\s+<string>/);
  expect(flat(out)).toContain('at least 10m');
  expect(out).toMatch(/timeZone\s+<string>/);
  expect(out).toMatch(/presharedKeys\s+<Object>/);

  const peers = await kubectl('explain', 'nodetunnel.status.peers.state');
  expect(flat(peers)).toContain('Stale: no handshake within 180s');
  expect(peers).toMatch(/ENUM:[\s\S]*Encrypted[\s\S]*AwaitingPeer/);
});
