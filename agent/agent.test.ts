import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { NodeTunnelStatus, PeerStatus } from '../api/v1alpha1/nodetunnel.types.js';
import { fingerprint, generateKeyPair, publicKeyOf } from '../lib/keys.js';
import {
  KEY_SECRET_TYPE,
  encodeKeySecretData,
  keySecretName,
  pairKey,
  privateKeyContext,
  pskContext,
  type KemEntry,
  type SealedPair,
  keySecretNameAt,
} from '../lib/contract/keysecret.js';
import { FakeClock } from '../lib/runtime/testing/clock.js';
import type { RawObject } from '../lib/runtime/rest.js';
import { newBoxKeyPair, newPresharedKey, seal, type BoxKeyPair } from '../lib/seal.js';
import {
  encapsulateTo,
  hybridFingerprint,
  hybridNodeKey,
  kemIdOf,
  kemPublicKey,
  sealHybridValue,
  x25519Shared,
} from '../lib/hybrid.js';
import { IDENTITY_NAME, IDENTITY_PUBLIC_KEY } from '../lib/contract/identity.js';
import { Agent, interfaceName } from './agent.js';
import { FakeWireGuardDevice } from './testing/device.js';
import { FakeFirewall } from './testing/firewall.js';
import { FakeApiServer, OVERLAYS_PATH, TUNNELS_PATH, configMapsPath, secretsPath } from './testing/fakes.js';
import { agentLeaseName } from '../lib/contract/liveness.js';
import type { Prober } from './probe.js';
import { Registry } from 'prom-client';
import { AgentMetrics } from './metrics.js';
import { RELEASE } from '../lib/contract/version.js';

const NS = 'sealmesh-system';
const OVERLAY = 'ovl';
const PROBE_MS = 5000;

