// Epochs only increase (security review S9, issue #14 item 3): the agent keeps the highest epoch it ran per
// overlay (with the overlay's UID, so a re-created overlay of the same name starts over) in its state dir, and
// refuses an overlay status that goes back below it, as an etcd restore to an older state would: the keys of
// earlier epochs are retired. It reports what it ran, and the operator moves the overlay past it
// (operator/plan/rotation.ts, epochAfterRollback).
import type { KeyStore } from './keystore.js';
import type { Pass } from './pass.js';
import type { StatusReport } from './report.js';

export function rolledBackMessage(run: number, floor: number): string {
  return (
    `the overlay's epoch ${run} is below epoch ${floor}, which this node already ran: refusing to go back ` +
    `to retired keys (the operator moves the overlay to a new epoch)`
  );
}

export class EpochFloor {
  constructor(
    private readonly keys: Pick<KeyStore, 'epochFloor' | 'setEpochFloor'>,
    private readonly report: Pick<StatusReport, 'notApplied' | 'publish'>,
  ) {}

  private uid(p: Pass): string {
    return (p.w.network.get(p.overlay)?.metadata as { uid?: string } | undefined)?.uid ?? '';
  }

  /** The highest epoch this node ran for the pass's overlay; undefined: none (or another overlay's). */
  async of(p: Pass): Promise<number | undefined> {
    if (p.rt.floor === undefined) p.rt.floor = (await this.keys.epochFloor(p.overlay)) ?? null;
    return p.rt.floor && p.rt.floor.uid === this.uid(p) ? p.rt.floor.epoch : undefined;
  }

  /** When `run` is below the floor: reports the refusal (Ready=False EpochRolledBack) and returns true. */
  async refuse(p: Pass, run: number): Promise<boolean> {
    const floor = await this.of(p);
    if (floor === undefined || run >= floor) return false;
    p.log.warn({ epoch: run, floor }, 'epoch rolled back; not applying it');
    const status = this.report.notApplied(
      p.rt,
      p.mine,
      p.now,
      'EpochRolledBack',
      rolledBackMessage(run, floor),
    );
    // what this node ran, so the operator sees that status.epoch is behind
    await this.report.publish(p.rt, p.mine, { ...status, appliedEpoch: floor });
    return true;
  }

  /** Records that the device runs `run` (after it was programmed). */
  async ran(p: Pass, run: number): Promise<void> {
    const floor = await this.of(p);
    if (floor !== undefined && run <= floor) return;
    p.rt.floor = { uid: this.uid(p), epoch: run };
    await this.keys.setEpochFloor(p.overlay, p.rt.floor);
  }
}
