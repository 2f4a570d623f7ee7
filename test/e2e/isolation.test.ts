// Honest keys, proven in the lab (issue #14, "Done when"; ../shared/reviews/security.md S2, S5, S6, S9): a
// changed operator identity, a small-order envelope key, a sealed value copied from another pair, and an
// overlay restored to an earlier epoch are each refused with a clear reason, and the overlay goes on (or on
// to a new epoch) with every pair encrypted. Real operator, real agents with their nodes' bound tokens, real
// WireGuard in the lab. The scenarios build on each other and run in order.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1Secret,
} from '@kubernetes/client-node';
import {
  API_VERSION,
  EPOCH_LABEL,
  GROUP,
  NODE_TUNNEL_PLURAL,
  OVERLAY_LABEL,
  OVERLAY_NETWORK_KIND,
  OVERLAY_NETWORK_PLURAL,
  ROTATE_ANNOTATION,
  VERSION,
  nodeTunnelName,
} from '../../api/v1alpha1/groupversion.js';
import { KEY_NAMESPACE } from '../../hack/deploy/deploy.js';
import { IDENTITY_NAME, IDENTITY_PUBLIC_KEY } from '../../lib/contract/identity.js';
import { decodeKeySecretData, encodeKeySecretData } from '../../lib/contract/keysecret.js';
import { decodeKey, encodeKey, fingerprint } from '../../lib/keys.js';
import { describeError } from '../../lib/kube.js';
import { newBoxKeyPair } from '../../lib/seal.js';
import { uniqueName } from '../support/cluster.js';
import { Deployment } from '../support/deploy.js';
import {
  allEncrypted as allEncryptedIn,
  core,
  custom,
  deleteAgentLeases,
  everyAgentAt,
  kc,
  removeOverlay,
  scenarios,
  sleep,
  tunnelStatus,
} from '../support/env.js';
import { until } from '../support/wait.js';

const overlay = uniqueName('e2e-iso');
const MEMBER_LABEL = 'sealmesh.io/member';
const SETUP_MS = 150_000;
const ENCRYPTED_MS = 180_000;
const MERGE = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
/** An X25519 point of order 8 (public knowledge, no one's key): its shared secret with any key is zero. */
const SMALL_ORDER = Buffer.from('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800', 'hex');

let deployment: Deployment | undefined;
const scenario = scenarios();
let members: string[] = [];

function report(line: string): void {
  process.stdout.write(`[isolation e2e] ${line}\n`);
}

const allEncrypted = (timeoutMs = ENCRYPTED_MS) => allEncryptedIn(deployment, overlay, members, timeoutMs);

interface OverlayObject {
  metadata: { uid?: string; annotations?: Record<string, string> };
  status?: { epoch?: number };
}

async function overlayObject(): Promise<OverlayObject> {
  return (await custom.getClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: OVERLAY_NETWORK_PLURAL,
    name: overlay,
  })) as OverlayObject;
}

const epochOf = async (): Promise<number> => (await overlayObject()).status?.epoch ?? 0;

/** Every member's agent runs `epoch` and every pair is encrypted. */
async function everyPairAt(epoch: number): Promise<void> {
  await everyAgentAt(overlay, members, epoch, ENCRYPTED_MS);
  await allEncrypted();
}

async function eventsOf(reason: string) {
  const list = await core.listNamespacedEvent({
    namespace: 'default',
    fieldSelector: `involvedObject.name=${overlay}`,
  });
  return list.items.filter((e) => e.reason === reason);
}

/** The overlay's key Secrets of `epoch`, whole. */
async function keySecretsAt(epoch: number): Promise<V1Secret[]> {
  const list = await core.listNamespacedSecret({
    namespace: KEY_NAMESPACE,
    labelSelector: `${OVERLAY_LABEL}=${overlay},${EPOCH_LABEL}=${epoch}`,
  });
  return list.items;
}

