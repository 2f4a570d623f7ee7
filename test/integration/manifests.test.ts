// The deployable manifests are accepted by a real API server: config/default applies with
// --dry-run=server (after its namespaces and CRDs exist, which a dry run cannot create).
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { kubeconfigPath, kubectlPath, repoRoot } from '../support/cluster.js';

const kubectl = (...args: string[]) =>
  execFileSync(kubectlPath(), ['--kubeconfig', kubeconfigPath, ...args], { encoding: 'utf8', stdio: 'pipe' });

test('config/default applies cleanly with --dry-run=server', () => {
  kubectl('apply', '--server-side', '--force-conflicts', '-k', resolve(repoRoot, 'config/namespace'));
  kubectl('apply', '--server-side', '--force-conflicts', '-k', resolve(repoRoot, 'config/crd'));
  const out = kubectl(
    'apply',
    '--server-side',
    '--force-conflicts',
    '--dry-run=server',
    '-k',
    resolve(repoRoot, 'config/default'),
  );
  for (const expected of [
    'deployment.apps/sealmesh-operator',
    'daemonset.apps/sealmesh-agent',
    'clusterrole.rbac.authorization.k8s.io/sealmesh-operator',
    'clusterrole.rbac.authorization.k8s.io/sealmesh-agent',
    'role.rbac.authorization.k8s.io/sealmesh-agent',
    'serviceaccount/sealmesh-agent',
    'validatingadmissionpolicy.admissionregistration.k8s.io/sealmesh-agent-nodetunnels',
    'validatingadmissionpolicybinding.admissionregistration.k8s.io/sealmesh-agent-nodetunnels',
    'validatingadmissionpolicy.admissionregistration.k8s.io/sealmesh-agent-leases',
    'validatingadmissionpolicybinding.admissionregistration.k8s.io/sealmesh-agent-leases',
  ]) {
    expect(out).toContain(expected);
  }
});

test('the agent cannot read Secrets in the operator namespace, only in the key namespace', () => {
  kubectl('apply', '--server-side', '--force-conflicts', '-k', resolve(repoRoot, 'config/namespace'));
  kubectl('apply', '--server-side', '--force-conflicts', '-k', resolve(repoRoot, 'config/rbac'));
  const can = (verb: string, resource: string, ns?: string, ...extra: string[]) => {
    const args = ['auth', 'can-i', verb, resource, ...(ns ? ['-n', ns] : []), ...extra];
    try {
      return kubectl(...args, '--as', 'system:serviceaccount:sealmesh-system:sealmesh-agent').trim();
    } catch (err) {
      // can-i exits 1 when the answer is no
      return String((err as { stdout?: string }).stdout ?? '').trim();
    }
  };
  expect(can('list', 'secrets', 'sealmesh-system')).toBe('no');
  expect(can('get', 'secrets/sealmesh-operator-identity', 'sealmesh-system')).toBe('no');
  expect(can('list', 'secrets', 'sealmesh-keys')).toBe('yes');
  expect(can('update', 'nodetunnels.sealmesh.io', undefined, '--subresource=status')).toBe('yes');
  expect(can('update', 'nodetunnels.sealmesh.io')).toBe('no');
  expect(can('create', 'secrets', 'sealmesh-keys')).toBe('no');
});

test('the agent pod is confined (RuntimeDefault seccomp, no privilege escalation, read-only root, only NET_ADMIN) and probed', () => {
  kubectl('apply', '--server-side', '--force-conflicts', '-k', resolve(repoRoot, 'config/namespace'));
  kubectl('apply', '--server-side', '--force-conflicts', '-k', resolve(repoRoot, 'config/crd'));
  // as the API server stores it (defaults applied), from a server-side dry run of config/default
  const out = JSON.parse(
    kubectl(
      'apply',
      '--server-side',
      '--force-conflicts',
      '--dry-run=server',
      '-o',
      'json',
      '-k',
      resolve(repoRoot, 'config/default'),
    ),
  ) as { items: Array<{ kind: string; metadata: { name: string }; spec: Record<string, unknown> }> };
  const ds = out.items.find((i) => i.kind === 'DaemonSet' && i.metadata.name === 'sealmesh-agent')!;
  const pod = (ds.spec as { template: { spec: Record<string, unknown> } }).template.spec as {
    securityContext?: { seccompProfile?: { type?: string } };
    containers: Array<{
      name: string;
      securityContext?: {
        allowPrivilegeEscalation?: boolean;
        readOnlyRootFilesystem?: boolean;
        capabilities?: { add?: string[]; drop?: string[] };
      };
    }>;
  };
  expect(pod.securityContext?.seccompProfile?.type).toBe('RuntimeDefault');
  const agent = pod.containers.find((c) => c.name === 'agent')!;
  const probes = agent as unknown as {
    livenessProbe?: { httpGet?: { host?: string; path?: string; port?: number } };
    readinessProbe?: { httpGet?: { host?: string; path?: string; port?: number } };
  };
  expect(probes.livenessProbe?.httpGet).toMatchObject({ host: '127.0.0.1', path: '/healthz', port: 9466 });
  expect(probes.readinessProbe?.httpGet).toMatchObject({ host: '127.0.0.1', path: '/readyz', port: 9466 });
  expect(agent.securityContext).toMatchObject({
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { add: ['NET_ADMIN'], drop: ['ALL'] },
  });
});
