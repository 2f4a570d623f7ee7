// The finalize phase (STYLE 5, 8): an overlay being deleted loses everything it made (its NodeTunnels, its
// key Secrets), then its finalizer, only once the caches show nothing left.
import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from '../../lib/log.js';
import type { HandlerResult } from '../../lib/runtime/queue.js';
import type { KeySecrets } from './overlaynetwork.keysecrets.js';
import { FINALIZER, type OverlayControllerDeps } from './overlaynetwork.scope.js';
import type { Tunnels } from './overlaynetwork.tunnels.js';

/** Removes what the overlay made, then the finalizer; `done` runs once the finalizer is off. */
export async function finalize(
  deps: Pick<OverlayControllerDeps, 'writer'>,
  phases: { tunnels: Tunnels; keySecrets: KeySecrets },
  raw: KubernetesObject,
  log: Logger,
  done: () => void,
): Promise<HandlerResult> {
  const name = raw.metadata?.name ?? '';
  if (!(raw.metadata?.finalizers ?? []).includes(FINALIZER)) return;
  await phases.tunnels.deleteAll(name);
  await phases.keySecrets.deleteAll(name);
  // The caches can lag our own deletes; only drop the finalizer once they show nothing left.
  const remaining = phases.tunnels.remaining(name) + phases.keySecrets.remaining(name);
  if (remaining > 0) {
    log.debug({ remaining }, 'waiting for the caches to show our deletes');
    return { requeueAfterMs: 500 };
  }
  await deps.writer.setOverlayFinalizers(
    name,
    raw.metadata?.resourceVersion,
    (raw.metadata?.finalizers ?? []).filter((f) => f !== FINALIZER),
  );
  done();
  log.info('overlay cleaned up');
}
