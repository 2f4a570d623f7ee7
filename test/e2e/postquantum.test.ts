// Post-quantum PSK sealing in the lab (issue #17, "Done when"): an upgrade from classical sealing converges with
// no plaintext and no lost pair. Real operator, real agents with their nodes' bound tokens, real WireGuard.
//   1. the agents start as before the change (SEALMESH_POST_QUANTUM=off: no ML-KEM key published): every pair
//      is encrypted with PSKs sealed with X25519 only, and the overlay says so (PostQuantum=False);
//   2. every agent is restarted, one after another, with ML-KEM keys, while every pair is probed and the
//      underlay captured: the operator seals every PSK again, hybrid, and every pair ends encrypted with the
//      device PSKs matching the Secrets' fingerprints; no probe payload ever crosses the underlay, and every
//      pair carries traffic at the end (PostQuantum=True);
//   3. no PSK or envelope key seen during the run is in any API object, Event or log.
// Full and PSK-only rotations with hybrid sealing: test/e2e/rotation.test.ts (its agents publish ML-KEM keys,
// and it checks every value it opens is hybrid).
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import {
  API_VERSION,
  EPOCH_LABEL,
  GROUP,
  NODE_TUNNEL_PLURAL,
  OVERLAY_LABEL,
  OVERLAY_NETWORK_KIND,
  OVERLAY_NETWORK_PLURAL,
  VERSION,
  nodeTunnelName,
} from '../../api/v1alpha1/groupversion.js';
import { KEY_NAMESPACE } from '../../hack/deploy/deploy.js';
import { IDENTITY_NAME, IDENTITY_PUBLIC_KEY } from '../../lib/contract/identity.js';
import { decodeKeySecretData, pskContext, type KeySecretPayload } from '../../lib/contract/keysecret.js';
import { isHybridValue } from '../../lib/hybrid.js';
import { decodeKey, fingerprint } from '../../lib/keys.js';
import { everyApiObject } from '../support/apiobjects.js';
import { describeUnderlay, expectCleanUnderlay, watchUnderlay } from '../support/capture.js';
import { uniqueName } from '../support/cluster.js';
import { Deployment, withEnv } from '../support/deploy.js';
import {
  allEncrypted as allEncryptedIn,
  core,
  custom,
  kc,
  removeOverlay,
  scenarios,
  sleep,
  tunnelStatus,
} from '../support/env.js';
import { startProbes, type PairProbe } from '../support/probes.js';
import { nodeEnvelope, openSealed } from '../support/sealed.js';
import { until } from '../support/wait.js';

const overlay = uniqueName('e2e-pq');
const MEMBER_LABEL = 'sealmesh.io/member';
const PORT = 51820;
const MARKER = '9a0be7c0ffee1701';
const SETUP_MS = 150_000;
const ENCRYPTED_MS = 180_000;
const MERGE = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

let deployment: Deployment | undefined;
const scenario = scenarios();
let members: string[] = [];
/** every key seen (base64 text) → what it is; searched for in API objects and logs, never printed */
const seen = new Map<string, string>();

function report(line: string): void {
  process.stdout.write(`[post-quantum e2e] ${line}\n`);
}

const allEncrypted = (timeoutMs = ENCRYPTED_MS) => allEncryptedIn(deployment, overlay, members, timeoutMs);

interface OverlayView {
  status?: {
    epoch?: number;
    conditions?: Array<{ type: string; status: string; reason?: string; message?: string }>;
  };
}

async function overlayView(): Promise<OverlayView> {
  return (await custom.getClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: OVERLAY_NETWORK_PLURAL,
    name: overlay,
  })) as OverlayView;
}

const postQuantum = async () =>
  (await overlayView()).status?.conditions?.find((c) => c.type === 'PostQuantum');

/** The overlay's key Secrets of its current epoch, decoded. */
async function payloads(): Promise<KeySecretPayload[]> {
  const epoch = (await overlayView()).status?.epoch ?? 0;
  const list = await core.listNamespacedSecret({
    namespace: KEY_NAMESPACE,
    labelSelector: `${OVERLAY_LABEL}=${overlay},${EPOCH_LABEL}=${epoch}`,
  });
  return list.items.map((s) => decodeKeySecretData(s.data)).flatMap((d) => (d.ok ? [d.payload] : []));
}

/**
 * Every pair's PSK in the Secrets, opened as each end opens it (never printed): per pair "a/b", the sealing of
 * each end's value and the fingerprint. Both ends must open the same PSK, the one the fingerprint names.
 */
