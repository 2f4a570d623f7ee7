// The operator against the real API server, with Node objects made by the test and scripted agent
// stand-ins (test/support/standin.ts) instead of real agents.
import { writeFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import {
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type CoreV1Event,
  type KubeConfig,
} from '@kubernetes/client-node';
import { jest } from '@jest/globals';
import { pino } from 'pino';
import {
  GROUP,
  NODE_TUNNEL_PLURAL,
  OVERLAY_NETWORK_PLURAL,
  VERSION,
} from '../../api/v1alpha1/groupversion.js';
import { DEFAULT_LISTEN_PORT } from '../../api/v1alpha1/overlaynetwork.types.js';
import {
  decodeKeySecretData,
  encodeKeySecretData,
  keySecretName,
  keySecretNameAt,
} from '../../lib/contract/keysecret.js';
import { createOperator, type Operator } from '../../operator/app.js';
import { FINALIZER } from '../../operator/controllers/overlaynetwork.controller.js';
import type { WriteKind } from '../../operator/writer.js';
import { kubeConfig, uniqueName } from '../support/cluster.js';
import { everyApiObject } from '../support/apiobjects.js';
import { installCRDs } from '../support/crds.js';
import { deleteOverlays } from '../support/overlays.js';
import { AgentStandIn } from '../support/standin.js';
import { until } from '../support/wait.js';

jest.setTimeout(120_000);

const kc: KubeConfig = kubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);
const run = uniqueName('op');
const namespace = run;
const RUN_LABEL = 'sealmesh.io/test-run';
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

class Counter {
  readonly counts = new Map<WriteKind, number>();
  count(kind: WriteKind): void {
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + 1);
  }
  total(kinds?: WriteKind[]): number {
    let n = 0;
    for (const [k, v] of this.counts) if (!kinds || kinds.includes(k)) n += v;
    return n;
  }
}

const operators: Operator[] = [];
/**
 * Reconcile passes per overlay, per operator, by the order they started in (1, 2, ...), recorded when each
 * finished: the evidence that a pass ran after a change.
 */
const passLog = new WeakMap<Operator, Map<string, { started: number; finished: number[] }>>();
function countPasses(op: Operator): void {
  const log = new Map<string, { started: number; finished: number[] }>();
  passLog.set(op, log);
  const reconcile = op.controller.reconcile.bind(op.controller);
  op.controller.reconcile = async (key) => {
    const entry = log.get(key) ?? { started: 0, finished: [] };
    log.set(key, entry);
    const seq = ++entry.started;
    try {
      return await reconcile(key);
    } finally {
      entry.finished.push(seq);
    }
  };
}
/** Makes a change, then waits until a pass over `overlay` by `op` that started after it has finished. */
async function passAfter(op: Operator, overlay: string, change: () => Promise<void>): Promise<void> {
  const startedBefore = passLog.get(op)?.get(overlay)?.started ?? 0;
  await change();
  await until(`a pass over ${overlay} after the change`, () =>
    Promise.resolve(
      passLog
        .get(op)
        ?.get(overlay)
        ?.finished.some((seq) => seq > startedBefore) || undefined,
    ),
  );
}
async function startOperator(counter = new Counter(), identity = uniqueName('replica')): Promise<Operator> {
  const op = await createOperator({
    kc,
    logger: logger.child({ replica: identity }),
    namespace,
    identity,
    leaseName: `${run}-lease`,
    leaseDurationMs: 4_000,
    writeCounter: counter,
    resyncPeriodMs: 0,
  });
  countPasses(op);
  await op.start();
  operators.push(op);
  return op;
}

const nodeName = (i: number) => `${run}-n${i}`;

