// The node agent: one per node. For every overlay the node belongs to (a NodeTunnel with spec.nodeName == this
// node) it derives the WireGuard peers from the overlay's NodeTunnels (lib/peers.ts, the function the
// operator uses too), opens the sealed pre-shared keys meant for it, programs one interface per overlay
// through the WireGuardDevice interface, reads the device back, measures every peer and reports in its own
// NodeTunnel's status, which is the only object it ever writes besides its Lease.
//
// Shape (STYLE rules 3-6): informers fill caches; their events enqueue the overlay's name; reconcile(overlay)
// reads only caches, compares desired with the device and changes only what differs. The same pass, re-run
// every probe interval, is the measurement; status is written only when what it reports changed.
//
// Rotation (notes/ROTATION.md, agent/rotation.ts): the device runs the OverlayNetwork's status.epoch. While a
// rotation stages epoch T the agent prepares its key and every PSK at T without touching the device and
// acknowledges once (stagedEpoch, stagedPublicKey); at the cutover instant (its own clock) it switches in one
// tight sequence with no API call in between, pings every peer so the new handshakes start at once, and only
// then reports appliedEpoch T.
import { createHash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
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
import { IDENTITY_NAME, IDENTITY_PUBLIC_KEY } from '../lib/contract/identity.js';
import {
  decodeKey,
  encodeKey,
  fingerprint,
  publicKeyOf,
  validateKey,
  type RandomBytes,
  type WgKeyPair,
} from '../lib/keys.js';
import {
  decodeKeySecretData,
  keySecretEpochName,
  keySecretName,
  pairKey,
  type KeySecretPayload,
} from '../lib/contract/keysecret.js';
import { coreResources, customResource, describeError, objectKey, type ResourceRef } from '../lib/kube.js';
import { newLogger, type Logger } from '../lib/log.js';
import {
  desiredDevice,
  durationSeconds,
  type Custody,
  type DesiredDevice,
  type DesiredPeer,
} from '../lib/contract/device.js';
import { realClock, type Clock } from '../lib/runtime/clock.js';
import { Informer } from '../lib/runtime/informer.js';
import { WorkQueue, type HandlerResult } from '../lib/runtime/queue.js';
import type { RawObject } from '../lib/runtime/rest.js';
import { deepEqual, formatTime, setCondition, type ConditionInput } from '../lib/runtime/conditions.js';
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
import { AgentOverlayStatusSchema, epochView, keyAt, type EpochView, type RotationScope } from './epoch.js';
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
  /** Node custody: this node's key pairs by epoch, as read from or written to the state dir */
  nodeKeys: Map<number, WgKeyPair>;
  /** Node custody: key files below this epoch are pruned already */
  keptFrom?: number;
  /** the epoch the device runs, once this agent programmed it */
  epoch?: number;
}

type OwnKey = { privateKey: Uint8Array; publicKey: string };
type KeyResult = OwnKey | { reason: string; message: string };

