// The OverlayNetwork controller: turns an overlay into one NodeTunnel per selected node, seals the pair keys
// into one Secret per node, and aggregates what the agents report into per-pair status.
//
// reconcile(name) reads everything from the informer caches and never trusts event payloads (STYLE 5); the
// one exception is a key Secret's sealed data, which is not cached (~300 MB at 1,000 nodes) and is read from
// the API server only when that Secret's plan may change (see KeySecretMemo). It computes desired state with
// pure functions (desired.ts, keyplan.ts, pairs.ts) and writes only the difference, so an unchanged world
// causes no API write at all. Loops over nodes and pairs yield to the event loop, so a pass over a large
// overlay never holds up lease renewals, watches or /healthz for long.
import { isDeepStrictEqual } from 'node:util';
import type { KubernetesObject, V1Node, V1Secret } from '@kubernetes/client-node';
import {
  API_VERSION,
  EPOCH_LABEL,
  NODE_LABEL,
  NODE_TUNNEL_KIND,
  OVERLAY_LABEL,
  OVERLAY_NETWORK_KIND,
  ROTATE_ANNOTATION,
  ROTATE_PSK_ONLY_PREFIX,
  nodeTunnelName,
} from '../../api/v1alpha1/groupversion.js';
import { parseNodeTunnel, type NodeTunnel } from '../../api/v1alpha1/nodetunnel.types.js';
import { parseOverlayNetwork, type OverlayNetwork } from '../../api/v1alpha1/overlaynetwork.types.js';
import { describeError, isAlreadyExists, isConflict, isNotFound, isTimeout } from '../../lib/kube.js';
import {
  decodeKeySecretData,
  encodeKeySecretData,
  keySecretName,
  KEY_SECRET_TYPE,
  PLAN_DIGEST_ANNOTATION,
  PUBLIC_KEY_ANNOTATION,
  type KeySecretPayload,
  type SealedPrivateKey,
  keySecretNameAt,
} from '../../lib/contract/keysecret.js';
import type { Logger } from '../../lib/log.js';
import type { Informer } from '../../lib/runtime/informer.js';
import { forEachLimit, Turns } from '../../lib/runtime/cooperative.js';
import type { HandlerResult } from '../../lib/runtime/queue.js';
import { formatTime, setCondition, type Condition } from '../../lib/runtime/conditions.js';
import type { Sealer } from '../../lib/seal.js';
import { desiredTunnels, type NodeView, type TunnelSpec } from '../plan/tunnels.js';
import { planDigests, planKeySecretSteps, servingPrivateKey, type Member } from '../plan/keysecret.js';
import {
  NodeIds,
  rowHasEncryptedAt,
  TunnelPeerRows,
  visitPairRows,
  type PeerRow,
} from '../../lib/contract/pairs.js';
import {
  DEFAULT_TIMINGS,
  nextRotationStep,
  type AgentView,
  type RotationStatus,
  type RotationStep,
  type RotationTimings,
} from '../plan/rotation.js';
import { evaluateSchedule } from '../plan/schedule.js';
import { NotLeaderError, type OperatorWriter } from '../writer.js';

export const FINALIZER = 'sealmesh.io/cleanup';
export const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'sealmesh' };

/**
 * Key Secret steps yield to the event loop after this many nodes. Decoding and planning a large overlay's
 * Secrets takes seconds; without yielding, leader-lease renewals (renewDeadline 10 s), watches and /healthz
 * all wait for the whole step.
 */
const YIELD_EVERY = 20;
const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Key Secrets read, planned and written at once. */
const SECRET_CONCURRENCY = 2;

/** See OverlayControllerDeps.statusIntervalMs. */
export const DEFAULT_STATUS_INTERVAL_MS = 2_000;

/** How many names one aggregated Event lists before "+N more". */
const EVENT_NAMES = 10;

export interface OverlayControllerDeps {
  namespace: string;
  overlays: Informer<KubernetesObject>;
  nodes: Informer<KubernetesObject>;
  tunnels: Informer<KubernetesObject>;
  /**
   * The tunnels' peer reports as rows. Give the same instance's `strip` to the tunnel informer as its
   * transform, so the cache holds no peer lists; without it rows are built from the cached peer lists.
   */
  peerRows?: TunnelPeerRows;
  /** key Secrets, metadata only (their sealed data is read through `secretReader` when a plan needs it) */
  secrets: Informer<KubernetesObject>;
  secretReader: KeySecretReader;
  /** agents' liveness Leases in the key namespace (sealmesh-agent-<node>) */
  leases?: Informer<KubernetesObject> | undefined;
  /** node name → Lease name, as the agent names its liveness Lease */
  leaseName?: (node: string) => string;
  writer: OperatorWriter;
  timings?: Partial<RotationTimings> | undefined;
  /** least time between two status writes that change only pair counts (default 2 s) */
  statusIntervalMs?: number | undefined;
  rotationMetrics?: RotationMetrics | undefined;
  sealer: Sealer;
  logger: Logger;
  now?: () => Date;
}

/** Reads one Secret, data included, from the API server. */
export interface KeySecretReader {
  /** undefined when it does not exist */
  read(namespace: string, name: string): Promise<V1Secret | undefined>;
}

export interface RotationMetrics {
  /** a rotation completed: its scope and how long it took from first stage to completion */
  completed(overlay: string, scope: string, seconds: number): void;
  /** when the overlay's private keys (and PSKs) were last renewed, for key-age gauges */
  keyTimes(overlay: string, lastRotation: Date, lastPresharedKeyRotation: Date): void;
}

/** What the controller remembers between passes, only to phrase Events about transitions. */
interface Memory {
  /** the pairs that were Encrypted */
  encrypted: PairSet;
  members: Set<string>;
  unusable: Set<string>;
  exhausted: boolean;
}

/**
 * A set of node pairs as one bit per pair: 500k pairs of a 1,000-node overlay take 62 KB, where a Map keyed
 * by "a/b" took tens of MB. Nodes get numbers in the order first seen; pair (i, j), i < j, is bit
 * j(j-1)/2 + i, so a new node only appends bits. Sets made with fresh() share the numbering.
 */
class PairSet {
  private bits = new Uint8Array(0);

  constructor(private readonly ids: NodeIds) {}

  /** An empty set numbering nodes as this one does. */
  fresh(): PairSet {
    return new PairSet(this.ids);
  }

  private index(a: string, b: string, assign: boolean): number | undefined {
    const i = assign ? this.ids.id(a) : this.ids.get(a);
    const j = assign ? this.ids.id(b) : this.ids.get(b);
    if (i === undefined || j === undefined) return undefined;
    const [lo, hi] = i < j ? [i, j] : [j, i];
    return (hi * (hi - 1)) / 2 + lo;
  }

  has(a: string, b: string): boolean {
    const k = this.index(a, b, false);
    return k !== undefined && k >> 3 < this.bits.length && (this.bits[k >> 3]! & (1 << (k & 7))) !== 0;
  }

  add(a: string, b: string): void {
    const k = this.index(a, b, true)!;
    if (k >> 3 >= this.bits.length) {
      const grown = new Uint8Array(Math.max((k >> 3) + 1, this.bits.length * 2));
      grown.set(this.bits);
      this.bits = grown;
    }
    this.bits[k >> 3]! |= 1 << (k & 7);
  }
}

