// The agent's heartbeat: a coordination.k8s.io/v1 Lease per node, renewed every ~10 s. Liveness lives here
// and not in the NodeTunnel status so that a healthy, quiet overlay causes no NodeTunnel writes at all
// (a status rewrite on a timer would cost every watcher of the overlay a full object per node per period).
import { agentLeaseName } from '../lib/contract/liveness.js';
import type { Logger } from '../lib/log.js';
import { describeError } from '../lib/kube.js';
import { realClock, type Clock, type TimerHandle } from '../lib/runtime/clock.js';
import type { LeaseClient } from '../lib/runtime/leader.js';

export interface LivenessLeaseOptions {
  client: LeaseClient;
  namespace: string;
  node: string;
  renewIntervalMs?: number;
  leaseDurationSeconds?: number;
  clock?: Clock;
  logger?: Logger;
}

export class LivenessLease {
  readonly name: string;
  private readonly clock: Clock;
  private readonly renewIntervalMs: number;
  private readonly leaseDurationSeconds: number;
  private timer: TimerHandle | undefined;
  private running = false;
  private inFlight: Promise<void> | undefined;

  constructor(private readonly o: LivenessLeaseOptions) {
    this.name = agentLeaseName(o.node);
    this.clock = o.clock ?? realClock;
    this.renewIntervalMs = o.renewIntervalMs ?? 10_000;
    this.leaseDurationSeconds = o.leaseDurationSeconds ?? 40;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.tick();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.clock.clearTimeout(this.timer);
    await this.inFlight;
  }

  /** One renewal (creates the Lease when missing). Errors are logged: the next tick retries. */
  async renew(): Promise<void> {
    const { client, namespace, node } = this.o;
    const now = this.clock.now();
    try {
      const current = await client.get(namespace, this.name);
      if (!current) {
        await client.create(namespace, this.name, {
          holderIdentity: node,
          leaseDurationSeconds: this.leaseDurationSeconds,
          acquireTime: now,
          renewTime: now,
          leaseTransitions: 0,
        });
        return;
      }
      await client.update(
        namespace,
        this.name,
        {
          ...current.record,
          holderIdentity: node,
          leaseDurationSeconds: this.leaseDurationSeconds,
          renewTime: now,
        },
        current.resourceVersion,
      );
    } catch (err) {
      this.o.logger?.warn(
        { lease: `${namespace}/${this.name}`, err: describeError(err) },
        'failed to renew liveness lease',
      );
    }
  }

  private tick(): void {
    if (!this.running) return;
    this.inFlight = this.renew().finally(() => {
      this.inFlight = undefined;
      if (this.running) this.timer = this.clock.setTimeout(() => this.tick(), this.renewIntervalMs);
    });
  }
}
