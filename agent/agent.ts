// The node agent: one per node. For every overlay the node belongs to (a NodeTunnel with spec.nodeName == this
// node) it derives the WireGuard peers from the overlay's NodeTunnels (lib/peers.ts, the function the
// operator uses too), opens the sealed pre-shared keys meant for it, programs one interface per overlay
// through the WireGuardDevice interface, reads the device back, measures every peer and reports in its own
// NodeTunnel's status, which is the only object it ever writes besides its Lease.
//
// Shape (STYLE rules 3-6): informers fill caches; their events enqueue the overlay's name; reconcile(overlay)
// reads only caches, compares desired with the device and changes only what differs. The same pass, re-run
// every probe interval, is the measurement; status is written only when what it reports changed.
import { createHash } from 'node:crypto';
import {
  GROUP,
  NODE_LABEL,
  NODE_TUNNEL_KIND,
  NODE_TUNNEL_PLURAL,
  OVERLAY_LABEL,
  OVERLAY_NETWORK_KIND,
  OVERLAY_NETWORK_PLURAL,
  VERSION,
  nodeTunnelName,
} from '../api/v1alpha1/groupversion.js';
import {
  parseNodeTunnel,
  type NodeTunnel,
  type NodeTunnelStatus,
  type PeerState,
  type PeerStatus,
} from '../api/v1alpha1/nodetunnel.types.js';
import { parseOverlayNetwork } from '../api/v1alpha1/overlaynetwork.types.js';
import { IDENTITY_NAME, IDENTITY_PUBLIC_KEY } from '../operator/identity.js';
import {
  decodeKey,
  encodeKey,
  fingerprint,
  publicKeyOf,
  validateKey,
  type RandomBytes,
  type WgKeyPair,
} from '../lib/keys.js';
import { decodeKeySecretData, keySecretName, pairKey, type KeySecretPayload } from '../lib/keysecret.js';
import { coreResources, customResource, describeError, objectKey, type ResourceRef } from '../lib/kube.js';
import { newLogger, type Logger } from '../lib/log.js';
import { desiredDevice, type Custody, type DesiredPeer } from '../lib/peers.js';
import { realClock, type Clock } from '../lib/runtime/clock.js';
import { Informer } from '../lib/runtime/informer.js';
import { WorkQueue, type HandlerResult } from '../lib/runtime/queue.js';
import type { RawObject } from '../lib/runtime/rest.js';
import { deepEqual, formatTime, setCondition, type ConditionInput } from '../lib/runtime/status.js';
import { unseal, type BoxKeyPair } from '../lib/seal.js';
import {
  validateInterfaceName,
  type DeviceState,
  type PeerState as DevicePeer,
  type WireGuardDevice,
} from './device/device.js';
import { normalizePrefix } from './device/wgcli.js';
import type { AgentApi } from './kube.js';
import { KeyStore } from './keystore.js';
import { LivenessLease } from './liveness.js';
import { assessHandshake, needsProbe } from './peerstate.js';
import {
  DEFAULT_UNDERLAY_MTU,
  WIREGUARD_OVERHEAD,
  endpointHost,
  pingProber,
  sysUnderlayMtu,
  type Prober,
  type UnderlayMtu,
} from './probe.js';

export type DeviceFactory = (name: string, overlay: string) => WireGuardDevice;

export interface AgentOptions {
  /** This node's name (the Node object's). */
  node: string;
  /** The operator's namespace: sealed key Secrets, the identity ConfigMap and the agents' Leases live there. */
  namespace: string;
  /** Where the envelope key and (Node custody) WireGuard private keys are kept; created 0700. */
  stateDir: string;
  api: AgentApi;
  deviceFactory: DeviceFactory;
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
}

const nodeTunnels = customResource(GROUP, VERSION, NODE_TUNNEL_PLURAL, { kind: NODE_TUNNEL_KIND });
const overlayNetworks = customResource(GROUP, VERSION, OVERLAY_NETWORK_PLURAL, {
  kind: OVERLAY_NETWORK_KIND,
});

/** `<prefix>-<first 6 hex of sha256(overlay)>`: stable across restarts, unique enough per node, ≤ 15 chars. */
export function interfaceName(prefix: string, overlay: string): string {
  return validateInterfaceName(`${prefix}-${createHash('sha256').update(overlay).digest('hex').slice(0, 6)}`);
}

interface OverlayWatch {
  tunnels: Informer<RawObject>;
  network: Informer<RawObject>;
  secrets: Informer<RawObject>;
  synced: boolean;
}

interface AppliedPeer {
  node: string;
  pskFingerprint: string | undefined;
  endpoint: string;
  allowedIPs: string[];
  keepalive: number;
  /** when this peer's keys last changed on the device; undefined = adopted unchanged from an earlier run */
  configuredAt: number | undefined;
  /** when this agent last wrote the peer to the device for any reason */
  reconfiguredAt: number | undefined;
}

