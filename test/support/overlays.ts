// Test cleanup: an OverlayNetwork left behind would be reconciled by every operator started later in the
// same run, so tests delete theirs while their own operator still runs to take the finalizer off.
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { GROUP, OVERLAY_NETWORK_PLURAL, VERSION } from '../../api/v1alpha1/groupversion.js';

export async function deleteOverlays(kc: KubeConfig, prefix: string, timeoutMs = 30_000): Promise<void> {
  const custom = kc.makeApiClient(CustomObjectsApi);
  const ref = { group: GROUP, version: VERSION, plural: OVERLAY_NETWORK_PLURAL };
  const mine = async () =>
    (
      (await custom.listClusterCustomObject(ref)) as { items: Array<{ metadata: { name: string } }> }
    ).items.filter((o) => o.metadata.name.startsWith(prefix));
  for (const o of await mine()) {
    await custom.deleteClusterCustomObject({ ...ref, name: o.metadata.name }).catch(() => undefined);
  }
  const deadline = Date.now() + timeoutMs;
  while ((await mine()).length > 0) {
    if (Date.now() > deadline) throw new Error(`overlays ${prefix}* still present after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
