// Every write the operator makes goes through this narrow interface, for two reasons: a deposed leader must
// stop writing at once (each call checks the leadership signal first), and tests and benchmarks count writes
// by kind in one place.
import { randomBytes } from 'node:crypto';
import {
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type V1Secret,
} from '@kubernetes/client-node';
import { GROUP, NODE_TUNNEL_PLURAL, OVERLAY_NETWORK_PLURAL, VERSION } from '../api/v1alpha1/groupversion.js';
import { collectionPath, coreResources } from '../lib/kube.js';
import { KubeRest } from '../lib/runtime/rest.js';

export type WriteKind =
  | 'nodetunnel.create'
  | 'nodetunnel.update'
  | 'nodetunnel.delete'
  | 'secret.create'
  | 'secret.update'
  | 'secret.delete'
  | 'secret.deletecollection'
  | 'overlay.status'
  | 'overlay.finalizer'
  | 'event';

/** Longer than the API server's default request timeout (60 s), so that the server ends a long request. */
const DELETE_COLLECTION_TIMEOUT_MS = 90_000;

export class NotLeaderError extends Error {
  constructor() {
    super('not the leader: write refused');
  }
}

export interface EventInput {
  /** the OverlayNetwork the event is about */
  overlay: { name: string; uid?: string | undefined };
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface OperatorWriter {
  createTunnel(body: object): Promise<void>;
  replaceTunnel(name: string, body: object): Promise<void>;
  deleteTunnel(name: string): Promise<void>;
  /** Secret writes resolve to the resourceVersion written, so the writer knows its own write when it sees it. */
  createSecret(namespace: string, body: V1Secret): Promise<string | undefined>;
  replaceSecret(namespace: string, name: string, body: V1Secret): Promise<string | undefined>;
  deleteSecret(namespace: string, name: string): Promise<void>;
  /** Deletes every Secret `labelSelector` selects with one request; resolves to how many were deleted. */
  deleteSecrets(namespace: string, labelSelector: string): Promise<number>;
  /** Replaces the status subresource; `resourceVersion` guards against lost updates. */
  replaceOverlayStatus(name: string, resourceVersion: string | undefined, status: object): Promise<void>;
  setOverlayFinalizers(
    name: string,
    resourceVersion: string | undefined,
    finalizers: string[],
  ): Promise<void>;
  event(e: EventInput): Promise<void>;
}

export interface WriteCounter {
  count(kind: WriteKind): void;
}

export class KubeOperatorWriter implements OperatorWriter {
  private readonly custom: CustomObjectsApi;
  private readonly core: CoreV1Api;
  /** Key Secrets (up to ~600 KB each) go through our own client: keep-alive, and only metadata comes back. */
  private readonly rest: KubeRest;

  constructor(
    kc: KubeConfig,
    /** false once this process is not the leader (or is stopping): then every write is refused */
    private readonly canWrite: () => boolean,
    private readonly eventNamespace: string,
    private readonly counter?: WriteCounter,
    rest?: KubeRest,
  ) {
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.core = kc.makeApiClient(CoreV1Api);
    this.rest = rest ?? new KubeRest(kc);
  }

  private guard(): void {
    if (!this.canWrite()) throw new NotLeaderError();
  }

  /** Counts only writes the API server accepted: a refused create is a request, not an object write. */
  private done(kind: WriteKind): void {
    this.counter?.count(kind);
  }

  async createTunnel(body: object): Promise<void> {
    this.guard();
    await this.custom.createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: NODE_TUNNEL_PLURAL,
      body,
    });
    this.done('nodetunnel.create');
  }

  async replaceTunnel(name: string, body: object): Promise<void> {
    this.guard();
    await this.custom.replaceClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: NODE_TUNNEL_PLURAL,
      name,
      body,
    });
    this.done('nodetunnel.update');
  }

  async deleteTunnel(name: string): Promise<void> {
    this.guard();
    await this.custom.deleteClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: NODE_TUNNEL_PLURAL,
      name,
    });
    this.done('nodetunnel.delete');
  }

  async createSecret(namespace: string, body: V1Secret): Promise<string | undefined> {
    this.guard();
    const written = await this.rest.sendJSON<V1Secret>(
      'POST',
      collectionPath(coreResources.secrets, namespace),
      body,
      { metadataOnly: true },
    );
    this.done('secret.create');
    return written.metadata?.resourceVersion;
  }

  async replaceSecret(namespace: string, name: string, body: V1Secret): Promise<string | undefined> {
    this.guard();
    const written = await this.rest.sendJSON<V1Secret>(
      'PUT',
      `${collectionPath(coreResources.secrets, namespace)}/${encodeURIComponent(name)}`,
      body,
      { metadataOnly: true },
    );
    this.done('secret.update');
    return written.metadata?.resourceVersion;
  }

  async deleteSecret(namespace: string, name: string): Promise<void> {
    this.guard();
    await this.core.deleteNamespacedSecret({ namespace, name });
    this.done('secret.delete');
  }

  async deleteSecrets(namespace: string, labelSelector: string): Promise<number> {
    this.guard();
    const deleted = await this.rest.deleteCollection<{ items?: unknown[] }>(
      collectionPath(coreResources.secrets, namespace),
      { labelSelector },
      // The API server deletes one Secret after another; its own request timeout (60 s by default) ends a
      // long one first, with what it deleted so far gone.
      { metadataOnly: true, timeoutMs: DELETE_COLLECTION_TIMEOUT_MS },
    );
    this.done('secret.deletecollection');
    return deleted.items?.length ?? 0;
  }

  async replaceOverlayStatus(
    name: string,
    resourceVersion: string | undefined,
    status: object,
  ): Promise<void> {
    this.guard();
    await this.custom.patchClusterCustomObjectStatus(
      {
        group: GROUP,
        version: VERSION,
        plural: OVERLAY_NETWORK_PLURAL,
        name,
        body: { metadata: { resourceVersion }, status },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    this.done('overlay.status');
  }

  async setOverlayFinalizers(
    name: string,
    resourceVersion: string | undefined,
    finalizers: string[],
  ): Promise<void> {
    this.guard();
    await this.custom.patchClusterCustomObject(
      {
        group: GROUP,
        version: VERSION,
        plural: OVERLAY_NETWORK_PLURAL,
        name,
        body: { metadata: { resourceVersion, finalizers } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    this.done('overlay.finalizer');
  }

  async event(e: EventInput): Promise<void> {
    this.guard();
    const now = new Date();
    await this.core.createNamespacedEvent({
      namespace: this.eventNamespace,
      body: {
        metadata: {
          name: `${e.overlay.name}.${randomBytes(8).toString('hex')}`,
          namespace: this.eventNamespace,
        },
        involvedObject: {
          apiVersion: `${GROUP}/${VERSION}`,
          kind: 'OverlayNetwork',
          name: e.overlay.name,
          uid: e.overlay.uid,
        },
        type: e.type,
        reason: e.reason,
        message: e.message.slice(0, 1024),
        source: { component: 'sealmesh-operator' },
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
        reportingComponent: 'sealmesh-operator',
      },
    });
    this.done('event');
  }
}