async function createNode(i: number, opts: { internalIP?: boolean; member?: boolean } = {}): Promise<void> {
  const name = nodeName(i);
  const labels: Record<string, string> = { [RUN_LABEL]: run };
  if (opts.member !== false) labels['sealmesh.io/member'] = run;
  await core.createNode({
    body: {
      metadata: { name, labels },
      spec: { podCIDR: `10.249.${i}.0/24`, podCIDRs: [`10.249.${i}.0/24`] },
    },
  });
  if (opts.internalIP !== false) {
    await core.patchNodeStatus(
      { name, body: { status: { addresses: [{ type: 'InternalIP', address: `198.18.0.${i}` }] } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }
}

type Obj = {
  metadata: { name: string; resourceVersion: string; finalizers?: string[] };
  spec: Record<string, unknown>;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- status is read loosely by field
  status?: Record<string, any>;
};

async function getOverlay(name: string): Promise<Obj> {
  return (await custom.getClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: OVERLAY_NETWORK_PLURAL,
    name,
  })) as Obj;
}

async function tunnelsOf(overlay: string): Promise<Obj[]> {
  const list = (await custom.listClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: NODE_TUNNEL_PLURAL,
    labelSelector: `sealmesh.io/overlay=${overlay}`,
  })) as { items: Obj[] };
  return list.items;
}

async function secretsOf(overlay: string) {
  return (await core.listNamespacedSecret({ namespace, labelSelector: `sealmesh.io/overlay=${overlay}` }))
    .items;
}

async function createOverlay(name: string, spec: Record<string, unknown>): Promise<void> {
  await custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: OVERLAY_NETWORK_PLURAL,
    body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'OverlayNetwork', metadata: { name }, spec },
  });
}

async function events(overlay: string): Promise<CoreV1Event[]> {
  return (
    await core.listNamespacedEvent({ namespace: 'default', fieldSelector: `involvedObject.name=${overlay}` })
  ).items;
}

function condition(o: Obj, type: string): { status: string; reason: string; message: string } | undefined {
  return (
    o.status?.conditions as
      Array<{ type: string; status: string; reason: string; message: string }> | undefined
  )?.find((c) => c.type === type);
}

const standIns = new Map<string, AgentStandIn>();
function standIn(overlay: string, i: number): AgentStandIn {
  const key = `${overlay}/${nodeName(i)}`;
  let s = standIns.get(key);
  if (!s) {
    s = new AgentStandIn(kc, overlay, nodeName(i), namespace);
    standIns.set(key, s);
  }
  return s;
}

/** Every stand-in of the overlay reports all its peers Encrypted at `epoch`. */
async function reportAllEncrypted(overlay: string, members: number[], epoch: number): Promise<void> {
  for (const i of members) {
    const peers = members
      .filter((j) => j !== i)
      .map((j) => ({ node: nodeName(j), state: 'Encrypted', epoch }));
    await standIn(overlay, i).report(peers, epoch);
  }
}

beforeAll(async () => {
  await installCRDs(kc);
  await core.createNamespace({ body: { metadata: { name: namespace } } });
});

afterAll(async () => {
  await deleteOverlays(kc, run);
  for (const op of operators) await op.stop();
  if (process.env.SEALMESH_TEST_LOG) writeFileSync(process.env.SEALMESH_TEST_LOG, logLines.join(''));
  const nodes = await core.listNode({ labelSelector: `${RUN_LABEL}=${run}` });
  for (const n of nodes.items) await core.deleteNode({ name: n.metadata!.name! });
});

const OVL = `${run}-mesh`;
let leader: Operator;
let leaderCounter: Counter;