interface Scope {
  raw: KubernetesObject & { status?: OverlayNetwork['status'] };
  overlay: OverlayNetwork;
  name: string;
  epoch: number;
  rotation?: RotationStatus | undefined;
  now: Date;
  requeueAfterMs?: number | undefined;
  /** status fields decided in this pass that nothing else waits for: written with the pass's last write */
  deferred?: Partial<NonNullable<OverlayNetwork['status']>>;
  events: Array<{ type: 'Normal' | 'Warning'; reason: string; message: string }>;
}

function nodeView(n: V1Node): NodeView {
  return {
    name: n.metadata?.name ?? '',
    labels: n.metadata?.labels,
    deleting: Boolean(n.metadata?.deletionTimestamp),
    internalIPs: (n.status?.addresses ?? []).filter((a) => a.type === 'InternalIP').map((a) => a.address),
    podCIDRs: n.spec?.podCIDRs?.length ? n.spec.podCIDRs : n.spec?.podCIDR ? [n.spec.podCIDR] : [],
  };
}

/** Rotating: True with the phase while a rotation stages, cuts over or verifies. */
function rotatingCondition(scope: Scope): Omit<Condition, 'lastTransitionTime'> {
  const rotation = scope.rotation;
  const gen = scope.raw.metadata?.generation;
  return rotation && rotation.phase !== 'Backoff'
    ? {
        type: 'Rotating',
        status: 'True',
        reason: rotation.phase,
        message: `${rotation.scope} rotation to epoch ${rotation.targetEpoch}${
          rotation.cutoverTime ? `, cutover at ${rotation.cutoverTime}` : ''
        }`,
        observedGeneration: gen,
      }
    : {
        type: 'Rotating',
        status: 'False',
        reason: rotation ? 'Backoff' : 'Idle',
        message: rotation ? `retry at ${rotation.retryTime ?? ''}` : `keys at epoch ${scope.epoch}`,
        observedGeneration: gen,
      };
}

/**
 * Whether two statuses differ only in pair counts: `pairs`, `encryptedSummary` and the messages of conditions
 * whose status and reason are unchanged.
 */
export function countsOnly(
  a: OverlayNetwork['status'] & object,
  b: OverlayNetwork['status'] & object,
): boolean {
  const shape = (st: OverlayNetwork['status'] & object) => ({
    ...st,
    pairs: undefined,
    encryptedSummary: undefined,
    conditions: (st.conditions ?? []).map((c) => ({ ...c, message: undefined })),
  });
  return isDeepStrictEqual(shape(a), shape(b));
}

function listNames(names: string[]): string {
  const shown = names.slice(0, EVENT_NAMES).join(', ');
  return names.length > EVENT_NAMES ? `${shown} (+${names.length - EVENT_NAMES} more)` : shown;
}

/** listNames of a list too long to keep (pairs): the count and the names shown, each built only if shown. */
class NameSample {
  count = 0;
  private readonly shown: string[] = [];

  /** Counts a pair and names it, `a/b` or `a/b (reason)`, while there is room (walks visit 500k pairs). */
  addPair(a: string, b: string, reason?: () => string): void {
    if (this.shown.length < EVENT_NAMES) this.shown.push(reason ? `${a}/${b} (${reason()})` : `${a}/${b}`);
    this.count++;
  }

  text(): string {
    const shown = this.shown.join(', ');
    return this.count > EVENT_NAMES ? `${shown} (+${this.count - EVENT_NAMES} more)` : shown;
  }
}

/**
 * What this process knows about one key Secret: at `resourceVersion` it decodes (we wrote or read it), and
 * (with `inputs`, a plan digest) planning it from exactly those inputs changed nothing, giving `publicKey`.
 * The Secrets of a 1,000-node overlay hold ~300 MB of sealed pairs, so the cache keeps their metadata only;
 * with this and the plan-digest annotation most passes read no Secret at all.
 */
interface KeySecretMemo {
  overlay: string;
  /** the key epoch of the Secret (its label), so memos of deleted epochs can be forgotten */
  epoch: string | undefined;
  resourceVersion: string;
  inputs?: string;
  publicKey?: string | undefined;
}

export class OverlayNetworkController {
  readonly name = 'overlaynetwork';
  private readonly memory = new Map<string, Memory>();
  /** by key Secret name */
  private readonly keyMemo = new Map<string, KeySecretMemo>();
  private readonly now: () => Date;
  private readonly timings: RotationTimings;
  private readonly peerRows: TunnelPeerRows;
  /**
   * Validated NodeTunnels by cached object (null: invalid). The informer replaces an object when it changes,
   * so each version is validated once, not once per pass.
   */
  private readonly parsedTunnels = new WeakMap<object, NodeTunnel | null>();
  /** when this process last wrote each overlay's status (ms), for coalescing count-only changes */
  private readonly lastStatusWrite = new Map<string, number>();
  private readonly statusIntervalMs: number;
  /** by overlay: the stale key Secrets the last delete-collection request removed (the cache may lag) */
  private readonly removedSecrets = new Map<string, Set<string>>();
  /** CPU-heavy steps of concurrent Secret work, one at a time */
  private readonly cpu = new Turns();

  constructor(private readonly deps: OverlayControllerDeps) {
    this.now = deps.now ?? (() => new Date());
    this.peerRows = deps.peerRows ?? new TunnelPeerRows();
    this.statusIntervalMs = deps.statusIntervalMs ?? DEFAULT_STATUS_INTERVAL_MS;
    this.timings = { ...DEFAULT_TIMINGS, ...deps.timings };
  }

  // ---- event mapping (STYLE 2): every event enqueues the key of the overlay it affects ----

  /** Overlay names affected by a change of this object of any watched kind. */
  keysFor(kind: 'overlay' | 'node' | 'tunnel' | 'secret' | 'lease', obj: KubernetesObject): string[] {
    switch (kind) {
      case 'lease':
        // Liveness only matters while a rotation waits for acknowledgements.
        return this.deps.overlays
          .list()
          .filter((o) => (o as { status?: { rotation?: unknown } }).status?.rotation)
          .map((o) => o.metadata?.name ?? '');
      case 'overlay':
        return [obj.metadata?.name ?? ''];
      case 'tunnel':
      case 'secret': {
        const overlay = obj.metadata?.labels?.[OVERLAY_LABEL];
        return overlay ? [overlay] : [];
      }
      case 'node':
        // A node's labels decide which overlays select it, and a label change can move it out of one: every
        // overlay is a candidate. Overlays are few; nodes are many.
        return this.deps.overlays.list().map((o) => o.metadata?.name ?? '');
    }
  }

