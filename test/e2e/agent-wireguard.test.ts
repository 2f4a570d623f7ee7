// Two node agents driving real WireGuard in a 2-node lab: the agents run in this process (against the real
// API server) and program each node's device through nsenter (WgCliDevice + lab.runner), and probe with a
// real ping inside the node. The test plays the operator (hand-made OverlayNetwork, NodeTunnels, sealed PSK).
// Proves: the pair reaches Encrypted from real handshakes, the device read back holds the sealed PSK, routes
// to the peer's pod CIDR go through the tunnel, and a restarted agent adopts the device without touching it.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { pino } from 'pino';
import {
  API_VERSION,
  GROUP,
  NODE_LABEL,
  NODE_TUNNEL_KIND,
  NODE_TUNNEL_PLURAL,
  OVERLAY_LABEL,
  OVERLAY_NETWORK_KIND,
  OVERLAY_NETWORK_PLURAL,
  VERSION,
  nodeTunnelName,
} from '../../api/v1alpha1/groupversion.js';
import type { NodeTunnelStatus } from '../../api/v1alpha1/nodetunnel.types.js';
import { Agent } from '../../agent/agent.js';
import { WgCliDevice } from '../../agent/device/wgcli.js';
import { KubeAgentApi } from '../../agent/kube.js';
import { decodeKey, fingerprint } from '../../lib/keys.js';
import {
  KEY_SECRET_TYPE,
  encodeKeySecretData,
  keySecretName,
  pairKey,
  type SealedPair,
  keySecretNameAt,
} from '../../lib/contract/keysecret.js';
import { newBoxKeyPair, newPresharedKey, seal } from '../../lib/seal.js';
import { IDENTITY_NAME, IDENTITY_PUBLIC_KEY } from '../../lib/contract/identity.js';
import { kubeConfig, uniqueName } from '../support/cluster.js';
import { installCRDs } from '../support/crds.js';
import { Lab, type LabNode } from '../support/lab.js';
import { until as untilWithin } from '../support/wait.js';

/** Lab steps (wireguard-go start, handshakes) get a minute. */
const until = <T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 60_000) =>
  untilWithin(what, fn, timeoutMs, 250);

const kc = kubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);
const namespace = uniqueName('agent-e2e');
const overlay = uniqueName('ovl');
const operator = newBoxKeyPair();
const agents = new Map<string, Agent>();
let lab: Lab | undefined;
let nodes: [LabNode, LabNode];
let stateRoot = '';

async function tunnelStatus(node: string): Promise<NodeTunnelStatus> {
  const obj = (await custom.getClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: NODE_TUNNEL_PLURAL,
    name: nodeTunnelName(overlay, node),
  })) as { status?: NodeTunnelStatus };
  return obj.status ?? {};
}

function newAgent(node: LabNode): Agent {
  const run = lab!.runner(node.name);
  const agent = new Agent({
    node: node.name,
    namespace,
    stateDir: join(stateRoot, node.name),
    api: new KubeAgentApi(kc),
    deviceFactory: (name) => new WgCliDevice(name, { run }),
    // this process is outside the node: ask the node, not our own /sys
    underlayMtu: () => Promise.resolve(1500),
    prober: {
      probe: async (_iface, address) => {
        await lab!.exec(node.name, ['ping', '-c', '1', '-W', '1', address], { timeoutMs: 5000 });
      },
    },
    probeIntervalMs: 1000,
    logger: pino({ level: process.env.LOG_LEVEL ?? 'warn' }),
  });
  agents.set(node.name, agent);
  return agent;
}

