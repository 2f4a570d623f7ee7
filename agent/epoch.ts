// The agent's half of the rotation contract (../shared/DESIGN.md, "Rotation (hitless)"), as pure functions
// of what the API says: which epoch the device runs now, what to stage, when to wake up for the cutover, and
// which public key a peer has at a given epoch. The device runs the OverlayNetwork's status.epoch, except from the cutover
// instant of a rotation on, when it runs the rotation's target epoch; everything else is staging.
import { z } from 'zod';
import { OverlayNetworkStatusSchema } from '../api/v1alpha1/overlaynetwork.types.js';

/**
 * The part of OverlayNetwork.status the agent reads. The rest of the status is the operator's business and
 * must not stop the data plane when it fails to parse.
 */
export const AgentOverlayStatusSchema = z.object({
  epoch: OverlayNetworkStatusSchema.shape.epoch,
  rotation: OverlayNetworkStatusSchema.shape.rotation.optional(),
  // Fail-closed exceptions (agent/guard.ts): unreadable, they are none, and everything stays protected.
  nonMemberPodCIDRs: z.array(z.string()).optional().catch(undefined),
});
export type AgentOverlayStatus = z.output<typeof AgentOverlayStatusSchema>;

export type RotationScope = 'Keys' | 'PresharedKeys';

export interface EpochView {
  /** The overlay's current epoch: status.epoch, or the NodeTunnel's spec.epoch while the status has none. */
  base: number;
  /** The epoch the device runs now: `base`, or the rotation's target once its cutover instant has passed. */
  run: number;
  /** A rotation to take part in (staging, or cutting over): not in Backoff, target above `base`. */
  rotation?: { target: number; scope: RotationScope };
  /** `run` is the rotation's target. */
  cutover: boolean;
  /** The cutover instant (ms since the epoch) when it is still ahead: wake up then. */
  cutoverAt?: number;
}

export function epochView(status: AgentOverlayStatus | undefined, specEpoch: number, now: number): EpochView {
  const base = status?.epoch ?? specEpoch;
  const r = status?.rotation;
  // Backoff: the attempt was aborted and the old epoch stays. A target at or below the current epoch is a
  // leftover that no longer means anything.
  if (!r || r.phase === 'Backoff' || r.targetEpoch <= base) return { base, run: base, cutover: false };
  const rotation = { target: r.targetEpoch, scope: r.scope };
  const at = r.cutoverTime === undefined ? undefined : Date.parse(r.cutoverTime);
  const due =
    r.phase === 'Verifying'
      ? at === undefined || Number.isNaN(at) || now >= at // Verifying comes after the cutover instant
      : r.phase === 'CuttingOver' && at !== undefined && !Number.isNaN(at) && now >= at;
  if (due) return { base, run: r.targetEpoch, rotation, cutover: true };
  const ahead = r.phase === 'CuttingOver' && at !== undefined && !Number.isNaN(at);
  return { base, run: base, rotation, cutover: false, ...(ahead ? { cutoverAt: at } : {}) };
}

/** The parts of a peer's NodeTunnel status that say which public key it has at which epoch. */
export interface PeerKeyView {
  status?:
    | {
        appliedEpoch?: number | undefined;
        publicKey?: string | undefined;
        stagedEpoch?: number | undefined;
        stagedPublicKey?: string | undefined;
      }
    | undefined;
}

/**
 * The peer's public key at `epoch`, when the peer has said what it is: the key it runs (appliedEpoch) or the
 * key it staged for it (stagedEpoch). Undefined: the peer is not at that epoch and has not staged it.
 */
export function keyAt(peer: PeerKeyView, epoch: number): string | undefined {
  const s = peer.status;
  if (s?.appliedEpoch === epoch && s.publicKey) return s.publicKey;
  if (s?.stagedEpoch === epoch && s.stagedPublicKey) return s.stagedPublicKey;
  return undefined;
}
