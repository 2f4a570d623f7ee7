// Key material of one agent pass (STYLE 9, 10): this node's WireGuard key at an epoch (Node custody: kept
// in the state dir; Operator custody: unsealed from its key Secret), the rotation's staged key and every PSK
// at the target epoch, and each pair's pre-shared key unsealed from the key Secrets. Opened keys are cached per
// sealed value in the overlay's runtime and zeroed when a pass no longer uses them (agent.ts). Values sealed
// hybrid (lib/hybrid.ts) open with the node key of the ML-KEM exchange they name, found in this node's own
// Secret of the epoch; its decapsulation is cached per exchange (HybridOpener).
import { IDENTITY_NAME, IDENTITY_PUBLIC_KEY } from '../lib/contract/identity.js';
import {
  decodeKeySecretData,
  keySecretEpochName,
  keySecretName,
  pairKey,
  privateKeyContext,
  pskContext,
  type KemEntry,
  type KeySecretPayload,
} from '../lib/contract/keysecret.js';
import { hybridFingerprint } from '../lib/hybrid.js';
import { decodeKey, fingerprint, publicKeyOf, validateKey, type WgKeyPair } from '../lib/keys.js';
import { describeError } from '../lib/kube.js';
import type { Logger } from '../lib/log.js';
import type { Informer } from '../lib/runtime/informer.js';
import type { RawObject } from '../lib/runtime/rest.js';
import { SealError, unseal } from '../lib/seal.js';
import type { RotationScope } from './epoch.js';
import { HybridOpener, KemMissing } from './hybridopen.js';
import { OPERATOR_KEY_FILE, type EnvelopeKeys, type KeyStore } from './keystore.js';
import type { KeyResult, OwnKey, Pass, PskResult } from './pass.js';
import { peerTunnels } from './peerplan.js';

export class KeyMaterial {
  constructor(
    private readonly node: string,
    private readonly namespace: string,
    private readonly keys: KeyStore,
    private readonly identity: Informer<RawObject>,
    private readonly envelope: () => EnvelopeKeys | undefined,
    private readonly log: Logger,
  ) {}

  private readonly hybrid = new HybridOpener();

  private pinned: Uint8Array | undefined;
  private pinLoaded = false;
  private warnedAbout: string | undefined;

  /**
   * Step 1 of a pass, local only: the epoch to run and this node's key for it. Staging prepares the rotation's
   * target epoch (`next`, and `staged` once every PSK at it is there too: the acknowledgement); from the
   * cutover instant on it is the epoch run. `own` carries a reason when there is no key to run.
   */
  async forPass(
    p: Pass,
  ): Promise<{ run: number; own: KeyResult; next: OwnKey | undefined; staged: boolean }> {
    const { rt, log, view } = p;
    if (!rt.stateReady) {
      await this.keys.ensureOverlay(p.overlay);
      rt.stateReady = true;
    }
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
    return { run, own, next, staged };
  }