  async reconcile(name: string): Promise<HandlerResult> {
    const raw = this.deps.overlays.get(name);
    if (!raw) {
      this.memory.delete(name);
      this.lastStatusWrite.delete(name);
      this.removedSecrets.delete(name);
      for (const [secret, m] of this.keyMemo) if (m.overlay === name) this.keyMemo.delete(secret);
      return;
    }
    const log = this.deps.logger.child({
      controller: this.name,
      key: name,
      generation: raw.metadata?.generation,
    });
    let scope: Scope | undefined;
    try {
      if (raw.metadata?.deletionTimestamp) return await this.finalize(raw, log);
      const parsed = parseOverlayNetwork(raw);
      if (!parsed.ok) {
        await this.writeInvalid(raw, parsed.error);
        return;
      }
      scope = {
        raw: raw,
        overlay: parsed.value,
        name,
        epoch: parsed.value.status?.epoch ?? 1,
        rotation: parsed.value.status?.rotation,
        now: this.now(),
        events: [],
      };
      if (!(raw.metadata?.finalizers ?? []).includes(FINALIZER)) {
        // The finalizer goes on before anything is created, so nothing can be orphaned (STYLE 8).
        await this.deps.writer.setOverlayFinalizers(name, raw.metadata?.resourceVersion, [
          ...(raw.metadata?.finalizers ?? []),
          FINALIZER,
        ]);
        return; // the update event brings us back with the new resourceVersion
      }
      if (scope.overlay.spec.paused) {
        await this.writeStatus(scope, { paused: true });
        return;
      }
      return await this.sync(scope, log);
    } catch (err) {
      if (err instanceof NotLeaderError) return;
      // Events of steps already written (a rotation completed, a node joined) are not repeated by the next
      // pass: record them even when a later step of this pass failed.
      if (scope && scope.events.length > 0) await this.flushEvents(scope).catch(() => undefined);
      if (isConflict(err)) {
        log.debug('conflict, retrying with fresh cache');
      }
      throw new Error(`failed to reconcile OverlayNetwork ${name}: ${describeError(err)}`, { cause: err });
    }
  }

  /** The overlay's valid NodeTunnels, each with its peer reports as a row. */
  private async tunnelsOf(overlay: string): Promise<Array<{ tunnel: NodeTunnel; row: PeerRow | undefined }>> {
    const out: Array<{ tunnel: NodeTunnel; row: PeerRow | undefined }> = [];
    let fresh = 0;
    for (const obj of this.deps.tunnels.list()) {
      if (obj.metadata?.labels?.[OVERLAY_LABEL] !== overlay) continue;
      let tunnel = this.parsedTunnels.get(obj);
      if (tunnel === undefined) {
        // Validating many changed tunnels (peer lists included when the cache keeps them) takes a while.
        if (++fresh % (YIELD_EVERY * 5) === 0) await yieldToEventLoop();
        const parsed = parseNodeTunnel(obj);
        tunnel = parsed.ok ? parsed.value : null;
        this.parsedTunnels.set(obj, tunnel);
        if (!parsed.ok)
          this.deps.logger.warn(
            { tunnel: obj.metadata?.name, error: parsed.error },
            'skipping invalid NodeTunnel',
          );
      }
      if (tunnel) out.push({ tunnel, row: this.peerRows.rowOf(obj) });
    }
    return out;
  }

  /** The key Secret's metadata at `epoch` (the cache holds no data). */
  private secretOf(overlay: string, node: string, epoch: number): KubernetesObject | undefined {
    return this.deps.secrets.get(keySecretNameAt(overlay, node, epoch), this.deps.namespace);
  }

  /**
   * Whether the key Secret (cached metadata) holds decodable material. Known when this process wrote or read
   * it at this resourceVersion; a Secret carrying our plan digest that we never saw is trusted (a restarted
   * operator reads nothing). Otherwise, above all when it changed behind our back, it is read and decoded.
   */
  private async decodable(overlay: string, secret: KubernetesObject): Promise<boolean> {
    const name = secret.metadata?.name ?? '';
    const resourceVersion = secret.metadata?.resourceVersion;
    const memo = this.keyMemo.get(name);
    if (resourceVersion && memo?.resourceVersion === resourceVersion) return true;
    if (!memo && secret.metadata?.annotations?.[PLAN_DIGEST_ANNOTATION]) return true;
    const read = await this.readKeySecret(name);
    if (!read?.decoded.ok) return false;
    if (read.resourceVersion) {
      const epoch = secret.metadata?.labels?.[EPOCH_LABEL];
      this.keyMemo.set(name, { overlay, epoch, resourceVersion: read.resourceVersion });
    }
    return true;
  }

  /** One key Secret with its data, decoded; undefined when it does not exist. */
  private async readKeySecret(
    name: string,
  ): Promise<
    { resourceVersion: string | undefined; decoded: ReturnType<typeof decodeKeySecretData> } | undefined
  > {
    const secret = await this.deps.secretReader.read(this.deps.namespace, name);
    if (!secret) return undefined;
    return { resourceVersion: secret.metadata?.resourceVersion, decoded: decodeKeySecretData(secret.data) };
  }

