// The operator's side of key rotation against the real API server, with agent stand-ins that acknowledge
// staging, renew liveness Leases and report the new epoch the way agents do (test/support/standin.ts).
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { jest } from '@jest/globals';
import {
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type CoreV1Event,
} from '@kubernetes/client-node';
import { pino } from 'pino';
import {
  GROUP,
  NODE_TUNNEL_PLURAL,
  OVERLAY_NETWORK_PLURAL,
  VERSION,
} from '../../api/v1alpha1/groupversion.js';
import { generateKeyPair } from '../../lib/keys.js';
import { decodeKeySecretData } from '../../lib/contract/keysecret.js';
import { createOperator, type Operator } from '../../operator/app.js';
import type { WriteKind } from '../../operator/writer.js';
import { kubeConfig, kubeconfigPath, repoRoot, uniqueName } from '../support/cluster.js';
import { installCRDs } from '../support/crds.js';
import { deleteOverlays } from '../support/overlays.js';
import { everyApiObject } from '../support/apiobjects.js';
import { AgentStandIn } from '../support/standin.js';
import { until } from '../support/wait.js';

jest.setTimeout(120_000);

const execFileAsync = promisify(execFile);
const kc = kubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);
const run = uniqueName('rot');
const namespace = run;
const logLines: string[] = [];
const logger = pino(
  { level: 'debug' },
  new Writable({
    write(chunk: Buffer, _enc, cb) {
      logLines.push(chunk.toString());
      cb();
    },
  }),
);
const counts = new Map<WriteKind, number>();
const writeCounter = { count: (k: WriteKind) => counts.set(k, (counts.get(k) ?? 0) + 1) };
const operators: Operator[] = [];
const allAgents: AgentStandIn[] = [];
const timings = {
  stageTimeoutMs: 4_000,
  cutoverDelayMs: 1_000,
  verifyTimeoutMs: 20_000,
  backoffBaseMs: 3_000,
};

async function startOperator(): Promise<Operator> {
  const op = await createOperator({
    kc,
    logger,
    namespace,
    identity: uniqueName('replica'),
    leaseName: `${run}-lease`,
    leaseDurationMs: 4_000,
    writeCounter,
    resyncPeriodMs: 0,
    rotationTimings: timings,
    server: { host: '127.0.0.1', port: 0 },
  });
  await op.start();
  operators.push(op);
  return op;
}

/** One series' value from the leader's /metrics, as Prometheus scrapes it. */
async function scraped(series: string): Promise<number | undefined> {
  const leader = operators.find((o) => o.manager.leader?.isLeader());
  const res = await fetch(`http://127.0.0.1:${leader?.manager.server?.port()}/metrics`);
  const line = (await res.text()).split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

type Status = {
  epoch?: number;
  rotation?: {
    phase: string;
    scope: string;
    targetEpoch: number;
    cutoverTime?: string;
    reason?: string;
    startTime?: string;
    attempt?: number;
  };
  lastRotationTime?: string;
  lastPresharedKeyRotationTime?: string;
  lastRotateRequest?: string;
  encryptedSummary?: string;
  conditions?: Array<{ type: string; status: string; reason: string; message: string }>;
};

async function status(name: string): Promise<Status> {
  const o = (await custom.getClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: OVERLAY_NETWORK_PLURAL,
    name,
  })) as {
    status?: Status;
  };
  return o.status ?? {};
}

async function events(overlay: string): Promise<CoreV1Event[]> {
  return (
    await core.listNamespacedEvent({ namespace: 'default', fieldSelector: `involvedObject.name=${overlay}` })
  ).items;
}

/** The epochs of the PSKs the overlay's Secrets hold; each Secret holds exactly those of its epoch label. */
async function secretEpochs(overlay: string): Promise<number[]> {
  const secrets = (
    await core.listNamespacedSecret({ namespace, labelSelector: `sealmesh.io/overlay=${overlay}` })
  ).items;
  const epochs = new Set<number>();
  for (const s of secrets) {
    const label = Number(s.metadata?.labels?.['sealmesh.io/epoch']);
    expect(s.metadata?.name?.endsWith(`.e${label}`)).toBe(true);
    const d = decodeKeySecretData(s.data);
    if (d.ok)
      for (const p of d.payload.pairs) {
        expect(p.epoch).toBe(label);
        epochs.add(p.epoch);
      }
  }
  return [...epochs].sort();
}

