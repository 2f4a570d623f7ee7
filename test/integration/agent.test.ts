// Two node agents, in-process, against the real API server: the test plays the operator (an OverlayNetwork,
// two NodeTunnels, a sealed PSK, the published sealing key) and the network (a fake WireGuard device per
// node and a prober that completes handshakes). Proves the agents publish their keys in their own status,
// derive each other as peers from the NodeTunnels, open the same PSK, and report the pair Encrypted — and that
// no status or log line carries the PSK.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import {
  GROUP,
  NODE_LABEL,
  NODE_TUNNEL_PLURAL,
  OVERLAY_LABEL,
  OVERLAY_NETWORK_PLURAL,
  VERSION,
  nodeTunnelName,
} from '../../api/v1alpha1/groupversion.js';
import { Agent } from '../../agent/agent.js';
import { FakeWireGuardDevice } from '../../agent/testing/device.js';
import { FakeFirewall } from '../../agent/testing/firewall.js';
import { AgentMetrics, METRIC_NAMES } from '../../agent/metrics.js';
import { RuntimeServer } from '../../lib/runtime/server.js';
import { Registry } from 'prom-client';
import { KubeAgentApi } from '../../agent/kube.js';
import { agentLeaseName } from '../../lib/contract/liveness.js';
import { decodeKey, fingerprint } from '../../lib/keys.js';
import {
  KEY_SECRET_TYPE,
  encodeKeySecretData,
  pairKey,
  keySecretNameAt,
  pskContext,
} from '../../lib/contract/keysecret.js';
import { newBoxKeyPair, newPresharedKey, seal } from '../../lib/seal.js';
import { uniqueName } from '../support/cluster.js';
import { core, custom, handMadeOverlay, kc, leases, tunnelStatus } from '../support/env.js';
import { installCRDs } from '../support/crds.js';
import { until } from '../support/wait.js';

const namespace = uniqueName('agent-it');
const overlay = uniqueName('ovl');
const nodes = [uniqueName('na'), uniqueName('nb')] as const;
const operator = newBoxKeyPair();
const logs: string[] = [];
const devices = new Map<string, FakeWireGuardDevice>();
const agents: Agent[] = [];
const firewalls: FakeFirewall[] = [];
const registries: Registry[] = [];
let server: RuntimeServer | undefined;
let stateRoot = '';

beforeAll(async () => {
  await installCRDs(kc);
  // paused: an operator running against the shared control plane must leave these hand-made tunnels alone
  await handMadeOverlay({
    namespace,
    overlay,
    operatorPublicKey: operator.publicKey,
    addressPool: '10.98.0.0/24',
    tunnels: nodes.map((node, i) => ({
      node,
      address: `10.98.0.${i + 1}/24`,
      endpoint: `198.18.0.${i + 2}:51820`,
      allowedIPs: [`10.98.0.${i + 1}/32`],
    })),
  });
  stateRoot = await mkdtemp(join(tmpdir(), 'sealmesh-agent-it-'));
}, 60_000);

afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await server?.close();
  if (process.env.AGENT_TEST_LOG_FILE) {
    const { writeFile } = await import('node:fs/promises');
    await writeFile(process.env.AGENT_TEST_LOG_FILE, logs.join(''));
  }
  for (const node of nodes) {
    await custom
      .deleteClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: NODE_TUNNEL_PLURAL,
        name: nodeTunnelName(overlay, node),
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
  if (stateRoot) await rm(stateRoot, { recursive: true, force: true });
}, 30_000);