/** What this agent knows about one overlay's device between passes (lost on restart, rebuilt by adoption). */
interface OverlayRuntime {
  device: WireGuardDevice;
  interfaceId?: string;
  routes?: string;
  peers: Map<string, AppliedPeer>;
  written?: { uid: string | undefined; rv: string | undefined; status: Record<string, unknown> };
  secrets: Map<string, { rv: string | undefined; payload: KeySecretPayload | undefined }>;
  opened: Map<string, Uint8Array>;
  probing: Set<string>;
  /** the overlay's state dir exists */
  stateReady?: boolean;
  /** when this agent last set the device's private key (undefined: adopted as it was) */
  keyChangedAt?: number;
  /** Node custody: this node's key pair at the current epoch (read from the state dir once) */
  nodeKey?: { epoch: number; pair: WgKeyPair };
}

type PskResult =
  | { kind: 'disabled' }
  | { kind: 'ok'; key: Uint8Array; fingerprint: string }
  | { kind: 'missing'; message: string }
  | { kind: 'invalid'; message: string };

interface PeerEval {
  node: string;
  state: PeerState;
  message: string;
  handshakeAt?: number;
}

interface Pass {
  overlay: string;
  log: Logger;
  now: number;
  mine: RawObject;
  tunnel: NodeTunnel;
  custody: Custody;
  presharedKeys: 'PerPair' | 'Disabled';
  operatorKey: Uint8Array | undefined;
  rt: OverlayRuntime;
  w: OverlayWatch;
  usedSealed: Set<string>;
}

export class Agent {
  readonly node: string;
  private readonly o: AgentOptions;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly keys: KeyStore;
  private readonly prober: Prober;
  private readonly underlayMtu: UnderlayMtu;
  private readonly prefix: string;
  private readonly probeIntervalMs: number;
  private readonly queue: WorkQueue;
  private readonly lease: LivenessLease;
  private readonly mine: Informer<RawObject>;
  private readonly identity: Informer<RawObject>;
  private readonly watches = new Map<string, OverlayWatch>();
  private readonly runtimes = new Map<string, OverlayRuntime>();
  private readonly stopController = new AbortController();
  private envelope: BoxKeyPair | undefined;
  private started = false;
  /** Status writes so far (tests and metrics). */
  statusWrites = 0;
  /** Reconcile passes finished so far, successful or not (tests and metrics). */
  passes = 0;

  constructor(opts: AgentOptions) {
    this.o = opts;
    this.node = opts.node;
    this.clock = opts.clock ?? realClock;
    this.log = (opts.logger ?? newLogger('agent')).child({ node: opts.node });
    this.keys = new KeyStore(opts.stateDir, opts.random);
    this.prober = opts.prober ?? pingProber;
    this.underlayMtu = opts.underlayMtu ?? sysUnderlayMtu;
    this.prefix = opts.interfacePrefix ?? 'sm';
    if (this.prefix.length > 8)
      throw new Error(`interface prefix ${this.prefix} is longer than 8 characters`);
    this.probeIntervalMs = opts.probeIntervalMs ?? 5000;
    this.queue = new WorkQueue({
      name: 'agent',
      handler: (overlay) => this.reconcile(overlay),
      concurrency: 4,
      clock: this.clock,
      logger: this.log,
    });
    this.lease = new LivenessLease({
      client: opts.api.leases,
      namespace: opts.namespace,
      node: opts.node,
      renewIntervalMs: opts.leaseRenewIntervalMs,
      leaseDurationSeconds: opts.leaseDurationSeconds,
      clock: this.clock,
      logger: this.log,
    });
    this.mine = this.informer('nodetunnels-mine', nodeTunnels, {
      labelSelector: `${NODE_LABEL}=${opts.node}`,
    });
    this.identity = this.informer('operator-identity', coreResources.configmaps, {
      namespace: opts.namespace,
      fieldSelector: `metadata.name=${IDENTITY_NAME}`,
    });
    const onMine = (obj: RawObject): void => {
      const overlay = overlayOf(obj);
      if (overlay !== undefined) this.queue.add(overlay);
    };
    this.mine.addHandler({ onAdd: onMine, onUpdate: (_o, n) => onMine(n), onDelete: onMine });
    const all = (): void => {
      for (const overlay of this.watches.keys()) this.queue.add(overlay);
    };
    this.identity.addHandler({ onAdd: all, onUpdate: all, onDelete: all });
  }

  /** The interface name this agent uses for `overlay`. */
  interfaceFor(overlay: string): string {
    return interfaceName(this.prefix, overlay);
  }

  /** The envelope public key (base64), once started. */
  envelopePublicKey(): string | undefined {
    return this.envelope ? encodeKey(this.envelope.publicKey, 'envelope public key') : undefined;
  }

