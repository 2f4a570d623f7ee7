// The silent-stall detector (issue #16 item 3; cilium#46687): a peer whose received bytes stay flat while the
// bytes sent to it keep growing is not encrypting anything, whatever its last handshake says. With keepalives
// on, or with any traffic sent (WireGuard answers data with a keepalive within 10 s), a healthy peer always
// sends something back, so a window of STALL_WINDOW_MS with nothing received and something sent is a state of
// its own. The one known remedy is re-creating the peer: tried once per stall. Pure: table-tested.

/** How long received bytes may stay flat while sent bytes grow before a peer counts as stalled. */
export const STALL_WINDOW_MS = 45_000;

/** What is remembered of a peer between passes. */
export interface StallTrack {
  rxBytes: number;
  txBytes: number;
  /** when rxBytes last changed (or tracking began) */
  rxSince: number;
  /** txBytes at rxSince */
  txAtRxSince: number;
  /** when the peer was re-created for this stall, if it was */
  remedyAt?: number | undefined;
}

export interface StallVerdict {
  track: StallTrack;
  stalled: boolean;
  /** re-create the peer now (the first time a stall is seen) */
  remedy: boolean;
  /** ms since the epoch when the verdict could change with no new bytes (the pass looks again then) */
  recheckAt: number | undefined;
}

/**
 * One observation of a peer's counters. A counter that goes down (the peer or the device was re-created) starts
 * tracking over. Sent bytes that grew since received bytes last moved, for longer than the window: stalled.
 */
export function observeStall(
  prev: StallTrack | undefined,
  now: number,
  counters: { rxBytes: number; txBytes: number },
): StallVerdict {
  const fresh = (): StallTrack => ({ ...counters, rxSince: now, txAtRxSince: counters.txBytes });
  let track: StallTrack;
  if (!prev || counters.rxBytes < prev.rxBytes || counters.txBytes < prev.txBytes) {
    track = { ...fresh(), remedyAt: prev?.remedyAt };
  } else if (counters.rxBytes !== prev.rxBytes) {
    track = fresh(); // something came back: not stalled, and a later stall may be remedied again
  } else {
    track = { ...prev, txBytes: counters.txBytes };
  }
  const sending = track.txBytes > track.txAtRxSince;
  const stalled = sending && now - track.rxSince >= STALL_WINDOW_MS;
  const remedy = stalled && track.remedyAt === undefined;
  if (remedy) track = { ...track, remedyAt: now };
  const recheckAt = !stalled && sending ? track.rxSince + STALL_WINDOW_MS : undefined;
  return { track, stalled, remedy, recheckAt };
}
