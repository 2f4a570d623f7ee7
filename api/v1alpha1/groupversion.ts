// Group/version constants and the Kubernetes-facing metadata shared by the two kinds. The CRD generator
// (hack/gen-crds.ts) reads the KindInfo of each kind; the operator and agent use the names and labels.
import type { z } from 'zod';

export const GROUP = 'sealmesh.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

export const OVERLAY_NETWORK_KIND = 'OverlayNetwork';
export const OVERLAY_NETWORK_PLURAL = 'overlaynetworks';
export const NODE_TUNNEL_KIND = 'NodeTunnel';
export const NODE_TUNNEL_PLURAL = 'nodetunnels';

/** Label on every NodeTunnel (and sealed Secret): the name of its OverlayNetwork. */
export const OVERLAY_LABEL = `${GROUP}/overlay`;
/** Label on every NodeTunnel (and sealed Secret): the name of its Node. */
export const NODE_LABEL = `${GROUP}/node`;
/** Label on every sealed Secret: the key epoch whose material it holds. */
export const EPOCH_LABEL = `${GROUP}/epoch`;
/** Annotation on an OverlayNetwork: any new value starts a rotation now. */
export const ROTATE_ANNOTATION = `${GROUP}/rotate`;
/** A value of ROTATE_ANNOTATION starting with this asks for a pre-shared-key-only rotation (sessions continue). */
export const ROTATE_PSK_ONLY_PREFIX = 'psk:';

/** A NodeTunnel is named `<overlay>.<node>`; the API server enforces this (see nodetunnel.types.ts). */
export function nodeTunnelName(overlay: string, node: string): string {
  return `${overlay}.${node}`;
}

/** One entry of `x-kubernetes-validations` (a CEL rule the API server evaluates). */
export interface CelRule {
  rule: string;
  message?: string;
  messageExpression?: string;
  /** JSON path relative to the field the rule is attached to, e.g. `.mtu`; the API server reports it. */
  fieldPath?: string;
  reason?: 'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired' | 'FieldValueDuplicate';
  optionalOldSelf?: boolean;
}

// zod 4 keeps `.meta()` in its global registry; these are the Kubernetes OpenAPI extensions the CRD
// generator copies into the schema next to `description`.
declare module 'zod' {
  interface GlobalMeta {
    'x-kubernetes-validations'?: CelRule[];
    'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
    'x-kubernetes-list-map-keys'?: string[];
    'x-kubernetes-map-type'?: 'atomic' | 'granular';
    maxProperties?: number;
  }
}

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  jsonPath: string;
  description?: string;
  priority?: number;
  format?: string;
}

/** Everything the CRD generator needs to know about one kind, besides its spec and status schemas. */
export interface KindInfo {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  categories: string[];
  scope: 'Cluster' | 'Namespaced';
  description: string;
  spec: z.ZodType;
  status: z.ZodType;
  /** CEL rules on the whole object (they may read `self.metadata.name`). */
  rootValidations: CelRule[];
  printerColumns: PrinterColumn[];
}