  private async sync(scope: Scope, log: Logger): Promise<HandlerResult> {
    const { overlay, name } = scope;
    const spec = overlay.spec;
    const nodes = this.deps.nodes.list().map((n) => nodeView(n as V1Node));
    const ofOverlay = await this.tunnelsOf(name);
    const existing = new Map(ofOverlay.map(({ tunnel: t }) => [t.spec.nodeName, t]));
    const rows = new Map(ofOverlay.map(({ tunnel: t, row }) => [t.spec.nodeName, row]));
    const desired = desiredTunnels(
      {
        name,
        nodeSelector: spec.nodeSelector,
        addressPool: spec.addressPool,
        listenPort: spec.listenPort,
        mtu: spec.mtu,
        persistentKeepalive: spec.persistentKeepalive,
        routePodCIDRs: spec.routePodCIDRs,
        epoch: scope.epoch,
      },
      nodes,
      new Map([...existing].map(([node, t]) => [node, t.spec.address])),
    );

    // Keys first: in Operator custody the tunnel spec carries the public key of the sealed private key.
    const members: Member[] = [...existing.values()]
      .filter((t) => desired.tunnels.has(t.spec.nodeName))
      .map((t) => ({
        name: t.spec.nodeName,
        createdAt: t.metadata.creationTimestamp as string | undefined,
        envelopePublicKey: t.status?.envelopePublicKey,
      }));
    const lost = scope.rotation ? [] : await this.lostKeySecrets(scope, members, existing, rows);
    if (lost.length > 0) {
      // Old keys are gone with their Secret and are never re-created: everything moves to a new epoch.
      scope.epoch += 1;
      scope.events.push({
        type: 'Warning',
        reason: 'KeySecretReplaced',
        message: `key Secret of ${listNames(lost)} was deleted or corrupted; new keys at epoch ${scope.epoch}`,
      });
      log.warn({ nodes: lost, epoch: scope.epoch }, 'key Secret lost; moving to a new epoch');
      await this.persist(scope, { epoch: scope.epoch });
    }
    await this.rotate(scope, members, existing, rows, log);
    const publicKeys = await this.syncSecrets(scope, members, log);
    await this.syncTunnels(scope, desired.tunnels, existing, publicKeys);

    const previous = this.memory.get(name);
    const memory: Memory = previous ?? {
      encrypted: new PairSet(new NodeIds()),
      members: new Set(),
      unusable: new Set(),
      exhausted: false,
    };
    // Pairs of every node the overlay selects, tunnel created in this pass or not: nodes and pair counts then
    // change together, so a join costs one status write, not one for the node and another for its pairs.
    const pairMembers = [...desired.tunnels.keys()];
    // After a cutover the devices run the target epoch; a pair is encrypted only at the epoch it should run.
    const runningEpoch =
      scope.rotation && (scope.rotation.phase === 'Verifying' || scope.rotation.phase === 'CuttingOver')
        ? scope.rotation.targetEpoch
        : scope.epoch;
    // While the nodes switch epochs every pair leaves Encrypted and comes back: the rotation's own Events say
    // so once; a pair Events only when it degrades (Stale, KeyMismatch, epochs differ).
    const switching = runningEpoch !== scope.epoch;
    // Pairs are judged one at a time and only remembered as bits: at 1,000 nodes there are 500k of them.
    const encrypted = memory.encrypted.fresh();
    const gained = new NameSample();
    const lostPairs = new NameSample();
    const pairs = await visitPairRows(
      this.peerRows.ids,
      pairMembers,
      [...rows].filter(([node]) => desired.tunnels.has(node)).map(([node, row]) => ({ node, row })),
      scope.rotation?.phase === 'Verifying' ? runningEpoch : undefined,
      (a, b, state, reason) => {
        const was = memory.encrypted.has(a, b);
        if (state === 'Encrypted') {
          encrypted.add(a, b);
          if (!was && !switching) gained.addPair(a, b);
        } else if (was && (!switching || state === 'Degraded')) lostPairs.addPair(a, b, reason);
      },
    );
    // The first pass after a start only learns the baseline: a restarted operator does not re-announce.
    if (previous) this.pairEvents(scope, gained, lostPairs);
    const unusable = new Set(desired.unusable.map((u) => u.node));
    const newlyUnusable = desired.unusable.filter((u) => !memory.unusable.has(u.node));
    if (newlyUnusable.length > 0) {
      scope.events.push({
        type: 'Warning',
        reason: 'NodeUnusable',
        message: `not peered: ${listNames(newlyUnusable.map((u) => `${u.node} (${u.reason})`))}`,
      });
    }
    if (desired.exhausted.length > 0 && !memory.exhausted) {
      scope.events.push({
        type: 'Warning',
        reason: 'AddressPoolExhausted',
        message: `address pool ${spec.addressPool} is exhausted; no address for ${listNames(desired.exhausted)}`,
      });
    }
    this.memory.set(name, {
      encrypted,
      members: new Set(desired.tunnels.keys()),
      unusable,
      exhausted: desired.exhausted.length > 0,
    });

    const conditions = this.conditions(scope, {
      unusable: desired.unusable,
      exhausted: desired.exhausted,
      pairs,
    });
    const schedule = this.schedule(scope);
    const created = new Date((scope.raw.metadata?.creationTimestamp as string | undefined) ?? scope.now);
    const lastKeys = scope.overlay.status?.lastRotationTime
      ? new Date(scope.overlay.status.lastRotationTime)
      : created;
    const lastPsk = scope.overlay.status?.lastPresharedKeyRotationTime
      ? new Date(
          Math.max(lastKeys.getTime(), new Date(scope.overlay.status.lastPresharedKeyRotationTime).getTime()),
        )
      : lastKeys;
    this.deps.rotationMetrics?.keyTimes(name, lastKeys, lastPsk);
    await this.writeStatus(scope, {
      status: {
        ...scope.deferred,
        nodes: desired.tunnels.size,
        pairs: { total: pairs.total, encrypted: pairs.encrypted, degraded: pairs.degraded },
        encryptedSummary: `${pairs.encrypted}/${pairs.total}`,
        conditions,
        nextRotationTime: schedule.nextRotationTime && formatTime(schedule.nextRotationTime),
        nextPresharedKeyRotationTime:
          schedule.nextPresharedKeyRotationTime && formatTime(schedule.nextPresharedKeyRotationTime),
      },
    });
    await this.flushEvents(scope);
    // Last: deleting a completed rotation's old Secrets can take the API server tens of seconds at 1,000
    // nodes, and nothing above waits on it.
    await this.deleteStaleSecrets(scope, new Set(desired.tunnels.keys()), log);
    const nextDue = [schedule.nextRotationTime, schedule.nextPresharedKeyRotationTime]
      .filter((d): d is Date => d !== undefined)
      .map((d) => Math.max(d.getTime() - scope.now.getTime(), 1000));
    const requeue = Math.min(scope.requeueAfterMs ?? Infinity, ...nextDue);
    // Timers beyond a day are left to the periodic resync.
    return Number.isFinite(requeue) ? { requeueAfterMs: Math.min(requeue, 86_400_000) } : undefined;
  }

  /** Schedule and manual trigger, from the spec and the last rotation times in status. */
  private schedule(scope: Scope) {
    const status = scope.overlay.status;
    const created = new Date(
      (scope.raw.metadata?.creationTimestamp as string | Date | undefined) ?? scope.now,
    );
    return evaluateSchedule({
      rotation: scope.overlay.spec.keys.rotation,
      presharedKeysEnabled: scope.overlay.spec.keys.presharedKeys === 'PerPair',
      created,
      lastRotationTime: status?.lastRotationTime ? new Date(status.lastRotationTime) : undefined,
      lastPresharedKeyRotationTime: status?.lastPresharedKeyRotationTime
        ? new Date(status.lastPresharedKeyRotationTime)
        : undefined,
      now: scope.now,
    });
  }

  private agentViews(members: Member[], tunnels: Map<string, NodeTunnel>): AgentView[] {
    const nowMs = this.now().getTime();
    return members.map((m) => {
      const lease = this.deps.leases?.get(
        this.deps.leaseName?.(m.name) ?? `sealmesh-agent-${m.name}`,
        this.deps.namespace,
      ) as { spec?: { renewTime?: string; leaseDurationSeconds?: number } } | undefined;
      const renew = lease?.spec?.renewTime ? new Date(lease.spec.renewTime).getTime() : 0;
      const live = renew + (lease?.spec?.leaseDurationSeconds ?? 0) * 1000 > nowMs;
      const status = tunnels.get(m.name)?.status;
      return {
        node: m.name,
        live,
        stagedEpoch: status?.stagedEpoch,
        stagedPublicKey: status?.stagedPublicKey,
      };
    });
  }

