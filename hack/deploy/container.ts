// Container mode (SEALMESH_RUNTIME=container): the operator and the agents as the image `npm run image`
// builds (hack/image/build.sh), run by podman with the pod specs of config/ applied as written, where the
// process mode (hack/deploy/deploy.ts) runs them as processes of this machine. What a kubelet does for a pod
// is done here: the downward API (spec.nodeName, metadata.name, metadata.namespace), the service account's
// token, CA and namespace at /var/run/secrets/kubernetes.io/serviceaccount with KUBERNETES_SERVICE_HOST/PORT,
// hostPath and emptyDir volumes, the security context (capabilities, privilege escalation, read-only root,
// user, seccomp) and the memory limit. A field this translation does not know fails loudly, so a manifest
// change cannot be dropped silently. Not applied: probes, CPU requests, tolerations, priority (no kubelet).
//
// An agent joins its lab node's network namespace (hostNetwork: the node is the host); its hostPath volumes
// are the node's directories under <lab>/root/<node> (hack/lab.sh), /dev/net/tun is the machine's. The
// operator gets a network namespace of its own (`hack/lab.sh pod operator`) with the API server relayed in.
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  CoreV1Api,
  type KubeConfig,
  type V1Container,
  type V1PodSpec,
  type V1SecurityContext,
  type V1PodSecurityContext,
} from '@kubernetes/client-node';
import { load } from 'js-yaml';
import { AGENT_SERVICE_ACCOUNT, OPERATOR_SERVICE_ACCOUNT, repoRoot, serviceAccountToken } from './deploy.js';

/** The image `npm run image` tags (SEALMESH_IMAGE moves it). */
export const IMAGE = process.env.SEALMESH_IMAGE ?? 'sealmesh:latest';
/** crun refuses this kernel's hybrid cgroups; runc runs. */
export const PODMAN = ['podman', '--runtime', 'runc'] as const;
/** The machine's hard limits are below podman's defaults for a container. */
const ULIMITS = ['--ulimit', 'nofile=16384:16384', '--ulimit', 'nproc=4096:4096'];
const SA_MOUNT = '/var/run/secrets/kubernetes.io/serviceaccount';
/** On every container this file starts: `down` removes them by it. */
export const LAB_LABEL = 'sealmesh.io/lab';

export interface Workload {
  file: string;
  name: string;
  namespace: string;
  pod: V1PodSpec;
  container: V1Container;
}

/** What the tests read of `podman inspect`. */
export interface PodmanInspect {
  State: { Pid: number; StartedAt: string };
  EffectiveCaps: string[] | null;
  HostConfig: {
    CapAdd: string[] | null;
    ReadonlyRootfs: boolean;
    SecurityOpt: string[] | null;
    Privileged: boolean;
    Tmpfs?: Record<string, string> | null;
  };
  Config: { User?: string; Env: string[] };
  Mounts: { Destination: string; Source: string }[];
}

/** The (one) container of the DaemonSet or Deployment in `file` (relative to the repository), as written. */
export function readWorkload(file: string): Workload {
  const doc = load(readFileSync(resolve(repoRoot, file), 'utf8')) as {
    metadata?: { name?: string; namespace?: string };
    spec?: { template?: { spec?: V1PodSpec } };
  };
  const pod = doc.spec?.template?.spec;
  const [container, ...more] = pod?.containers ?? [];
  if (!pod || !container || more.length > 0)
    throw new Error(`${file}: expected a pod template with one container`);
  return { file, name: doc.metadata?.name ?? '', namespace: doc.metadata?.namespace ?? '', pod, container };
}

export const agentWorkload = () => readWorkload('config/agent/agent.yaml');
export const operatorWorkload = () => readWorkload('config/manager/manager.yaml');

