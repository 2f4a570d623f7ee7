// The operator's ML-KEM key exchanges (issue #17), in memory only: one per (overlay, node, epoch), made the
// first time something is sealed to that node at that epoch. Its ciphertext is recorded in the node's own key
// Secret of the epoch (a KEM entry); every value sealed to the node at that epoch, in whichever Secret it
// lives, names the entry and is sealed under the node key derived from it (lib/hybrid.ts).
//
// The shared secrets are never written anywhere: the cluster holds the operator's X25519 key too, so a secret
// kept there would let an etcd backup open everything. After a restart the book is empty; the next value
// sealed to a node makes a new exchange, and the node's own Secret gets its ciphertext next to the earlier ones
// (whose values stay valid). Until that Secret is written the exchange is "unrecorded": the KeySecrets phase
// rewrites it in the same pass. That costs one write per node once per restart and epoch, and only for nodes
// that get new material; recording the ciphertext in the Secret that holds the value instead would add 1,088
// bytes per pair to the Secret of a node joining after a restart (~1.9 MB at 1,000 nodes: over the 1 MiB limit).
import type { KeyObject } from 'node:crypto';
import type { KemEntry } from '../../lib/contract/keysecret.js';
import type { BoxKeyPair } from '../../lib/seal.js';
import {
  encapsulateTo,
  hybridNodeKey,
  kemIdOf,
  x25519Shared,
  type NodeKeyBinding,
} from '../../lib/hybrid.js';

export type { KemEntry };

/** A node's envelope as the plan sees it (plan/keysecret.ts envelopeOf). */
export interface HybridEnvelope {
  key: Uint8Array;
  fp: string;
  kem?: { raw: Uint8Array; key: KeyObject } | undefined;
}

interface Exchange {
  entry: KemEntry;
  nodeKey: Uint8Array;
  epoch: number;
  overlay: string;
  recorded: boolean;
}

const slot = (overlay: string, node: string, epoch: number) => `${overlay}|${node}|${epoch}`;

export class KemBook {
  /** the current exchange by slot (overlay|node|epoch) */
  private readonly current = new Map<string, Exchange>();
  /**
   * node keys of every exchange this process made, by overlay|node|kemId (earlier ones stay valid; a PSK-only
   * rotation in Operator custody carries a private key sealed with one exchange into the next epoch's Secret)
   */
  private readonly keys = new Map<string, Exchange>();
  /** encapsulations made (for the bench and metrics) */
  encapsulations = 0;

  constructor(private readonly operator: BoxKeyPair) {}

  /** The exchange to seal to `node` at `epoch` with, made when there is none for its envelope (fresh). */
  exchange(
    overlay: string,
    node: string,
    epoch: number,
    env: HybridEnvelope,
  ): { entry: KemEntry; nodeKey: Uint8Array; fresh: boolean } {
    if (!env.kem) throw new Error(`node ${node} publishes no ML-KEM key`);
    const at = slot(overlay, node, epoch);
    const known = this.current.get(at);
    if (known && known.entry.sealedTo === env.fp) return { ...known, fresh: false };
    const { ciphertext, sharedKey } = encapsulateTo(env.kem.key);
    this.encapsulations++;
    const x = x25519Shared(this.operator.secretKey, env.key);
    const binding: NodeKeyBinding = {
      operatorPublicKey: this.operator.publicKey,
      nodePublicKey: env.key,
      nodeKemPublicKey: env.kem.raw,
      ciphertext,
    };
    const nodeKey = hybridNodeKey(x, sharedKey, binding);
    x.fill(0);
    sharedKey.fill(0);
    const entry: KemEntry = {
      id: kemIdOf(ciphertext),
      node,
      sealedTo: env.fp,
      ciphertext: Buffer.from(ciphertext).toString('base64'),
    };
    const ex: Exchange = { entry, nodeKey, epoch, overlay, recorded: false };
    this.current.set(at, ex);
    this.keys.set(`${overlay}|${node}|${entry.id}`, ex);
    return { entry, nodeKey, fresh: true };
  }

  /** The node key of an exchange this process made; undefined for one it never made (or forgot). */
  nodeKey(overlay: string, node: string, kemId: string): Uint8Array | undefined {
    return this.keys.get(`${overlay}|${node}|${kemId}`)?.nodeKey;
  }

  /** The node's own Secret (of the exchange's epoch) now holds the exchange `kemId`. */
  recorded(overlay: string, node: string, kemId: string): void {
    const ex = this.keys.get(`${overlay}|${node}|${kemId}`);
    if (ex) ex.recorded = true;
  }

  /** Whether values were sealed to the node with an exchange its own Secret does not hold yet. */
  unrecorded(overlay: string, node: string, epoch: number): boolean {
    const ex = this.current.get(slot(overlay, node, epoch));
    return ex !== undefined && !ex.recorded;
  }

  /** Nodes of the overlay at `epoch` with an unrecorded exchange. */
  unrecordedNodes(overlay: string, epoch: number): string[] {
    const out: string[] = [];
    for (const ex of this.current.values()) {
      if (ex.overlay === overlay && ex.epoch === epoch && !ex.recorded) out.push(ex.entry.node);
    }
    return out;
  }

  /**
   * Forgets the exchanges of the overlay made for epochs below `from` (all of them without `from`). Values
   * sealed with a forgotten exchange can no longer be checked by this process (plan/keyverify.ts skips them;
   * the agent still refuses a value that does not open in its context).
   */
  retain(overlay: string, from?: number): void {
    for (const map of [this.current, this.keys]) {
      for (const [k, ex] of map) {
        if (ex.overlay !== overlay || (from !== undefined && ex.epoch >= from)) continue;
        map.delete(k);
      }
    }
  }
}
