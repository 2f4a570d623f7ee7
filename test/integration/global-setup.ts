// Starts the local control plane once per test run, or reuses one that is already up; globalTeardown stops
// it only if this run started it (SEALMESH_KEEP_CLUSTER=1 keeps it either way). Builds the kubectl plugin's
// bundle (hack/bundle.mjs) first, so that the tests run the file users get.
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..', '..');

declare global {
  var __sealmeshStartedCluster: boolean | undefined;
}

export default function globalSetup(): void {
  execFileSync(process.execPath, [resolve(root, 'hack/bundle.mjs')], { stdio: 'inherit' });
  let running = true;
  try {
    execFileSync('bash', [resolve(root, 'hack/cluster.sh'), 'status'], { stdio: 'ignore' });
  } catch {
    running = false;
  }
  if (!running) {
    execFileSync('bash', [resolve(root, 'hack/cluster.sh'), 'up'], { stdio: 'inherit' });
    globalThis.__sealmeshStartedCluster = true;
  }
  // SEALMESH_LOCAL_DIR runs the tests against a control plane of their own (as hack/cluster.sh does).
  process.env.KUBECONFIG = resolve(process.env.SEALMESH_LOCAL_DIR ?? resolve(root, '.local'), 'kubeconfig');
}
