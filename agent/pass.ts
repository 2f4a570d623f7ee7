// What one agent pass works with: the Pass (one overlay, one reconcile) and the OverlayRuntime this agent keeps
// per overlay between passes. The phases (keymaterial, peerplan, program, report) receive these.
import type { NodeTunnel, PeerState } from '../api/v1alpha1/nodetunnel.types.js';
import type { Custody, DesiredPeer } from '../lib/contract/device.js';
import type { KeySecretPayload } from '../lib/contract/keysecret.js';
import type { WgKeyPair } from '../lib/keys.js';
import type { Logger } from '../lib/log.js';
import type { Informer } from '../lib/runtime/informer.js';
import type { RawObject } from '../lib/runtime/rest.js';
import type { WireGuardDevice } from './device/device.js';
import type { DropCounter } from './drops.js';
import type { EpochView } from './epoch.js';
import type { StallTrack } from './stall.js';
import type { DataPlane } from './guard.js';

export interface OverlayWatch {
  tunnels: Informer<RawObject>;
  network: Informer<RawObject>;
  secrets: Informer<RawObject>;
  synced: boolean;
}

export interface AppliedPeer {
  node: string;
  pskFingerprint: string | undefined;
  endpoint: string;
  allowedIPs: string[];
  keepalive: number;
  /** when this peer's keys last changed on the device; undefined = adopted unchanged from an earlier run */
  configuredAt: number | undefined;
  /** when this agent last wrote the peer to the device for any reason */
  reconfiguredAt: number | undefined;
  /** when this agent last restarted the handshake with the peer (peerstate.ts, shouldKickHandshake) */
  kickedAt?: number;
  /** the peer's byte counters as last seen, for the stall detector (stall.ts) */
  stall?: StallTrack;
  /** the stall detector asks for the peer to be re-created (program.ts, kickStalled) */
  remedyDue?: boolean;
}

/** What this agent knows about one overlay's device between passes (lost on restart, rebuilt by adoption). */
export interface OverlayRuntime {
  device: WireGuardDevice;
  interfaceId?: string;
  routes?: string;
  peers: Map<string, AppliedPeer>;
  written?: { uid: string | undefined; rv: string | undefined; status: Record<string, unknown> };
  /** decoded key Secrets by name; `error` says why one could not be read (named in the peers' status) */
  secrets: Map<string, { rv: string | undefined; payload: KeySecretPayload | undefined; error?: string }>;
  opened: Map<string, Uint8Array>;
  probing: Set<string>;
  /** the overlay's state dir exists */
  stateReady?: boolean;
  /** when this agent last set the device's private key (undefined: adopted as it was) */
  keyChangedAt?: number;
  /** Node custody: this node's key pairs by epoch, as read from or written to the state dir */
  nodeKeys: Map<number, WgKeyPair>;
  /** Node custody: key files below this epoch are pruned already */
  keptFrom?: number;
  /** the epoch the device runs, once this agent programmed it */
  epoch?: number;
  /** the highest epoch this node ran for the overlay (with its UID), as kept in the state dir */
  floor?: { uid: string; epoch: number } | null;
  /** the fail-closed rules' counts by peer (drops.ts), and the peer node of each set element */
  drops?: DropCounter;
  dropOwners?: Map<string, string>;
  /** when a status write last carried changed drop counts (report.ts) */
  dropsWrittenAt?: number;
}

export type OwnKey = { privateKey: Uint8Array; publicKey: string };
export type KeyResult = OwnKey | { reason: string; message: string };

export interface PeerPlan {
  /** peers to have on the device exactly so, by public key */
  intended: Map<string, { peer: DesiredPeer; psk: PskResult }>;
  /** public keys that stay on the device (intended, kept as they are, or left alone without a PSK) */
  wanted: Set<string>;
  /** peers not intended, with why */
  evals: Map<string, PeerEval>;
}

export type PskResult =
  | { kind: 'disabled' }
  | { kind: 'ok'; key: Uint8Array; fingerprint: string }
  | { kind: 'missing'; message: string }
  | { kind: 'invalid'; message: string };

export interface PeerEval {
  node: string;
  state: PeerState;
  message: string;
  handshakeAt?: number;
}

export interface Pass {
  overlay: string;
  log: Logger;
  now: number;
  mine: RawObject;
  tunnel: NodeTunnel;
  custody: Custody;
  presharedKeys: 'PerPair' | 'Disabled';
  /** the overlay's spec.dataPlane: fail-closed or monitor, and the declared protected ranges */
  dataPlane: DataPlane;
  operatorKey: Uint8Array | undefined;
  /** why the operator's published key is not trusted (it differs from the pinned one) */
  operatorKeyProblem?: string | undefined;
  view: EpochView;
  /** the epoch the device runs at the start of the pass (undefined: never programmed) */
  current: number | undefined;
  rt: OverlayRuntime;
  w: OverlayWatch;
  usedSealed: Set<string>;
  /** the earliest instant a phase wants the next pass at (e.g. to look at a pending handshake again) */
  wakeAt?: number;
}

/** Zeroes and forgets every opened key. */
export function wipe(opened: Map<string, Uint8Array>): void {
  for (const v of opened.values()) v.fill(0);
  opened.clear();
}
