// Helpers for integration and e2e tests: they talk to the real control plane that hack/cluster.sh started
// (globalSetup makes sure it is up and exports KUBECONFIG).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';

export const repoRoot = resolve(import.meta.dirname, '..', '..');
export const kubeconfigPath = process.env.KUBECONFIG ?? resolve(repoRoot, '.local', 'kubeconfig');

export function kubeConfig(): KubeConfig {
  if (!existsSync(kubeconfigPath)) {
    throw new Error(`no kubeconfig at ${kubeconfigPath}: run hack/cluster.sh up (globalSetup does this)`);
  }
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  return kc;
}

/** A DNS-1123 name unique to this test run, so parallel tests never collide. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** The kubectl built with the control plane (same version as the API server). */
export function kubectlPath(): string {
  const bin = execFileSync('bash', [resolve(repoRoot, 'hack/kube/build.sh')], { encoding: 'utf8' }).trim();
  return resolve(bin, 'kubectl');
}