async function annotate(overlay: string, value: string): Promise<void> {
  await custom.patchClusterCustomObject(
    {
      group: GROUP,
      version: VERSION,
      plural: OVERLAY_NETWORK_PLURAL,
      name: overlay,
      body: { metadata: { annotations: { 'sealmesh.io/rotate': value } } },
    },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
}

/** An overlay of `n` nodes whose stand-ins published keys and report every pair Encrypted at epoch 1. */
async function overlayWithNodes(
  tag: string,
  n: number,
  keys?: Record<string, unknown>,
): Promise<{ name: string; agents: AgentStandIn[] }> {
  const name = `${run}-${tag}`;
  const nodes = Array.from({ length: n }, (_, i) => `${name}-n${i}`);
  for (const [i, node] of nodes.entries()) {
    await core.createNode({ body: { metadata: { name: node, labels: { 'sealmesh.io/rot': name } } } });
    await core.patchNodeStatus(
      { name: node, body: { status: { addresses: [{ type: 'InternalIP', address: `198.18.1.${i + 1}` }] } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }
  await custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: OVERLAY_NETWORK_PLURAL,
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'OverlayNetwork',
      metadata: { name },
      spec: {
        nodeSelector: { matchLabels: { 'sealmesh.io/rot': name } },
        addressPool: '100.70.0.0/24',
        ...(keys ? { keys } : {}),
      },
    },
  });
  await until('tunnels', async () => {
    const l = (await custom.listClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: NODE_TUNNEL_PLURAL,
      labelSelector: `sealmesh.io/overlay=${name}`,
    })) as { items: unknown[] };
    return l.items.length === n;
  });
  const agents = nodes.map((node) => new AgentStandIn(kc, name, node, namespace));
  allAgents.push(...agents);
  for (const a of agents) {
    await a.heartbeat();
    await a.publishKeys();
  }
  await until('pair keys at epoch 1', async () => {
    for (const a of agents) for (const b of agents) if (a !== b && !(await a.psk(b.node, 1))) return false;
    return true;
  });
  await reportAll(agents, 1);
  await until(
    'all encrypted',
    async () => (await status(name)).encryptedSummary === `${(n * (n - 1)) / 2}/${(n * (n - 1)) / 2}`,
  );
  return { name, agents };
}

async function reportAll(agents: AgentStandIn[], epoch: number): Promise<void> {
  for (const a of agents) {
    await a.report(
      agents.filter((b) => b !== a).map((b) => ({ node: b.node, state: 'Encrypted', epoch })),
      epoch,
    );
  }
}

beforeAll(async () => {
  await installCRDs(kc);
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  await startOperator();
});

afterAll(async () => {
  await deleteOverlays(kc, run);
  for (const op of operators) await op.stop();
  for (const n of (await core.listNode({ labelSelector: 'sealmesh.io/rot' })).items) {
    if (n.metadata?.name?.startsWith(run)) await core.deleteNode({ name: n.metadata.name });
  }
});