  /**
   * Loads (or creates) the envelope key, waits for the caches of this node's NodeTunnels and the operator
   * identity, then starts reconciling and the liveness Lease. Resolves once running.
   */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await this.keys.init();
    this.envelope = await this.keys.envelopeKeyPair();
    this.log.info({ envelopeKey: fingerprint(this.envelope.publicKey) }, 'envelope key loaded');
    this.mine.start();
    this.identity.start();
    const signal = this.stopController.signal;
    const synced = await Promise.all([this.mine.waitForSync(signal), this.identity.waitForSync(signal)]);
    if (synced.includes(false)) return;
    // Overlays with state from an earlier run: reconcile them too, so one left while down is cleaned up.
    for (const overlay of await this.keys.overlays()) this.queue.add(overlay);
    this.queue.start();
    this.lease.start();
    this.log.info('agent running');
  }

  /** SIGTERM: stop watching and writing, but keep every device: traffic keeps flowing across a restart. */
  async stop(): Promise<void> {
    this.stopController.abort();
    await this.lease.stop();
    await this.queue.shutdown();
    await Promise.all([
      this.mine.stop(),
      this.identity.stop(),
      ...[...this.watches.values()].flatMap((w) => [w.tunnels.stop(), w.network.stop(), w.secrets.stop()]),
    ]);
    this.watches.clear();
    for (const rt of this.runtimes.values()) wipe(rt.opened);
    this.log.info('agent stopped; devices left in place');
  }

  private informer(
    name: string,
    resource: ResourceRef,
    sel: { namespace?: string; labelSelector?: string; fieldSelector?: string },
  ): Informer<RawObject> {
    return new Informer<RawObject>({
      name,
      resource,
      client: this.o.api.listWatch,
      clock: this.clock,
      logger: this.log,
      ...sel,
      ...this.o.informer,
    });
  }

  private watchOverlay(overlay: string): OverlayWatch {
    const existing = this.watches.get(overlay);
    if (existing) return existing;
    const tunnels = this.informer(`nodetunnels-${overlay}`, nodeTunnels, {
      labelSelector: `${OVERLAY_LABEL}=${overlay}`,
    });
    const network = this.informer(`overlaynetwork-${overlay}`, overlayNetworks, {
      fieldSelector: `metadata.name=${overlay}`,
    });
    const secrets = this.informer(`secrets-${overlay}`, coreResources.secrets, {
      namespace: this.o.namespace,
      labelSelector: `${OVERLAY_LABEL}=${overlay}`,
    });
    const created: OverlayWatch = { tunnels, network, secrets, synced: false };
    const enqueue = (): void => this.queue.add(overlay);
    for (const inf of [tunnels, network, secrets]) {
      inf.addHandler({ onAdd: enqueue, onUpdate: enqueue, onDelete: enqueue });
      inf.start();
    }
    this.watches.set(overlay, created);
    const signal = this.stopController.signal;
    void Promise.all([tunnels, network, secrets].map((i) => i.waitForSync(signal))).then((ok) => {
      if (ok.every(Boolean) && this.watches.get(overlay) === created) {
        created.synced = true;
        this.queue.add(overlay);
      }
    });
    return created;
  }

  private runtime(overlay: string): OverlayRuntime {
    let rt = this.runtimes.get(overlay);
    if (!rt) {
      rt = {
        device: this.o.deviceFactory(this.interfaceFor(overlay), overlay),
        peers: new Map(),
        secrets: new Map(),
        opened: new Map(),
        probing: new Set(),
      };
      this.runtimes.set(overlay, rt);
    }
    return rt;
  }

  private myTunnel(overlay: string): RawObject | undefined {
    const obj = this.mine.get(nodeTunnelName(overlay, this.node));
    const spec = obj?.spec as { nodeName?: unknown } | undefined;
    return obj && spec?.nodeName === this.node ? obj : undefined;
  }

  private async reconcile(overlay: string): Promise<HandlerResult> {
    try {
      return await this.reconcileOverlay(overlay);
    } finally {
      this.passes++;
    }
  }

  private async reconcileOverlay(overlay: string): Promise<HandlerResult> {
    if (this.stopController.signal.aborted) return;
    const mine = this.myTunnel(overlay);
    if (!mine || (mine.metadata as { deletionTimestamp?: string } | undefined)?.deletionTimestamp) {
      await this.leave(overlay);
      return;
    }
    const w = this.watchOverlay(overlay);
    if (!w.synced) return; // enqueued again once every cache of the overlay is filled
    const log = this.log.child({ overlay });
    const rt = this.runtime(overlay);
    const now = this.clock.now();
    const parsed = parseNodeTunnel(mine);
    if (!parsed.ok) {
      log.warn({ error: parsed.error }, 'own NodeTunnel is invalid; not applying it');
      await this.publish(rt, mine, this.notApplied(rt, mine, now, 'InvalidSpec', parsed.error));
      return;
    }
    const ovObj = w.network.get(overlay);
    const ov = ovObj ? parseOverlayNetwork(ovObj) : undefined;
    if (!ov?.ok) {
      const message = ov
        ? `OverlayNetwork ${overlay} is invalid: ${ov.error}`
        : `OverlayNetwork ${overlay} not found`;
      await this.publish(
        rt,
        mine,
        this.notApplied(rt, mine, now, ov ? 'InvalidSpec' : 'OverlayNotFound', message),
      );
      return;
    }
    const pass: Pass = {
      overlay,
      log,
      now,
      mine,
      tunnel: parsed.value,
      custody: ov.value.spec.keys.custody,
      presharedKeys: ov.value.spec.keys.presharedKeys,
      operatorKey: this.operatorKey(),
      rt,
      w,
      usedSealed: new Set(),
    };
    try {
      await this.apply(pass);
    } finally {
      // Keep only the opened keys this pass used; zero the rest.
      for (const [k, v] of rt.opened) {
        if (!pass.usedSealed.has(k)) {
          v.fill(0);
          rt.opened.delete(k);
        }
      }
    }
    return { requeueAfterMs: this.probeIntervalMs };
  }

  private async apply(p: Pass): Promise<void> {
    const { tunnel, rt, log, now } = p;
    const epoch = tunnel.spec.epoch;
    if (!rt.stateReady) {
      await this.keys.ensureOverlay(p.overlay);
      rt.stateReady = true;
    }
    const own = await this.privateKey(p);
    if ('reason' in own) {
      await this.publish(rt, p.mine, this.notApplied(rt, p.mine, now, own.reason, own.message));
      return;
    }
    const tunnels = this.peerTunnels(p);
    const desired = desiredDevice(this.node, tunnels, p.custody);
    if (!desired) throw new Error(`own NodeTunnel of overlay ${p.overlay} missing from the overlay cache`);
    const byNode = new Map(tunnels.map((t) => [t.spec.nodeName, t]));
    const device = rt.device;

    let state: DeviceState | undefined;
    try {
      state = await device.read();
      const mtu = desired.mtu ?? (await this.derivedMtu(tunnel.spec.endpoint));
      const interfaceId = JSON.stringify([desired.addresses, mtu, desired.listenPort, own.publicKey]);
      if (!state || rt.interfaceId !== interfaceId || state.publicKey !== own.publicKey) {
        await device.ensureInterface({
          addresses: desired.addresses,
          mtu,
          listenPort: desired.listenPort,
          privateKey: own.privateKey,
        });
        if (state?.publicKey !== own.publicKey) {
          // A new private key ends every session: no handshake before this instant counts.
          rt.keyChangedAt = now;
          for (const peer of rt.peers.values()) peer.configuredAt = peer.reconfiguredAt = now;
          log.info({ publicKey: fingerprint(own.publicKey), epoch }, 'interface configured');
        }
        rt.interfaceId = interfaceId;
        state = await device.read();
        if (!state) throw new Error(`interface ${device.name} missing right after it was configured`);
      }
    } catch (err) {
      await this.publishFailure(rt, p.mine, now, 'DeviceError', describeError(err));
      throw new Error(`failed to configure interface ${device.name}: ${describeError(err)}`, { cause: err });
    }

    const onDevice = new Map(state.peers.map((peer) => [peer.publicKey, peer]));
    const evals = new Map<string, PeerEval>();
    const intended = new Map<string, { peer: DesiredPeer; psk: PskResult }>();
    const wanted = new Set(desired.peers.map((peer) => peer.publicKey));
    for (const node of desired.awaiting) {
      evals.set(node, { node, state: 'AwaitingPeer', message: 'peer has not published its public key yet' });
    }
    try {
      for (const peer of desired.peers) {
        if (peer.publicKey === own.publicKey) {
          evals.set(peer.node, {
            node: peer.node,
            state: 'KeyMismatch',
            message: 'peer publishes our own public key',
          });
          continue;
        }
        const psk = this.presharedKey(p, peer.node, byNode.get(peer.node)?.spec.secretRef?.name);
        if (psk.kind === 'missing' || psk.kind === 'invalid') {
          // Never a weaker tunnel: a peer without its PSK is not added (one already on the device is left alone).
          evals.set(peer.node, {
            node: peer.node,
            state: psk.kind === 'missing' ? 'AwaitingPeer' : 'KeyMismatch',
            message: psk.message,
          });
          continue;
        }
        intended.set(peer.publicKey, { peer, psk });
        await this.upsertIfChanged(p, peer, psk, onDevice.get(peer.publicKey));
      }
      for (const publicKey of onDevice.keys()) {
        if (wanted.has(publicKey)) continue;
        await device.removePeer(publicKey);
        rt.peers.delete(publicKey);
        log.info({ peerKey: fingerprint(publicKey) }, 'peer removed');
      }
      for (const publicKey of [...rt.peers.keys()]) if (!wanted.has(publicKey)) rt.peers.delete(publicKey);
      const routes = new Set<string>();
      for (const { peer } of intended.values())
        for (const r of peer.allowedIPs) routes.add(normalizePrefix(r));
      for (const [publicKey, peer] of onDevice) {
        if (wanted.has(publicKey) && !intended.has(publicKey)) for (const r of peer.allowedIPs) routes.add(r);
      }
      const routeList = [...routes].sort();
      if (rt.routes !== routeList.join(',')) {
        await device.syncRoutes(routeList);
        rt.routes = routeList.join(',');
      }
      state = await device.read();
      if (!state) throw new Error(`interface ${device.name} disappeared`);
    } catch (err) {
      await this.publishFailure(rt, p.mine, now, 'DeviceError', describeError(err));
      throw new Error(`failed to program peers on ${device.name}: ${describeError(err)}`, { cause: err });
    }

    // Read-back: the kernel silently ignores some bad input (e.g. a PSK of the wrong length).
    const readBack = new Map(state.peers.map((peer) => [peer.publicKey, peer]));
    let deviceOk = state.publicKey === own.publicKey;
    for (const [publicKey, { peer, psk }] of intended) {
      const mismatch = verifyPeer(readBack.get(publicKey), peer, psk);
      if (mismatch) {
        deviceOk = false;
        log.warn(
          { peer: peer.node, problem: mismatch },
          'device does not hold the intended peer configuration',
        );
        evals.set(peer.node, { node: peer.node, state: 'KeyMismatch', message: mismatch });
        continue;
      }
      const seen = readBack.get(publicKey)?.latestHandshake?.getTime();
      const a = assessHandshake({
        now,
        configuredAt: rt.peers.get(publicKey)?.configuredAt,
        reconfiguredAt: rt.peers.get(publicKey)?.reconfiguredAt,
        latestHandshake: seen,
      });
      evals.set(peer.node, { node: peer.node, state: a.state, message: a.message, handshakeAt: seen });
      if (needsProbe(a, now)) this.probe(p, peer.node, byNode.get(peer.node)?.spec.address);
    }

    const ready: ConditionInput = deviceOk
      ? {
          type: 'Ready',
          status: 'True',
          reason: 'Applied',
          message: `interface ${device.name} programmed with ${intended.size} of ${evals.size} peers`,
        }
      : {
          type: 'Ready',
          status: 'False',
          reason: 'DeviceMismatch',
          message:
            state.publicKey === own.publicKey
              ? 'the device does not hold the intended configuration of some peers'
              : `the device's public key ${state.publicKey ? fingerprint(state.publicKey) : 'none'} is not ${fingerprint(own.publicKey)}`,
        };
    const status = this.applied(p, own.publicKey, [...evals.values()], ready);
    if (await this.publish(rt, p.mine, status)) {
      log.info({ peers: status.peersSummary, epoch }, 'status updated');
    }
  }

  private async upsertIfChanged(
    p: Pass,
    peer: DesiredPeer,
    psk: PskResult,
    current: DevicePeer | undefined,
  ): Promise<void> {
    const { rt, now } = p;
    const pskFingerprint = psk.kind === 'ok' ? psk.fingerprint : undefined;
    const allowedIPs = [...new Set(peer.allowedIPs.map(normalizePrefix))].sort();
    const known = rt.peers.get(peer.publicKey);
    // The endpoint is compared with what we set, not what the device shows: WireGuard updates it when a
    // peer roams, and writing it back every pass would undo that.
    const endpointChanged = known ? known.endpoint !== peer.endpoint : current?.endpoint !== peer.endpoint;
    const changed =
      !current ||
      current.presharedKeyFingerprint !== pskFingerprint ||
      !sameList([...current.allowedIPs].sort(), allowedIPs) ||
      (current.persistentKeepalive ?? 0) !== peer.persistentKeepalive ||
      endpointChanged;
    const keysChanged = !current || current.presharedKeyFingerprint !== pskFingerprint;
    if (changed) {
      await rt.device.upsertPeer({
        publicKey: peer.publicKey,
        ...(psk.kind === 'ok' ? { presharedKey: psk.key } : {}),
        endpoint: peer.endpoint,
        allowedIPs: peer.allowedIPs,
        persistentKeepalive: peer.persistentKeepalive,
      });
      p.log.info(
        {
          peer: peer.node,
          peerKey: fingerprint(peer.publicKey),
          psk: pskFingerprint ?? 'none',
          new: !current,
        },
        'peer configured',
      );
    }
    rt.peers.set(peer.publicKey, {
      node: peer.node,
      pskFingerprint,
      endpoint: peer.endpoint,
      allowedIPs,
      keepalive: peer.persistentKeepalive,
      // a peer adopted from the device counts handshakes since our own key was set (unknown: any)
      configuredAt: keysChanged ? now : known ? known.configuredAt : rt.keyChangedAt,
      reconfiguredAt: changed ? now : (known?.reconfiguredAt ?? rt.keyChangedAt),
    });
  }

  private probe(p: Pass, node: string, address: string | undefined): void {
    if (!address || p.rt.probing.has(node)) return;
    p.rt.probing.add(node);
    const iface = p.rt.device.name;
    void this.prober
      .probe(iface, address.split('/')[0]!)
      .catch((err: unknown) => p.log.debug({ peer: node, err: describeError(err) }, 'probe failed'))
      .finally(() => p.rt.probing.delete(node));
  }

  private async derivedMtu(endpoint: string): Promise<number> {
    const underlay = (await this.underlayMtu(endpointHost(endpoint))) ?? DEFAULT_UNDERLAY_MTU;
    return Math.max(576, underlay - WIREGUARD_OVERHEAD);
  }

  /** The overlay's NodeTunnels, parsed; invalid ones are logged and skipped. */
  private peerTunnels(p: Pass): NodeTunnel[] {
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

  private operatorKey(): Uint8Array | undefined {
    const cm = this.identity.get(IDENTITY_NAME, this.o.namespace) as
      { data?: Record<string, string> } | undefined;
    const raw = cm?.data?.[IDENTITY_PUBLIC_KEY];
    if (raw === undefined) return undefined;
    try {
      return decodeKey(raw, 'operator sealing public key');
    } catch (err) {
      this.log.warn({ err: describeError(err) }, 'operator identity ConfigMap holds no valid public key');
      return undefined;
    }
  }

  private secretPayload(p: Pass, name: string): KeySecretPayload | undefined {
    const obj = p.w.secrets.get(name, this.o.namespace);
    if (!obj) return undefined;
    const rv = obj.metadata?.resourceVersion;
    const cached = p.rt.secrets.get(name);
    if (cached && cached.rv === rv) return cached.payload;
    const decoded = decodeKeySecretData((obj as { data?: Record<string, string> }).data);
    let payload: KeySecretPayload | undefined;
    if (!decoded.ok) p.log.warn({ secret: name, error: decoded.error }, 'ignoring undecodable key Secret');
    else if (decoded.payload.overlay !== p.overlay)
      p.log.warn({ secret: name }, 'key Secret belongs to another overlay');
    else payload = decoded.payload;
    p.rt.secrets.set(name, { rv, payload });
    return payload;
  }

  /** Opens a value the operator sealed to this node; results are cached per sealed value for the next pass. */
  private open(p: Pass, sealed: string, operatorKey: Uint8Array): Uint8Array {
    const id = `${Buffer.from(operatorKey).toString('base64')}|${sealed}`;
    p.usedSealed.add(id);
    let key = p.rt.opened.get(id);
    if (!key) {
      key = validateKey(unseal(sealed, operatorKey, this.envelope!), 'unsealed key');
      p.rt.opened.set(id, key);
    }
    return key;
  }

  private presharedKey(p: Pass, peer: string, peerSecret: string | undefined): PskResult {
    if (p.presharedKeys === 'Disabled') return { kind: 'disabled' };
    const epoch = p.tunnel.spec.epoch;
    if (!p.operatorKey)
      return { kind: 'missing', message: 'the operator has not published its sealing key yet' };
    const [a, b] = pairKey(this.node, peer);
    const names = [
      p.tunnel.spec.secretRef?.name ?? keySecretName(p.overlay, this.node),
      peerSecret ?? keySecretName(p.overlay, peer),
    ];
    const pair = names
      .map((n) => this.secretPayload(p, n))
      .flatMap((payload) => payload?.pairs ?? [])
      .find((x) => x.a === a && x.b === b && x.epoch === epoch);
    const sealed = pair?.sealed[this.node];
    if (!pair || sealed === undefined) {
      return { kind: 'missing', message: `no pre-shared key for this pair at epoch ${epoch} yet` };
    }
    if (pair.sealedTo[this.node] !== fingerprint(this.envelope!.publicKey)) {
      return {
        kind: 'missing',
        message: 'pre-shared key is sealed to an earlier envelope key; waiting for a re-seal',
      };
    }
    let key: Uint8Array;
    try {
      key = this.open(p, sealed, p.operatorKey);
    } catch (err) {
      p.log.warn(
        { peer, epoch, pskFingerprint: pair.fingerprint, err: describeError(err) },
        'pre-shared key refused',
      );
      return { kind: 'invalid', message: "pre-shared key does not open with the operator's sealing key" };
    }
    const fp = fingerprint(key);
    if (fp !== pair.fingerprint) {
      p.log.warn(
        { peer, epoch, expected: pair.fingerprint, got: fp },
        'pre-shared key does not match its fingerprint',
      );
      return {
        kind: 'invalid',
        message: `pre-shared key does not match its recorded fingerprint ${pair.fingerprint}`,
      };
    }
    return { kind: 'ok', key, fingerprint: fp };
  }

  /** This node's private key at the tunnel's epoch, or why it is not available. */
  private async privateKey(
    p: Pass,
  ): Promise<{ privateKey: Uint8Array; publicKey: string } | { reason: string; message: string }> {
    const epoch = p.tunnel.spec.epoch;
    if (p.custody === 'Node') {
      if (p.rt.nodeKey?.epoch !== epoch) {
        p.rt.nodeKey = { epoch, pair: await this.keys.wireGuardKeyPair(p.overlay, epoch) };
        await this.keys.pruneEpochs(p.overlay, epoch);
      }
      return p.rt.nodeKey.pair;
    }
    const expected = p.tunnel.spec.publicKey;
    if (!expected) return { reason: 'AwaitingKeys', message: `no public key in spec for epoch ${epoch} yet` };
    if (!p.operatorKey)
      return { reason: 'AwaitingKeys', message: 'the operator has not published its sealing key yet' };
    const payload = this.secretPayload(
      p,
      p.tunnel.spec.secretRef?.name ?? keySecretName(p.overlay, this.node),
    );
    const entry = payload?.privateKeys.find((k) => k.epoch === epoch);
    if (!entry) return { reason: 'AwaitingKeys', message: `no sealed private key for epoch ${epoch} yet` };
    let privateKey: Uint8Array;
    try {
      privateKey = this.open(p, entry.sealed, p.operatorKey);
    } catch (err) {
      p.log.warn({ epoch, err: describeError(err) }, 'sealed private key refused');
      return {
        reason: 'KeyMismatch',
        message: "sealed private key does not open with the operator's sealing key",
      };
    }
    const publicKey = publicKeyOf(privateKey);
    if (publicKey !== expected) {
      return {
        reason: 'KeyMismatch',
        message: `sealed private key belongs to ${fingerprint(publicKey)}, spec.publicKey is ${fingerprint(expected)}`,
      };
    }
    return { privateKey, publicKey };
  }

  /** Status after a pass that programmed the device. */
  private applied(
    p: Pass,
    publicKey: string,
    evals: PeerEval[],
    ready: ConditionInput,
  ): Record<string, unknown> {
    const base = this.baseStatus(p.rt, p.mine);
    const now = new Date(p.now);
    const epoch = p.tunnel.spec.epoch;
    const previous = new Map((base.peers ?? []).map((e) => [e.node, e]));
    const peers: PeerStatus[] = evals
      .sort((x, y) => (x.node < y.node ? -1 : x.node > y.node ? 1 : 0))
      .map((e) => {
        const prev = previous.get(e.node);
        return {
          node: e.node,
          state: e.state,
          since: prev && prev.state === e.state ? prev.since : formatTime(now),
          epoch,
          ...(e.handshakeAt !== undefined ? { lastHandshakeTime: formatTime(new Date(e.handshakeAt)) } : {}),
          ...(e.message ? { message: e.message } : {}),
        };
      });
    const encrypted = peers.filter((e) => e.state === 'Encrypted').length;
    const notEncrypted = peers.filter((e) => e.state !== 'Encrypted');
    const generation = (p.mine.metadata as { generation?: number } | undefined)?.generation;
    const encryptedCond: ConditionInput =
      peers.length === 0
        ? { type: 'Encrypted', status: 'True', reason: 'NoPeers', message: 'no peers in the overlay' }
        : notEncrypted.length === 0
          ? {
              type: 'Encrypted',
              status: 'True',
              reason: 'AllPeersEncrypted',
              message: `${encrypted}/${peers.length} peers encrypted`,
            }
          : {
              type: 'Encrypted',
              status: 'False',
              reason: 'PeersNotEncrypted',
              message: `${encrypted}/${peers.length} peers encrypted; not encrypted: ${notEncrypted
                .slice(0, 20)
                .map((e) => `${e.node} (${e.state})`)
                .join(', ')}${notEncrypted.length > 20 ? ', …' : ''}`,
            };
    let conditions = setCondition(base.conditions, { ...ready, observedGeneration: generation }, now);
    conditions = setCondition(conditions, { ...encryptedCond, observedGeneration: generation }, now);
    const status: NodeTunnelStatus = {
      observedGeneration: ready.status === 'True' ? generation : base.observedGeneration,
      envelopePublicKey: this.envelopePublicKey(),
      ...(p.custody === 'Node' ? { publicKey } : {}),
      appliedEpoch: epoch,
      stagedEpoch: epoch,
      peers,
      summary: { encrypted, total: peers.length },
      peersSummary: `${encrypted}/${peers.length}`,
      conditions,
    };
    return status;
  }

  /** Status when nothing could be applied: publish the envelope key (the operator needs it) and why. */
  private notApplied(
    rt: OverlayRuntime,
    mine: RawObject,
    nowMs: number,
    reason: string,
    message: string,
  ): Record<string, unknown> {
    const base = this.baseStatus(rt, mine);
    const generation = (mine.metadata as { generation?: number } | undefined)?.generation;
    const conditions = setCondition(
      base.conditions,
      { type: 'Ready', status: 'False', reason, message, observedGeneration: generation },
      new Date(nowMs),
    );
    return { ...base, envelopePublicKey: this.envelopePublicKey(), conditions };
  }

  /**
   * The status this agent last knows to be stored: what it wrote itself, unless the cache has since seen a
   * newer version of the object (the cache lags behind our own writes; comparing with a stale cache would
   * rewrite the same status twice).
   */
  private baseStatus(rt: OverlayRuntime, mine: RawObject): NodeTunnelStatus {
    const uid = (mine.metadata as { uid?: string } | undefined)?.uid;
    const cachedRv = mine.metadata?.resourceVersion;
    const w = rt.written;
    if (w && w.uid === uid && !newerRv(cachedRv, w.rv)) return structuredClone(w.status);
    return structuredClone((mine.status ?? {}) as NodeTunnelStatus);
  }

  /** Reports a failed pass in status; a failure to do so is logged, so the caller's error is the one raised. */
  private async publishFailure(
    rt: OverlayRuntime,
    mine: RawObject,
    nowMs: number,
    reason: string,
    message: string,
  ): Promise<void> {
    try {
      await this.publish(rt, mine, this.notApplied(rt, mine, nowMs, reason, message));
    } catch (err) {
      this.log.warn(
        { nodeTunnel: mine.metadata?.name, err: describeError(err) },
        'failed to report failure in status',
      );
    }
  }

  /** Writes `status` to this node's NodeTunnel if it differs from what is stored. Returns whether it wrote. */
  private async publish(
    rt: OverlayRuntime,
    mine: RawObject,
    status: Record<string, unknown>,
  ): Promise<boolean> {
    const base = this.baseStatus(rt, mine) as Record<string, unknown>;
    if (deepEqual(comparable(base), comparable(status))) return false;
    const patch: Record<string, unknown> = { ...status };
    for (const k of Object.keys(base)) if (status[k] === undefined) patch[k] = null;
    const name = mine.metadata?.name ?? '';
    const stored = await this.o.api.patchNodeTunnelStatus(name, patch);
    this.statusWrites++;
    rt.written = {
      uid: (mine.metadata as { uid?: string } | undefined)?.uid,
      rv: stored.metadata?.resourceVersion,
      status: structuredClone(status),
    };
    return true;
  }

  /** The node left the overlay: remove its interface and its keys for it, stop watching it. */
  private async leave(overlay: string): Promise<void> {
    const w = this.watches.get(overlay);
    if (w) {
      this.watches.delete(overlay);
      await Promise.all([w.tunnels.stop(), w.network.stop(), w.secrets.stop()]);
    }
    const known =
      this.runtimes.has(overlay) || w !== undefined || (await this.keys.overlays()).includes(overlay);
    if (!known) return;
    const rt = this.runtime(overlay);
    await rt.device.delete();
    await this.keys.removeOverlay(overlay);
    wipe(rt.opened);
    this.runtimes.delete(overlay);
    this.log.info({ overlay, interface: rt.device.name }, 'left overlay; interface deleted');
  }
}

