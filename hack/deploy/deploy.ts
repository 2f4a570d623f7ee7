// sealmesh deployed onto the local control plane the way a cluster runs it, minus the containers: the
// namespaces, CRDs and RBAC from config/ applied with kubectl, the operator and the agents as processes that
// authenticate as their service accounts (tokens from the TokenRequest API), so a permission missing from
// config/rbac fails here exactly as it would in a cluster. Shared by the demo (hack/demo.sh through
// hack/deploy.ts) and the e2e tests (test/support/deploy.ts).
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, openSync, readFileSync, writeFileSync, closeSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { dump } from 'js-yaml';
import {
  GROUP,
  NODE_TUNNEL_PLURAL,
  OVERLAY_LABEL,
  OVERLAY_NETWORK_PLURAL,
  VERSION,
} from '../../api/v1alpha1/groupversion.js';
import { describeError, isNotFound } from '../../lib/kube.js';

export const repoRoot = resolve(import.meta.dirname, '..', '..');
export const SYSTEM_NAMESPACE = 'sealmesh-system';
/** Where the sealed key Secrets, the operator's public key and the agents' Leases live. */
export const KEY_NAMESPACE = 'sealmesh-keys';
export const OPERATOR_SERVICE_ACCOUNT = 'sealmesh-operator';
export const AGENT_SERVICE_ACCOUNT = 'sealmesh-agent';

/** The kubectl built with the control plane (same version as the API server). */
export function kubectlPath(): string {
  const bin = execFileSync('bash', [resolve(repoRoot, 'hack/kube/build.sh')], { encoding: 'utf8' }).trim();
  return resolve(bin, 'kubectl');
}

/** Runs kubectl against `kubeconfig`; rejects with its stderr when it fails. */
export function kubectl(kubeconfig: string, args: readonly string[], timeoutMs = 60_000): Promise<string> {
  return new Promise((ok, fail) => {
    execFile(
      kubectlPath(),
      ['--kubeconfig', kubeconfig, ...args],
      { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 << 20, cwd: repoRoot },
      (err, stdout, stderr) => {
        if (err) fail(new Error(`kubectl ${args.join(' ')} failed: ${stderr.trim() || err.message}`));
        else ok(stdout);
      },
    );
  });
}

/**
 * config/namespace, config/crd and config/rbac, as a user installs them. Server-side apply (CRDs are too
 * large for the last-applied annotation; the integration tests apply the same objects server-side), and the
 * CRDs must be Established before anyone lists them.
 */
export async function applyBase(adminKubeconfig: string): Promise<void> {
  await kubectl(adminKubeconfig, ['apply', '--server-side', '--force-conflicts', '-k', 'config/namespace']);
  await kubectl(adminKubeconfig, ['apply', '--server-side', '--force-conflicts', '-k', 'config/crd']);
  await kubectl(adminKubeconfig, [
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    `crd/${OVERLAY_NETWORK_PLURAL}.${GROUP}`,
    `crd/${NODE_TUNNEL_PLURAL}.${GROUP}`,
  ]);
  await kubectl(adminKubeconfig, ['apply', '--server-side', '--force-conflicts', '-k', 'config/rbac']);
}

/**
 * What applyBase applies, from the Helm chart (charts/sealmesh) instead: a release `sealmesh` in
 * sealmesh-system with the operator and the agents turned off (they run as processes here, and this control
 * plane has no kubelet to run pods). --take-ownership adopts what an earlier applyBase left.
 */