  /** The key the operator publishes in its identity ConfigMap, if valid. */
  private publishedOperatorKey(): Uint8Array | undefined {
    const cm = this.identity.get(IDENTITY_NAME, this.namespace) as
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

  /**
   * The operator's sealing key, pinned on first use (trust on first use, kept in the state dir): sealed
   * material opens only with it. A different published key is not followed; it is reported as `problem`
   * (someone who can write the ConfigMap must not be able to make this node accept material sealed by them).
   */
  async operatorKey(): Promise<{ key: Uint8Array | undefined; problem?: string }> {
    if (!this.pinLoaded) {
      this.pinned = await this.keys.pinnedOperatorKey();
      this.pinLoaded = true;
    }
    const published = this.publishedOperatorKey();
    if (!this.pinned) {
      if (!published) return { key: undefined };
      await this.keys.pinOperatorKey(published);
      this.pinned = published;
      this.log.info({ sealingKey: fingerprint(published) }, "operator's sealing key pinned");
      return { key: published };
    }
    if (published && Buffer.compare(Buffer.from(published), Buffer.from(this.pinned)) !== 0) {
      const fp = fingerprint(published);
      if (this.warnedAbout !== fp) {
        this.warnedAbout = fp;
        this.log.warn(
          { published: fp, pinned: fingerprint(this.pinned) },
          "the operator's published sealing key is not the pinned one; keeping the pinned key",
        );
      }
      return {
        key: this.pinned,
        problem:
          `the operator identity publishes sealing key ${fp}, not ${fingerprint(this.pinned)} which this ` +
          `node pinned on first use: only material sealed by the pinned key is opened (if the operator's ` +
          `identity was replaced on purpose, remove ${OPERATOR_KEY_FILE} from the agent's state dir on every node)`,
      };
    }
    return { key: this.pinned };
  }

  secretPayload(p: Pass, name: string): KeySecretPayload | undefined {
    const obj = p.w.secrets.get(name, this.namespace);
    if (!obj) return undefined;
    const rv = obj.metadata?.resourceVersion;
    const cached = p.rt.secrets.get(name);
    if (cached && cached.rv === rv) return cached.payload;
    const decoded = decodeKeySecretData((obj as { data?: Record<string, string> }).data);
    let payload: KeySecretPayload | undefined;
    let error: string | undefined;
    if (!decoded.ok) {
      error = decoded.error;
      p.log.warn({ secret: name, error }, 'ignoring undecodable key Secret');
    } else if (decoded.payload.overlay !== p.overlay) {
      error = 'it belongs to another overlay';
      p.log.warn({ secret: name }, 'key Secret belongs to another overlay');
    } else payload = decoded.payload;
    p.rt.secrets.set(name, { rv, payload, ...(error !== undefined ? { error } : {}) });
    return payload;
  }

  /**
   * Opens a value the operator sealed to this node; results are cached per sealed value for the next pass.
   * `kems`: the KEM entries of the Secrets at hand (a hybrid value names one; KemMissing when it is not there).
   */
  open(p: Pass, sealed: string, operatorKey: Uint8Array, context: string, kems: KemEntry[]): Uint8Array {
    const id = `${Buffer.from(operatorKey).toString('base64')}|${context}|${sealed}`;
    p.usedSealed.add(id);
    let key = p.rt.opened.get(id);
    if (!key) {
      const env = this.envelope()!;
      const opened = this.hybrid.handles(sealed)
        ? this.hybrid.open(sealed, this.node, env, operatorKey, context, kems)
        : unseal(sealed, operatorKey, env, context);
      key = validateKey(opened, 'unsealed key');
      p.rt.opened.set(id, key);
    }
    return key;
  }

  /** The fingerprints values sealed to this node may carry: X25519 only, and hybrid once it has an ML-KEM key. */
  private sealedToMe(fp: string | undefined): boolean {
    const env = this.envelope()!;
    // Classical values stay good while the operator seals them again, hybrid (after this node's upgrade).
    if (fp === fingerprint(env.publicKey)) return true;
    return env.kem !== undefined && fp === hybridFingerprint(env.publicKey, env.kem.publicKey);
  }

  presharedKey(p: Pass, peer: string, peerSecret: string | undefined, epoch: number): PskResult {
    if (p.presharedKeys === 'Disabled') return { kind: 'disabled' };
    if (!p.operatorKey)
      return { kind: 'missing', message: 'the operator has not published its sealing key yet' };
    const [a, b] = pairKey(this.node, peer);
    const names = [
      secretAt(p.overlay, this.node, p.tunnel.spec.secretRef?.name, epoch),
      secretAt(p.overlay, peer, peerSecret, epoch),
    ];
    const payloads = names.map((n) => this.secretPayload(p, n));
    const pair = payloads
      .flatMap((payload) => payload?.pairs ?? [])
      .find((x) => x.a === a && x.b === b && x.epoch === epoch);
    const sealed = pair?.sealed[this.node];
    if (!pair || sealed === undefined) {
      const unread = names.flatMap((n) => {
        const error = p.rt.secrets.get(n)?.error;
        return error === undefined ? [] : [`${n}: ${error}`];
      });
      return {
        kind: 'missing',
        message:
          unread.length > 0
            ? `no pre-shared key for this pair at epoch ${epoch}: key Secret not read (${unread.join('; ')})`
            : `no pre-shared key for this pair at epoch ${epoch} yet`,
      };
    }
    if (!this.sealedToMe(pair.sealedTo[this.node])) {
      return {
        kind: 'missing',
        message: 'pre-shared key is sealed to an earlier envelope key; waiting for a re-seal',
      };
    }
    let key: Uint8Array;
    try {
      const kems = payloads.flatMap((payload) => payload?.kems ?? []);
      key = this.open(p, sealed, p.operatorKey, pskContext(p.overlay, a, b, epoch), kems);
    } catch (err) {
      if (err instanceof KemMissing) return { kind: 'missing', message: err.message };
      p.log.warn(
        { peer, epoch, pskFingerprint: pair.fingerprint, err: describeError(err) },
        'pre-shared key refused',
      );
      return {
        kind: 'invalid',
        message: isContextError(err)
          ? `pre-shared key was sealed for another pair, epoch or overlay, not ${a}/${b} at epoch ${epoch}`
          : "pre-shared key does not open with the operator's sealing key",
      };
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
  async ownKeyAt(p: Pass, epoch: number): Promise<KeyResult> {
    if (p.custody === 'Operator') return this.operatorKeyAt(p, epoch, false);
    return (await this.storedNodeKey(p, epoch)) ?? (await this.newNodeKey(p, epoch));
  }

  /**
   * Stages the rotation's target epoch: this node's key for it and every PSK at it for the current peers,
   * unsealed and validated; nothing is applied. `current` is the key at the overlay's epoch (absent at a
   * cutover). Missing material means "not yet": the Secret watch brings the agent back.
   */
  async stage(
    p: Pass,
    r: { target: number; scope: RotationScope },
    current: OwnKey | undefined,
  ): Promise<{ key?: OwnKey; waiting?: string }> {
    const key = await this.stagedKey(p, r, current);
    if ('reason' in key) return { waiting: key.message };
    if (p.presharedKeys === 'PerPair') {
      for (const t of peerTunnels(p)) {
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
  async stagedKey(
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

  async storedNodeKey(p: Pass, epoch: number): Promise<WgKeyPair | undefined> {
    const cached = p.rt.nodeKeys.get(epoch);
    if (cached) return cached;
    const stored = await this.keys.storedWireGuardKeyPair(p.overlay, epoch);
    if (stored) p.rt.nodeKeys.set(epoch, stored);
    return stored;
  }

  async newNodeKey(p: Pass, epoch: number): Promise<WgKeyPair> {
    const pair = await this.keys.newWireGuardKeyPair(p.overlay, epoch);
    p.rt.nodeKeys.set(epoch, pair);
    p.log.info({ publicKey: fingerprint(pair.publicKey), epoch }, 'generated a WireGuard key');
    return pair;
  }

  /** Node custody: forget the keys of epochs below `keepFrom` (never used again: epochs only increase). */
  async pruneNodeKeys(p: Pass, keepFrom: number): Promise<void> {
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
  operatorKeyAt(p: Pass, epoch: number, exact: boolean): KeyResult {
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
      privateKey = this.open(
        p,
        entry.sealed,
        p.operatorKey,
        privateKeyContext(p.overlay, this.node, entry.epoch),
        payload?.kems ?? [],
      );
    } catch (err) {
      if (err instanceof KemMissing) return { reason: 'AwaitingKeys', message: err.message };
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
}

/** A node's key Secret of `epoch`, from the stem its tunnel's secretRef names (the default stem without one). */
function secretAt(overlay: string, node: string, stem: string | undefined, epoch: number): string {
  return keySecretEpochName(stem ?? keySecretName(overlay, node), epoch);
}

/** A value that opened but was sealed for another context (lib/seal.ts, contextTag). */
function isContextError(err: unknown): boolean {
  return err instanceof SealError && err.message.includes('another context');
}