beforeAll(async () => {
  lab = await Lab.up({ nodes: 2, k8s: false });
  nodes = lab.nodes as [LabNode, LabNode];
  stateRoot = await mkdtemp(join(tmpdir(), 'sealmesh-agent-e2e-'));
  await installCRDs(kc);
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  await core.createNamespacedConfigMap({
    namespace,
    body: {
      metadata: { name: IDENTITY_NAME },
      data: { [IDENTITY_PUBLIC_KEY]: Buffer.from(operator.publicKey).toString('base64') },
    },
  });
  await custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: OVERLAY_NETWORK_PLURAL,
    body: {
      apiVersion: API_VERSION,
      kind: OVERLAY_NETWORK_KIND,
      metadata: { name: overlay },
      spec: { addressPool: '10.97.0.0/24', paused: true },
    },
  });
  for (const [i, node] of nodes.entries()) {
    await custom.createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: NODE_TUNNEL_PLURAL,
      body: {
        apiVersion: API_VERSION,
        kind: NODE_TUNNEL_KIND,
        metadata: {
          name: nodeTunnelName(overlay, node.name),
          labels: { [OVERLAY_LABEL]: overlay, [NODE_LABEL]: node.name },
        },
        spec: {
          overlay,
          nodeName: node.name,
          address: `10.97.0.${i + 1}/24`,
          endpoint: `${node.underlayIP}:51820`,
          allowedIPs: [`10.97.0.${i + 1}/32`, node.podCIDR],
          listenPort: 51820,
          persistentKeepalive: '25s',
          epoch: 1,
          secretRef: { namespace, name: keySecretName(overlay, node.name) },
        },
      },
    });
  }
}, 120_000);

afterAll(async () => {
  await Promise.all([...agents.values()].map((a) => a.stop()));
  for (const node of nodes ?? []) {
    await custom
      .deleteClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: NODE_TUNNEL_PLURAL,
        name: nodeTunnelName(overlay, node.name),
      })
      .catch(() => undefined);
  }
  await custom
    .deleteClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: OVERLAY_NETWORK_PLURAL,
      name: overlay,
    })
    .catch(() => undefined);
  await core.deleteNamespace({ name: namespace }).catch(() => undefined);
  // down() stops wireguard-go and removes the node namespaces, and with them the devices
  await lab?.down();
  if (stateRoot) await rm(stateRoot, { recursive: true, force: true });
}, 120_000);

test('two agents bring up an encrypted WireGuard pair with the sealed PSK, and a restart adopts the device', async () => {
  for (const node of nodes) await newAgent(node).start();
  const published = await Promise.all(
    nodes.map((n) =>
      until(`${n.name} publishes its keys`, async () => {
        const s = await tunnelStatus(n.name);
        return s.envelopePublicKey && s.publicKey ? s : undefined;
      }),
    ),
  );

  const psk = newPresharedKey();
  const [a, b] = pairKey(nodes[0].name, nodes[1].name);
  const env = (i: number) => decodeKey(published[i]!.envelopePublicKey!);
  const owner = nodes[0].name;
  await core.createNamespacedSecret({
    namespace,
    body: {
      metadata: {
        name: keySecretNameAt(overlay, owner, 1),
        labels: { [OVERLAY_LABEL]: overlay, [NODE_LABEL]: owner },
      },
      type: KEY_SECRET_TYPE,
      data: encodeKeySecretData({
        version: 1,
        overlay,
        node: owner,
        pairs: [
          {
            a,
            b,
            epoch: 1,
            fingerprint: fingerprint(psk),
            sealedTo: { [nodes[0].name]: fingerprint(env(0)), [nodes[1].name]: fingerprint(env(1)) },
            sealed: {
              [nodes[0].name]: seal(psk, env(0), operator),
              [nodes[1].name]: seal(psk, env(1), operator),
            },
          },
        ],
        privateKeys: [],
      }),
    },
  });

  for (const node of nodes) {
    const s = await until(`${node.name} reports Encrypted`, async () => {
      const st = await tunnelStatus(node.name);
      return st.peersSummary === '1/1' ? st : undefined;
    });
    expect(s.peers?.[0]).toMatchObject({ state: 'Encrypted', epoch: 1 });
    expect(s.peers?.[0]?.lastHandshakeTime).toBeDefined();
  }

  // the real device holds the peer with the sealed PSK, and the pod CIDR route goes through the tunnel
  const iface = agents.get(nodes[0].name)!.interfaceFor(overlay);
  const device = new WgCliDevice(iface, { run: lab!.runner(nodes[0].name) });
  const state = await device.read();
  expect(state?.peers).toHaveLength(1);
  expect(state?.peers[0]).toMatchObject({
    publicKey: published[1]!.publicKey,
    presharedKeyFingerprint: fingerprint(psk),
    endpoint: `${nodes[1].underlayIP}:51820`,
  });
  expect([...state!.peers[0]!.allowedIPs].sort()).toEqual([nodes[1].podCIDR, '10.97.0.2/32'].sort());
  const ping = await lab!.exec(nodes[0].name, [
    'ping',
    '-c',
    '2',
    '-W',
    '2',
    nodes[1].podCIDR.replace(/0\/24$/, '1'),
  ]);
  expect(ping.code).toBe(0);
  const route = await lab!.exec(nodes[0].name, [
    'ip',
    'route',
    'get',
    nodes[1].podCIDR.replace(/0\/24$/, '1'),
  ]);
  expect(route.stdout).toContain(`dev ${iface}`);

  // restart node 0's agent: the device is adopted (same key, same peer), the tunnel keeps working
  const handshakeBefore = state!.peers[0]!.latestHandshake?.getTime();
  await agents.get(nodes[0].name)!.stop();
  const restarted = newAgent(nodes[0]);
  const writesBefore = restarted.statusWrites;
  await restarted.start();
  await until('a pass after restart', () => Promise.resolve(restarted.passes > 1 ? true : undefined));
  const after = await device.read();
  expect(after?.publicKey).toBe(published[0]!.publicKey);
  expect(after?.peers[0]?.latestHandshake?.getTime()).toBe(handshakeBefore);
  expect(restarted.statusWrites).toBe(writesBefore);
  expect((await tunnelStatus(nodes[0].name)).peersSummary).toBe('1/1');
}, 180_000);

