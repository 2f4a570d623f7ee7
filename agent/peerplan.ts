// Peer planning of one agent pass (STYLE 6, 16), pure: which peers the device should hold at an epoch and
// with what, and the one diff that says in words how the device's view of a peer differs from that. The diff
// serves both "change only what changed" (program.ts) and the read-back check.
import type { NodeTunnel } from '../api/v1alpha1/nodetunnel.types.js';
import { parseNodeTunnel } from '../api/v1alpha1/nodetunnel.types.js';
import { durationSeconds, type DesiredDevice, type DesiredPeer } from '../lib/contract/device.js';
import { fingerprint } from '../lib/keys.js';
import { objectKey } from '../lib/kube.js';
import type { PeerState as DevicePeer } from './device/device.js';
import { normalizePrefix } from './device/wgcli.js';
import { keyAt } from './epoch.js';
import type { AppliedPeer, Pass, PeerEval, PeerPlan, PskResult } from './pass.js';

/** The overlay's NodeTunnels from the pass's cache, parsed; invalid ones are logged and skipped. */
export function peerTunnels(p: Pick<Pass, 'w' | 'log' | 'overlay'>): NodeTunnel[] {
  const out: NodeTunnel[] = [];
  for (const obj of p.w.tunnels.list()) {
    const r = parseNodeTunnel(obj);
    if (!r.ok) {
      p.log.warn({ nodeTunnel: objectKey(obj), error: r.error }, 'skipping invalid NodeTunnel');
      continue;
    }
    if (r.value.spec.overlay === p.overlay) out.push(r.value);
  }
  return out;
}

export interface PlanInput {
  epoch: number;
  ownPublicKey: string;
  desired: DesiredDevice;
  byNode: Map<string, NodeTunnel>;
  onDevice: Map<string, DevicePeer>;
  /** what this agent last wrote to the device, by public key */
  applied: Map<string, AppliedPeer>;
  /** the overlay's persistentKeepalive (own tunnel's spec) */
  persistentKeepalive: string | undefined;
  /** the pair's pre-shared key at an epoch (keymaterial.ts) */
  psk: (peer: string, peerSecret: string | undefined, epoch: number) => PskResult;
}

/**
 * Every peer's configuration at `epoch`. A peer's key is the one it has at that epoch (it runs or staged
 * it); a peer that has neither, but is on the device, keeps its configuration until it reaches the epoch
 * (changing it would break what still works without making anything work); a peer never seen before is
 * configured with the key desiredDevice knows. Never a peer without its PSK in PerPair.
 */
export function planPeers(i: PlanInput): PeerPlan {
  const { epoch, desired, byNode, onDevice } = i;
  const intended = new Map<string, { peer: DesiredPeer; psk: PskResult }>();
  const wanted = new Set<string>();
  const evals = new Map<string, PeerEval>();
  const fallback = new Map(desired.peers.map((d) => [d.node, d]));
  for (const node of [...desired.peers.map((d) => d.node), ...desired.awaiting].sort()) {
    const t = byNode.get(node)!;
    let publicKey = keyAt(t, epoch);
    // A peer that reports no epoch at all (it never applied one) is taken at the key desiredDevice knows.
    if (publicKey === undefined && t.status?.appliedEpoch !== undefined) {
      const kept = deviceKeyOf(i.applied, t, onDevice);
      if (kept !== undefined) {
        wanted.add(kept);
        const at = t.status.appliedEpoch;
        evals.set(node, {
          node,
          state: 'AwaitingPeer',
          message: `peer runs epoch ${at}; waiting for its key at epoch ${epoch}`,
        });
        continue;
      }
    }
    publicKey ??= fallback.get(node)?.publicKey;
    if (publicKey === undefined) {
      evals.set(node, {
        node,
        state: 'AwaitingPeer',
        message: 'peer has not published its public key yet',
      });
      continue;
    }
    if (publicKey === i.ownPublicKey) {
      evals.set(node, { node, state: 'KeyMismatch', message: 'peer publishes our own public key' });
      continue;
    }
    // Never a weaker tunnel: a peer without its PSK is not added (one already on the device is left alone).
    wanted.add(publicKey);
    const psk = i.psk(node, t.spec.secretRef?.name, epoch);
    if (psk.kind === 'missing' || psk.kind === 'invalid') {
      evals.set(node, {
        node,
        state: psk.kind === 'missing' ? 'AwaitingPeer' : 'KeyMismatch',
        message: psk.message,
      });
      continue;
    }
    intended.set(publicKey, {
      peer: {
        node,
        publicKey,
        endpoint: t.spec.endpoint,
        allowedIPs: [...t.spec.allowedIPs],
        persistentKeepalive: durationSeconds(i.persistentKeepalive),
      },
      psk,
    });
  }
  return { intended, wanted, evals };
}

