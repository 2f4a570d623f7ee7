// The wording of the OverlayNetwork's Events, as pure functions: what `kubectl describe` shows is pinned here
// and in events.test.ts, not spread over the controller's phases. Long lists name EVENT_NAMES entries and
// count the rest.
import type { RotationStatus } from './rotation.js';

export interface OverlayEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

/** How many names one aggregated Event lists before "+N more". */
export const EVENT_NAMES = 10;

export function listNames(names: string[]): string {
  const shown = names.slice(0, EVENT_NAMES).join(', ');
  return names.length > EVENT_NAMES ? `${shown} (+${names.length - EVENT_NAMES} more)` : shown;
}

/** listNames of a list too long to keep (pairs): the count and the names shown, each built only if shown. */
export class NameSample {
  count = 0;
  private readonly shown: string[] = [];

  /** Counts a pair and names it, `a/b` or `a/b (reason)`, while there is room (walks visit 500k pairs). */
  addPair(a: string, b: string, reason?: () => string): void {
    if (this.shown.length < EVENT_NAMES) this.shown.push(reason ? `${a}/${b} (${reason()})` : `${a}/${b}`);
    this.count++;
  }

  text(): string {
    const shown = this.shown.join(', ');
    return this.count > EVENT_NAMES ? `${shown} (+${this.count - EVENT_NAMES} more)` : shown;
  }
}

/** Agents ran an epoch above status.epoch (an etcd restore or a rolled-back status): never go back to it. */
export const epochRolledForward = (nodes: string[], seen: number, epoch: number): OverlayEvent => ({
  type: 'Warning',
  reason: 'EpochRolledForward',
  message:
    `status.epoch was behind: ${listNames(nodes)} already ran epoch ${seen}; ` +
    `moving to epoch ${epoch} with fresh keys (the keys of earlier epochs are retired)`,
});

export const keySecretReplaced = (nodes: string[], epoch: number): OverlayEvent => ({
  type: 'Warning',
  reason: 'KeySecretReplaced',
  message: `key Secret of ${listNames(nodes)} was deleted or corrupted; new keys at epoch ${epoch}`,
});

/** Key Secrets holding values the operator did not seal (copied from another pair or epoch, or forged). */
export const keySecretAltered = (
  altered: ReadonlyArray<{ node: string; entry: string; problem: string }>,
  epoch: number,
): OverlayEvent => ({
  type: 'Warning',
  reason: 'KeySecretAltered',
  message:
    `key Secret of ${listNames([...new Set(altered.map((a) => a.node))])} holds values the operator did not ` +
    `seal (${listNames(altered.map((a) => `${a.entry}: ${a.problem}`))}); refused, new keys at epoch ${epoch}`,
});

/** Agents that reported and stopped renewing their Lease: their pairs are Unknown from now on. */
export const agentsUnreachable = (
  agents: ReadonlyArray<{ node: string; renewed: string | undefined }>,
): OverlayEvent => ({
  type: 'Warning',
  reason: 'AgentUnreachable',
  message:
    `agent out of touch (Lease not renewed${agents.length === 1 && agents[0]!.renewed ? ` since ${agents[0]!.renewed}` : ''}): ` +
    `${listNames(agents.map((a) => a.node))}; its pairs are Unknown until it reports again (the data plane keeps its keys)`,
});

export const agentsBack = (nodes: string[]): OverlayEvent => ({
  type: 'Normal',
  reason: 'AgentReachable',
  message: `agent back in touch: ${listNames(nodes)}`,
});

export const nodesJoined = (nodes: string[]): OverlayEvent => ({
  type: 'Normal',
  reason: 'NodeJoined',
  message: `joined: ${listNames(nodes)}`,
});

export const nodesLeft = (nodes: string[]): OverlayEvent => ({
  type: 'Normal',
  reason: 'NodeLeft',
  message: `left: ${listNames(nodes)}`,
});

/** PairEncrypted / PairLostEncryption, each only when it has pairs. */
export function pairEvents(encrypted: NameSample, lost: NameSample): OverlayEvent[] {
  const events: OverlayEvent[] = [];
  if (encrypted.count > 0) {
    events.push({
      type: 'Normal',
      reason: 'PairEncrypted',
      message: `${encrypted.count} pair(s) encrypted: ${encrypted.text()}`,
    });
  }
  if (lost.count > 0) {
    events.push({
      type: 'Warning',
      reason: 'PairLostEncryption',
      message: `${lost.count} pair(s) lost encryption: ${lost.text()}`,
    });
  }
  return events;
}

/** The unusable nodes as the Event and the Degraded condition list them. */
export const unusableNames = (unusable: Array<{ node: string; reason: string }>): string =>
  listNames(unusable.map((u) => `${u.node} (${u.reason})`));

export const nodesUnusable = (unusable: Array<{ node: string; reason: string }>): OverlayEvent => ({
  type: 'Warning',
  reason: 'NodeUnusable',
  message: `not peered: ${unusableNames(unusable)}`,
});

export const poolExhausted = (pool: string, nodes: string[]): OverlayEvent => ({
  type: 'Warning',
  reason: 'AddressPoolExhausted',
  message: `address pool ${pool} is exhausted; no address for ${listNames(nodes)}`,
});

export const rotationStarted = (rotation: RotationStatus): OverlayEvent => ({
  type: 'Normal',
  reason: 'RotationStarted',
  message: `staging epoch ${rotation.targetEpoch} (${rotation.scope}, attempt ${rotation.attempt ?? 1}): ${
    rotation.reason ?? ''
  }`,
});

export const rotationAborted = (rotation: RotationStatus, kept: number, reason: string): OverlayEvent => ({
  type: 'Warning',
  reason: 'RotationAborted',
  message: `epoch ${rotation.targetEpoch} aborted, epoch ${kept} kept, retry at ${rotation.retryTime ?? ''}: ${reason}`,
});

export const rotationRefused = (epoch: number, reason: string): OverlayEvent => ({
  type: 'Warning',
  reason: 'RotationRefused',
  message: `a rotation is due but not started, epoch ${epoch} kept: ${reason}`,
});

export const rotationCompleted = (epoch: number, scope: string, seconds: number): OverlayEvent => ({
  type: 'Normal',
  reason: 'RotationCompleted',
  message: `epoch ${epoch} in effect (${scope}) after ${seconds.toFixed(1)}s`,
});

export const rotationIncomplete = (incomplete: number, epoch: number, pairs: NameSample): OverlayEvent => ({
  type: 'Warning',
  reason: 'RotationIncomplete',
  message: `${incomplete} pair(s) not re-established at epoch ${epoch}: ${pairs.text()}`,
});
