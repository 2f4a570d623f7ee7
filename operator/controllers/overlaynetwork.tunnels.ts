// The tunnels phase: reads the overlay's NodeTunnels from the cache (each version validated once) and writes
// the difference to the desired specs (plan/tunnels.ts): creates for joined nodes, replaces for changed
// specs, deletes for nodes that left.
import type { KubernetesObject } from '@kubernetes/client-node';
import {
  API_VERSION,
  NODE_LABEL,
  NODE_TUNNEL_KIND,
  OVERLAY_LABEL,
  OVERLAY_NETWORK_KIND,
  nodeTunnelName,
} from '../../api/v1alpha1/groupversion.js';
import { parseNodeTunnel, type NodeTunnel } from '../../api/v1alpha1/nodetunnel.types.js';
import { keySecretName } from '../../lib/contract/keysecret.js';
import type { PeerRow, TunnelPeerRows } from '../../lib/contract/pairs.js';
import { isAlreadyExists, isNotFound } from '../../lib/kube.js';
import { yieldToEventLoop } from '../../lib/runtime/cooperative.js';
import { deepEqual } from '../../lib/runtime/conditions.js';
import { nodesJoined, nodesLeft } from '../plan/events.js';
import type { TunnelSpec } from '../plan/tunnels.js';
import { MANAGED_BY, YIELD_EVERY, type OverlayControllerDeps, type Scope } from './overlaynetwork.scope.js';
import { stripUndefined } from './overlaynetwork.status.js';

export type DesiredSpecs = Map<string, Omit<TunnelSpec, 'publicKey' | 'secretRef'>>;

export class Tunnels {
  /**
   * Validated NodeTunnels by cached object (null: invalid). The informer replaces an object when it changes,
   * so each version is validated once, not once per pass.
   */
  private readonly parsed = new WeakMap<object, NodeTunnel | null>();

  constructor(
    private readonly deps: Pick<OverlayControllerDeps, 'tunnels' | 'writer' | 'logger' | 'namespace'>,
    private readonly peerRows: TunnelPeerRows,
  ) {}

  /** The overlay's valid NodeTunnels, each with its peer reports as a row. */
  async read(overlay: string): Promise<Array<{ tunnel: NodeTunnel; row: PeerRow | undefined }>> {
    const out: Array<{ tunnel: NodeTunnel; row: PeerRow | undefined }> = [];
    let fresh = 0;
    for (const obj of this.deps.tunnels.list()) {
      if (obj.metadata?.labels?.[OVERLAY_LABEL] !== overlay) continue;
      let tunnel = this.parsed.get(obj);
      if (tunnel === undefined) {
        // Validating many changed tunnels (peer lists included when the cache keeps them) takes a while.
        if (++fresh % (YIELD_EVERY * 5) === 0) await yieldToEventLoop();
        const parsed = parseNodeTunnel(obj);
        tunnel = parsed.ok ? parsed.value : null;
        this.parsed.set(obj, tunnel);
        if (!parsed.ok)
          this.deps.logger.warn(
            { tunnel: obj.metadata?.name, error: parsed.error },
            'skipping invalid NodeTunnel',
          );
      }
      if (tunnel) out.push({ tunnel, row: this.peerRows.rowOf(obj) });
    }
    return out;
  }

  /** Brings the overlay's NodeTunnels to `desired`, with the public keys the key Secrets hold (Operator custody). */
  async sync(
    scope: Scope,
    desired: DesiredSpecs,
    existing: Map<string, NodeTunnel>,
    publicKeys: Map<string, string>,
  ): Promise<void> {
    const { name, raw } = scope;
    const joined: string[] = [];
    for (const [node, base] of desired) {
      const spec: TunnelSpec = {
        ...base,
        epoch: scope.epoch,
        ...(publicKeys.has(node) ? { publicKey: publicKeys.get(node) } : {}),
        secretRef: { namespace: this.deps.namespace, name: keySecretName(name, node) },
      };
      const current = existing.get(node);
      // spec.epoch records the epoch a node joined at; rotations are announced in the overlay's status, so a
      // rotation rewrites no NodeTunnel (it would cost a write per node).
      if (current) spec.epoch = current.spec.epoch;
      if (!current) {
        const body = {
          apiVersion: API_VERSION,
          kind: NODE_TUNNEL_KIND,
          metadata: {
            name: nodeTunnelName(name, node),
            labels: { ...MANAGED_BY, [OVERLAY_LABEL]: name, [NODE_LABEL]: node },
            ownerReferences: [
              {
                apiVersion: API_VERSION,
                kind: OVERLAY_NETWORK_KIND,
                name,
                uid: raw.metadata?.uid ?? '',
                controller: true,
                blockOwnerDeletion: true,
              },
            ],
          },
          spec,
        };
        try {
          await this.deps.writer.createTunnel(body);
          joined.push(node);
        } catch (err) {
          if (!isAlreadyExists(err)) throw err;
        }
        continue;
      }
      // Keep a public key the tunnel already has while the node's Secret is not written yet.
      if (!spec.publicKey && current.spec.publicKey && scope.overlay.spec.keys.custody === 'Operator') {
        spec.publicKey = current.spec.publicKey;
      }
      if (!sameSpec(current.spec, spec)) {
        await this.deps.writer.replaceTunnel(current.metadata.name, {
          apiVersion: API_VERSION,
          kind: NODE_TUNNEL_KIND,
          metadata: current.metadata,
          spec,
        });
      }
    }
    const left: string[] = [];
    for (const [node, t] of existing) {
      if (desired.has(node)) continue;
      try {
        await this.deps.writer.deleteTunnel(t.metadata.name);
        left.push(node);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    if (joined.length > 0) scope.events.push(nodesJoined(joined));
    if (left.length > 0) scope.events.push(nodesLeft(left));
  }

  /** Deletion: every NodeTunnel of the overlay. */
  async deleteAll(overlay: string): Promise<void> {
    for (const t of this.deps.tunnels.list()) {
      if (t.metadata?.labels?.[OVERLAY_LABEL] !== overlay) continue;
      try {
        await this.deps.writer.deleteTunnel(t.metadata?.name ?? '');
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
  }

  /** How many NodeTunnels of the overlay the cache still shows. */
  remaining(overlay: string): number {
    return this.deps.tunnels
      .list()
      .filter((t: KubernetesObject) => t.metadata?.labels?.[OVERLAY_LABEL] === overlay).length;
  }
}

function sameSpec(current: NodeTunnel['spec'], desired: TunnelSpec): boolean {
  return deepEqual(stripUndefined({ ...current }), stripUndefined({ ...desired }));
}
