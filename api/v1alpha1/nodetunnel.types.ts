// NodeTunnel: one per (overlay, node), named `<overlay>.<node>`. The operator writes the spec, the node's
// agent writes the status. Together the NodeTunnels of an overlay are its distributed peer list.
import { z } from 'zod';
import {
  ObjectMetaSchema,
  conditions,
  fieldPath,
  formatIssues,
  parseWith,
  type Issue,
  type ParseResult,
} from './common.types.js';
import {
  API_VERSION,
  NODE_TUNNEL_KIND,
  NODE_TUNNEL_PLURAL,
  nodeTunnelName,
  type KindInfo,
} from './groupversion.js';
import { MAX_MTU, MAX_PERSISTENT_KEEPALIVE, MIN_MTU } from './overlaynetwork.types.js';
import {
  cidr,
  dnsLabel,
  dnsSubdomain,
  duration,
  endpoint,
  listMap,
  listSet,
  x25519PublicKey,
} from './validation.js';

/** Rules the API server checks on update (they read `oldSelf`); `nodeTunnelUpdateIssues` is their zod twin. */
const TRANSITIONS = {
  overlay: { rule: 'self == oldSelf', message: 'overlay is immutable' },
  nodeName: { rule: 'self == oldSelf', message: 'nodeName is immutable' },
  epoch: { rule: 'self >= oldSelf', message: 'epoch must not decrease' },
};

export const NodeTunnelSpecSchema = z
  .object({
    overlay: dnsSubdomain('Name of the OverlayNetwork this tunnel belongs to. Immutable.', 63).meta({
      'x-kubernetes-validations': [TRANSITIONS.overlay],
    }),
    nodeName: dnsSubdomain('Name of the Node this tunnel runs on. Immutable.').meta({
      'x-kubernetes-validations': [TRANSITIONS.nodeName],
    }),
    address: cidr({
      description:
        "The node's tunnel interface address with the pool's prefix length, e.g. 10.99.0.7/16 or fd00:99::7/64.",
      network: false,
    }),
    endpoint: endpoint(
      'Underlay endpoint peers send to: host:port, with an IPv6 host in brackets, e.g. 198.18.0.7:51820 or [2001:db8::7]:51820.',
    ),
    allowedIPs: listSet(
      cidr({ description: 'A CIDR routed to this node through the tunnel.', network: true }),
      64,
    ).describe(
      'What peers route to this node: its tunnel address as a host route, and its pod CIDRs if routed.',
    ),
    listenPort: z.int32().min(1).max(65535).describe('UDP port WireGuard listens on, on this node.'),
    mtu: z
      .int32()
      .min(MIN_MTU)
      .max(MAX_MTU)
      .optional()
      .describe('MTU of the tunnel interface. Absent: the underlay MTU minus the WireGuard overhead.'),
    persistentKeepalive: duration({
      description: `Keepalive interval towards each peer, e.g. 25s; 0s disables it. At most ${MAX_PERSISTENT_KEEPALIVE}.`,
      max: MAX_PERSISTENT_KEEPALIVE,
    }).default('25s'),
    epoch: z
      .int()
      .min(0)
      .meta({ 'x-kubernetes-validations': [TRANSITIONS.epoch] })
      .describe(
        "The overlay's key epoch when this tunnel was created. It never decreases. The epoch in force and any rotation in progress are in the OverlayNetwork's status (epoch, rotation): rotations rewrite no NodeTunnel.",
      ),
    publicKey: x25519PublicKey(
      "Operator custody: this node's WireGuard public key at the overlay's current epoch (the agent also publishes the key it runs in status.publicKey).",
    ).optional(),
    secretRef: z
      .object({
        namespace: dnsLabel("Namespace of the Secret (the operator's namespace)."),
        name: dnsSubdomain('Name stem of the Secrets: the one of key epoch N is named `<name>.e<N>`.'),
      })
      .optional()
      .describe(
        "The Secrets holding this node's sealed key material (pre-shared keys, and the private key in Operator custody), one per key epoch: a rotation creates the new epoch's Secrets and deletes the old epoch's at completion.",
      ),
  })
  .describe('Desired state of the tunnel, written by the operator only.');

export const PeerStateSchema = z
  .enum(['Encrypted', 'Handshaking', 'Stale', 'KeyMismatch', 'AwaitingPeer', 'Stalled'])
  .describe(
    'Encrypted: fresh handshake at the current epoch. Handshaking: trying. Stale: no handshake within 180s. ' +
      'KeyMismatch: the peer answers with other keys. AwaitingPeer: the peer has not published its keys yet. ' +
      'Stalled: nothing received from the peer for 45s while sending to it (the agent re-creates the peer once).',
  );

