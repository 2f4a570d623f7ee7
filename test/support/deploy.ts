// sealmesh deployed for an e2e test the way the demo does it (hack/deploy/deploy.ts): config/ applied for
// real, the operator as a child process and one agent per lab node, each with a token of its own service
// account, so the tests run under the RBAC users get. With runtime 'container' (the default when
// SEALMESH_RUNTIME=container) the operator and the agents are the image under podman, with config/'s pod specs
// (hack/deploy/container.ts); the lab's `down` removes their containers. Everything a Deployment starts is stopped by PID in
// down(); a test process that died before its afterAll leaves an owner file behind, and the next up() stops
// what it left (its operator; Lab.up reaps its lab).
import { execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import {
  writeAgentKubeconfigTemplate,
  OPERATOR_SERVICE_ACCOUNT,
  agentCommand,
  applyBase,
  startOperatorProcess,
  writeServiceAccountKubeconfig,
} from '../../hack/deploy/deploy.js';
import {
  agentContainerCommand,
  agentContainerName,
  podman,
  startOperatorInLab,
  type PodmanInspect,
} from '../../hack/deploy/container.js';
import { kubeconfigPath, repoRoot } from './cluster.js';
import { Lab } from './lab.js';

const parent = resolve(repoRoot, '.local');
const prefix = 'e2e-deploy-';
/** An hour: enough for a test run, and a token left behind is not good for long. */
const TOKEN_SECONDS = 3600;

export type Runtime = 'process' | 'container';

export interface DeploymentOptions {
  nodes: number;
  kc: KubeConfig;
  /** environment of every agent the lab starts (e.g. SEALMESH_POST_QUANTUM=off: agents as before issue #17) */
  agentEnv?: Record<string, string>;
  /** default: SEALMESH_RUNTIME, else 'process' */
  runtime?: Runtime;
}

/** `cmd` run with `env` exported first (names and values are the test's own, quoted). */
export function withEnv(cmd: string, env: Record<string, string> = {}): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const exports = Object.entries(env).map(([k, v]) => `export ${k}=${q(v)}`);
  return [...exports, cmd].join(' && ');
}

/** The runtime SEALMESH_RUNTIME asks for (process unless it says container). */
export function runtimeFromEnv(): Runtime {
  return process.env.SEALMESH_RUNTIME === 'container' ? 'container' : 'process';
}

export class Deployment {
  /** how often the operator exited and was started again (a Deployment's pod restarts) */
  operatorRestarts = 0;
  private stopping = false;

  private constructor(
    /** holds the service-account kubeconfigs (0600), the operator's log and PID */
    readonly dir: string,
    readonly lab: Lab,
    private operator: ChildProcess | undefined,
    readonly agentCmd: string,
    /** the agent command without DeploymentOptions.agentEnv */
    readonly baseAgentCmd: string = agentCmd,
    readonly runtime: Runtime = 'process',
  ) {
    if (operator) this.supervise(operator);
  }

  /**
   * As a Deployment's pod restarts: an operator that exits on its own (it exits when it loses leadership,
   * e.g. while the API server is down) is started again a second later, with the same command and log.
   */
  private supervise(child: ChildProcess): void {
    child.once('exit', () => {
      if (this.stopping || this.operator !== child) return;
      setTimeout(() => {
        if (this.stopping) return;
        const next = startOperatorProcess({
          kubeconfig: resolve(this.dir, 'operator.kubeconfig'),
          logFile: resolve(this.dir, 'operator.log'),
        });
        this.operator = next;
        this.operatorRestarts++;
        if (next.pid)
          writeFileSync(resolve(this.dir, 'operator.pid'), `${next.pid} ${startTime(next.pid)}\n`);
        this.supervise(next);
      }, 1000).unref();
    });
  }

  get operatorLog(): string {
    return resolve(this.dir, 'operator.log');
  }

