// The status report of one agent pass: what this node's NodeTunnel status says after a pass that programmed
// the device (applied) or could not (notApplied), and the one write of it, only when it changed (STYLE 7).
// Every write carries the overlay's drop counts as they are (status.drops, drops.ts); counts that changed
// cause a write of their own only once the last one that carried a change is an interval old (dropsDue).
// Every write carries the agent's release and the key payloads it reads (status.agent, version skew).
import type { NodeTunnelStatus, PeerStatus, TunnelDrops } from '../api/v1alpha1/nodetunnel.types.js';
import { AGENT_INFO } from '../lib/contract/version.js';
import { fingerprint } from '../lib/keys.js';
import { describeError } from '../lib/kube.js';
import type { Logger } from '../lib/log.js';
import { deepEqual, formatTime, setCondition, type ConditionInput } from '../lib/runtime/conditions.js';
import type { RawObject } from '../lib/runtime/rest.js';
import { DEFAULT_DROPS_REPORT_INTERVAL_MS, dropsDue, dropsStatus } from './drops.js';
import type { AgentApi } from './kube.js';
import type { EnvelopeKeys } from './keystore.js';
import type { OverlayRuntime, Pass, PeerEval } from './pass.js';

/** Ready after a pass that programmed the device: Applied, or DeviceMismatch with what the read-back found. */
export function deviceReady(d: {
  device: string;
  ok: boolean;
  intended: number;
  peers: number;
  publicKey: string;
  devicePublicKey: string | undefined;
}): ConditionInput {
  return d.ok
    ? {
        type: 'Ready',
        status: 'True',
        reason: 'Applied',
        message: `interface ${d.device} programmed with ${d.intended} of ${d.peers} peers`,
      }
    : {
        type: 'Ready',
        status: 'False',
        reason: 'DeviceMismatch',
        message:
          d.devicePublicKey === d.publicKey
            ? 'the device does not hold the intended configuration of some peers'
            : `the device's public key ${d.devicePublicKey ? fingerprint(d.devicePublicKey) : 'none'} is not ${fingerprint(d.publicKey)}`,
      };
}

/** The peer counts a status carries: summary and the PEERS column, from the peer list. */
function peerCounts(peers: readonly PeerStatus[]): {
  summary: { encrypted: number; total: number };
  peersSummary: string;
} {
  const encrypted = peers.filter((e) => e.state === 'Encrypted').length;
  return { summary: { encrypted, total: peers.length }, peersSummary: `${encrypted}/${peers.length}` };
}

export class StatusReport {
  /** Status writes so far (tests and metrics). */
  writes = 0;

  constructor(
    private readonly api: Pick<AgentApi, 'patchNodeTunnelStatus'>,
    private readonly envelope: () => EnvelopeKeys | undefined,
    private readonly log: Logger,
    private readonly drops: { now: () => number; intervalMs?: number | undefined } = { now: Date.now },
  ) {}

  /** Status after a pass that programmed the device. */
  applied(
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
    // Present only while the operator's published key is not the pinned one (keymaterial.ts, operatorKey).
    conditions = p.operatorKeyProblem
      ? setCondition(
          conditions,
          {
            type: 'OperatorKeyTrusted',
            status: 'False',
            reason: 'OperatorKeyChanged',
            message: p.operatorKeyProblem,
            observedGeneration: generation,
          },
          now,
        )
      : conditions.filter((c) => c.type !== 'OperatorKeyTrusted');
    const status: NodeTunnelStatus = {
      observedGeneration: ready.status === 'True' ? generation : base.observedGeneration,
      ...this.envelopeStatus(),
      // Published in both custody modes: peers take the key at an epoch from here (rotation/keyAt).
      publicKey,
      appliedEpoch: epoch,
      stagedEpoch: staged.epoch,
      stagedPublicKey: staged.publicKey,
      peers,
      ...peerCounts(peers),
      conditions,
    };
    return status;
  }

  /** Status when nothing could be applied: publish the envelope key (the operator needs it) and why. */
  notApplied(
    rt: OverlayRuntime,
    mine: RawObject,
    nowMs: number,
    reason: string,
    message: string,
    deviceDown = false,
  ): Record<string, unknown> {
    const base = this.baseStatus(rt, mine);
    const generation = (mine.metadata as { generation?: number } | undefined)?.generation;
    const now = new Date(nowMs);
    const conditions = setCondition(
      base.conditions,
      { type: 'Ready', status: 'False', reason, message, observedGeneration: generation },
      now,
    );
    // A device that could not be programmed carries no session this report can vouch for: no peer stays
    // Encrypted on the strength of an earlier report (the overlay would count the pair encrypted).
    const peers =
      deviceDown && base.peers
        ? base.peers.map((e) =>
            e.state === 'Encrypted'
              ? {
                  ...e,
                  state: 'Handshaking' as const,
                  since: formatTime(now),
                  message: `device not programmed: ${reason}`,
                }
              : e,
          )
        : base.peers;
    const encrypted = peers?.filter((e) => e.state === 'Encrypted').length ?? 0;
    const withEncrypted =
      deviceDown && peers && peers.length > 0
        ? setCondition(
            conditions,
            {
              type: 'Encrypted',
              status: 'False',
              reason: 'PeersNotEncrypted',
              message: `${encrypted}/${peers.length} peers encrypted: the device is not programmed (${reason})`,
              observedGeneration: generation,
            },
            now,
          )
        : conditions;
    return {
      ...base,
      ...this.envelopeStatus(),
      conditions: withEncrypted,
      ...(peers
        ? {
            peers,
            ...peerCounts(peers),
          }
        : {}),
    };
  }

