// Kubernetes client plumbing shared by the operator, the agent and the tools: where the kubeconfig comes from,
// how API paths are built for any resource, and how API errors are recognised.
import { existsSync } from 'node:fs';
import { delimiter } from 'node:path';
import { ApiException, KubeConfig } from '@kubernetes/client-node';

const serviceAccountTokenPath = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/**
 * $KUBECONFIG when set (development, tests, `npm run operator`), else the in-cluster service account when
 * running in a pod, else ~/.kube/config.
 */
export function loadKubeConfig(env: NodeJS.ProcessEnv = process.env): KubeConfig {
  const kc = new KubeConfig();
  const files = (env.KUBECONFIG ?? '').split(delimiter).filter((f) => f !== '');
  if (files.length > 0) {
    kc.loadFromFile(files[0]!);
    for (const file of files.slice(1)) {
      const more = new KubeConfig();
      more.loadFromFile(file);
      // Like kubectl: the first file that sets current-context wins.
      kc.mergeConfig(more, Boolean(kc.currentContext));
    }
  } else if (env.KUBERNETES_SERVICE_HOST && existsSync(serviceAccountTokenPath)) {
    kc.loadFromCluster();
  } else {
    kc.loadFromDefault();
  }
  if (!kc.getCurrentCluster()) {
    throw new Error(
      'no Kubernetes cluster configured: set KUBECONFIG or run in a pod with a service account',
    );
  }
  return kc;
}

/** A resource kind as the API server addresses it. `group` is '' for the core group. */
export interface ResourceRef {
  group: string;
  version: string;
  /** Lower-case plural, the URL segment: 'nodes', 'overlaynetworks'. */
  plural: string;
  /** Kind, for logs. */
  kind?: string;
  namespaced: boolean;
}

export const coreResources = {
  nodes: { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false },
  secrets: { group: '', version: 'v1', plural: 'secrets', kind: 'Secret', namespaced: true },
  configmaps: { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true },
  namespaces: { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false },
  leases: { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease', namespaced: true },
} as const satisfies Record<string, ResourceRef>;

/** A custom resource (CRD) reference. */
export function customResource(
  group: string,
  version: string,
  plural: string,
  opts: { kind?: string; namespaced?: boolean } = {},
): ResourceRef {
  return { group, version, plural, kind: opts.kind, namespaced: opts.namespaced ?? false };
}

/**
 * The collection path of `ref`: in one namespace when `namespace` is given (namespaced kinds only), else
 * across all namespaces (or the cluster-scoped collection).
 */
export function collectionPath(ref: ResourceRef, namespace?: string): string {
  const base = ref.group === '' ? `/api/${ref.version}` : `/apis/${ref.group}/${ref.version}`;
  if (namespace !== undefined && namespace !== '') {
    if (!ref.namespaced) throw new Error(`${ref.plural} is cluster-scoped; no namespace allowed`);
    return `${base}/namespaces/${encodeURIComponent(namespace)}/${ref.plural}`;
  }
  return `${base}/${ref.plural}`;
}

/** An error from the API server, with its HTTP status and the Status reason when there was one. */
export class KubeApiError extends Error {
  constructor(
    message: string,
    readonly statusCode: number,
    readonly reason?: string,
  ) {
    super(message);
    this.name = 'KubeApiError';
  }
}

/** The HTTP status of an API error from client-node (ApiException) or from lib/runtime/rest, if any. */
export function statusCodeOf(err: unknown): number | undefined {
  if (err instanceof ApiException) return err.code;
  if (err instanceof KubeApiError) return err.statusCode;
  if (typeof err === 'object' && err !== null) {
    const e = err as { statusCode?: unknown; code?: unknown };
    if (typeof e.statusCode === 'number') return e.statusCode;
    if (typeof e.code === 'number') return e.code;
  }
  return undefined;
}

export const isNotFound = (err: unknown): boolean => statusCodeOf(err) === 404;
export const isConflict = (err: unknown): boolean => statusCodeOf(err) === 409;
export const isAlreadyExists = (err: unknown): boolean => statusCodeOf(err) === 409;
export const isGone = (err: unknown): boolean => statusCodeOf(err) === 410;
/** The server's request timeout (504), or a request of lib/runtime/rest that got no answer in time. */
export const isTimeout = (err: unknown): boolean =>
  statusCodeOf(err) === 504 || (err instanceof Error && err.name === 'RequestTimeoutError');

/** A short description of an API error for logs and error messages (never the request body). */
export function describeError(err: unknown): string {
  if (err instanceof ApiException) {
    // client-node leaves the body as text when it does not know the status code (422 from admission, say)
    let body = err.body as { message?: unknown } | string | undefined;
    if (typeof body === 'string') {
      try {
        body = JSON.parse(body) as { message?: unknown };
      } catch {
        // not a Status object: no message to show
      }
    }
    const msg = typeof body === 'object' && body && typeof body.message === 'string' ? body.message : '';
    return `HTTP ${err.code}${msg ? `: ${msg}` : ''}`;
  }
  if (err instanceof Error) return err.message;
  return String(err);
}

/** `namespace/name`, or `name` for cluster-scoped objects (client-go's MetaNamespaceKeyFunc). */
export function objectKey(obj: { metadata?: { name?: string; namespace?: string } }): string {
  const name = obj.metadata?.name ?? '';
  const ns = obj.metadata?.namespace;
  return ns ? `${ns}/${name}` : name;
}

export function splitKey(key: string): { namespace?: string; name: string } {
  const i = key.indexOf('/');
  return i < 0 ? { name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}
