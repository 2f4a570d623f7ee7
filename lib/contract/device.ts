// The one pure function both sides use to turn an overlay's NodeTunnels into one node's WireGuard
// configuration. The operator never sends a node its peer list: each agent derives it from the NodeTunnels
// it watches, so a join is one object write instead of N, and the operator and agents cannot disagree.
import { parseDuration } from '../../api/v1alpha1/validation.js';

/** The parts of a NodeTunnel this function reads (structural, so it accepts the API type). */
export interface TunnelView {
  spec: {
    nodeName: string;
    address: string;
    endpoint: string;
    allowedIPs: string[];
    listenPort: number;
    mtu?: number | undefined;
    persistentKeepalive?: string | undefined;
    epoch: number;
    publicKey?: string | undefined;
  };
  status?: { publicKey?: string | undefined } | undefined;
  metadata?: { deletionTimestamp?: unknown } | undefined;
}

export type Custody = 'Node' | 'Operator';

export interface DesiredPeer {
  node: string;
  publicKey: string;
  endpoint: string;
  allowedIPs: string[];
  /** seconds; 0 = off */
  persistentKeepalive: number;
}

export interface DesiredDevice {
  addresses: string[];
  listenPort: number;
  mtu?: number | undefined;
  peers: DesiredPeer[];
  /** peers known to the overlay whose public key is not published yet */
  awaiting: string[];
}

/** `25s`, `1m30s`, `2h` → seconds; anything else → 0 (the API server already rejected bad values). */
export function durationSeconds(d: string | undefined): number {
  return d ? (parseDuration(d) ?? 0) : 0;
}

export function peerPublicKey(t: TunnelView, custody: Custody): string | undefined {
  return custody === 'Operator' ? t.spec.publicKey : t.status?.publicKey;
}

export function desiredDevice(
  self: string,
  tunnels: readonly TunnelView[],
  custody: Custody,
): DesiredDevice | undefined {
  const mine = tunnels.find((t) => t.spec.nodeName === self);
  if (!mine) return undefined;
  const peers: DesiredPeer[] = [];
  const awaiting: string[] = [];
  const sorted = [...tunnels].sort((x, y) => (x.spec.nodeName < y.spec.nodeName ? -1 : 1));
  for (const t of sorted) {
    if (t.spec.nodeName === self || t.metadata?.deletionTimestamp) continue;
    const publicKey = peerPublicKey(t, custody);
    if (!publicKey) {
      awaiting.push(t.spec.nodeName);
      continue;
    }
    peers.push({
      node: t.spec.nodeName,
      publicKey,
      endpoint: t.spec.endpoint,
      allowedIPs: [...t.spec.allowedIPs],
      persistentKeepalive: durationSeconds(mine.spec.persistentKeepalive),
    });
  }
  return {
    addresses: [mine.spec.address],
    listenPort: mine.spec.listenPort,
    mtu: mine.spec.mtu,
    peers,
    awaiting,
  };
}
