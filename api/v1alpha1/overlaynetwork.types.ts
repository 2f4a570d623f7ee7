// OverlayNetwork: what the user writes. The zod schema is the source of truth for the TypeScript type, the
// operator's validation and the CRD (config/crd/bases/sealmesh.io_overlaynetworks.yaml, `npm run manifests`).
import { z } from 'zod';
import {
  ObjectMetaSchema,
  LabelSelectorSchema,
  conditions,
  parseWith,
  type ParseResult,
} from './common.types.js';
import {
  API_VERSION,
  OVERLAY_LABEL,
  OVERLAY_NETWORK_KIND,
  OVERLAY_NETWORK_PLURAL,
  type KindInfo,
} from './groupversion.js';
import {
  cidr,
  cron,
  duration,
  listSet,
  parseCIDR,
  timeZone,
  withRules,
  type PrefixRange,
} from './validation.js';

/**
 * Allowed prefix lengths of `spec.addressPool`. IPv4 /8../30 and IPv6 /64../126: every pool has room for at
 * least 4 addresses, and no pool is so large that the allocator has to reason about more than 2^64 of them.
 */
export const ADDRESS_POOL_PREFIX: PrefixRange = { 4: [8, 30], 6: [64, 126] };
/** Smallest rotation interval: a rotation stages, cuts over and verifies across every node, which takes time. */
export const MIN_ROTATION_INTERVAL = '10m';
/** WireGuard's persistent keepalive is a 16-bit number of seconds. */
export const MAX_PERSISTENT_KEEPALIVE = '65535s';
export const MIN_MTU = 576;
export const MIN_MTU_IPV6 = 1280;
export const MAX_MTU = 9000;
/**
 * Default WireGuard port: clear of 51820 and 51821 (WireGuard's conventional port, taken for IPv4 and IPv6 by
 * Calico, Flannel, Kilo and Talos KubeSpan) and of 51871 (Cilium), so sealmesh can run beside any of them
 * while a cluster migrates.
 */
export const DEFAULT_LISTEN_PORT = 51890;

function cadenceShape(what: string) {
  return {
    schedule: cron(
      `When to rotate ${what}: a 5-field cron expression (minute hour day-of-month month day-of-week), ` +
        `e.g. "0 3 * * 0" for Sundays at 03:00. Evaluated in timeZone (default UTC).`,
    ).optional(),
    interval: duration({
      description:
        `Rotate ${what} when the current ones are older than this, e.g. 720h. Whole hours, minutes and ` +
        `seconds; at least ${MIN_ROTATION_INTERVAL}. With a schedule as well, whichever comes first wins.`,
      min: MIN_ROTATION_INTERVAL,
    }).optional(),
    timeZone: timeZone(
      'IANA time zone the schedule is evaluated in, e.g. Europe/Berlin (default UTC). Only with a schedule.',
    ).optional(),
  };
}

const timeZoneNeedsSchedule = {
  rule: '!has(self.timeZone) || has(self.schedule)',
  message: 'timeZone applies only to a schedule',
  fieldPath: '.timeZone',
  test: (c: { timeZone?: string | undefined; schedule?: string | undefined }) =>
    c.timeZone === undefined || c.schedule !== undefined,
};

export const PresharedKeyRotationSchema = withRules(
  z
    .object(cadenceShape('the pre-shared keys alone'))
    .describe(
      'A separate, usually more frequent, cadence for rotating only the per-pair pre-shared keys. A PSK ' +
        'rotation never interrupts traffic. Requires keys.presharedKeys: PerPair.',
    ),
  [
    {
      rule: 'has(self.schedule) || has(self.interval)',
      message: 'set a schedule, an interval or both',
      test: (c) => c.schedule !== undefined || c.interval !== undefined,
    },
    timeZoneNeedsSchedule,
  ],
);

export const RotationSchema = withRules(
  z
    .object({
      ...cadenceShape('the WireGuard private keys (and the pre-shared keys with them)'),
      presharedKeys: PresharedKeyRotationSchema.optional(),
    })
    .describe(
      'Automatic key rotation. Without it keys rotate only on request (annotation sealmesh.io/rotate or ' +
        '`kubectl sealmesh rotate`). Each rotation stages new keys on every node, cuts over at one instant and ' +
        'verifies every pair, without dropping traffic.',
    ),
  [
    {
      rule: 'has(self.schedule) || has(self.interval) || has(self.presharedKeys)',
      message: 'set a schedule, an interval or a presharedKeys cadence',
      test: (r) => r.schedule !== undefined || r.interval !== undefined || r.presharedKeys !== undefined,
    },
    timeZoneNeedsSchedule,
  ],
);