export type PeerState = z.infer<typeof PeerStateSchema>;

const time = (description: string) => z.iso.datetime({ offset: true }).describe(description);

export const PeerStatusSchema = z
  .object({
    node: dnsSubdomain('Name of the peer node.'),
    state: PeerStateSchema,
    since: time('When the peer entered this state.'),
    epoch: z.int().min(0).describe('Key epoch this state was observed at.'),
    lastHandshakeTime: time('Last WireGuard handshake with this peer, as seen from this node.').optional(),
    message: z.string().max(1024).optional().describe('Human-readable details, e.g. why the peer is stale.'),
  })
  .describe('How this node sees one peer.');

export type PeerStatus = z.infer<typeof PeerStatusSchema>;

const count = (description: string) => z.int().min(0).describe(description);

export const DropCountSchema = z
  .object({
    packets: count('Packets.'),
    bytes: count('Bytes.'),
  })
  .describe('Packets and bytes the fail-closed rules matched.');

export const PeerDropsSchema = z
  .object({
    node: dnsSubdomain(
      'Name of the peer node whose tunnel address or pod CIDRs the packets were for or from.',
    ),
    packets: count('Packets.'),
    bytes: count('Bytes.'),
  })
  .describe('Would-be plaintext to or from one peer.');

export type PeerDrops = z.infer<typeof PeerDropsSchema>;

export const TunnelDropsSchema = z
  .object({
    peers: listMap(PeerDropsSchema, ['node'], 4096)
      .optional()
      .describe('Per peer node, only peers with a count above zero.'),
    unattributed: DropCountSchema.optional().describe(
      'Packets to or from the rest of the declared protected ranges (no member node owns the address).',
    ),
  })
  .describe(
    'Would-be plaintext on this node: packets to a protected prefix that were about to leave by another ' +
      'interface than the overlay device, and plaintext packets from one arriving on another interface. ' +
      'Dropped in FailClosed mode, only counted in Monitor mode. Counts since the agent started (taken over ' +
      'from the kernel: they survive an agent restart); written with the next status report, and at most ' +
      'once per interval (default 30 s) on their own.',
  );

export type TunnelDrops = z.infer<typeof TunnelDropsSchema>;

const KEY_NOTE = ' Public key only; private keys never leave the node unsealed.';

export const NodeTunnelStatusSchema = z
  .object({
    observedGeneration: z
      .int()
      .min(0)
      .optional()
      .describe('The .metadata.generation the agent last applied.'),
    envelopePublicKey: x25519PublicKey(
      "The agent's X25519 envelope public key: the operator seals this node's key material to it." + KEY_NOTE,
    ).optional(),
    envelopeMLKEMPublicKey: z
      .string()
      .length(1580)
      .regex(/^[A-Za-z0-9+/]+={0,2}$/)
      .optional()
      .describe(
        "The agent's ML-KEM-768 encapsulation key (base64 of 1,184 bytes), published next to envelopePublicKey: " +
          "the operator then seals this node's key material with a key derived from both an X25519 and an " +
          'ML-KEM-768 shared secret (post-quantum). Absent: sealed with X25519 only.' +
          KEY_NOTE,
      ),
    publicKey: x25519PublicKey(
      "The WireGuard public key this node's device runs, at status.appliedEpoch." + KEY_NOTE,
    ).optional(),
    stagedPublicKey: x25519PublicKey(
      "The WireGuard public key for status.stagedEpoch, published when the agent acknowledges a rotation's staging." +
        KEY_NOTE,
    ).optional(),
    appliedEpoch: z.int().min(0).optional().describe('Key epoch the WireGuard device runs at.'),
    stagedEpoch: z
      .int()
      .min(0)
      .optional()
      .describe('Highest epoch whose keys are unsealed, validated and ready.'),
    peers: listMap(PeerStatusSchema, ['node'], 4096).optional().describe('One entry per peer node.'),
    summary: z
      .object({
        encrypted: z.int32().min(0).describe('Peers in state Encrypted.'),
        total: z.int32().min(0).describe('All peers.'),
      })
      .optional()
      .describe('Peer counts.'),
    peersSummary: z
      .string()
      .max(32)
      .optional()
      .describe('Encrypted peers over all peers, e.g. 3/3 (the PEERS column).'),
    drops: TunnelDropsSchema.optional(),
    agent: z
      .object({
        version: z.string().min(1).max(64).describe('The sealmesh release the agent runs, e.g. 0.2.0.'),
        keyPayloads: z
          .array(z.int().min(1).max(1000))
          .max(16)
          .describe('The key Secret payload versions the agent reads.'),
      })
      .optional()
      .describe(
        'What the agent runs, for the version skew policy: the operator refuses rotations while an agent is ' +
          'more than one release from it or cannot read the key payload it writes (README "Version skew"). ' +
          'Agents older than 0.2.0 publish none.',
      ),
    conditions: conditions(
      'Ready and Encrypted; OperatorKeyTrusted=False while the operator publishes a sealing key other than the one this node pinned on first use.',
    ).optional(),
  })
  .describe('Observed state of the tunnel, written by the agent on its node only.');

