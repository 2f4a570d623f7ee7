// What `kubectl sealmesh` does once its arguments are parsed (cmd/kubectl-sealmesh.ts): `status` prints each
// overlay's pair matrix; `rotate` sets the sealmesh.io/rotate annotation to a new value (prefixed `psk:` for a
// pre-shared-key-only rotation) and, with `wait`, follows the rotation to the end. Loaded only when a command
// runs, so that `--help` and argument errors never pay for loading the Kubernetes client.
import {
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { Informer } from '../lib/runtime/informer.js';
import { KubeRest } from '../lib/runtime/rest.js';
import {
  GROUP,
  NODE_TUNNEL_PLURAL,
  OVERLAY_LABEL,
  OVERLAY_NETWORK_PLURAL,
  ROTATE_ANNOTATION,
  ROTATE_PSK_ONLY_PREFIX,
  VERSION,
} from '../api/v1alpha1/groupversion.js';
import { parseNodeTunnel, type NodeTunnel } from '../api/v1alpha1/nodetunnel.types.js';
import { parseOverlayNetwork, type OverlayNetwork } from '../api/v1alpha1/overlaynetwork.types.js';
import { customResource, describeError, loadKubeConfig } from '../lib/kube.js';
import { computePairs } from '../lib/contract/pairs.js';
import { renderMatrix } from './matrix.js';
import { retryTransient } from './retry.js';

async function readOverlay(custom: CustomObjectsApi, name: string): Promise<OverlayNetwork> {
  const parsed = parseOverlayNetwork(
    await retryTransient(() =>
      custom.getClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: OVERLAY_NETWORK_PLURAL,
        name,
      }),
    ),
  );
  if (!parsed.ok) throw new Error(`overlaynetwork ${name} is invalid: ${parsed.error}`);
  return parsed.value;
}