/** Where a pod runs and what the kubelet hands it. */
export interface PodContext {
  /** the container's name (podman's) */
  containerName: string;
  /** metadata.name of the pod */
  podName: string;
  nodeName: string;
  /** the network namespace: the node's (hostNetwork) or the pod's own */
  netns: string;
  /** the node's root for hostPath volumes (the lab's <lab>/root/<node>) */
  hostRoot: string;
  /** the pod's directory on the node: the service account's files, disk emptyDirs */
  podDir: string;
  /** the service account's token (the kubelet's TokenRequest) */
  token: string;
  caData: Buffer;
  /** the API server as the pod reaches it: 127.0.0.1:<port> relayed into its network namespace */
  apiPort: number;
  labels: Record<string, string>;
  /** the container's log (podman's k8s-file driver) */
  logFile: string;
}

const fail = (w: Workload, what: string): never => {
  throw new Error(`${w.file}: ${what} is not supported by the container mode (hack/deploy/container.ts)`);
};

/** `podman run` arguments that run `w`'s container as its manifest says, in `ctx`. */
export function podmanRunArgs(w: Workload, ctx: PodContext): string[] {
  const { pod, container: c } = w;
  const args = ['run', '--detach', '--pull', 'never', '--name', ctx.containerName, '--replace'];
  for (const [k, v] of Object.entries(ctx.labels)) args.push('--label', `${k}=${v}`);
  args.push('--network', `ns:${ctx.netns}`, '--hostname', pod.hostNetwork ? ctx.nodeName : ctx.podName);
  args.push('--log-driver', 'k8s-file', '--log-opt', `path=${ctx.logFile}`);
  // restartPolicy Always (the default of DaemonSets and Deployments): the runtime restarts what exits
  args.push('--restart', pod.restartPolicy === 'Never' ? 'no' : 'always', ...ULIMITS);
  if (c.workingDir) args.push('--workdir', c.workingDir);

  // security context: the container's fields over the pod's
  const sc: V1PodSecurityContext & V1SecurityContext = {
    ...(pod.securityContext ?? {}),
    ...(c.securityContext ?? {}),
  };
  if (sc.privileged) fail(w, 'privileged');
  const caps = c.securityContext?.capabilities ?? {};
  for (const cap of caps.drop ?? []) args.push('--cap-drop', cap === 'ALL' ? 'all' : `CAP_${cap}`);
  for (const cap of caps.add ?? []) args.push('--cap-add', `CAP_${cap}`);
  if (sc.allowPrivilegeEscalation === false) args.push('--security-opt', 'no-new-privileges');
  if (sc.readOnlyRootFilesystem) args.push('--read-only', '--read-only-tmpfs=false');
  const seccomp = sc.seccompProfile?.type;
  if (seccomp === 'Unconfined') args.push('--security-opt', 'seccomp=unconfined');
  else if (seccomp !== undefined && seccomp !== 'RuntimeDefault') fail(w, `seccompProfile ${seccomp}`);
  if (sc.runAsUser !== undefined)
    args.push('--user', `${sc.runAsUser}${sc.runAsGroup !== undefined ? `:${sc.runAsGroup}` : ''}`);
  // the kubelet refuses to start a container that would run as root under runAsNonRoot
  if (sc.runAsNonRoot && !(Number(sc.runAsUser) > 0)) fail(w, 'runAsNonRoot without a non-zero runAsUser');
  const memory = c.resources?.limits?.memory;
  if (memory) args.push('--memory', memory.replace(/i$/, '').toLowerCase());

  // environment: values, and the downward API's fields
  for (const e of c.env ?? []) {
    let value = e.value;
    const field = e.valueFrom?.fieldRef?.fieldPath;
    if (field === 'spec.nodeName') value = ctx.nodeName;
    else if (field === 'metadata.name') value = ctx.podName;
    else if (field === 'metadata.namespace') value = w.namespace;
    else if (e.valueFrom) fail(w, `env ${e.name} from ${JSON.stringify(e.valueFrom)}`);
    args.push('--env', `${e.name}=${value ?? ''}`);
  }
  args.push('--env', 'KUBERNETES_SERVICE_HOST=127.0.0.1', '--env', `KUBERNETES_SERVICE_PORT=${ctx.apiPort}`);

  // the service account (the kubelet's projected volume: readable by the container's user, read-only)
  const sa = resolve(ctx.podDir, 'serviceaccount');
  mkdirSync(sa, { recursive: true, mode: 0o755 });
  chmodSync(sa, 0o755);
  writeFileSync(resolve(sa, 'token'), ctx.token, { mode: 0o644 });
  writeFileSync(resolve(sa, 'ca.crt'), ctx.caData, { mode: 0o644 });
  writeFileSync(resolve(sa, 'namespace'), w.namespace, { mode: 0o644 });
  args.push('--volume', `${sa}:${SA_MOUNT}:ro`);

  // volumes as mounted
  const volumes = new Map((pod.volumes ?? []).map((v) => [v.name, v]));
  for (const m of c.volumeMounts ?? []) {
    const v = volumes.get(m.name) ?? fail(w, `volumeMount ${m.name} without its volume`);
    const ro = m.readOnly ? ':ro' : '';
    if (v.hostPath) {
      const path = v.hostPath.path;
      if (v.hostPath.type === 'CharDevice') {
        // a device is the machine's: every lab node shares its kernel
        args.push('--volume', `${path}:${m.mountPath}${ro}`);
        continue;
      }
      const onNode = resolve(ctx.hostRoot, `.${path}`);
      if (v.hostPath.type === 'DirectoryOrCreate') mkdirSync(onNode, { recursive: true, mode: 0o755 });
      else if (v.hostPath.type !== undefined && v.hostPath.type !== 'Directory')
        fail(w, `hostPath type ${v.hostPath.type}`);
      args.push('--volume', `${onNode}:${m.mountPath}${ro}`);
    } else if (v.emptyDir) {
      if (v.emptyDir.medium === 'Memory') {
        const size = v.emptyDir.sizeLimit?.replace(/i$/, '').toLowerCase();
        args.push('--tmpfs', `${m.mountPath}:rw,mode=1777${size ? `,size=${size}` : ''}`);
      } else {
        const dir = resolve(ctx.podDir, 'volumes', m.name);
        mkdirSync(dir, { recursive: true, mode: 0o777 });
        args.push('--volume', `${dir}:${m.mountPath}${ro}`);
      }
    } else {
      fail(w, `volume ${m.name} (${Object.keys(v).join(', ')})`);
    }
  }

  args.push('--entrypoint', JSON.stringify(c.command ?? []), IMAGE, ...(c.args ?? []));
  return args;
}

