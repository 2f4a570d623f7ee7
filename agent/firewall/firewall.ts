// The narrow interface between the agent and the fail-closed rules (../shared/DESIGN.md, "Fail-closed data
// plane"), like the WireGuard device's: `nft` today (NftFirewall, nft.ts), a fake for the agent's unit tests
// (agent/testing/firewall.ts). One table of sealmesh's own; per overlay a set of protected prefixes and O(1)
// rules: a packet to a protected prefix that leaves by another interface than the overlay's WireGuard device
// is counted and (FailClosed) dropped; a packet from a protected prefix that arrives on another interface
// likewise. The kernel keeps the table across agent restarts; a restarted agent adopts it as found.

/** FailClosed drops would-be plaintext; Monitor only counts it (for turning sealmesh on in a running cluster). */
export type DataPlaneMode = 'FailClosed' | 'Monitor';

export interface OverlayRules {
  /** the overlay's WireGuard interface: the only way in or out for protected prefixes */
  device: string;
  mode: DataPlaneMode;
  /**
   * The set's elements: disjoint CIDRs, not merged (agent/firewall/prefixes.ts, protectedElements), so that
   * each member's prefixes keep counters of their own and a drop can be told apart by peer.
   */
  prefixes: string[];
}

export interface Counter {
  packets: number;
  bytes: number;
}

export interface OverlayRulesState extends OverlayRules {
  /** packets the overlay's rules matched (dropped in FailClosed, counted in Monitor) */
  matched: Counter;
  /**
   * The same per set element (CIDR): packets to (or plaintext from) that prefix the rules matched. An element
   * counts from when it was added; one that changed starts again from zero.
   */
  elements: Map<string, Counter>;
}

export interface Firewall {
  /**
   * Makes the rules of the overlay of `device` exactly `rules`, in one transaction, creating the table if
   * it is missing; writes nothing when they already are. Returns what changed, in words (empty: nothing).
   */
  sync(rules: OverlayRules): Promise<string[]>;
  /** Removes the overlay's set and rules; the whole table once no overlay is left. No-op when absent. */
  remove(device: string): Promise<void>;
  /** The rules per device as the kernel holds them; undefined when there is no table. */
  read(): Promise<Map<string, OverlayRulesState> | undefined>;
  /** Removes the table and everything in it (the uninstall). */
  uninstall(): Promise<void>;
}

/** The nftables table every rule lives in. */
export const TABLE = 'sealmesh';
