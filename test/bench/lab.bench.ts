// Lab benchmark (`npm run bench`, after the operator bench): sealmesh deployed for real (test/support/deploy.ts:
// config/ applied, the operator and one agent per lab node under their own service accounts, wireguard-go in
// network namespaces) and, for each lab size L in BENCH_LAB_SIZES (default 4,8), the time from a node joining
// until every pair is encrypted, the joining node's included.
//
// The overlay selects the lab's nodes by the label lab.sh puts on every Node it creates, so a node is a member
// from the moment its Node object exists, as a node registered by its kubelet would be. Each join is measured
// from that moment (seen by a Node watch) and from `lab.sh add-node` returning (its agent has been started),
// until the OverlayNetwork status counts all (L+1)L/2 pairs encrypted; the new node's NodeTunnel must also
// report all L peers Encrypted. To measure again at the same size, the node leaves (a label the selector
// excludes goes on it) before the next one joins.
// Must run as root (namespaces). A slow join is a figure, not a failure: the exit code is non-zero only when
// the bench itself failed (setup, or a wait past its bound).
import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  CoordinationV1Api,
  CustomObjectsApi,
  CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type V1Node,
} from '@kubernetes/client-node';
import { agentLeaseName } from '../../lib/contract/liveness.js';
import {
  API_VERSION,
  GROUP,
  NODE_TUNNEL_PLURAL,
  OVERLAY_NETWORK_KIND,
  OVERLAY_NETWORK_PLURAL,
  VERSION,
  nodeTunnelName,
} from '../../api/v1alpha1/groupversion.js';
import { KEY_NAMESPACE, kubectlPath, overlayProgress } from '../../hack/deploy/deploy.js';
import { coreResources, describeError, isNotFound } from '../../lib/kube.js';
import { Informer } from '../../lib/runtime/informer.js';
import { KubeRest } from '../../lib/runtime/rest.js';
import { kubeConfig, repoRoot, uniqueName } from '../support/cluster.js';
import { Deployment } from '../support/deploy.js';
import { agentSteps, describeTimeline, JoinWatch, joinTimeline, type Timeline } from './jointimeline.js';

// ---------------------------------------------------------------------------------------------------------
// configuration

const SIZES = (process.env.BENCH_LAB_SIZES ?? '4,8')
  .split(',')
  .map((s) => Number(s.trim()))
  .filter((n) => Number.isInteger(n) && n >= 2);
const JOINS = Math.max(1, Number(process.env.BENCH_LAB_JOINS ?? 3));
/** bound of every join and leave wait */
const WAIT_MS = Number(process.env.BENCH_LAB_TIMEOUT_SECONDS ?? 120) * 1000;
/** bound of the first all-encrypted wait: L agents start at once through tsx on a small machine */
const SETUP_MS = Number(process.env.BENCH_LAB_SETUP_TIMEOUT_SECONDS ?? 240) * 1000;
const POLL_MS = 250;

/** lab.sh labels every Node it creates with sealmesh.io/lab=<run> */
const LAB_LABEL = 'sealmesh.io/lab';
/** a node carrying this label is outside the bench's overlay: how a measured node leaves again */
const LEFT_LABEL = 'bench.sealmesh.io/left';
const OUT_DIR = resolve(repoRoot, '.local', 'bench');