export const KeysSchema = withRules(
  z
    .object({
      custody: z
        .enum(['Node', 'Operator'])
        .default('Node')
        .describe(
          'Who generates WireGuard private keys. Node: each agent generates its own and the key never leaves ' +
            'the node. Operator: the operator generates them and seals each to its node.',
        ),
      presharedKeys: z
        .enum(['PerPair', 'Disabled'])
        .default('PerPair')
        .describe(
          'PerPair: every node pair gets its own random pre-shared key. Disabled: no pre-shared keys.',
        ),
      rotation: RotationSchema.optional(),
    })
    .describe('Key custody, pre-shared keys and rotation.'),
  [
    {
      rule: "!(has(self.presharedKeys) && self.presharedKeys == 'Disabled' && has(self.rotation) && has(self.rotation.presharedKeys))",
      message: 'a pre-shared key rotation needs presharedKeys: PerPair',
      fieldPath: '.rotation.presharedKeys',
      test: (k) => !(k.presharedKeys === 'Disabled' && k.rotation?.presharedKeys !== undefined),
    },
  ],
).prefault({});

/** At most this many pod CIDRs in status.nonMemberPodCIDRs (operator/plan/nonmembers.ts). */
export const MAX_NON_MEMBER_POD_CIDRS = 4096;

/** At most this many declared protected ranges per overlay (each is one interval of an nft set). */
export const MAX_PROTECTED_RANGES = 64;

export const DataPlaneSchema = z
  .object({
    mode: z
      .enum(['FailClosed', 'Monitor'])
      .default('FailClosed')
      .describe(
        'FailClosed (default): traffic to or from a protected prefix that does not go through this ' +
          "overlay's WireGuard interface is dropped and counted (nftables table inet sealmesh on every " +
          'node), so it is encrypted or dropped, never sent in the clear: while a node joins, before its ' +
          'keys or pre-shared keys exist, while the agent restarts or the WireGuard device is gone. Monitor: ' +
          'the same traffic is only counted, not dropped; for turning sealmesh on in a running cluster and ' +
          'seeing what FailClosed would drop first.',
      ),
    protectedRanges: listSet(
      cidr({
        description: 'A CIDR, e.g. 10.244.0.0/16. Must be a network address.',
        network: true,
      }),
      MAX_PROTECTED_RANGES,
    )
      .optional()
      .describe(
        "Ranges protected besides every member's tunnel address and pod CIDRs, typically the cluster's " +
          'whole pod range, so traffic to a node whose NodeTunnel does not exist yet is dropped too. Each ' +
          "node leaves its own pod CIDRs and tunnel address out. Must not contain nodes' underlay addresses.",
      ),
  })
  .describe(
    'How the data plane treats traffic between members that would otherwise leave unencrypted: the ' +
      'protected prefixes and whether it is dropped or only counted.',
  )
  .prefault({});

export const OverlayNetworkSpecSchema = withRules(
  z
    .object({
      nodeSelector: LabelSelectorSchema.optional().describe(
        'Nodes that join this overlay. Absent or empty: every node.',
      ),
      addressPool: cidr({
        description:
          'CIDR the tunnel addresses are allocated from, IPv4 or IPv6, e.g. 10.99.0.0/16 or fd00:99::/64. ' +
          'Must be a network address, with a prefix length of /8 to /30 (IPv4) or /64 to /126 (IPv6).',
        network: true,
        prefix: ADDRESS_POOL_PREFIX,
      }),
      listenPort: z
        .int32()
        .min(1)
        .max(65535)
        .default(DEFAULT_LISTEN_PORT)
        .describe(
          `UDP port WireGuard listens on, on every node. Default ${DEFAULT_LISTEN_PORT}: clear of 51820 and 51821 ` +
            '(used by Calico, Flannel, Kilo and Talos KubeSpan) and 51871 (Cilium), so sealmesh can run beside ' +
            'them during a migration. Two overlays on one node need different ports.',
        ),
      mtu: z
        .int32()
        .min(MIN_MTU)
        .max(MAX_MTU)
        .optional()
        .describe(
          `MTU of the tunnel interface, ${MIN_MTU} to ${MAX_MTU} (at least ${MIN_MTU_IPV6} for an IPv6 pool). ` +
            'Default: the underlay MTU minus the WireGuard overhead.',
        ),
      persistentKeepalive: duration({
        description:
          'How often to send a keepalive to each peer, so NAT and firewall state stays open, e.g. 25s. ' +
          `0s disables it. At most ${MAX_PERSISTENT_KEEPALIVE}.`,
        max: MAX_PERSISTENT_KEEPALIVE,
      }).default('25s'),
      routePodCIDRs: z
        .boolean()
        .default(true)
        .describe("Route each peer node's spec.podCIDRs through the tunnel, not only its tunnel address."),
      keys: KeysSchema.describe('Key custody, pre-shared keys and rotation.'),
      dataPlane: DataPlaneSchema,
      paused: z
        .boolean()
        .default(false)
        .describe('Stop reconciling this overlay: no node changes and no rotations; tunnels keep running.'),
    })
    .describe('Desired state of the overlay.'),
  [
    {
      rule: `!has(self.mtu) || !isCIDR(self.addressPool) || cidr(self.addressPool).ip().family() == 4 || self.mtu >= ${MIN_MTU_IPV6}`,
      message: `mtu must be at least ${MIN_MTU_IPV6} when addressPool is IPv6`,
      fieldPath: '.mtu',
      test: (s) => s.mtu === undefined || parseCIDR(s.addressPool)?.family !== 6 || s.mtu >= MIN_MTU_IPV6,
    },
  ],
);

