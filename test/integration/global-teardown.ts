import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..', '..');

export default function globalTeardown(): void {
  if (globalThis.__sealmeshStartedCluster && process.env.SEALMESH_KEEP_CLUSTER !== '1') {
    execFileSync('bash', [resolve(root, 'hack/cluster.sh'), 'down'], { stdio: 'inherit' });
    globalThis.__sealmeshStartedCluster = false;
  }
}
