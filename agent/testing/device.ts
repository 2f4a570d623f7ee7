// In-memory WireGuardDevice for unit tests of the agent. It validates its inputs like the real one, keeps
// the state read() reports, records every call (with fingerprints, never keys) and lets a test play the
// network: handshakes, traffic, injected failures.
import { decodePublicKey, fingerprint, publicKeyOf, validateKey } from '../../lib/keys.js';
import {
  validateInterfaceName,
  type DeviceState,
  type InterfaceConfig,
  type PeerConfig,
  type PeerState,
  type WireGuardDevice,
} from '../device/device.js';
import { normalizeInterfaceAddress, normalizePrefix } from '../device/wgcli.js';

type Method =
  'ensureInterface' | 'setPrivateKey' | 'upsertPeer' | 'removePeer' | 'read' | 'syncRoutes' | 'delete';

export interface FakeCall {
  method: Method;
  /** e.g. the peer's public key fingerprint; never key material */
  detail?: string;
}

interface FakePeer {
  config: Omit<PeerConfig, 'presharedKey'>;
  pskFingerprint?: string;
  latestHandshake?: Date;
  rxBytes: number;
  txBytes: number;
}

export class FakeWireGuardDevice implements WireGuardDevice {
  readonly name: string;
  readonly calls: FakeCall[] = [];
  exists = false;
  addresses: string[] = [];
  mtu: number | undefined;
  listenPort = 0;
  publicKey: string | undefined;
  routes: string[] = [];
  private readonly peers = new Map<string, FakePeer>();
  private readonly failures = new Map<Method, Error>();

  constructor(name = 'wg0') {
    this.name = validateInterfaceName(name);
  }

  /** The next call of `method` rejects with `error`. */
  failNext(method: Method, error = new Error(`injected ${method} failure`)): void {
    this.failures.set(method, error);
  }

  /** Simulates a completed handshake with the peer (and optionally traffic). */
  handshake(publicKey: string, at: Date, traffic = { rx: 0, tx: 0 }): void {
    const peer = this.requirePeer(publicKey);
    peer.latestHandshake = at;
    peer.rxBytes += traffic.rx;
    peer.txBytes += traffic.tx;
  }

  ensureInterface(config: InterfaceConfig): Promise<void> {
    return this.call('ensureInterface', undefined, () => {
      validateKey(config.privateKey, `private key for ${this.name}`);
      this.exists = true;
      this.addresses = config.addresses.map(normalizeInterfaceAddress);
      this.mtu = config.mtu;
      this.listenPort = config.listenPort;
      this.setKey(config.privateKey);
    });
  }

  setPrivateKey(privateKey: Uint8Array): Promise<void> {
    return this.call('setPrivateKey', undefined, () => {
      validateKey(privateKey, `private key for ${this.name}`);
      this.requireExists();
      this.setKey(privateKey);
    });
  }

  upsertPeer(peer: PeerConfig): Promise<void> {
    return this.call('upsertPeer', safeFingerprint(peer.publicKey), () => {
      decodePublicKey(peer.publicKey, 'peer public key');
      this.requireExists();
      const existing = this.peers.get(peer.publicKey);
      const { presharedKey, ...config } = peer;
      const next: FakePeer = {
        config: {
          ...config,
          allowedIPs: peer.allowedIPs.map(normalizePrefix),
          // like WireGuard: no endpoint given keeps the one the peer already has
          endpoint: peer.endpoint ?? existing?.config.endpoint,
        },
        rxBytes: existing?.rxBytes ?? 0,
        txBytes: existing?.txBytes ?? 0,
      };
      if (existing?.latestHandshake) {
        next.latestHandshake = existing.latestHandshake;
      }
      if (presharedKey) {
        next.pskFingerprint = fingerprint(validateKey(presharedKey, 'pre-shared key'));
      }
      // WireGuard's allowed IPs are exclusive: a prefix moves to the peer that was given it last.
      for (const other of this.peers.values()) {
        other.config.allowedIPs = other.config.allowedIPs.filter((p) => !next.config.allowedIPs.includes(p));
      }
      this.peers.set(peer.publicKey, next);
    });
  }

  removePeer(publicKey: string): Promise<void> {
    return this.call('removePeer', safeFingerprint(publicKey), () => {
      this.requireExists();
      this.peers.delete(publicKey);
    });
  }

  read(): Promise<DeviceState | undefined> {
    return this.call('read', undefined, () => {
      if (!this.exists) {
        return undefined;
      }
      const state: DeviceState = { name: this.name, listenPort: this.listenPort, peers: [] };
      if (this.publicKey) {
        state.publicKey = this.publicKey;
      }
      for (const [publicKey, p] of this.peers) {
        const peer: PeerState = {
          publicKey,
          allowedIPs: [...p.config.allowedIPs],
          rxBytes: p.rxBytes,
          txBytes: p.txBytes,
          presharedKeySet: p.pskFingerprint !== undefined,
        };
        if (p.pskFingerprint) peer.presharedKeyFingerprint = p.pskFingerprint;
        if (p.config.endpoint) peer.endpoint = p.config.endpoint;
        if (p.latestHandshake) peer.latestHandshake = p.latestHandshake;
        if (p.config.persistentKeepalive) peer.persistentKeepalive = p.config.persistentKeepalive;
        state.peers.push(peer);
      }
      return state;
    });
  }

  syncRoutes(prefixes: string[]): Promise<void> {
    return this.call('syncRoutes', undefined, () => {
      this.requireExists();
      this.routes = [...new Set(prefixes.map(normalizePrefix))].sort();
    });
  }

  delete(): Promise<void> {
    return this.call('delete', undefined, () => {
      this.exists = false;
      this.addresses = [];
      this.routes = [];
      this.publicKey = undefined;
      this.listenPort = 0;
      this.peers.clear();
    });
  }

  private setKey(privateKey: Uint8Array): void {
    const next = publicKeyOf(privateKey);
    if (next !== this.publicKey) {
      // a new private key ends every session
      for (const p of this.peers.values()) delete p.latestHandshake;
    }
    this.publicKey = next;
  }

  private requireExists(): void {
    if (!this.exists) throw new Error(`interface ${this.name} does not exist`);
  }

  private requirePeer(publicKey: string): FakePeer {
    const peer = this.peers.get(publicKey);
    if (!peer) throw new Error(`no peer ${fingerprint(publicKey)} on ${this.name}`);
    return peer;
  }

  private async call<T>(method: Method, detail: string | undefined, fn: () => T): Promise<T> {
    await Promise.resolve();
    this.calls.push(detail === undefined ? { method } : { method, detail });
    const failure = this.failures.get(method);
    if (failure) {
      this.failures.delete(method);
      throw failure;
    }
    return fn();
  }
}

function safeFingerprint(publicKey: string): string {
  try {
    return fingerprint(publicKey);
  } catch {
    return 'invalid-key';
  }
}