  /**
   * One step of the rotation protocol (rotation.ts decides, this applies). Progress is written to status
   * before any key Secret changes, so a restart at any point resumes from the API.
   */
  private async rotate(
    scope: Scope,
    members: Member[],
    tunnels: Map<string, NodeTunnel>,
    rows: Map<string, PeerRow | undefined>,
    log: Logger,
  ): Promise<RotationStep> {
    const { overlay } = scope;
    let due: { scope: 'Keys' | 'PresharedKeys'; reason: string } | undefined;
    let request: string | undefined;
    if (!scope.rotation) {
      const annotation = scope.raw.metadata?.annotations?.[ROTATE_ANNOTATION];
      if (annotation !== undefined && annotation !== (overlay.status?.lastRotateRequest ?? undefined)) {
        due = {
          scope: annotation.startsWith(ROTATE_PSK_ONLY_PREFIX) ? 'PresharedKeys' : 'Keys',
          reason: `requested by annotation ${ROTATE_ANNOTATION}=${annotation.slice(0, 63)}`,
        };
        request = annotation;
      } else {
        due = this.schedule(scope).due;
      }
    }
    const agents = this.agentViews(members, tunnels);
    const target = scope.rotation?.targetEpoch ?? scope.epoch + 1;
    const live = new Set(agents.filter((a) => a.live).map((a) => a.node));
    // Only the Verifying phase looks at the pairs (O(N²) at N live nodes): no other pass pays for them.
    const atTarget = { total: 0, encrypted: 0 };
    const notAtTarget = new NameSample();
    if (scope.rotation?.phase === 'Verifying') {
      const counts = await visitPairRows(
        this.peerRows.ids,
        [...live],
        [...rows].filter(([node]) => live.has(node)).map(([node, row]) => ({ node, row })),
        target,
        (a, b, state) => {
          if (state !== 'Encrypted') notAtTarget.addPair(a, b);
        },
      );
      atTarget.total = counts.total;
      atTarget.encrypted = counts.encrypted;
    }
    const step = nextRotationStep({
      now: scope.now,
      epoch: scope.epoch,
      rotation: scope.rotation,
      due,
      agents,
      pairsAtTarget: atTarget,
      timings: this.timings,
    });
    switch (step.kind) {
      case 'idle':
        return step;
      case 'wait':
        scope.requeueAfterMs = step.afterMs;
        return step;
      case 'start':
      case 'retry':
        scope.rotation = step.rotation;
        await this.persist(scope, {
          rotation: step.rotation,
          ...(request !== undefined ? { lastRotateRequest: request } : {}),
        });
        scope.events.push({
          type: 'Normal',
          reason: 'RotationStarted',
          message: `staging epoch ${step.rotation.targetEpoch} (${step.rotation.scope}, attempt ${
            step.rotation.attempt ?? 1
          }): ${step.rotation.reason ?? ''}`,
        });
        log.info({ epoch: step.rotation.targetEpoch, scope: step.rotation.scope }, 'rotation staging');
        scope.requeueAfterMs = 1000;
        return step;
      case 'cutover':
      case 'verify':
        scope.rotation = step.rotation;
        // The cutover instant must reach the agents before it passes, whatever else this pass does. Verifying
        // changes nothing the agents act on: the pass's last status write carries it.
        if (step.kind === 'cutover') await this.persist(scope, { rotation: step.rotation });
        else scope.deferred = { ...scope.deferred, rotation: step.rotation };
        if (step.kind === 'cutover')
          log.info({ cutoverTime: step.rotation.cutoverTime }, 'rotation cutover set');
        scope.requeueAfterMs = step.kind === 'cutover' ? this.timings.cutoverDelayMs : 1000;
        return step;
      case 'abort':
        // The staged Secrets stay for the retry, which stages the same epoch: nothing waits on this write.
        scope.rotation = step.rotation;
        scope.deferred = { ...scope.deferred, rotation: step.rotation };
        scope.events.push({
          type: 'Warning',
          reason: 'RotationAborted',
          message: `epoch ${step.rotation.targetEpoch} aborted, epoch ${scope.epoch} kept, retry at ${
            step.rotation.retryTime ?? ''
          }: ${step.reason}`,
        });
        log.warn({ epoch: step.rotation.targetEpoch, reason: step.reason }, 'rotation aborted');
        scope.requeueAfterMs = Math.max(
          new Date(step.rotation.retryTime ?? 0).getTime() - scope.now.getTime(),
          1000,
        );
        return step;
      case 'complete': {
        const when = formatTime(scope.now);
        scope.epoch = step.epoch;
        scope.rotation = undefined;
        await this.persist(scope, {
          epoch: step.epoch,
          rotation: undefined,
          ...(step.scope === 'Keys' ? { lastRotationTime: when } : { lastPresharedKeyRotationTime: when }),
        });
        const seconds = (scope.now.getTime() - new Date(step.startTime).getTime()) / 1000;
        scope.events.push({
          type: 'Normal',
          reason: 'RotationCompleted',
          message: `epoch ${step.epoch} in effect (${step.scope}) after ${seconds.toFixed(1)}s`,
        });
        if (step.incomplete > 0) {
          scope.events.push({
            type: 'Warning',
            reason: 'RotationIncomplete',
            message: `${step.incomplete} pair(s) not re-established at epoch ${step.epoch}: ${notAtTarget.text()}`,
          });
        }
        this.deps.rotationMetrics?.completed(scope.name, step.scope, seconds);
        log.info({ epoch: step.epoch, scope: step.scope, seconds }, 'rotation completed');
        return step;
      }
    }
  }

  /**
   * Nodes whose key Secret is missing or unreadable although keys of the current epoch were already in use
   * (its agent reports a peer Encrypted at that epoch). A Secret that never existed is simply created; one that disappeared after use
   * must not come back with the same keys' epoch.
   */
  private async lostKeySecrets(
    scope: Scope,
    members: Member[],
    tunnels: Map<string, NodeTunnel>,
    rows: Map<string, PeerRow | undefined>,
  ): Promise<string[]> {
    const lost: string[] = [];
    let i = 0;
    for (const m of members) {
      if (++i % YIELD_EVERY === 0) await yieldToEventLoop();
      const status = tunnels.get(m.name)?.status;
      // In use = a handshake succeeded with keys of this epoch. An agent that merely reports its peers as
      // AwaitingPeer before its first Secret exists (every new node does) has used nothing. Only a Secret in
      // use can be lost, so only those are checked (a check may read the Secret).
      const row = rows.get(m.name);
      const inUse =
        status?.appliedEpoch === scope.epoch && row !== undefined && rowHasEncryptedAt(row, scope.epoch);
      if (!inUse) continue;
      const secret = this.secretOf(scope.name, m.name, scope.epoch);
      if (!secret || !(await this.decodable(scope.name, secret))) lost.push(m.name);
    }
    return lost;
  }