// Continues from the test above (agents running, pair encrypted at epoch 1). The test plays the operator's
// side of the rotation protocol (../shared/DESIGN.md, "Rotation (hitless)") by writing the OverlayNetwork's
// status and the key Secret, and measures the traffic lost across each cutover with a ping every 20 ms
// through the tunnel.
test('a key rotation loses under 1 s of traffic and a PSK-only rotation none', async () => {
  const names = nodes.map((n) => n.name) as [string, string];
  const [a, b] = pairKey(names[0], names[1]);
  const env = await Promise.all(
    names.map(async (n) => decodeKey((await tunnelStatus(n)).envelopePublicKey!)),
  );
  const pair = (psk: Uint8Array, epoch: number): SealedPair => ({
    a,
    b,
    epoch,
    fingerprint: fingerprint(psk),
    sealedTo: { [names[0]]: fingerprint(env[0]!), [names[1]]: fingerprint(env[1]!) },
    sealed: { [names[0]]: seal(psk, env[0]!, operator), [names[1]]: seal(psk, env[1]!, operator) },
  });
  /** As the operator: the owner's Secret of a new epoch (one Secret per epoch, the older ones stay). */
  const writeSecret = async (epoch: number, pairs: SealedPair[]): Promise<void> => {
    const name = keySecretNameAt(overlay, names[0], epoch);
    await core.createNamespacedSecret({
      namespace,
      body: {
        metadata: { name, labels: { [OVERLAY_LABEL]: overlay, [NODE_LABEL]: names[0] } },
        type: KEY_SECRET_TYPE,
        data: encodeKeySecretData({ version: 1, overlay, node: names[0], pairs, privateKeys: [] }),
      },
    });
  };
  const overlayStatus = async (status: Record<string, unknown>): Promise<void> => {
    await custom.patchClusterCustomObjectStatus(
      { group: GROUP, version: VERSION, plural: OVERLAY_NETWORK_PLURAL, name: overlay, body: { status } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  };
  const rotation = (phase: string, scope: string, target: number, cutoverTime?: number) => ({
    phase,
    scope,
    targetEpoch: target,
    startTime: new Date().toISOString(),
    attempt: 1,
    ...(cutoverTime !== undefined ? { cutoverTime: new Date(cutoverTime).toISOString() } : {}),
  });
  const peerIP = '10.97.0.2';
  /** Pings the peer every 20 ms for `ms`; resolves with the packets lost. */
  const pingFor = async (ms: number): Promise<number> => {
    const count = String(Math.round(ms / 20));
    const r = await lab!.exec(names[0], ['ping', '-q', '-i', '0.02', '-W', '1', '-c', count, peerIP], {
      timeoutMs: ms + 10_000,
    });
    const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
    if (!m) throw new Error(`unexpected ping output: ${r.stdout} ${r.stderr}`);
    return Number(m[1]) - Number(m[2]);
  };
  const allAt = (epoch: number) =>
    Promise.all(
      names.map((n) =>
        until(`${n} encrypted at epoch ${epoch}`, async () => {
          const s = await tunnelStatus(n);
          return s.appliedEpoch === epoch && s.peers?.[0]?.state === 'Encrypted' && s.peers[0].epoch === epoch
            ? s
            : undefined;
        }),
      ),
    );

  // 1. full key rotation, epoch 1 → 2
  const before = await Promise.all(names.map((n) => tunnelStatus(n)));
  const psk2 = newPresharedKey();
  // the epoch-1 Secret stays while the rotation runs
  await overlayStatus({ epoch: 1, rotation: rotation('Staging', 'Keys', 2) });
  await writeSecret(2, [pair(psk2, 2)]);
  const staged = await Promise.all(
    names.map((n) =>
      until(`${n} staged epoch 2`, async () => {
        const s = await tunnelStatus(n);
        return s.stagedEpoch === 2 && s.stagedPublicKey ? s : undefined;
      }),
    ),
  );
  for (const [i, s] of staged.entries()) {
    expect(s.stagedPublicKey).not.toBe(before[i]!.publicKey);
    expect(s.appliedEpoch).toBe(1);
  }
  const cutover = Date.now() + 1500;
  const lostKeys = pingFor(4000);
  await overlayStatus({ epoch: 1, rotation: rotation('CuttingOver', 'Keys', 2, cutover) });
  const lost = await lostKeys;
  const after = await allAt(2);
  console.log(`key rotation: ${lost} of 200 pings lost (${lost * 20} ms)`);
  expect(lost * 20).toBeLessThan(1000);
  for (const [i, s] of after.entries()) expect(s.publicKey).toBe(staged[i]!.stagedPublicKey);
  const device = new WgCliDevice(agents.get(names[0])!.interfaceFor(overlay), { run: lab!.runner(names[0]) });
  const dev2 = await device.read();
  expect(dev2?.publicKey).toBe(staged[0]!.stagedPublicKey);
  expect(dev2?.peers).toEqual([
    expect.objectContaining({
      publicKey: staged[1]!.stagedPublicKey,
      presharedKeyFingerprint: fingerprint(psk2),
    }),
  ]);

  // 2. PSK-only rotation, epoch 2 → 3: no packet lost, the sessions carry on
  await overlayStatus({ epoch: 2, rotation: null });
  const psk3 = newPresharedKey();
  await overlayStatus({ epoch: 2, rotation: rotation('Staging', 'PresharedKeys', 3) });
  await writeSecret(3, [pair(psk3, 3)]);
  await Promise.all(
    names.map((n) =>
      until(`${n} staged epoch 3`, async () => {
        const s = await tunnelStatus(n);
        return s.stagedEpoch === 3 ? s : undefined;
      }),
    ),
  );
  const lostPsk = pingFor(3000);
  await overlayStatus({ epoch: 2, rotation: rotation('CuttingOver', 'PresharedKeys', 3, Date.now() + 1000) });
  expect(await lostPsk).toBe(0);
  const after3 = await allAt(3);
  for (const [i, s] of after3.entries()) expect(s.publicKey).toBe(after[i]!.publicKey);
  const dev3 = await device.read();
  expect(dev3?.publicKey).toBe(dev2?.publicKey);
  expect(dev3?.peers[0]?.presharedKeyFingerprint).toBe(fingerprint(psk3));
  await overlayStatus({ epoch: 3, rotation: null });
}, 180_000);
