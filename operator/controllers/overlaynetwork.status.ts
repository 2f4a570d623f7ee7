// The status phase: every OverlayNetwork status write and the pass's Events. A write happens only when the
// status changed (STYLE 7); one that changes only pair counts waits statusIntervalMs after the overlay's last
// write (they move with every agent report); observedGeneration moves only with a complete, successful pass.
import type { KubernetesObject } from '@kubernetes/client-node';
import type { OverlayNetwork } from '../../api/v1alpha1/overlaynetwork.types.js';
import { describeError } from '../../lib/kube.js';
import { deepEqual, setCondition } from '../../lib/runtime/conditions.js';
import { countsOnly, invalidSpecCondition, pausedCondition, rotatingCondition } from '../plan/conditions.js';
import { NotLeaderError } from '../writer.js';
import {
  requeueWithin,
  type OverlayControllerDeps,
  type OverlayStatus,
  type Scope,
} from './overlaynetwork.scope.js';

/** See OverlayControllerDeps.statusIntervalMs. */
export const DEFAULT_STATUS_INTERVAL_MS = 2_000;

export class StatusWriter {
  /** when this process last wrote each overlay's status (ms), for coalescing count-only changes */
  private readonly lastWrite = new Map<string, number>();
  private readonly intervalMs: number;

  constructor(
    private readonly deps: Pick<OverlayControllerDeps, 'writer' | 'logger' | 'statusIntervalMs'>,
    private readonly now: () => Date,
  ) {
    this.intervalMs = deps.statusIntervalMs ?? DEFAULT_STATUS_INTERVAL_MS;
  }

  forget(overlay: string): void {
    this.lastWrite.delete(overlay);
  }

  /**
   * Writes progress mid-pass (epoch, rotation) before anything depends on it; not a completed pass. A
   * rotation's start and cutover carry the Rotating condition along, so the pass's last write does not
   * repeat it; a completion leaves Rotating=False to that last write, which brings the new pair counts with it.
   */
  async persist(scope: Scope, fields: Partial<OverlayStatus>): Promise<void> {
    const conditions = setCondition(
      scope.overlay.status?.conditions ?? [],
      rotatingCondition({
        generation: scope.raw.metadata?.generation,
        epoch: scope.epoch,
        rotation: scope.rotation,
      }),
      scope.now,
    );
    await this.write(scope, {
      status: { ...scope.deferred, ...fields, ...(scope.rotation ? { conditions } : {}) },
      partial: true,
    });
    scope.deferred = undefined;
  }

  async write(
    scope: Scope,
    what: { status: Partial<OverlayStatus>; partial?: boolean } | { paused: true },
  ): Promise<void> {
    const prior: OverlayStatus = scope.overlay.status ?? {};
    const gen = scope.raw.metadata?.generation;
    let next: OverlayStatus;
    if ('paused' in what) {
      next = {
        ...prior,
        conditions: setCondition(prior.conditions, pausedCondition(gen), scope.now),
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
    if (deepEqual(cleaned, before)) return;
    // Pair counts move with every agent report (a rollout or a rotation at 1,000 nodes brings ~1,000 within
    // seconds): a write that changes only counts waits until statusIntervalMs after the overlay's last write.
    const nowMs = this.now().getTime();
    const last = this.lastWrite.get(scope.name);
    if (!('paused' in what) && !what.partial && last !== undefined && countsOnly(before, cleaned)) {
      const wait = last + this.intervalMs - nowMs;
      if (wait > 0) {
        requeueWithin(scope, wait);
        return;
      }
    }
    // A merge patch keeps keys it does not mention: a field that went away, at any depth, is sent as null.
    const body = withRemovals(before, cleaned);
    await this.deps.writer.replaceOverlayStatus(scope.name, scope.raw.metadata?.resourceVersion, body);
    this.lastWrite.set(scope.name, nowMs);
    // Later steps of this pass compare against what was just written.
    scope.overlay = { ...scope.overlay, status: cleaned };
    scope.raw = { ...scope.raw, metadata: { ...scope.raw.metadata, resourceVersion: undefined } };
  }

  /** Ready=False, InvalidSpec: the whole pass of an overlay whose spec does not validate. */
  async writeInvalid(raw: KubernetesObject, error: string): Promise<void> {
    const status = (raw as { status?: OverlayNetwork['status'] }).status ?? {};
    const conditions = setCondition(
      status.conditions,
      invalidSpecCondition(raw.metadata?.generation, error),
      this.now(),
    );
    const next = { ...status, conditions };
    if (deepEqual(stripUndefined(next), stripUndefined(status))) return;
    await this.deps.writer.replaceOverlayStatus(
      raw.metadata?.name ?? '',
      raw.metadata?.resourceVersion,
      next,
    );
  }

  /** Records the pass's Events, best effort, and empties the list. */
  async flushEvents(scope: Scope): Promise<void> {
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
}

/** The JSON form of a value: a key with an undefined value is the same as no key (what the API stores). */
export function stripUndefined<T>(v: T): T {
  return JSON.parse(JSON.stringify(v ?? null)) as T;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * `after` as a JSON merge patch (RFC 7386) over `before`: every key of `before` that `after` lacks, also inside
 * nested objects (e.g. pairs.unknown), is set to null; arrays are replaced whole.
 */
export function withRemovals(before: object, after: object): Record<string, unknown> {
  const out: Record<string, unknown> = { ...after };
  for (const [key, was] of Object.entries(before)) {
    const now = (after as Record<string, unknown>)[key];
    if (!(key in after)) out[key] = null;
    else if (isRecord(was) && isRecord(now)) out[key] = withRemovals(was, now);
  }
  return out;
}