/** The fingerprints of the PSKs `node`'s device holds, one per peer (compared here, never printed). */
async function deviceSharedKeys(node: string): Promise<string[]> {
  const r = await deployment!.lab.exec(node, ['wg', 'show', 'all', 'preshared-keys']);
  if (r.code !== 0) throw new Error(`wg show in ${node} failed: ${r.stderr.trim()}`);
  return r.stdout
    .split('\n')
    .filter((line) => line && !line.endsWith('(none)'))
    .map((line) => fingerprint(decodeKey(line.split('\t')[2] ?? '', 'pre-shared key')));
}

beforeAll(async () => {
  deployment = await Deployment.up({ nodes: 3, kc });
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
        addressPool: '10.96.0.0/24',
        dataPlane: { protectedRanges: ['10.244.0.0/16'] },
      },
    },
  });
  await allEncrypted();
}, SETUP_MS + ENCRYPTED_MS);

afterAll(async () => {
  const errors = await removeOverlay(overlay);
  await deployment?.down().catch((err: unknown) => errors.push(String(err)));
  errors.push(...(await deleteAgentLeases(members)));
  if (errors.length) throw new Error(errors.join('\n'));
}, 120_000);

test(
  "a: the operator's published sealing key replaced: agents keep the key they pinned and say so; the operator restores its own; every pair stays encrypted at the same epoch",
  () =>
    scenario('a', async () => {
      const epoch = await epochOf();
      const read = async () =>
        (await core.readNamespacedConfigMap({ namespace: KEY_NAMESPACE, name: IDENTITY_NAME })).data?.[
          IDENTITY_PUBLIC_KEY
        ];
      const own = await read();
      expect(own).toBeDefined();
      // The operator puts its key back within its check interval (30 s): a refusal is looked for after each
      // replacement, and the key replaced again if the operator was quicker than every agent.
      let refused: { node: string; message: string; rogue: string } | undefined;
      for (let attempt = 0; attempt < 3 && !refused; attempt++) {
        const rogue = encodeKey(newBoxKeyPair().publicKey);
        await core.patchNamespacedConfigMap(
          { namespace: KEY_NAMESPACE, name: IDENTITY_NAME, body: { data: { [IDENTITY_PUBLIC_KEY]: rogue } } },
          MERGE,
        );
        refused = await until(
          'an agent to refuse the replaced key',
          async () => {
            for (const node of members) {
              const c = (await tunnelStatus(overlay, node)).conditions?.find(
                (x) => x.type === 'OperatorKeyTrusted' && x.status === 'False',
              );
              if (c?.reason === 'OperatorKeyChanged') return { node, message: c.message ?? '', rogue };
            }
            return undefined;
          },
          15_000,
          100,
        ).catch(() => undefined);
      }
      expect(refused).toBeDefined();
      report(`a: ${refused!.node} refused: ${refused!.message}`);
      expect(refused!.message).toContain(`publishes sealing key ${fingerprint(refused!.rogue)}`);
      expect(refused!.message).toContain(`not ${fingerprint(own!)} which this node pinned on first use`);
      await until('the operator to restore its key', async () => (await read()) === own, 60_000, 250);
      await until(
        'every agent to trust the key again',
        async () => {
          for (const node of members) {
            const s = await tunnelStatus(overlay, node);
            if (s.conditions?.some((x) => x.type === 'OperatorKeyTrusted')) return false;
          }
          return true;
        },
        60_000,
        250,
      );
      await everyPairAt(epoch);
      expect(await epochOf()).toBe(epoch);
      expect(deployment!.logs().operator).toContain('the published sealing key was changed or removed');
    }),
  240_000,
);