function overlayOf(obj: RawObject): string | undefined {
  const spec = obj.spec as { overlay?: unknown } | undefined;
  if (typeof spec?.overlay === 'string') return spec.overlay;
  const labels = (obj.metadata as { labels?: Record<string, string> } | undefined)?.labels;
  return labels?.[OVERLAY_LABEL];
}

/** Why the device's view of a peer differs from what was applied (fingerprints only), or undefined. */
function verifyPeer(actual: DevicePeer | undefined, peer: DesiredPeer, psk: PskResult): string | undefined {
  if (!actual) return `peer ${fingerprint(peer.publicKey)} is missing from the device after applying`;
  const want = [...new Set(peer.allowedIPs.map(normalizePrefix))].sort();
  if (!sameList([...actual.allowedIPs].sort(), want)) {
    return `allowed IPs on the device (${actual.allowedIPs.join(', ') || 'none'}) are not ${want.join(', ')}`;
  }
  const wantPsk = psk.kind === 'ok' ? psk.fingerprint : undefined;
  if (actual.presharedKeyFingerprint !== wantPsk) {
    return `pre-shared key on the device is ${actual.presharedKeyFingerprint ?? 'none'}, intended ${wantPsk ?? 'none'}`;
  }
  return undefined;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Status as compared for "did it change": the handshake time alone moves every two minutes and is no change. */
function comparable(status: Record<string, unknown>): unknown {
  const peers = status.peers as PeerStatus[] | undefined;
  if (!peers) return status;
  return { ...status, peers: peers.map(({ lastHandshakeTime: _ignored, ...rest }) => rest) };
}

/** True when resourceVersion `a` is newer than `b` (etcd revisions; opaque ones compare as "different"). */
function newerRv(a: string | undefined, b: string | undefined): boolean {
  if (a === b) return false;
  if (a === undefined || b === undefined || !/^\d+$/.test(a) || !/^\d+$/.test(b)) return true;
  return BigInt(a) > BigInt(b);
}

function wipe(opened: Map<string, Uint8Array>): void {
  for (const v of opened.values()) v.fill(0);
  opened.clear();
}
