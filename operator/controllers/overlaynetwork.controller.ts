// The OverlayNetwork controller: turns an overlay into one NodeTunnel per selected node, seals the pair keys
// into one Secret per node, and aggregates what the agents report into per-pair status.
//
// reconcile(name) reads everything from the informer caches and never trusts event payloads (STYLE 5). It
// computes desired state with pure functions (desired.ts, keyplan.ts, pairs.ts) and writes only the
// difference, so an unchanged world causes no API write at all.
import { isDeepStrictEqual } from 'node:util';
import type { KubernetesObject, V1Node, V1Secret } from '@kubernetes/client-node';
import {
  API_VERSION,
  NODE_LABEL,
  NODE_TUNNEL_KIND,
  OVERLAY_LABEL,
  OVERLAY_NETWORK_KIND,
  nodeTunnelName,
} from '../../api/v1alpha1/groupversion.js';
import { parseNodeTunnel, type NodeTunnel } from '../../api/v1alpha1/nodetunnel.types.js';
import { parseOverlayNetwork, type OverlayNetwork } from '../../api/v1alpha1/overlaynetwork.types.js';
import { describeError, isAlreadyExists, isConflict, isNotFound } from '../../lib/kube.js';
import {
  decodeKeySecretData,
  encodeKeySecretData,
  keySecretName,
  KEY_SECRET_TYPE,
  type KeySecretPayload,
} from '../../lib/keysecret.js';
import type { Logger } from '../../lib/log.js';
import type { Informer } from '../../lib/runtime/informer.js';
import type { HandlerResult } from '../../lib/runtime/queue.js';
import { setCondition, type Condition } from '../../lib/runtime/status.js';
import type { Sealer } from '../../lib/seal.js';
import { desiredTunnels, type NodeView, type TunnelSpec } from '../desired.js';
import { planKeySecret, type Member } from '../keyplan.js';
import { computePairs, type PairState } from '../pairs.js';
import { NotLeaderError, type OperatorWriter } from '../writer.js';

export const FINALIZER = 'sealmesh.io/cleanup';
export const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'sealmesh' };

/** How many names one aggregated Event lists before "+N more". */
const EVENT_NAMES = 10;

export interface OverlayControllerDeps {
  namespace: string;
  overlays: Informer<KubernetesObject>;
  nodes: Informer<KubernetesObject>;
  tunnels: Informer<KubernetesObject>;
  secrets: Informer<KubernetesObject>;
  writer: OperatorWriter;
  sealer: Sealer;
  logger: Logger;
  now?: () => Date;
}

/** What the controller remembers between passes, only to phrase Events about transitions. */
interface Memory {
  pairs: Map<string, PairState>;
  members: Set<string>;
  unusable: Set<string>;
  exhausted: boolean;
}

interface Scope {
  raw: KubernetesObject & { status?: OverlayNetwork['status'] };
  overlay: OverlayNetwork;
  name: string;
  epoch: number;
  now: Date;
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

function listNames(names: string[]): string {
  const shown = names.slice(0, EVENT_NAMES).join(', ');
  return names.length > EVENT_NAMES ? `${shown} (+${names.length - EVENT_NAMES} more)` : shown;
}

export class OverlayNetworkController {
  readonly name = 'overlaynetwork';
  private readonly memory = new Map<string, Memory>();
  private readonly now: () => Date;

  constructor(private readonly deps: OverlayControllerDeps) {
    this.now = deps.now ?? (() => new Date());
  }

  // ---- event mapping (STYLE 2): every event enqueues the key of the overlay it affects ----

