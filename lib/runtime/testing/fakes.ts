// Small fakes of the runtime's narrow I/O interfaces, for unit tests (STYLE rule 9). Integration tests use
// the real API server instead.
import { KubeApiError } from '../../kube.js';
import type { LeaseClient, LeaseRecord, LeaseState } from '../leader.js';
import type {
  ListWatchClient,
  Query,
  RawList,
  RequestOptions,
  WatchCallbacks,
  WatchEvent,
  WatchHandle,
} from '../rest.js';

export interface FakeWatch {
  query: Query;
  cb: WatchCallbacks;
  aborted: boolean;
  options?: RequestOptions | undefined;
}

/** An in-memory list/watch endpoint: lists answer from `listResults`, watches are driven by the test. */
export class FakeListWatchClient implements ListWatchClient {
  listResults: (RawList | Error)[] = [];
  listQueries: Query[] = [];
  listOptions: (RequestOptions | undefined)[] = [];
  watches: FakeWatch[] = [];

  list(_path: string, query: Query, _signal?: AbortSignal, options?: RequestOptions): Promise<RawList> {
    this.listQueries.push(query);
    this.listOptions.push(options);
    const next = this.listResults.shift();
    if (next === undefined) return Promise.reject(new Error('no list result scripted'));
    return next instanceof Error ? Promise.reject(next) : Promise.resolve(next);
  }

  watch(_path: string, query: Query, cb: WatchCallbacks, options?: RequestOptions): WatchHandle {
    const w: FakeWatch = { query, cb, aborted: false, options };
    this.watches.push(w);
    return { abort: () => (w.aborted = true) };
  }

  current(): FakeWatch {
    const w = this.watches[this.watches.length - 1];
    if (!w || w.aborted) throw new Error('no active watch');
    return w;
  }

  activeWatches(): number {
    return this.watches.filter((w) => !w.aborted).length;
  }

  send(ev: WatchEvent): void {
    this.current().cb.onEvent(ev);
  }
}

/** One in-memory Lease with resourceVersion checks, like the API server's. */
export class FakeLeaseClient implements LeaseClient {
  state: LeaseState | undefined;
  private rv = 0;
  /** While set, every call hangs (a partitioned API server). */
  hang = false;
  /** While set, every call fails. */
  fail = false;
  writes: LeaseRecord[] = [];

  private gate(): Promise<void> {
    if (this.hang) return new Promise(() => {});
    if (this.fail) return Promise.reject(new Error('connection refused'));
    return Promise.resolve();
  }

  async get(): Promise<LeaseState | undefined> {
    await this.gate();
    return this.state && structuredClone(this.state);
  }

  async create(_ns: string, _name: string, record: LeaseRecord): Promise<LeaseState> {
    await this.gate();
    if (this.state) throw new KubeApiError('exists', 409, 'AlreadyExists');
    return this.write(record);
  }

  async update(
    _ns: string,
    _name: string,
    record: LeaseRecord,
    resourceVersion: string,
  ): Promise<LeaseState> {
    await this.gate();
    if (!this.state || this.state.resourceVersion !== resourceVersion)
      throw new KubeApiError('conflict', 409, 'Conflict');
    return this.write(record);
  }

  /** Someone else writes the Lease directly. */
  write(record: LeaseRecord): LeaseState {
    this.writes.push(record);
    this.state = { record: { ...record }, resourceVersion: String(++this.rv) };
    return structuredClone(this.state);
  }
}
