// The key Secrets phase: one Secret per node and epoch holding the node's sealed pair keys (and, in Operator
// custody, its sealed private key). Planning is pure (plan/keysecret.ts); this phase decides which Secrets
// need a plan at all, runs the plans with bounded concurrency and one CPU-heavy step at a time, writes what
// changed, notices Secrets lost after use, and deletes those of old epochs and departed nodes.
import type { KubernetesObject, V1Secret } from '@kubernetes/client-node';
import type { NodeTunnel } from '../../api/v1alpha1/nodetunnel.types.js';
import { EPOCH_LABEL, NODE_LABEL, OVERLAY_LABEL } from '../../api/v1alpha1/groupversion.js';
import {
  decodeKeySecretData,
  encodeKeySecretData,
  KEY_SECRET_TYPE,
  keySecretNameAt,
  PLAN_DIGEST_ANNOTATION,
  PUBLIC_KEY_ANNOTATION,
  type KemEntry,
  type KeySecretPayload,
  type SealedPrivateKey,
} from '../../lib/contract/keysecret.js';
import { hybridKemId } from '../../lib/hybrid.js';
import { rowHasEncryptedAt, type PeerRow } from '../../lib/contract/pairs.js';
import { describeError, isAlreadyExists, isNotFound, isTimeout } from '../../lib/kube.js';
import type { Logger } from '../../lib/log.js';
import { forEachLimit, Turns, yieldToEventLoop } from '../../lib/runtime/cooperative.js';
import { KemBook } from '../plan/kembook.js';
import { planDigests, planKeySecretSteps, servingPrivateKey, type Member } from '../plan/keysecret.js';
import { forgedEntries, withoutForged, type Forged } from '../plan/keyverify.js';
import {
  MANAGED_BY,
  requeueWithin,
  YIELD_EVERY,
  type OverlayControllerDeps,
  type Scope,
} from './overlaynetwork.scope.js';

/** An entry of a node's key Secret that the operator did not seal (plan/keyverify.ts). */
export interface AlteredEntry extends Forged {
  node: string;
}

/** Key Secrets read, planned and written at once. */
const SECRET_CONCURRENCY = 2;

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

export class KeySecrets {
  /** by key Secret name */
  private readonly memo = new Map<string, KeySecretMemo>();
  /** by overlay: the stale key Secrets the last delete-collection request removed (the cache may lag) */
  private readonly removed = new Map<string, Set<string>>();
  /** CPU-heavy steps of concurrent Secret work, one at a time */
  private readonly cpu = new Turns();
  /** ML-KEM key exchanges with the nodes, in memory only (hybrid sealing, issue #17) */
  readonly kems: KemBook;

  constructor(
    private readonly deps: Pick<
      OverlayControllerDeps,
      'namespace' | 'secrets' | 'secretReader' | 'writer' | 'sealer'
    >,
  ) {
    this.kems = new KemBook(deps.sealer.sender);
  }

  /** The overlay is gone: forget what was known of its Secrets. */
  forget(overlay: string): void {
    this.removed.delete(overlay);
    this.kems.retain(overlay);
    for (const [secret, m] of this.memo) if (m.overlay === overlay) this.memo.delete(secret);
  }