  /** Overlay names affected by a change of this object of any watched kind. */
  keysFor(kind: 'overlay' | 'node' | 'tunnel' | 'secret', obj: KubernetesObject): string[] {
    switch (kind) {
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
      return;
    }
    const log = this.deps.logger.child({
      controller: this.name,
      key: name,
      generation: raw.metadata?.generation,
    });
    try {
      if (raw.metadata?.deletionTimestamp) return await this.finalize(raw, log);
      const parsed = parseOverlayNetwork(raw);
      if (!parsed.ok) {
        await this.writeInvalid(raw, parsed.error);
        return;
      }
      const scope: Scope = {
        raw: raw,
        overlay: parsed.value,
        name,
        epoch: parsed.value.status?.epoch ?? 1,
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
      if (isConflict(err)) {
        log.debug('conflict, retrying with fresh cache');
      }
      throw new Error(`failed to reconcile OverlayNetwork ${name}: ${describeError(err)}`, { cause: err });
    }
  }

  private tunnelsOf(overlay: string): NodeTunnel[] {
    const out: NodeTunnel[] = [];
    for (const obj of this.deps.tunnels.list()) {
      if (obj.metadata?.labels?.[OVERLAY_LABEL] !== overlay) continue;
      const parsed = parseNodeTunnel(obj);
      if (parsed.ok) out.push(parsed.value);
      else
        this.deps.logger.warn(
          { tunnel: obj.metadata?.name, error: parsed.error },
          'skipping invalid NodeTunnel',
        );
    }
    return out;
  }

  private secretOf(overlay: string, node: string): V1Secret | undefined {
    return this.deps.secrets.get(keySecretName(overlay, node), this.deps.namespace);
  }

  private async sync(scope: Scope, log: Logger): Promise<HandlerResult> {
    const { overlay, name } = scope;
    const spec = overlay.spec;
    const nodes = this.deps.nodes.list().map((n) => nodeView(n as V1Node));
    const existing = new Map(this.tunnelsOf(name).map((t) => [t.spec.nodeName, t]));
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
    const lost = this.lostKeySecrets(scope, members, existing);
    if (lost.length > 0) {
      // Old keys are gone with their Secret and are never re-created: everything moves to a new epoch.
      scope.epoch += 1;
      scope.events.push({
        type: 'Warning',
        reason: 'KeySecretReplaced',
        message: `key Secret of ${listNames(lost)} was deleted or corrupted; new keys at epoch ${scope.epoch}`,
      });
      log.warn({ nodes: lost, epoch: scope.epoch }, 'key Secret lost; moving to a new epoch');
      await this.writeStatus(scope, { epochOnly: true });
    }
    const publicKeys = await this.syncSecrets(scope, members, log);
    await this.syncTunnels(scope, desired.tunnels, existing, publicKeys);
    await this.deleteStaleSecrets(scope, new Set(desired.tunnels.keys()));

    const memory = this.memory.get(name) ?? {
      pairs: new Map(),
      members: new Set(),
      unusable: new Set(),
      exhausted: false,
    };
    const pairMembers = members.map((m) => m.name);
    const pairs = computePairs(
      pairMembers,
      [...existing.values()]
        .filter((t) => desired.tunnels.has(t.spec.nodeName))
        .map((t) => ({ node: t.spec.nodeName, peers: t.status?.peers ?? [] })),
    );
    this.pairEvents(scope, memory, pairs.pairs);
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
      pairs: new Map(pairs.pairs.map((p) => [`${p.a}/${p.b}`, p.state])),
      members: new Set(desired.tunnels.keys()),
      unusable,
      exhausted: desired.exhausted.length > 0,
    });

    const conditions = this.conditions(scope, {
      unusable: desired.unusable,
      exhausted: desired.exhausted,
      pairs,
    });
    await this.writeStatus(scope, {
      status: {
        nodes: desired.tunnels.size,
        pairs: { total: pairs.total, encrypted: pairs.encrypted, degraded: pairs.degraded },
        encryptedSummary: `${pairs.encrypted}/${pairs.total}`,
        conditions,
      },
    });
    await this.flushEvents(scope);
  }

  /**
   * Nodes whose key Secret is missing or unreadable although keys from it were already in use (its agent
   * applied the current epoch). A Secret that never existed is simply created; one that disappeared after use
   * must not come back with the same keys' epoch.
   */
  private lostKeySecrets(scope: Scope, members: Member[], tunnels: Map<string, NodeTunnel>): string[] {
    const lost: string[] = [];
    for (const m of members) {
      const secret = this.secretOf(scope.name, m.name);
      const usable = secret && decodeKeySecretData(secret.data).ok;
      if (usable) continue;
      const status = tunnels.get(m.name)?.status;
      const inUse =
        status?.appliedEpoch === scope.epoch && (status.peers ?? []).some((p) => p.epoch === scope.epoch);
      if (inUse) lost.push(m.name);
    }
    return lost;
  }

