// A cache plus watch for one resource kind (STYLE rule 4).
//
// Our own list+watch loop rather than client-node's ListWatch, because that one stops for good on a watch
// error (it only reports it), never asks for bookmarks, cannot notice a watch that silently stalls, and has
// no resync. This loop:
// - lists (paginated) and marks the cache synced after the first complete list;
// - watches from the list's resourceVersion with allowWatchBookmarks, and restarts the watch when it ends
//   (immediately), errors (with exponential backoff) or stalls (no event or bookmark within stallTimeoutMs);
// - on 410 Gone relists, diffing the new list against the cache so handlers see adds, updates and the
//   deletions that happened while disconnected;
// - optionally re-emits every cached object as an update every resyncPeriodMs, as a safety net.
//
// Cached objects are the API server's JSON (for core kinds and CRDs alike) and are shared with every
// caller: never mutate one; copy (structuredClone) before editing.
import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from '../log.js';
import { collectionPath, isGone, objectKey, type ResourceRef } from '../kube.js';
import { realClock, sleep, type Clock, type TimerHandle } from './clock.js';
import type { RuntimeMetrics } from './metrics.js';
import type {
  ListWatchClient,
  Query,
  RawList,
  RawObject,
  RequestOptions,
  WatchEvent,
  WatchHandle,
} from './rest.js';

export interface EventHandler<T> {
  onAdd?(obj: T): void;
  onUpdate?(oldObj: T, newObj: T): void;
  onDelete?(obj: T): void;
}

export interface InformerOptions {
  /** For logs and metrics; defaults to the resource plural (plus namespace). */
  name?: string;
  resource: ResourceRef;
  /** Watch one namespace only (namespaced kinds); omit for all namespaces or cluster-scoped kinds. */
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  /**
   * Cache metadata only (PartialObjectMetadata): for kinds whose bodies are large and read rarely, such as
   * the sealed key Secrets; whoever needs a body reads it from the API server when it needs it.
   */
  metadataOnly?: boolean;
  /**
   * Applied to every object as it arrives (list pages and watch events), before it is cached or handed to
   * handlers: to keep only what the process needs of large objects. It must not change name, namespace or
   * resourceVersion.
   */
  transform?: (obj: RawObject) => RawObject;
  client: ListWatchClient;
  /** List page size (default 500). */
  pageSize?: number;
  /** Server-side watch timeout; default a random 300–600 s so many watches do not reconnect together. */
  watchTimeoutSeconds?: number;
  /**
   * Restart the watch when nothing (event or bookmark) arrived for this long (default 90 s). The API
   * server's watch cache sends a bookmark about once a minute to watches that ask for them.
   */
  stallTimeoutMs?: number;
  /** Re-emit every cached object as an update at this interval; 0 (default) disables it. */
  resyncPeriodMs?: number;
  /** Backoff between failed lists / watches (default 500 ms doubling to 30 s). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  clock?: Clock;
  logger?: Logger;
  metrics?: RuntimeMetrics;
}

type WatchEnd = 'closed' | 'error' | 'stalled' | 'gone' | 'manual' | 'stopped';

export class Informer<T extends KubernetesObject = KubernetesObject> {
  readonly name: string;
  readonly resource: ResourceRef;
  private readonly opts: InformerOptions;
  private readonly path: string;
  private readonly clock: Clock;
  private readonly log: Logger | undefined;

  private readonly cache = new Map<string, T>();
  private readonly handlers = new Set<EventHandler<T>>();
  private rv = '';
  private synced = false;
  private syncWaiters: ((ok: boolean) => void)[] = [];
  private running = false;
  private stopController = new AbortController();
  private loop: Promise<void> | undefined;
  private currentWatch: { handle: WatchHandle; end: (reason: WatchEnd, err?: Error) => void } | undefined;
  private resyncTimer: TimerHandle | undefined;
  private failures = 0;

  constructor(opts: InformerOptions) {
    this.opts = opts;
    this.resource = opts.resource;
    this.path = collectionPath(opts.resource, opts.namespace);
    this.name =
      opts.name ?? (opts.namespace ? `${opts.resource.plural}/${opts.namespace}` : opts.resource.plural);
    this.clock = opts.clock ?? realClock;
    this.log = opts.logger?.child({ informer: this.name });
  }

  /** Register handlers; returns a function that removes them. Register before start() to see the first list. */
  addHandler(h: EventHandler<T>): () => void {
    this.handlers.add(h);
    return () => this.handlers.delete(h);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.stopController = new AbortController();
    this.loop = this.run();
    this.scheduleResync();
  }

