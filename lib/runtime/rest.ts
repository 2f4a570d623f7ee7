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

export interface RequestOptions {
  /**
   * Ask for PartialObjectMetadata: objects arrive with apiVersion, kind and metadata only. A cache that needs
   * only names, labels and annotations then holds no object bodies (for Secrets: no data).
   */
  metadataOnly?: boolean;
  /** Timeout of this request (default: the client's requestTimeoutMs). */
  timeoutMs?: number;
}

/** A request that got no complete answer within its timeout (the server may still be working on it). */
export class RequestTimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RequestTimeoutError';
  }
}

/** The narrow interface an informer needs; unit tests supply a fake. */
export interface ListWatchClient {
  list(path: string, query: Query, signal?: AbortSignal, options?: RequestOptions): Promise<RawList>;
  watch(path: string, query: Query, cb: WatchCallbacks, options?: RequestOptions): WatchHandle;
}

/** Accept headers of metadata-only requests; the plain JSON fallback serves servers without the conversion. */
export const METADATA_LIST_ACCEPT =
  'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json';
export const METADATA_WATCH_ACCEPT =
  'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json';

export interface KubeRestOptions {
  /** Timeout of non-watch requests (default 30 s). */
  requestTimeoutMs?: number;
}

export class KubeRest implements ListWatchClient {
  private readonly requestTimeoutMs: number;
  /**
   * One keep-alive agent for every request but watches: client-node's applyToHTTPSOptions makes a new agent,
   * so a new TLS handshake, per request (a 1,000-node overlay is created with 2,000 writes). Made from the
   * TLS options of the first request; credentials that change (tokens) travel in headers, set per request.
   */
  private keepAlive: https.Agent | http.Agent | undefined;

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

  private async open(
    url: URL,
    signal: AbortSignal | undefined,
    accept = 'application/json',
    method = 'GET',
    keepAlive = false,
  ): Promise<http.ClientRequest> {
    const opts: https.RequestOptions = { method, headers: { Accept: accept } };
    await this.kc.applyToHTTPSOptions(opts);
    const mod = url.protocol === 'http:' ? http : https;
    if (keepAlive) {
      this.keepAlive ??=
        url.protocol === 'http:'
          ? new http.Agent({ keepAlive: true })
          : new https.Agent({
              keepAlive: true,
              ca: opts.ca,
              cert: opts.cert,
              key: opts.key,
              pfx: opts.pfx,
              passphrase: opts.passphrase,
              servername: opts.servername,
              ...(opts.rejectUnauthorized !== undefined
                ? { rejectUnauthorized: opts.rejectUnauthorized }
                : {}),
            });
      opts.agent = this.keepAlive;
    }
    return mod.request(url, { ...opts, signal });
  }

  async getJSON<T>(path: string, query: Query = {}, signal?: AbortSignal, accept?: string): Promise<T> {
    return this.request<T>('GET', this.url(path, query), undefined, accept, signal);
  }

  /**
   * POST or PUT a JSON body. With `metadataOnly` the server answers with the written object's metadata only
   * (PartialObjectMetadata): writing a 600 KB Secret then does not bring 600 KB back to parse.
   */
  sendJSON<T>(method: 'POST' | 'PUT', path: string, body: unknown, options?: RequestOptions): Promise<T> {
    return this.request<T>(
      method,
      this.url(path, {}),
      JSON.stringify(body),
      options?.metadataOnly ? METADATA_WATCH_ACCEPT : undefined,
    );
  }

  /**
   * DELETE a collection, `query` selecting its members (labelSelector). With `metadataOnly` the server lists
   * the deleted objects by metadata only: deleting 1,000 key Secrets does not bring their data back.
   */
  deleteCollection<T>(path: string, query: Query, options?: RequestOptions): Promise<T> {
    return this.request<T>(
      'DELETE',
      this.url(path, query),
      undefined,
      options?.metadataOnly ? METADATA_LIST_ACCEPT : undefined,
      undefined,
      options?.timeoutMs,
    );
  }

  private async request<T>(
    method: string,
    url: URL,
    body: string | undefined,
    accept: string | undefined,
    signal?: AbortSignal,
    timeoutMs: number = this.requestTimeoutMs,
  ): Promise<T> {
    const timeout = AbortSignal.timeout(timeoutMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    const req = await this.open(url, combined, accept, method, true);
    const failed = (err: Error): Error =>
      timeout.aborted
        ? new RequestTimeoutError(`${method} ${url.pathname}: no answer within ${timeoutMs} ms`)
        : new Error(`${method} ${url.pathname} failed: ${err.message}`);
    return new Promise<T>((resolve, reject) => {
      req.on('error', (err) => reject(failed(err)));
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => reject(failed(err)));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          if (status < 200 || status >= 300) return reject(apiError(method, url, status, text));
          try {
            resolve(JSON.parse(text) as T);
          } catch (err) {
            reject(new Error(`${method} ${url.pathname}: invalid JSON: ${(err as Error).message}`));
          }
        });
      });
      if (body !== undefined) {
        req.setHeader('Content-Type', 'application/json');
        req.end(body);
      } else req.end();
    });
  }

  list(path: string, query: Query, signal?: AbortSignal, options?: RequestOptions): Promise<RawList> {
    return this.getJSON<RawList>(
      path,
      query,
      signal,
      options?.metadataOnly ? METADATA_LIST_ACCEPT : undefined,
    );
  }

  watch(path: string, query: Query, cb: WatchCallbacks, options?: RequestOptions): WatchHandle {
    const controller = new AbortController();
    let closed = false;
    const close = (err?: Error): void => {
      if (closed) return;
      closed = true;
      controller.abort();
      cb.onClose(err);
    };
    const url = this.url(path, { ...query, watch: 'true' });
    this.open(url, controller.signal, options?.metadataOnly ? METADATA_WATCH_ACCEPT : undefined).then(
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
