// What the agent watches of an overlay, and how: the overlay's NodeTunnels without their peer lists
// (peerTunnelView), the OverlayNetwork itself, and its key Secrets in the key namespace. An update that does not
// change a peer tunnel's view is no news (samePeerView).
import {
  GROUP,
  NODE_TUNNEL_KIND,
  NODE_TUNNEL_PLURAL,
  OVERLAY_LABEL,
  OVERLAY_NETWORK_KIND,
  OVERLAY_NETWORK_PLURAL,
  VERSION,
} from '../api/v1alpha1/groupversion.js';
import { coreResources, customResource, type ResourceRef } from '../lib/kube.js';
import { deepEqual } from '../lib/runtime/conditions.js';
import type { Informer } from '../lib/runtime/informer.js';
import type { RawObject } from '../lib/runtime/rest.js';

export const nodeTunnelResource = customResource(GROUP, VERSION, NODE_TUNNEL_PLURAL, {
  kind: NODE_TUNNEL_KIND,
});
const overlayNetworks = customResource(GROUP, VERSION, OVERLAY_NETWORK_PLURAL, {
  kind: OVERLAY_NETWORK_KIND,
});

export type MakeInformer = (
  name: string,
  resource: ResourceRef,
  sel: { namespace?: string; labelSelector?: string; fieldSelector?: string },
  transform?: (obj: RawObject) => RawObject,
) => Informer<RawObject>;

/** The three informers of one overlay (not started). */
export function overlayInformers(
  overlay: string,
  namespace: string,
  make: MakeInformer,
): { tunnels: Informer<RawObject>; network: Informer<RawObject>; secrets: Informer<RawObject> } {
  // Peers' keys and staging, not what each peer reports of its own peers: at 1,000 nodes those lists are
  // ~130 KB per tunnel, and every change of one would wake this agent (see peerTunnelView).
  const tunnels = make(
    `nodetunnels-${overlay}`,
    nodeTunnelResource,
    { labelSelector: `${OVERLAY_LABEL}=${overlay}` },
    peerTunnelView,
  );
  const network = make(`overlaynetwork-${overlay}`, overlayNetworks, {
    fieldSelector: `metadata.name=${overlay}`,
  });
  const secrets = make(`secrets-${overlay}`, coreResources.secrets, {
    namespace,
    labelSelector: `${OVERLAY_LABEL}=${overlay}`,
  });
  return { tunnels, network, secrets };
}

export function overlayOf(obj: RawObject): string | undefined {
  const spec = obj.spec as { overlay?: unknown } | undefined;
  if (typeof spec?.overlay === 'string') return spec.overlay;
  const labels = (obj.metadata as { labels?: Record<string, string> } | undefined)?.labels;
  return labels?.[OVERLAY_LABEL];
}

/**
 * What this agent needs of the overlay's tunnels: everything but each one's report of its own peers (status
 * peers, summary, peersSummary). This node's own tunnel, status included, comes from the `mine` informer.
 */
export function peerTunnelView(obj: RawObject): RawObject {
  const status = (obj as { status?: Record<string, unknown> }).status;
  if (!status) return obj;
  const { peers: _peers, summary: _summary, peersSummary: _peersSummary, ...rest } = status;
  return { ...obj, status: rest };
}

/** Two versions of a peer tunnel (peerTunnelView) with the same labels, deletion, spec and status. */
export function samePeerView(a: RawObject, b: RawObject): boolean {
  const view = (o: RawObject) => {
    const x = o as {
      metadata?: { labels?: unknown; deletionTimestamp?: unknown };
      spec?: unknown;
      status?: unknown;
    };
    return [x.metadata?.labels, x.metadata?.deletionTimestamp, x.spec, x.status];
  };
  return deepEqual(view(a), view(b));
}