  private async syncSecrets(scope: Scope, members: Member[], log: Logger): Promise<Map<string, string>> {
    const { overlay, name } = scope;
    const publicKeys = new Map<string, string>();
    for (const m of members) {
      if (!m.envelopePublicKey) continue; // nothing can be sealed to this node yet
      const secretName = keySecretName(name, m.name);
      const current = this.secretOf(name, m.name);
      const decoded = current ? decodeKeySecretData(current.data) : undefined;
      const existing: KeySecretPayload | undefined = decoded?.ok ? decoded.payload : undefined;
      const plan = planKeySecret(
        {
          overlay: name,
          node: m.name,
          epoch: scope.epoch,
          presharedKeys: overlay.spec.keys.presharedKeys,
          custody: overlay.spec.keys.custody,
          members,
          existing,
        },
        this.deps.sealer,
      );
      if (plan.publicKey) publicKeys.set(m.name, plan.publicKey);
      if (!plan.changed && current) continue;
      const body: V1Secret = {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: {
          name: secretName,
          namespace: this.deps.namespace,
          labels: { ...MANAGED_BY, [OVERLAY_LABEL]: name, [NODE_LABEL]: m.name },
          ...(current?.metadata?.resourceVersion
            ? { resourceVersion: current.metadata.resourceVersion }
            : {}),
        },
        type: KEY_SECRET_TYPE,
        data: encodeKeySecretData(plan.payload),
      };
      if (current) await this.deps.writer.replaceSecret(this.deps.namespace, secretName, body);
      else {
        try {
          await this.deps.writer.createSecret(this.deps.namespace, body);
        } catch (err) {
          // Our own earlier create, not yet in the cache: its watch event brings us back to compare.
          if (!isAlreadyExists(err)) throw err;
          log.debug({ secret: secretName }, 'key Secret already exists; waiting for the cache');
          publicKeys.delete(m.name); // the key planned here was not stored: do not announce it
          continue;
        }
      }
      if (plan.newPairs.length > 0) {
        log.info({ node: m.name, pairs: plan.newPairs.length, epoch: scope.epoch }, 'sealed new pair keys');
      }
    }
    return publicKeys;
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

  private async deleteStaleSecrets(scope: Scope, keep: Set<string>): Promise<void> {
    for (const s of this.deps.secrets.list(this.deps.namespace)) {
      const labels = s.metadata?.labels ?? {};
      if (labels[OVERLAY_LABEL] !== scope.name) continue;
      const node = labels[NODE_LABEL];
      if (node !== undefined && keep.has(node)) continue;
      try {
        await this.deps.writer.deleteSecret(this.deps.namespace, s.metadata?.name ?? '');
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
  }

  private pairEvents(
    scope: Scope,
    memory: Memory,
    pairs: ReadonlyArray<{ a: string; b: string; state: PairState; reason: string }>,
  ): void {
    // The first pass after a start only learns the baseline: a restarted operator does not re-announce.
    if (!this.memory.has(scope.name)) return;
    const encrypted: string[] = [];
    const lost: string[] = [];
    for (const p of pairs) {
      const before = memory.pairs.get(`${p.a}/${p.b}`);
      if (p.state === 'Encrypted' && before !== 'Encrypted') encrypted.push(`${p.a}/${p.b}`);
      if (p.state !== 'Encrypted' && before === 'Encrypted') lost.push(`${p.a}/${p.b} (${p.reason})`);
    }
    if (encrypted.length > 0) {
      scope.events.push({
        type: 'Normal',
        reason: 'PairEncrypted',
        message: `${encrypted.length} pair(s) encrypted: ${listNames(encrypted)}`,
      });
    }
    if (lost.length > 0) {
      scope.events.push({
        type: 'Warning',
        reason: 'PairLostEncryption',
        message: `${lost.length} pair(s) lost encryption: ${listNames(lost)}`,
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
    conditions = setCondition(
      conditions,
      allEncrypted && problems.length === 0
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
            reason: problems[0]?.reason ?? 'PairsPending',
            message: `${facts.pairs.encrypted}/${facts.pairs.total} pairs encrypted`,
            observedGeneration: gen,
          },
      scope.now,
    );
    return conditions;
  }

  private async writeStatus(
    scope: Scope,
    what: { status: Partial<NonNullable<OverlayNetwork['status']>> } | { paused: true } | { epochOnly: true },
  ): Promise<void> {
    const prior = scope.overlay.status ?? {};
    let next: NonNullable<OverlayNetwork['status']>;
    if ('epochOnly' in what) {
      next = { ...prior, epoch: scope.epoch };
    } else if ('paused' in what) {
      const gen = scope.raw.metadata?.generation;
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
        observedGeneration: scope.raw.metadata?.generation,
      };
    }
    if (isDeepStrictEqual(stripUndefined(next), stripUndefined(prior))) return;
    await this.deps.writer.replaceOverlayStatus(scope.name, scope.raw.metadata?.resourceVersion, next);
    // Later steps of this pass compare against what was just written.
    scope.overlay = { ...scope.overlay, status: next };
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
    for (const s of this.deps.secrets.list(this.deps.namespace)) {
      if (s.metadata?.labels?.[OVERLAY_LABEL] !== name) continue;
      try {
        await this.deps.writer.deleteSecret(this.deps.namespace, s.metadata?.name ?? '');
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
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