  /**
   * Every member's key Secret of the current epoch and, during a rotation, of the target epoch. Returns the
   * public keys at the current epoch (Operator custody).
   */
  private async syncSecrets(scope: Scope, members: Member[], log: Logger): Promise<Map<string, string>> {
    const { overlay, name } = scope;
    const publicKeys = new Map<string, string>();
    const common = {
      overlay: name,
      presharedKeys: overlay.spec.keys.presharedKeys,
      custody: overlay.spec.keys.custody,
    };
    const work: Array<() => Promise<void>> = [];
    const epochs: Array<{ epoch: number; newPrivateKey: boolean }> = [
      { epoch: scope.epoch, newPrivateKey: false },
      ...(scope.rotation
        ? [{ epoch: scope.rotation.targetEpoch, newPrivateKey: scope.rotation.scope === 'Keys' }]
        : []),
    ];
    // A PSK-only rotation carries each node's private key (Operator custody) from its current Secret.
    const carries = common.custody === 'Operator' && scope.rotation?.scope === 'PresharedKeys';
    for (const { epoch, newPrivateKey } of epochs) {
      // Everything each plan depends on besides the Secret itself, for all members in one O(N) pass.
      const digests = planDigests({ ...common, epoch, members });
      let i = 0;
      for (const m of members) {
        if (++i % YIELD_EVERY === 0) await yieldToEventLoop();
        if (!m.envelopePublicKey) continue; // nothing can be sealed to this node yet
        const current = epoch === scope.epoch;
        const secret = this.secretJob(
          scope,
          m,
          epoch,
          digests.get(m.name) ?? '',
          log,
          (existing, carried) =>
            planKeySecretSteps(
              { ...common, existing, carried, epoch, members, newPrivateKey, node: m.name },
              this.deps.sealer,
            ),
          carries && !current ? scope.epoch : undefined,
        );
        if ('run' in secret) {
          work.push(async () => {
            const publicKey = await secret.run();
            if (current && publicKey) publicKeys.set(m.name, publicKey);
          });
        } else if (current && secret.publicKey) publicKeys.set(m.name, secret.publicKey);
      }
    }
    // Reads, plans and writes overlap: at 1,000 nodes one after another they took ~50 s of round trips.
    await forEachLimit(work, SECRET_CONCURRENCY, (job) => job());
    return publicKeys;
  }

  /** Operator custody: the private key a node's Secret of `epoch` holds, to carry into the next epoch. */
  private async carriedPrivateKey(
    overlay: string,
    node: string,
    epoch: number,
  ): Promise<SealedPrivateKey | undefined> {
    const read = await this.readKeySecret(keySecretNameAt(overlay, node, epoch));
    return read?.decoded.ok ? servingPrivateKey(read.decoded.payload) : undefined;
  }

  /**
   * One node's Secret of one epoch: its recorded public key (Operator custody) when it is up to date, else
   * the work (`run`) of bringing it up to date, resolving to the plan's public key. Up to date: the same
   * inputs as it was planned from (`inputs`, a plan digest), and the Secret is as planned (we saw this
   * resourceVersion, or it carries our digest and we never saw it change). A plan is random only when it
   * changes, so the Secret's data need not be read. With `carryFrom`, the private key of that epoch's Secret
   * is read and given to the plan (a PSK-only rotation in Operator custody).
   */
  private secretJob(
    scope: Scope,
    m: Member,
    epoch: number,
    inputs: string,
    log: Logger,
    plan: (
      existing: KeySecretPayload | undefined,
      carried: SealedPrivateKey | undefined,
    ) => ReturnType<typeof planKeySecretSteps>,
    carryFrom: number | undefined,
  ): { publicKey: string | undefined } | { run: () => Promise<string | undefined> } {
    const { name } = scope;
    const secretName = keySecretNameAt(name, m.name, epoch);
    const current = this.deps.secrets.get(secretName, this.deps.namespace);
    const resourceVersion = current?.metadata?.resourceVersion;
    const annotations = current?.metadata?.annotations ?? {};
    const memo = this.keyMemo.get(secretName);
    const upToDate =
      resourceVersion !== undefined &&
      ((memo?.resourceVersion === resourceVersion && memo.inputs === inputs) ||
        (annotations[PLAN_DIGEST_ANNOTATION] === inputs &&
          (memo === undefined || memo.resourceVersion === resourceVersion)));
    if (upToDate) return { publicKey: memo?.publicKey ?? annotations[PUBLIC_KEY_ANNOTATION] };
    const run = async (): Promise<string | undefined> => {
      const carried =
        carryFrom === undefined ? undefined : await this.carriedPrivateKey(name, m.name, carryFrom);
      const read = current ? await this.deps.secretReader.read(this.deps.namespace, secretName) : undefined;
      const stored = read && { resourceVersion: read.metadata?.resourceVersion };
      // Decoding, sealing and encoding a Secret of 1,000 pairs take ~6-50, ~30-90 and ~2-5 ms (warm to cold
      // JIT): each step is a turn of the event loop of its own (sealing: one per PLAN_STEP_WORK), one step of
      // one Secret at a time, however many reads came back together.
      const decoded = read ? await this.cpu.run(() => decodeKeySecretData(read.data)) : undefined;
      const existing: KeySecretPayload | undefined = decoded?.ok ? decoded.payload : undefined;
      const planned = await this.cpu.steps(plan(existing, carried));
      const unchanged = !planned.changed && stored?.resourceVersion !== undefined;
      const data = unchanged ? undefined : await this.cpu.run(() => encodeKeySecretData(planned.payload));
      if (!data && stored?.resourceVersion) {
        this.keyMemo.set(secretName, {
          overlay: name,
          epoch: String(epoch),
          resourceVersion: stored.resourceVersion,
          inputs,
          publicKey: planned.publicKey,
        });
        return planned.publicKey;
      }
      const body: V1Secret = {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: {
          name: secretName,
          namespace: this.deps.namespace,
          labels: {
            ...MANAGED_BY,
            [OVERLAY_LABEL]: name,
            [NODE_LABEL]: m.name,
            [EPOCH_LABEL]: String(epoch),
          },
          annotations: {
            [PLAN_DIGEST_ANNOTATION]: inputs,
            ...(planned.publicKey ? { [PUBLIC_KEY_ANNOTATION]: planned.publicKey } : {}),
          },
          ...(stored?.resourceVersion ? { resourceVersion: stored.resourceVersion } : {}),
        },
        type: KEY_SECRET_TYPE,
        data,
      };
      let written: string | undefined;
      if (stored) written = await this.deps.writer.replaceSecret(this.deps.namespace, secretName, body);
      else {
        try {
          written = await this.deps.writer.createSecret(this.deps.namespace, body);
        } catch (err) {
          // Our own earlier create, not yet in the cache: its watch event brings us back to compare.
          if (!isAlreadyExists(err)) throw err;
          log.debug({ secret: secretName }, 'key Secret already exists; waiting for the cache');
          return undefined; // the key planned here was not stored: do not announce it
        }
      }
      if (written) {
        this.keyMemo.set(secretName, {
          overlay: name,
          epoch: String(epoch),
          resourceVersion: written,
          inputs,
          publicKey: planned.publicKey,
        });
      }
      if (planned.newPairs.length > 0) {
        log.info({ node: m.name, pairs: planned.newPairs.length, epoch }, 'sealed new pair keys');
      }
      return planned.publicKey;
    };
    return { run };
  }