test('two agents publish their keys, peer with each other with one PSK and report the pair Encrypted', async () => {
  const addressOf = new Map(nodes.map((n, i) => [`10.98.0.${i + 1}`, n]));
  const sink = new Writable({
    write: (chunk: Buffer, _enc, cb) => {
      logs.push(chunk.toString());
      cb();
    },
  });
  for (const node of nodes) {
    const device = new FakeWireGuardDevice('sm-it');
    devices.set(node, device);
    firewalls.push(new FakeFirewall());
    registries.push(new Registry());
    const agent = new Agent({
      firewall: firewalls.at(-1),
      metrics: new AgentMetrics(registries.at(-1)!),
      node,
      namespace,
      stateDir: join(stateRoot, node),
      api: new KubeAgentApi(kc),
      deviceFactory: () => device,
      logger: pino({ level: 'debug' }, sink),
      probeIntervalMs: 500,
      leaseRenewIntervalMs: 1000,
      underlayMtu: () => Promise.resolve(1500),
      // The network: a probe from `node` completes a handshake on both ends, once both know each other.
      prober: {
        probe: (_iface, address) => {
          const other = addressOf.get(address);
          const mine = devices.get(node);
          const theirs = other ? devices.get(other) : undefined;
          if (!mine?.publicKey || !theirs?.publicKey) return Promise.resolve();
          const now = new Date();
          try {
            mine.handshake(theirs.publicKey, now);
            theirs.handshake(mine.publicKey, now);
          } catch {
            // the other side has not added us yet: no handshake, as on a real network
          }
          return Promise.resolve();
        },
      },
    });
    agents.push(agent);
    await agent.start();
  }

  // 1. each agent publishes its envelope key and (Node custody) WireGuard public key in its own status
  const published = await Promise.all(
    nodes.map((node) =>
      until(`${node} publishes its keys`, async () => {
        const s = await tunnelStatus(overlay, node);
        return s.envelopePublicKey && s.publicKey ? s : undefined;
      }),
    ),
  );
  for (const [i, s] of published.entries()) {
    expect(s.envelopePublicKey).toBe(agents[i]!.envelopePublicKey());
    expect(s.publicKey).toBe(devices.get(nodes[i]!)!.publicKey);
  }
  // before a PSK exists (PerPair), neither side adds the other
  await until('AwaitingPeer before the PSK', async () => {
    const s = await tunnelStatus(overlay, nodes[0]);
    return s.peers?.[0]?.state === 'AwaitingPeer' ? true : undefined;
  });
  expect((await devices.get(nodes[0])!.read())?.peers).toEqual([]);

  // 2. as the operator: seal one PSK for the pair into the owner's Secret, once for each end
  const psk = newPresharedKey();
  const [a, b] = pairKey(nodes[0], nodes[1]);
  const env = (i: number) => decodeKey(published[i]!.envelopePublicKey!);
  const owner = nodes[1];
  await core.createNamespacedSecret({
    namespace,
    body: {
      metadata: {
        name: keySecretNameAt(overlay, owner, 1),
        labels: { [OVERLAY_LABEL]: overlay, [NODE_LABEL]: owner },
      },
      type: KEY_SECRET_TYPE,
      data: encodeKeySecretData({
        version: 2,
        overlay,
        node: owner,
        pairs: [
          {
            a,
            b,
            epoch: 1,
            fingerprint: fingerprint(psk),
            sealedTo: { [nodes[0]]: fingerprint(env(0)), [nodes[1]]: fingerprint(env(1)) },
            sealed: {
              [nodes[0]]: seal(psk, env(0), operator, pskContext(overlay, a, b, 1)),
              [nodes[1]]: seal(psk, env(1), operator, pskContext(overlay, a, b, 1)),
            },
          },
        ],
        privateKeys: [],
      }),
    },
  });

  // 3. each device gets the other as its peer, with the same PSK
  for (const [i, node] of nodes.entries()) {
    const other = devices.get(nodes[1 - i]!)!;
    const peer = await until(`${node} adds its peer`, async () => {
      const state = await devices.get(node)!.read();
      return state?.peers.find((p) => p.publicKey === other.publicKey && p.presharedKeySet);
    });
    expect(peer.presharedKeyFingerprint).toBe(fingerprint(psk));
    expect(peer.allowedIPs).toEqual([`10.98.0.${2 - i}/32`]);
    expect(peer.endpoint).toBe(`198.18.0.${3 - i}:51820`);
  }

  // 4. both report the pair Encrypted at epoch 1
  for (const node of nodes) {
    const s = await until(`${node} reports Encrypted`, async () => {
      const st = await tunnelStatus(overlay, node);
      return st.peersSummary === '1/1' ? st : undefined;
    });
    expect(s.peers).toEqual([
      expect.objectContaining({ node: nodes[node === nodes[0] ? 1 : 0], state: 'Encrypted', epoch: 1 }),
    ]);
    expect(s.appliedEpoch).toBe(1);
    expect(s.conditions?.find((c) => c.type === 'Encrypted')).toMatchObject({ status: 'True' });
    expect(s.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'True',
      reason: 'Applied',
    });
    expect(s.observedGeneration).toBe(1);
  }

  // 5. liveness Leases exist
  for (const node of nodes) {
    const lease = await leases.readNamespacedLease({ namespace, name: agentLeaseName(node) });
    expect(lease.spec?.holderIdentity).toBe(node);
    expect(lease.spec?.leaseDurationSeconds).toBe(40);
  }

  // 6. a quiet, encrypted overlay writes no status
  const writes = agents.map((x) => x.statusWrites);
  await new Promise((r) => setTimeout(r, 2000));
  expect(agents.map((x) => x.statusWrites)).toEqual(writes);

  // 7. the PSK appears in no status and no log line
  const everything =
    logs.join('') + JSON.stringify(await Promise.all(nodes.map((n) => tunnelStatus(overlay, n))));
  expect(everything).not.toContain(Buffer.from(psk).toString('base64'));
  expect(everything).not.toContain(Buffer.from(psk).toString('hex'));
  expect(everything).toContain(fingerprint(psk));

  // 8. plaintext the first node's rules stopped on its way to the second node's address: in the first node's
  // status (the CRD takes the field) and on /metrics, named by node, with the peer metrics beside
  server = new RuntimeServer({ host: '127.0.0.1', port: 0, registry: registries[0]! });
  const port = await server.start();
  firewalls[0]!.count('sm-it', '10.98.0.2/32', 4);
  const s = await until('drops in status', async () => {
    const st = await tunnelStatus(overlay, nodes[0]);
    return st.drops ? st : undefined;
  });
  expect(s.drops).toEqual({ peers: [{ node: nodes[1], packets: 4, bytes: 336 }] });
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  for (const name of Object.values(METRIC_NAMES)) expect(text).toContain(`# TYPE ${name} `);
  const series = (name: string) => `${name}{overlay="${overlay}",peer="${nodes[1]}"}`;
  expect(text).toContain(`${series(METRIC_NAMES.droppedPackets)} 4\n`);
  expect(text).toContain(`${series(METRIC_NAMES.droppedBytes)} 336\n`);
  expect(text).toContain(`${series(METRIC_NAMES.sent)} `);
  expect(text).toContain(`${series(METRIC_NAMES.received)} `);
  const handshake = Number(text.split(`${series(METRIC_NAMES.handshake)} `)[1]?.split('\n')[0]);
  expect(Math.abs(handshake - Date.now() / 1000)).toBeLessThan(60);
  expect(text).toContain(
    `${METRIC_NAMES.state}{overlay="${overlay}",peer="${nodes[1]}",state="Encrypted"} 1\n`,
  );
  for (const d of devices.values()) expect(text).not.toContain(d.publicKey!);
}, 90_000);
