// Device programming of one agent pass (STYLE 6, 16): the tight sequence that changes the WireGuard device
// (private key, removed peers, added or changed peers, probes, routes), with no API call in between: at a
// cutover this is the gap in traffic. Only what differs is written (peerDiff); the read-back then checks that
// the device holds what was intended and measures every peer.
import { assessHandshake, kickRecheckAt, needsProbe, shouldKickHandshake } from './peerstate.js';
import type { NodeTunnel } from '../api/v1alpha1/nodetunnel.types.js';
import type { DesiredDevice, DesiredPeer } from '../lib/contract/device.js';
import { fingerprint } from '../lib/keys.js';
import { describeError } from '../lib/kube.js';
import type { DeviceState, PeerConfig, PeerState as DevicePeer } from './device/device.js';
import { normalizePrefix } from './device/wgcli.js';
import type { AppliedPeer, OwnKey, Pass, PeerPlan, PskResult } from './pass.js';
import { peerConfig, peerDiff, verifyPeer } from './peerplan.js';
import { observeStall, STALL_WINDOW_MS } from './stall.js';
import {
  DEFAULT_UNDERLAY_MTU,
  WIREGUARD_OVERHEAD,
  endpointHost,
  type Prober,
  type UnderlayMtu,
} from './probe.js';

/** What the sequence changes the device to. */
export interface DeviceChange {
  desired: DesiredDevice;
  mtu: number;
  ownKey: OwnKey;
  /** the device as read before the change (undefined: no interface yet) */
  state: DeviceState | undefined;
  onDevice: Map<string, DevicePeer>;
  plan: PeerPlan;
  byNode: Map<string, NodeTunnel>;
  /** the epoch the device runs after the change */
  run: number;
  /** the device changes epochs (probe every peer at once) */
  switching: boolean;
  /** a PSK-only cutover: sessions in use continue */
  keepSessions: boolean;
}

export class DeviceProgram {
  constructor(
    private readonly prober: Prober,
    private readonly underlayMtu: UnderlayMtu,
  ) {}

  /** Changes the device in one tight sequence; resolves to the device as read back afterwards. */
  async apply(p: Pass, c: DeviceChange): Promise<DeviceState> {
    const { rt, log, now, view } = p;
    const { desired, mtu, ownKey, onDevice, plan, byNode, run, switching, keepSessions } = c;
    let state = c.state;
    const device = rt.device;
    const started = performance.now();
    const interfaceId = JSON.stringify([desired.addresses, mtu, desired.listenPort]);
    let keySet = false;
    // a device that is gone took its routes with it
    if (!state) rt.routes = undefined;
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
    for (const publicKey of [...rt.peers.keys()]) if (!plan.wanted.has(publicKey)) rt.peers.delete(publicKey);
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
    return state;
  }

  /**
   * Read-back: the kernel silently ignores some bad input (e.g. a PSK of the wrong length). Judges every
   * intended peer into `plan.evals` (probing those that need a handshake); returns whether the device holds
   * the intended configuration.
   */
  readBack(
    p: Pass,
    state: DeviceState,
    plan: PeerPlan,
    ownKey: OwnKey,
    byNode: Map<string, NodeTunnel>,
  ): boolean {
    const { rt, log, now } = p;
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
      const onDevice = readBack.get(publicKey);
      const seen = onDevice?.latestHandshake?.getTime();
      const applied = rt.peers.get(publicKey);
      const a = assessHandshake({
        now,
        configuredAt: applied?.configuredAt,
        reconfiguredAt: applied?.reconfiguredAt,
        latestHandshake: seen,
      });
      evals.set(peer.node, { node: peer.node, state: a.state, message: a.message, handshakeAt: seen });
      // Only a peer encrypting by its handshake can stall silently (one still handshaking or Stale says so
      // itself); once stalled, it stays so, re-created or not, until something is received.
      if (applied && onDevice && (a.state === 'Encrypted' || applied.stall?.remedyAt !== undefined))
        this.watchStall(p, applied, onDevice, evals, peer.node, seen);
      if (needsProbe(a, now)) this.probe(p, peer.node, byNode.get(peer.node)?.spec.address);
    }