test('an overlay becomes one NodeTunnel per selected node with unique addresses and a finalizer', async () => {
  for (const i of [1, 2, 3]) await createNode(i);
  await createNode(9, { member: false }); // not selected
  leaderCounter = new Counter();
  leader = await startOperator(leaderCounter);
  await createOverlay(OVL, {
    nodeSelector: { matchLabels: { 'sealmesh.io/member': run } },
    addressPool: '100.64.0.0/24',
  });
  const tunnels = await until('3 tunnels', async () => {
    const t = await tunnelsOf(OVL);
    return t.length === 3 ? t : undefined;
  });
  const byNode = new Map(tunnels.map((t) => [t.spec.nodeName as string, t.spec]));
  expect([...byNode.keys()].sort()).toEqual([1, 2, 3].map(nodeName));
  expect(new Set(tunnels.map((t) => t.spec.address)).size).toBe(3);
  expect(byNode.get(nodeName(2))).toMatchObject({
    overlay: OVL,
    endpoint: `198.18.0.2:${DEFAULT_LISTEN_PORT}`,
    allowedIPs: expect.arrayContaining(['10.249.2.0/24']) as unknown,
    listenPort: DEFAULT_LISTEN_PORT,
    epoch: 1,
    secretRef: { namespace, name: keySecretName(OVL, nodeName(2)) },
  });
  expect((await getOverlay(OVL)).metadata.finalizers).toContain(FINALIZER);
});

test('stand-ins publish envelope keys; both ends of every pair unseal the same PSK', async () => {
  for (const i of [1, 2, 3]) await standIn(OVL, i).publishKeys();
  await until('3 key Secrets with 3 pairs in all', async () => {
    const secrets = await secretsOf(OVL);
    const pairs = secrets.flatMap((s) => {
      const d = decodeKeySecretData(s.data);
      return d.ok ? d.payload.pairs : [];
    });
    return secrets.length === 3 && pairs.length === 3;
  });
  for (const [i, j] of [
    [1, 2],
    [1, 3],
    [2, 3],
  ] as const) {
    const atI = await standIn(OVL, i).psk(nodeName(j), 1);
    const atJ = await standIn(OVL, j).psk(nodeName(i), 1);
    expect(atI).toBeDefined();
    expect(atI!.key).toBe(atJ!.key);
    expect(atI!.fingerprint).toBe(atJ!.fingerprint);
  }
});

test('pair status: all 3 pairs encrypted makes the overlay Ready', async () => {
  await reportAllEncrypted(OVL, [1, 2, 3], 1);
  const o = await until('3/3 encrypted', async () => {
    const o = await getOverlay(OVL);
    return o.status?.encryptedSummary === '3/3' ? o : undefined;
  });
  expect(o.status).toMatchObject({ nodes: 3, pairs: { total: 3, encrypted: 3, degraded: 0 }, epoch: 1 });
  expect(condition(o, 'Ready')).toMatchObject({ status: 'True', reason: 'AllPairsEncrypted' });
  expect(condition(o, 'Degraded')).toMatchObject({ status: 'False' });
  expect(o.status?.observedGeneration).toBe(1);
});