test('a manual rotation stages, cuts over when every agent acknowledged, verifies and drops old keys', async () => {
  const { name, agents } = await overlayWithNodes('manual', 3);
  const before = new Map(counts);
  await annotate(name, 'r1');
  const staging = await until('Staging', async () => {
    const s = await status(name);
    const rotating = s.conditions?.find((c) => c.type === 'Rotating');
    return s.rotation?.phase === 'Staging' && rotating?.status === 'True' ? s : undefined;
  });
  expect(staging.rotation).toMatchObject({ scope: 'Keys', targetEpoch: 2 });
  expect(staging.lastRotateRequest).toBe('r1');
  expect(staging.conditions?.find((c) => c.type === 'Rotating')).toMatchObject({
    status: 'True',
    reason: 'Staging',
  });
  await until(
    'new-epoch PSKs sealed next to the current ones',
    async () => (await secretEpochs(name)).join() === '1,2',
  );
  // The new PSKs reach both ends of every pair.
  for (const a of agents)
    for (const b of agents)
      if (a !== b) expect((await a.psk(b.node, 2))!.key).toBe((await b.psk(a.node, 2))!.key);
  const newKeys = agents.map(() => generateKeyPair().publicKey);
  for (const [i, a] of agents.entries()) await a.stage(2, newKeys[i]!);
  const cut = await until('CuttingOver', async () => {
    const s = await status(name);
    return s.rotation?.phase === 'CuttingOver' || s.rotation?.phase === 'Verifying' ? s : undefined;
  });
  expect(cut.rotation?.cutoverTime).toBeDefined();
  await until('Verifying', async () => (await status(name)).rotation?.phase === 'Verifying');
  // Pairs still at the old epoch are not counted as encrypted during verification.
  expect((await status(name)).encryptedSummary).toBe('0/3');
  await reportAll(agents, 2);
  const done = await until('completed', async () => {
    const s = await status(name);
    // Completion is written mid-pass; the pair counts and Rotating=False come with the pass's last write.
    const rotating = s.conditions?.find((c) => c.type === 'Rotating');
    return s.epoch === 2 && !s.rotation && rotating?.status === 'False' ? s : undefined;
  });
  expect(done.lastRotationTime).toBeDefined();
  expect(done.encryptedSummary).toBe('3/3');
  await until('old material deleted', async () => (await secretEpochs(name)).join() === '2');
  const reasons = (await events(name)).map((e) => e.reason);
  expect(reasons).toEqual(expect.arrayContaining(['RotationStarted', 'RotationCompleted']));
  // Every pair leaves its old epoch on purpose: that is no loss of encryption to report.
  expect(reasons).not.toContain('PairLostEncryption');
  // The whole rotation rewrote no NodeTunnel and wrote each node's Secret of the new epoch once; the old
  // epoch's Secrets went with one request. The overlay's status took one write per phase change (stage,
  // cutover, verify, completion) and at most one per pass in between.
  const delta = (k: WriteKind) => (counts.get(k) ?? 0) - (before.get(k) ?? 0);
  expect(delta('nodetunnel.update')).toBe(0);
  expect(delta('secret.create')).toBe(agents.length);
  expect(delta('secret.update')).toBe(0);
  expect(delta('secret.delete')).toBe(0);
  expect(delta('secret.deletecollection')).toBe(1);
  expect(delta('overlay.status')).toBeLessThanOrEqual(6);
  const left = (
    await core.listNamespacedSecret({ namespace, labelSelector: `sealmesh.io/overlay=${name}` })
  ).items.map((x) => x.metadata?.name);
  expect(left.sort()).toEqual(agents.map((a) => `sealmesh.${name}.${a.node}.e2`).sort());
  // The same annotation value does not rotate again.
  await new Promise((r) => setTimeout(r, 1500));
  expect((await status(name)).epoch).toBe(2);
  // The operator's /metrics: one completed Keys rotation, none aborted, every pair encrypted, the key time moved.
  const series = (m: string, labels: string) => scraped(`${m}{overlay="${name}",${labels}}`);
  expect(await series('sealmesh_rotations_total', 'scope="Keys",outcome="completed"')).toBe(1);
  expect(await series('sealmesh_rotations_total', 'scope="Keys",outcome="aborted"')).toBe(0);
  expect(await series('sealmesh_pairs', 'state="Encrypted"')).toBe(3);
  expect(await series('sealmesh_pairs', 'state="Degraded"')).toBe(0);
  expect(await series('sealmesh_last_rotation_timestamp_seconds', 'kind="private"')).toBe(
    Date.parse(done.lastRotationTime!) / 1000,
  );
});

