// The Go tools the tests run (hack/tools/VERSIONS), built once from their modules and cached outside the repo
// (hack/tools/build.sh); the first call on a new machine builds them, which takes minutes.
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { repoRoot } from './cluster.js';

const paths = new Map<string, string>();

export function toolPath(name: 'helm' | 'promtool'): string {
  let path = paths.get(name);
  if (!path) {
    path = execFileSync('bash', [resolve(repoRoot, 'hack/tools/build.sh'), name], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    }).trim();
    paths.set(name, path);
  }
  return path;
}

/** Runs a tool; throws with its output when it exits non-zero. */
export function runTool(name: 'helm' | 'promtool', args: readonly string[], input?: string): string {
  try {
    return execFileSync(toolPath(name), args, {
      encoding: 'utf8',
      stdio: 'pipe',
      cwd: repoRoot,
      input,
      maxBuffer: 64 << 20,
    });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${name} ${args.join(' ')} failed: ${e.stderr || e.stdout || e.message}`, { cause: err });
  }
}