  /** Stop watching; resolves when the loop has exited. The cache keeps its last contents. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.stopController.abort();
    this.currentWatch?.end('stopped');
    this.clock.clearTimeout(this.resyncTimer);
    this.resolveSyncWaiters(false);
    await this.loop;
  }

  /** True once the first complete list is in the cache. */
  hasSynced(): boolean {
    return this.synced;
  }

  /** Resolves true once synced, false if the informer is stopped or `signal` aborts first. */
  waitForSync(signal?: AbortSignal): Promise<boolean> {
    if (this.synced) return Promise.resolve(true);
    if (signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const onAbort = (): void => {
        this.syncWaiters = this.syncWaiters.filter((w) => w !== waiter);
        resolve(false);
      };
      const waiter = (ok: boolean): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve(ok);
      };
      this.syncWaiters.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  list(namespace?: string): T[] {
    const all = [...this.cache.values()];
    return namespace === undefined ? all : all.filter((o) => o.metadata?.namespace === namespace);
  }

  get(name: string, namespace?: string): T | undefined {
    return this.cache.get(namespace ? `${namespace}/${name}` : name);
  }

  /** By `namespace/name` (or `name` for cluster-scoped objects), the keys the work queue carries. */
  keys(): string[] {
    return [...this.cache.keys()];
  }

  /** The resourceVersion the next watch resumes from. */
  lastResourceVersion(): string {
    return this.rv;
  }

  /** True while a watch request is open (between restarts it is briefly false). */
  isWatching(): boolean {
    return this.currentWatch !== undefined;
  }

  /** End the current watch and start a new one from the last resourceVersion (tests, and the watchdog). */
  restartWatch(): void {
    this.currentWatch?.end('manual');
  }

  /** Throw the watch away and relist (as after 410 Gone). */
  relist(): void {
    this.rv = '';
    this.currentWatch?.end('manual');
  }

  private async run(): Promise<void> {
    const signal = this.stopController.signal;
    while (this.running) {
      if (this.rv === '') {
        try {
          await this.listAndReplace(signal);
        } catch (err) {
          if (!this.running) break;
          const delay = this.nextBackoff();
          this.log?.warn({ err, retryInMs: delay }, 'list failed');
          await sleep(this.clock, delay, signal);
          continue;
        }
      }
      const started = this.clock.now();
      const { reason, err, events } = await this.watchOnce();
      if (!this.running) break;
      this.opts.metrics?.watchRestarts.inc({ informer: this.name, reason });
      if (reason === 'manual') continue;
      // A watch that ends at once without delivering anything counts as a failure, so a server that keeps
      // closing watches (or answering 410 right after a fresh list) cannot make us spin.
      const quick = events === 0 && this.clock.now() - started < 1000;
      if (reason === 'gone') {
        this.log?.info({ resourceVersion: this.rv }, 'watch resourceVersion too old (410 Gone); relisting');
        this.rv = '';
        if (!quick || this.failures === 0) {
          this.failures = quick ? 1 : 0;
          continue;
        }
      } else if (reason === 'closed' && !quick) {
        this.failures = 0;
        continue;
      }
      const delay = this.nextBackoff();
      this.log?.warn({ reason, err, retryInMs: delay, resourceVersion: this.rv }, 'watch ended; restarting');
      await sleep(this.clock, delay, signal);
    }
  }

  private nextBackoff(): number {
    const base = this.opts.backoffBaseMs ?? 500;
    const max = this.opts.backoffMaxMs ?? 30_000;
    const delay = Math.min(max, base * 2 ** Math.min(this.failures, 30));
    this.failures++;
    return delay;
  }

  private requestOptions(): RequestOptions | undefined {
    return this.opts.metadataOnly ? { metadataOnly: true } : undefined;
  }

  private selectors(): Query {
    return { labelSelector: this.opts.labelSelector, fieldSelector: this.opts.fieldSelector };
  }

  private async listAll(signal: AbortSignal): Promise<{ items: RawObject[]; rv: string }> {
    const limit = this.opts.pageSize ?? 500;
    const items: RawObject[] = [];
    let cont: string | undefined;
    let page: RawList;
    do {
      try {
        page = await this.opts.client.list(
          this.path,
          { ...this.selectors(), limit, continue: cont },
          signal,
          this.requestOptions(),
        );
      } catch (err) {
        // The continue token expired between pages: fall back to one unpaginated list.
        if (cont !== undefined && isGone(err)) {
          page = await this.opts.client.list(this.path, this.selectors(), signal, this.requestOptions());
          const all = page.items ?? [];
          return { items: all.map((o) => this.ingest(o)), rv: page.metadata?.resourceVersion ?? '' };
        }
        throw err;
      }
      items.push(...(page.items ?? []).map((o) => this.ingest(o)));
      cont = page.metadata?.continue || undefined;
    } while (cont !== undefined);
    return { items, rv: page.metadata?.resourceVersion ?? '' };
  }

  /** Replace the cache with a fresh list and emit the differences. */
  private async listAndReplace(signal: AbortSignal): Promise<void> {
    const { items, rv } = await this.listAll(signal);
    if (!this.running) return;
    this.opts.metrics?.relists.inc({ informer: this.name });
    const fresh = new Map<string, T>();
    for (const item of items) fresh.set(objectKey(item), item as unknown as T);
    for (const [key, old] of [...this.cache]) {
      if (!fresh.has(key)) {
        this.cache.delete(key);
        this.emit('delete', old);
      }
    }
    for (const [key, obj] of fresh) {
      const old = this.cache.get(key);
      this.cache.set(key, obj);
      if (!old) this.emit('add', obj);
      else if (old.metadata?.resourceVersion !== obj.metadata?.resourceVersion) this.emit('update', obj, old);
    }
    this.rv = rv;
    this.updateGauge();
    if (!this.synced) {
      this.synced = true;
      this.log?.debug({ objects: this.cache.size }, 'cache synced');
      this.resolveSyncWaiters(true);
    }
  }

  private watchOnce(): Promise<{ reason: WatchEnd; err?: Error; events: number }> {
    return new Promise((resolve) => {
      let events = 0;
      let ended = false;
      let watchdog: TimerHandle | undefined;
      // Held in an object because onClose may run before client.watch() has returned the handle.
      const ref: { handle?: WatchHandle } = {};
      const stallMs = this.opts.stallTimeoutMs ?? 90_000;
      const end = (reason: WatchEnd, err?: Error): void => {
        if (ended) return;
        ended = true;
        this.clock.clearTimeout(watchdog);
        ref.handle?.abort();
        if (ref.handle && this.currentWatch?.handle === ref.handle) this.currentWatch = undefined;
        resolve({ reason, err, events });
      };
      const armWatchdog = (): void => {
        this.clock.clearTimeout(watchdog);
        watchdog = this.clock.setTimeout(() => end('stalled'), stallMs);
      };
      const timeoutSeconds = this.opts.watchTimeoutSeconds ?? Math.floor(300 + Math.random() * 300);
      const query: Query = {
        ...this.selectors(),
        resourceVersion: this.rv,
        allowWatchBookmarks: true,
        timeoutSeconds,
      };
      const handle = this.opts.client.watch(
        this.path,
        query,
        {
          onEvent: (ev) => {
            if (ended) return;
            if (ev.type !== 'ERROR') events++;
            armWatchdog();
            this.handleEvent(ev, end);
          },
          onClose: (err) => {
            if (err) end(isGone(err) ? 'gone' : 'error', err);
            else end('closed');
          },
        },
        this.requestOptions(),
      );
      ref.handle = handle;
      if (ended) {
        handle.abort();
        return;
      }
      this.currentWatch = { handle, end };
      armWatchdog();
    });
  }

  private handleEvent(ev: WatchEvent, end: (reason: WatchEnd, err?: Error) => void): void {
    const obj =
      ev.type === 'ADDED' || ev.type === 'MODIFIED' || ev.type === 'DELETED'
        ? this.ingest(ev.object)
        : ev.object;
    switch (ev.type) {
      case 'ADDED':
      case 'MODIFIED': {
        const next = obj as unknown as T;
        const key = objectKey(obj);
        const old = this.cache.get(key);
        this.cache.set(key, next);
        this.bumpRv(obj);
        this.updateGauge();
        if (old) this.emit('update', next, old);
        else this.emit('add', next);
        return;
      }
      case 'DELETED': {
        const key = objectKey(obj);
        const old = this.cache.get(key);
        this.cache.delete(key);
        this.bumpRv(obj);
        this.updateGauge();
        // The final state the server sent is more current than what we had cached.
        if (old) this.emit('delete', obj as unknown as T);
        return;
      }
      case 'BOOKMARK':
        this.bumpRv(obj);
        return;
      case 'ERROR': {
        const status = ev.object;
        const message = status.message ?? 'watch error';
        if (status.code === 410) return end('gone', new Error(message));
        return end('error', new Error(`watch ${this.path}: ${status.code ?? ''} ${message}`));
      }
      default:
        this.log?.warn({ type: ev.type }, 'unknown watch event type');
    }
  }

  /**
   * What the cache keeps of an arriving object: never metadata.managedFields (server-side apply bookkeeping,
   * which for a status with a list of 1,000 keyed entries is as large as the list itself, and which nothing
   * here reads), then the transform.
   */
  private ingest(obj: RawObject): RawObject {
    if (obj.metadata && 'managedFields' in obj.metadata) {
      const { managedFields: _dropped, ...metadata } = obj.metadata as Record<string, unknown>;
      obj = { ...obj, metadata };
    }
    return this.opts.transform ? this.opts.transform(obj) : obj;
  }

  private bumpRv(obj: RawObject): void {
    const rv = obj.metadata?.resourceVersion;
    if (rv) this.rv = rv;
  }

  private emit(kind: 'add' | 'update' | 'delete', obj: T, old?: T): void {
    for (const h of [...this.handlers]) {
      try {
        if (kind === 'add') h.onAdd?.(obj);
        else if (kind === 'update') h.onUpdate?.(old ?? obj, obj);
        else h.onDelete?.(obj);
      } catch (err) {
        // A handler only maps events to keys; one that throws must not stop the informer.
        this.log?.error({ err, event: kind, key: objectKey(obj) }, 'event handler failed');
      }
    }
  }

  private scheduleResync(): void {
    const period = this.opts.resyncPeriodMs ?? 0;
    if (period <= 0) return;
    this.resyncTimer = this.clock.setTimeout(() => {
      if (!this.running) return;
      if (this.synced) for (const obj of [...this.cache.values()]) this.emit('update', obj, obj);
      this.scheduleResync();
    }, period);
  }

  private resolveSyncWaiters(ok: boolean): void {
    const waiters = this.syncWaiters;
    this.syncWaiters = [];
    for (const w of waiters) w(ok);
  }

  private updateGauge(): void {
    this.opts.metrics?.cacheObjects.set({ informer: this.name }, this.cache.size);
  }
}
