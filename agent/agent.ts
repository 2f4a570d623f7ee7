// The node agent: one per node. For every overlay the node belongs to (a NodeTunnel with spec.nodeName == this
// node) it derives the WireGuard peers from the overlay's NodeTunnels (lib/contract/device.ts, the function the
// operator uses too), opens the sealed pre-shared keys meant for it, programs one interface per overlay
// through the WireGuardDevice interface, reads the device back, measures every peer and reports in its own
// NodeTunnel's status, which is the only object it ever writes besides its Lease.
//
// Shape (STYLE rules 3-6): informers fill caches; their events enqueue the overlay's name; reconcile(overlay)
// reads only caches and runs one pass (pass.ts) through four phases: key material (keymaterial.ts), the peer
// plan (peerplan.ts, pure), device programming and read-back (program.ts), the status report (report.ts). The
// device is changed only where it differs from the plan. The same pass, re-run
// every probe interval, is the measurement; status is written only when what it reports changed.
//
// Rotation (../shared/DESIGN.md, "Rotation (hitless)"; agent/epoch.ts): the device runs the OverlayNetwork's status.epoch. While a
// rotation stages epoch T the agent prepares its key and every PSK at T without touching the device and
// acknowledges once (stagedEpoch, stagedPublicKey); at the cutover instant (its own clock) it switches in one
// tight sequence with no API call in between, pings every peer so the new handshakes start at once, and only
// then reports appliedEpoch T.
import { NODE_LABEL, nodeTunnelName } from '../api/v1alpha1/groupversion.js';
import { parseNodeTunnel } from '../api/v1alpha1/nodetunnel.types.js';
import { parseOverlayNetwork } from '../api/v1alpha1/overlaynetwork.types.js';
import { desiredDevice } from '../lib/contract/device.js';
import { IDENTITY_NAME } from '../lib/contract/identity.js';
import { encodeKey, fingerprint } from '../lib/keys.js';
import { coreResources, describeError, type ResourceRef } from '../lib/kube.js';
import { newLogger, type Logger } from '../lib/log.js';
import { realClock, type Clock } from '../lib/runtime/clock.js';
import { Informer } from '../lib/runtime/informer.js';
import { WorkQueue, type HandlerResult } from '../lib/runtime/queue.js';
import type { RawObject } from '../lib/runtime/rest.js';
import type { EnvelopeKeys } from './keystore.js';
import type { DeviceState } from './device/device.js';
import { AgentOverlayStatusSchema, epochView } from './epoch.js';
import { KeyMaterial } from './keymaterial.js';
import { KeyStore } from './keystore.js';
import { LivenessLease } from './liveness.js';
import { wipe, type OverlayRuntime, type OverlayWatch, type Pass } from './pass.js';
import { peerTunnels, planPeers } from './peerplan.js';
import { nodeTunnelResource, overlayInformers, overlayOf, samePeerView } from './watch.js';

export { peerTunnelView } from './watch.js';
import { pingProber, sysUnderlayMtu } from './probe.js';
import { EpochFloor } from './epochfloor.js';
import { Guard } from './guard.js';
import { DeviceProgram } from './program.js';
import { deviceFailure, deviceReady, StatusReport } from './report.js';

import { interfaceName, type AgentOptions } from './options.js';
export { interfaceName, type AgentOptions, type DeviceFactory } from './options.js';

export class Agent {
  readonly node: string;
  private readonly o: AgentOptions;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly keys: KeyStore;
  private readonly material: KeyMaterial;
  private readonly program: DeviceProgram;
  private readonly report: StatusReport;
  private readonly floor: EpochFloor;
  private readonly guard: Guard;
  private readonly prefix: string;
  private readonly probeIntervalMs: number;
  private readonly queue: WorkQueue;
  private readonly lease: LivenessLease;
  private readonly mine: Informer<RawObject>;
  private readonly identity: Informer<RawObject>;
  private readonly watches = new Map<string, OverlayWatch>();
  private readonly runtimes = new Map<string, OverlayRuntime>();
  private readonly stopController = new AbortController();
  private envelope: EnvelopeKeys | undefined;
  private started = false;
  /** Status writes so far (tests and metrics). */
  get statusWrites(): number {
    return this.report.writes;
  }
  /** Reconcile passes finished so far, successful or not (tests and metrics). */
  passes = 0;
  /** The caches synced and passes run. */
  running = false;
  /** What /readyz reports (main.ts): running, and every overlay of this node has its device programmed. */
  get ready(): boolean {
    const mine = this.mine
      .list()
      .filter((t) => !(t.metadata as { deletionTimestamp?: string }).deletionTimestamp);
    return this.running && mine.every((t) => this.runtimes.get(overlayOf(t) ?? '')?.epoch !== undefined);
  }