/** The key the device holds for the peer of tunnel `t`, if any. */
export function deviceKeyOf(
  applied: Map<string, AppliedPeer>,
  t: NodeTunnel,
  onDevice: Map<string, DevicePeer>,
): string | undefined {
  for (const [publicKey, a] of applied) {
    if (a.node === t.spec.nodeName && onDevice.has(publicKey)) return publicKey;
  }
  for (const k of [t.status?.publicKey, t.status?.stagedPublicKey, t.spec.publicKey]) {
    if (k !== undefined && onDevice.has(k)) return k;
  }
  return undefined;
}

/** A peer as the device should hold it, in the form peerDiff compares. */
export interface PeerConfig {
  publicKey: string;
  /** normalised, de-duplicated and sorted */
  allowedIPs: string[];
  pskFingerprint: string | undefined;
  /** compared only when given */
  persistentKeepalive?: number | undefined;
  /** compared only when given */
  endpoint?: string | undefined;
}

export function peerConfig(peer: DesiredPeer, psk: PskResult): PeerConfig {
  return {
    publicKey: peer.publicKey,
    allowedIPs: [...new Set(peer.allowedIPs.map(normalizePrefix))].sort(),
    pskFingerprint: psk.kind === 'ok' ? psk.fingerprint : undefined,
  };
}

/** The first way the device's view of a peer differs from `want`, in words (fingerprints only); or undefined. */
export function peerDiff(
  actual:
    | Pick<DevicePeer, 'allowedIPs' | 'presharedKeyFingerprint' | 'persistentKeepalive' | 'endpoint'>
    | undefined,
  want: PeerConfig,
): string | undefined {
  if (!actual) return `peer ${fingerprint(want.publicKey)} is not on the device`;
  if (!sameList([...actual.allowedIPs].sort(), want.allowedIPs)) {
    return `allowed IPs on the device (${actual.allowedIPs.join(', ') || 'none'}) are not ${want.allowedIPs.join(', ')}`;
  }
  if (actual.presharedKeyFingerprint !== want.pskFingerprint) {
    return `pre-shared key on the device is ${actual.presharedKeyFingerprint ?? 'none'}, intended ${want.pskFingerprint ?? 'none'}`;
  }
  if (
    want.persistentKeepalive !== undefined &&
    (actual.persistentKeepalive ?? 0) !== want.persistentKeepalive
  ) {
    return `persistent keepalive on the device is ${actual.persistentKeepalive ?? 0} s, intended ${want.persistentKeepalive} s`;
  }
  if (want.endpoint !== undefined && actual.endpoint !== want.endpoint) {
    return `endpoint ${actual.endpoint ?? 'none'} is not ${want.endpoint}`;
  }
  return undefined;
}

/** The read-back check: why the device's view of a peer differs from what was applied, or undefined. */
export function verifyPeer(
  actual: DevicePeer | undefined,
  peer: DesiredPeer,
  psk: PskResult,
): string | undefined {
  if (!actual) return `peer ${fingerprint(peer.publicKey)} is missing from the device after applying`;
  return peerDiff(actual, peerConfig(peer, psk));
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