  /** The envelope's public keys: X25519 always, ML-KEM-768 when this node has one (hybrid sealing). */
  private envelopeStatus(): Pick<NodeTunnelStatus, 'envelopePublicKey' | 'envelopeMLKEMPublicKey'> {
    const env = this.envelope();
    if (!env) return { envelopePublicKey: undefined };
    return {
      envelopePublicKey: Buffer.from(env.publicKey).toString('base64'),
      ...(env.kem ? { envelopeMLKEMPublicKey: Buffer.from(env.kem.publicKey).toString('base64') } : {}),
    };
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

  /**
   * Reports a failed pass in status (`deviceDown`: the device could not be read or programmed, so no peer is
   * reported Encrypted); a failure to do so is logged, so the caller's error is the one raised. */
  async publishFailure(
    rt: OverlayRuntime,
    mine: RawObject,
    nowMs: number,
    reason: string,
    message: string,
    deviceDown = false,
  ): Promise<void> {
    try {
      await this.publish(rt, mine, this.notApplied(rt, mine, nowMs, reason, message, deviceDown));
    } catch (err) {
      this.log.warn(
        { nodeTunnel: mine.metadata?.name, err: describeError(err) },
        'failed to report failure in status',
      );
    }
  }

  /** Writes `status` to this node's NodeTunnel if it differs from what is stored. Returns whether it wrote. */
  async publish(rt: OverlayRuntime, mine: RawObject, report: Record<string, unknown>): Promise<boolean> {
    const base = this.baseStatus(rt, mine) as Record<string, unknown>;
    const storedDrops = base.drops as TunnelDrops | undefined;
    // not read yet in this process (a pass that failed early after a restart): the stored counts stand
    const drops = rt.drops ? dropsStatus(rt.drops.totals) : storedDrops;
    // What this agent runs, for the operator's version skew policy (lib/contract/version.ts).
    const agent = { version: AGENT_INFO.version, keyPayloads: [...AGENT_INFO.keyPayloads] };
    const status: Record<string, unknown> = { ...report, agent, drops };
    const now = this.drops.now();
    const interval = this.drops.intervalMs ?? DEFAULT_DROPS_REPORT_INTERVAL_MS;
    const due = dropsDue(storedDrops, drops, rt.dropsWrittenAt, now, interval);
    if (deepEqual(comparable(base, due), comparable(status, due))) return false;
    const patch: Record<string, unknown> = { ...status };
    for (const k of Object.keys(base)) if (status[k] === undefined) patch[k] = null;
    const name = mine.metadata?.name ?? '';
    const stored = await this.api.patchNodeTunnelStatus(name, patch);
    this.writes++;
    if (!deepEqual(storedDrops ?? null, drops ?? null)) rt.dropsWrittenAt = now;
    rt.written = {
      uid: (mine.metadata as { uid?: string } | undefined)?.uid,
      rv: stored.metadata?.resourceVersion,
      status: structuredClone(status),
    };
    return true;
  }
}

/**
 * Status as compared for "did it change": the handshake time alone moves every two minutes and is no change;
 * drop counts are one only when `drops` (dropsDue).
 */
function comparable(status: Record<string, unknown>, drops: boolean): unknown {
  const { drops: counts, ...rest } = status;
  const peers = status.peers as PeerStatus[] | undefined;
  return {
    ...rest,
    ...(drops ? { drops: counts ?? null } : {}),
    ...(peers ? { peers: peers.map(({ lastHandshakeTime: _ignored, ...p }) => p) } : {}),
  };
}

/** True when resourceVersion `a` is newer than `b` (etcd revisions; opaque ones compare as "different"). */
function newerRv(a: string | undefined, b: string | undefined): boolean {
  if (a === b) return false;
  if (a === undefined || b === undefined || !/^\d+$/.test(a) || !/^\d+$/.test(b)) return true;
  return BigInt(a) > BigInt(b);
}

/**
 * The NodeTunnel reason and message for a device that could not be programmed: a listen port another process
 * holds is named as such (issue #18 scenario 5), so the overlay can say which node cannot join and why.
 */
export function deviceFailure(error: string, listenPort: number): { reason: string; message: string } {
  return /address already in use/i.test(error)
    ? {
        reason: 'ListenPortInUse',
        message: `UDP port ${listenPort} is taken by another process on this node (${error})`,
      }
    : { reason: 'DeviceError', message: error };
}