  static async up(o: DeploymentOptions): Promise<Deployment> {
    reapStale();
    const id = randomBytes(3).toString('hex');
    const dir = resolve(parent, `${prefix}${id}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(resolve(dir, 'owner'), `${process.pid}\n`);
    if ((o.runtime ?? runtimeFromEnv()) === 'container') return Deployment.upContainers(o, id, dir);
    let operator: ChildProcess | undefined;
    try {
      await applyBase(kubeconfigPath);
      await writeServiceAccountKubeconfig(
        o.kc,
        OPERATOR_SERVICE_ACCOUNT,
        resolve(dir, 'operator.kubeconfig'),
        TOKEN_SECONDS,
      );
      writeAgentKubeconfigTemplate(o.kc, resolve(dir, 'agent.kubeconfig'));
      operator = startOperatorProcess({
        kubeconfig: resolve(dir, 'operator.kubeconfig'),
        logFile: resolve(dir, 'operator.log'),
      });
      if (operator.pid)
        writeFileSync(resolve(dir, 'operator.pid'), `${operator.pid} ${startTime(operator.pid)}\n`);
      const labDir = resolve(parent, `lab-test-${id}`);
      const baseCmd = agentCommand({
        adminKubeconfig: kubeconfigPath,
        template: resolve(dir, 'agent.kubeconfig'),
        stateRoot: resolve(labDir, 'agents'),
      });
      const agentCmd = withEnv(baseCmd, o.agentEnv);
      const lab = await Lab.up({ nodes: o.nodes, agentCmd, dir: labDir });
      return new Deployment(dir, lab, operator, agentCmd, baseCmd);
    } catch (err) {
      if (operator) await stopChild(operator);
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * Container mode: the image (built when missing or stale; seconds when current), the lab with an agent
   * container per node (lab.sh --agent-host), the operator's container in a network namespace of its own.
   */
  private static async upContainers(o: DeploymentOptions, id: string, dir: string): Promise<Deployment> {
    const labDir = resolve(parent, `lab-test-${id}`);
    const agentCmd = agentContainerCommand(kubeconfigPath);
    let lab: Lab | undefined;
    try {
      await buildImage();
      await applyBase(kubeconfigPath);
      lab = await Lab.up({ nodes: o.nodes, agentCmd, agentHost: true, dir: labDir });
      await startOperatorInLab(o.kc, labDir, dir);
      return new Deployment(dir, lab, undefined, agentCmd, agentCmd, 'container');
    } catch (err) {
      await lab?.down().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** Where the agent of `node` keeps its keys (the DaemonSet's hostPath /var/lib/sealmesh in container mode). */
  agentStateDir(node: string): string {
    return this.runtime === 'container'
      ? resolve(this.lab.dir, 'root', node, 'var/lib/sealmesh')
      : resolve(this.lab.dir, 'agents', node);
  }

  /** Container mode: the name of the agent's container on `node`. */
  agentContainer(node: string): string {
    return agentContainerName(node);
  }

  /** Container mode: `podman restart` of the agent's container on `node` (stop: SIGTERM, 10 s, SIGKILL). */
  async restartAgentContainer(node: string): Promise<void> {
    await podman(['restart', agentContainerName(node)], 60_000);
  }

  /** Container mode: `podman inspect` of a container, parsed. */
  async inspect(container: string): Promise<PodmanInspect> {
    const out = await podman(['inspect', container], 30_000);
    const [first] = JSON.parse(out) as PodmanInspect[];
    if (!first) throw new Error(`podman inspect ${container}: nothing`);
    return first;
  }

  /** Container mode: the operator's container. */
  get operatorContainer(): string {
    return `sealmesh-operator-${this.lab.run}`;
  }

  /** The PID of the agent running in `node` now, if one runs (lab.sh records every start). */
  agentPid(node: string): number | undefined {
    const file = resolve(this.lab.dir, 'pids');
    if (!existsSync(file)) return undefined;
    const lines = readFileSync(file, 'utf8').split('\n').reverse();
    for (const line of lines) {
      const [pid, start, n, label] = line.split(' ');
      if (n !== node || label !== 'agent' || !pid) continue;
      if (startTime(Number(pid)) === start) return Number(pid);
    }
    return undefined;
  }

  /** kill -9 of the agent in `node`: no shutdown code runs, as in a crash or an OOM kill. */
  async killAgent(node: string): Promise<number> {
    const pid = this.agentPid(node);
    if (!pid) throw new Error(`no agent runs in ${node}`);
    process.kill(pid, 'SIGKILL');
    const deadline = Date.now() + 5000;
    while (startTime(pid) !== undefined && !isZombie(pid)) {
      if (Date.now() > deadline) throw new Error(`agent ${pid} in ${node} survived SIGKILL for 5 s`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return pid;
  }

  /** Starts the agent in `node` again, with the same command the lab started it with (or `cmd`). */
  async startAgent(node: string, cmd = this.agentCmd): Promise<void> {
    const r = await new Promise<{ code: number; stderr: string }>((done) => {
      execFile(
        'bash',
        [resolve(repoRoot, 'hack/lab.sh'), 'start', node, 'agent', '--', 'bash', '-c', cmd],
        { env: { ...process.env, SEALMESH_LAB_DIR: this.lab.dir, LAB_QUIET: '1' }, timeout: 30_000 },
        (err, _stdout, stderr) => done({ code: err ? 1 : 0, stderr }),
      );
    });
    if (r.code !== 0) throw new Error(`lab.sh start ${node} agent failed: ${r.stderr.trim()}`);
  }

  /** The operator's log and every node's log (agents, relay), for assertions and for failure output. */
  logs(): { operator: string; nodes: Record<string, string> } {
    const read = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8') : '');
    const nodes: Record<string, string> = {};
    for (const n of this.lab.nodes)
      nodes[n.name] =
        read(resolve(this.lab.dir, `${n.name}.log`)) + read(resolve(this.lab.dir, `${n.name}.agent.log`));
    return { operator: read(this.operatorLog), nodes };
  }

  /** Stops the operator and the lab (agents, wireguard-go, namespaces); removes the tokens. Idempotent. */
  async down(): Promise<void> {
    const errors: string[] = [];
    this.stopping = true;
    if (this.operator) {
      await stopChild(this.operator);
      this.operator = undefined;
    }
    await this.lab.down().catch((err: unknown) => errors.push(String(err)));
    rmSync(this.dir, { recursive: true, force: true });
    if (errors.length) throw new Error(`deployment down: ${errors.join('; ')}`);
  }
}

/** `npm run image` (hack/image/build.sh): builds it once, then podman's cache answers in seconds. */
function buildImage(): Promise<void> {
  return new Promise((ok, fail) => {
    execFile(
      'bash',
      [resolve(repoRoot, 'hack/image/build.sh')],
      { timeout: 900_000, killSignal: 'SIGKILL', maxBuffer: 64 << 20 },
      (err, _stdout, stderr) => {
        if (err) return fail(new Error(`hack/image/build.sh failed: ${stderr.trim().slice(-2000)}`));
        // its figure: how long the build took (cold, or seconds when current)
        const line = stderr.split('\n').find((l) => l.startsWith('image/build.sh:'));
        if (line) process.stdout.write(`${line}\n`);
        ok();
      },
    );
  });
}

/** /proc start time of a process (guards against a recycled PID); undefined when it is gone. */
function startTime(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[19];
  } catch {
    return undefined;
  }
}

function isZombie(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.startsWith('Z') ?? false;
  } catch {
    return true;
  }
}

/** SIGTERM (the operator releases its Lease), SIGKILL after 10 s. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Operators of test processes that died before their afterAll; their directories (tokens) go too. */
function reapStale(): void {
  if (!existsSync(parent)) return;
  for (const entry of readdirSync(parent)) {
    if (!entry.startsWith(prefix)) continue;
    const dir = resolve(parent, entry);
    const read = (f: string) => {
      try {
        return readFileSync(resolve(dir, f), 'utf8').trim();
      } catch {
        return '';
      }
    };
    const owner = Number(read('owner'));
    if (owner > 0 && startTime(owner) !== undefined) continue; // still in use
    const [pid, start] = read('operator.pid').split(' ');
    if (pid && start && startTime(Number(pid)) === start) process.kill(Number(pid), 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}