/** Runs podman with `args`; resolves with its stdout, rejects with its stderr. */
export function podman(args: readonly string[], timeoutMs = 60_000): Promise<string> {
  const [bin, ...global] = PODMAN;
  return new Promise((ok, failed) => {
    execFile(
      bin,
      [...global, ...args],
      { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        if (err) failed(new Error(`podman ${args.join(' ')} failed: ${stderr.trim() || err.message}`));
        else ok(stdout);
      },
    );
  });
}

/** The CA of the admin kubeconfig's API server (what a pod's ca.crt holds). */
export function clusterCA(admin: KubeConfig): Buffer {
  const cluster = admin.getCurrentCluster();
  if (cluster?.caData) return Buffer.from(cluster.caData, 'base64');
  if (cluster?.caFile) return readFileSync(cluster.caFile);
  throw new Error('the admin kubeconfig has no CA for its API server');
}

/** The port of the API server on 127.0.0.1 (the lab relays it into every namespace at the same port). */
export function apiPort(admin: KubeConfig): number {
  const m = /^https?:\/\/(?:127\.0\.0\.1|localhost):(\d+)\/?$/.exec(admin.getCurrentCluster()?.server ?? '');
  if (!m) throw new Error('the container mode needs the API server on 127.0.0.1 (hack/cluster.sh)');
  return Number(m[1]);
}

/** The agent container's name on `node`. */
export const agentContainerName = (node: string) => `sealmesh-agent-${node}`;