  constructor(opts: AgentOptions) {
    this.o = opts;
    this.node = opts.node;
    this.clock = opts.clock ?? realClock;
    this.log = (opts.logger ?? newLogger('agent')).child({ node: opts.node });
    this.keys = new KeyStore(opts.stateDir, opts.random, opts.postQuantum);
    this.program = new DeviceProgram(opts.prober ?? pingProber, opts.underlayMtu ?? sysUnderlayMtu);
    this.guard = new Guard(opts.firewall, opts.metrics);
    const drops = { now: () => this.clock.now(), intervalMs: opts.dropsReportIntervalMs };
    this.report = new StatusReport(opts.api, () => this.envelope, this.log, drops);
    this.floor = new EpochFloor(this.keys, this.report);
    this.prefix = opts.interfacePrefix ?? 'sm';
    if (this.prefix.length > 8)
      throw new Error(`interface prefix ${this.prefix} is longer than 8 characters`);
    this.probeIntervalMs = opts.probeIntervalMs ?? 5000;
    this.queue = new WorkQueue({
      name: 'agent',
      handler: (overlay) => this.reconcile(overlay),
      concurrency: 4,
      // a failed pass leaves the device as it was (a port taken, a command failing): retry at least every 10 s
      maxDelayMs: 10_000,
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
    this.mine = this.informer('nodetunnels-mine', nodeTunnelResource, {
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
    this.material = new KeyMaterial(
      opts.node,
      opts.namespace,
      this.keys,
      this.identity,
      () => this.envelope,
      this.log,
    );
  }

  /** The interface name this agent uses for `overlay`. */
  interfaceFor(overlay: string): string {
    return interfaceName(this.prefix, overlay);
  }

  /** The envelope public key (base64), once started. */
  envelopePublicKey(): string | undefined {
    return this.envelope ? encodeKey(this.envelope.publicKey, 'envelope public key') : undefined;
  }

  /** Loads (or creates) the envelope key, waits for the caches of this node's NodeTunnels and the operator
   * identity, then starts reconciling and the liveness Lease. Resolves once running. */
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
    this.running = true;
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
    const { tunnels, network, secrets } = overlayInformers(
      overlay,
      this.o.namespace,
      (name, resource, sel, transform) => this.informer(name, resource, sel, transform),
    );
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
      await this.report.publish(rt, mine, this.report.notApplied(rt, mine, now, 'InvalidSpec', parsed.error));
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
      await this.report.publish(
        rt,
        mine,
        this.report.notApplied(rt, mine, now, ov ? 'InvalidSpec' : 'OverlayNotFound', message),
      );
      return;
    }
    const ownStatus = parsed.value.status;
    const operatorKey = await this.material.operatorKey();
    const pass: Pass = {
      overlay,
      log,
      now,
      mine,
      tunnel: parsed.value,
      custody: ov.value.spec.keys.custody,
      presharedKeys: ov.value.spec.keys.presharedKeys,
      dataPlane: { ...ov.value.spec.dataPlane, nonMembers: ovStatus.data.nonMemberPodCIDRs },
      operatorKey: operatorKey.key,
      operatorKeyProblem: operatorKey.problem,
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
    // The cutover instant (and a pending handshake restart) is a timer of its own: it must not wait for the
    // next measurement.
    const wake = Math.min(cutoverAt ?? Infinity, pass.wakeAt ?? Infinity) - this.clock.now();
    return { requeueAfterMs: Math.min(this.probeIntervalMs, Math.max(1, wake)) };
  }

  /** One pass: work out the epoch to run and every key for it (local only), then change the device in one tight
   * sequence, read it back, measure and report. Returns the cutover instant to wake up for, if one is ahead. */
  private async apply(p: Pass): Promise<number | undefined> {
    const { tunnel, rt, log, now, view } = p;

    // 1. Keys (keymaterial.ts).
    const { run, own, next, staged } = await this.material.forPass(p);
    if ('reason' in own) {
      // no keys yet, but the rules already: this node's traffic to members must not leave in the clear
      await this.guard.before(p, peerTunnels(p), await rt.device.read(), true);
      await this.report.publish(rt, p.mine, this.report.notApplied(rt, p.mine, now, own.reason, own.message));
      return view.cutoverAt;
    }
    const ownKey = own;
    // Epochs only increase (epochfloor.ts): an older overlay status would bring retired keys back.
    if (await this.floor.refuse(p, run)) return view.cutoverAt;
    const switching = p.current !== undefined && p.current !== run;
    // A PSK-only cutover keeps every session: the handshake of the session in use still counts.
    const keepSessions = switching && view.cutover && view.rotation?.scope === 'PresharedKeys';

    // 2. The device as it is, and every peer's configuration at `run`, PSKs unsealed: all before any change.
    const tunnels = peerTunnels(p);
    const desired = desiredDevice(this.node, tunnels, p.custody);
    if (!desired) throw new Error(`own NodeTunnel of overlay ${p.overlay} missing from the overlay cache`);
    const byNode = new Map(tunnels.map((t) => [t.spec.nodeName, t]));
    const device = rt.device;
    let state: DeviceState | undefined;
    let mtu: number;
    try {
      state = await device.read();
      mtu = desired.mtu ?? (await this.program.derivedMtu(tunnel.spec.endpoint));
    } catch (err) {
      await this.report.publishFailure(rt, p.mine, now, 'DeviceError', describeError(err), true);
      throw new Error(`failed to read interface ${device.name}: ${describeError(err)}`, { cause: err });
    }
    const onDevice = new Map((state?.peers ?? []).map((peer) => [peer.publicKey, peer]));
    const plan = planPeers({
      epoch: run,
      ownPublicKey: ownKey.publicKey,
      desired,
      byNode,
      onDevice,
      applied: rt.peers,
      persistentKeepalive: p.tunnel.spec.persistentKeepalive,
      psk: (peer, peerSecret, epoch) => this.material.presharedKey(p, peer, peerSecret, epoch),
    });

    // 3. The fail-closed rules before any peer or route (guard.ts), the device in one tight sequence (program.ts:
    // at a cutover this is the gap in traffic), then the rules narrowed to what it holds.
    try {
      await this.guard.before(p, tunnels, state);
    } catch (err) {
      const message = `fail-closed rules of ${device.name}: ${describeError(err)}`;
      await this.report.publishFailure(rt, p.mine, now, 'DeviceError', message);
      throw new Error(`failed to install the ${message}`, { cause: err });
    }
    try {
      state = await this.program.apply(p, {
        desired,
        mtu,
        ownKey,
        state,
        onDevice,
        plan,
        byNode,
        run,
        switching,
        keepSessions,
      });
    } catch (err) {
      const failed = deviceFailure(describeError(err), desired.listenPort);
      await this.report.publishFailure(rt, p.mine, now, failed.reason, failed.message, true);
      throw new Error(`failed to program ${device.name}: ${describeError(err)}`, { cause: err });
    }
    await this.guard.after(p, tunnels, state);
    rt.epoch = run;
    await this.floor.ran(p, run);
    await this.material.pruneNodeKeys(p, Math.min(run, view.base));

    // 4. Read-back and measurement, then the report (report.ts).
    const deviceOk = this.program.readBack(p, state, plan, ownKey, byNode);
    try {
      await this.program.kickStalled(p, plan, ownKey, byNode);
    } catch (err) {
      // A kick is an optimisation over WireGuard's own retry: a failure is logged, the pass goes on.
      log.warn({ err: describeError(err) }, 'restarting a stalled handshake failed');
    }
    const ready = deviceReady({
      device: device.name,
      ok: deviceOk,
      intended: plan.intended.size,
      peers: plan.evals.size,
      publicKey: ownKey.publicKey,
      devicePublicKey: state.publicKey,
    });
    const ack =
      staged && next && view.rotation
        ? { epoch: view.rotation.target, publicKey: next.publicKey }
        : undefined;
    const status = this.report.applied(p, run, ownKey.publicKey, ack, [...plan.evals.values()], ready);
    if (await this.report.publish(rt, p.mine, status)) {
      log.info({ peers: status.peersSummary, epoch: run, stagedEpoch: status.stagedEpoch }, 'status updated');
    }
    this.o.metrics?.peers(p.overlay, state, (k) => rt.peers.get(k)?.node, [...plan.evals.values()]);
    return view.cutoverAt;
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
    // only now that the device (and with it every peer) is gone
    await this.guard.leave(rt.device.name, overlay);
    wipe(rt.opened);
    this.runtimes.delete(overlay);
    this.log.info({ overlay, interface: rt.device.name }, 'left overlay; interface deleted');
  }
}
