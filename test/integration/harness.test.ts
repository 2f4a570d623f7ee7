// Proves the control plane under the integration tests is a real kube-apiserver backed by etcd: objects
// persist, CRDs become Established, RBAC denies, and ValidatingAdmissionPolicy rejects.
import {
  AdmissionregistrationV1Api,
  ApiextensionsV1Api,
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { kubeConfig, uniqueName } from '../support/cluster.js';
import { until } from '../support/wait.js';

const kc = kubeConfig();
const core = kc.makeApiClient(CoreV1Api);

function statusOf(err: unknown): number | undefined {
  return err instanceof ApiException ? err.code : undefined;
}

test('a Node is created, read back and deleted', async () => {
  const name = uniqueName('harness-node');
  await core.createNode({ body: { metadata: { name, labels: { 'sealmesh.io/test': 'harness' } } } });
  const read = await core.readNode({ name });
  expect(read.metadata?.labels?.['sealmesh.io/test']).toBe('harness');
  expect(read.metadata?.uid).toMatch(/^[0-9a-f-]{36}$/);
  await core.deleteNode({ name });
  await until('node deletion', async () => {
    try {
      await core.readNode({ name });
      return undefined;
    } catch (err) {
      return statusOf(err) === 404 ? true : undefined;
    }
  });
});

test('a Secret is stored and returned byte for byte', async () => {
  const namespace = uniqueName('harness');
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  const payload = Buffer.from([0, 1, 2, 254, 255]).toString('base64');
  await core.createNamespacedSecret({
    namespace,
    body: { metadata: { name: 'blob' }, data: { blob: payload } },
  });
  const read = await core.readNamespacedSecret({ namespace, name: 'blob' });
  expect(read.data?.blob).toBe(payload);
  await core.deleteNamespacedSecret({ namespace, name: 'blob' });
  await expect(core.readNamespacedSecret({ namespace, name: 'blob' })).rejects.toMatchObject({ code: 404 });
  await core.deleteNamespace({ name: namespace });
});

test('a CRD becomes Established and serves its custom resources', async () => {
  const ext = kc.makeApiClient(ApiextensionsV1Api);
  const group = `${uniqueName('h')}.harness.sealmesh.io`;
  const crd: V1CustomResourceDefinition = {
    metadata: { name: `widgets.${group}` },
    spec: {
      group,
      scope: 'Cluster',
      names: { plural: 'widgets', singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
      versions: [
        {
          name: 'v1',
          served: true,
          storage: true,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              properties: {
                spec: { type: 'object', properties: { size: { type: 'integer', minimum: 1 } } },
              },
            },
          },
        },
      ],
    },
  };
  await ext.createCustomResourceDefinition({ body: crd });
  try {
    await until('CRD Established', async () => {
      const got = await ext.readCustomResourceDefinition({ name: crd.metadata!.name! });
      const established = got.status?.conditions?.find((c) => c.type === 'Established');
      return established?.status === 'True' ? true : undefined;
    });
    const custom = kc.makeApiClient(CustomObjectsApi);
    // Discovery can lag Established by a moment; retry the first create briefly.
    await until('custom resource create', async () => {
      try {
        return (await custom.createClusterCustomObject({
          group,
          version: 'v1',
          plural: 'widgets',
          body: { apiVersion: `${group}/v1`, kind: 'Widget', metadata: { name: 'w1' }, spec: { size: 3 } },
        })) as object;
      } catch (err) {
        if (statusOf(err) === 404) return undefined;
        throw err;
      }
    });
    // The schema is enforced by the server, not by us.
    await expect(
      custom.createClusterCustomObject({
        group,
        version: 'v1',
        plural: 'widgets',
        body: { apiVersion: `${group}/v1`, kind: 'Widget', metadata: { name: 'w2' }, spec: { size: 0 } },
      }),
    ).rejects.toMatchObject({ code: 422 });
  } finally {
    await ext.deleteCustomResourceDefinition({ name: crd.metadata!.name! });
  }
});

test('RBAC denies an unprivileged service account', async () => {
  const namespace = uniqueName('harness-rbac');
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'nobody' } } });
  const asNobody = new KubeConfig();
  asNobody.loadFromString(kc.exportConfig());
  const user = asNobody.getCurrentUser()!;
  asNobody.users = asNobody.users.map((u) =>
    u.name === user.name ? { ...u, impersonateUser: `system:serviceaccount:${namespace}:nobody` } : u,
  );
  const nobody = asNobody.makeApiClient(CoreV1Api);
  await expect(nobody.listNamespacedSecret({ namespace })).rejects.toMatchObject({ code: 403 });
  // The admin identity in the same namespace is allowed, so the 403 above is RBAC, not a broken request.
  await expect(core.listNamespacedSecret({ namespace })).resolves.toBeDefined();
  await core.deleteNamespace({ name: namespace });
});

test('a ValidatingAdmissionPolicy rejects a request', async () => {
  const adm = kc.makeApiClient(AdmissionregistrationV1Api);
  const namespace = uniqueName('harness-vap');
  const policy = uniqueName('harness-no-forbidden');
  await core.createNamespace({
    body: { metadata: { name: namespace, labels: { 'harness-vap': namespace } } },
  });
  await adm.createValidatingAdmissionPolicy({
    body: {
      metadata: { name: policy },
      spec: {
        failurePolicy: 'Fail',
        matchConstraints: {
          resourceRules: [
            { apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['configmaps'] },
          ],
        },
        validations: [
          { expression: "!has(object.data) || !('forbidden' in object.data)", message: 'no forbidden' },
        ],
      },
    },
  });
  await adm.createValidatingAdmissionPolicyBinding({
    body: {
      metadata: { name: policy },
      spec: {
        policyName: policy,
        validationActions: ['Deny'],
        matchResources: { namespaceSelector: { matchLabels: { 'harness-vap': namespace } } },
      },
    },
  });
  try {
    // Policies are loaded asynchronously; keep creating until the policy takes effect.
    const rejection = await until('policy to take effect', async () => {
      const name = uniqueName('cm');
      try {
        await core.createNamespacedConfigMap({
          namespace,
          body: { metadata: { name }, data: { forbidden: 'x' } },
        });
        await core.deleteNamespacedConfigMap({ namespace, name });
        return undefined;
      } catch (err) {
        if (statusOf(err) === 422 || statusOf(err) === 403) return err as ApiException<unknown>;
        throw err;
      }
    });
    expect(String(rejection.body)).toContain('no forbidden');
    // An allowed object still goes through.
    await core.createNamespacedConfigMap({
      namespace,
      body: { metadata: { name: 'fine' }, data: { ok: 'y' } },
    });
  } finally {
    await adm.deleteValidatingAdmissionPolicyBinding({ name: policy });
    await adm.deleteValidatingAdmissionPolicy({ name: policy });
    await core.deleteNamespace({ name: namespace });
  }
});