async function sealedPairs(): Promise<Map<string, { kinds: string[]; fingerprint: string }>> {
  const cm = await core.readNamespacedConfigMap({ namespace: KEY_NAMESPACE, name: IDENTITY_NAME });
  const operatorKey = new Uint8Array(Buffer.from(cm.data?.[IDENTITY_PUBLIC_KEY] ?? '', 'base64'));
  const all = await payloads();
  const kems = all.flatMap((p) => p.kems);
  const out = new Map<string, { kinds: string[]; fingerprint: string }>();
  for (const payload of all) {
    for (const p of payload.pairs) {
      const kinds: string[] = [];
      for (const node of [p.a, p.b]) {
        const env = nodeEnvelope(deployment!.agentStateDir(node));
        if (!env) throw new Error(`no envelope keys in ${node}'s state dir`);
        for (const t of env.texts) seen.set(t, `envelope key of ${node}`);
        const sealed = p.sealed[node]!;
        const psk = openSealed(node, env, sealed, operatorKey, pskContext(overlay, p.a, p.b, p.epoch), kems);
        expect(fingerprint(psk)).toBe(p.fingerprint);
        seen.set(Buffer.from(psk).toString('base64'), `PSK of ${p.a}/${p.b}@${p.epoch}`);
        kinds.push(isHybridValue(sealed) ? 'hybrid' : 'classical');
      }
      out.set(`${p.a}/${p.b}`, { kinds, fingerprint: p.fingerprint });
    }
  }
  return out;
}

/** The fingerprints of the PSKs `node`'s device holds, by peer public key (computed here, never printed). */
async function devicePsks(node: string): Promise<Map<string, string>> {
  const r = await deployment!.lab.exec(node, ['wg', 'show', 'all', 'preshared-keys']);
  if (r.code !== 0) throw new Error(`wg show in ${node} failed: ${r.stderr.trim()}`);
  return new Map(
    r.stdout
      .split('\n')
      .filter((line) => line && !line.endsWith('(none)'))
      .map((line) => {
        const [, peer, psk] = line.split('\t');
        return [peer ?? '', fingerprint(decodeKey(psk ?? '', 'pre-shared key'))];
      }),
  );
}

/** Every pair's device PSKs (both ends) against the Secrets' fingerprints: the problems, in words. */
async function devicePskProblems(pairs: Map<string, { fingerprint: string }>): Promise<string[]> {
  const keys = new Map<string, string | undefined>();
  for (const n of members) keys.set(n, (await tunnelStatus(overlay, n)).publicKey);
  const problems: string[] = [];
  for (const [name, { fingerprint: want }] of pairs) {
    const [a, b] = name.split('/') as [string, string];
    for (const [node, peer] of [
      [a, b],
      [b, a],
    ] as const) {
      const got = (await devicePsks(node)).get(keys.get(peer) ?? '');
      if (got !== want) problems.push(`${node}'s device, peer ${peer}: PSK ${got ?? 'none'} is not ${want}`);
    }
  }
  return problems;
}

beforeAll(async () => {
  deployment = await Deployment.up({ nodes: 3, kc, agentEnv: { SEALMESH_POST_QUANTUM: 'off' } });
  members = deployment.lab.nodes.map((n) => n.name);
  for (const node of members)
    await core.patchNode({ name: node, body: { metadata: { labels: { [MEMBER_LABEL]: overlay } } } }, MERGE);
  await custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: OVERLAY_NETWORK_PLURAL,
    body: {
      apiVersion: API_VERSION,
      kind: OVERLAY_NETWORK_KIND,
      metadata: { name: overlay },
      spec: {
        nodeSelector: { matchLabels: { [MEMBER_LABEL]: overlay } },
        addressPool: '10.95.0.0/24',
        listenPort: PORT,
      },
    },
  });
  await allEncrypted();
}, SETUP_MS + ENCRYPTED_MS);

afterAll(async () => {
  const errors = await removeOverlay(overlay);
  for (const node of members) {
    await core
      .patchNode({ name: node, body: { metadata: { labels: { [MEMBER_LABEL]: null } } } }, MERGE)
      .catch(() => undefined);
  }
  await deployment?.down();
  expect(errors).toEqual([]);
}, 120_000);

test(
  '1: agents that publish no ML-KEM key: PSKs sealed with X25519 only, and the overlay says so',
  () =>
    scenario('1', async () => {
      for (const n of members)
        expect((await tunnelStatus(overlay, n)).envelopeMLKEMPublicKey).toBeUndefined();
      await until('the PostQuantum condition', async () => (await postQuantum()) !== undefined, 30_000, 250);
      const c = await postQuantum();
      expect([c?.status, c?.reason]).toEqual(['False', 'ClassicalNodes']);
      expect(c?.message).toContain(`${members.length} node(s) publish no ML-KEM key`);
      const pairs = await sealedPairs();
      expect(pairs.size).toBe(3);
      for (const [name, p] of pairs)
        expect(`${name}: ${p.kinds.join(',')}`).toBe(`${name}: classical,classical`);
      expect(await devicePskProblems(pairs)).toEqual([]);
      report(
        `1: ${pairs.size} pairs encrypted, every PSK sealed classically; PostQuantum=False (${c?.reason})`,
      );
    }),
  60_000,
);