async function waitUntil(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

interface Peer {
  node: string;
  index: number;
  wg: { privateKey: Uint8Array; publicKey: string };
  envelope: BoxKeyPair;
}

function tunnelObject(
  node: string,
  index: number,
  status?: Record<string, unknown>,
  extra: object = {},
): RawObject {
  return {
    apiVersion: 'sealmesh.io/v1alpha1',
    kind: 'NodeTunnel',
    metadata: {
      name: `${OVERLAY}.${node}`,
      labels: { 'sealmesh.io/overlay': OVERLAY, 'sealmesh.io/node': node },
    },
    spec: {
      overlay: OVERLAY,
      nodeName: node,
      address: `10.99.0.${index}/24`,
      endpoint: `198.18.0.${index}:51820`,
      allowedIPs: [`10.99.0.${index}/32`],
      listenPort: 51820,
      persistentKeepalive: '25s',
      epoch: 1,
      secretRef: { namespace: NS, name: keySecretName(OVERLAY, node) },
      ...extra,
    },
    ...(status ? { status } : {}),
  };
}

class World {
  readonly api = new FakeApiServer();
  readonly clock = new FakeClock(Date.UTC(2026, 10, 21, 5, 0, 0));
  readonly operator = newBoxKeyPair();
  readonly devices = new Map<string, FakeWireGuardDevice>();
  readonly firewall = new FakeFirewall();
  readonly registry = new Registry();
  readonly metrics = new AgentMetrics(this.registry);
  readonly probes: string[] = [];
  readonly logLines: string[] = [];
  readonly peers = new Map<string, Peer>();
  readonly psks = new Map<string, Uint8Array>();
  /** the key payload version its Secrets are written in (a newer operator writes another) */
  payloadVersion = 2;
  /** device changes, probes and status writes, in the order they happened (see traceAll) */
  readonly trace: string[] = [];
  /** fake-clock time of the last setPrivateKey (see traceAll) */
  keySetAt: number | undefined;
  agent!: Agent;
  stateDir = '';

  constructor(
    readonly keys: { custody?: 'Node' | 'Operator'; presharedKeys?: 'PerPair' | 'Disabled' } = {},
  ) {}

  async init(): Promise<void> {
    this.stateDir = join(await mkdtemp(join(tmpdir(), 'sealmesh-agent-')), 'state');
    this.api.put(configMapsPath(NS), {
      metadata: { name: IDENTITY_NAME, namespace: NS },
      data: { [IDENTITY_PUBLIC_KEY]: Buffer.from(this.operator.publicKey).toString('base64') },
    });
    this.api.put(OVERLAYS_PATH, {
      apiVersion: 'sealmesh.io/v1alpha1',
      kind: 'OverlayNetwork',
      metadata: { name: OVERLAY },
      spec: { addressPool: '10.99.0.0/24', keys: this.keys },
    });
    this.api.put(TUNNELS_PATH, tunnelObject('a', 1));
    for (const [node, index] of [
      ['b', 2],
      ['c', 3],
    ] as const) {
      const peer: Peer = { node, index, wg: generateKeyPair(), envelope: newBoxKeyPair() };
      this.peers.set(node, peer);
      this.api.put(TUNNELS_PATH, tunnelObject(node, index, this.peerStatus(peer)));
    }
  }

  peerStatus(peer: Peer): Record<string, unknown> {
    return {
      ...(this.keys.custody === 'Operator' ? {} : { publicKey: peer.wg.publicKey }),
      envelopePublicKey: Buffer.from(peer.envelope.publicKey).toString('base64'),
    };
  }

  newAgent(device?: (name: string) => FakeWireGuardDevice): Agent {
    const stream = new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        this.logLines.push(chunk.toString());
        cb();
      },
    });
    const prober: Prober = {
      probe: (_iface, address) => {
        this.probes.push(address);
        this.trace.push('probe');
        return Promise.resolve();
      },
    };
    return new Agent({
      node: 'a',
      namespace: NS,
      stateDir: this.stateDir,
      api: this.api,
      clock: this.clock,
      logger: pino({ level: 'debug' }, stream),
      prober,
      probeIntervalMs: PROBE_MS,
      underlayMtu: () => Promise.resolve(1500),
      informer: { stallTimeoutMs: 1e9 },
      firewall: this.firewall,
      metrics: this.metrics,
      deviceFactory:
        device ??
        ((name) => {
          const d = this.devices.get(name) ?? new FakeWireGuardDevice(name);
          this.devices.set(name, d);
          return d;
        }),
    });
  }

  async start(): Promise<Agent> {
    this.agent = this.newAgent();
    await this.agent.start();
    await waitUntil('envelope key published', () => this.status().envelopePublicKey !== undefined);
    return this.agent;
  }

  device(): FakeWireGuardDevice {
    const d = this.devices.get(interfaceName('sm', OVERLAY));
    if (!d) throw new Error('no device yet');
    return d;
  }

  status(): NodeTunnelStatus {
    return this.api.get(TUNNELS_PATH, `${OVERLAY}.a`)?.status ?? {};
  }

  peerEntry(node: string): PeerStatus | undefined {
    return this.status().peers?.find((p) => p.node === node);
  }

  myEnvelope(): Uint8Array {
    return new Uint8Array(Buffer.from(this.status().envelopePublicKey!, 'base64'));
  }

  /** Acting as the operator: seal the PSK of pair (a, peer) into `owner`'s Secret. */
  sealPair(peer: string, owner: string, sender: BoxKeyPair = this.operator, epoch = 1): SealedPair {
    const psk = newPresharedKey();
    const [a, b] = pairKey('a', peer);
    this.psks.set(`${a}/${b}`, psk);
    this.psks.set(`${a}/${b}@${epoch}`, psk);
    const envelopes: Record<string, Uint8Array> = {
      a: this.myEnvelope(),
      [peer]: this.peers.get(peer)!.envelope.publicKey,
    };
    const pair: SealedPair = {
      a,
      b,
      epoch,
      fingerprint: fingerprint(psk),
      sealedTo: { [a]: fingerprint(envelopes[a]!), [b]: fingerprint(envelopes[b]!) },
      sealed: {
        [a]: seal(psk, envelopes[a]!, sender, pskContext(OVERLAY, a, b, epoch)),
        [b]: seal(psk, envelopes[b]!, sender, pskContext(OVERLAY, a, b, epoch)),
      },
    };
    this.addToSecret(owner, { pairs: [pair] });
    return pair;
  }

  /**
   * Acting as an operator that seals hybrid (issue #17): the PSK of pair (a, peer) in `owner`'s Secret, sealed
   * to a with an ML-KEM exchange with a's published key; the exchange goes into a's own Secret unless `record`
   * is false (a restarted operator's exchange not recorded yet). The peer is sealed to classically.
   */
  sealPairHybrid(peer: string, owner: string, record = true): SealedPair {
    const psk = newPresharedKey();
    const [a, b] = pairKey('a', peer);
    this.psks.set(`${a}/${b}`, psk);
    const raw = new Uint8Array(Buffer.from(this.status().envelopeMLKEMPublicKey!, 'base64'));
    const env = { key: this.myEnvelope(), fp: hybridFingerprint(this.myEnvelope(), raw) };
    const { ciphertext, sharedKey } = encapsulateTo(kemPublicKey(raw));
    const x = {
      entry: {
        id: kemIdOf(ciphertext),
        node: 'a',
        sealedTo: env.fp,
        ciphertext: Buffer.from(ciphertext).toString('base64'),
      },
      nodeKey: hybridNodeKey(x25519Shared(this.operator.secretKey, env.key), sharedKey, {
        operatorPublicKey: this.operator.publicKey,
        nodePublicKey: env.key,
        nodeKemPublicKey: raw,
        ciphertext,
      }),
    };
    const context = pskContext(OVERLAY, a, b, 1);
    const peerKey = this.peers.get(peer)!.envelope.publicKey;
    const pair: SealedPair = {
      a,
      b,
      epoch: 1,
      fingerprint: fingerprint(psk),
      sealedTo: { a: env.fp, [peer]: fingerprint(peerKey) },
      sealed: {
        a: sealHybridValue(psk, x.nodeKey, x.entry.id, context),
        [peer]: seal(psk, peerKey, this.operator, context),
      },
    };
    this.addToSecret(owner, { pairs: [pair], epoch: 1 });
    if (record) this.addToSecret('a', { kems: [x.entry], epoch: 1 });
    return pair;
  }

  /** Adds entries to the owner's key Secrets, each to the Secret of its epoch (or of `epoch`, when given). */
  addToSecret(
    owner: string,
    add: {
      pairs?: SealedPair[];
      privateKeys?: { epoch: number; publicKey: string; sealedTo: string; sealed: string }[];
      kems?: KemEntry[];
      epoch?: number;
    },
  ): void {
    const epochs = new Set(
      [...(add.pairs ?? []), ...(add.privateKeys ?? [])].map((e) => add.epoch ?? e.epoch),
    );
    if (add.kems && add.epoch !== undefined) epochs.add(add.epoch);
    for (const epoch of epochs) {
      const name = keySecretNameAt(OVERLAY, owner, epoch);
      const existing = this.api.get(secretsPath(NS), name) as { data?: Record<string, string> } | undefined;
      const payload = existing?.data
        ? (JSON.parse(Buffer.from(existing.data['keys.json']!, 'base64').toString()) as {
            pairs: SealedPair[];
            privateKeys: unknown[];
            kems?: KemEntry[];
          })
        : { pairs: [], privateKeys: [] };
      this.api.put(secretsPath(NS), {
        metadata: {
          name,
          namespace: NS,
          labels: {
            'sealmesh.io/overlay': OVERLAY,
            'sealmesh.io/node': owner,
            'sealmesh.io/epoch': `${epoch}`,
          },
        },
        type: KEY_SECRET_TYPE,
        data: encodeKeySecretData({
          version: this.payloadVersion as 2,
          overlay: OVERLAY,
          node: owner,
          pairs: [...payload.pairs, ...(add.pairs ?? []).filter((e) => (add.epoch ?? e.epoch) === epoch)],
          privateKeys: [
            ...(payload.privateKeys as never[]),
            ...(add.privateKeys ?? []).filter((e) => (add.epoch ?? e.epoch) === epoch),
          ],
          kems: [...(payload.kems ?? []), ...(add.epoch === epoch ? (add.kems ?? []) : [])],
        }),
      });
    }
  }

  /** Acting as the operator: the OverlayNetwork's status. */
  overlayStatus(status: Record<string, unknown>): void {
    this.api.put(OVERLAYS_PATH, {
      apiVersion: 'sealmesh.io/v1alpha1',
      kind: 'OverlayNetwork',
      metadata: { name: OVERLAY },
      spec: { addressPool: '10.99.0.0/24', keys: this.keys },
      status,
    });
  }

  /** Acting as the operator: a rotation from epoch 1 to 2 in `phase`. */
  rotate(
    phase: 'Staging' | 'CuttingOver' | 'Verifying' | 'Backoff',
    scope: 'Keys' | 'PresharedKeys',
    extra: { cutoverTime?: number; epoch?: number } = {},
  ): void {
    this.overlayStatus({
      epoch: extra.epoch ?? 1,
      rotation: {
        phase,
        scope,
        targetEpoch: 2,
        startTime: new Date(this.clock.now()).toISOString(),
        attempt: 1,
        ...(extra.cutoverTime !== undefined
          ? { cutoverTime: new Date(extra.cutoverTime).toISOString() }
          : {}),
      },
    });
  }

  /** Acting as peer `node`'s agent: its status (its current public key unless given). */
  setPeer(node: string, status: Record<string, unknown>): void {
    const peer = this.peers.get(node)!;
    this.api.put(TUNNELS_PATH, tunnelObject(node, peer.index, { ...this.peerStatus(peer), ...status }));
  }

  /** Records device changes and status writes in `trace`, next to the probes. */
  traceAll(): void {
    const d = this.device();
    for (const m of ['ensureInterface', 'setPrivateKey', 'upsertPeer', 'removePeer', 'syncRoutes'] as const) {
      const original: (arg: never) => Promise<void> = d[m].bind(d);
      (d as unknown as Record<string, unknown>)[m] = (arg: never): Promise<void> => {
        this.trace.push(m);
        if (m === 'setPrivateKey') this.keySetAt = this.clock.now();
        return original(arg);
      };
    }
    const patch = this.api.patchNodeTunnelStatus.bind(this.api);
    this.api.patchNodeTunnelStatus = (name, status) => {
      this.trace.push('status');
      return patch(name, status);
    };
  }

  /** Runs the periodic pass once on the fake clock and waits for it to finish. */
  async tick(ms = PROBE_MS): Promise<void> {
    const before = this.agent.passes;
    await this.clock.advance(ms);
    await waitUntil('a reconcile pass', () => this.agent.passes > before);
    await this.idle();
  }

  /** Makes a change and waits for a pass after it to finish: evidence the agent has seen the change. */
  async passAfter(change: () => void): Promise<void> {
    const before = this.agent.passes;
    change();
    await waitUntil('a pass after the change', () => this.agent.passes > before);
    await this.idle();
  }

  /** Waits until no pass runs any more (the queue drained). */
  async idle(): Promise<void> {
    let last = -1;
    while (last !== this.agent.passes) {
      last = this.agent.passes;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  allLogs(): string {
    return this.logLines.join('');
  }

  async close(): Promise<void> {
    await this.agent?.stop();
    if (process.env.AGENT_TEST_LOG_FILE) {
      const { appendFile } = await import('node:fs/promises');
      await appendFile(process.env.AGENT_TEST_LOG_FILE, this.allLogs());
    }
    await rm(join(this.stateDir, '..'), { recursive: true, force: true });
  }
}

let world: World;
afterEach(async () => {
  await world?.close();
});

test('derives the peers from the NodeTunnels and applies them with the PSK from either Secret', async () => {
  world = new World();
  await world.init();
  await world.start();
  // b owns pair a/b (in b's Secret), a owns pair a/c (in a's own Secret)
  const ab = world.sealPair('b', 'b');
  const ac = world.sealPair('c', 'a');
  await waitUntil(
    'both peers configured',
    () => world.peerEntry('b')?.state === 'Handshaking' && world.peerEntry('c')?.state === 'Handshaking',
  );

  const device = world.device();
  const state = await device.read();
  const b = world.peers.get('b')!;
  const c = world.peers.get('c')!;
  expect(state?.publicKey).toBe(world.status().publicKey);
  expect(state?.listenPort).toBe(51820);
  expect(device.addresses).toEqual(['10.99.0.1/24']);
  expect(device.mtu).toBe(1420);
  const byKey = new Map(state!.peers.map((p) => [p.publicKey, p]));
  expect(byKey.get(b.wg.publicKey)).toMatchObject({
    allowedIPs: ['10.99.0.2/32'],
    endpoint: '198.18.0.2:51820',
    persistentKeepalive: 25,
    presharedKeyFingerprint: ab.fingerprint,
  });
  expect(byKey.get(c.wg.publicKey)?.presharedKeyFingerprint).toBe(ac.fingerprint);
  expect(device.routes).toEqual(['10.99.0.2/32', '10.99.0.3/32']);

  const status = world.status();
  expect(status.envelopePublicKey).toBe(world.agent.envelopePublicKey());
  expect(status.appliedEpoch).toBe(1);
  expect(status.peersSummary).toBe('0/2');
  expect(status.summary).toEqual({ encrypted: 0, total: 2 });
  expect(status.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
    status: 'True',
    reason: 'Applied',
  });
  expect(status.conditions?.find((c) => c.type === 'Encrypted')).toMatchObject({ status: 'False' });
  // liveness Lease
  expect(world.api.leases.state?.record.holderIdentity).toBe('a');
  expect(agentLeaseName('a')).toBe('sealmesh-agent-a');
  // no key material anywhere
  const everything = world.allLogs() + JSON.stringify(world.api.statusPatches);
  for (const psk of world.psks.values()) {
    expect(everything).not.toContain(Buffer.from(psk).toString('base64'));
    expect(everything).not.toContain(Buffer.from(psk).toString('hex'));
  }
});

