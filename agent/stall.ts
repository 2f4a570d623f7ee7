// The silent-stall detector (issue #16 item 3; cilium#46687): a peer whose received bytes stay flat while the
// bytes sent to it keep growing is not encrypting anything, whatever its last handshake says. With keepalives
// on, or with any traffic sent (WireGuard answers data with a keepalive within 10 s), a healthy peer always
// sends something back, so STALL_WINDOW_MS of sending with nothing received is a state of its own. The one
// known remedy is re-creating the peer: tried once per stall, which lasts until something is received. Pure:
// table-tested in stall.test.ts.

/** How long a peer may receive nothing while this node sends to it before it counts as stalled. */
export const STALL_WINDOW_MS = 45_000;

/** What is remembered of a peer between passes. */
export interface StallTrack {
  rxBytes: number;
  txBytes: number;
  /** when sending was first seen since bytes were last received (undefined: not sending into silence) */
  sendingSince?: number | undefined;
  /** when the peer was re-created for this stall, if it was */
  remedyAt?: number | undefined;
}

export interface StallVerdict {
  track: StallTrack;
  stalled: boolean;
  /** re-create the peer now (the first time this stall is seen) */
  remedy: boolean;
  /** ms since the epoch when the verdict could change with no new bytes (the pass looks again then) */
  recheckAt: number | undefined;
}

/**
 * One observation of a peer's counters. Counters that went down belong to a re-created peer: what they hold
 * now is what it sent and received since. Bytes received end a stall (and a later one is remedied again).
 */
export function observeStall(
  prev: StallTrack | undefined,
  now: number,
  counters: { rxBytes: number; txBytes: number },
): StallVerdict {
  const { rxBytes, txBytes } = counters;
  let track: StallTrack;
  if (!prev) {
    track = { rxBytes, txBytes };
  } else {
    const reset = rxBytes < prev.rxBytes || txBytes < prev.txBytes;
    const received = reset ? rxBytes > 0 : rxBytes > prev.rxBytes;
    const sent = reset ? txBytes > 0 : txBytes > prev.txBytes;
    track = received
      ? { rxBytes, txBytes }
      : {
          rxBytes,
          txBytes,
          sendingSince: prev.sendingSince ?? (sent ? now : undefined),
          remedyAt: prev.remedyAt,
        };
  }
  const stalled = track.sendingSince !== undefined && now - track.sendingSince >= STALL_WINDOW_MS;
  const remedy = stalled && track.remedyAt === undefined;
  if (remedy) track = { ...track, remedyAt: now };
  const recheckAt =
    !stalled && track.sendingSince !== undefined ? track.sendingSince + STALL_WINDOW_MS : undefined;
  return { track, stalled, remedy, recheckAt };
}