  private async syncTunnels(
    scope: Scope,
    desired: Map<string, Omit<TunnelSpec, 'publicKey' | 'secretRef'>>,
    existing: Map<string, NodeTunnel>,
    publicKeys: Map<string, string>,
  ): Promise<void> {
    const { name, raw } = scope;
    const joined: string[] = [];
    for (const [node, base] of desired) {
      const spec: TunnelSpec = {
        ...base,
        epoch: scope.epoch,
        ...(publicKeys.has(node) ? { publicKey: publicKeys.get(node) } : {}),
        secretRef: { namespace: this.deps.namespace, name: keySecretName(name, node) },
      };
      const current = existing.get(node);
      // spec.epoch records the epoch a node joined at; rotations are announced in the overlay's status, so a
      // rotation rewrites no NodeTunnel (it would cost a write per node).
      if (current) spec.epoch = current.spec.epoch;
      if (!current) {
        const body = {
          apiVersion: API_VERSION,
          kind: NODE_TUNNEL_KIND,
          metadata: {
            name: nodeTunnelName(name, node),
            labels: { ...MANAGED_BY, [OVERLAY_LABEL]: name, [NODE_LABEL]: node },
            ownerReferences: [
              {
                apiVersion: API_VERSION,
                kind: OVERLAY_NETWORK_KIND,
                name,
                uid: raw.metadata?.uid ?? '',
                controller: true,
                blockOwnerDeletion: true,
              },
            ],
          },
          spec,
        };
        try {
          await this.deps.writer.createTunnel(body);
          joined.push(node);
        } catch (err) {
          if (!isAlreadyExists(err)) throw err;
        }
        continue;
      }
      // Keep a public key the tunnel already has while the node's Secret is not written yet.
      if (!spec.publicKey && current.spec.publicKey && scope.overlay.spec.keys.custody === 'Operator') {
        spec.publicKey = current.spec.publicKey;
      }
      if (!sameSpec(current.spec, spec)) {
        await this.deps.writer.replaceTunnel(current.metadata.name, {
          apiVersion: API_VERSION,
          kind: NODE_TUNNEL_KIND,
          metadata: current.metadata,
          spec,
        });
      }
    }
    const left: string[] = [];
    for (const [node, t] of existing) {
      if (desired.has(node)) continue;
      try {
        await this.deps.writer.deleteTunnel(t.metadata.name);
        left.push(node);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    if (joined.length > 0) {
      scope.events.push({ type: 'Normal', reason: 'NodeJoined', message: `joined: ${listNames(joined)}` });
    }
    if (left.length > 0) {
      scope.events.push({ type: 'Normal', reason: 'NodeLeft', message: `left: ${listNames(left)}` });
    }
  }

  /**
   * Deletes the key Secrets no longer needed: those of epochs other than the current one and a rotation's
   * target (after a completed rotation: all of the old epoch's, with one request), and those of nodes that
   * left the overlay.
   */
  private async deleteStaleSecrets(scope: Scope, keep: Set<string>, log: Logger): Promise<void> {
    const epochs = new Set([String(scope.epoch)]);
    if (scope.rotation) epochs.add(String(scope.rotation.targetEpoch));
    const ofOverlay = this.deps.secrets
      .list(this.deps.namespace)
      .filter((s) => s.metadata?.labels?.[OVERLAY_LABEL] === scope.name);
    const staleEpoch = (s: KubernetesObject) => !epochs.has(s.metadata?.labels?.[EPOCH_LABEL] ?? '');
    for (const [secret, m] of this.keyMemo) {
      if (m.overlay === scope.name && !epochs.has(m.epoch ?? '')) this.keyMemo.delete(secret);
    }
    // Secrets a delete-collection request already removed stay in the cache until their watch events arrive:
    // no second request for those.
    const stale = ofOverlay.filter(staleEpoch).map((s) => s.metadata?.name ?? '');
    const removed = this.removedSecrets.get(scope.name);
    if (stale.length === 0) this.removedSecrets.delete(scope.name);
    if (stale.length > 0 && !stale.every((n) => removed?.has(n))) {
      // The same selection as the cache filter above (the overlay's label in the key namespace); `notin` also
      // selects Secrets without the label (written before Secrets were per epoch).
      const selector = `${OVERLAY_LABEL}=${scope.name},${EPOCH_LABEL} notin (${[...epochs].join(',')})`;
      try {
        const deleted = await this.deps.writer.deleteSecrets(this.deps.namespace, selector);
        this.removedSecrets.set(scope.name, new Set(stale));
        if (deleted > 0) log.info({ deleted, kept: [...epochs] }, 'deleted key Secrets of old epochs');
      } catch (err) {
        // Thousands of large Secrets can take the API server longer than its request timeout. What it deleted
        // is gone; the next pass deletes the rest. Nothing waits on this, so the pass goes on.
        if (!isTimeout(err)) throw err;
        log.info({ error: describeError(err) }, 'deleting old key Secrets takes long; continuing next pass');
        scope.requeueAfterMs = Math.min(scope.requeueAfterMs ?? 1000, 1000);
      }
    }
    for (const s of ofOverlay) {
      if (staleEpoch(s)) continue;
      const node = s.metadata?.labels?.[NODE_LABEL];
      if (node !== undefined && keep.has(node)) continue;
      try {
        await this.deps.writer.deleteSecret(this.deps.namespace, s.metadata?.name ?? '');
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
  }

  private pairEvents(scope: Scope, encrypted: NameSample, lost: NameSample): void {
    if (encrypted.count > 0) {
      scope.events.push({
        type: 'Normal',
        reason: 'PairEncrypted',
        message: `${encrypted.count} pair(s) encrypted: ${encrypted.text()}`,
      });
    }
    if (lost.count > 0) {
      scope.events.push({
        type: 'Warning',
        reason: 'PairLostEncryption',
        message: `${lost.count} pair(s) lost encryption: ${lost.text()}`,
      });
    }
  }

  private conditions(
    scope: Scope,
    facts: {
      unusable: Array<{ node: string; reason: string }>;
      exhausted: string[];
      pairs: { total: number; encrypted: number; degraded: number };
    },
  ): Condition[] {
    const gen = scope.raw.metadata?.generation;
    const prior = (scope.overlay.status?.conditions ?? []) as Condition[];
    const problems: Array<{ reason: string; message: string }> = [];
    if (facts.exhausted.length > 0) {
      problems.push({
        reason: 'AddressPoolExhausted',
        message: `address pool ${scope.overlay.spec.addressPool} is exhausted: no address for ${listNames(facts.exhausted)}`,
      });
    }
    if (facts.unusable.length > 0) {
      problems.push({
        reason: 'NodeUnusable',
        message: `not peered: ${listNames(facts.unusable.map((u) => `${u.node} (${u.reason})`))}`,
      });
    }
    if (facts.pairs.degraded > 0) {
      problems.push({ reason: 'PairsDegraded', message: `${facts.pairs.degraded} pair(s) degraded` });
    }
    // An aborted rotation leaves traffic encrypted at the old epoch: Degraded, but not a reason for Ready=False.
    const readyProblems = problems.length;
    const rotation = scope.rotation;
    if (rotation?.phase === 'Backoff') {
      problems.push({
        reason: 'RotationAborted',
        message: `rotation to epoch ${rotation.targetEpoch} aborted (attempt ${rotation.attempt ?? 1}): ${
          rotation.reason ?? ''
        }; retry at ${rotation.retryTime ?? ''}`,
      });
    }
    let conditions = setCondition(
      prior,
      problems.length > 0
        ? {
            type: 'Degraded',
            status: 'True',
            reason: problems[0]!.reason,
            message: problems.map((p) => p.message).join('; '),
            observedGeneration: gen,
          }
        : {
            type: 'Degraded',
            status: 'False',
            reason: 'AsExpected',
            message: 'no problems',
            observedGeneration: gen,
          },
      scope.now,
    );
    const allEncrypted = facts.pairs.encrypted === facts.pairs.total;
    conditions = setCondition(conditions, rotatingCondition(scope), scope.now);
    conditions = setCondition(
      conditions,
      allEncrypted && readyProblems === 0
        ? {
            type: 'Ready',
            status: 'True',
            reason: 'AllPairsEncrypted',
            message: `${facts.pairs.encrypted}/${facts.pairs.total} pairs encrypted`,
            observedGeneration: gen,
          }
        : {
            type: 'Ready',
            status: 'False',
            reason: readyProblems > 0 ? problems[0]!.reason : 'PairsPending',
            message: `${facts.pairs.encrypted}/${facts.pairs.total} pairs encrypted`,
            observedGeneration: gen,
          },
      scope.now,
    );
    return conditions;
  }

  /**
   * Writes progress mid-pass (epoch, rotation) before anything depends on it; not a completed pass. A
   * rotation's start and cutover carry the Rotating condition along, so the pass's last write does not
   * repeat it; a completion leaves Rotating=False to that last write, which brings the new pair counts with it.
   */
  private async persist(scope: Scope, fields: Partial<NonNullable<OverlayNetwork['status']>>): Promise<void> {
    const conditions = setCondition(
      scope.overlay.status?.conditions ?? [],
      rotatingCondition(scope),
      scope.now,
    );
    await this.writeStatus(scope, {
      status: { ...scope.deferred, ...fields, ...(scope.rotation ? { conditions } : {}) },
      partial: true,
    });
    scope.deferred = undefined;
  }

  private async writeStatus(
    scope: Scope,
    what: { status: Partial<NonNullable<OverlayNetwork['status']>>; partial?: boolean } | { paused: true },
  ): Promise<void> {
    const prior: NonNullable<OverlayNetwork['status']> = scope.overlay.status ?? {};
    const gen = scope.raw.metadata?.generation;
    let next: NonNullable<OverlayNetwork['status']>;
    if ('paused' in what) {
      next = {
        ...prior,
        conditions: setCondition(
          prior.conditions,
          {
            type: 'Ready',
            status: 'False',
            reason: 'Paused',
            message: 'spec.paused is true',
            observedGeneration: gen,
          },
          scope.now,
        ),
        observedGeneration: gen,
      };
    } else {
      next = {
        ...prior,
        ...what.status,
        epoch: scope.epoch,
        // observedGeneration moves only after a complete, successful pass (STYLE 7)
        ...(what.partial ? {} : { observedGeneration: gen }),
      };
    }
    const cleaned = stripUndefined(next);
    const before = stripUndefined(prior);
    if (isDeepStrictEqual(cleaned, before)) return;
    // Pair counts move with every agent report (a rollout or a rotation at 1,000 nodes brings ~1,000 within
    // seconds): a write that changes only counts waits until statusIntervalMs after the overlay's last write.
    const nowMs = this.now().getTime();
    const last = this.lastStatusWrite.get(scope.name);
    if (!('paused' in what) && !what.partial && last !== undefined && countsOnly(before, cleaned)) {
      const wait = last + this.statusIntervalMs - nowMs;
      if (wait > 0) {
        scope.requeueAfterMs = Math.min(scope.requeueAfterMs ?? Infinity, wait);
        return;
      }
    }
    // A merge patch keeps keys it does not mention: a field that went away is sent as null.
    const body: Record<string, unknown> = { ...cleaned };
    for (const key of Object.keys(before)) if (!(key in cleaned)) body[key] = null;
    await this.deps.writer.replaceOverlayStatus(scope.name, scope.raw.metadata?.resourceVersion, body);
    this.lastStatusWrite.set(scope.name, nowMs);
    // Later steps of this pass compare against what was just written.
    scope.overlay = { ...scope.overlay, status: cleaned };
    scope.raw = { ...scope.raw, metadata: { ...scope.raw.metadata, resourceVersion: undefined } };
  }

  private async writeInvalid(raw: KubernetesObject, error: string): Promise<void> {
    const status = (raw as { status?: OverlayNetwork['status'] }).status ?? {};
    const gen = raw.metadata?.generation;
    const conditions = setCondition(
      status.conditions,
      {
        type: 'Ready',
        status: 'False',
        reason: 'InvalidSpec',
        message: error.slice(0, 1024),
        observedGeneration: gen,
      },
      this.now(),
    );
    const next = { ...status, conditions };
    if (isDeepStrictEqual(stripUndefined(next), stripUndefined(status))) return;
    await this.deps.writer.replaceOverlayStatus(
      raw.metadata?.name ?? '',
      raw.metadata?.resourceVersion,
      next,
    );
  }

  private async flushEvents(scope: Scope): Promise<void> {
    for (const e of scope.events) {
      try {
        await this.deps.writer.event({ overlay: { name: scope.name, uid: scope.raw.metadata?.uid }, ...e });
      } catch (err) {
        if (err instanceof NotLeaderError) throw err;
        // An Event is best effort: losing one must not fail or repeat the pass.
        this.deps.logger.warn({ reason: e.reason, error: describeError(err) }, 'failed to record event');
      }
    }
    scope.events = [];
  }

  /** Deletion (STYLE 5, 8): remove everything this overlay made, then the finalizer. */
  private async finalize(raw: KubernetesObject, log: Logger): Promise<HandlerResult> {
    const name = raw.metadata?.name ?? '';
    if (!(raw.metadata?.finalizers ?? []).includes(FINALIZER)) return;
    for (const t of this.deps.tunnels.list()) {
      if (t.metadata?.labels?.[OVERLAY_LABEL] !== name) continue;
      try {
        await this.deps.writer.deleteTunnel(t.metadata?.name ?? '');
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    if (
      this.deps.secrets.list(this.deps.namespace).some((s) => s.metadata?.labels?.[OVERLAY_LABEL] === name)
    ) {
      await this.deps.writer.deleteSecrets(this.deps.namespace, `${OVERLAY_LABEL}=${name}`);
    }
    // The caches can lag our own deletes; only drop the finalizer once they show nothing left.
    const remaining =
      this.deps.tunnels.list().filter((t) => t.metadata?.labels?.[OVERLAY_LABEL] === name).length +
      this.deps.secrets.list(this.deps.namespace).filter((s) => s.metadata?.labels?.[OVERLAY_LABEL] === name)
        .length;
    if (remaining > 0) {
      log.debug({ remaining }, 'waiting for the caches to show our deletes');
      return { requeueAfterMs: 500 };
    }
    await this.deps.writer.setOverlayFinalizers(
      name,
      raw.metadata?.resourceVersion,
      (raw.metadata?.finalizers ?? []).filter((f) => f !== FINALIZER),
    );
    this.memory.delete(name);
    log.info('overlay cleaned up');
  }
}

function sameSpec(current: NodeTunnel['spec'], desired: TunnelSpec): boolean {
  return isDeepStrictEqual(stripUndefined({ ...current }), stripUndefined({ ...desired }));
}

/** JSON equality: a key with an undefined value is the same as no key. */
function stripUndefined<T>(v: T): T {
  return JSON.parse(JSON.stringify(v ?? null)) as T;
}