const NAME_MESSAGE = 'metadata.name must be <spec.overlay>.<spec.nodeName>';

export const NodeTunnelSchema = z
  .object({
    apiVersion: z.literal(API_VERSION).default(API_VERSION),
    kind: z.literal(NODE_TUNNEL_KIND).default(NODE_TUNNEL_KIND),
    metadata: ObjectMetaSchema,
    spec: NodeTunnelSpecSchema,
    status: NodeTunnelStatusSchema.optional(),
  })
  .superRefine((t, ctx) => {
    // The root CEL rule in nodeTunnelKind.
    const name: unknown = t.metadata?.name;
    if (typeof name === 'string' && name !== nodeTunnelName(t.spec?.overlay, t.spec?.nodeName)) {
      ctx.addIssue({ code: 'custom', message: NAME_MESSAGE, path: ['metadata', 'name'], input: name });
    }
  });

export type NodeTunnel = z.output<typeof NodeTunnelSchema>;
export type NodeTunnelInput = z.input<typeof NodeTunnelSchema>;
export type NodeTunnelSpec = z.output<typeof NodeTunnelSpecSchema>;
export type NodeTunnelStatus = z.output<typeof NodeTunnelStatusSchema>;

/** Parses a NodeTunnel read from the API; an invalid one is logged and skipped, never a crash. */
export function parseNodeTunnel(obj: unknown): ParseResult<NodeTunnel> {
  return parseWith(NodeTunnelSchema, obj);
}

/** What the API server's transition rules reject when `next` replaces `old` (both already parsed). */
export function nodeTunnelUpdateIssues(old: NodeTunnel, next: NodeTunnel): Issue[] {
  const issues: Issue[] = [];
  const at = (f: string) => fieldPath(['spec', f]);
  if (old.spec.overlay !== next.spec.overlay)
    issues.push({ path: at('overlay'), message: TRANSITIONS.overlay.message });
  if (old.spec.nodeName !== next.spec.nodeName) {
    issues.push({ path: at('nodeName'), message: TRANSITIONS.nodeName.message });
  }
  if (next.spec.epoch < old.spec.epoch)
    issues.push({ path: at('epoch'), message: TRANSITIONS.epoch.message });
  return issues;
}

/** nodeTunnelUpdateIssues as one readable line, or undefined when the update is allowed. */
export function nodeTunnelUpdateError(old: NodeTunnel, next: NodeTunnel): string | undefined {
  const issues = nodeTunnelUpdateIssues(old, next);
  return issues.length === 0 ? undefined : formatIssues(issues);
}

export const nodeTunnelKind: KindInfo = {
  kind: NODE_TUNNEL_KIND,
  plural: NODE_TUNNEL_PLURAL,
  singular: 'nodetunnel',
  shortNames: ['ntun'],
  categories: ['sealmesh'],
  scope: 'Cluster',
  description:
    "NodeTunnel is one node's membership in one OverlayNetwork, named <overlay>.<node>. The operator writes " +
    'the spec; the agent on that node writes the status, including how it sees every peer.',
  spec: NodeTunnelSpecSchema,
  status: NodeTunnelStatusSchema,
  rootValidations: [
    { rule: "self.metadata.name == self.spec.overlay + '.' + self.spec.nodeName", message: NAME_MESSAGE },
  ],
  printerColumns: [
    { name: 'Node', type: 'string', jsonPath: '.spec.nodeName' },
    { name: 'Overlay', type: 'string', jsonPath: '.spec.overlay' },
    { name: 'Address', type: 'string', jsonPath: '.spec.address' },
    { name: 'Endpoint', type: 'string', jsonPath: '.spec.endpoint' },
    { name: 'Peers', type: 'string', jsonPath: '.status.peersSummary', description: 'Encrypted/total peers' },
    { name: 'Epoch', type: 'integer', jsonPath: '.status.appliedEpoch' },
    { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
    { name: 'Agent', type: 'string', jsonPath: '.status.agent.version', priority: 1 },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
  ],
};
