// The fail-closed phase of an agent pass (../shared/DESIGN.md, "Fail-closed data plane"): the overlay's rules
// (agent/firewall) go in before the device changes and are narrowed after it. Before: every member's prefixes
// from the NodeTunnel specs (keys or not), the declared ranges, and every prefix a peer on the device still
// routes; after: the same without the peers the pass removed. So rules exist before the first peer and
// before any route, and a member's prefixes leave the set only after its peer has left the device.
import type { NodeTunnel } from '../api/v1alpha1/nodetunnel.types.js';
import type { DeviceState } from './device/device.js';
import type { DataPlaneMode, Firewall } from './firewall/firewall.js';
import { protectedPrefixes } from './firewall/prefixes.js';
import type { Pass } from './pass.js';

export interface DataPlane {
  mode: DataPlaneMode;
  protectedRanges?: string[] | undefined;
  /** the overlay's status.nonMemberPodCIDRs: pod CIDRs of nodes it does not select (operator/plan/nonmembers.ts) */
  nonMembers?: string[] | undefined;
}

/** What the overlay's set holds: members' and declared prefixes and those of peers on the device, minus own. */
export function guardedPrefixes(
  self: string,
  tunnels: readonly NodeTunnel[],
  dataPlane: DataPlane,
  onDevice: readonly string[],
): string[] {
  const host = (address: string): string => address.split('/')[0]!;
  const others = tunnels.filter((t) => t.spec.nodeName !== self);
  const mine = tunnels.filter((t) => t.spec.nodeName === self);
  const members = others.flatMap((t) => [host(t.spec.address), ...t.spec.allowedIPs]);
  // Non-members leave only the declared ranges: a member's prefixes, and a peer's still on the device (a node
  // leaving), stay protected whatever the list says.
  const nonMembers = protectedPrefixes({
    members: (dataPlane.nonMembers ?? []).filter(isCidr),
    declared: [],
    onDevice: [],
    own: [...members, ...onDevice],
    nonMembers: [],
  });
  return protectedPrefixes({
    members,
    declared: dataPlane.protectedRanges ?? [],
    onDevice,
    own: mine.flatMap((t) => [host(t.spec.address), ...t.spec.allowedIPs]),
    nonMembers,
  });
}

/** Whether the operator's entry is a CIDR the rules can take (a bad one is skipped: it stays protected). */
function isCidr(cidr: string): boolean {
  try {
    protectedPrefixes({ members: [cidr], declared: [], onDevice: [], own: [], nonMembers: [] });
    return cidr.includes('/');
  } catch {
    return false;
  }
}

export class Guard {
  constructor(private readonly firewall: Firewall | undefined) {}

  /** Installs (or widens) the overlay's rules; before the device changes. */
  async before(p: Pass, tunnels: readonly NodeTunnel[], device: DeviceState | undefined): Promise<void> {
    await this.sync(p, tunnels, device);
  }

  /** Narrows the rules to what the device now holds; after the device changed. */
  async after(p: Pass, tunnels: readonly NodeTunnel[], device: DeviceState): Promise<void> {
    await this.sync(p, tunnels, device);
  }

  /** The node left the overlay (its device is gone): its rules go, and the table with the last overlay. */
  async leave(device: string): Promise<void> {
    await this.firewall?.remove(device);
  }

  private async sync(
    p: Pass,
    tunnels: readonly NodeTunnel[],
    device: DeviceState | undefined,
  ): Promise<void> {
    if (!this.firewall) return;
    const onDevice = (device?.peers ?? []).flatMap((peer) => peer.allowedIPs);
    const prefixes = guardedPrefixes(p.tunnel.spec.nodeName, tunnels, p.dataPlane, onDevice);
    const changes = await this.firewall.sync({ device: p.rt.device.name, mode: p.dataPlane.mode, prefixes });
    if (changes.length) p.log.info({ mode: p.dataPlane.mode, changes }, 'fail-closed rules changed');
  }
}