test('missing acknowledgements abort with the old epoch kept and a reason; an expired agent is not waited for', async () => {
  const { name, agents } = await overlayWithNodes('abort', 3);
  const [a, b, c] = agents as [AgentStandIn, AgentStandIn, AgentStandIn];
  await annotate(name, 'r1');
  await until('Staging', async () => (await status(name)).rotation?.phase === 'Staging');
  await a.stage(2, generateKeyPair().publicKey);
  await b.stage(2, generateKeyPair().publicKey);
  // c is live but never acknowledges
  // The phase is written before the rest of the pass's status (conditions): wait for both.
  const aborted = await until('Backoff and Degraded', async () => {
    const s = await status(name);
    const degraded = s.conditions?.find((x) => x.type === 'Degraded');
    return s.rotation?.phase === 'Backoff' && degraded?.reason === 'RotationAborted' ? s : undefined;
  });
  expect(aborted.epoch).toBe(1);
  expect(aborted.rotation?.reason).toContain(c.node);
  expect(aborted.conditions?.find((x) => x.type === 'Degraded')).toMatchObject({
    status: 'True',
    reason: 'RotationAborted',
  });
  expect(aborted.conditions?.find((x) => x.type === 'Ready')?.status).toBe('True');
  await until('RotationAborted event', async () =>
    (await events(name)).some((e) => e.reason === 'RotationAborted'),
  );
  // c's Lease expires: the retry proceeds without it.
  await c.heartbeat(1);
  await new Promise((r) => setTimeout(r, 1500));
  await until(
    'retry reaches Verifying without c',
    async () => (await status(name)).rotation?.phase === 'Verifying',
    30_000,
  );
  await reportAll([a, b], 2);
  const done = await until('completed', async () => {
    const s = await status(name);
    // Completion is written mid-pass; the pair counts and Rotating=False come with the pass's last write.
    const rotating = s.conditions?.find((c) => c.type === 'Rotating');
    return s.epoch === 2 && !s.rotation && rotating?.status === 'False' ? s : undefined;
  });
  // c did not take part: its pairs are not encrypted at the new epoch until it converges.
  expect(done.encryptedSummary).toBe('1/3');
  // The operator's /metrics count the abort, then a completion (c's pairs do not count: its agent is not live),
  // and the pairs c left behind.
  const series = (m: string, labels: string) => scraped(`${m}{overlay="${name}",${labels}}`);
  expect(await series('sealmesh_rotations_total', 'scope="Keys",outcome="aborted"')).toBeGreaterThanOrEqual(
    1,
  );
  expect(await series('sealmesh_rotations_total', 'scope="Keys",outcome="completed"')).toBe(1);
  expect(await series('sealmesh_rotations_total', 'scope="Keys",outcome="incomplete"')).toBe(0);
  expect(await series('sealmesh_pairs', 'state="Encrypted"')).toBe(1);
});

test('an operator restarted while staging resumes the rotation from the API', async () => {
  const { name, agents } = await overlayWithNodes('restart', 2);
  await annotate(name, 'r1');
  const staging = await until('Staging', async () => {
    const r = (await status(name)).rotation;
    return r?.phase === 'Staging' ? r : undefined;
  });
  expect(staging).toMatchObject({ targetEpoch: 2, attempt: 1 });
  expect(staging.startTime).toBeDefined();
  // the pass that started it has ended (its Events are written last): stopping now loses nothing of it
  await until('RotationStarted event', async () =>
    (await events(name)).some((e) => e.reason === 'RotationStarted'),
  );
  for (const op of operators.splice(0)) await op.stop();
  for (const a of agents) await a.stage(2, generateKeyPair().publicKey);
  await startOperator();
  // Resumed: the same rotation (start time, attempt, target) goes on from Staging; an abort and retry
  // (attempt 2, Backoff) or a new rotation (another start time) is not a resume.
  const seen: string[] = [];
  await until(
    'Verifying after restart',
    async () => {
      const r = (await status(name)).rotation;
      const entry = `${r?.phase} attempt ${r?.attempt} target ${r?.targetEpoch} started ${r?.startTime}`;
      if (seen[seen.length - 1] !== entry) seen.push(entry);
      return r?.phase === 'Verifying';
    },
    30_000,
  );
  expect(new Set(seen)).toEqual(
    new Set(
      seen.filter(
        (e) =>
          /^(Staging|CuttingOver|Verifying) /.test(e) &&
          e.endsWith(`attempt 1 target 2 started ${staging.startTime}`),
      ),
    ),
  );
  await reportAll(agents, 2);
  const done = await until('completed', async () => {
    const s = await status(name);
    return s.epoch === 2 && !s.rotation ? s : undefined;
  });
  expect(done.epoch).toBe(2);
  const reasons = (await events(name)).map((e) => e.reason);
  expect(reasons).not.toContain('RotationAborted');
  // One start, the first operator's: start times have whole seconds, so a rotation started over within the
  // same second would pass the check above; each start (a retry's too) records its own RotationStarted.
  expect(reasons.filter((r) => r === 'RotationStarted')).toHaveLength(1);
});