test(
  '2: the agents restarted with ML-KEM keys, one after another, under probes: every PSK sealed again hybrid, no plaintext, no pair lost',
  () =>
    scenario('2', async () => {
      const d = deployment!;
      const before = await sealedPairs();
      const probePairs: PairProbe[] = [];
      const addresses = new Map<string, string>();
      for (const n of members) {
        const addr = (await custom.getClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: NODE_TUNNEL_PLURAL,
          name: nodeTunnelName(overlay, n),
        })) as { spec?: { address?: string } };
        addresses.set(n, (addr.spec?.address ?? '').split('/')[0]!);
      }
      for (const from of members)
        for (const to of members) if (from !== to) probePairs.push({ from, to, address: addresses.get(to)! });
      const { value, underlay } = await watchUnderlay(d.lab, { port: PORT, marker: MARKER }, async () => {
        const probes = startProbes(d.lab, probePairs, { intervalMs: 50, pattern: MARKER });
        try {
          await sleep(2000);
          for (const n of members) {
            await d.killAgent(n);
            await d.startAgent(n, withEnv(d.baseAgentCmd, { SEALMESH_POST_QUANTUM: 'on' }));
            await until(
              `${n} publishes its ML-KEM key`,
              async () => (await tunnelStatus(overlay, n)).envelopeMLKEMPublicKey !== undefined,
              60_000,
              250,
            );
            report(`2: ${n}'s agent restarted with an ML-KEM key`);
          }
          await until('PostQuantum=True', async () => (await postQuantum())?.status === 'True', 60_000, 250);
          await allEncrypted();
          // every value sealed hybrid, and every device holds its pair's PSK (the in-place re-seal applied)
          await until(
            'every PSK sealed hybrid and on both devices',
            async () => {
              const pairs = await sealedPairs();
              const hybrid = [...pairs.values()].every((p) => p.kinds.every((k) => k === 'hybrid'));
              return hybrid && (await devicePskProblems(pairs)).length === 0;
            },
            60_000,
            500,
          );
          await sleep(3000);
        } catch (err) {
          await probes.stop().catch(() => undefined);
          throw err;
        }
        return probes.stop();
      });
      report(`2: ${describeUnderlay(underlay)}`);
      expectCleanUnderlay(underlay);
      for (const r of value) {
        report(
          `2: ${r.from} -> ${r.to}: sent ${r.sent}, received ${r.received}, lost ${r.lost}, max gap ${r.maxGapMs} ms`,
        );
      }
      // no pair lost: every pair answered through the upgrade's last second
      const silent = value.filter((r) => r.lastReplyAt === undefined || r.windowEnd - r.lastReplyAt >= 1000);
      expect(silent.map((r) => `${r.from}->${r.to}`)).toEqual([]);

      const after = await sealedPairs();
      expect(after.size).toBe(3);
      for (const [name, p] of after) expect(`${name}: ${p.kinds.join(',')}`).toBe(`${name}: hybrid,hybrid`);
      // the upgrade seals new PSKs (a PSK once sealed classically stays exposed to a recording of that Secret)
      for (const [name, p] of after) expect(p.fingerprint).not.toBe(before.get(name)?.fingerprint);
      expect(await devicePskProblems(after)).toEqual([]);
      const c = await postQuantum();
      expect([c?.status, c?.reason]).toEqual(['True', 'HybridSealed']);
      // one ML-KEM exchange per node in its own Secret, not one per pair
      const kems = (await payloads()).map((p) => [p.node, p.kems.map((k) => k.node)] as const);
      for (const [node, owners] of kems) expect(owners).toEqual([node]);
      await allEncrypted(30_000);
    }),
  3 * 60_000 + ENCRYPTED_MS + 120_000,
);

test('3: no PSK or envelope key seen during the run appears in any API object, Event or log', async () => {
  expect(seen.size).toBeGreaterThan(0);
  const haystacks = await everyApiObject();
  const logs = deployment!.logs();
  haystacks.push(['operator log', logs.operator], ...Object.entries(logs.nodes));
  const found: string[] = [];
  for (const [where, text] of haystacks)
    for (const [key, what] of seen) if (text.includes(key)) found.push(`${what} in ${where}`);
  expect(found).toEqual([]);
}, 60_000);