export async function installChart(adminKubeconfig: string): Promise<void> {
  const helm = execFileSync('bash', [resolve(repoRoot, 'hack/tools/build.sh'), 'helm'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
  const args = [
    ...['upgrade', '--install', 'sealmesh', 'charts/sealmesh', '--kubeconfig', adminKubeconfig],
    ...[
      '--namespace',
      SYSTEM_NAMESPACE,
      '--create-namespace',
      '--take-ownership',
      '--wait',
      '--timeout',
      '2m',
    ],
    ...['--set', 'operator.enabled=false', '--set', 'agent.enabled=false'],
  ];
  await new Promise<void>((ok, fail) => {
    execFile(helm, args, { cwd: repoRoot, timeout: 180_000, killSignal: 'SIGKILL' }, (err, _out, stderr) =>
      err ? fail(new Error(`helm ${args.join(' ')} failed: ${stderr.trim() || err.message}`)) : ok(),
    );
  });
  await kubectl(adminKubeconfig, [
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    `crd/${OVERLAY_NETWORK_PLURAL}.${GROUP}`,
    `crd/${NODE_TUNNEL_PLURAL}.${GROUP}`,
  ]);
}

/** A Node a token is bound to: the token carries its name as the node-name claim and dies with it. */
export interface BoundNode {
  name: string;
  uid: string;
}

/**
 * A token for service account `name` of sealmesh-system from the TokenRequest API. Bound to `node`, it
 * carries `authentication.kubernetes.io/node-name` as a DaemonSet pod's token does, which the agent
 * admission policy (config/rbac/agent-admission.yaml) requires of every write an agent makes.
 */
export async function serviceAccountToken(
  admin: KubeConfig,
  name: string,
  expirationSeconds = 24 * 3600,
  node?: BoundNode,
): Promise<string> {
  const core = admin.makeApiClient(CoreV1Api);
  const boundObjectRef = node
    ? { apiVersion: 'v1', kind: 'Node', name: node.name, uid: node.uid }
    : undefined;
  let token: string | undefined;
  try {
    const request = await core.createNamespacedServiceAccountToken({
      name,
      namespace: SYSTEM_NAMESPACE,
      body: { spec: { audiences: [], expirationSeconds, boundObjectRef } },
    });
    token = request.status?.token;
  } catch (err) {
    throw new Error(`TokenRequest for ${SYSTEM_NAMESPACE}/${name} failed: ${describeError(err)}`, {
      cause: err,
    });
  }
  if (!token) throw new Error(`TokenRequest for ${SYSTEM_NAMESPACE}/${name} returned no token`);
  return token;
}

/** Writes a kubeconfig (mode 0600) for the API server of `admin` that authenticates with `token`. */
export function writeTokenKubeconfig(admin: KubeConfig, user: string, token: string, file: string): void {
  const cluster = admin.getCurrentCluster();
  if (!cluster) throw new Error('the admin kubeconfig has no current cluster');
  const caData = cluster.caData ?? (cluster.caFile ? readFileSync(cluster.caFile).toString('base64') : '');
  if (!caData) throw new Error(`the admin kubeconfig has no CA for ${cluster.server}`);
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      { name: 'sealmesh', cluster: { server: cluster.server, 'certificate-authority-data': caData } },
    ],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: user, context: { cluster: 'sealmesh', user } }],
    'current-context': user,
  };
  mkdirSync(dirname(file), { recursive: true });
  // created 0600 before the token is in it; chmod too in case the file existed with wider permissions
  writeFileSync(file, dump(config, { lineWidth: -1 }), { mode: 0o600 });
  chmodSync(file, 0o600);
}

/**
 * Writes a kubeconfig (mode 0600) that authenticates as service account `name` of sealmesh-system with a
 * token from the TokenRequest API, for the same API server as `admin`.
 */
export async function writeServiceAccountKubeconfig(
  admin: KubeConfig,
  name: string,
  file: string,
  expirationSeconds = 24 * 3600,
): Promise<void> {
  writeTokenKubeconfig(admin, name, await serviceAccountToken(admin, name, expirationSeconds), file);
}

/** Where agentCommand's kubeconfig template has the token of the node its agent starts on. */
const NODE_TOKEN_PLACEHOLDER = 'SEALMESH_NODE_TOKEN';

/**
 * The agent's kubeconfig with a placeholder for the token, which agentCommand fills with a token bound to
 * the node the agent starts on (no shared agent token exists: the admission policy would refuse it).
 */
export function writeAgentKubeconfigTemplate(admin: KubeConfig, file: string): void {
  writeTokenKubeconfig(admin, AGENT_SERVICE_ACCOUNT, NODE_TOKEN_PLACEHOLDER, file);
}

/**
 * What runs a component: its TypeScript source through tsx (tests), or the compiled JavaScript that
 * `npm run build` writes to dist/ and the image runs (the demo).
 */
export type RunFrom = 'source' | 'build';

function entryArgs(component: 'operator' | 'agent', from: RunFrom): string[] {
  return from === 'build' ? [`dist/${component}/main.js`] : ['--import', 'tsx', `${component}/main.ts`];
}

export interface OperatorProcessOptions {
  kubeconfig: string;
  /** stdout and stderr go here (appended) */
  logFile: string;
  /** a session of its own that outlives the caller (the demo); default false */
  detached?: boolean;
  env?: NodeJS.ProcessEnv;
  /** default 'source' */
  from?: RunFrom;
}