test('two replicas: the leader stopped while staging, the standby (caches synced, not leading) takes over and completes the rotation', async () => {
  const { name, agents } = await overlayWithNodes('failover', 2);
  const [leader] = operators;
  const standby = await startOperator();
  await annotate(name, 'f1');
  const staging = await until('Staging', async () => {
    const r = (await status(name)).rotation;
    return r?.phase === 'Staging' ? r : undefined;
  });
  // the pass that started it has ended (its Events are written last): stopping now loses nothing of it
  await until('RotationStarted event', async () =>
    (await events(name)).some((e) => e.reason === 'RotationStarted'),
  );
  await leader!.stop();
  operators.splice(operators.indexOf(leader!), 1);
  for (const a of agents) await a.stage(2, generateKeyPair().publicKey);
  const verifying = await until(
    'Verifying under the standby',
    async () => {
      const r = (await status(name)).rotation;
      return r?.phase === 'Verifying' ? r : undefined;
    },
    30_000,
  );
  expect(verifying).toMatchObject({ targetEpoch: 2, attempt: 1, startTime: staging.startTime });
  await reportAll(agents, 2);
  const done = await until('completed', async () => {
    const s = await status(name);
    // Completion is written mid-pass; the pair counts and Rotating=False come with the pass's last write.
    const rotating = s.conditions?.find((c) => c.type === 'Rotating');
    return s.epoch === 2 && !s.rotation && rotating?.status === 'False' ? s : undefined;
  });
  expect(done.encryptedSummary).toBe('1/1');
  expect(operators).toEqual([standby]);
  const reasons = (await events(name)).map((e) => e.reason);
  expect(reasons).not.toContain('RotationAborted');
  expect(reasons.filter((r) => r === 'RotationStarted')).toHaveLength(1);
  expect(reasons).toContain('RotationCompleted');
});

test('kubectl sealmesh rotate --wait starts a rotation and follows it to the end; status prints the matrix', async () => {
  const { name, agents } = await overlayWithNodes('plugin', 2);
  const plugin = resolve(repoRoot, 'bin/kubectl-sealmesh');
  const env = { ...process.env, KUBECONFIG: kubeconfigPath, NO_COLOR: '1' };
  const rotating = execFileAsync(plugin, ['rotate', name, '--wait', '--timeout', '60s'], { env });
  await until('Staging', async () => (await status(name)).rotation?.phase === 'Staging');
  for (const a of agents) await a.stage(2, generateKeyPair().publicKey);
  await until('Verifying', async () => (await status(name)).rotation?.phase === 'Verifying');
  await reportAll(agents, 2);
  const { stdout } = await rotating;
  expect(stdout).toContain(`rotation of ${name} requested`);
  expect(stdout).toMatch(/(Staging|CuttingOver|Verifying) epoch 2/);
  expect(stdout).toContain(`rotation of ${name} completed: epoch 2`);
  const shown = await execFileAsync(plugin, ['status', name], { env });
  expect(shown.stdout).toContain(`OverlayNetwork ${name}: 2 nodes, 1/1 pairs encrypted, epoch 2`);
  expect(shown.stdout).toMatch(/1\s+- E/);
  expect(shown.stdout).not.toContain('\x1b[');
});

