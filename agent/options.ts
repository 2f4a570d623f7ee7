// The agent's options (agent.ts) and the name of its WireGuard interface per overlay.
import { createHash } from 'node:crypto';
import type { RandomBytes } from '../lib/keys.js';
import type { Logger } from '../lib/log.js';
import type { Clock } from '../lib/runtime/clock.js';
import { validateInterfaceName, type WireGuardDevice } from './device/device.js';
import type { Firewall } from './firewall/firewall.js';
import type { AgentApi } from './kube.js';
import type { AgentMetrics } from './metrics.js';
import type { Prober, UnderlayMtu } from './probe.js';

export type DeviceFactory = (name: string, overlay: string) => WireGuardDevice;

export interface AgentOptions {
  /** This node's name (the Node object's). */
  node: string;
  /** The operator's namespace: sealed key Secrets, the identity ConfigMap and the agents' Leases live there. */
  namespace: string;
  /** Where the envelope key and (Node custody) WireGuard private keys are kept; created 0700. */
  stateDir: string;
  /** Publish an ML-KEM-768 envelope key so the operator seals hybrid to this node (default true; issue #17). */
  postQuantum?: boolean;
  api: AgentApi;
  deviceFactory: DeviceFactory;
  /** The fail-closed rules (agent/firewall); absent: none (unit tests that do not look at them). */
  firewall?: Firewall;
  /** Sends a packet through the tunnel to trigger a handshake (default: one ping). */
  prober?: Prober;
  /** MTU of the underlay interface that holds an address (default: read from /sys). */
  underlayMtu?: UnderlayMtu;
  clock?: Clock;
  logger?: Logger;
  random?: RandomBytes;
  /** Interface names are `<prefix>-<6 hex>`; at most 8 characters (default `sm`). */
  interfacePrefix?: string;
  /** How often every peer is measured (default 5 s). */
  probeIntervalMs?: number;
  /** Liveness Lease renewal (default 10 s) and duration (default 40 s). */
  leaseRenewIntervalMs?: number;
  leaseDurationSeconds?: number;
  /** Passed to every informer (tests shorten these). */
  informer?: { stallTimeoutMs?: number; backoffBaseMs?: number; backoffMaxMs?: number };
  /** Per overlay and peer: handshakes, bytes, states, drop counts (agent/metrics.ts); absent: none. */
  metrics?: AgentMetrics;
  /** Least time between two status writes for changed drop counts alone (default 30 s; drops.ts). */
  dropsReportIntervalMs?: number;
}

/** `<prefix>-<first 6 hex of sha256(overlay)>`: stable across restarts, unique enough per node, ≤ 15 chars. */
export function interfaceName(prefix: string, overlay: string): string {
  return validateInterfaceName(`${prefix}-${createHash('sha256').update(overlay).digest('hex').slice(0, 6)}`);
}