interface PeerPlan {
  /** peers to have on the device exactly so, by public key */
  intended: Map<string, { peer: DesiredPeer; psk: PskResult }>;
  /** public keys that stay on the device (intended, kept as they are, or left alone without a PSK) */
  wanted: Set<string>;
  /** peers not intended, with why */
  evals: Map<string, PeerEval>;
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
  view: EpochView;
  /** the epoch the device runs at the start of the pass (undefined: never programmed) */
  current: number | undefined;
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
    transform?: (obj: RawObject) => RawObject,
  ): Informer<RawObject> {
    return new Informer<RawObject>({
      name,
      resource,
      client: this.o.api.listWatch,
      clock: this.clock,
      logger: this.log,
      ...sel,
      ...this.o.informer,
      ...(transform ? { transform } : {}),
    });
  }

  private watchOverlay(overlay: string): OverlayWatch {
    const existing = this.watches.get(overlay);
    if (existing) return existing;
    // Peers' keys and staging, not what each peer reports of its own peers: at 1,000 nodes those lists are
    // ~130 KB per tunnel, and every change of one would wake this agent (see peerTunnelView).
    const tunnels = this.informer(
      `nodetunnels-${overlay}`,
      nodeTunnels,
      { labelSelector: `${OVERLAY_LABEL}=${overlay}` },
      peerTunnelView,
    );
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
      inf.addHandler({
        onAdd: enqueue,
        // A peer tunnel whose view did not change (only its peer list did, or its resourceVersion) is no news.
        onUpdate: (old, next) => {
          if (inf !== tunnels || !samePeerView(old, next)) enqueue();
        },
        onDelete: enqueue,
      });
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
        nodeKeys: new Map(),
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
    // The spec and the two status fields the agent reads are parsed apart: the rest of the status is the
    // operator's and must not stop the data plane.
    const ov = ovObj ? parseOverlayNetwork({ ...ovObj, status: undefined }) : undefined;
    const ovStatus = AgentOverlayStatusSchema.safeParse(ovObj?.status ?? {});
    if (!ov?.ok || !ovStatus.success) {
      const message = !ov
        ? `OverlayNetwork ${overlay} not found`
        : !ov.ok
          ? `OverlayNetwork ${overlay} is invalid: ${ov.error}`
          : `OverlayNetwork ${overlay} has an unreadable status.epoch or status.rotation`;
      await this.publish(
        rt,
        mine,
        this.notApplied(rt, mine, now, ov ? 'InvalidSpec' : 'OverlayNotFound', message),
      );
      return;
    }
    const ownStatus = parsed.value.status;
    const pass: Pass = {
      overlay,
      log,
      now,
      mine,
      tunnel: parsed.value,
      custody: ov.value.spec.keys.custody,
      presharedKeys: ov.value.spec.keys.presharedKeys,
      operatorKey: this.operatorKey(),
      view: epochView(ovStatus.data, parsed.value.spec.epoch, now),
      current: rt.epoch ?? ownStatus?.appliedEpoch,
      rt,
      w,
      usedSealed: new Set(),
    };
    let cutoverAt: number | undefined;
    try {
      cutoverAt = await this.apply(pass);
    } finally {
      // Keep only the opened keys this pass used; zero the rest.
      for (const [k, v] of rt.opened) {
        if (!pass.usedSealed.has(k)) {
          v.fill(0);
          rt.opened.delete(k);
        }
      }
      // Decoded Secrets of epochs gone by (their Secrets were deleted) are dropped with them.
      for (const name of rt.secrets.keys())
        if (!w.secrets.get(name, this.o.namespace)) rt.secrets.delete(name);
    }
    // The cutover instant is a timer of its own: the switch must not wait for the next measurement.
    const wake = cutoverAt === undefined ? Infinity : Math.max(1, cutoverAt - this.clock.now());
    return { requeueAfterMs: Math.min(this.probeIntervalMs, wake) };
  }

  /**
   * One pass: work out the epoch to run and every key for it (local only), then change the device in one tight
   * sequence, read it back, measure and report. Returns the cutover instant to wake up for, if one is ahead.
   */
  private async apply(p: Pass): Promise<number | undefined> {
    const { tunnel, rt, log, now, view } = p;
    if (!rt.stateReady) {
      await this.keys.ensureOverlay(p.overlay);
      rt.stateReady = true;
    }

    // 1. Keys. Staging prepares the rotation's target epoch; from the cutover instant on it is the epoch run.
    let own: KeyResult | undefined = view.cutover ? undefined : await this.ownKeyAt(p, view.base);
    // `next`: this node's key at the target epoch; `staged`: that and every PSK at it (the ack).
    let next: OwnKey | undefined;
    let staged = false;
    if (view.rotation && (!own || !('reason' in own))) {
      const s = await this.stage(p, view.rotation, own);
      next = s.key;
      staged = s.waiting === undefined;
      if (s.waiting !== undefined)
        log.debug({ epoch: view.rotation.target, problem: s.waiting }, 'rotation not staged yet');
    }
    // At the cutover only this node's own key is indispensable: a pair still missing its PSK at the new epoch
    // waits on its own (never without a PSK), while staying behind would cut this node off from every peer.
    const cutNow = view.cutover && next !== undefined;
    if (view.cutover && !next) {
      log.warn(
        { epoch: view.rotation?.target },
        'cutover time passed but this node has no key for the new epoch yet; staying at the current epoch',
      );
    }
    const run = cutNow ? view.run : view.base;
    own = cutNow && next ? next : (own ?? (await this.ownKeyAt(p, view.base)));
    if ('reason' in own) {
      await this.publish(rt, p.mine, this.notApplied(rt, p.mine, now, own.reason, own.message));
      return view.cutoverAt;
    }
    const ownKey = own;
    const switching = p.current !== undefined && p.current !== run;
    // A PSK-only cutover keeps every session: the handshake of the session in use still counts.
    const keepSessions = switching && view.cutover && view.rotation?.scope === 'PresharedKeys';

    // 2. The device as it is, and every peer's configuration at `run`, PSKs unsealed: all before any change.
    const tunnels = this.peerTunnels(p);
    const desired = desiredDevice(this.node, tunnels, p.custody);
    if (!desired) throw new Error(`own NodeTunnel of overlay ${p.overlay} missing from the overlay cache`);
    const byNode = new Map(tunnels.map((t) => [t.spec.nodeName, t]));
    const device = rt.device;
    let state: DeviceState | undefined;
    let mtu: number;
    try {
      state = await device.read();
      mtu = desired.mtu ?? (await this.derivedMtu(tunnel.spec.endpoint));
    } catch (err) {
      await this.publishFailure(rt, p.mine, now, 'DeviceError', describeError(err));
      throw new Error(`failed to read interface ${device.name}: ${describeError(err)}`, { cause: err });
    }
    const onDevice = new Map((state?.peers ?? []).map((peer) => [peer.publicKey, peer]));
    const plan = this.planPeers(p, run, ownKey.publicKey, desired, byNode, onDevice);

    // 3. Change the device in one tight sequence (no API call until the probes are out): key, removed peers,
    // added or changed peers, probes. At a cutover this is the gap in traffic.
    const started = performance.now();
    try {
      const interfaceId = JSON.stringify([desired.addresses, mtu, desired.listenPort]);
      let keySet = false;
      if (!state || rt.interfaceId !== interfaceId) {
        await device.ensureInterface({
          addresses: desired.addresses,
          mtu,
          listenPort: desired.listenPort,
          privateKey: ownKey.privateKey,
        });
        rt.interfaceId = interfaceId;
        keySet = state?.publicKey !== ownKey.publicKey;
      } else if (state.publicKey !== ownKey.publicKey) {
        await device.setPrivateKey(ownKey.privateKey);
        keySet = true;
      }
      if (keySet) {
        // A new private key ends every session: no handshake before this instant counts.
        rt.keyChangedAt = now;
        for (const peer of rt.peers.values()) peer.configuredAt = peer.reconfiguredAt = now;
      }
      for (const publicKey of onDevice.keys()) {
        if (plan.wanted.has(publicKey)) continue;
        await device.removePeer(publicKey);
        rt.peers.delete(publicKey);
      }
      for (const publicKey of [...rt.peers.keys()])
        if (!plan.wanted.has(publicKey)) rt.peers.delete(publicKey);
      for (const [publicKey, { peer, psk }] of plan.intended) {
        await this.upsertIfChanged(p, peer, psk, onDevice.get(publicKey), keepSessions);
      }
      if (switching) {
        // Send traffic at once so the handshakes at the new epoch start now, not at the next keepalive.
        for (const { peer } of plan.intended.values())
          this.probe(p, peer.node, byNode.get(peer.node)?.spec.address, true);
      }
      const elapsedMs = Math.round((performance.now() - started) * 10) / 10;
      if (keySet) log.info({ publicKey: fingerprint(ownKey.publicKey), epoch: run }, 'private key set');
      for (const publicKey of onDevice.keys()) {
        if (!plan.wanted.has(publicKey)) log.info({ peerKey: fingerprint(publicKey) }, 'peer removed');
      }
      if (switching) {
        log.info(
          {
            from: p.current,
            epoch: run,
            scope: view.cutover ? view.rotation?.scope : 'converge',
            peers: plan.intended.size,
            elapsedMs,
          },
          'switched epoch',
        );
      }
      const routes = new Set<string>();
      for (const { peer } of plan.intended.values())
        for (const r of peer.allowedIPs) routes.add(normalizePrefix(r));
      for (const [publicKey, peer] of onDevice) {
        if (plan.wanted.has(publicKey) && !plan.intended.has(publicKey))
          for (const r of peer.allowedIPs) routes.add(r);
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
      throw new Error(`failed to program ${device.name}: ${describeError(err)}`, { cause: err });
    }
    rt.epoch = run;
    await this.pruneNodeKeys(p, Math.min(run, view.base));

    // 4. Read-back: the kernel silently ignores some bad input (e.g. a PSK of the wrong length).
    const evals = plan.evals;
    const readBack = new Map(state.peers.map((peer) => [peer.publicKey, peer]));
    let deviceOk = state.publicKey === ownKey.publicKey;
    for (const [publicKey, { peer, psk }] of plan.intended) {
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
          message: `interface ${device.name} programmed with ${plan.intended.size} of ${evals.size} peers`,
        }
      : {
          type: 'Ready',
          status: 'False',
          reason: 'DeviceMismatch',
          message:
            state.publicKey === ownKey.publicKey
              ? 'the device does not hold the intended configuration of some peers'
              : `the device's public key ${state.publicKey ? fingerprint(state.publicKey) : 'none'} is not ${fingerprint(ownKey.publicKey)}`,
        };
    const ack =
      staged && next && view.rotation
        ? { epoch: view.rotation.target, publicKey: next.publicKey }
        : undefined;
    const status = this.applied(p, run, ownKey.publicKey, ack, [...evals.values()], ready);
    if (await this.publish(rt, p.mine, status)) {
      log.info({ peers: status.peersSummary, epoch: run, stagedEpoch: status.stagedEpoch }, 'status updated');
    }
    return view.cutoverAt;
  }

  /**
   * Every peer's configuration at `epoch`. A peer's key is the one it has at that epoch (it runs or staged
   * it); a peer that has neither, but is on the device, keeps its configuration until it reaches the epoch
   * (changing it would break what still works without making anything work); a peer never seen before is
   * configured with the key desiredDevice knows. Never a peer without its PSK in PerPair.
   */
  private planPeers(
    p: Pass,
    epoch: number,
    ownPublicKey: string,
    desired: DesiredDevice,
    byNode: Map<string, NodeTunnel>,
    onDevice: Map<string, DevicePeer>,
  ): PeerPlan {
    const intended = new Map<string, { peer: DesiredPeer; psk: PskResult }>();
    const wanted = new Set<string>();
    const evals = new Map<string, PeerEval>();
    const fallback = new Map(desired.peers.map((d) => [d.node, d]));
    for (const node of [...desired.peers.map((d) => d.node), ...desired.awaiting].sort()) {
      const t = byNode.get(node)!;
      let publicKey = keyAt(t, epoch);
      // A peer that reports no epoch at all (it never applied one) is taken at the key desiredDevice knows.
      if (publicKey === undefined && t.status?.appliedEpoch !== undefined) {
        const kept = this.deviceKeyOf(p.rt, t, onDevice);
        if (kept !== undefined) {
          wanted.add(kept);
          const at = t.status.appliedEpoch;
          evals.set(node, {
            node,
            state: 'AwaitingPeer',
            message: `peer runs epoch ${at}; waiting for its key at epoch ${epoch}`,
          });
          continue;
        }
      }
      publicKey ??= fallback.get(node)?.publicKey;
      if (publicKey === undefined) {
        evals.set(node, {
          node,
          state: 'AwaitingPeer',
          message: 'peer has not published its public key yet',
        });
        continue;
      }
      if (publicKey === ownPublicKey) {
        evals.set(node, { node, state: 'KeyMismatch', message: 'peer publishes our own public key' });
        continue;
      }
      // Never a weaker tunnel: a peer without its PSK is not added (one already on the device is left alone).
      wanted.add(publicKey);
      const psk = this.presharedKey(p, node, t.spec.secretRef?.name, epoch);
      if (psk.kind === 'missing' || psk.kind === 'invalid') {
        evals.set(node, {
          node,
          state: psk.kind === 'missing' ? 'AwaitingPeer' : 'KeyMismatch',
          message: psk.message,
        });
        continue;
      }
      intended.set(publicKey, {
        peer: {
          node,
          publicKey,
          endpoint: t.spec.endpoint,
          allowedIPs: [...t.spec.allowedIPs],
          persistentKeepalive: durationSeconds(p.tunnel.spec.persistentKeepalive),
        },
        psk,
      });
    }
    return { intended, wanted, evals };
  }

  /** The key the device holds for the peer of tunnel `t`, if any. */
  private deviceKeyOf(
    rt: OverlayRuntime,
    t: NodeTunnel,
    onDevice: Map<string, DevicePeer>,
  ): string | undefined {
    for (const [publicKey, applied] of rt.peers) {
      if (applied.node === t.spec.nodeName && onDevice.has(publicKey)) return publicKey;
    }
    for (const k of [t.status?.publicKey, t.status?.stagedPublicKey, t.spec.publicKey]) {
      if (k !== undefined && onDevice.has(k)) return k;
    }
    return undefined;
  }

  private async upsertIfChanged(
    p: Pass,
    peer: DesiredPeer,
    psk: PskResult,
    current: DevicePeer | undefined,
    keepSessions = false,
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
    // A new PSK takes effect at the next handshake. At a PSK-only cutover the session in use continues (and a
    // ping does not make WireGuard re-handshake a live session), so its handshake still counts.
    const keysChanged = !current || (current.presharedKeyFingerprint !== pskFingerprint && !keepSessions);
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

  /** Pings the peer through the tunnel; `force` even while an earlier probe is in flight (a cutover). */
  private probe(p: Pass, node: string, address: string | undefined, force = false): void {
    if (!address || (p.rt.probing.has(node) && !force)) return;
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

  private presharedKey(p: Pass, peer: string, peerSecret: string | undefined, epoch: number): PskResult {
    if (p.presharedKeys === 'Disabled') return { kind: 'disabled' };
    if (!p.operatorKey)
      return { kind: 'missing', message: 'the operator has not published its sealing key yet' };
    const [a, b] = pairKey(this.node, peer);
    const names = [
      secretAt(p.overlay, this.node, p.tunnel.spec.secretRef?.name, epoch),
      secretAt(p.overlay, peer, peerSecret, epoch),
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

  /** This node's key pair at `epoch` outside a rotation (Node custody: generated when none is stored). */
  private async ownKeyAt(p: Pass, epoch: number): Promise<KeyResult> {
    if (p.custody === 'Operator') return this.operatorKeyAt(p, epoch, false);
    return (await this.storedNodeKey(p, epoch)) ?? (await this.newNodeKey(p, epoch));
  }

  /**
   * Stages the rotation's target epoch: this node's key for it and every PSK at it for the current peers,
   * unsealed and validated; nothing is applied. `current` is the key at the overlay's epoch (absent at a
   * cutover). Missing material means "not yet": the Secret watch brings the agent back.
   */
  private async stage(
    p: Pass,
    r: { target: number; scope: RotationScope },
    current: OwnKey | undefined,
  ): Promise<{ key?: OwnKey; waiting?: string }> {
    const key = await this.stagedKey(p, r, current);
    if ('reason' in key) return { waiting: key.message };
    if (p.presharedKeys === 'PerPair') {
      for (const t of this.peerTunnels(p)) {
        const node = t.spec.nodeName;
        if (node === this.node || t.metadata?.deletionTimestamp) continue;
        const secret = t.spec.secretRef?.name;
        const psk = this.presharedKey(p, node, secret, r.target);
        if (psk.kind === 'ok' || psk.kind === 'disabled') continue;
        // A pair that has no PSK at the current epoch either is still being set up: it does not hold us back.
        if (psk.kind === 'missing' && this.presharedKey(p, node, secret, p.view.base).kind !== 'ok') continue;
        return { key, waiting: `pair with ${node} at epoch ${r.target}: ${psk.message}` };
      }
    }
    return { key };
  }

  /** This node's key for the rotation's target epoch. */
  private async stagedKey(
    p: Pass,
    r: { target: number; scope: RotationScope },
    current: OwnKey | undefined,
  ): Promise<KeyResult> {
    if (p.custody === 'Operator') {
      if (r.scope === 'PresharedKeys' && current) return current;
      // Keys: the target's own entry; PresharedKeys: no new entry, the newest one up to the target.
      return this.operatorKeyAt(p, r.target, r.scope === 'Keys');
    }
    const stored = await this.storedNodeKey(p, r.target);
    // The key the device runs before the cutover (after a restart past the cutover: the overlay's epoch's).
    const fromEpoch = p.current !== undefined && p.current < r.target ? p.current : p.view.base;
    const source = current ?? (await this.storedNodeKey(p, fromEpoch));
    if (r.scope === 'PresharedKeys') {
      if (!source) return stored ?? (await this.newNodeKey(p, r.target));
      // Carried into the target epoch on disk, so a restart after the cutover finds the key it runs.
      if (stored?.publicKey !== source.publicKey) {
        await this.keys.storeWireGuardKey(p.overlay, r.target, source.privateKey);
        p.rt.nodeKeys.set(r.target, source);
      }
      return source;
    }
    // Staged earlier (e.g. before a restart): reuse it. One equal to the current key was carried over by an
    // aborted PSK-only attempt at the same epoch and is no new key.
    if (stored && stored.publicKey !== source?.publicKey) return stored;
    return this.newNodeKey(p, r.target);
  }

  private async storedNodeKey(p: Pass, epoch: number): Promise<WgKeyPair | undefined> {
    const cached = p.rt.nodeKeys.get(epoch);
    if (cached) return cached;
    const stored = await this.keys.storedWireGuardKeyPair(p.overlay, epoch);
    if (stored) p.rt.nodeKeys.set(epoch, stored);
    return stored;
  }

  private async newNodeKey(p: Pass, epoch: number): Promise<WgKeyPair> {
    const pair = await this.keys.newWireGuardKeyPair(p.overlay, epoch);
    p.rt.nodeKeys.set(epoch, pair);
    p.log.info({ publicKey: fingerprint(pair.publicKey), epoch }, 'generated a WireGuard key');
    return pair;
  }

  /** Node custody: forget the keys of epochs below `keepFrom` (never used again: epochs only increase). */
  private async pruneNodeKeys(p: Pass, keepFrom: number): Promise<void> {
    if (p.custody !== 'Node' || (p.rt.keptFrom ?? -1) >= keepFrom) return;
    await this.keys.pruneEpochs(p.overlay, keepFrom);
    for (const epoch of p.rt.nodeKeys.keys()) if (epoch < keepFrom) p.rt.nodeKeys.delete(epoch);
    p.rt.keptFrom = keepFrom;
  }

  /**
   * Operator custody: this node's private key at `epoch` from its own Secret: the entry of exactly that epoch
   * (`exact`), or else the newest one up to it (a PSK-only rotation adds no private key). It must open with the
   * operator's sealing key and match the public key listed with it (and spec.publicKey at that epoch).
   */
  private operatorKeyAt(p: Pass, epoch: number, exact: boolean): KeyResult {
    if (!p.operatorKey)
      return { reason: 'AwaitingKeys', message: 'the operator has not published its sealing key yet' };
    // The Secret of that epoch holds the key serving it (one carried over by a PSK-only rotation keeps the
    // epoch it was made for).
    const payload = this.secretPayload(
      p,
      secretAt(p.overlay, this.node, p.tunnel.spec.secretRef?.name, epoch),
    );
    const entries = payload?.privateKeys ?? [];
    const entry = exact
      ? entries.find((k) => k.epoch === epoch)
      : entries.filter((k) => k.epoch <= epoch).sort((x, y) => y.epoch - x.epoch)[0];
    if (!entry) return { reason: 'AwaitingKeys', message: `no sealed private key for epoch ${epoch} yet` };
    let privateKey: Uint8Array;
    try {
      privateKey = this.open(p, entry.sealed, p.operatorKey);
    } catch (err) {
      p.log.warn({ epoch: entry.epoch, err: describeError(err) }, 'sealed private key refused');
      return {
        reason: 'KeyMismatch',
        message: "sealed private key does not open with the operator's sealing key",
      };
    }
    const publicKey = publicKeyOf(privateKey);
    const expected = p.tunnel.spec.epoch === epoch ? p.tunnel.spec.publicKey : undefined;
    for (const [what, want] of [
      ['the Secret lists', entry.publicKey],
      ['spec.publicKey is', expected],
    ] as const) {
      if (want !== undefined && want !== publicKey) {
        return {
          reason: 'KeyMismatch',
          message: `sealed private key of epoch ${entry.epoch} belongs to ${fingerprint(publicKey)}, ${what} ${fingerprint(want)}`,
        };
      }
    }
    return { privateKey, publicKey };
  }

  /** Status after a pass that programmed the device. */
  private applied(
    p: Pass,
    epoch: number,
    publicKey: string,
    ack: { epoch: number; publicKey: string } | undefined,
    evals: PeerEval[],
    ready: ConditionInput,
  ): Record<string, unknown> {
    const base = this.baseStatus(p.rt, p.mine);
    const now = new Date(p.now);
    // The staging acknowledgement: the rotation's target once staged. An earlier, aborted attempt's ack stays
    // as it was (its epoch is never used: a retry stages a higher one), so a Backoff causes no write.
    const staged =
      ack ??
      (base.stagedEpoch !== undefined &&
      base.stagedPublicKey !== undefined &&
      base.stagedEpoch > epoch &&
      base.stagedEpoch !== p.view.rotation?.target
        ? { epoch: base.stagedEpoch, publicKey: base.stagedPublicKey }
        : { epoch, publicKey });
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
      // Published in both custody modes: peers take the key at an epoch from here (rotation/keyAt).
      publicKey,
      appliedEpoch: epoch,
      stagedEpoch: staged.epoch,
      stagedPublicKey: staged.publicKey,
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

/** A node's key Secret of `epoch`, from the stem its tunnel's secretRef names (the default stem without one). */
function secretAt(overlay: string, node: string, stem: string | undefined, epoch: number): string {
  return keySecretEpochName(stem ?? keySecretName(overlay, node), epoch);
}

/**
 * What this agent needs of the overlay's tunnels: everything but each one's report of its own peers (status
 * peers, summary, peersSummary). This node's own tunnel, status included, comes from the `mine` informer.
 */
export function peerTunnelView(obj: RawObject): RawObject {
  const status = (obj as { status?: Record<string, unknown> }).status;
  if (!status) return obj;
  const { peers: _peers, summary: _summary, peersSummary: _peersSummary, ...rest } = status;
  return { ...obj, status: rest };
}

/** Two versions of a peer tunnel (peerTunnelView) with the same labels, deletion, spec and status. */
function samePeerView(a: RawObject, b: RawObject): boolean {
  const view = (o: RawObject) => {
    const x = o as {
      metadata?: { labels?: unknown; deletionTimestamp?: unknown };
      spec?: unknown;
      status?: unknown;
    };
    return [x.metadata?.labels, x.metadata?.deletionTimestamp, x.spec, x.status];
  };
  return isDeepStrictEqual(view(a), view(b));
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