test('kubectl sealmesh rotate --psk-only (annotation value psk:...) rotates only the pre-shared keys', async () => {
  const { name, agents } = await overlayWithNodes('pskonly', 2);
  const plugin = resolve(repoRoot, 'bin/kubectl-sealmesh');
  const env = { ...process.env, KUBECONFIG: kubeconfigPath, NO_COLOR: '1' };
  const rotating = execFileAsync(plugin, ['rotate', name, '--psk-only', '--wait', '--timeout', '60s'], {
    env,
  });
  const staging = await until('Staging', async () => {
    const s = await status(name);
    return s.rotation?.phase === 'Staging' ? s : undefined;
  });
  expect(staging.rotation).toMatchObject({ scope: 'PresharedKeys', targetEpoch: 2 });
  expect(staging.lastRotateRequest).toMatch(/^psk:/);
  // PSK-only: an agent keeps its key and acknowledges with it
  for (const a of agents) await a.stage(2, a.wg.publicKey);
  await until('Verifying', async () => (await status(name)).rotation?.phase === 'Verifying');
  await reportAll(agents, 2);
  const { stdout } = await rotating;
  expect(stdout).toContain(`rotation of ${name} completed: epoch 2`);
  const done = await status(name);
  expect(done.lastPresharedKeyRotationTime).toBeDefined();
  expect(done.lastRotationTime).toBeUndefined();
});

test('Operator custody: a PSK-only rotation carries every private key into the new epoch, a Keys rotation makes new ones', async () => {
  const { name, agents } = await overlayWithNodes('opcustody', 3, { custody: 'Operator' });
  const specKey = async (node: string) =>
    (
      (await custom.getClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: NODE_TUNNEL_PLURAL,
        name: `${name}.${node}`,
      })) as { spec: { publicKey?: string } }
    ).spec.publicKey;
  const at1 = await Promise.all(agents.map((a) => a.privateKey(1)));
  for (const [i, a] of agents.entries()) {
    expect(at1[i]).toMatchObject({ madeAt: 1 });
    expect(await specKey(a.node)).toBe(at1[i]!.publicKey);
  }
  const secretNames = async () =>
    (await core.listNamespacedSecret({ namespace, labelSelector: `sealmesh.io/overlay=${name}` })).items
      .map((x) => x.metadata?.name ?? '')
      .sort();

  // PSK-only to epoch 2: each Secret of epoch 2 holds the key made at epoch 1.
  await annotate(name, 'psk:1');
  await until('Staging', async () => (await status(name)).rotation?.phase === 'Staging');
  const at2 = await until('Secrets of epoch 2', async () => {
    const keys = await Promise.all(agents.map((a) => a.privateKey(2)));
    return keys.every((k) => k !== undefined) ? keys : undefined;
  });
  expect(at2).toEqual(at1);
  for (const [i, a] of agents.entries()) await a.stage(2, at1[i]!.publicKey);
  await until('Verifying', async () => (await status(name)).rotation?.phase === 'Verifying');
  await reportAll(agents, 2);
  await until('epoch 2', async () => (await status(name)).epoch === 2 && !(await status(name)).rotation);
  await until('only epoch 2 Secrets', async () => (await secretNames()).every((n) => n.endsWith('.e2')));
  for (const [i, a] of agents.entries()) expect(await specKey(a.node)).toBe(at1[i]!.publicKey);

  // Keys to epoch 3: a new key per node, made for epoch 3; the tunnels announce it once it is in effect.
  await annotate(name, 'k1');
  await until('Staging', async () => (await status(name)).rotation?.phase === 'Staging');
  const at3 = await until('Secrets of epoch 3', async () => {
    const keys = await Promise.all(agents.map((a) => a.privateKey(3)));
    return keys.every((k) => k !== undefined) ? keys : undefined;
  });
  for (const [i, k] of at3.entries()) {
    expect(k).toMatchObject({ madeAt: 3 });
    expect(k.publicKey).not.toBe(at1[i]!.publicKey);
  }
  for (const [i, a] of agents.entries()) await a.stage(3, at3[i]!.publicKey);
  await until('Verifying', async () => (await status(name)).rotation?.phase === 'Verifying');
  await reportAll(agents, 3);
  await until('epoch 3', async () => (await status(name)).epoch === 3 && !(await status(name)).rotation);
  await until('only epoch 3 Secrets', async () => (await secretNames()).every((n) => n.endsWith('.e3')));
  expect(await secretNames()).toHaveLength(agents.length);
  for (const [i, a] of agents.entries()) {
    await until(
      `${a.node}: spec.publicKey of epoch 3`,
      async () => (await specKey(a.node)) === at3[i]!.publicKey,
    );
  }
});

