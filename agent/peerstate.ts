// How a configured peer is doing, from its last WireGuard handshake. Pure, so the state machine is tested
// with plain numbers. Messages are fixed strings per state (no ages or counters): status is written only when
// something changed, and a message that ticked every second would turn that into a write every second.
import type { PeerState } from '../api/v1alpha1/nodetunnel.types.js';

/** WireGuard's REJECT_AFTER_TIME: a session without a fresh handshake is dead after 180 s. */
export const REJECT_AFTER_MS = 180_000;
/** WireGuard re-handshakes after REKEY_AFTER_TIME (120 s) only when traffic flows; probe past this age. */
export const REKEY_AFTER_MS = 120_000;
/** `wg` reports handshake times in whole seconds. */
const HANDSHAKE_RESOLUTION_MS = 1000;

export interface HandshakeObservation {
  now: number;
  /** When this peer's current keys (its public key, its PSK, or our private key) were applied; undefined when
   * the peer was adopted from a device this agent did not configure in this run (keys verified equal). */
  configuredAt: number | undefined;
  /** When the peer was last written to the device for any reason (e.g. a new endpoint); defaults to
   * configuredAt. A peer reconfigured recently is given time to handshake before it is called Stale. */
  reconfiguredAt?: number | undefined;
  /** Latest handshake the device reports, ms since the epoch. */
  latestHandshake: number | undefined;
}

export interface Assessment {
  state: Extract<PeerState, 'Encrypted' | 'Handshaking' | 'Stale'>;
  message: string;
  /** the handshake that counts for the current keys, if any */
  handshakeAt?: number;
}

export function assessHandshake(o: HandshakeObservation): Assessment {
  // A handshake before the current keys were applied belongs to the previous keys: it proves nothing now.
  const current =
    o.latestHandshake !== undefined &&
    (o.configuredAt === undefined || o.latestHandshake >= o.configuredAt - HANDSHAKE_RESOLUTION_MS)
      ? o.latestHandshake
      : undefined;
  if (current === undefined) {
    return { state: 'Handshaking', message: 'no handshake with the current keys yet' };
  }
  if (o.now - current < REJECT_AFTER_MS) {
    return { state: 'Encrypted', message: 'handshake within the last 180s', handshakeAt: current };
  }
  const touched = o.reconfiguredAt ?? o.configuredAt;
  if (touched !== undefined && o.now - touched < REJECT_AFTER_MS) {
    return {
      state: 'Handshaking',
      message: 'recently configured; waiting for a new handshake',
      handshakeAt: current,
    };
  }
  return { state: 'Stale', message: 'no handshake within 180s', handshakeAt: current };
}

/** Whether to send a probe now: trigger a handshake for peers that are not encrypted or about to expire. */
export function needsProbe(a: Assessment, now: number): boolean {
  return a.state !== 'Encrypted' || a.handshakeAt === undefined || now - a.handshakeAt >= REKEY_AFTER_MS;
}

/**
 * Two ends that send handshake initiations at the same instant (both switch keys at a cutover and both have
 * traffic) can each consume the other's initiation before its own is answered: both become responders, both
 * drop the response to their own initiation, and neither has a session to send with. WireGuard leaves that
 * state only when its own initiation is retried, REKEY_TIMEOUT (5 s) later: a 5 s stall (wireguard-go
 * device/receive.go, ConsumeMessageResponse wants handshakeInitiationCreated). The agent restarts the
 * handshake itself: a peer with no handshake under its current keys KICK_AFTER_MS after they were applied is
 * re-created on the device (a new peer starts a new handshake at once) and probed.
 */
export const KICK_AFTER_MS = 1000;
/**
 * Kicks stop this long after the keys were applied: by then WireGuard has retried on its own (REKEY_TIMEOUT),
 * and a peer still silent is down or not switched yet, which its own first packet resolves.
 */
export const KICK_WINDOW_MS = 5000;

export interface KickObservation {
  now: number;
  assessment: { state: string; handshakeAt?: number | undefined };
  /** when the peer's current keys were applied (undefined: adopted, nothing to restart) */
  configuredAt: number | undefined;
  /** when this agent last restarted the handshake with the peer */
  kickedAt: number | undefined;
  ownPublicKey: string;
  peerPublicKey: string;
}

/**
 * Whether to restart the handshake with a peer now. Only one end of a pair kicks (the one whose public key
 * sorts first: both ends compare the same two keys), so two kicks never cross the way the stalled initiations
 * did.
 */
export function shouldKickHandshake(o: KickObservation): boolean {
  if (o.assessment.state !== 'Handshaking' || o.assessment.handshakeAt !== undefined) return false;
  if (o.configuredAt === undefined) return false;
  if (!(o.ownPublicKey < o.peerPublicKey)) return false;
  const age = o.now - o.configuredAt;
  if (age < KICK_AFTER_MS || age >= KICK_WINDOW_MS) return false;
  return o.kickedAt === undefined || o.now - o.kickedAt >= KICK_AFTER_MS;
}

/**
 * When the agent should look at a peer again to decide on a kick: a peer still waiting for its first
 * handshake inside the kick window is looked at every KICK_AFTER_MS / 4; undefined when nothing is pending.
 */
export function kickRecheckAt(o: Omit<KickObservation, 'kickedAt'>): number | undefined {
  if (o.assessment.state !== 'Handshaking' || o.assessment.handshakeAt !== undefined) return undefined;
  if (o.configuredAt === undefined || !(o.ownPublicKey < o.peerPublicKey)) return undefined;
  if (o.now - o.configuredAt >= KICK_WINDOW_MS) return undefined;
  return o.now + KICK_AFTER_MS / 4;
}