test(
  "b: with its node's own token, an agent's status carrying a small-order envelope key is refused by the API; the same write with its real key passes; every pair stays encrypted",
  () =>
    scenario('b', async () => {
      const node = members[0]!;
      const agentKc = new KubeConfig();
      agentKc.loadFromFile(resolve(deployment!.lab.dir, 'agents', `${node}.kubeconfig`));
      const asAgent = agentKc.makeApiClient(CustomObjectsApi);
      const write = (envelopePublicKey: string) =>
        asAgent
          .patchClusterCustomObjectStatus(
            {
              group: GROUP,
              version: VERSION,
              plural: NODE_TUNNEL_PLURAL,
              name: nodeTunnelName(overlay, node),
              body: { status: { envelopePublicKey } },
            },
            MERGE,
          )
          .then(
            () => undefined,
            (e: unknown) => describeError(e),
          );
      const before = (await tunnelStatus(overlay, node)).envelopePublicKey;
      expect(before).toBeDefined();
      const refused = await write(SMALL_ORDER.toString('base64'));
      report(`b: small-order envelope key from ${node}'s agent: ${refused}`);
      expect(refused).toContain('must not be an X25519 point of small order');
      expect(await write(before!)).toBeUndefined(); // the control: the token may write its own status
      expect((await tunnelStatus(overlay, node)).envelopePublicKey).toBe(before);
      await allEncrypted();
    }),
  240_000,
);

test(
  "c: a sealed value copied into another pair's place in a key Secret: the operator refuses the Secret (KeySecretAltered), no device ever holds one PSK for two peers, and every pair is encrypted at a new epoch",
  () =>
    scenario('c', async () => {
      const epoch = await epochOf();
      const secrets = await keySecretsAt(epoch);
      // Two pairs that share an end (which Secret holds which pair depends on join order and its ties): that
      // end's value of the first is copied over its value of the second, in the second pair's Secret.
      const held = secrets.flatMap((s) => {
        const d = decodeKeySecretData(s.data);
        return d.ok ? d.payload.pairs.map((pair) => ({ s, payload: d.payload, pair })) : [];
      });
      let copy: { owner: string; from: (typeof held)[0]; to: (typeof held)[0] } | undefined;
      for (const from of held)
        for (const to of held) {
          if (copy || from.pair === to.pair) continue;
          const shared = [from.pair.a, from.pair.b].find(
            (n) => [to.pair.a, to.pair.b].includes(n) && from.pair.sealed[n] && to.pair.sealed[n],
          );
          if (shared) copy = { owner: shared, from, to };
        }
      if (!copy) throw new Error(`no two pairs of epoch ${epoch} share an end`);
      const { owner } = copy;
      const from = copy.from.pair;
      const to = copy.to.pair;
      to.sealed[owner] = from.sealed[owner]!; // a value that opens for `owner`, but was sealed for another pair
      await core.replaceNamespacedSecret({
        namespace: KEY_NAMESPACE,
        name: copy.to.s.metadata!.name!,
        body: { ...copy.to.s, data: encodeKeySecretData(copy.to.payload) },
      });
      report(
        `c: ${owner}'s value of ${from.a}/${from.b} copied over its value of ${to.a}/${to.b} at epoch ${epoch}`,
      );
      // Sampled until the new epoch is reached: every PSK on the owner's device is distinct.
      let samples = 0;
      let shared = 0;
      await until(
        `a new epoch after ${epoch}`,
        async () => {
          const fps = await deviceSharedKeys(owner);
          samples++;
          if (new Set(fps).size !== fps.length) shared++;
          return (await epochOf()) > epoch;
        },
        ENCRYPTED_MS,
        100,
      );
      const altered = await until(
        'a KeySecretAltered Event',
        async () => (await eventsOf('KeySecretAltered'))[0],
      );
      report(`c: ${altered.message}`);
      expect(altered.type).toBe('Warning');
      expect(altered.message).toContain(
        `${to.a}/${to.b}@${epoch}: value for ${owner} does not open in its context with the operator sealing key`,
      );
      await everyPairAt(epoch + 1);
      for (let i = 0; i < 20; i++) {
        const fps = await deviceSharedKeys(owner);
        samples++;
        if (new Set(fps).size !== fps.length) shared++;
        await sleep(100);
      }
      report(`c: ${samples} samples of ${owner}'s device, ${shared} with one PSK for two peers`);
      expect(samples).toBeGreaterThan(20);
      expect(shared).toBe(0);
      expect(await epochOf()).toBe(epoch + 1);
    }),
  300_000,
);

