// The node lab (hack/lab.sh) from TypeScript, for e2e tests. Every Lab gets its own state directory, so a
// test never touches a lab someone else (a demo) keeps running, and down() removes exactly what up() made.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { localRunner, nsenterRunner, type CommandRunner } from '../../agent/device/wgcli.js';
import { repoRoot } from './cluster.js';

export interface LabNode {
  /** as `kubectl get nodes` shows it */
  name: string;
  index: number;
  underlayIP: string;
  podCIDR: string;
  /** network namespace file */
  netns: string;
  /** mount namespace file */
  mountns: string;
}

export interface LabOptions {
  nodes: number;
  /** create Node objects and relay the API server into the nodes (needs the control plane); default true */
  k8s?: boolean;
  agentCmd?: string;
  /** run agentCmd in the host's namespaces (it starts the agent as a container in the node) */
  agentHost?: boolean;
  /** state directory; default a fresh one under .local/ */
  dir?: string;
}

export interface RunOptions {
  timeoutMs?: number;
  input?: string;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number;
}

const labScript = resolve(repoRoot, 'hack', 'lab.sh');

export class Lab {
  private constructor(
    readonly dir: string,
    readonly run: string,
    readonly underlayNetns: string,
    public nodes: LabNode[],
  ) {}

  static async up(options: LabOptions): Promise<Lab> {
    await reapStaleTestLabs();
    const dir = options.dir ?? resolve(testLabParent, `${testLabPrefix}${randomBytes(3).toString('hex')}`);
    // The owner's PID goes in first, so a lab whose test process died can be told from one still in use.
    mkdirSync(dir, { recursive: true });
    writeFileSync(resolve(dir, 'owner'), `${process.pid}\n`);
    const args = ['up', '--nodes', String(options.nodes)];
    if (options.k8s === false) args.push('--no-k8s');
    if (options.agentCmd) args.push('--agent-cmd', options.agentCmd);
    if (options.agentHost) args.push('--agent-host');
    const result = await script(dir, args, 60_000);
    if (result.code !== 0) {
      // whatever got made before the failure goes again
      await script(dir, ['down'], 60_000);
      throw new Error(`hack/lab.sh up failed (exit ${result.code}): ${result.stderr.trim()}`);
    }
    return Lab.load(dir);
  }

  /** Attaches to a lab that is already up in `dir`. */
  static load(dir: string): Lab {
    const state = readFileSync(resolve(dir, 'state'), 'utf8');
    const value = (key: string): string => {
      const m = new RegExp(`^${key}=(\\S+)$`, 'm').exec(state);
      if (!m?.[1]) throw new Error(`lab state in ${dir} has no ${key}`);
      return m[1];
    };
    const lab = new Lab(dir, value('RUN'), `/run/netns/${value('UNDERLAY')}`, []);
    lab.nodes = lab.readNodes();
    return lab;
  }

  node(name: string): LabNode {
    const node = this.nodes.find((n) => n.name === name);
    if (!node) throw new Error(`no lab node ${name}`);
    return node;
  }

  /**
   * Runs argv inside the node's network and mount namespaces, the working directory kept. Resolves with the
   * exit code, never rejects. `input` goes to its stdin (the way to hand it secrets).
   */
  exec(node: string, argv: readonly string[], options: RunOptions = {}): Promise<ExecResult> {
    const n = this.node(node);
    return run(
      ['nsenter', `--net=${n.netns}`, `--mount=${n.mountns}`, `--wd=${process.cwd()}`, '--', ...argv],
      options,
    );
  }

  /** Runs argv in the underlay namespace (the bridge br0 every node's eth0 is plugged into). */
  execUnderlay(argv: readonly string[], options: RunOptions = {}): Promise<ExecResult> {
    return run(['nsenter', `--net=${this.underlayNetns}`, '--', ...argv], options);
  }

  /** A CommandRunner for WgCliDevice that runs inside the node. */
  runner(node: string, timeoutMs = 15_000): CommandRunner {
    const n = this.node(node);
    return nsenterRunner(n.netns, n.mountns, localRunner({ timeoutMs }));
  }

  /** One more node; `labels` are on its Node object from its creation (as a kubelet's --node-labels). */
  async addNode(labels: Record<string, string> = {}): Promise<LabNode> {
    const args = Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]);
    const result = await script(this.dir, ['add-node', ...args], 60_000);
    if (result.code !== 0) throw new Error(`hack/lab.sh add-node failed: ${result.stderr.trim()}`);
    this.nodes = this.readNodes();
    const last = this.nodes[this.nodes.length - 1];
    if (!last) throw new Error('add-node made no node');
    return last;
  }

  async down(): Promise<void> {
    const result = await script(this.dir, ['down'], 60_000);
    if (result.code !== 0) throw new Error(`hack/lab.sh down failed: ${result.stderr.trim()}`);
  }

  private readNodes(): LabNode[] {
    return readFileSync(resolve(this.dir, 'nodes'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((line) => {
        const [name = '', index = '', underlayIP = '', podCIDR = ''] = line.split(/\s+/);
        return {
          name,
          index: Number(index),
          underlayIP,
          podCIDR,
          netns: `/run/netns/${name}`,
          mountns: resolve(this.dir, 'ns', `${name}.mnt`),
        };
      });
  }
}

const testLabParent = resolve(repoRoot, '.local');
const testLabPrefix = 'lab-test-';

/** Takes down the labs of test runs that died before their afterAll (their owner process is gone). */
async function reapStaleTestLabs(): Promise<void> {
  if (!existsSync(testLabParent)) return;
  for (const entry of readdirSync(testLabParent)) {
    if (!entry.startsWith(testLabPrefix)) continue;
    const dir = resolve(testLabParent, entry);
    let owner: number;
    try {
      owner = Number(readFileSync(resolve(dir, 'owner'), 'utf8').trim());
    } catch {
      // no owner file: not made by Lab.up, leave it
      continue;
    }
    if (Number.isInteger(owner) && owner > 0 && processAlive(owner)) continue;
    await script(dir, ['down'], 60_000);
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function script(dir: string, args: string[], timeoutMs: number): Promise<ExecResult> {
  return run(
    ['bash', labScript, ...args],
    { timeoutMs },
    { ...process.env, SEALMESH_LAB_DIR: dir, LAB_QUIET: '1' },
  );
}

function run(
  argv: readonly string[],
  options: RunOptions,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ExecResult> {
  const [file, ...args] = argv;
  const timeoutMs = options.timeoutMs ?? 30_000;
  return new Promise((resolveRun) => {
    const child = execFile(
      file ?? 'false',
      args,
      { timeout: timeoutMs, killSignal: 'SIGKILL', env, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        let code = 0;
        if (err) {
          const c = (err as { code?: unknown }).code;
          code = typeof c === 'number' ? c : 1;
          if (err.killed) stderr += `\n(killed after ${timeoutMs} ms)`;
        }
        resolveRun({ stdout, stderr, code });
      },
    );
    // a command that does not read its stdin may exit before we wrote: that is not an error
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(options.input ?? '');
  });
}
