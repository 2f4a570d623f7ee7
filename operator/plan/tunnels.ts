// (overlay, nodes, tunnels) → desired NodeTunnel specs. Pure: the controller around it compares the result
// with the cache and writes only the difference.
import type { V1Node } from '@kubernetes/client-node';
import { allocate, parsePool } from './ipam.js';
import { matchesSelector, type LabelSelector } from '../../lib/selector.js';

/** The parts of a Node this function reads. */
export interface NodeView {
  name: string;
  labels?: Record<string, string> | undefined;
  deleting: boolean;
  internalIPs: string[];
  podCIDRs: string[];
}

/** The NodeView of a cached Node. */
export function nodeView(n: V1Node): NodeView {
  return {
    name: n.metadata?.name ?? '',
    labels: n.metadata?.labels,
    deleting: Boolean(n.metadata?.deletionTimestamp),
    internalIPs: (n.status?.addresses ?? []).filter((a) => a.type === 'InternalIP').map((a) => a.address),
    podCIDRs: n.spec?.podCIDRs?.length ? n.spec.podCIDRs : n.spec?.podCIDR ? [n.spec.podCIDR] : [],
  };
}

export interface OverlayView {
  name: string;
  nodeSelector?: LabelSelector | undefined;
  addressPool: string;
  listenPort: number;
  mtu?: number | undefined;
  persistentKeepalive: string;
  routePodCIDRs: boolean;
  epoch: number;
}

export interface TunnelSpec {
  overlay: string;
  nodeName: string;
  address: string;
  endpoint: string;
  allowedIPs: string[];
  listenPort: number;
  mtu?: number | undefined;
  persistentKeepalive: string;
  epoch: number;
  publicKey?: string | undefined;
  secretRef: { namespace: string; name: string };
}

export interface DesiredTunnels {
  tunnels: Map<string, Omit<TunnelSpec, 'publicKey' | 'secretRef'>>;
  /** selected nodes that cannot be peered, with why */
  unusable: Array<{ node: string; reason: string }>;
  /** selected, usable nodes for which the pool had no address */
  exhausted: string[];
}

export function formatEndpoint(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** A node's underlay address: its first InternalIP. */
export function underlayAddress(node: NodeView): string | undefined {
  return node.internalIPs[0];
}

export function desiredTunnels(
  overlay: OverlayView,
  nodes: readonly NodeView[],
  existingAddresses: ReadonlyMap<string, string>,
): DesiredTunnels {
  const unusable: DesiredTunnels['unusable'] = [];
  const usable: NodeView[] = [];
  for (const node of nodes) {
    if (node.deleting || !matchesSelector(overlay.nodeSelector, node.labels)) continue;
    if (!underlayAddress(node)) {
      unusable.push({ node: node.name, reason: 'node has no InternalIP address' });
      continue;
    }
    usable.push(node);
  }
  const pool = parsePool(overlay.addressPool);
  const hostPrefix = pool.family === 4 ? 32 : 128;
  const existing = new Map<string, string>();
  for (const [node, address] of existingAddresses) existing.set(node, address.split('/')[0]!);
  const { assigned, exhausted } = allocate(
    overlay.addressPool,
    existing,
    usable.map((n) => n.name),
  );
  const tunnels: DesiredTunnels['tunnels'] = new Map();
  for (const node of usable) {
    const ip = assigned.get(node.name);
    if (ip === undefined) continue;
    const allowedIPs = [`${ip}/${hostPrefix}`];
    if (overlay.routePodCIDRs) allowedIPs.push(...node.podCIDRs);
    tunnels.set(node.name, {
      overlay: overlay.name,
      nodeName: node.name,
      address: `${ip}/${pool.prefixLength}`,
      endpoint: formatEndpoint(underlayAddress(node)!, overlay.listenPort),
      allowedIPs,
      listenPort: overlay.listenPort,
      ...(overlay.mtu !== undefined ? { mtu: overlay.mtu } : {}),
      persistentKeepalive: overlay.persistentKeepalive,
      epoch: overlay.epoch,
    });
  }
  return { tunnels, unusable, exhausted };
}