test(
  'd: an overlay restored to an earlier epoch: its status is refused by the API, its old key Secrets are not used (and go again), and an agent that ran a later epoch refuses to go back while the operator moves every pair to a new one',
  () =>
    scenario('d', async () => {
      const d = deployment!;
      const epoch = await epochOf();
      const old = await keySecretsAt(epoch);
      expect(old.length).toBe(members.length);
      // a rotation by hand, to have an earlier epoch to restore
      await custom.patchClusterCustomObject(
        {
          group: GROUP,
          version: VERSION,
          plural: OVERLAY_NETWORK_PLURAL,
          name: overlay,
          body: { metadata: { annotations: { [ROTATE_ANNOTATION]: `e2e-${Date.now()}` } } },
        },
        MERGE,
      );
      await until(`epoch ${epoch + 1}`, async () => (await epochOf()) === epoch + 1, ENCRYPTED_MS, 250);
      await everyPairAt(epoch + 1);

      // 1. the status as it was: refused
      const refused = await custom
        .patchClusterCustomObjectStatus(
          {
            group: GROUP,
            version: VERSION,
            plural: OVERLAY_NETWORK_PLURAL,
            name: overlay,
            body: { status: { epoch } },
          },
          MERGE,
        )
        .then(
          () => undefined,
          (e: unknown) => describeError(e),
        );
      report(`d: status.epoch ${epoch + 1} -> ${epoch}: ${refused}`);
      expect(refused).toContain('epoch must not decrease');

      // 2. the key Secrets as they were: not used, deleted again
      for (const s of old) {
        const { name, namespace, labels, annotations } = s.metadata!;
        await core.createNamespacedSecret({
          namespace: KEY_NAMESPACE,
          body: { metadata: { name, namespace, labels, annotations }, type: s.type, data: s.data },
        });
      }
      await until(
        `the restored Secrets of epoch ${epoch} to go`,
        async () => (await keySecretsAt(epoch)).length === 0,
        60_000,
        250,
      );
      for (const n of members) expect((await tunnelStatus(overlay, n)).appliedEpoch).toBe(epoch + 1);
      await allEncrypted();

      // 3. What an etcd restore looks like to an agent: it ran an epoch above the overlay's. Its floor file is
      // raised while it is down, as if the cluster's state had gone back underneath it.
      const node = members[1]!;
      const ran = epoch + 5;
      await d.killAgent(node);
      const dir = resolve(d.lab.dir, 'agents', node, 'overlays', overlay);
      mkdirSync(dir, { recursive: true });
      const floor = JSON.parse(readFileSync(resolve(dir, 'epoch.json'), 'utf8')) as {
        uid: string;
        epoch: number;
      };
      expect(floor).toEqual({ uid: (await overlayObject()).metadata.uid, epoch: epoch + 1 });
      writeFileSync(resolve(dir, 'epoch.json'), `${JSON.stringify({ ...floor, epoch: ran })}\n`, {
        mode: 0o600,
      });
      await d.startAgent(node);
      const forward = await until(
        'an EpochRolledForward Event',
        async () => (await eventsOf('EpochRolledForward'))[0],
        ENCRYPTED_MS,
        250,
      );
      report(`d: ${forward.message}`);
      expect(forward.message).toContain(`${node} already ran epoch ${ran}; moving to epoch ${ran + 1}`);
      expect(d.logs().nodes[node]).toContain('epoch rolled back; not applying it');
      await everyPairAt(ran + 1);
      expect(await epochOf()).toBe(ran + 1);
    }),
  600_000,
);
