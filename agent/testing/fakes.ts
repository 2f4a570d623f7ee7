// An in-memory API server for the agent's unit tests: list and watch with label and field selectors (a watch
// resumes from a resourceVersion by replaying what it missed), merge patches of NodeTunnel status, and a
// Lease. Integration tests use the real API server instead.
import { randomUUID } from 'node:crypto';
import { NODE_TUNNEL_PLURAL } from '../../api/v1alpha1/groupversion.js';
import { FakeLeaseClient } from '../../lib/runtime/testing/fakes.js';
import type {
  ListWatchClient,
  Query,
  RawList,
  RawObject,
  WatchCallbacks,
  WatchEvent,
  WatchHandle,
} from '../../lib/runtime/rest.js';
import type { AgentApi } from '../kube.js';

interface Watcher {
  path: string;
  query: Query;
  cb: WatchCallbacks;
  open: boolean;
}

interface Logged {
  path: string;
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: RawObject;
  /** the object before the change (for selector transitions) */
  before?: RawObject;
}

export const TUNNELS_PATH = `/apis/sealmesh.io/v1alpha1/${NODE_TUNNEL_PLURAL}`;
export const OVERLAYS_PATH = '/apis/sealmesh.io/v1alpha1/overlaynetworks';
export const secretsPath = (ns: string): string => `/api/v1/namespaces/${ns}/secrets`;
export const configMapsPath = (ns: string): string => `/api/v1/namespaces/${ns}/configmaps`;

function matches(obj: RawObject, query: Query): boolean {
  const labels = (obj.metadata as { labels?: Record<string, string> } | undefined)?.labels ?? {};
  const ls = query.labelSelector;
  if (typeof ls === 'string' && ls !== '') {
    for (const req of ls.split(',')) {
      const [k, v] = req.split('=');
      if (labels[k!] !== v) return false;
    }
  }
  const fs = query.fieldSelector;
  if (typeof fs === 'string' && fs !== '') {
    for (const req of fs.split(',')) {
      const [k, v] = req.split('=');
      if (k !== 'metadata.name' || obj.metadata?.name !== v) return false;
    }
  }
  return true;
}

export class FakeApiServer implements ListWatchClient, AgentApi {
  readonly leases = new FakeLeaseClient();
  readonly statusPatches: { name: string; status: Record<string, unknown> }[] = [];
  private readonly store = new Map<string, Map<string, RawObject>>();
  private readonly log: Logged[] = [];
  private readonly watchers: Watcher[] = [];
  private rv = 100;

  get listWatch(): ListWatchClient {
    return this;
  }

  private collection(path: string): Map<string, RawObject> {
    let c = this.store.get(path);
    if (!c) {
      c = new Map();
      this.store.set(path, c);
    }
    return c;
  }

  get(path: string, name: string): RawObject | undefined {
    const obj = this.collection(path).get(name);
    return obj && structuredClone(obj);
  }

  /** Creates or replaces an object (status included, as a test acting as another party writes it). */
  put(path: string, obj: RawObject): RawObject {
    const c = this.collection(path);
    const name = obj.metadata?.name ?? '';
    const before = c.get(name);
    const meta = (before?.metadata ?? {}) as Record<string, unknown>;
    const specChanged = JSON.stringify(before?.spec) !== JSON.stringify(obj.spec);
    const next: RawObject = structuredClone(obj);
    next.metadata = {
      ...next.metadata,
      uid: meta.uid ?? randomUUID(),
      generation: ((meta.generation as number | undefined) ?? 0) + (before && !specChanged ? 0 : 1),
      resourceVersion: String(++this.rv),
    };
    c.set(name, next);
    this.emit({ path, rv: this.rv, type: before ? 'MODIFIED' : 'ADDED', object: next, before });
    return structuredClone(next);
  }

  remove(path: string, name: string): void {
    const c = this.collection(path);
    const before = c.get(name);
    if (!before) return;
    c.delete(name);
    const gone = structuredClone(before);
    gone.metadata = { ...gone.metadata, resourceVersion: String(++this.rv) };
    this.emit({ path, rv: this.rv, type: 'DELETED', object: gone });
  }

  async patchNodeTunnelStatus(name: string, status: Record<string, unknown>): Promise<RawObject> {
    await Promise.resolve();
    const c = this.collection(TUNNELS_PATH);
    const before = c.get(name);
    if (!before) throw Object.assign(new Error(`nodetunnels ${name} not found`), { statusCode: 404 });
    this.statusPatches.push({ name, status: structuredClone(status) });
    const merged: Record<string, unknown> = {
      ...((before.status as Record<string, unknown> | undefined) ?? {}),
    };
    for (const [k, v] of Object.entries(status)) {
      if (v === null) delete merged[k];
      else merged[k] = structuredClone(v);
    }
    const next = structuredClone(before);
    next.status = merged;
    next.metadata = { ...next.metadata, resourceVersion: String(++this.rv) };
    c.set(name, next);
    this.emit({ path: TUNNELS_PATH, rv: this.rv, type: 'MODIFIED', object: next, before });
    return structuredClone(next);
  }

  list(path: string, query: Query): Promise<RawList> {
    const items = [...this.collection(path).values()]
      .filter((o) => matches(o, query))
      .map((o) => structuredClone(o));
    return Promise.resolve({ metadata: { resourceVersion: String(this.rv) }, items });
  }

  watch(path: string, query: Query, cb: WatchCallbacks): WatchHandle {
    const w: Watcher = { path, query, cb, open: true };
    const from = Number(query.resourceVersion ?? 0);
    const missed = this.log.filter((e) => e.path === path && e.rv > from);
    // Deliver asynchronously, as a network would, and only after the caller holds the handle.
    setImmediate(() => {
      for (const e of missed) this.deliver(w, e);
      if (w.open) this.watchers.push(w);
    });
    return {
      abort: () => {
        w.open = false;
      },
    };
  }

  /** Number of watches currently open. */
  openWatches(): number {
    return this.watchers.filter((w) => w.open).length;
  }

  private emit(e: Logged): void {
    this.log.push(e);
    for (const w of this.watchers) if (w.path === e.path) this.deliver(w, e);
  }

  private deliver(w: Watcher, e: Logged): void {
    if (!w.open) return;
    const now = matches(e.object, w.query);
    const was = e.before !== undefined && matches(e.before, w.query);
    let type: WatchEvent['type'] | undefined;
    if (e.type === 'DELETED') type = now ? 'DELETED' : undefined;
    else if (now) type = was || e.type === 'MODIFIED' ? e.type : 'ADDED';
    else if (was) type = 'DELETED';
    if (type === undefined) return;
    w.cb.onEvent({ type, object: structuredClone(e.object) });
  }
}
