// Raw JSON list and watch against the API server, authenticated by a KubeConfig.
//
// Why not client-node's typed list functions: they deserialise core kinds into classes (timestamps become
// Date objects) while its Watch yields plain JSON, so one cache would hold two shapes of the same object.
// Here list and watch both yield the wire form, for core kinds and CRDs alike, and the informer can decode
// (e.g. with a zod schema) in one place. Requests take an AbortSignal and a timeout so nothing hangs forever.
import http from 'node:http';
import https from 'node:https';
import { createInterface } from 'node:readline';
import type { KubeConfig } from '@kubernetes/client-node';
import { KubeApiError } from '../kube.js';

export interface RawObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; [k: string]: unknown };
  [k: string]: unknown;
}

export interface RawList {
  metadata?: { resourceVersion?: string; continue?: string };
  items?: RawObject[];
}

export interface WatchEvent {
  /** ADDED, MODIFIED, DELETED, BOOKMARK or ERROR (kept open: servers may add types). */
  type: string;
  object: RawObject & { code?: number; reason?: string; message?: string };
}

export interface WatchCallbacks {
  onEvent(ev: WatchEvent): void;
  /** The stream ended: `err` undefined when the server closed it normally. Not called after abort(). */
  onClose(err?: Error): void;
}

export interface WatchHandle {
  abort(): void;
}

export type Query = Record<string, string | number | boolean | undefined>;

/** The narrow interface an informer needs; unit tests supply a fake. */
export interface ListWatchClient {
  list(path: string, query: Query, signal?: AbortSignal): Promise<RawList>;
  watch(path: string, query: Query, cb: WatchCallbacks): WatchHandle;
}

export interface KubeRestOptions {
  /** Timeout of non-watch requests (default 30 s). */
  requestTimeoutMs?: number;
}

export class KubeRest implements ListWatchClient {
  private readonly requestTimeoutMs: number;

  constructor(
    private readonly kc: KubeConfig,
    opts: KubeRestOptions = {},
  ) {
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
  }

  private url(path: string, query: Query): URL {
    const cluster = this.kc.getCurrentCluster();
    if (!cluster) throw new Error('kubeconfig has no current cluster');
    const url = new URL(cluster.server.replace(/\/$/, '') + path);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, String(v));
    return url;
  }

  private async open(url: URL, signal: AbortSignal | undefined): Promise<http.ClientRequest> {
    const opts: https.RequestOptions = { method: 'GET', headers: { Accept: 'application/json' } };
    await this.kc.applyToHTTPSOptions(opts);
    const mod = url.protocol === 'http:' ? http : https;
    return mod.request(url, { ...opts, signal });
  }

  async getJSON<T>(path: string, query: Query = {}, signal?: AbortSignal): Promise<T> {
    const url = this.url(path, query);
    const timeout = AbortSignal.timeout(this.requestTimeoutMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    const req = await this.open(url, combined);
    return new Promise<T>((resolve, reject) => {
      req.on('error', (err) => reject(new Error(`GET ${url.pathname} failed: ${err.message}`)));
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => reject(new Error(`GET ${url.pathname} failed: ${err.message}`)));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          if (status < 200 || status >= 300) return reject(apiError('GET', url, status, text));
          try {
            resolve(JSON.parse(text) as T);
          } catch (err) {
            reject(new Error(`GET ${url.pathname}: invalid JSON: ${(err as Error).message}`));
          }
        });
      });
      req.end();
    });
  }

  list(path: string, query: Query, signal?: AbortSignal): Promise<RawList> {
    return this.getJSON<RawList>(path, query, signal);
  }

  watch(path: string, query: Query, cb: WatchCallbacks): WatchHandle {
    const controller = new AbortController();
    let closed = false;
    const close = (err?: Error): void => {
      if (closed) return;
      closed = true;
      controller.abort();
      cb.onClose(err);
    };
    const url = this.url(path, { ...query, watch: 'true' });
    this.open(url, controller.signal).then(
      (req) => {
        req.on('error', (err) => close(new Error(`watch ${url.pathname} failed: ${err.message}`)));
        req.on('socket', (s) => s.setKeepAlive(true, 30_000));
        req.on('response', (res) => {
          const status = res.statusCode ?? 0;
          if (status !== 200) {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () =>
              close(apiError('watch', url, status, Buffer.concat(chunks).toString('utf8'))),
            );
            res.on('error', (err) => close(err));
            return;
          }
          const lines = createInterface({ input: res, crlfDelay: Infinity });
          // readline re-emits the stream's errors; they are handled on `res` below, and an unhandled 'error'
          // event would crash the process.
          lines.on('error', () => undefined);
          lines.on('line', (line) => {
            if (closed || line.trim() === '') return;
            let ev: WatchEvent;
            try {
              ev = JSON.parse(line) as WatchEvent;
            } catch {
              return close(new Error(`watch ${url.pathname}: undecodable event`));
            }
            cb.onEvent(ev);
          });
          res.on('error', (err) => close(new Error(`watch ${url.pathname} stream error: ${err.message}`)));
          res.on('close', () =>
            close(res.complete ? undefined : new Error(`watch ${url.pathname}: connection lost`)),
          );
        });
        req.end();
      },
      (err: Error) => close(err),
    );
    return {
      abort: () => {
        closed = true;
        controller.abort();
      },
    };
  }
}

function apiError(verb: string, url: URL, status: number, body: string): KubeApiError {
  let reason: string | undefined;
  let message = body.slice(0, 300);
  try {
    const s = JSON.parse(body) as { reason?: string; message?: string };
    reason = s.reason;
    if (s.message) message = s.message;
  } catch {
    // not a Status object
  }
  return new KubeApiError(`${verb} ${url.pathname}: HTTP ${status}: ${message}`, status, reason);
}
