// A scripted stand-in for the node agent, for operator tests without a WireGuard lab: it publishes envelope
// and WireGuard public keys in a NodeTunnel's status, unseals its PSKs from the operator's Secrets, and
// reports peer states, the way the real agent does.
import {
  CoordinationV1Api,
  CoreV1Api,
  V1MicroTime,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
} from '@kubernetes/client-node';
import { GROUP, NODE_TUNNEL_PLURAL, nodeTunnelName, VERSION } from '../../api/v1alpha1/groupversion.js';
import { agentLeaseName } from '../../lib/contract/liveness.js';
import { IDENTITY_NAME, IDENTITY_PUBLIC_KEY } from '../../lib/contract/identity.js';
import { AGENT_INFO, type AgentInfo } from '../../lib/contract/version.js';
import { encodeKey, generateKeyPair, publicKeyOf } from '../../lib/keys.js';
import {
  decodeKeySecretData,
  pairKey,
  keySecretNameAt,
  privateKeyContext,
  pskContext,
} from '../../lib/contract/keysecret.js';
import { newBoxKeyPair, unseal, type BoxKeyPair } from '../../lib/seal.js';

export class AgentStandIn {
  readonly envelope: BoxKeyPair = newBoxKeyPair();
  readonly wg = generateKeyPair();
  /** every plaintext key this stand-in saw, base64, so tests can search for leaks */
  readonly seenKeys = new Set<string>();
  private readonly custom: CustomObjectsApi;
  private readonly core: CoreV1Api;
  private readonly coordination: CoordinationV1Api;
  /** what it says it runs in status.agent, as the real agent does; null: an agent older than 0.2.0 */
  agent: AgentInfo | null = AGENT_INFO;

  constructor(
    kc: KubeConfig,
    readonly overlay: string,
    readonly node: string,
    private readonly namespace: string,
  ) {
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.core = kc.makeApiClient(CoreV1Api);
    this.coordination = kc.makeApiClient(CoordinationV1Api);
    this.seenKeys.add(Buffer.from(this.envelope.secretKey).toString('base64'));
    this.seenKeys.add(encodeKey(this.wg.privateKey));
  }

  private async patchStatus(status: object): Promise<void> {
    await this.custom.patchClusterCustomObjectStatus(
      {
        group: GROUP,
        version: VERSION,
        plural: NODE_TUNNEL_PLURAL,
        name: nodeTunnelName(this.overlay, this.node),
        body: { status },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  async publishKeys(): Promise<void> {
    await this.patchStatus({
      envelopePublicKey: encodeKey(this.envelope.publicKey),
      publicKey: this.wg.publicKey,
      agent: this.agent,
    });
  }

  /** Acknowledges staging of `epoch`, as an agent does once it holds the new material. */
  async stage(epoch: number, stagedPublicKey: string): Promise<void> {
    await this.patchStatus({ stagedEpoch: epoch, stagedPublicKey });
  }

  /** Creates or renews this node's liveness Lease (what the operator reads to decide who is live). */
  async heartbeat(leaseDurationSeconds = 40): Promise<void> {
    const name = agentLeaseName(this.node);
    const spec = {
      holderIdentity: this.node,
      leaseDurationSeconds,
      renewTime: new V1MicroTime(Date.now()),
    };
    try {
      const lease = await this.coordination.readNamespacedLease({ name, namespace: this.namespace });
      await this.coordination.replaceNamespacedLease({
        name,
        namespace: this.namespace,
        body: { ...lease, spec },
      });
    } catch {
      await this.coordination.createNamespacedLease({
        namespace: this.namespace,
        body: { metadata: { name }, spec },
      });
    }
  }

  async report(
    peers: Array<{ node: string; state: string; epoch: number }>,
    appliedEpoch: number,
  ): Promise<void> {
    const since = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    const encrypted = peers.filter((p) => p.state === 'Encrypted').length;
    await this.patchStatus({
      appliedEpoch,
      peers: peers.map((p) => ({ ...p, since })),
      summary: { encrypted, total: peers.length },
      peersSummary: `${encrypted}/${peers.length}`,
      agent: this.agent,
    });
  }

  async operatorPublicKey(): Promise<Uint8Array> {
    const cm = await this.core.readNamespacedConfigMap({ namespace: this.namespace, name: IDENTITY_NAME });
    return new Uint8Array(Buffer.from(cm.data?.[IDENTITY_PUBLIC_KEY] ?? '', 'base64'));
  }

  /** The PSK of the pair (this node, peer) at `epoch`, unsealed from whichever node's Secret owns it. */
  async psk(peer: string, epoch: number): Promise<{ key: string; fingerprint: string } | undefined> {
    const operatorKey = await this.operatorPublicKey();
    const [a, b] = pairKey(this.node, peer);
    for (const owner of [this.node, peer]) {
      let data: Record<string, string> | undefined;
      try {
        data = (
          await this.core.readNamespacedSecret({
            namespace: this.namespace,
            name: keySecretNameAt(this.overlay, owner, epoch),
          })
        ).data;
      } catch {
        continue;
      }
      const decoded = decodeKeySecretData(data);
      if (!decoded.ok) continue;
      const entry = decoded.payload.pairs.find((p) => p.a === a && p.b === b && p.epoch === epoch);
      const sealed = entry?.sealed[this.node];
      if (!entry || !sealed) continue;
      const key = Buffer.from(
        unseal(sealed, operatorKey, this.envelope, pskContext(this.overlay, a, b, epoch)),
      ).toString('base64');
      this.seenKeys.add(key);
      return { key, fingerprint: entry.fingerprint };
    }
    return undefined;
  }

  /**
   * Operator custody: the private key this node's Secret of `epoch` holds, unsealed; its public key and the
   * epoch the key was made for. Undefined while there is no such Secret or entry.
   */
  async privateKey(epoch: number): Promise<{ publicKey: string; madeAt: number } | undefined> {
    let data: Record<string, string> | undefined;
    try {
      data = (
        await this.core.readNamespacedSecret({
          namespace: this.namespace,
          name: keySecretNameAt(this.overlay, this.node, epoch),
        })
      ).data;
    } catch {
      return undefined;
    }
    const decoded = decodeKeySecretData(data);
    const entry = decoded.ok ? decoded.payload.privateKeys[0] : undefined;
    if (!entry) return undefined;
    const key = unseal(
      entry.sealed,
      await this.operatorPublicKey(),
      this.envelope,
      privateKeyContext(this.overlay, this.node, entry.epoch),
    );
    this.seenKeys.add(Buffer.from(key).toString('base64'));
    return { publicKey: publicKeyOf(key), madeAt: entry.epoch };
  }
}