/**
 * What the kubelet does for the DaemonSet's pod on a lab node, run by hack/lab.sh in the host's namespaces
 * (NODE_NAME, LAB_NETNS, LAB_NODE_ROOT, SEALMESH_LAB_DIR, SEALMESH_LAB_RUN set): a token bound to the node
 * (its node-name claim is what the agent admission policy requires), then the container. Its log is
 * <lab>/<node>.agent.log.
 */
export async function startAgentContainer(admin: KubeConfig, env = process.env): Promise<string> {
  const need = (k: string) => env[k] ?? fail(agentWorkload(), `a start without ${k}`);
  const node = need('NODE_NAME');
  const labDir = need('SEALMESH_LAB_DIR');
  const core = admin.makeApiClient(CoreV1Api);
  const { metadata } = await core.readNode({ name: node });
  const token = await serviceAccountToken(admin, AGENT_SERVICE_ACCOUNT, 24 * 3600, {
    name: node,
    uid: metadata?.uid ?? '',
  });
  const w = agentWorkload();
  const args = podmanRunArgs(w, {
    containerName: agentContainerName(node),
    podName: `${w.name}-${node}`,
    nodeName: node,
    netns: need('LAB_NETNS'),
    hostRoot: need('LAB_NODE_ROOT'),
    podDir: resolve(labDir, 'pods', node),
    token,
    caData: clusterCA(admin),
    apiPort: apiPort(admin),
    labels: {
      [LAB_LABEL]: need('SEALMESH_LAB_RUN'),
      'sealmesh.io/component': 'agent',
      'sealmesh.io/node': node,
    },
    logFile: resolve(labDir, `${node}.agent.log`),
  });
  return (await podman(args)).trim();
}

export interface OperatorContainerOptions {
  /** `hack/lab.sh pod operator`'s network namespace */
  netns: string;
  /** the lab's run (the containers' label) */
  run: string;
  /** where the pod's files and its log go */
  dir: string;
}

/** The operator Deployment's pod (one replica) as a container. Returns its name. */
export async function startOperatorContainer(
  admin: KubeConfig,
  o: OperatorContainerOptions,
): Promise<string> {
  const w = operatorWorkload();
  const token = await serviceAccountToken(admin, OPERATOR_SERVICE_ACCOUNT, 24 * 3600);
  const name = `sealmesh-operator-${o.run}`;
  await podman(
    podmanRunArgs(w, {
      containerName: name,
      podName: `${w.name}-${o.run}`,
      nodeName: '',
      netns: o.netns,
      hostRoot: resolve(o.dir, 'root'),
      podDir: resolve(o.dir, 'operator-pod'),
      token,
      caData: clusterCA(admin),
      apiPort: apiPort(admin),
      labels: { [LAB_LABEL]: o.run, 'sealmesh.io/component': 'operator' },
      logFile: resolve(o.dir, 'operator.log'),
    }),
  );
  return name;
}

/** The operator's pod in a lab (`hack/lab.sh pod operator` makes its network namespace), as a container. */
export async function startOperatorInLab(admin: KubeConfig, labDir: string, dir: string): Promise<string> {
  const state = readFileSync(resolve(labDir, 'state'), 'utf8');
  const run = /^RUN=(\S+)$/m.exec(state)?.[1];
  if (!run) throw new Error(`no lab in ${labDir}`);
  const netns = await new Promise<string>((ok, failed) => {
    execFile(
      'bash',
      [resolve(repoRoot, 'hack/lab.sh'), 'pod', 'operator'],
      { env: { ...process.env, SEALMESH_LAB_DIR: labDir, LAB_QUIET: '1' }, timeout: 30_000 },
      (err, stdout, stderr) =>
        err ? failed(new Error(`lab.sh pod operator: ${stderr.trim()}`)) : ok(stdout.trim()),
    );
  });
  return startOperatorContainer(admin, { netns, run, dir });
}

/** hack/lab.sh's agent command in container mode: hack/deploy.ts agent-container, in the host's namespaces. */
export function agentContainerCommand(adminKubeconfig: string): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return `cd ${q(repoRoot)} && KUBECONFIG=${q(adminKubeconfig)} exec ${q(process.execPath)} --import tsx hack/deploy.ts agent-container`;
}