/** `npm run operator` without npm in between, so the PID is the operator's own. */
export function startOperatorProcess(o: OperatorProcessOptions): ChildProcess {
  mkdirSync(dirname(o.logFile), { recursive: true });
  const log = openSync(o.logFile, 'a');
  try {
    const child = spawn(
      process.execPath,
      [
        ...entryArgs('operator', o.from ?? 'source'),
        '--namespace',
        SYSTEM_NAMESPACE,
        '--key-namespace',
        KEY_NAMESPACE,
        '--metrics-host',
        '127.0.0.1',
        '--metrics-port',
        '0',
      ],
      {
        cwd: repoRoot,
        env: { ...process.env, ...o.env, KUBECONFIG: o.kubeconfig },
        stdio: ['ignore', log, log],
        detached: o.detached ?? false,
      },
    );
    if (o.detached) child.unref();
    return child;
  } finally {
    closeSync(log); // the child has its own copy
  }
}

export interface AgentCommandOptions {
  /** the admin kubeconfig, with which the command requests the node's token (the kubelet's part) */
  adminKubeconfig: string;
  /** writeAgentKubeconfigTemplate's file */
  template: string;
  /** keys under stateRoot/<node>, the node's kubeconfig at stateRoot/<node>.kubeconfig */
  stateRoot: string;
  /** default 'source' */
  from?: RunFrom;
}

/**
 * The command hack/lab.sh runs inside every node (`--agent-cmd`, or `lab.sh start NODE agent -- bash -c`):
 * the agent as the agent service account, against sealmesh-keys, keys under `stateRoot/<node>`. It first
 * does what the kubelet does for a DaemonSet pod: gets a token bound to the node (kubectl create token, with
 * the admin kubeconfig, which the agent never sees; retried while the node's API relay starts) and writes
 * the node's kubeconfig from the template. lab.sh sets NODE_NAME; `exec` makes the recorded PID the agent's.
 */
export function agentCommand(o: AgentCommandOptions): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const nodeKubeconfig = `${q(o.stateRoot)}/"$NODE_NAME".kubeconfig`;
  const createToken =
    `${q(kubectlPath())} --kubeconfig ${q(o.adminKubeconfig)} --request-timeout=10s create token` +
    ` ${AGENT_SERVICE_ACCOUNT} -n ${SYSTEM_NAMESPACE} --bound-object-kind Node --bound-object-name "$NODE_NAME"` +
    ` --duration ${24 * 3600}s`;
  return [
    `cd ${q(repoRoot)}`,
    `umask 077`,
    `mkdir -p ${q(o.stateRoot)}`,
    `for i in $(seq 50); do tok=$(${createToken}) && break; sleep 0.2; done`,
    `[ -n "$tok" ]`,
    `sed "s/${NODE_TOKEN_PLACEHOLDER}/$tok/" ${q(o.template)} >${nodeKubeconfig}`,
    `unset tok`,
    `KUBECONFIG=${nodeKubeconfig} exec ${q(process.execPath)} ${entryArgs('agent', o.from ?? 'source').join(' ')}` +
      ` --namespace ${KEY_NAMESPACE} --state-dir ${q(o.stateRoot)}/"$NODE_NAME"`,
  ].join(' && ');
}

interface TunnelView {
  node: string;
  peersSummary?: string;
  notEncrypted: string[];
}

export interface OverlayProgress {
  /** every pair of exactly the expected nodes is encrypted */
  done: boolean;
  /** when not done: why, in a sentence */
  reason: string;
  /** nothing will get better by waiting (e.g. the overlay selects nodes that have no agent) */
  hopeless: boolean;
  encrypted: number;
  total: number;
  status: unknown;
  tunnels: TunnelView[];
}