const log = (msg: string): void =>
  console.error(`[lab bench ${new Date().toISOString().slice(11, 19)}] ${msg}`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const pairs = (n: number): number => (n * (n - 1)) / 2;

/** Polls `fn` until it returns a value (not undefined), at most `timeoutMs`; `why` says what it last saw. */
async function until<T>(
  what: string,
  timeoutMs: number,
  fn: () => Promise<T | undefined>,
  why: () => string = () => '',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) {
      const last = why();
      throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${last ? `: ${last}` : ''}`);
    }
    await sleep(POLL_MS);
  }
}

// ---------------------------------------------------------------------------------------------------------
// one lab of L nodes

interface JoinFigures {
  node: string;
  /** Node object created (first seen by the watch) -> status shows every pair encrypted */
  fromNodeSeconds: number;
  /** `lab.sh add-node` returned -> status shows every pair encrypted */
  fromAddNodeSeconds: number;
  /** how long `lab.sh add-node` took */
  addNodeSeconds: number;
  /** Node object created -> the new node's NodeTunnel reports all L peers Encrypted */
  tunnelFromNodeSeconds: number;
  /** the measured node left again (before the next join): label set -> its tunnel gone, the rest encrypted */
  leaveSeconds?: number;
  /** each step of the join, seconds after the Node was created (jointimeline.ts) */
  timeline: Timeline;
}

interface LabFigures {
  nodes: number;
  /** OverlayNetwork created -> all L(L-1)/2 pairs encrypted */
  setupSeconds?: number;
  joins: JoinFigures[];
  error?: string;
  /** where the logs of a failed lab were copied */
  logs?: string;
}

interface Progress {
  done: boolean;
  reason: string;
}

class LabRun {
  readonly overlay = uniqueName('bench-lab');
  private readonly custom: CustomObjectsApi;
  private readonly core: CoreV1Api;
  private nodeWatch: Informer<V1Node> | undefined;
  /** Node name -> when the watch saw it first (ms since epoch) */
  private readonly nodeSeen = new Map<string, number>();
  deployment: Deployment | undefined;
  private overlayCreated = false;
  private joinWatch: JoinWatch | undefined;

  constructor(private readonly kc: KubeConfig) {
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.core = kc.makeApiClient(CoreV1Api);
  }

  async up(n: number): Promise<string[]> {
    log(`L=${n}: bringing up the lab (operator + ${n} agents)`);
    const t0 = Date.now();
    this.deployment = await Deployment.up({ nodes: n, kc: this.kc });
    const lab = this.deployment.lab;
    log(`L=${n}: lab ${lab.run} up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    this.nodeWatch = new Informer<V1Node>({
      client: new KubeRest(this.kc),
      resource: coreResources.nodes,
      labelSelector: `${LAB_LABEL}=${lab.run}`,
    });
    this.nodeWatch.addHandler({
      onAdd: (node) => {
        const name = node.metadata?.name ?? '';
        if (!this.nodeSeen.has(name)) this.nodeSeen.set(name, Date.now());
      },
    });
    this.nodeWatch.start();
    if (!(await this.nodeWatch.waitForSync()))
      throw new Error('the Node watch stopped before its first list');
    this.joinWatch = new JoinWatch(this.kc, this.overlay, KEY_NAMESPACE);
    await this.joinWatch.start();
    return lab.nodes.map((x) => x.name);
  }

  async createOverlay(): Promise<void> {
    await this.custom.createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: OVERLAY_NETWORK_PLURAL,
      body: {
        apiVersion: API_VERSION,
        kind: OVERLAY_NETWORK_KIND,
        metadata: { name: this.overlay },
        spec: {
          nodeSelector: {
            matchLabels: { [LAB_LABEL]: this.deployment!.lab.run },
            matchExpressions: [{ key: LEFT_LABEL, operator: 'DoesNotExist' }],
          },
          addressPool: '10.98.0.0/24',
          listenPort: 51820,
        },
      },
    });
    this.overlayCreated = true;
  }

  /** Exactly `members` have tunnels and the status counts all their pairs, every one encrypted. */
  async progress(members: readonly string[]): Promise<Progress> {
    const p = await overlayProgress(this.kc, this.overlay);
    const have = new Set(p.tunnels.map((t) => t.node));
    const missing = members.filter((m) => !have.has(m));
    const extra = [...have].filter((h) => !members.includes(h));
    if (missing.length) return { done: false, reason: `no NodeTunnel yet for ${missing.join(', ')}` };
    if (extra.length) return { done: false, reason: `NodeTunnel(s) of ${extra.join(', ')} not removed yet` };
    if (p.total !== pairs(members.length))
      return { done: false, reason: `status counts ${p.total} pairs, expected ${pairs(members.length)}` };
    return { done: p.done, reason: p.reason };
  }

  /** The node's NodeTunnel reports `peers` peers, every one Encrypted. */
  async tunnelEncrypted(node: string, peers: number): Promise<Progress> {
    let t: { status?: { peers?: Array<{ node?: string; state?: string }> } };
    try {
      t = (await this.custom.getClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: NODE_TUNNEL_PLURAL,
        name: nodeTunnelName(this.overlay, node),
      })) as typeof t;
    } catch (err) {
      if (isNotFound(err)) return { done: false, reason: `no NodeTunnel for ${node}` };
      throw err;
    }
    const list = t.status?.peers ?? [];
    const encrypted = list.filter((x) => x.state === 'Encrypted').length;
    const done = list.length === peers && encrypted === peers;
    return {
      done,
      reason: `${node}'s NodeTunnel: ${encrypted}/${list.length} peers Encrypted, want ${peers}`,
    };
  }

  /** Waits until every pair of `members` is encrypted; returns when (ms since epoch). */
  async allEncrypted(members: readonly string[], timeoutMs: number): Promise<number> {
    let last = '';
    return until(
      `every pair of ${members.length} nodes in overlay ${this.overlay} to be encrypted`,
      timeoutMs,
      async () => {
        try {
          const p = await this.progress(members);
          last = p.reason;
          return p.done ? Date.now() : undefined;
        } catch (err) {
          last = `API error: ${describeError(err)}`; // the API server may blink; keep trying within the bound
          return undefined;
        }
      },
      () => last,
    );
  }

  async join(members: string[]): Promise<JoinFigures> {
    const lab = this.deployment!.lab;
    const L = members.length;
    const tCall = Date.now();
    const node = await lab.addNode();
    const tReturn = Date.now();
    // the Node object is made inside add-node, before its agent starts; the watch saw it then
    const tNode = await until(`the Node watch to see ${node.name}`, 10_000, () =>
      Promise.resolve(this.nodeSeen.get(node.name)),
    );
    const others = [...members];
    members.push(node.name);
    let statusAt = 0;
    let tunnelAt = 0;
    let last = '';
    await until(
      `${node.name} to join: all ${pairs(L + 1)} pairs encrypted and its NodeTunnel with ${L} Encrypted peers`,
      WAIT_MS,
      async () => {
        try {
          if (!statusAt) {
            const p = await this.progress(members);
            last = p.reason;
            if (p.done) statusAt = Date.now();
          }
          if (!tunnelAt) {
            const t = await this.tunnelEncrypted(node.name, L);
            if (!t.done) last = `${last}; ${t.reason}`;
            else tunnelAt = Date.now();
          }
        } catch (err) {
          last = `API error: ${describeError(err)}`;
        }
        return statusAt && tunnelAt ? true : undefined;
      },
      () => last,
    );
    const figures: JoinFigures = {
      node: node.name,
      fromNodeSeconds: (statusAt - tNode) / 1000,
      fromAddNodeSeconds: (statusAt - tReturn) / 1000,
      addNodeSeconds: (tReturn - tCall) / 1000,
      tunnelFromNodeSeconds: (tunnelAt - tNode) / 1000,
      timeline: joinTimeline(tNode, {
        tunnelCreated: this.joinWatch?.tunnelSeen.get(node.name),
        secretWritten: this.joinWatch?.secretSeen.get(node.name),
        ...agentSteps(this.deployment!.logs().nodes, node.name, others, this.overlay, tCall),
        counted: statusAt,
      }),
    };
    log(
      `L=${L}: ${node.name} joined: all ${pairs(L + 1)} pairs encrypted ${figures.fromNodeSeconds.toFixed(1)} s after ` +
        `its Node was created, ${figures.fromAddNodeSeconds.toFixed(1)} s after add-node returned ` +
        `(add-node took ${figures.addNodeSeconds.toFixed(1)} s)`,
    );
    log(`L=${L}: ${node.name} timeline after its Node: ${describeTimeline(figures.timeline)}`);
    return figures;
  }

  /** The node leaves the overlay (the selector excludes it); returns how long until the rest is settled. */
  async leave(members: string[], node: string): Promise<number> {
    const t0 = Date.now();
    await this.core.patchNode(
      { name: node, body: { metadata: { labels: { [LEFT_LABEL]: 'true' } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    members.splice(members.indexOf(node), 1);
    const at = await this.allEncrypted(members, WAIT_MS);
    return (at - t0) / 1000;
  }

  /**
   * The overlay goes while the operator and agents still run, so they remove what they made; past a bound
   * its finalizer is dropped. Then the operator and the lab stop, and the agents' Leases (which agents may
   * not delete) go. Never throws: returns what went wrong.
   */
  async down(): Promise<string[]> {
    const errors: string[] = [];
    if (this.overlayCreated) {
      const ref = { group: GROUP, version: VERSION, plural: OVERLAY_NETWORK_PLURAL, name: this.overlay };
      try {
        await this.custom.deleteClusterCustomObject(ref);
        await until(`overlay ${this.overlay} to be deleted`, 30_000, async () => {
          try {
            await this.custom.getClusterCustomObject(ref);
            return undefined;
          } catch (err) {
            if (isNotFound(err)) return true;
            throw err;
          }
        });
      } catch (err) {
        if (!isNotFound(err)) {
          errors.push(`deleting overlay ${this.overlay}: ${describeError(err)}`);
          await this.custom
            .patchClusterCustomObject(
              { ...ref, body: { metadata: { finalizers: null } } },
              setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
            )
            .catch(() => undefined);
        }
      }
      this.overlayCreated = false;
    }
    await this.nodeWatch?.stop();
    await this.joinWatch?.stop();
    const d = this.deployment;
    this.deployment = undefined;
    if (d) {
      await d.down().catch((err: unknown) => errors.push(describeError(err)));
      const leases = this.kc.makeApiClient(CoordinationV1Api);
      for (const n of d.lab.nodes) {
        await leases
          .deleteNamespacedLease({ namespace: KEY_NAMESPACE, name: agentLeaseName(n.name) })
          .catch((err: unknown) => {
            if (!isNotFound(err)) errors.push(`deleting the Lease of ${n.name}: ${describeError(err)}`);
          });
      }
    }
    return errors;
  }
}

async function benchLab(
  kc: KubeConfig,
  n: number,
  onRun: (r: LabRun | undefined) => void,
): Promise<LabFigures> {
  const figures: LabFigures = { nodes: n, joins: [] };
  const run = new LabRun(kc);
  onRun(run);
  try {
    const members = await run.up(n);
    const t0 = Date.now();
    await run.createOverlay();
    const at = await run.allEncrypted(members, SETUP_MS);
    figures.setupSeconds = (at - t0) / 1000;
    log(
      `L=${n}: all ${pairs(n)} pairs encrypted ${figures.setupSeconds.toFixed(1)} s after the overlay was created`,
    );
    for (let j = 1; j <= JOINS; j++) {
      const join = await run.join(members);
      figures.joins.push(join);
      if (j < JOINS) {
        join.leaveSeconds = await run.leave(members, join.node);
        log(`L=${n}: ${join.node} left; the other ${n} settled after ${join.leaveSeconds.toFixed(1)} s`);
      }
    }
  } catch (err) {
    figures.error = describeError(err);
    log(`L=${n}: FAILED: ${figures.error}`);
    // the lab's logs go with it at teardown: keep a copy for whoever reads why
    const d = run.deployment;
    if (d) {
      const dir = resolve(OUT_DIR, `lab-logs-${run.overlay}`);
      mkdirSync(dir, { recursive: true });
      const logs = d.logs();
      writeFileSync(resolve(dir, 'operator.log'), logs.operator);
      for (const [node, text] of Object.entries(logs.nodes)) writeFileSync(resolve(dir, `${node}.log`), text);
      figures.logs = dir;
      log(`L=${n}: operator and node logs copied to ${dir}`);
    }
  } finally {
    log(`L=${n}: tearing down`);
    const errors = await run.down();
    onRun(undefined);
    if (errors.length) {
      log(`L=${n}: teardown: ${errors.join('; ')}`);
      figures.error ??= `teardown: ${errors.join('; ')}`;
    }
  }
  return figures;
}

// ---------------------------------------------------------------------------------------------------------
// report

interface Stats {
  min: number;
  median: number;
  max: number;
}

function stats(xs: readonly number[]): Stats | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { min: s[0]!, median, max: s[s.length - 1]! };
}

const fmtStats = (s: Stats | undefined): string =>
  s ? `${s.min.toFixed(1)} / ${s.median.toFixed(1)} / ${s.max.toFixed(1)}` : '-';

interface Report {
  date: string;
  apiServer: string;
  joinsPerSize: number;
  boundSeconds: number;
  labs: Array<
    LabFigures & {
      fromNode?: Stats;
      fromAddNode?: Stats;
      tunnelFromNode?: Stats;
      leave?: Stats;
    }
  >;
}

function table(r: Report): string {
  const head = [
    'lab',
    'joins',
    'Node created -> all encrypted, s',
    'add-node returned -> all encrypted, s',
    'new NodeTunnel all Encrypted, s',
    'initial L nodes, s',
  ];
  const rows = r.labs.map((l) => [
    `${l.nodes} + 1`,
    String(l.joins.length),
    fmtStats(l.fromNode),
    fmtStats(l.fromAddNode),
    fmtStats(l.tunnelFromNode),
    l.setupSeconds !== undefined ? l.setupSeconds.toFixed(1) : '-',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const fmt = (row: string[]): string =>
    row
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  const lines = [fmt(head), fmt(widths.map((w) => '-'.repeat(w))), ...rows.map(fmt)];
  lines.push(
    '',
    `times are min / median / max over the joins; bound ${r.boundSeconds} s per join. "Node created" is when a ` +
      `watch saw the joining node's Node (lab.sh creates it before starting its agent); "new NodeTunnel" is ` +
      `from then until its status reports all L peers Encrypted.`,
  );
  for (const l of r.labs) {
    for (const j of l.joins) {
      lines.push(
        `L=${l.nodes} ${j.node}: ${j.fromNodeSeconds.toFixed(1)} s from Node, ${j.fromAddNodeSeconds.toFixed(1)} s ` +
          `from add-node (which took ${j.addNodeSeconds.toFixed(1)} s), tunnel ${j.tunnelFromNodeSeconds.toFixed(1)} s` +
          (j.leaveSeconds !== undefined ? `; left again in ${j.leaveSeconds.toFixed(1)} s` : ''),
      );
    }
    if (l.error) lines.push(`L=${l.nodes} FAILED: ${l.error}`);
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  if (process.getuid?.() !== 0)
    throw new Error('the lab bench must run as root (network and mount namespaces)');
  if (SIZES.length === 0) throw new Error(`BENCH_LAB_SIZES=${process.env.BENCH_LAB_SIZES} has no size >= 2`);
  const kc = kubeConfig();
  // lab.sh would otherwise ask hack/kube/build.sh for kubectl on every call
  process.env.KUBECTL ??= kubectlPath();
  const report: Report = {
    date: new Date().toISOString(),
    apiServer: kc.getCurrentCluster()?.server ?? '',
    joinsPerSize: JOINS,
    boundSeconds: WAIT_MS / 1000,
    labs: [],
  };
  mkdirSync(OUT_DIR, { recursive: true });
  log(`sizes ${SIZES.join(', ')}, ${JOINS} joins each, API server ${report.apiServer}`);

  // Ctrl-C or a TERM still takes the lab down (namespaces and processes outlive this process otherwise).
  let current: LabRun | undefined;
  let stopping = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    log(`${sig}: tearing down`);
    void (current?.down() ?? Promise.resolve([])).finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  for (const n of SIZES) {
    const l = await benchLab(kc, n, (r) => (current = r));
    report.labs.push({
      ...l,
      fromNode: stats(l.joins.map((j) => j.fromNodeSeconds)),
      fromAddNode: stats(l.joins.map((j) => j.fromAddNodeSeconds)),
      tunnelFromNode: stats(l.joins.map((j) => j.tunnelFromNodeSeconds)),
      leave: stats(l.joins.flatMap((j) => (j.leaveSeconds !== undefined ? [j.leaveSeconds] : []))),
    });
  }
  console.log(
    `\nsealmesh lab bench (${report.apiServer}): a node joins a lab of L nodes\n\n${table(report)}\n`,
  );
  const json = resolve(OUT_DIR, 'lab.json');
  writeFileSync(json, JSON.stringify(report, null, 2) + '\n');
  console.log(`figures: ${json}`);
  return report.labs.some((l) => l.error) ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`lab bench failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