test('hybrid sealing: the agent publishes its ML-KEM key and opens PSKs sealed with X25519 + ML-KEM', async () => {
  world = new World();
  await world.init();
  await world.start();
  await waitUntil('ML-KEM key published', () => world.status().envelopeMLKEMPublicKey !== undefined);
  expect(Buffer.from(world.status().envelopeMLKEMPublicKey!, 'base64')).toHaveLength(1184);
  const ab = world.sealPairHybrid('b', 'b');
  // A value naming an exchange that is not in a's Secret yet (an operator restarted): waiting, not refused.
  const ac = world.sealPairHybrid('c', 'c', false);
  await waitUntil('pair a/b configured', () => world.peerEntry('b')?.state === 'Handshaking');
  const state = await world.device().read();
  const byKey = new Map(state!.peers.map((p) => [p.publicKey, p]));
  expect(byKey.get(world.peers.get('b')!.wg.publicKey)?.presharedKeyFingerprint).toBe(ab.fingerprint);
  const c = world.peerEntry('c');
  expect(c?.state).not.toBe('Handshaking');
  expect(c?.message).toContain('waiting for the ML-KEM key exchange');
  expect(byKey.get(world.peers.get('c')!.wg.publicKey)?.presharedKeyFingerprint).not.toBe(ac.fingerprint);
  const everything = world.allLogs() + JSON.stringify(world.api.statusPatches);
  for (const psk of world.psks.values())
    expect(everything).not.toContain(Buffer.from(psk).toString('base64'));
});

test('an update touches only the peers that changed', async () => {
  world = new World();
  await world.init();
  await world.start();
  world.sealPair('b', 'b');
  world.sealPair('c', 'c');
  await waitUntil(
    'both peers configured',
    () =>
      world.status().peers?.every((p) => p.state === 'Handshaking') === true &&
      world.status().peers?.length === 2,
  );
  await world.idle();
  const device = world.device();
  const c = world.peers.get('c')!;
  // both peers answer, so no pass restarts a handshake (peerstate.ts, shouldKickHandshake)
  for (const peer of ['b', 'c'])
    device.handshake(world.peers.get(peer)!.wg.publicKey, new Date(world.clock.now()));

  // c gets a pod CIDR routed: one upsert of c, nothing else rewritten
  let mark = device.calls.length;
  world.api.put(
    TUNNELS_PATH,
    tunnelObject('c', 3, world.peerStatus(c), { allowedIPs: ['10.99.0.3/32', '10.244.3.0/24'] }),
  );
  await waitUntil('route added', () => device.routes.includes('10.244.3.0/24'));
  await world.idle();
  let changes = device.calls.slice(mark).filter((x) => x.method !== 'read');
  expect(changes).toEqual([
    { method: 'upsertPeer', detail: fingerprint(c.wg.publicKey) },
    { method: 'syncRoutes' },
  ]);

  // a resync with nothing changed writes nothing to the device
  mark = device.calls.length;
  await world.tick();
  expect(device.calls.slice(mark).filter((x) => x.method !== 'read')).toEqual([]);

  // c leaves: exactly one removePeer, b untouched
  mark = device.calls.length;
  world.api.remove(TUNNELS_PATH, `${OVERLAY}.c`);
  await waitUntil('peer removed', () => world.status().peers?.length === 1);
  await world.idle();
  changes = device.calls.slice(mark).filter((x) => x.method !== 'read');
  expect(changes).toEqual([
    { method: 'removePeer', detail: fingerprint(c.wg.publicKey) },
    { method: 'syncRoutes' },
  ]);
  expect(device.routes).toEqual(['10.99.0.2/32']);
  expect(world.status().peersSummary).toBe('1/1'); // b handshook above
});

test("a peer's report of its own peers does not wake the agent; its keys do", async () => {
  world = new World();
  await world.init();
  await world.start();
  world.sealPair('b', 'b');
  world.sealPair('c', 'c');
  await waitUntil('both peers configured', () => world.status().peers?.length === 2);
  // Settled: the pass that follows the agent's own last status write has run too.
  await new Promise((r) => setTimeout(r, 200));
  await world.idle();
  const before = world.agent.passes;
  const now = new Date().toISOString();
  world.setPeer('c', {
    peers: [{ node: 'b', state: 'Encrypted', epoch: 1, since: now }],
    summary: { encrypted: 1, total: 2 },
    peersSummary: '1/2',
  });
  // A change that matters, on the same watch after it: once its pass ran, the event before it was handled
  // too. Had that one enqueued a pass, the key would have been in flight (or done) and run twice.
  world.setPeer('c', { stagedEpoch: 2, stagedPublicKey: world.peers.get('c')!.wg.publicKey });
  await waitUntil('a pass for the staged key', () => world.agent.passes > before);
  await world.idle();
  expect(world.agent.passes).toBe(before + 1);
});