test('a PSK cadence puts its next rotation time in status and does not rotate before it', async () => {
  const { name } = await overlayWithNodes('psk', 2);
  // A PSK cadence of 10 minutes counted from creation is not due yet: status shows when it will be.
  await custom.patchClusterCustomObject(
    {
      group: GROUP,
      version: VERSION,
      plural: OVERLAY_NETWORK_PLURAL,
      name,
      body: { spec: { keys: { rotation: { presharedKeys: { interval: '10m' } } } } },
    },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
  const created = Date.parse(
    (
      (await custom.getClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: OVERLAY_NETWORK_PLURAL,
        name,
      })) as {
        metadata: { creationTimestamp: string };
      }
    ).metadata.creationTimestamp,
  );
  const next = async (interval: string) => {
    const st = await until(`next PSK rotation time for ${interval}`, async () => {
      const o = (await custom.getClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: OVERLAY_NETWORK_PLURAL,
        name,
      })) as {
        metadata: { generation: number };
        status?: Status & { nextPresharedKeyRotationTime?: string; observedGeneration?: number };
      };
      // a pass over this generation has run and written its result
      return o.status?.observedGeneration === o.metadata.generation && o.status.nextPresharedKeyRotationTime
        ? o.status
        : undefined;
    });
    return { status: st, at: Date.parse(st.nextPresharedKeyRotationTime!) };
  };
  const first = await next('10m');
  // counted from the overlay's creation (whole seconds in metadata)
  expect(Math.abs(first.at - (created + 10 * 60_000))).toBeLessThan(2000);
  expect(first.status.rotation).toBeUndefined();
  // another pass, over a new generation: still not due, still no rotation, the next time moved with the cadence
  await custom.patchClusterCustomObject(
    {
      group: GROUP,
      version: VERSION,
      plural: OVERLAY_NETWORK_PLURAL,
      name,
      body: { spec: { keys: { rotation: { presharedKeys: { interval: '11m' } } } } },
    },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
  const second = await until('the 11m cadence in status', async () => {
    const n = await next('11m');
    return n.at !== first.at ? n : undefined;
  });
  expect(Math.abs(second.at - (created + 11 * 60_000))).toBeLessThan(2000);
  expect(second.status.rotation).toBeUndefined();
  expect(second.status.epoch).toBe(1);
});

test('no object of any kind, Event or log line contains key material', async () => {
  const keys = new Set<string>();
  for (const a of allAgents) for (const k of a.seenKeys) keys.add(k);
  expect(keys.size).toBeGreaterThan(20); // PSKs at two epochs plus every stand-in's own keys
  // every listable kind, not a list of the kinds the operator is meant to write
  const haystacks = await everyApiObject();
  expect(haystacks.map(([k]) => k)).toEqual(
    expect.arrayContaining([
      'secrets',
      'events',
      'configmaps',
      'leases.coordination.k8s.io',
      'nodes',
      `${OVERLAY_NETWORK_PLURAL}.${GROUP}`,
      `${NODE_TUNNEL_PLURAL}.${GROUP}`,
    ]),
  );
  haystacks.push(['operator log', logLines.join('')]);
  const found: string[] = [];
  for (const k of keys) {
    const hex = Buffer.from(k, 'base64').toString('hex');
    for (const [where, text] of haystacks)
      if (text.includes(k) || text.toLowerCase().includes(hex))
        found.push(`a key a stand-in saw, in ${where}`);
  }
  expect(found).toEqual([]);
});