test('an unchanged world causes no writes', async () => {
  await settled(leaderCounter);
  const before = leaderCounter.total();
  // Touch an unrelated field of a watched object to wake the controller without changing anything it owns,
  // and wait for the pass it causes.
  await passAfter(leader, OVL, () =>
    core
      .patchNode(
        { name: nodeName(9), body: { metadata: { annotations: { poke: uniqueName('p') } } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      )
      .then(() => undefined),
  );
  // a count-only status write may follow its pass by up to 2 s
  await settled(leaderCounter, 2500);
  expect(leaderCounter.total()).toBe(before);
});

test('a node joining costs one tunnel, one Secret and status writes; its pairs live in its own Secret', async () => {
  await new Promise((r) => setTimeout(r, 500));
  const before = new Map(leaderCounter.counts);
  const otherSecrets = new Map(
    (await secretsOf(OVL)).map((s) => [s.metadata!.name!, s.metadata!.resourceVersion]),
  );
  await createNode(4);
  await until('tunnel for node 4', async () =>
    (await tunnelsOf(OVL)).some((t) => t.spec.nodeName === nodeName(4)),
  );
  // A new agent reports its peers before it has any key Secret: that is not a lost Secret, no new epoch.
  await passAfter(leader, OVL, () =>
    standIn(OVL, 4).report(
      [1, 2, 3].map((j) => ({ node: nodeName(j), state: 'AwaitingPeer', epoch: 1 })),
      1,
    ),
  );
  expect((await getOverlay(OVL)).status?.epoch).toBe(1);
  await standIn(OVL, 4).publishKeys();
  const secret = await until('node 4 Secret with 3 pairs', async () => {
    const s = (await secretsOf(OVL)).find((x) => x.metadata?.name === keySecretNameAt(OVL, nodeName(4), 1));
    const d = s && decodeKeySecretData(s.data);
    return d && d.ok && d.payload.pairs.length === 3 ? s : undefined;
  });
  expect(secret).toBeDefined();
  for (const j of [1, 2, 3]) {
    expect((await standIn(OVL, 4).psk(nodeName(j), 1))!.key).toBe(
      (await standIn(OVL, j).psk(nodeName(4), 1))!.key,
    );
  }
  // The other nodes' Secrets were not rewritten.
  for (const s of await secretsOf(OVL)) {
    if (otherSecrets.has(s.metadata!.name!))
      expect(s.metadata!.resourceVersion).toBe(otherSecrets.get(s.metadata!.name!));
  }
  const delta = (k: WriteKind) => (leaderCounter.counts.get(k) ?? 0) - (before.get(k) ?? 0);
  expect(delta('nodetunnel.create')).toBe(1);
  expect(delta('secret.create')).toBe(1);
  expect(delta('secret.update')).toBe(0);
  expect(delta('nodetunnel.update')).toBe(0);
  await reportAllEncrypted(OVL, [1, 2, 3, 4], 1);
  await until('6/6 encrypted', async () => (await getOverlay(OVL)).status?.encryptedSummary === '6/6');
});

test('a label change moves a node out of the overlay and back in', async () => {
  const addressBefore = (await tunnelsOf(OVL)).find((t) => t.spec.nodeName === nodeName(2))!.spec.address;
  await core.patchNode(
    { name: nodeName(2), body: { metadata: { labels: { 'sealmesh.io/member': null } } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
  await until('node 2 tunnel and Secret gone', async () => {
    const t = await tunnelsOf(OVL);
    const s = await secretsOf(OVL);
    return (
      !t.some((x) => x.spec.nodeName === nodeName(2)) &&
      !s.some((x) => x.metadata?.labels?.['sealmesh.io/node'] === nodeName(2))
    );
  });
  await until('nodes: 3', async () => (await getOverlay(OVL)).status?.nodes === 3);
  await core.patchNode(
    { name: nodeName(2), body: { metadata: { labels: { 'sealmesh.io/member': run } } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
  const back = await until('node 2 back', async () =>
    (await tunnelsOf(OVL)).find((t) => t.spec.nodeName === nodeName(2)),
  );
  // the lowest free address is the one it left: it gets it back, and no other node holds it
  expect(back.spec.address).toBe(addressBefore);
  expect((await tunnelsOf(OVL)).filter((t) => t.spec.address === addressBefore)).toHaveLength(1);
  await until('NodeLeft and NodeJoined events', async () => {
    const reasons = (await events(OVL)).map((e) => e.reason);
    return reasons.includes('NodeLeft') && reasons.includes('NodeJoined');
  });
  // The node's old stand-in keys are gone with its Secret; a fresh agent publishes new ones.
  standIns.delete(`${OVL}/${nodeName(2)}`);
  await standIn(OVL, 2).publishKeys();
  // A real agent reports Encrypted only with the pair keys in hand: not before its new Secret exists (a
  // Secret missing while its node reports Encrypted counts as lost and moves the overlay to a new epoch).
  await until('node 2 Secret back', async () =>
    (await secretsOf(OVL)).some((x) => x.metadata?.labels?.['sealmesh.io/node'] === nodeName(2)),
  );
  await reportAllEncrypted(OVL, [1, 2, 3, 4], 1);
  await until('6/6 again', async () => (await getOverlay(OVL)).status?.encryptedSummary === '6/6');
});

test('a node without InternalIP is reported, not peered', async () => {
  await createNode(5, { internalIP: false });
  const o = await until('Degraded NodeUnusable', async () => {
    const o = await getOverlay(OVL);
    return condition(o, 'Degraded')?.reason === 'NodeUnusable' ? o : undefined;
  });
  expect(condition(o, 'Degraded')!.message).toContain(nodeName(5));
  expect((await tunnelsOf(OVL)).some((t) => t.spec.nodeName === nodeName(5))).toBe(false);
  await until('NodeUnusable event', async () => (await events(OVL)).some((e) => e.reason === 'NodeUnusable'));
  await core.deleteNode({ name: nodeName(5) });
  await until(
    'Degraded cleared',
    async () => condition(await getOverlay(OVL), 'Degraded')?.status === 'False',
  );
});

test('a deleted key Secret is replaced at a new epoch with an Event, never with the old keys', async () => {
  const victim = keySecretNameAt(OVL, nodeName(4), 1);
  const oldFingerprints = new Set(
    (await secretsOf(OVL)).flatMap((s) => {
      const d = decodeKeySecretData(s.data);
      return d.ok ? d.payload.pairs.map((p) => p.fingerprint) : [];
    }),
  );
  await core.deleteNamespacedSecret({ namespace, name: victim });
  const o = await until('epoch 2', async () => {
    const o = await getOverlay(OVL);
    return o.status?.epoch === 2 ? o : undefined;
  });
  expect(o.status?.epoch).toBe(2);
  await until('KeySecretReplaced event', async () =>
    (await events(OVL)).some((e) => e.reason === 'KeySecretReplaced'),
  );
  const secrets = await until('every Secret at epoch 2', async () => {
    const s = await secretsOf(OVL);
    const ok =
      s.length === 4 &&
      s.every((x) => {
        const d = decodeKeySecretData(x.data);
        return d.ok && d.payload.pairs.every((p) => p.epoch === 2);
      });
    return ok ? s : undefined;
  });
  for (const s of secrets) {
    const d = decodeKeySecretData(s.data);
    if (!d.ok) throw new Error(d.error);
    for (const p of d.payload.pairs) expect(oldFingerprints.has(p.fingerprint)).toBe(false);
  }
  // Agents follow the overlay's status.epoch; no NodeTunnel is rewritten for a new epoch.
  expect((await tunnelsOf(OVL)).every((t) => t.spec.epoch === 1)).toBe(true);
  for (const i of [1, 2, 3, 4])
    for (const j of [1, 2, 3, 4]) if (i < j) await standIn(OVL, i).psk(nodeName(j), 2);
  await reportAllEncrypted(OVL, [1, 2, 3, 4], 2);
  await until('6/6 at epoch 2', async () => (await getOverlay(OVL)).status?.encryptedSummary === '6/6');
});

test('a key Secret holding a sealed value copied from another pair is refused: a new epoch, with an Event naming the pair', async () => {
  const target = (await secretsOf(OVL))
    .map((s) => ({ s, d: decodeKeySecretData(s.data) }))
    .find((x) => x.d.ok && x.d.payload.pairs.length >= 2);
  if (!target?.d.ok) throw new Error('no key Secret of epoch 2 holds two pairs');
  const { payload } = target.d;
  const owner = payload.node;
  // the owner's value of its first pair goes where its value of the second was
  const [from, to] = payload.pairs as [(typeof payload.pairs)[0], (typeof payload.pairs)[0]];
  to.sealed[owner] = from.sealed[owner]!;
  await core.replaceNamespacedSecret({
    namespace,
    name: target.s.metadata!.name!,
    body: { ...target.s, data: encodeKeySecretData(payload) },
  });
  const o = await until('epoch 3', async () => {
    const o = await getOverlay(OVL);
    return o.status?.epoch === 3 ? o : undefined;
  });
  expect(o.status?.epoch).toBe(3);
  const altered = await until('KeySecretAltered event', async () =>
    (await events(OVL)).find((e) => e.reason === 'KeySecretAltered'),
  );
  expect(altered.type).toBe('Warning');
  expect(altered.message).toContain(
    `key Secret of ${owner} holds values the operator did not seal (${to.a}/${to.b}@2: ` +
      `value for ${owner} does not open in its context with the operator sealing key)`,
  );
  expect(altered.message).toContain('new keys at epoch 3');
  await until('every Secret at epoch 3', async () => {
    const s = await secretsOf(OVL);
    return (
      s.length === 4 &&
      s.every((x) => {
        const e = decodeKeySecretData(x.data);
        return e.ok && e.payload.pairs.every((p) => p.epoch === 3);
      })
    );
  });
  for (const i of [1, 2, 3, 4])
    for (const j of [1, 2, 3, 4]) if (i < j) expect(await standIn(OVL, i).psk(nodeName(j), 3)).toBeDefined();
  await reportAllEncrypted(OVL, [1, 2, 3, 4], 3);
  await until('6/6 at epoch 3', async () => (await getOverlay(OVL)).status?.encryptedSummary === '6/6');
});

test('pool exhaustion is a Degraded condition naming the pool', async () => {
  const small = `${run}-small`;
  await createOverlay(small, {
    nodeSelector: { matchLabels: { 'sealmesh.io/member': run } },
    addressPool: '100.65.0.0/30',
    // on the same nodes as OVL: a port of its own, or the first problem would be a PortConflict
    listenPort: DEFAULT_LISTEN_PORT + 1,
  });
  const o = await until('AddressPoolExhausted', async () => {
    const o = await getOverlay(small);
    return condition(o, 'Degraded')?.reason === 'AddressPoolExhausted' ? o : undefined;
  });
  expect(condition(o, 'Degraded')!.message).toContain('100.65.0.0/30');
  expect(await tunnelsOf(small)).toHaveLength(2);
  await custom.deleteClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: OVERLAY_NETWORK_PLURAL,
    name: small,
  });
  await until('small overlay gone', async () => {
    try {
      await getOverlay(small);
      return false;
    } catch {
      return (await tunnelsOf(small)).length === 0;
    }
  });
});

/** Resolves once `counter` has not moved for `ms` (a count-only status write may wait up to 2 s). */
async function settled(counter: Counter, ms = 3000): Promise<void> {
  let last = -1;
  let since = Date.now();
  await until(
    'operator settled',
    () => {
      const now = counter.total();
      if (now !== last) [last, since] = [now, Date.now()];
      return Promise.resolve(Date.now() - since >= ms);
    },
    30_000,
  );
}

test('status.nonMemberPodCIDRs lists the pod CIDRs in a declared range of nodes the overlay does not select, until it selects them', async () => {
  const fc = `${run}-fc`;
  const FC_LABEL = 'sealmesh.io/fc-member';
  await createNode(7, { member: false });
  await createOverlay(fc, {
    nodeSelector: { matchLabels: { [FC_LABEL]: run } },
    addressPool: '100.66.0.0/24',
    listenPort: DEFAULT_LISTEN_PORT + 2,
    dataPlane: { protectedRanges: ['10.249.0.0/16'] },
  });
  const listed = async () => ((await getOverlay(fc)).status?.nonMemberPodCIDRs as string[] | undefined) ?? [];
  await until('nodes 1-4 and 7 listed', async () => {
    const l = await listed();
    return ['10.249.1.0/24', '10.249.4.0/24', '10.249.7.0/24'].every((c) => l.includes(c));
  });
  expect((await listed()).every((c) => c.startsWith('10.249.'))).toBe(true);
  await core.patchNode(
    { name: nodeName(7), body: { metadata: { labels: { [FC_LABEL]: run } } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
  await until(
    'node 7 no longer listed once selected',
    async () => !(await listed()).includes('10.249.7.0/24'),
  );
  expect(await listed()).toContain('10.249.1.0/24');
  await custom.deleteClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: OVERLAY_NETWORK_PLURAL,
    name: fc,
  });
  await core.deleteNode({ name: nodeName(7) });
});

test('an operator restart keeps every address and key and writes nothing', async () => {
  await settled(leaderCounter);
  const before = await tunnelsOf(OVL);
  const secretsBefore = (await secretsOf(OVL)).map((s) => [s.metadata!.name, s.metadata!.resourceVersion]);
  await leader.stop();
  const counter = new Counter();
  leader = await startOperator(counter);
  await until('new leader active', () => Promise.resolve(leader.manager.isActive()));
  // the new leader reconciles everything it owns once at start: wait for that pass over the overlay
  await until('a pass over the overlay by the new leader', () =>
    Promise.resolve((passLog.get(leader)?.get(OVL)?.finished.length ?? 0) > 0 || undefined),
  );
  // a count-only status write may follow its pass by up to 2 s
  await settled(counter, 2500);
  const after = await tunnelsOf(OVL);
  expect(
    Object.fromEntries(after.map((t) => [t.metadata.name, [t.spec.address, t.metadata.resourceVersion]])),
  ).toEqual(
    Object.fromEntries(before.map((t) => [t.metadata.name, [t.spec.address, t.metadata.resourceVersion]])),
  );
  expect((await secretsOf(OVL)).map((s) => [s.metadata!.name, s.metadata!.resourceVersion])).toEqual(
    secretsBefore,
  );
  expect(
    counter.total([
      'nodetunnel.create',
      'nodetunnel.update',
      'secret.create',
      'secret.update',
      'overlay.status',
    ]),
  ).toBe(0);
  leaderCounter = counter;
});

test('with two replicas only the leader writes; the standby takes over when the leader dies', async () => {
  const standbyCounter = new Counter();
  const standby = await startOperator(standbyCounter);
  await createNode(6);
  await until('tunnel for node 6', async () =>
    (await tunnelsOf(OVL)).some((t) => t.spec.nodeName === nodeName(6)),
  );
  expect(standby.manager.isActive()).toBe(false);
  expect(standbyCounter.total()).toBe(0);
  expect(leaderCounter.counts.get('nodetunnel.create')).toBe(1);
  await leader.stop();
  const t0 = Date.now();
  await until('standby leads', () => Promise.resolve(standby.manager.isActive()), 10_000);
  expect(Date.now() - t0).toBeLessThan(4_000 + 2_000);
  await createNode(7);
  await until('tunnel for node 7', async () =>
    (await tunnelsOf(OVL)).some((t) => t.spec.nodeName === nodeName(7)),
  );
  expect(standbyCounter.counts.get('nodetunnel.create')).toBe(1);
  leader = standby;
  leaderCounter = standbyCounter;
});

test('no object of any kind, Event or log line of the run contains a PSK or private key', async () => {
  const secrets = new Set<string>();
  for (const s of standIns.values()) for (const k of s.seenKeys) secrets.add(k);
  expect(secrets.size).toBeGreaterThan(10);
  // every listable kind (Secret data decoded as well), not a list of the kinds the operator is meant to write
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
  expect(logLines.length).toBeGreaterThan(5);
  haystacks.push(['operator log', logLines.join('\n')]);
  const haystack = haystacks.map(([, text]) => text).join('\n');
  // run before the overlay is deleted: its NodeTunnels and Secrets are still there to be searched
  expect(haystack).toContain(keySecretNameAt(OVL, nodeName(1), 3));
  expect(haystack).toContain(`"nodeName": "${nodeName(1)}"`);
  const found: string[] = [];
  for (const k of secrets) {
    const hex = Buffer.from(k, 'base64').toString('hex');
    for (const [where, text] of haystacks)
      if (text.includes(k) || text.toLowerCase().includes(hex))
        found.push(`a key a stand-in saw, in ${where}`);
  }
  expect(found).toEqual([]);
});

test('deleting the overlay removes every NodeTunnel and Secret, then the overlay', async () => {
  await custom.deleteClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: OVERLAY_NETWORK_PLURAL,
    name: OVL,
  });
  await until('overlay, tunnels and Secrets gone', async () => {
    try {
      await getOverlay(OVL);
      return false;
    } catch {
      return (await tunnelsOf(OVL)).length === 0 && (await secretsOf(OVL)).length === 0;
    }
  });
});