test('a PSK not sealed by the operator is refused and the peer is not added', async () => {
  world = new World();
  await world.init();
  await world.start();
  const rogue = newBoxKeyPair();
  world.sealPair('b', 'b');
  const bad = world.sealPair('c', 'c', rogue);
  await waitUntil('c refused', () => world.peerEntry('c')?.state === 'KeyMismatch');
  await waitUntil('b configured', () => world.peerEntry('b')?.state === 'Handshaking');
  const state = await world.device().read();
  expect(state?.peers.map((p) => p.publicKey)).toEqual([world.peers.get('b')!.wg.publicKey]);
  expect(world.peerEntry('c')?.message).toMatch(/does not open with the operator's sealing key/);
  expect(world.allLogs()).toMatch(/pre-shared key refused/);
  expect(world.allLogs()).toContain(bad.fingerprint);
  for (const psk of world.psks.values())
    expect(world.allLogs()).not.toContain(Buffer.from(psk).toString('base64'));
});

test("the operator's sealing key is pinned on first use: a replaced identity is reported, never followed", async () => {
  world = new World();
  await world.init();
  await world.start();
  world.sealPair('b', 'b');
  await waitUntil('b configured', () => world.peerEntry('b')?.state === 'Handshaking');
  const pinnedFile = join(world.stateDir, 'operator.pub');
  expect((await readFile(pinnedFile, 'utf8')).trim()).toBe(
    Buffer.from(world.operator.publicKey).toString('base64'),
  );
  expect((await stat(pinnedFile)).mode & 0o777).toBe(0o600);

  // someone who can write the ConfigMap publishes their own key and seals c's PSK with it
  const rogue = newBoxKeyPair();
  const publish = (key: Uint8Array): void => {
    world.api.put(configMapsPath(NS), {
      metadata: { name: IDENTITY_NAME, namespace: NS },
      data: { [IDENTITY_PUBLIC_KEY]: Buffer.from(key).toString('base64') },
    });
  };
  publish(rogue.publicKey);
  world.sealPair('c', 'c', rogue);
  await waitUntil(
    'OperatorKeyChanged reported',
    () => world.status().conditions?.find((c) => c.type === 'OperatorKeyTrusted')?.status === 'False',
  );
  const cond = world.status().conditions!.find((c) => c.type === 'OperatorKeyTrusted')!;
  expect(cond.reason).toBe('OperatorKeyChanged');
  expect(cond.message).toContain(fingerprint(rogue.publicKey));
  expect(cond.message).toContain(fingerprint(world.operator.publicKey));
  await waitUntil('c refused', () => world.peerEntry('c')?.state === 'KeyMismatch');
  // b's PSK, sealed by the real operator, still opens with the pinned key
  expect(world.peerEntry('b')?.state).toBe('Handshaking');

  // a restarted agent keeps the pin
  await world.agent.stop();
  world.agent = world.newAgent();
  await world.agent.start();
  await world.idle();
  expect(world.peerEntry('c')?.state).toBe('KeyMismatch');
  expect(world.status().conditions?.find((c) => c.type === 'OperatorKeyTrusted')?.reason).toBe(
    'OperatorKeyChanged',
  );

  // the operator restores its identity: the condition goes
  await world.passAfter(() => publish(world.operator.publicKey));
  await waitUntil(
    'condition gone',
    () => world.status().conditions?.some((c) => c.type === 'OperatorKeyTrusted') === false,
  );
});

test('epochs only increase: an overlay status restored to an older epoch is refused, also after a restart', async () => {
  world = new World({ presharedKeys: 'Disabled' });
  await world.init();
  world.overlayStatus({ epoch: 3 });
  await world.start();
  await waitUntil('running epoch 3', () => world.status().appliedEpoch === 3);
  const floorFile = join(world.stateDir, 'overlays', OVERLAY, 'epoch.json');
  expect(JSON.parse(await readFile(floorFile, 'utf8'))).toMatchObject({ epoch: 3 });
  const key = (await world.device().read())!.publicKey;

  // an etcd restore brings status.epoch back to 2
  await world.passAfter(() => world.overlayStatus({ epoch: 2 }));
  await waitUntil(
    'refused',
    () => world.status().conditions?.find((c) => c.type === 'Ready')?.reason === 'EpochRolledBack',
  );
  expect(world.status().appliedEpoch).toBe(3); // what the node ran, for the operator to see
  expect(world.status().conditions?.find((c) => c.type === 'Ready')?.message).toMatch(
    /epoch 2 is below epoch 3, which this node already ran/,
  );
  expect((await world.device().read())!.publicKey).toBe(key); // the device is left as it was

  // a restarted agent remembers
  await world.agent.stop();
  world.agent = world.newAgent();
  await world.agent.start();
  await world.idle();
  expect(world.status().conditions?.find((c) => c.type === 'Ready')?.reason).toBe('EpochRolledBack');

  // the operator moves on to a new epoch: applied
  await world.passAfter(() => world.overlayStatus({ epoch: 4 }));
  await waitUntil('running epoch 4', () => world.status().appliedEpoch === 4);
  expect(world.status().conditions?.find((c) => c.type === 'Ready')?.reason).toBe('Applied');
  expect(JSON.parse(await readFile(floorFile, 'utf8'))).toMatchObject({ epoch: 4 });
});

test("a PSK copied from another pair's entry is refused: sealed values are bound to their pair and epoch", async () => {
  world = new World();
  await world.init();
  await world.start();
  const ab = world.sealPair('b', 'b');
  await waitUntil('b configured', () => world.peerEntry('b')?.state === 'Handshaking');
  // someone with write access to key Secrets copies a's sealed a/b PSK into an a/c entry (and c's likewise)
  const copied: SealedPair = { ...ab, a: 'a', b: 'c', sealedTo: { a: ab.sealedTo.a!, c: ab.sealedTo.b! } };
  copied.sealed = { a: ab.sealed.a!, c: ab.sealed.b! };
  world.addToSecret('c', { pairs: [copied] });
  await waitUntil('c refused', () => world.peerEntry('c')?.state === 'KeyMismatch');
  expect(world.peerEntry('c')?.message).toBe(
    'pre-shared key was sealed for another pair, epoch or overlay, not a/c at epoch 1',
  );
  const peers = (await world.device().read())!.peers.map((p) => p.publicKey);
  expect(peers).toEqual([world.peers.get('b')!.wg.publicKey]);
});

test('version skew: the agent says what it runs and reads; a key Secret in a payload version it does not read is named in the peer status', async () => {
  world = new World();
  await world.init();
  await world.start();
  world.sealPair('b', 'b');
  await waitUntil('b configured', () => world.peerEntry('b')?.state === 'Handshaking');
  expect(world.status().agent).toEqual({ version: RELEASE, keyPayloads: [2] });
  // c's Secret as a newer operator would write it, in a payload version this agent does not read
  world.payloadVersion = 3;
  world.sealPair('c', 'c');
  const name = keySecretNameAt(OVERLAY, 'c', 1);
  await waitUntil('c named as unread', () => (world.peerEntry('c')?.message ?? '').includes('not read'));
  expect(world.peerEntry('c')?.message).toBe(
    `no pre-shared key for this pair at epoch 1: key Secret not read (${name}: key payload version 3; this ` +
      'build reads 2 (version skew: see status.agent))',
  );
  expect((await world.device().read())!.peers.map((p) => p.publicKey)).toEqual([
    world.peers.get('b')!.wg.publicKey,
  ]);
});

test('PerPair without a PSK yet: the peer waits; Disabled: peers are added without one', async () => {
  world = new World();
  await world.init();
  await world.start();
  await waitUntil('peers awaiting', () => world.status().peers?.length === 2);
  expect(world.status().peers?.map((p) => p.state)).toEqual(['AwaitingPeer', 'AwaitingPeer']);
  expect((await world.device().read())?.peers).toEqual([]);
  await world.close();

  world = new World({ presharedKeys: 'Disabled' });
  await world.init();
  await world.start();
  await waitUntil(
    'peers configured',
    () => world.status().peers?.filter((p) => p.state === 'Handshaking').length === 2,
  );
  const peers = (await world.device().read())!.peers;
  expect(peers).toHaveLength(2);
  expect(peers.every((p) => !p.presharedKeySet)).toBe(true);
});

test('a peer that receives nothing while this node sends to it for 45 s is Stalled and re-created once; bytes back end it', async () => {
  world = new World({ presharedKeys: 'Disabled' });
  await world.init();
  await world.start();
  await waitUntil(
    'peers configured',
    () => world.status().peers?.filter((p) => p.state === 'Handshaking').length === 2,
  );
  await world.idle();
  const device = world.device();
  const b = world.peers.get('b')!.wg.publicKey;
  const c = world.peers.get('c')!.wg.publicKey;
  const traffic = (rxB: number) => {
    const now = new Date(world.clock.now());
    device.handshake(b, now, { rx: rxB, tx: 500 });
    device.handshake(c, now, { rx: 100, tx: 100 });
  };
  traffic(100);
  await world.tick();
  expect(world.peerEntry('b')?.state).toBe('Encrypted');
  const removals = () => device.calls.filter((x) => x.method === 'removePeer').length;
  const before = removals();
  // b: sent grows, nothing comes back; c: both ways
  for (let t = 0; t < 50_000; t += 5_000) {
    traffic(0);
    await world.tick(5_000);
  }
  expect(world.peerEntry('b')).toMatchObject({ state: 'Stalled' });
  expect(world.peerEntry('b')?.message).toMatch(
    /^nothing received from the peer for 45s while sending to it; the peer was re-created once at /,
  );
  expect(world.peerEntry('c')?.state).toBe('Encrypted');
  expect(removals()).toBe(before + 1);
  expect(world.allLogs()).toContain('peer stalled (nothing received while sending); re-created it');
  // still silent after the re-creation: Stalled again after another window, but not re-created twice
  for (let t = 0; t < 50_000; t += 5_000) {
    traffic(0);
    await world.tick(5_000);
  }
  expect(world.peerEntry('b')?.state).toBe('Stalled');
  expect(removals()).toBe(before + 1);
  // something comes back: Encrypted
  traffic(64);
  await world.tick(5_000);
  expect(world.peerEntry('b')?.state).toBe('Encrypted');
});

test('peer states move Handshaking → Encrypted → Stale, and status is written only on a change', async () => {
  world = new World({ presharedKeys: 'Disabled' });
  await world.init();
  await world.start();
  await waitUntil(
    'peers configured',
    () => world.status().peers?.filter((p) => p.state === 'Handshaking').length === 2,
  );
  await world.idle();
  const device = world.device();
  const b = world.peers.get('b')!;
  const c = world.peers.get('c')!;
  const firstSince = world.peerEntry('b')!.since;
  // Handshaking peers are probed through the tunnel
  expect(world.probes).toEqual(expect.arrayContaining(['10.99.0.2', '10.99.0.3']));

  // quiet passes: nothing changes, nothing is written
  let writes = world.agent.statusWrites;
  await world.tick();
  await world.tick();
  expect(world.agent.statusWrites).toBe(writes);

  device.handshake(b.wg.publicKey, new Date(world.clock.now()));
  device.handshake(c.wg.publicKey, new Date(world.clock.now()));
  await world.tick();
  expect(world.peerEntry('b')).toMatchObject({ state: 'Encrypted', epoch: 1 });
  expect(world.status().peersSummary).toBe('2/2');
  expect(world.status().conditions?.find((x) => x.type === 'Encrypted')).toMatchObject({
    status: 'True',
    reason: 'AllPeersEncrypted',
  });
  const encryptedSince = world.peerEntry('b')!.since;
  expect(encryptedSince).not.toBe(firstSince);
  expect(world.agent.statusWrites).toBe(writes + 1);

  // a fresh handshake on c alone is no state change: no write, `since` kept
  writes = world.agent.statusWrites;
  await world.tick(60_000);
  device.handshake(c.wg.publicKey, new Date(world.clock.now()));
  await world.tick();
  expect(world.agent.statusWrites).toBe(writes);
  expect(world.peerEntry('b')!.since).toBe(encryptedSince);

  // b has no handshake for more than 180 s: Stale; c (handshake 65 s ago) still Encrypted
  await world.tick(120_000);
  expect(world.peerEntry('b')).toMatchObject({ state: 'Stale', message: 'no handshake within 180s' });
  expect(world.peerEntry('c')?.state).toBe('Encrypted');
  expect(world.status().peersSummary).toBe('1/2');
  expect(world.agent.statusWrites).toBe(writes + 1);
});

test('a peer without a handshake 1 s after its keys is re-created and probed: once a second, for 5 s, by one end', async () => {
  world = new World({ presharedKeys: 'Disabled' });
  await world.init();
  await world.start();
  await waitUntil(
    'peers configured',
    () => world.status().peers?.filter((p) => p.state === 'Handshaking').length === 2,
  );
  await world.idle();
  const device = world.device();
  const own = (await device.read())!.publicKey!;
  const mark = device.calls.length;
  const probesBefore = world.probes.length;
  await world.tick(10_000);
  const calls = device.calls.slice(mark).filter((x) => x.method !== 'read');
  let kicked = 0;
  for (const node of ['b', 'c']) {
    const peer = world.peers.get(node)!;
    const removals = calls.flatMap((x, i) =>
      x.method === 'removePeer' && x.detail === fingerprint(peer.wg.publicKey) ? [i] : [],
    );
    // the end whose public key sorts first restarts the handshake; the other end leaves it to that one
    const kicks = own < peer.wg.publicKey ? 4 : 0;
    kicked += kicks;
    expect(removals).toHaveLength(kicks);
    // each removal is followed at once by the same peer written back
    for (const i of removals)
      expect(calls[i + 1]).toEqual({ method: 'upsertPeer', detail: fingerprint(peer.wg.publicKey) });
  }
  expect(world.probes.length - probesBefore).toBeGreaterThanOrEqual(kicked);
  expect((await device.read())!.peers.map((p) => p.publicKey).sort()).toEqual(
    ['b', 'c'].map((n) => world.peers.get(n)!.wg.publicKey).sort(),
  );
  // past the window nothing more is restarted
  const later = device.calls.length;
  await world.tick(10_000);
  expect(device.calls.slice(later).filter((x) => x.method === 'removePeer')).toEqual([]);
});

test('envelope key: created 0600 in a 0700 dir, reused on restart; the device is adopted, not re-created', async () => {
  world = new World();
  await world.init();
  await world.start();
  world.sealPair('b', 'b');
  world.sealPair('c', 'a');
  await waitUntil(
    'peers configured',
    () => world.status().peers?.filter((p) => p.state === 'Handshaking').length === 2,
  );
  const envelope = world.agent.envelopePublicKey();
  const wgPublic = world.status().publicKey;
  expect((await stat(world.stateDir)).mode & 0o777).toBe(0o700);
  expect((await stat(join(world.stateDir, 'envelope.key'))).mode & 0o777).toBe(0o600);
  expect((await stat(join(world.stateDir, 'overlays', OVERLAY, 'wg-1.key'))).mode & 0o777).toBe(0o600);

  // SIGTERM: watches stop, the device stays
  await world.agent.stop();
  const device = world.device();
  expect(device.exists).toBe(true);
  expect(world.api.openWatches()).toBe(0);

  const mark = device.calls.length;
  const writes = world.api.statusPatches.length;
  world.agent = world.newAgent();
  await world.agent.start();
  await waitUntil('a pass after restart', () => world.agent.passes > 0);
  await world.idle();
  expect(world.agent.envelopePublicKey()).toBe(envelope);
  expect(world.status().publicKey).toBe(wgPublic);
  const methods = device.calls.slice(mark).map((x) => x.method);
  expect(methods).not.toContain('delete');
  expect(methods).not.toContain('upsertPeer');
  expect(methods).not.toContain('removePeer');
  expect((await device.read())?.peers).toHaveLength(2);
  // same state as before the restart: nothing to write
  expect(world.api.statusPatches.length).toBe(writes);
});

test('leaving the overlay deletes the device and the keys kept for it', async () => {
  world = new World({ presharedKeys: 'Disabled' });
  await world.init();
  await world.start();
  await waitUntil('peers configured', () => world.status().peers?.length === 2);
  const device = world.device();
  expect(device.exists).toBe(true);
  world.api.remove(TUNNELS_PATH, `${OVERLAY}.a`);
  await waitUntil('device deleted', () => !device.exists);
  await world.idle();
  await expect(stat(join(world.stateDir, 'overlays', OVERLAY))).rejects.toMatchObject({ code: 'ENOENT' });
  // envelope key stays: it identifies the node, not the overlay
  expect((await stat(join(world.stateDir, 'envelope.key'))).isFile()).toBe(true);
});

test('fail-closed: the rules go in before the first peer and route, cover members without keys and the declared ranges minus own, and go only after the device when the node leaves', async () => {
  world = new World();
  await world.init();
  world.api.put(OVERLAYS_PATH, {
    apiVersion: 'sealmesh.io/v1alpha1',
    kind: 'OverlayNetwork',
    metadata: { name: OVERLAY },
    spec: { addressPool: '10.99.0.0/24', dataPlane: { protectedRanges: ['10.244.0.0/22'] } },
  });
  // a's own pod CIDR is 10.244.1.0/24
  world.api.put(
    TUNNELS_PATH,
    tunnelObject('a', 1, undefined, { allowedIPs: ['10.99.0.1/32', '10.244.1.0/24'] }),
  );
  const order: string[] = [];
  const sync = world.firewall.sync.bind(world.firewall);
  world.firewall.sync = (r) => {
    order.push(`rules ${r.prefixes.join(',')}`);
    return sync(r);
  };
  const name = interfaceName('sm', OVERLAY);
  const device = new FakeWireGuardDevice(name);
  const upsert = device.upsertPeer.bind(device);
  device.upsertPeer = (peer) => {
    order.push('peer');
    return upsert(peer);
  };
  const routes = device.syncRoutes.bind(device);
  device.syncRoutes = (prefixes) => {
    order.push('routes');
    return routes(prefixes);
  };
  world.devices.set(name, device);
  world.agent = world.newAgent();
  await world.agent.start();
  await waitUntil('envelope key published', () => world.status().envelopePublicKey !== undefined);
  // no PSK yet (PerPair): no peer, yet b and c are protected already, with the declared range minus a's own
  await waitUntil('peers awaiting', () => world.status().peers?.length === 2);
  // every member's prefixes an element of their own (drops are counted per peer), the declared rest beside
  const want = ['10.99.0.2/32', '10.99.0.3/32', '10.244.0.0/24', '10.244.2.0/23'];
  expect(world.firewall.table?.get(name)).toMatchObject({ device: name, mode: 'FailClosed', prefixes: want });
  expect(order.indexOf('peer')).toBe(-1);
  world.sealPair('b', 'b');
  await waitUntil('b configured', () => world.peerEntry('b')?.state === 'Handshaking');
  expect(order[0]).toBe(`rules ${want.join(',')}`);
  expect(order.indexOf('peer')).toBeGreaterThan(0);
  expect(order.indexOf('routes')).toBeGreaterThan(0);

  // Monitor: the same set, counted only
  world.api.put(OVERLAYS_PATH, {
    apiVersion: 'sealmesh.io/v1alpha1',
    kind: 'OverlayNetwork',
    metadata: { name: OVERLAY },
    spec: {
      addressPool: '10.99.0.0/24',
      dataPlane: { mode: 'Monitor', protectedRanges: ['10.244.0.0/22'] },
    },
  });
  await waitUntil('Monitor', () => world.firewall.table?.get(name)?.mode === 'Monitor');

  // leaving: the device goes first, then the rules (and with the last overlay the table)
  world.api.remove(TUNNELS_PATH, `${OVERLAY}.a`);
  await waitUntil('table removed', () => world.firewall.table === undefined);
  expect(device.exists).toBe(false);
  const removeAt = world.firewall.calls.findIndex((c) => c.method === 'remove');
  expect(removeAt).toBeGreaterThan(0);
  expect(world.firewall.calls.slice(removeAt + 1).filter((c) => c.method === 'sync')).toEqual([]);
});

test("fail-closed: the overlay status's non-member pod CIDRs leave the declared range", async () => {
  world = new World();
  await world.init();
  world.api.put(OVERLAYS_PATH, {
    apiVersion: 'sealmesh.io/v1alpha1',
    kind: 'OverlayNetwork',
    metadata: { name: OVERLAY },
    spec: { addressPool: '10.99.0.0/24', dataPlane: { protectedRanges: ['10.244.0.0/22'] } },
    status: { epoch: 1, nonMemberPodCIDRs: ['10.244.3.0/24'] },
  });
  world.api.put(
    TUNNELS_PATH,
    tunnelObject('a', 1, undefined, { allowedIPs: ['10.99.0.1/32', '10.244.1.0/24'] }),
  );
  await world.start();
  const name = interfaceName('sm', OVERLAY);
  await waitUntil('rules', () => world.firewall.table?.get(name) !== undefined);
  expect(world.firewall.table?.get(name)?.prefixes).toEqual([
    '10.99.0.2/32',
    '10.99.0.3/32',
    '10.244.0.0/24',
    '10.244.2.0/24',
  ]);
});

test('drops: counted per peer on /metrics at once, in status with the next write and on their own at most once per 30 s, never while unchanged', async () => {
  world = new World({ presharedKeys: 'Disabled' });
  await world.init();
  await world.start();
  await waitUntil(
    'peers configured',
    () => world.status().peers?.filter((p) => p.state === 'Handshaking').length === 2,
  );
  await world.idle();
  const dev = interfaceName('sm', OVERLAY);
  const metric = async (name: string, peer: string): Promise<number | undefined> => {
    const line = (await world.registry.metrics())
      .split('\n')
      .find((l) => l.startsWith(`${name}{overlay="${OVERLAY}",peer="${peer}"}`));
    return line === undefined ? undefined : Number(line.split(' ').pop());
  };
  expect(world.status().drops).toBeUndefined();
  let writes = world.agent.statusWrites;

  // b's tunnel address is an element of its own: its drops are b's
  world.firewall.count(dev, '10.99.0.2/32', 3);
  await world.tick();
  expect(world.status().drops).toEqual({ peers: [{ node: 'b', packets: 3, bytes: 252 }] });
  expect(world.agent.statusWrites).toBe(writes + 1);
  expect(await metric('sealmesh_failclosed_dropped_packets_total', 'b')).toBe(3);
  expect(await metric('sealmesh_failclosed_dropped_bytes_total', 'b')).toBe(252);
  expect(await metric('sealmesh_failclosed_dropped_packets_total', 'c')).toBeUndefined();

  // more drops 5 s later: /metrics at once, the status waits for the interval
  world.firewall.count(dev, '10.99.0.2/32', 2);
  world.firewall.count(dev, '10.99.0.3/32', 1);
  await world.tick();
  expect(await metric('sealmesh_failclosed_dropped_packets_total', 'b')).toBe(5);
  expect(await metric('sealmesh_failclosed_dropped_packets_total', 'c')).toBe(1);
  expect(world.status().drops?.peers).toEqual([{ node: 'b', packets: 3, bytes: 252 }]);
  for (let t = 10_000; t < 30_000; t += PROBE_MS) await world.tick();
  expect(world.agent.statusWrites).toBe(writes + 1);
  await world.tick(); // 30 s after the last write that carried drops
  expect(world.status().drops?.peers).toEqual([
    { node: 'b', packets: 5, bytes: 420 },
    { node: 'c', packets: 1, bytes: 84 },
  ]);
  expect(world.agent.statusWrites).toBe(writes + 2);

  // unchanged counts: no write, however long
  writes = world.agent.statusWrites;
  for (let k = 0; k < 12; k++) await world.tick();
  expect(world.agent.statusWrites).toBe(writes);

  // a write the agent makes anyway (b's state changes) carries the counts as they are, within the interval
  world.firewall.count(dev, '10.99.0.3/32', 4);
  await world.tick();
  expect(world.agent.statusWrites).toBe(writes + 1);
  writes = world.agent.statusWrites;
  world.firewall.count(dev, '10.99.0.3/32', 1);
  world.device().handshake(world.peers.get('b')!.wg.publicKey, new Date(world.clock.now()));
  await world.tick();
  expect(world.peerEntry('b')?.state).toBe('Encrypted');
  expect(world.status().drops?.peers?.find((p) => p.node === 'c')?.packets).toBe(6);
  expect(world.agent.statusWrites).toBe(writes + 1);

  // the peer metrics: handshake time (Unix seconds), bytes, state; labels are node names, never keys
  expect(await metric('sealmesh_wireguard_latest_handshake_seconds', 'b')).toBe(
    Math.floor(world.clock.now() / 1000) - 5,
  );
  expect(await metric('sealmesh_wireguard_latest_handshake_seconds', 'c')).toBe(0);
  expect(await metric('sealmesh_wireguard_sent_bytes_total', 'b')).toBe(0);
  const text = await world.registry.metrics();
  expect(text).toContain(`sealmesh_peer_state{overlay="${OVERLAY}",peer="b",state="Encrypted"} 1`);
  expect(text).toContain(`sealmesh_peer_state{overlay="${OVERLAY}",peer="c",state="Encrypted"} 0`);
  for (const peer of world.peers.values()) expect(text).not.toContain(peer.wg.publicKey);
});

test('fail-closed: a firewall error stops the pass before the device is touched and is reported', async () => {
  world = new World({ presharedKeys: 'Disabled' });
  await world.init();
  world.firewall.failNext(new Error('nft: Operation not permitted'));
  await world.start();
  await waitUntil('peers configured', () => world.status().peers?.length === 2);
  const first = world.firewall.calls.findIndex((c) => c.method === 'sync');
  expect(first).toBe(0);
  expect(world.allLogs()).toContain('fail-closed rules of');
});

test('Operator custody: the sealed private key is applied only when it matches spec.publicKey', async () => {
  world = new World({ custody: 'Operator' });
  await world.init();
  const key = generateKeyPair();
  world.api.put(TUNNELS_PATH, tunnelObject('a', 1, undefined, { publicKey: key.publicKey }));
  for (const peer of world.peers.values()) {
    world.api.put(
      TUNNELS_PATH,
      tunnelObject(peer.node, peer.index, world.peerStatus(peer), { publicKey: peer.wg.publicKey }),
    );
  }
  await world.start();
  await waitUntil('awaiting keys', () => world.status().conditions?.[0]?.reason === 'AwaitingKeys');
  expect(world.status().publicKey).toBeUndefined();
  // running (caches synced, passes run) but not ready: the overlay's device is not programmed (/readyz)
  expect(world.agent.running).toBe(true);
  expect(world.agent.ready).toBe(false);

  // a key that does not match spec.publicKey is refused
  const wrong = generateKeyPair();
  const env = world.myEnvelope();
  world.addToSecret('a', {
    privateKeys: [
      {
        epoch: 1,
        publicKey: key.publicKey,
        sealedTo: fingerprint(env),
        sealed: seal(wrong.privateKey, env, world.operator, privateKeyContext(OVERLAY, 'a', 1)),
      },
    ],
  });
  await waitUntil('mismatch reported', () => world.status().conditions?.[0]?.reason === 'KeyMismatch');
  expect(world.devices.size === 0 || !world.device().exists).toBe(true);

  // the right key is applied
  world.api.remove(secretsPath(NS), keySecretNameAt(OVERLAY, 'a', 1));
  world.addToSecret('a', {
    privateKeys: [
      {
        epoch: 1,
        publicKey: key.publicKey,
        sealedTo: fingerprint(env),
        sealed: seal(key.privateKey, env, world.operator, privateKeyContext(OVERLAY, 'a', 1)),
      },
    ],
  });
  world.sealPair('b', 'b');
  world.sealPair('c', 'a');
  await waitUntil(
    'applied',
    () => world.status().peers?.filter((p) => p.state === 'Handshaking').length === 2,
  );
  expect((await world.device().read())?.publicKey).toBe(publicKeyOf(key.privateKey));
  // published in both custody modes: during a rotation peers take each other's keys from status
  expect(world.status().publicKey).toBe(key.publicKey);
  expect(world.agent.ready).toBe(true);
  expect(world.allLogs()).not.toContain(Buffer.from(key.privateKey).toString('base64'));
});

test('a device that does not hold the intended PSK is reported as KeyMismatch', async () => {
  world = new World();
  await world.init();
  await world.start();
  const device = world.device.bind(world);
  world.sealPair('b', 'b');
  world.sealPair('c', 'c');
  await waitUntil(
    'configured',
    () => world.status().peers?.filter((p) => p.state === 'Handshaking').length === 2,
  );
  // someone changes b's PSK behind the agent's back; the next pass re-applies it
  const b = world.peers.get('b')!;
  // both peers answer, so no pass restarts a handshake (peerstate.ts, shouldKickHandshake)
  for (const peer of ['b', 'c'])
    device().handshake(world.peers.get(peer)!.wg.publicKey, new Date(world.clock.now()));
  await device().upsertPeer({
    publicKey: b.wg.publicKey,
    presharedKey: newPresharedKey(),
    allowedIPs: ['10.99.0.2/32'],
    endpoint: '198.18.0.2:51820',
    persistentKeepalive: 25,
  });
  const mark = device().calls.length;
  await world.tick();
  expect(
    device()
      .calls.slice(mark)
      .filter((x) => x.method === 'upsertPeer'),
  ).toHaveLength(1);
  expect(
    (await device().read())?.peers.find((p) => p.publicKey === b.wg.publicKey)?.presharedKeyFingerprint,
  ).toBe(fingerprint(world.psks.get('a/b')!));
  // a device that silently drops the PSK: KeyMismatch with fingerprints only
  const dev = device();
  const original = dev.upsertPeer.bind(dev);
  dev.upsertPeer = (peer) => original({ ...peer, presharedKey: undefined });
  await dev.upsertPeer({ publicKey: b.wg.publicKey, allowedIPs: ['10.99.0.2/32'] });
  await world.tick();
  expect(world.peerEntry('b')).toMatchObject({ state: 'KeyMismatch' });
  expect(world.peerEntry('b')?.message).toContain(`intended ${fingerprint(world.psks.get('a/b')!)}`);
  expect(world.status().conditions?.find((x) => x.type === 'Ready')).toMatchObject({
    status: 'False',
    reason: 'DeviceMismatch',
  });
});

test('a device error is reported as Ready=False and the pass retried', async () => {
  world = new World({ presharedKeys: 'Disabled' });
  await world.init();
  world.devices.set(interfaceName('sm', OVERLAY), new FakeWireGuardDevice(interfaceName('sm', OVERLAY)));
  world.device().failNext('upsertPeer', new Error('wg set failed: operation not permitted'));
  await world.start();
  await waitUntil(
    'retry applied',
    () => world.status().peers?.filter((p) => p.state === 'Handshaking').length === 2,
  );
  const readies = world.api.statusPatches.map(
    (p) => (p.status.conditions as { type: string; reason: string; message: string }[] | undefined)?.[0],
  );
  expect(readies[0]).toMatchObject({ reason: 'DeviceError' });
  expect(readies[0]?.message).toContain('operation not permitted');
  expect(world.allLogs()).toMatch(/reconcile failed; retrying with backoff/);
  expect(world.status().conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'True' });
});

