// The narrow interface between the agent and a WireGuard interface. Today `wg`/`ip` (WgCliDevice), tomorrow
// netlink; unit tests of the agent use FakeWireGuardDevice. Secrets (private key, PSKs) go in as bytes and
// never come back out: read() reports public keys, and for PSKs only whether one is set and its fingerprint.

export interface InterfaceConfig {
  /** CIDRs on the interface, e.g. `10.100.0.1/24`, `fd00:100::1/64`. Others are removed (link-local kept). */
  addresses: string[];
  mtu?: number;
  listenPort: number;
  /** 32 bytes. Changing it ends every session, so it is only written when it differs from the device's. */
  privateKey: Uint8Array;
}

export interface PeerConfig {
  /** base64, as `wg` prints it */
  publicKey: string;
  /** 32 bytes; absent = no PSK (an existing one is removed). Takes effect at the next handshake. */
  presharedKey?: Uint8Array;
  /** `host:port` or `[v6]:port`; absent = leave as is (WireGuard learns it from the peer's packets). */
  endpoint?: string;
  /** replaces the peer's allowed IPs */
  allowedIPs: string[];
  /** seconds; absent or 0 = off */
  persistentKeepalive?: number;
}

export interface PeerState {
  publicKey: string;
  endpoint?: string;
  allowedIPs: string[];
  /** absent when no handshake completed yet */
  latestHandshake?: Date;
  rxBytes: number;
  txBytes: number;
  persistentKeepalive?: number;
  presharedKeySet: boolean;
  /** fingerprint (see lib/keys.ts) of the PSK, so the caller can check the right one was applied */
  presharedKeyFingerprint?: string;
}

export interface DeviceState {
  name: string;
  /** absent when no private key is set */
  publicKey?: string;
  listenPort: number;
  peers: PeerState[];
}

export type DeviceImplementation = 'kernel' | 'userspace';

export interface WireGuardDevice {
  /** interface name, at most 15 characters */
  readonly name: string;
  /** Creates the interface if missing, then converges addresses, MTU, listen port, private key; sets it up. */
  ensureInterface(config: InterfaceConfig): Promise<void>;
  /** Replaces the private key (ends all current sessions: that is what a key rotation cutover does). */
  setPrivateKey(privateKey: Uint8Array): Promise<void>;
  /** Adds the peer, or updates it in place (its session survives unless its key changed). */
  upsertPeer(peer: PeerConfig): Promise<void>;
  removePeer(publicKey: string): Promise<void>;
  /** The device as it is now; undefined when the interface does not exist. */
  read(): Promise<DeviceState | undefined>;
  /**
   * Makes the routes this device owns (marked with their own route protocol, in sealmesh's own routing table
   * behind an `ip rule`: policy.ts) through the interface exactly `prefixes`: adds or replaces the missing
   * ones, removes the rest. Routes anyone else added, the CNI's in the main table among them, are left alone.
   */
  syncRoutes(prefixes: string[]): Promise<void>;
  /** Removes the interface (and with it its routes). No-op when it does not exist. */
  delete(): Promise<void>;
}

/** Valid Linux interface name: 1..15 characters, no '/', ':' or whitespace. */
export function validateInterfaceName(name: string): string {
  if (!/^[A-Za-z0-9_.+=-]{1,15}$/.test(name) || name === '.' || name === '..') {
    throw new Error(`invalid interface name '${name}': 1-15 characters of [A-Za-z0-9_.+=-]`);
  }
  return name;
}