const time = (description: string) => z.iso.datetime({ offset: true }).describe(description);
const count = (description: string) => z.int32().min(0).describe(description);

export const OverlayNetworkStatusSchema = z
  .object({
    observedGeneration: z
      .int()
      .min(0)
      .optional()
      .describe('The .metadata.generation the operator last reconciled successfully.'),
    conditions: conditions(
      "Ready, Degraded, Rotating and PostQuantum (True when every pair's pre-shared key is sealed with X25519 " +
        'and ML-KEM-768: a recording of the key Secrets, or of the API traffic that carries them, cannot be ' +
        'opened later by breaking X25519 alone; the WireGuard handshake itself stays classical, and the PSK ' +
        'is what adds post-quantum protection to the tunnels).',
    ).optional(),
    nodes: count('Number of nodes in the overlay.').optional(),
    pairs: z
      .object({
        total: count('Node pairs in the overlay: n(n-1)/2.'),
        encrypted: count('Pairs whose two sides both report Encrypted at the current epoch.'),
        degraded: count('Pairs that are neither encrypted nor still being set up.'),
        unknown: count(
          'Pairs with an agent out of touch (its Lease not renewed): their last report is no longer news; ' +
            'the data plane may still be encrypting.',
        ).optional(),
      })
      .optional()
      .describe('Pair counts.'),
    encryptedSummary: z
      .string()
      .max(32)
      .optional()
      .describe('Encrypted pairs over total pairs, e.g. 45/45 (the ENCRYPTED column).'),
    epoch: z
      .int()
      .min(0)
      .meta({ 'x-kubernetes-validations': [{ rule: 'self >= oldSelf', message: 'epoch must not decrease' }] })
      .optional()
      .describe(
        'Current key epoch; it only increases (an agent refuses an epoch below one it ran, and the operator then moves to a new one).',
      ),
    lastRotationTime: time('When the last rotation completed.').optional(),
    nextRotationTime: time('When the next scheduled rotation starts.').optional(),
    lastRotateRequest: z
      .string()
      .max(253)
      .optional()
      .describe(
        'The value of the sealmesh.io/rotate annotation last acted on; a new value starts a rotation.',
      ),
    lastPresharedKeyRotationTime: time('When the last pre-shared-key-only rotation completed.').optional(),
    nextPresharedKeyRotationTime: time(
      'When the next scheduled pre-shared-key-only rotation starts.',
    ).optional(),
    nonMemberPodCIDRs: z
      .array(z.string().max(43))
      .max(MAX_NON_MEMBER_POD_CIDRS)
      .optional()
      .describe(
        'Pod CIDRs of nodes this overlay does not select that lie in spec.dataPlane.protectedRanges: agents ' +
          'leave them out of the fail-closed rules, so those pods stay reachable the way the CNI reaches them. ' +
          'A selected node is never listed, with or without its NodeTunnel. Written by the operator; at most ' +
          `${MAX_NON_MEMBER_POD_CIDRS} (beyond that the rest stay protected).`,
      ),
    rotation: z
      .object({
        phase: z
          .enum(['Staging', 'CuttingOver', 'Verifying', 'Backoff'])
          .describe(
            'Staging: waiting for every live agent to stage; CuttingOver: cutover time set; Verifying: waiting ' +
              'for every pair at the target epoch; Backoff: the last attempt was aborted, retried at retryTime.',
          ),
        scope: z
          .enum(['Keys', 'PresharedKeys'])
          .describe('Keys: new private keys and pre-shared keys. PresharedKeys: pre-shared keys only.'),
        targetEpoch: z.int().min(0).describe('The epoch being rolled out.'),
        startTime: time('When this rotation attempt started.'),
        cutoverTime: time('The instant every agent switches to the target epoch.').optional(),
        attempt: z
          .int32()
          .min(1)
          .optional()
          .describe('Attempt number; aborted attempts are retried with backoff.'),
        retryTime: time('Backoff only: when the next attempt starts.').optional(),
        reason: z
          .string()
          .max(1024)
          .optional()
          .describe('Why the rotation started, or why the last attempt aborted.'),
      })
      .optional()
      .describe('The rotation in progress, if any.'),
  })
  .describe('Observed state of the overlay, written by the operator.');