describe('rotation', () => {
  const changes = (from: number): { method: string; detail?: string }[] =>
    world
      .device()
      .calls.slice(from)
      .filter((c) => c.method !== 'read');
  const next = new Map<string, { privateKey: Uint8Array; publicKey: string }>();

  /** Epoch 1 running: a has peers b and c (PSKs at epoch 1), both Encrypted. */
  async function running(keys: ConstructorParameters<typeof World>[0] = {}): Promise<void> {
    world = new World(keys);
    await world.init();
    for (const node of ['b', 'c']) {
      const key = world.peers.get(node)!.wg.publicKey;
      world.setPeer(node, { appliedEpoch: 1, stagedEpoch: 1, stagedPublicKey: key });
      next.set(node, generateKeyPair());
    }
    world.overlayStatus({ epoch: 1 });
    await world.start();
    world.sealPair('b', 'b');
    world.sealPair('c', 'a');
    await waitUntil(
      'peers configured',
      () => world.status().peers?.filter((p) => p.state === 'Handshaking').length === 2,
    );
    for (const node of ['b', 'c'])
      world.device().handshake(world.peers.get(node)!.wg.publicKey, new Date(world.clock.now()));
    await world.tick();
    expect(world.status().peersSummary).toBe('2/2');
  }

  function sealEpoch2(): void {
    world.sealPair('b', 'b', world.operator, 2);
    world.sealPair('c', 'a', world.operator, 2);
  }

  /** Acting as b and c: staged epoch 2 (scope Keys: new keys; PresharedKeys: the same ones). */
  function peersStage(scope: 'Keys' | 'PresharedKeys'): void {
    for (const node of ['b', 'c']) {
      const key = scope === 'Keys' ? next.get(node)!.publicKey : world.peers.get(node)!.wg.publicKey;
      world.setPeer(node, { appliedEpoch: 1, stagedEpoch: 2, stagedPublicKey: key });
    }
  }

  async function deviceView(): Promise<Map<string, string | undefined>> {
    const state = await world.device().read();
    return new Map(state!.peers.map((p) => [p.publicKey, p.presharedKeyFingerprint]));
  }

  test('staging acks once with the new public key and leaves the device alone; a restart keeps the key', async () => {
    await running();
    const before = world.status();
    const mark = world.device().calls.length;
    const writes = world.api.statusPatches.length;
    await world.passAfter(() => world.rotate('Staging', 'Keys'));
    // the operator has not sealed the epoch-2 PSKs yet: no ack
    expect(world.status().stagedEpoch).toBe(1);
    sealEpoch2();
    await waitUntil('staged', () => world.status().stagedEpoch === 2);
    await world.idle();
    await world.tick();

    const staged = world.status();
    expect(staged.stagedPublicKey).toBeDefined();
    expect(staged.stagedPublicKey).not.toBe(before.publicKey);
    expect(staged.publicKey).toBe(before.publicKey);
    expect(staged.appliedEpoch).toBe(1);
    expect(staged.peers?.map((p) => [p.state, p.epoch])).toEqual([
      ['Encrypted', 1],
      ['Encrypted', 1],
    ]);
    const acks = world.api.statusPatches.slice(writes);
    expect(acks).toHaveLength(1);
    expect(acks[0]!.status).toMatchObject({ stagedEpoch: 2, stagedPublicKey: staged.stagedPublicKey });
    expect(changes(mark)).toEqual([]);
    expect(world.device().publicKey).toBe(before.publicKey);
    expect((await stat(join(world.stateDir, 'overlays', OVERLAY, 'wg-2.key'))).mode & 0o777).toBe(0o600);

    // an agent restarted during staging finds its staged key: same ack, nothing written, device untouched
    await world.agent.stop();
    world.agent = world.newAgent();
    await world.agent.start();
    await waitUntil('a pass after restart', () => world.agent.passes > 0);
    await world.idle();
    expect(world.status().stagedPublicKey).toBe(staged.stagedPublicKey);
    expect(world.api.statusPatches.length).toBe(writes + 1);
    expect(
      changes(mark)
        .map((c) => c.method)
        .filter((m) => ['setPrivateKey', 'upsertPeer', 'removePeer'].includes(m)),
    ).toEqual([]);
    expect(world.device().publicKey).toBe(before.publicKey);
    for (const psk of world.psks.values())
      expect(world.allLogs()).not.toContain(Buffer.from(psk).toString('base64'));
  });

  test('full cutover: at cutoverTime the new key is set and peers re-keyed, probed at once, then status', async () => {
    await running();
    world.rotate('Staging', 'Keys');
    sealEpoch2();
    await waitUntil('staged', () => world.status().stagedEpoch === 2);
    const stagedKey = world.status().stagedPublicKey!;
    peersStage('Keys');
    await world.idle();

    world.traceAll();
    const mark = world.device().calls.length;
    const cutoverAt = world.clock.now() + 3000;
    world.rotate('CuttingOver', 'Keys', { cutoverTime: cutoverAt });
    await world.idle();
    await world.clock.advance(2000);
    await world.idle();
    expect(changes(mark)).toEqual([]);
    expect(world.status().appliedEpoch).toBe(1);

    const traceMark = world.trace.length;
    await world.clock.advance(1000);
    await waitUntil('cut over', () => world.status().appliedEpoch === 2);
    await world.idle();
    expect(world.keySetAt).toBe(cutoverAt);
    const b = world.peers.get('b')!;
    const c = world.peers.get('c')!;
    expect(changes(mark)).toEqual([
      { method: 'setPrivateKey' },
      { method: 'removePeer', detail: fingerprint(b.wg.publicKey) },
      { method: 'removePeer', detail: fingerprint(c.wg.publicKey) },
      { method: 'upsertPeer', detail: fingerprint(next.get('b')!.publicKey) },
      { method: 'upsertPeer', detail: fingerprint(next.get('c')!.publicKey) },
    ]);
    // no API call between the first device change and the probes
    const seq = world.trace.slice(traceMark);
    expect(seq.slice(0, 7)).toEqual([
      'setPrivateKey',
      'removePeer',
      'removePeer',
      'upsertPeer',
      'upsertPeer',
      'probe',
      'probe',
    ]);
    expect(seq.indexOf('status')).toBeGreaterThan(6);

    expect(world.device().publicKey).toBe(stagedKey);
    expect(await deviceView()).toEqual(
      new Map([
        [next.get('b')!.publicKey, fingerprint(world.psks.get('a/b@2')!)],
        [next.get('c')!.publicKey, fingerprint(world.psks.get('a/c@2')!)],
      ]),
    );
    const s = world.status();
    expect(s).toMatchObject({ appliedEpoch: 2, publicKey: stagedKey, stagedEpoch: 2 });
    // the old sessions ended with the old key: Handshaking at epoch 2 until the new handshakes
    expect(s.peers?.map((p) => [p.state, p.epoch])).toEqual([
      ['Handshaking', 2],
      ['Handshaking', 2],
    ]);
  });

  test('PSK-only cutover changes only the PSKs at cutoverTime; sessions carry on', async () => {
    await running();
    const key = world.status().publicKey;
    world.rotate('Staging', 'PresharedKeys');
    sealEpoch2();
    await waitUntil('staged', () => world.status().stagedEpoch === 2);
    expect(world.status().stagedPublicKey).toBe(key);
    peersStage('PresharedKeys');
    await world.idle();

    world.traceAll();
    const mark = world.device().calls.length;
    const cutoverAt = world.clock.now() + 3000;
    world.rotate('CuttingOver', 'PresharedKeys', { cutoverTime: cutoverAt });
    await world.idle();
    await world.clock.advance(2999);
    await world.idle();
    expect(changes(mark)).toEqual([]);

    await world.clock.advance(1);
    await waitUntil('cut over', () => world.status().appliedEpoch === 2);
    await world.idle();
    const b = world.peers.get('b')!;
    const c = world.peers.get('c')!;
    expect(changes(mark)).toEqual([
      { method: 'upsertPeer', detail: fingerprint(b.wg.publicKey) },
      { method: 'upsertPeer', detail: fingerprint(c.wg.publicKey) },
    ]);
    expect(world.keySetAt).toBeUndefined();
    expect(await deviceView()).toEqual(
      new Map([
        [b.wg.publicKey, fingerprint(world.psks.get('a/b@2')!)],
        [c.wg.publicKey, fingerprint(world.psks.get('a/c@2')!)],
      ]),
    );
    const s = world.status();
    expect(s).toMatchObject({ appliedEpoch: 2, publicKey: key, stagedEpoch: 2, stagedPublicKey: key });
    expect(s.peers?.map((p) => [p.state, p.epoch])).toEqual([
      ['Encrypted', 2],
      ['Encrypted', 2],
    ]);

    // after a restart the key of epoch 2 is the same key: nothing changes
    world.overlayStatus({ epoch: 2 });
    await world.idle();
    await world.agent.stop();
    const m2 = world.device().calls.length;
    world.agent = world.newAgent();
    await world.agent.start();
    await waitUntil('a pass after restart', () => world.agent.passes > 0);
    await world.idle();
    expect(world.device().publicKey).toBe(key);
    expect(changes(m2).map((x) => x.method)).not.toContain('upsertPeer');
  });

  test('a late agent (cutover time already past) stages and switches at once', async () => {
    await running();
    sealEpoch2();
    for (const node of ['b', 'c']) {
      const k = next.get(node)!.publicKey;
      world.setPeer(node, { appliedEpoch: 2, publicKey: k, stagedEpoch: 2, stagedPublicKey: k });
    }
    await world.idle();
    const old = world.status().publicKey;
    world.rotate('Verifying', 'Keys', { cutoverTime: world.clock.now() - 1000 });
    await waitUntil('cut over', () => world.status().appliedEpoch === 2);
    await world.idle();
    const s = world.status();
    expect(s.publicKey).not.toBe(old);
    expect(world.device().publicKey).toBe(s.publicKey);
    expect(s.stagedPublicKey).toBe(s.publicKey);
    expect(await deviceView()).toEqual(
      new Map([
        [next.get('b')!.publicKey, fingerprint(world.psks.get('a/b@2')!)],
        [next.get('c')!.publicKey, fingerprint(world.psks.get('a/c@2')!)],
      ]),
    );
  });

  test('at the cutover a pair still missing its new PSK waits alone; the others switch', async () => {
    await running();
    world.sealPair('b', 'b', world.operator, 2); // the epoch-2 PSK of a/c is not there yet
    for (const node of ['b', 'c']) {
      const k = next.get(node)!.publicKey;
      world.setPeer(node, { appliedEpoch: 2, publicKey: k, stagedEpoch: 2, stagedPublicKey: k });
    }
    await world.idle();
    world.rotate('Verifying', 'Keys', { cutoverTime: world.clock.now() - 1000 });
    await waitUntil('cut over', () => world.status().appliedEpoch === 2);
    await world.idle();
    // the device runs epoch 2 (stagedEpoch follows it), c is left out until its PSK arrives
    expect(world.status().stagedEpoch).toBe(2);
    expect(await deviceView()).toEqual(
      new Map([[next.get('b')!.publicKey, fingerprint(world.psks.get('a/b@2')!)]]),
    );
    expect(world.peerEntry('c')).toMatchObject({ state: 'AwaitingPeer', epoch: 2 });
    world.sealPair('c', 'a', world.operator, 2);
    await waitUntil('c added', () => world.peerEntry('c')?.state === 'Handshaking');
    expect((await deviceView()).get(next.get('c')!.publicKey)).toBe(fingerprint(world.psks.get('a/c@2')!));
  });

  test('an agent that missed the rotation converges to status.epoch: new key, epoch-2 peers and PSKs', async () => {
    await running();
    const old = world.status().publicKey;
    await world.agent.stop();
    // meanwhile: the rotation ran without a, completed, and the Secrets hold epoch 2
    sealEpoch2();
    for (const node of ['b', 'c']) {
      const k = next.get(node)!.publicKey;
      world.setPeer(node, { appliedEpoch: 2, publicKey: k, stagedEpoch: 2, stagedPublicKey: k });
    }
    world.overlayStatus({ epoch: 2 });
    world.agent = world.newAgent();
    await world.agent.start();
    await waitUntil('converged', () => world.status().appliedEpoch === 2);
    await world.idle();
    const s = world.status();
    expect(s.publicKey).not.toBe(old);
    expect(world.device().publicKey).toBe(s.publicKey);
    expect(await deviceView()).toEqual(
      new Map([
        [next.get('b')!.publicKey, fingerprint(world.psks.get('a/b@2')!)],
        [next.get('c')!.publicKey, fingerprint(world.psks.get('a/c@2')!)],
      ]),
    );
    expect(s.peers?.map((p) => p.epoch)).toEqual([2, 2]);
    await expect(stat(join(world.stateDir, 'overlays', OVERLAY, 'wg-1.key'))).rejects.toMatchObject({
      code: 'ENOENT',
    });
  });

  test('a rotation that goes to Backoff leaves the device at the old epoch', async () => {
    await running();
    const key = world.status().publicKey;
    world.rotate('Staging', 'Keys');
    sealEpoch2();
    await waitUntil('staged', () => world.status().stagedEpoch === 2);
    await world.idle();
    const mark = world.device().calls.length;
    const writes = world.api.statusPatches.length;
    world.rotate('Backoff', 'Keys', { cutoverTime: world.clock.now() + 3000 });
    await world.idle();
    for (let i = 0; i < 12; i++) await world.tick();
    expect(changes(mark)).toEqual([]);
    expect(world.device().publicKey).toBe(key);
    expect(world.status()).toMatchObject({ appliedEpoch: 1, publicKey: key, stagedEpoch: 2 });
    expect(world.status().peers?.map((p) => p.epoch)).toEqual([1, 1]);
    expect(world.api.statusPatches.length).toBe(writes);
  });

  test('Operator custody: staging waits for the sealed key of the target epoch, the cutover sets it', async () => {
    world = new World({ custody: 'Operator' });
    await world.init();
    const k1 = generateKeyPair();
    const k2 = generateKeyPair();
    world.api.put(TUNNELS_PATH, tunnelObject('a', 1, undefined, { publicKey: k1.publicKey }));
    for (const peer of world.peers.values()) {
      const pk = peer.wg.publicKey;
      world.api.put(
        TUNNELS_PATH,
        tunnelObject(
          peer.node,
          peer.index,
          { ...world.peerStatus(peer), publicKey: pk, appliedEpoch: 1, stagedEpoch: 1, stagedPublicKey: pk },
          { publicKey: pk },
        ),
      );
      next.set(peer.node, generateKeyPair());
    }
    world.overlayStatus({ epoch: 1 });
    await world.start();
    const env = world.myEnvelope();
    const entry = (epoch: number, k: { privateKey: Uint8Array; publicKey: string }) => ({
      epoch,
      publicKey: k.publicKey,
      sealedTo: fingerprint(env),
      sealed: seal(k.privateKey, env, world.operator, privateKeyContext(OVERLAY, 'a', epoch)),
    });
    world.addToSecret('a', { privateKeys: [entry(1, k1)] });
    world.sealPair('b', 'b');
    world.sealPair('c', 'a');
    await waitUntil('applied', () => world.status().appliedEpoch === 1 && world.status().peers?.length === 2);
    expect(world.device().publicKey).toBe(k1.publicKey);

    await world.passAfter(() => {
      world.rotate('Staging', 'Keys');
      sealEpoch2();
    });
    expect(world.status().stagedEpoch).toBe(1); // no private key for epoch 2 yet
    world.addToSecret('a', { privateKeys: [entry(2, k2)] });
    await waitUntil('staged', () => world.status().stagedEpoch === 2);
    expect(world.status().stagedPublicKey).toBe(k2.publicKey);
    expect(world.device().publicKey).toBe(k1.publicKey);

    for (const node of ['b', 'c']) {
      const pk = world.peers.get(node)!.wg.publicKey;
      world.setPeer(node, {
        publicKey: pk,
        appliedEpoch: 1,
        stagedEpoch: 2,
        stagedPublicKey: next.get(node)!.publicKey,
      });
    }
    world.rotate('CuttingOver', 'Keys', { cutoverTime: world.clock.now() + 3000 });
    await world.idle();
    await world.clock.advance(3000);
    await waitUntil('cut over', () => world.status().appliedEpoch === 2);
    await world.idle();
    expect(world.device().publicKey).toBe(k2.publicKey);
    expect(world.status().publicKey).toBe(k2.publicKey);
    expect([...(await deviceView()).keys()].sort()).toEqual(
      [next.get('b')!.publicKey, next.get('c')!.publicKey].sort(),
    );
    expect(world.allLogs()).not.toContain(Buffer.from(k2.privateKey).toString('base64'));
  });
});