    return deviceOk;
  }

  private async upsertIfChanged(
    p: Pass,
    peer: DesiredPeer,
    psk: PskResult,
    current: DevicePeer | undefined,
    keepSessions = false,
  ): Promise<void> {
    const { rt, now } = p;
    const want = peerConfig(peer, psk);
    const { pskFingerprint, allowedIPs } = want;
    const known = rt.peers.get(peer.publicKey);
    // The endpoint is compared with what we set, not what the device shows: WireGuard updates it when a
    // peer roams, and writing it back every pass would undo that.
    const change = peerDiff(current && { ...current, endpoint: known ? known.endpoint : current.endpoint }, {
      ...want,
      persistentKeepalive: peer.persistentKeepalive,
      endpoint: peer.endpoint,
    });
    const changed = change !== undefined;
    // A new PSK takes effect at the next handshake. At a PSK-only cutover the session in use continues (and a
    // ping does not make WireGuard re-handshake a live session), so its handshake still counts.
    const keysChanged = !current || (current.presharedKeyFingerprint !== pskFingerprint && !keepSessions);
    if (changed) {
      await rt.device.upsertPeer(deviceWrite(peer, psk));
      p.log.info(
        {
          peer: peer.node,
          peerKey: fingerprint(peer.publicKey),
          psk: pskFingerprint ?? 'none',
          new: !current,
          change,
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
      // new keys start a new handshake: earlier kicks were for the keys before
      ...(!keysChanged && known?.kickedAt !== undefined ? { kickedAt: known.kickedAt } : {}),
      // the stall detector's view of the counters carries over while the peer is the same
      ...(!keysChanged && known?.stall ? { stall: known.stall } : {}),
    });
  }

  /**
   * The stall detector (stall.ts): a peer that receives nothing while this node keeps sending to it is
   * Stalled, whatever its handshake says; the next kickStalled re-creates it once per stall.
   */
  private watchStall(
    p: Pass,
    applied: AppliedPeer,
    onDevice: DevicePeer,
    evals: PeerPlan['evals'],
    node: string,
    handshakeAt: number | undefined,
  ): void {
    const v = observeStall(applied.stall, p.now, onDevice);
    applied.stall = v.track;
    if (v.recheckAt !== undefined) p.wakeAt = Math.min(p.wakeAt ?? Infinity, v.recheckAt);
    if (!v.stalled) return;
    const at = new Date(v.track.remedyAt ?? p.now).toISOString();
    evals.set(node, {
      node,
      state: 'Stalled',
      message: `nothing received from the peer for ${STALL_WINDOW_MS / 1000}s while sending to it; the peer was re-created once at ${at}`,
      handshakeAt,
    });
    if (v.remedy) applied.remedyDue = true;
  }

  /**
   * Restarts the handshake with every intended peer that shouldKickHandshake picks (peerstate.ts: two
   * initiations that crossed leave both ends without a session for 5 s), and asks for the next pass in time
   * to look at peers still waiting. Runs after readBack, which judged every peer into `plan.evals`.
   */
  async kickStalled(p: Pass, plan: PeerPlan, ownKey: OwnKey, byNode: Map<string, NodeTunnel>): Promise<void> {
    const { rt, log, now } = p;
    for (const [publicKey, { peer, psk }] of plan.intended) {
      const judged = plan.evals.get(peer.node);
      const applied = rt.peers.get(publicKey);
      if (!judged || !applied) continue;
      if (applied.remedyDue) {
        // the one known remedy of a silent stall (cilium#46687): a new peer object, a new handshake
        applied.remedyDue = false;
        await rt.device.removePeer(publicKey);
        await rt.device.upsertPeer(deviceWrite(peer, psk));
        applied.reconfiguredAt = now;
        this.probe(p, peer.node, byNode.get(peer.node)?.spec.address, true);
        log.warn(
          { peer: peer.node, peerKey: fingerprint(publicKey) },
          'peer stalled (nothing received while sending); re-created it',
        );
        continue;
      }
      const seen = {
        now,
        assessment: judged,
        configuredAt: applied.configuredAt,
        ownPublicKey: ownKey.publicKey,
        peerPublicKey: publicKey,
      };
      const recheck = kickRecheckAt(seen);
      if (recheck !== undefined) p.wakeAt = Math.min(p.wakeAt ?? Infinity, recheck);
      if (!shouldKickHandshake({ ...seen, kickedAt: applied.kickedAt })) continue;
      // A new peer object has no handshake state and no rate limit: the probe starts a handshake at once.
      await rt.device.removePeer(publicKey);
      await rt.device.upsertPeer(deviceWrite(peer, psk));
      applied.kickedAt = applied.reconfiguredAt = now;
      this.probe(p, peer.node, byNode.get(peer.node)?.spec.address, true);
      log.info(
        {
          peer: peer.node,
          peerKey: fingerprint(publicKey),
          sinceKeysMs: applied.configuredAt === undefined ? undefined : now - applied.configuredAt,
        },
        'handshake restarted',
      );
    }
  }

  /** Pings the peer through the tunnel; `force` even while an earlier probe is in flight (a cutover). */
  probe(p: Pass, node: string, address: string | undefined, force = false): void {
    if (!address || (p.rt.probing.has(node) && !force)) return;
    p.rt.probing.add(node);
    const iface = p.rt.device.name;
    void this.prober
      .probe(iface, address.split('/')[0]!)
      .catch((err: unknown) => p.log.debug({ peer: node, err: describeError(err) }, 'probe failed'))
      .finally(() => p.rt.probing.delete(node));
  }

  async derivedMtu(endpoint: string): Promise<number> {
    const underlay = (await this.underlayMtu(endpointHost(endpoint))) ?? DEFAULT_UNDERLAY_MTU;
    return Math.max(576, underlay - WIREGUARD_OVERHEAD);
  }
}

/** The device write of one intended peer. */
function deviceWrite(peer: DesiredPeer, psk: PskResult): PeerConfig {
  return {
    publicKey: peer.publicKey,
    ...(psk.kind === 'ok' ? { presharedKey: psk.key } : {}),
    endpoint: peer.endpoint,
    allowedIPs: peer.allowedIPs,
    persistentKeepalive: peer.persistentKeepalive,
  };
}
