// The agent's Prometheus metrics (issue #16 item 1), per overlay and peer node, served on /metrics (main.ts).
// Names follow wireguard_exporter's under the sealmesh_ prefix (sealmesh_wireguard_sent_bytes_total is
// wireguard_sent_bytes_total) so dashboards and alerts carry over; labels are the overlay and the peer's node
// name, never a key. The byte counters are the device's own (`wg show dump`: they start again from zero when
// a peer is re-created, which Prometheus treats as a counter reset), the drop counters agent/drops.ts's totals.
// Every series of a peer that left the device, or of an overlay the node left, goes with it.
import { Counter, Gauge, type Registry } from 'prom-client';
import { PeerStateSchema, type PeerState as PeerStateName } from '../api/v1alpha1/nodetunnel.types.js';
import type { DeviceState } from './device/device.js';
import type { DropTotals } from './drops.js';

type Labels = Record<string, string>;

/**
 * Series kept per overlay and copied into the metric at scrape time: the values come from sources that count
 * on their own (the kernel, the pass), and whole overlays are replaced or dropped at once.
 */
class Series {
  private readonly values = new Map<string, { labels: Labels; value: number }>();
  constructor(
    kind: 'counter' | 'gauge',
    name: string,
    help: string,
    labelNames: string[],
    registry: Registry,
  ) {
    const values = this.values;
    const registers = [registry];
    if (kind === 'counter')
      new Counter({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          for (const { labels, value } of values.values()) this.inc(labels, value);
        },
      });
    else
      new Gauge({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          for (const { labels, value } of values.values()) this.set(labels, value);
        },
      });
  }

  /** Replaces every series of `overlay` with `series`. */
  replace(overlay: string, series: ReadonlyArray<{ labels: Labels; value: number }>): void {
    this.forget(overlay);
    for (const s of series) {
      const labels = { overlay, ...s.labels };
      this.values.set(JSON.stringify(labels), { labels, value: s.value });
    }
  }

  forget(overlay: string): void {
    for (const [k, v] of this.values) if (v.labels.overlay === overlay) this.values.delete(k);
  }
}

export interface PeerSample {
  node: string;
  state: PeerStateName;
}

export const METRIC_NAMES = {
  handshake: 'sealmesh_wireguard_latest_handshake_seconds',
  sent: 'sealmesh_wireguard_sent_bytes_total',
  received: 'sealmesh_wireguard_received_bytes_total',
  state: 'sealmesh_peer_state',
  droppedPackets: 'sealmesh_failclosed_dropped_packets_total',
  droppedBytes: 'sealmesh_failclosed_dropped_bytes_total',
} as const;

/** every state a peer can be in (the NodeTunnel schema's), so each series is 1 or 0, never missing */
const STATES: readonly PeerStateName[] = PeerStateSchema.options;

export class AgentMetrics {
  private readonly handshake: Series;
  private readonly state: Series;
  private readonly sent: Series;
  private readonly received: Series;
  private readonly droppedPackets: Series;
  private readonly droppedBytes: Series;

  constructor(registry: Registry) {
    const peer = ['overlay', 'peer'];
    this.handshake = new Series(
      'gauge',
      METRIC_NAMES.handshake,
      'Unix time of the last WireGuard handshake with the peer node, as seen on this node (0: none yet).',
      peer,
      registry,
    );
    this.state = new Series(
      'gauge',
      METRIC_NAMES.state,
      `How this node sees the peer node: 1 for its state (${STATES.join(', ')}), 0 for the others.`,
      [...peer, 'state'],
      registry,
    );
    this.sent = new Series(
      'counter',
      METRIC_NAMES.sent,
      'Bytes sent to the peer node through the tunnel (wg show dump).',
      peer,
      registry,
    );
    this.received = new Series(
      'counter',
      METRIC_NAMES.received,
      'Bytes received from the peer node through the tunnel (wg show dump).',
      peer,
      registry,
    );
    this.droppedPackets = new Series(
      'counter',
      METRIC_NAMES.droppedPackets,
      'Would-be plaintext packets to or from the peer node that the fail-closed rules matched (dropped; only counted in Monitor mode). peer="": the rest of the declared protected ranges.',
      peer,
      registry,
    );
    this.droppedBytes = new Series(
      'counter',
      METRIC_NAMES.droppedBytes,
      'Bytes of the packets sealmesh_failclosed_dropped_packets_total counts.',
      peer,
      registry,
    );
  }

  /**
   * The peers of one overlay after a pass: handshake and bytes of every peer on the device whose node is
   * known (`nodeOf` its public key), the state the pass judged for every peer.
   */
  peers(
    overlay: string,
    device: DeviceState,
    nodeOf: (publicKey: string) => string | undefined,
    judged: readonly PeerSample[],
  ): void {
    const handshake: Array<{ labels: Labels; value: number }> = [];
    const sent: typeof handshake = [];
    const received: typeof handshake = [];
    for (const p of device.peers) {
      const node = nodeOf(p.publicKey);
      if (node === undefined) continue;
      const labels = { peer: node };
      const at = p.latestHandshake ? Math.floor(p.latestHandshake.getTime() / 1000) : 0;
      handshake.push({ labels, value: at });
      sent.push({ labels, value: p.txBytes });
      received.push({ labels, value: p.rxBytes });
    }
    this.handshake.replace(overlay, handshake);
    this.sent.replace(overlay, sent);
    this.received.replace(overlay, received);
    this.state.replace(
      overlay,
      judged.flatMap((j) =>
        STATES.map((state) => ({ labels: { peer: j.node, state }, value: j.state === state ? 1 : 0 })),
      ),
    );
  }

  /** The drop totals of one overlay (agent/drops.ts). */
  drops(overlay: string, totals: DropTotals): void {
    const series = (pick: 'packets' | 'bytes') => [
      ...[...totals.peers].map(([peer, c]) => ({ labels: { peer }, value: c[pick] })),
      { labels: { peer: '' }, value: totals.unattributed[pick] },
    ];
    this.droppedPackets.replace(overlay, series('packets'));
    this.droppedBytes.replace(overlay, series('bytes'));
  }

  /** The node left the overlay: every series of it goes. */
  forget(overlay: string): void {
    for (const s of [
      this.handshake,
      this.state,
      this.sent,
      this.received,
      this.droppedPackets,
      this.droppedBytes,
    ])
      s.forget(overlay);
  }
}
