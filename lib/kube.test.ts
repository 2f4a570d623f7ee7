import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiException } from '@kubernetes/client-node';
import {
  KubeApiError,
  collectionPath,
  coreResources,
  customResource,
  isConflict,
  isGone,
  isNotFound,
  loadKubeConfig,
  objectKey,
  splitKey,
  statusCodeOf,
} from './kube.js';

const kubeconfig = (server: string, name: string): string => `apiVersion: v1
kind: Config
clusters: [{ name: ${name}, cluster: { server: '${server}', insecure-skip-tls-verify: true } }]
users: [{ name: ${name}-user, user: { token: not-a-real-token } }]
contexts: [{ name: ${name}, context: { cluster: ${name}, user: ${name}-user } }]
current-context: ${name}
`;

describe('loadKubeConfig', () => {
  test('reads $KUBECONFIG (first file wins the current context; later files are merged)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kc-'));
    writeFileSync(join(dir, 'a'), kubeconfig('https://127.0.0.1:1111', 'a'));
    writeFileSync(join(dir, 'b'), kubeconfig('https://127.0.0.1:2222', 'b'));
    const kc = loadKubeConfig({ KUBECONFIG: `${join(dir, 'a')}:${join(dir, 'b')}` });
    expect(kc.getCurrentCluster()?.server).toBe('https://127.0.0.1:1111');
    expect(
      kc
        .getContexts()
        .map((c) => c.name)
        .sort(),
    ).toEqual(['a', 'b']);
  });
});

describe('paths', () => {
  test.each([
    [coreResources.nodes, undefined, '/api/v1/nodes'],
    [coreResources.secrets, 'sealmesh-system', '/api/v1/namespaces/sealmesh-system/secrets'],
    [coreResources.secrets, undefined, '/api/v1/secrets'],
    [
      coreResources.leases,
      'kube-node-lease',
      '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases',
    ],
    [
      customResource('sealmesh.io', 'v1alpha1', 'overlaynetworks'),
      undefined,
      '/apis/sealmesh.io/v1alpha1/overlaynetworks',
    ],
  ])('%j in %s → %s', (ref, ns, path) => {
    expect(collectionPath(ref, ns)).toBe(path);
  });

  test('a namespace on a cluster-scoped kind is a programming error', () => {
    expect(() => collectionPath(coreResources.nodes, 'x')).toThrow(/cluster-scoped/);
  });
});

describe('errors and keys', () => {
  test('status codes from client-node ApiException, our KubeApiError and plain objects', () => {
    expect(statusCodeOf(new ApiException(404, 'nf', {}, {}))).toBe(404);
    expect(isNotFound(new ApiException(404, 'nf', {}, {}))).toBe(true);
    expect(isConflict(new KubeApiError('c', 409))).toBe(true);
    expect(isGone({ statusCode: 410 })).toBe(true);
    expect(statusCodeOf(new Error('x'))).toBeUndefined();
  });

  test('objectKey / splitKey', () => {
    expect(objectKey({ metadata: { name: 'n', namespace: 'ns' } })).toBe('ns/n');
    expect(objectKey({ metadata: { name: 'node-1' } })).toBe('node-1');
    expect(splitKey('ns/n')).toEqual({ namespace: 'ns', name: 'n' });
    expect(splitKey('overlay.node')).toEqual({ name: 'overlay.node' });
  });
});
