// Installs sealmesh's CRDs into the test control plane, from the committed YAML (what users apply; a unit
// test keeps it equal to a fresh generation). Server-side apply with a fixed field manager and force, so
// any number of test files can call it, concurrently or not, and end with the same CRDs.
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import {
  ApiextensionsV1Api,
  CustomObjectsApi,
  KubernetesObjectApi,
  PatchStrategy,
  loadYaml,
  type KubeConfig,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import {
  API_VERSION,
  GROUP,
  OVERLAY_NETWORK_KIND,
  OVERLAY_NETWORK_PLURAL,
  VERSION,
} from '../../api/v1alpha1/groupversion.js';
import { crdFile } from '../../hack/crdgen/crdgen.js';
import { KINDS } from '../../hack/crdgen/manifests.js';
import { repoRoot, uniqueName } from './cluster.js';

const FIELD_MANAGER = 'sealmesh-tests';

export async function installCRDs(kc: KubeConfig, timeoutMs = 30_000): Promise<void> {
  const objects = KubernetesObjectApi.makeApiClient(kc);
  const ext = kc.makeApiClient(ApiextensionsV1Api);
  const crds: V1CustomResourceDefinition[] = [];
  for (const kind of KINDS) {
    // loadYaml, not a plain YAML parse: client-node serializes through its typed models, which silently
    // drop keys they do not know under their JSON names (x-kubernetes-validations, default, ...).
    const crd = loadYaml<V1CustomResourceDefinition>(
      await readFile(resolve(repoRoot, crdFile(kind)), 'utf8'),
    );
    await objects.patch(crd, undefined, undefined, FIELD_MANAGER, true, PatchStrategy.ServerSideApply);
    crds.push(crd);
  }
  const deadline = Date.now() + timeoutMs;
  const wait = async (what: string, ready: () => Promise<boolean>) => {
    while (!(await ready())) {
      if (Date.now() > deadline) throw new Error(`${what} not ready after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  for (const want of crds) {
    const name = want.metadata!.name!;
    await wait(`CRD ${name}`, async () => {
      const crd = await ext.readCustomResourceDefinition({ name });
      const ok = (type: string) =>
        crd.status?.conditions?.some((c) => c.type === type && c.status === 'True');
      return Boolean(ok('Established') && ok('NamesAccepted'));
    });
    const stored = await ext.readCustomResourceDefinition({ name });
    if (!isDeepStrictEqual(stored.spec.versions, want.spec.versions)) {
      throw new Error(`CRD ${name} as stored differs from config/crd/bases: a field was lost on the way`);
    }
  }
  // The API server switches to an updated CRD schema a moment after the update; when the CRD was replaced
  // (e.g. by an older version), a dry-run create shows when the served schema applies our defaults.
  const custom = kc.makeApiClient(CustomObjectsApi);
  await wait('OverlayNetwork schema', async () => {
    const probe = (await custom.createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: OVERLAY_NETWORK_PLURAL,
      dryRun: 'All',
      body: {
        apiVersion: API_VERSION,
        kind: OVERLAY_NETWORK_KIND,
        metadata: { name: uniqueName('crd-probe') },
        spec: { addressPool: '10.99.0.0/16' },
      },
    })) as { spec?: { keys?: { custody?: string } } };
    return probe.spec?.keys?.custody === 'Node';
  });
}
