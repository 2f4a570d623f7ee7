// The container mode's translation of config/'s pod specs into `podman run` (hack/deploy/container.ts):
// every field it applies, and a field it does not know refused by name.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { resolve } from 'node:path';
import { afterAll, describe, expect, test } from '@jest/globals';
import {
  agentWorkload,
  operatorWorkload,
  podmanRunArgs,
  type PodContext,
  type Workload,
} from './container.js';

const dir = mkdtempSync(resolve(tmpdir(), 'sealmesh-container-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function ctx(name: string): PodContext {
  return {
    containerName: `c-${name}`,
    podName: `pod-${name}`,
    nodeName: 'lab-x-n1',
    netns: '/run/netns/lab-x-n1',
    hostRoot: resolve(dir, name, 'root'),
    podDir: resolve(dir, name, 'pod'),
    token: 'not-a-real-token',
    caData: Buffer.from('CA'),
    apiPort: 6443,
    labels: { 'sealmesh.io/lab': 'x' },
    logFile: resolve(dir, `${name}.log`),
  };
}

/** The values that follow each `flag` in `args`. */
const values = (args: string[], flag: string) => args.flatMap((a, i) => (a === flag ? [args[i + 1]!] : []));

describe('podmanRunArgs', () => {
  test('the agent DaemonSet: node network namespace, exactly NET_ADMIN, no privilege escalation, read-only root, downward-API node name, the mounts of the manifest', () => {
    const args = podmanRunArgs(agentWorkload(), ctx('agent'));
    expect(values(args, '--network')).toEqual(['ns:/run/netns/lab-x-n1']);
    expect(values(args, '--cap-drop')).toEqual(['all']);
    expect(values(args, '--cap-add')).toEqual(['CAP_NET_ADMIN']);
    expect(values(args, '--security-opt')).toEqual(['no-new-privileges']);
    expect(args).toContain('--read-only');
    expect(args).toContain('--read-only-tmpfs=false');
    expect(values(args, '--user')).toEqual([]);
    expect(values(args, '--memory')).toEqual(['256m']);
    expect(values(args, '--env')).toEqual([
      'NODE_NAME=lab-x-n1',
      'SEALMESH_NAMESPACE=sealmesh-keys',
      'SEALMESH_STATE_DIR=/var/lib/sealmesh',
      'KUBERNETES_SERVICE_HOST=127.0.0.1',
      'KUBERNETES_SERVICE_PORT=6443',
    ]);
    const root = resolve(dir, 'agent', 'root');
    expect(values(args, '--volume')).toEqual([
      `${resolve(dir, 'agent', 'pod', 'serviceaccount')}:/var/run/secrets/kubernetes.io/serviceaccount:ro`,
      `${root}/var/lib/sealmesh:/var/lib/sealmesh`,
      '/dev/net/tun:/dev/net/tun',
      `${root}/var/run/wireguard:/var/run/wireguard`,
    ]);
    expect(values(args, '--tmpfs')).toEqual(['/tmp:rw,mode=1777,size=16m']);
    // DirectoryOrCreate made the node's directory
    expect(statSync(`${root}/var/lib/sealmesh`).isDirectory()).toBe(true);
    // the kubelet's files: token, CA, namespace, readable by the container's user
    const sa = resolve(dir, 'agent', 'pod', 'serviceaccount');
    expect(readFileSync(resolve(sa, 'namespace'), 'utf8')).toBe('sealmesh-system');
    expect(statSync(resolve(sa, 'token')).mode & 0o777).toBe(0o644);
    // command as the entrypoint, nothing of the image's CMD after it
    expect(args.slice(-3)).toEqual(['--entrypoint', '["node","dist/agent/main.js"]', 'sealmesh:latest']);
  });

  test("the operator Deployment: its own network namespace, user 65532, no capability, the pod's name and namespace from the downward API", () => {
    const args = podmanRunArgs(operatorWorkload(), ctx('operator'));
    expect(values(args, '--cap-drop')).toEqual(['all']);
    expect(values(args, '--cap-add')).toEqual([]);
    expect(values(args, '--user')).toEqual(['65532']);
    expect(values(args, '--hostname')).toEqual(['pod-operator']);
    expect(values(args, '--env').slice(0, 3)).toEqual([
      'POD_NAME=pod-operator',
      'SEALMESH_NAMESPACE=sealmesh-system',
      'SEALMESH_KEY_NAMESPACE=sealmesh-keys',
    ]);
  });

  test('a field the translation does not know is refused by name, not dropped', () => {
    const w = agentWorkload();
    const bad = (change: (w: Workload) => void) => {
      const copy = structuredClone(w);
      change(copy);
      return () => podmanRunArgs(copy, ctx('bad'));
    };
    expect(
      bad((x) => (x.container.env = [{ name: 'X', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } }])),
    ).toThrow(/env X from .*not supported/);
    expect(bad((x) => (x.container.securityContext = { privileged: true }))).toThrow(/privileged/);
    expect(bad((x) => (x.pod.volumes![1]!.hostPath!.type = 'Socket'))).toThrow(/hostPath type Socket/);
    expect(bad((x) => (x.pod.securityContext = { seccompProfile: { type: 'Localhost' } }))).toThrow(
      /seccompProfile Localhost/,
    );
  });
});