const NAME_MESSAGE = `metadata.name must be at most 63 characters: it is the value of the ${OVERLAY_LABEL} label`;

export const OverlayNetworkSchema = z
  .object({
    apiVersion: z.literal(API_VERSION).default(API_VERSION),
    kind: z.literal(OVERLAY_NETWORK_KIND).default(OVERLAY_NETWORK_KIND),
    metadata: ObjectMetaSchema,
    spec: OverlayNetworkSpecSchema,
    status: OverlayNetworkStatusSchema.optional(),
  })
  .superRefine((o, ctx) => {
    // The root CEL rule in overlayNetworkKind; CEL cannot point a fieldPath into metadata, zod can.
    if (typeof o.metadata?.name === 'string' && o.metadata.name.length > 63) {
      ctx.addIssue({
        code: 'custom',
        message: NAME_MESSAGE,
        path: ['metadata', 'name'],
        input: o.metadata.name,
      });
    }
  });

export type OverlayNetwork = z.output<typeof OverlayNetworkSchema>;
export type OverlayNetworkInput = z.input<typeof OverlayNetworkSchema>;
export type OverlayNetworkSpec = z.output<typeof OverlayNetworkSpecSchema>;
export type OverlayNetworkStatus = z.output<typeof OverlayNetworkStatusSchema>;
export type KeyRotation = z.output<typeof RotationSchema>;

/** Parses an OverlayNetwork read from the API; a failure is an InvalidSpec condition, never a crash. */
export function parseOverlayNetwork(obj: unknown): ParseResult<OverlayNetwork> {
  return parseWith(OverlayNetworkSchema, obj);
}

export const overlayNetworkKind: KindInfo = {
  kind: OVERLAY_NETWORK_KIND,
  plural: OVERLAY_NETWORK_PLURAL,
  singular: 'overlaynetwork',
  shortNames: ['ovl'],
  categories: ['sealmesh'],
  scope: 'Cluster',
  description:
    'OverlayNetwork is an encrypted WireGuard overlay between the selected nodes. The operator creates one ' +
    'NodeTunnel per node, distributes pre-shared keys and rotates keys without dropping traffic.',
  spec: OverlayNetworkSpecSchema,
  status: OverlayNetworkStatusSchema,
  rootValidations: [{ rule: 'size(self.metadata.name) <= 63', message: NAME_MESSAGE }],
  printerColumns: [
    { name: 'Nodes', type: 'integer', jsonPath: '.status.nodes' },
    {
      name: 'Encrypted',
      type: 'string',
      jsonPath: '.status.encryptedSummary',
      description: 'Encrypted/total pairs',
    },
    { name: 'Epoch', type: 'integer', jsonPath: '.status.epoch' },
    { name: 'Next-Rotation', type: 'string', jsonPath: '.status.nextRotationTime' },
    { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    { name: 'Pool', type: 'string', jsonPath: '.spec.addressPool', priority: 1 },
    { name: 'Custody', type: 'string', jsonPath: '.spec.keys.custody', priority: 1 },
    {
      name: 'Post-Quantum',
      type: 'string',
      jsonPath: '.status.conditions[?(@.type=="PostQuantum")].status',
      description: "Every pair's PSK sealed with X25519 + ML-KEM-768",
      priority: 1,
    },
  ],
};