async function rotate(
  kc: KubeConfig,
  custom: CustomObjectsApi,
  name: string,
  wait: boolean,
  timeoutSeconds: number,
  pskOnly: boolean,
): Promise<number> {
  const before = await readOverlay(custom, name);
  if (pskOnly && before.spec.keys.presharedKeys !== 'PerPair') {
    process.stderr.write(
      `${name} has no pre-shared keys (keys.presharedKeys: Disabled): nothing to rotate\n`,
    );
    return 1;
  }
  if (before.status?.rotation && before.status.rotation.phase !== 'Backoff') {
    process.stderr.write(
      `a rotation of ${name} is already in progress (${before.status.rotation.phase}, epoch ${before.status.rotation.targetEpoch})\n`,
    );
    return 1;
  }
  const request = `${pskOnly ? ROTATE_PSK_ONLY_PREFIX : ''}${new Date().toISOString()}`;
  await retryTransient(() =>
    custom.patchClusterCustomObject(
      {
        group: GROUP,
        version: VERSION,
        plural: OVERLAY_NETWORK_PLURAL,
        name,
        body: { metadata: { annotations: { [ROTATE_ANNOTATION]: request } } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    ),
  );
  const fromEpoch = before.status?.epoch ?? 1;
  process.stdout.write(
    `rotation of ${name} requested (${ROTATE_ANNOTATION}=${request}), epoch ${fromEpoch}\n`,
  );
  if (!wait) return 0;
  // Follow the overlay with a watch, not by polling: a rotation can pass a phase in under a second.
  const informer = new Informer<KubernetesObject>({
    client: new KubeRest(kc),
    resource: customResource(GROUP, VERSION, OVERLAY_NETWORK_PLURAL),
    fieldSelector: `metadata.name=${name}`,
  });
  let last = '';
  try {
    return await new Promise<number>((done) => {
      const timer = setTimeout(() => {
        process.stderr.write(
          `rotation of ${name} did not complete within ${timeoutSeconds}s (last: ${last})\n`,
        );
        done(1);
      }, timeoutSeconds * 1000);
      const check = (obj: KubernetesObject): void => {
        const parsed = parseOverlayNetwork(obj);
        if (!parsed.ok) return;
        const s = parsed.value.status;
        const r = s?.rotation;
        const line = r
          ? `${r.phase} epoch ${r.targetEpoch}${r.cutoverTime ? ` cutover ${r.cutoverTime}` : ''}${
              r.phase === 'Backoff' ? `: ${r.reason ?? ''}, retry at ${r.retryTime ?? ''}` : ''
            }`
          : `epoch ${s?.epoch ?? 1}, ${s?.encryptedSummary ?? '?'} pairs encrypted`;
        if (line !== last) {
          process.stdout.write(`  ${line}\n`);
          last = line;
        }
        if (s?.lastRotateRequest === request && !r && (s.epoch ?? 1) > fromEpoch) {
          process.stdout.write(`rotation of ${name} completed: epoch ${s.epoch ?? 1}\n`);
          clearTimeout(timer);
          done(0);
        }
      };
      informer.addHandler({ onAdd: check, onUpdate: (_old, next) => check(next) });
      informer.start();
    });
  } finally {
    await informer.stop();
  }
}

async function status(custom: CustomObjectsApi, only: string | undefined, colour: boolean): Promise<number> {
  const list = (await retryTransient(() =>
    custom.listClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: OVERLAY_NETWORK_PLURAL,
    }),
  )) as {
    items: unknown[];
  };
  const overlays: OverlayNetwork[] = [];
  for (const item of list.items) {
    const parsed = parseOverlayNetwork(item);
    if (parsed.ok && (!only || parsed.value.metadata.name === only)) overlays.push(parsed.value);
  }
  if (only && overlays.length === 0) {
    process.stderr.write(`overlaynetwork ${only} not found\n`);
    return 1;
  }
  let allEncrypted = true;
  for (const o of overlays) {
    const name = o.metadata.name;
    const tunnels = (
      (await retryTransient(() =>
        custom.listClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: NODE_TUNNEL_PLURAL,
          labelSelector: `${OVERLAY_LABEL}=${name}`,
        }),
      )) as { items: unknown[] }
    ).items
      .map((t) => parseNodeTunnel(t))
      .filter((p): p is { ok: true; value: NodeTunnel } => p.ok)
      .map((p) => p.value);
    const nodes = tunnels.map((t) => t.spec.nodeName);
    const summary = computePairs(
      nodes,
      tunnels.map((t) => ({ node: t.spec.nodeName, peers: t.status?.peers ?? [] })),
    );
    const ready = o.status?.conditions?.find((c) => c.type === 'Ready');
    process.stdout.write(
      `OverlayNetwork ${name}: ${nodes.length} nodes, ${summary.encrypted}/${summary.total} pairs encrypted, ` +
        `epoch ${o.status?.epoch ?? 0}, Ready=${ready?.status ?? 'Unknown'}${ready ? ` (${ready.reason})` : ''}\n`,
    );
    const degraded = o.status?.conditions?.find((c) => c.type === 'Degraded' && c.status === 'True');
    if (degraded) process.stdout.write(`  Degraded: ${degraded.reason}: ${degraded.message}\n`);
    if (nodes.length > 1) process.stdout.write(`${renderMatrix(nodes, summary.pairs, colour)}\n`);
    for (const p of summary.pairs.filter((x) => x.state !== 'Encrypted')) {
      process.stdout.write(`  ${p.a} <-> ${p.b}: ${p.state}: ${p.reason}\n`);
    }
    process.stdout.write('\n');
    if (summary.encrypted !== summary.total) allEncrypted = false;
  }
  return allEncrypted ? 0 : 3;
}

export interface Invocation {
  command: 'status' | 'rotate';
  overlay: string | undefined;
  kubeconfig: string | undefined;
  colour: boolean;
  wait: boolean;
  pskOnly: boolean;
  timeoutSeconds: number;
}

/** Runs one command; resolves to the exit code and never rejects (errors are printed, exit 1). */
export async function run(inv: Invocation): Promise<number> {
  try {
    let kc: KubeConfig;
    if (inv.kubeconfig) {
      kc = new KubeConfig();
      kc.loadFromFile(inv.kubeconfig);
    } else kc = loadKubeConfig();
    const custom = kc.makeApiClient(CustomObjectsApi);
    if (inv.command === 'status') return await status(custom, inv.overlay, inv.colour);
    if (!inv.overlay) throw new Error('rotate needs an overlay name');
    return await rotate(kc, custom, inv.overlay, inv.wait, inv.timeoutSeconds, inv.pskOnly);
  } catch (err) {
    process.stderr.write(`kubectl sealmesh: ${describeError(err)}\n`);
    return 1;
  }
}
