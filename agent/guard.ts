// The fail-closed phase of an agent pass (../shared/DESIGN.md, "Fail-closed data plane"): the overlay's rules
// (agent/firewall) go in before the device changes and are narrowed after it. Before: every member's prefixes
// from the NodeTunnel specs (keys or not), the declared ranges, and every prefix a peer on the device still
// routes; after: the same without the peers the pass removed. So rules exist before the first peer and
// before any route, and a member's prefixes leave the set only after its peer has left the device. After the
// device changed, the rules' counters are read into the overlay's drop totals (drops.ts, metrics.ts).
import type { NodeTunnel } from '../api/v1alpha1/nodetunnel.types.js';
import { describeError } from '../lib/kube.js';
import type { DeviceState } from './device/device.js';
import { DropCounter } from './drops.js';
import type { DataPlaneMode, Firewall } from './firewall/firewall.js';
import ipaddr from 'ipaddr.js';
import { protectedElements, protectedPrefixes, type ProtectedElement } from './firewall/prefixes.js';
import type { AgentMetrics } from './metrics.js';
import type { Pass } from './pass.js';

export interface DataPlane {
  mode: DataPlaneMode;
  protectedRanges?: string[] | undefined;
  /** the overlay's status.nonMemberPodCIDRs: pod CIDRs of nodes it does not select (operator/plan/nonmembers.ts) */
  nonMembers?: string[] | undefined;
}

type OnDevice = ReadonlyArray<{ node?: string | undefined; prefixes: readonly string[] }>;

/**
 * What the overlay's set holds: members' and declared prefixes and those of peers on the device, minus own
 * and minus non-members' pod CIDRs; every member's prefixes elements of their own, for its node (drops.ts
 * counts by them).
 */
export function guardedElements(
  self: string,
  tunnels: readonly NodeTunnel[],
  dataPlane: DataPlane,
  onDevice: OnDevice,
): ProtectedElement[] {
  const host = (address: string): string => address.split('/')[0]!;
  const others = tunnels.filter((t) => t.spec.nodeName !== self);
  const mine = tunnels.filter((t) => t.spec.nodeName === self);
  const members = others.map((t) => ({
    node: t.spec.nodeName,
    prefixes: [host(t.spec.address), ...t.spec.allowedIPs],
  }));
  // Non-members leave only the declared ranges: a member's prefixes, and a peer's still on the device (a node
  // leaving), stay protected whatever the list says.
  const nonMembers = protectedPrefixes({
    members: (dataPlane.nonMembers ?? []).filter(isCidr),
    declared: [],
    onDevice: [],
    own: [...members, ...onDevice].flatMap((m) => m.prefixes),
    nonMembers: [],
  });
  return protectedElements({
    members,
    declared: dataPlane.protectedRanges ?? [],
    onDevice,
    own: mine.flatMap((t) => [host(t.spec.address), ...t.spec.allowedIPs]),
    nonMembers,
  });
}

/** guardedElements as the set's CIDRs, with peers on the device given by their prefixes only. */
export function guardedPrefixes(
  self: string,
  tunnels: readonly NodeTunnel[],
  dataPlane: DataPlane,
  onDevice: readonly string[],
): string[] {
  return guardedElements(self, tunnels, dataPlane, [{ prefixes: onDevice }]).map((e) => e.prefix);
}

/** Whether the operator's entry is a CIDR the rules can take (a bad one is skipped: it stays protected). */
function isCidr(cidr: string): boolean {
  return ipaddr.isValidCIDR(cidr);
}

export class Guard {
  constructor(
    private readonly firewall: Firewall | undefined,
    private readonly metrics?: AgentMetrics,
  ) {}

  /**
   * Installs (or widens) the overlay's rules; before the device changes. `observe`: read the drop counters
   * too (a pass that goes no further, e.g. without keys yet).
   */
  async before(
    p: Pass,
    tunnels: readonly NodeTunnel[],
    device: DeviceState | undefined,
    observe = false,
  ): Promise<void> {
    await this.sync(p, tunnels, device);
    if (observe) await this.observe(p);
  }

  /** Narrows the rules to what the device now holds, after the device changed; reads the drop counters. */
  async after(p: Pass, tunnels: readonly NodeTunnel[], device: DeviceState): Promise<void> {
    await this.sync(p, tunnels, device);
    await this.observe(p);
  }

  /** The node left the overlay (its device is gone): its rules go, and the table with the last overlay. */
  async leave(device: string, overlay: string): Promise<void> {
    await this.firewall?.remove(device);
    this.metrics?.forget(overlay);
  }

  private async sync(
    p: Pass,
    tunnels: readonly NodeTunnel[],
    device: DeviceState | undefined,
  ): Promise<void> {
    if (!this.firewall) return;
    const onDevice = (device?.peers ?? []).map((peer) => ({
      node: p.rt.peers.get(peer.publicKey)?.node,
      prefixes: peer.allowedIPs,
    }));
    const elements = guardedElements(p.tunnel.spec.nodeName, tunnels, p.dataPlane, onDevice);
    const prefixes = elements.map((e) => e.prefix);
    const changes = await this.firewall.sync({ device: p.rt.device.name, mode: p.dataPlane.mode, prefixes });
    p.rt.dropOwners = new Map(elements.flatMap((e) => (e.node ? [[e.prefix, e.node] as const] : [])));
    if (changes.length) p.log.info({ mode: p.dataPlane.mode, changes }, 'fail-closed rules changed');
  }

  /** Adds what the rules counted since the last pass to the overlay's drop totals (drops.ts). */
  private async observe(p: Pass): Promise<void> {
    if (!this.firewall) return;
    let elements;
    try {
      elements = (await this.firewall.read())?.get(p.rt.device.name)?.elements;
    } catch (err) {
      // the counts are for people; the pass goes on without them
      p.log.warn({ err: describeError(err) }, 'reading the fail-closed counters failed');
      return;
    }
    if (!elements) return;
    p.rt.drops ??= new DropCounter();
    const totals = p.rt.drops.observe(elements, p.rt.dropOwners ?? new Map());
    this.metrics?.drops(p.overlay, totals);
  }
}
