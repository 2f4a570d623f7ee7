// The agent's whole view of the API server, behind one narrow interface so unit tests can run it against an
// in-memory fake: list/watch for its informers, a merge patch of its own NodeTunnel's status, and its Lease.
import { CustomObjectsApi, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import { GROUP, NODE_TUNNEL_PLURAL, VERSION } from '../api/v1alpha1/groupversion.js';
import { KubeLeaseClient, type LeaseClient } from '../lib/runtime/leader.js';
import { KubeRest, type ListWatchClient, type RawObject } from '../lib/runtime/rest.js';

export interface AgentApi {
  listWatch: ListWatchClient;
  leases: LeaseClient;
  /**
   * JSON merge patch of the status subresource of the (cluster-scoped) NodeTunnel `name`; `status` keys set
   * to null are removed. Returns the object the API server stored.
   */
  patchNodeTunnelStatus(name: string, status: Record<string, unknown>): Promise<RawObject>;
}

export class KubeAgentApi implements AgentApi {
  readonly listWatch: ListWatchClient;
  readonly leases: LeaseClient;
  private readonly custom: CustomObjectsApi;

  constructor(kc: KubeConfig) {
    this.listWatch = new KubeRest(kc);
    this.leases = new KubeLeaseClient(kc);
    this.custom = kc.makeApiClient(CustomObjectsApi);
  }

  async patchNodeTunnelStatus(name: string, status: Record<string, unknown>): Promise<RawObject> {
    const res: unknown = await this.custom.patchClusterCustomObjectStatus(
      { group: GROUP, version: VERSION, plural: NODE_TUNNEL_PLURAL, name, body: { status } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    return res as RawObject;
  }
}