/** Where an overlay stands, judged from its status (the operator's pair aggregation) and its NodeTunnels. */
export async function overlayProgress(
  kc: KubeConfig,
  overlay: string,
  nodes?: readonly string[],
): Promise<OverlayProgress> {
  const custom = kc.makeApiClient(CustomObjectsApi);
  const base = { done: false, hopeless: false, encrypted: 0, total: 0, status: undefined, tunnels: [] };
  let obj: {
    metadata?: { generation?: number };
    status?: {
      observedGeneration?: number;
      pairs?: { total?: number; encrypted?: number };
      conditions?: Array<{ type: string; status: string; reason?: string; message?: string }>;
    };
  };
  try {
    obj = (await custom.getClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: OVERLAY_NETWORK_PLURAL,
      name: overlay,
    })) as typeof obj;
  } catch (err) {
    if (isNotFound(err)) return { ...base, reason: `overlaynetwork ${overlay} does not exist` };
    throw err;
  }
  const list = (await custom.listClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: NODE_TUNNEL_PLURAL,
    labelSelector: `${OVERLAY_LABEL}=${overlay}`,
  })) as {
    items: Array<{
      spec?: { nodeName?: string };
      status?: { peersSummary?: string; peers?: Array<{ node?: string; state?: string }> };
    }>;
  };
  const tunnels: TunnelView[] = list.items.map((t) => ({
    node: t.spec?.nodeName ?? '?',
    peersSummary: t.status?.peersSummary,
    notEncrypted: (t.status?.peers ?? [])
      .filter((p) => p.state !== 'Encrypted')
      .map((p) => `${p.node ?? '?'}=${p.state ?? '?'}`),
  }));
  const status = obj.status;
  const encrypted = status?.pairs?.encrypted ?? 0;
  const total = status?.pairs?.total ?? 0;
  const view = { ...base, encrypted, total, status, tunnels };
  if (nodes) {
    const foreign = tunnels.map((t) => t.node).filter((n) => !nodes.includes(n));
    // A tunnel of a deleted Node (a previous lab) goes once the operator catches up; a Node that exists
    // but has no agent here never becomes encrypted.
    const core = kc.makeApiClient(CoreV1Api);
    const alive: string[] = [];
    for (const name of foreign) {
      try {
        await core.readNode({ name });
        alive.push(name);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    if (alive.length > 0) {
      return {
        ...view,
        hopeless: true,
        reason:
          `overlay ${overlay} also selects node(s) without an agent here: ${alive.join(', ')} ` +
          `(left over from another run? delete them, or use a fresh control plane)`,
      };
    }
    if (foreign.length > 0) {
      return {
        ...view,
        reason: `the operator has not yet removed the tunnels of deleted node(s) ${foreign.join(', ')}`,
      };
    }
    const missing = nodes.filter((n) => !tunnels.some((t) => t.node === n));
    if (missing.length > 0) return { ...view, reason: `no NodeTunnel yet for ${missing.join(', ')}` };
  }
  if (status?.observedGeneration !== obj.metadata?.generation) {
    return { ...view, reason: `the operator has not processed generation ${obj.metadata?.generation} yet` };
  }
  const want = nodes ? (nodes.length * (nodes.length - 1)) / 2 : total;
  if (total !== want) return { ...view, reason: `status counts ${total} pairs, expected ${want}` };
  if (total === 0) return { ...view, reason: 'status counts no pairs (fewer than two nodes selected?)' };
  if (encrypted !== total) {
    const waiting = tunnels
      .filter((t) => t.notEncrypted.length > 0)
      .map((t) => `${t.node}: ${t.notEncrypted.join(' ')}`);
    return {
      ...view,
      reason: `${encrypted}/${total} pairs encrypted${waiting.length ? `; not yet: ${waiting.join('; ')}` : ''}`,
    };
  }
  return { ...view, done: true, reason: `${encrypted}/${total} pairs encrypted` };
}

/**
 * Polls until every pair of `nodes` is encrypted. Rejects after `timeoutMs` (or at once when hopeless) with
 * the reason and the last status. `onChange` hears every new reason (progress for people watching).
 */
export async function waitAllEncrypted(
  kc: KubeConfig,
  overlay: string,
  nodes: readonly string[] | undefined,
  timeoutMs: number,
  onChange?: (p: OverlayProgress, elapsedMs: number) => void,
): Promise<OverlayProgress> {
  const start = Date.now();
  let last: OverlayProgress | undefined;
  let lastError: string | undefined;
  for (;;) {
    try {
      const p = await overlayProgress(kc, overlay, nodes);
      if (p.reason !== last?.reason) onChange?.(p, Date.now() - start);
      last = p;
      lastError = undefined;
      if (p.done) return p;
      if (p.hopeless) throw new WaitError(p.reason, p);
    } catch (err) {
      if (err instanceof WaitError) throw err;
      lastError = describeError(err); // the API server may blink; keep trying within the bound
    }
    if (Date.now() - start > timeoutMs) {
      const why = `${last?.reason ?? 'no status read'}${lastError ? ` (last API error: ${lastError})` : ''}`;
      throw new WaitError(
        `not every pair of overlay ${overlay} encrypted after ${Math.round(timeoutMs / 1000)} s: ${why}`,
        last,
      );
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

export class WaitError extends Error {
  constructor(
    message: string,
    readonly last: OverlayProgress | undefined,
  ) {
    super(message);
  }
}

/** The last status of an overlay and its tunnels, for a person reading why a wait failed. */
export function describeProgress(p: OverlayProgress | undefined): string {
  if (!p) return '(no status read)';
  const tunnels = p.tunnels
    .map(
      (t) =>
        `  ${t.node}: peers ${t.peersSummary ?? '-'}${t.notEncrypted.length ? ` (${t.notEncrypted.join(' ')})` : ''}`,
    )
    .join('\n');
  return `status:\n${dump(p.status ?? {}, { indent: 2 }).replace(/^/gm, '  ')}tunnels:\n${tunnels || '  (none)'}`;
}
