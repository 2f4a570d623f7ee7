// kubectl plugin: `kubectl sealmesh status [OVERLAY]` prints each overlay's pair matrix (colour on a
// terminal, plain when piped); `kubectl sealmesh rotate OVERLAY` is reserved for the rotation work.
import { parseArgs } from 'node:util';
import { CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import {
  GROUP,
  NODE_TUNNEL_PLURAL,
  OVERLAY_LABEL,
  OVERLAY_NETWORK_PLURAL,
  VERSION,
} from '../api/v1alpha1/groupversion.js';
import { parseNodeTunnel, type NodeTunnel } from '../api/v1alpha1/nodetunnel.types.js';
import { parseOverlayNetwork, type OverlayNetwork } from '../api/v1alpha1/overlaynetwork.types.js';
import { describeError, loadKubeConfig } from '../lib/kube.js';
import { computePairs } from '../operator/pairs.js';
import { renderMatrix } from './matrix.js';

const USAGE = `usage: kubectl sealmesh status [OVERLAY] [--kubeconfig FILE] [--no-color]
       kubectl sealmesh rotate OVERLAY [--wait]`;

async function status(custom: CustomObjectsApi, only: string | undefined, colour: boolean): Promise<number> {
  const list = (await custom.listClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: OVERLAY_NETWORK_PLURAL,
  })) as {
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
      (await custom.listClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: NODE_TUNNEL_PLURAL,
        labelSelector: `${OVERLAY_LABEL}=${name}`,
      })) as { items: unknown[] }
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
    if (nodes.length > 1) process.stdout.write(`${renderMatrix(nodes, summary.pairs, colour)}\n`);
    for (const p of summary.pairs.filter((x) => x.state !== 'Encrypted')) {
      process.stdout.write(`  ${p.a} <-> ${p.b}: ${p.state}: ${p.reason}\n`);
    }
    process.stdout.write('\n');
    if (summary.encrypted !== summary.total) allEncrypted = false;
  }
  return allEncrypted ? 0 : 3;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      kubeconfig: { type: 'string' },
      'no-color': { type: 'boolean', default: false },
      wait: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const [command, overlay] = positionals;
  if (values.help || !command) {
    process.stdout.write(`${USAGE}\n`);
    return values.help ? 0 : 2;
  }
  let kc: KubeConfig;
  if (values.kubeconfig) {
    kc = new KubeConfig();
    kc.loadFromFile(values.kubeconfig);
  } else kc = loadKubeConfig();
  const custom = kc.makeApiClient(CustomObjectsApi);
  switch (command) {
    case 'status':
      return status(custom, overlay, process.stdout.isTTY && !values['no-color'] && !process.env.NO_COLOR);
    case 'rotate':
      process.stderr.write('kubectl sealmesh rotate: not yet implemented (key rotation has not landed)\n');
      return 1;
    default:
      process.stderr.write(`unknown command ${command}\n${USAGE}\n`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`kubectl sealmesh: ${describeError(err)}\n`);
    process.exit(1);
  },
);