  /**
   * Nodes whose key Secret is missing or unreadable although keys of the current epoch were already in use
   * (its agent reports a peer Encrypted at that epoch). A Secret that never existed is simply created; one that disappeared after use
   * must not come back with the same keys' epoch.
   */
  async lost(
    scope: Scope,
    members: Member[],
    tunnels: Map<string, NodeTunnel>,
    rows: Map<string, PeerRow | undefined>,
  ): Promise<{ lost: string[]; altered: AlteredEntry[] }> {
    const lost: string[] = [];
    const altered: AlteredEntry[] = [];
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
      const check = secret ? await this.intact(scope, m.name, secret, members) : 'missing';
      if (check === 'missing') lost.push(m.name);
      else if (check !== 'intact') altered.push(...check.map((f) => ({ node: m.name, ...f })));
    }
    return { lost, altered };
  }

  /**
   * Every member's key Secret of the current epoch and, during a rotation, of the target epoch. Returns the
   * public keys at the current epoch (Operator custody).


  /** The key Secret's metadata at `epoch` (the cache holds no data). */
  private secretOf(overlay: string, node: string, epoch: number): KubernetesObject | undefined {
    return this.deps.secrets.get(keySecretNameAt(overlay, node, epoch), this.deps.namespace);
  }

  /**
   * Whether the key Secret (cached metadata) holds decodable material. Known when this process wrote or read
   * it at this resourceVersion; a Secret carrying our plan digest that we never saw is trusted (a restarted


  /**
   * Whether the key Secret (cached metadata) holds decodable material that the operator sealed. Known when
   * this process wrote or read it at this resourceVersion; a Secret carrying our plan digest that we never saw
   * is trusted (a restarted operator reads nothing). Otherwise, above all when it changed behind our back, it
   * is read, decoded and every value checked in its context (forgedEntries): 'missing' when it is gone or
   * does not decode, the entries that are not what the operator sealed when some are not.
   */
  private async intact(
    scope: Scope,
    node: string,
    secret: KubernetesObject,
    members: readonly Member[],
  ): Promise<'intact' | 'missing' | Forged[]> {
    const name = secret.metadata?.name ?? '';
    const resourceVersion = secret.metadata?.resourceVersion;
    const memo = this.memo.get(name);
    if (resourceVersion && memo?.resourceVersion === resourceVersion) return 'intact';
    if (!memo && secret.metadata?.annotations?.[PLAN_DIGEST_ANNOTATION]) return 'intact';
    const read = await this.readKeySecret(name);
    if (!read?.decoded.ok) return 'missing';
    const payload = read.decoded.payload;
    const forged = await this.cpu.run(() =>
      forgedEntries(
        payload,
        { overlay: scope.name, node, epoch: scope.epoch, members },
        this.deps.sealer,
        this.kems,
      ),
    );
    if (forged.length > 0) return forged;
    if (read.resourceVersion) {
      const epoch = secret.metadata?.labels?.[EPOCH_LABEL];
      this.memo.set(name, { overlay: scope.name, epoch, resourceVersion: read.resourceVersion });
    }
    return 'intact';
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

  /**
   * Every member's key Secret of the current epoch and, during a rotation, of the target epoch. Returns the
   * public keys at the current epoch (Operator custody).
   */
  async sync(scope: Scope, members: Member[], log: Logger): Promise<Map<string, string>> {
    const { overlay, name } = scope;
    const publicKeys = new Map<string, string>();
    const common = {
      overlay: name,
      presharedKeys: overlay.spec.keys.presharedKeys,
      custody: overlay.spec.keys.custody,
    };
    const epochs: Array<{ epoch: number; newPrivateKey: boolean }> = [
      { epoch: scope.epoch, newPrivateKey: false },
      ...(scope.rotation
        ? [{ epoch: scope.rotation.targetEpoch, newPrivateKey: scope.rotation.scope === 'Keys' }]
        : []),
    ];
    // A PSK-only rotation carries each node's private key (Operator custody) from its current Secret.
    const carries = common.custody === 'Operator' && scope.rotation?.scope === 'PresharedKeys';
    // Everything each plan depends on besides the Secret itself, for all members in one O(N) pass.
    const digests = new Map(epochs.map(({ epoch }) => [epoch, planDigests({ ...common, epoch, members })]));
    // Round 2: nodes sealed to, in round 1, with a key exchange their own Secret does not hold yet (made after
    // an operator restart by another node's plan): their Secret is rewritten with it (plan/kembook.ts).
    for (let round = 1; round <= 2; round++) {
      const work = await this.round(scope, members, epochs, digests, carries, common, publicKeys, log, round);
      // Reads, plans and writes overlap: at 1,000 nodes one after another they took ~50 s of round trips.
      await forEachLimit(work, SECRET_CONCURRENCY, (job) => job());
      if (!epochs.some(({ epoch }) => this.kems.unrecordedNodes(name, epoch).length > 0)) break;
    }
    return publicKeys;
  }

  /** The jobs of one round of sync: every member's Secrets (round 1), those with unrecorded exchanges (2). */
  private async round(
    scope: Scope,
    members: Member[],
    epochs: Array<{ epoch: number; newPrivateKey: boolean }>,
    digests: Map<number, Map<string, string>>,
    carries: boolean,
    common: { overlay: string; presharedKeys: 'PerPair' | 'Disabled'; custody: 'Node' | 'Operator' },
    publicKeys: Map<string, string>,
    log: Logger,
    round: number,
  ): Promise<Array<() => Promise<void>>> {
    const work: Array<() => Promise<void>> = [];
    for (const { epoch, newPrivateKey } of epochs) {
      const only = round > 1 ? new Set(this.kems.unrecordedNodes(scope.name, epoch)) : undefined;
      let i = 0;
      for (const m of members) {
        if (++i % YIELD_EVERY === 0) await yieldToEventLoop();
        if (!m.envelopePublicKey) continue; // nothing can be sealed to this node yet
        if (only && !only.has(m.name)) continue;
        const current = epoch === scope.epoch;
        const secret = this.job(
          scope,
          m,
          members,
          epoch,
          digests.get(epoch)?.get(m.name) ?? '',
          log,
          (existing, carried) =>
            planKeySecretSteps(
              {
                ...common,
                existing,
                carried: carried?.key,
                carriedKem: carried?.kem,
                epoch,
                members,
                newPrivateKey,
                node: m.name,
              },
              { sealer: this.deps.sealer, kems: this.kems },
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
    return work;
  }

  /** Operator custody: the private key a node's Secret of `epoch` holds, to carry into the next epoch. */
  private async carriedPrivateKey(
    overlay: string,
    node: string,
    epoch: number,
  ): Promise<{ key: SealedPrivateKey; kem: KemEntry | undefined } | undefined> {
    const read = await this.readKeySecret(keySecretNameAt(overlay, node, epoch));
    if (!read?.decoded.ok) return undefined;
    const key = servingPrivateKey(read.decoded.payload);
    if (!key) return undefined;
    // Sealed hybrid: the exchange it names comes along (its Secret of `epoch` goes when the rotation ends).
    const id = hybridKemId(key.sealed);
    return { key, kem: read.decoded.payload.kems.find((k) => k.id === id && k.node === node) };
  }

  /**


  /**
   * One node's Secret of one epoch: its recorded public key (Operator custody) when it is up to date, else
   * the work (`run`) of bringing it up to date, resolving to the plan's public key. Up to date: the same
   * inputs as it was planned from (`inputs`, a plan digest), and the Secret is as planned (we saw this
   * resourceVersion, or it carries our digest and we never saw it change). A plan is random only when it
   * changes, so the Secret's data need not be read. With `carryFrom`, the private key of that epoch's Secret
   * is read and given to the plan (a PSK-only rotation in Operator custody).
   */
  private job(
    scope: Scope,
    m: Member,
    members: readonly Member[],
    epoch: number,
    inputs: string,
    log: Logger,
    plan: (
      existing: KeySecretPayload | undefined,
      carried: { key: SealedPrivateKey; kem: KemEntry | undefined } | undefined,
    ) => ReturnType<typeof planKeySecretSteps>,
    carryFrom: number | undefined,
  ): { publicKey: string | undefined } | { run: () => Promise<string | undefined> } {
    const { name } = scope;
    const secretName = keySecretNameAt(name, m.name, epoch);
    const current = this.deps.secrets.get(secretName, this.deps.namespace);
    const resourceVersion = current?.metadata?.resourceVersion;
    const annotations = current?.metadata?.annotations ?? {};
    const memo = this.memo.get(secretName);
    // A key exchange another plan sealed to this node with must get into its own Secret: not up to date.
    const upToDate =
      !this.kems.unrecorded(name, m.name, epoch) &&
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
      let existing: KeySecretPayload | undefined = decoded?.ok ? decoded.payload : undefined;
      // Changed behind our back since we wrote or read it: keep none of its entries that we did not seal.
      if (existing && memo && memo.resourceVersion !== stored?.resourceVersion) {
        const payload = existing;
        const forged = await this.cpu.run(() =>
          forgedEntries(
            payload,
            { overlay: name, node: m.name, epoch, members },
            this.deps.sealer,
            this.kems,
          ),
        );
        if (forged.length > 0) {
          log.warn(
            { secret: secretName, refused: forged },
            'key Secret holds values the operator did not seal',
          );
          existing = withoutForged(payload, forged);
        }
      }
      const planned = await this.cpu.steps(plan(existing, carried));
      const unchanged = !planned.changed && stored?.resourceVersion !== undefined;
      const data = unchanged ? undefined : await this.cpu.run(() => encodeKeySecretData(planned.payload));
      if (!data && stored?.resourceVersion) {
        if (planned.kemRecorded) this.kems.recorded(name, m.name, planned.kemRecorded);
        this.memo.set(secretName, {
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
        if (planned.kemRecorded) this.kems.recorded(name, m.name, planned.kemRecorded);
        this.memo.set(secretName, {
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

  /**
   * Deletes the key Secrets no longer needed: those of epochs other than the current one and a rotation's
   * target (after a completed rotation: all of the old epoch's, with one request), and those of nodes that
   * left the overlay.
   */
  async deleteStale(scope: Scope, keep: Set<string>, log: Logger): Promise<void> {
    const epochs = new Set([String(scope.epoch)]);
    if (scope.rotation) epochs.add(String(scope.rotation.targetEpoch));
    const ofOverlay = this.deps.secrets
      .list(this.deps.namespace)
      .filter((s) => s.metadata?.labels?.[OVERLAY_LABEL] === scope.name);
    const staleEpoch = (s: KubernetesObject) => !epochs.has(s.metadata?.labels?.[EPOCH_LABEL] ?? '');
    for (const [secret, m] of this.memo) {
      if (m.overlay === scope.name && !epochs.has(m.epoch ?? '')) this.memo.delete(secret);
    }
    this.kems.retain(scope.name, scope.epoch);
    // Secrets a delete-collection request already removed stay in the cache until their watch events arrive:
    // no second request for those.
    const stale = ofOverlay.filter(staleEpoch).map((s) => s.metadata?.name ?? '');
    const removed = this.removed.get(scope.name);
    if (stale.length === 0) this.removed.delete(scope.name);
    if (stale.length > 0 && !stale.every((n) => removed?.has(n))) {
      // The same selection as the cache filter above (the overlay's label in the key namespace); `notin` also
      // selects Secrets without the label (written before Secrets were per epoch).
      const selector = `${OVERLAY_LABEL}=${scope.name},${EPOCH_LABEL} notin (${[...epochs].join(',')})`;
      try {
        const deleted = await this.deps.writer.deleteSecrets(this.deps.namespace, selector);
        this.removed.set(scope.name, new Set(stale));
        if (deleted > 0) log.info({ deleted, kept: [...epochs] }, 'deleted key Secrets of old epochs');
      } catch (err) {
        // Thousands of large Secrets can take the API server longer than its request timeout. What it deleted
        // is gone; the next pass deletes the rest. Nothing waits on this, so the pass goes on.
        if (!isTimeout(err)) throw err;
        log.info({ error: describeError(err) }, 'deleting old key Secrets takes long; continuing next pass');
        requeueWithin(scope, 1000);
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

  /** Deletion: every key Secret of the overlay, with one request. */
  async deleteAll(overlay: string): Promise<void> {
    if (this.remaining(overlay) > 0) {
      await this.deps.writer.deleteSecrets(this.deps.namespace, `${OVERLAY_LABEL}=${overlay}`);
    }
  }

  /** How many key Secrets of the overlay the cache still shows. */
  remaining(overlay: string): number {
    return this.deps.secrets
      .list(this.deps.namespace)
      .filter((s) => s.metadata?.labels?.[OVERLAY_LABEL] === overlay).length;
  }
}
