// Operator benchmark (`npm run bench`): the operator as a child process against a real API server, with Node
// objects made here and a simulated agent fleet (no WireGuard) that publishes envelope and WireGuard public
// keys in each NodeTunnel's status as soon as the tunnel appears. It prints, with targets:
//   1. time from OverlayNetwork creation to all N NodeTunnels, and to all N key Secrets holding every pair
//      exactly once (N(N-1)/2 pairs), for each N in BENCH_SIZES (default 100,1000);
//   2. operator writes (OverlayNetworks + NodeTunnels + Secrets) caused by one node joining at the largest N;
//   3. operator writes during an idle window (BENCH_IDLE_SECONDS, default 120);
//   4. the operator's peak RSS (VmHWM);
//   5. the longest the operator's event loop was blocked in each phase (its gauge
//      `sealmesh_event_loop_delay_max_seconds`, reset by each scrape, so the bench takes the max of its scrapes);
//   6. a full rotation (scope Keys) of the largest overlay: time from the sealmesh.io/rotate annotation to the
//      new epoch in effect and in each phase, operator write requests per node (target <= 2: each node's key
//      Secret of the new epoch is created at stage, the old epoch's are deleted at completion by one
//      delete-collection request), worst event-loop block and peak RSS. The fleet holds a liveness Lease per node,
//      acknowledges staging and, after the cutover instant, reports every peer Encrypted at the new epoch
//      (one ~130 KB status patch per node at N=1000); its own time is reported apart from the operator's.
// The operator runs as the Docker image runs it: compiled JS (`tsc -p tsconfig.build.json`, built here into
// .local/bench/dist so that no other build in the tree races it), not under tsx (~110 MiB more RSS).
// Writes are read from the operator's own counter `sealmesh_operator_writes_total{kind}` on /metrics.
// A missed target is a figure, not a failure: the exit code is non-zero only when the bench itself failed.
import { AGENT_INFO } from '../../lib/contract/version.js';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type KubernetesObject,
  type V1Node,
} from '@kubernetes/client-node';
import {
  API_VERSION,
  GROUP,
  NODE_TUNNEL_PLURAL,
  OVERLAY_LABEL,
  OVERLAY_NETWORK_KIND,
  OVERLAY_NETWORK_PLURAL,
  ROTATE_ANNOTATION,
  VERSION,
} from '../../api/v1alpha1/groupversion.js';
import { agentLeaseName } from '../../lib/contract/liveness.js';
import { coreResources, customResource, describeError, isNotFound } from '../../lib/kube.js';
import { KEY_SECRET_DATA_KEY } from '../../lib/contract/keysecret.js';
import { Informer } from '../../lib/runtime/informer.js';
import { forEachLimit } from '../../lib/runtime/cooperative.js';
import { KubeLeaseClient } from '../../lib/runtime/leader.js';
import { KubeRest } from '../../lib/runtime/rest.js';
import { kubeConfig, repoRoot } from '../support/cluster.js';
import { installCRDs } from '../support/crds.js';

// ---------------------------------------------------------------------------------------------------------
// configuration

const SIZES = (process.env.BENCH_SIZES ?? '100,1000')
  .split(',')
  .map((s) => Number(s.trim()))
  .filter((n) => Number.isInteger(n) && n >= 2);
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 120);
const PHASE_TIMEOUT_MS = Number(process.env.BENCH_PHASE_TIMEOUT_SECONDS ?? 300) * 1000;
/** requests in flight from this process (node creates/deletes, agent status patches) */
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
/** extra node flags for the operator (e.g. to try V8 heap settings) */
const NODE_FLAGS = (process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter((f) => f !== '');
/** BENCH_PROFILE=1: the operator writes a V8 CPU profile into .local/bench/ when it exits */
const PROFILE = process.env.BENCH_PROFILE === '1';
/** The simulated agents publish an ML-KEM-768 key too (hybrid sealing, issue #17); BENCH_POST_QUANTUM=0: not. */
const POST_QUANTUM = process.env.BENCH_POST_QUANTUM !== '0';

const TARGETS = { joinWrites: 3, idleWrites: 0, peakRssMiB: 256, loopBlockMs: 100, rotationWritesPerNode: 2 };
const RUN_LABEL = 'bench.sealmesh.io/run';
const SET_LABEL = 'bench.sealmesh.io/set';
const OUT_DIR = resolve(repoRoot, '.local', 'bench');
const BUILD_DIR = resolve(OUT_DIR, 'dist');

const run = `bench-${randomBytes(4).toString('hex')}`;
const opNamespace = `${run}-system`;
const keyNamespace = `${run}-keys`;
const maxNodes = Math.max(...SIZES) + 1; // + the node that joins
const nodeName = (i: number): string => `${run}-n${String(i).padStart(4, '0')}`;
const nodeIndex = new Map<string, number>(Array.from({ length: maxNodes }, (_, i) => [nodeName(i), i]));

const log = (msg: string): void => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

class PhaseTimeout extends Error {}

/** Polls `fn` until it returns a value (not undefined/false), at most PHASE_TIMEOUT_MS. */
async function until<T>(
  what: string,
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  everyMs = 250,
): Promise<T> {
  const deadline = Date.now() + PHASE_TIMEOUT_MS;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline)
      throw new PhaseTimeout(`timed out after ${PHASE_TIMEOUT_MS / 1000} s waiting for ${what}`);
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------------------------------------------------
// the operator child process and its /metrics

interface Metrics {
  writes: Map<string, number>;
  reconciles: number;
  reconcileErrors: number;
  reconcileSeconds: number;
  queueDepth: number;
  /** longest event-loop delay since the previous scrape */
  loopDelayMaxSeconds: number;
}

function parseMetrics(text: string): Metrics {
  const m: Metrics = {
    writes: new Map(),
    reconciles: 0,
    reconcileErrors: 0,
    reconcileSeconds: 0,
    queueDepth: 0,
    loopDelayMaxSeconds: 0,
  };
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line === '') continue;
    const match = /^([a-z_]+)(?:\{([^}]*)\})? ([0-9.e+-]+|NaN)$/.exec(line);
    if (!match) continue;
    const [, name, labels = '', value] = match;
    const v = Number(value);
    if (name === 'sealmesh_operator_writes_total') {
      const kind = /kind="([^"]+)"/.exec(labels)?.[1] ?? '?';
      m.writes.set(kind, v);
    } else if (name === 'sealmesh_reconcile_total') {
      m.reconciles += v;
      if (labels.includes('result="error"')) m.reconcileErrors += v;
    } else if (name === 'sealmesh_reconcile_duration_seconds_sum') m.reconcileSeconds += v;
    else if (name === 'sealmesh_workqueue_depth') m.queueDepth += v;
    else if (name === 'sealmesh_event_loop_delay_max_seconds') m.loopDelayMaxSeconds = v;
  }
  return m;
}

const OBJECT_KINDS = (k: string): boolean =>
  k.startsWith('nodetunnel.') || k.startsWith('secret.') || k.startsWith('overlay.');

function writeDelta(before: Metrics, after: Metrics): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of after.writes) {
    const d = v - (before.writes.get(k) ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

const sum = (d: Record<string, number>, pick: (k: string) => boolean = () => true): number =>
  Object.entries(d).reduce((n, [k, v]) => (pick(k) ? n + v : n), 0);

function httpGet(url: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`HTTP ${res.statusCode}`));
        else resolve(Buffer.concat(chunks).toString('utf8'));
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

class OperatorProcess {
  readonly child: ChildProcess;
  port = 0;
  peakRssKiB = 0;
  /** highest VmRSS sample since takePhasePeakKiB() last ran */
  private phasePeakKiB = 0;
  /** the longest event-loop delay seen in scrapes since takeLoopMax() */
  private loopMaxSeconds = 0;
  private sampler: ReturnType<typeof setInterval> | undefined;
  private exited: Promise<number | null>;

  constructor(kubeconfig: string, logFile: string) {
    const args = [
      ...(PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${resolve(OUT_DIR, `profile-${run}`)}`] : []),
      ...NODE_FLAGS,
      resolve(BUILD_DIR, 'operator', 'main.js'),
      '--leader-elect=false',
      '--metrics-port',
      '0',
      '--metrics-host',
      '127.0.0.1',
      '--namespace',
      opNamespace,
      '--key-namespace',
      keyNamespace,
    ];
    this.child = spawn(process.execPath, args, {
      cwd: repoRoot,
      env: {
        ...process.env,
        KUBECONFIG: kubeconfig,
        LOG_LEVEL: process.env.BENCH_OPERATOR_LOG_LEVEL ?? 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out = createWriteStream(logFile);
    this.child.stderr!.pipe(out);
    const lines = createInterface({ input: this.child.stdout! });
    lines.on('line', (line) => {
      out.write(line + '\n');
      if (this.port === 0 && line.includes('"operator started"')) {
        try {
          this.port = (JSON.parse(line) as { port?: number }).port ?? 0;
        } catch {
          // not JSON: keep waiting
        }
      }
    });
    this.exited = new Promise((r) => this.child.on('exit', (code) => r(code)));
    this.sampler = setInterval(() => this.sample(), 1000);
  }

  private status(): string | undefined {
    try {
      return readFileSync(`/proc/${this.child.pid}/status`, 'utf8');
    } catch {
      return undefined;
    }
  }

  private field(name: string): number | undefined {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(this.status() ?? '');
    return m ? Number(m[1]) : undefined;
  }

  sample(): void {
    const rss = this.field('VmRSS');
    if (rss !== undefined) {
      this.peakRssKiB = Math.max(this.peakRssKiB, rss);
      this.phasePeakKiB = Math.max(this.phasePeakKiB, rss);
    }
  }

  /** The highest VmRSS sample since the last call (this one included), then starts over. */
  takePhasePeakKiB(): number {
    this.sample();
    const peak = this.phasePeakKiB;
    this.phasePeakKiB = 0;
    return peak;
  }

  rssKiB(): number | undefined {
    return this.field('VmRSS');
  }

  hwmKiB(): number | undefined {
    return this.field('VmHWM');
  }

  async started(): Promise<void> {
    await until(
      'the operator to start (its "operator started" log line)',
      () => {
        if (this.child.exitCode !== null) throw new Error(`operator exited with code ${this.child.exitCode}`);
        return this.port > 0;
      },
      200,
    );
  }

  async metrics(): Promise<Metrics> {
    // A fresh connection per scrape: the server shares its event loop with reconciles, and a keep-alive
    // socket it closes while a long reconcile delayed its timers fails the next request. The timeout is
    // generous for the same reason.
    for (let attempt = 1; ; attempt++) {
      try {
        const m = parseMetrics(await httpGet(`http://127.0.0.1:${this.port}/metrics`, PHASE_TIMEOUT_MS));
        this.loopMaxSeconds = Math.max(this.loopMaxSeconds, m.loopDelayMaxSeconds);
        return m;
      } catch (err) {
        if (attempt >= 3 || this.child.exitCode !== null) {
          throw new Error(`GET /metrics of the operator failed: ${describeError(err)}`, { cause: err });
        }
        await sleep(1000);
      }
    }
  }

  /** The longest event-loop block seen since the last call (ms); scrapes first, so nothing is missed. */
  async takeLoopMaxMs(): Promise<number> {
    await this.metrics();
    const ms = this.loopMaxSeconds * 1000;
    this.loopMaxSeconds = 0;
    return ms;
  }

  /**
   * Waits until the operator is quiet: no write and no finished reconcile, and an empty queue, for a window
   * longer than a recent reconcile takes (so a long reconcile still running does not pass for quiet).
   */
  async settle(what: string): Promise<Metrics> {
    let last = await this.metrics();
    let quietSince = Date.now();
    let recentReconcileMs = 0;
    return until(
      `the operator to settle (${what})`,
      async () => {
        const now = await this.metrics();
        const changed =
          sum(writeDelta(last, now)) !== 0 || now.reconciles !== last.reconciles || now.queueDepth > 0;
        if (now.reconciles > last.reconciles) {
          recentReconcileMs =
            ((now.reconcileSeconds - last.reconcileSeconds) / (now.reconciles - last.reconciles)) * 1000;
        }
        last = now;
        if (changed) {
          quietSince = Date.now();
          return undefined;
        }
        return Date.now() - quietSince >= Math.max(5_000, 2 * recentReconcileMs + 2_000) ? now : undefined;
      },
      1000,
    );
  }

  async stop(): Promise<number | null> {
    clearInterval(this.sampler);
    if (this.child.exitCode !== null) return this.child.exitCode;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 40_000);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

// ---------------------------------------------------------------------------------------------------------
// the simulated agent fleet: one NodeTunnel watch, bounded concurrent status patches

function mlKemPublic(): string | undefined {
  if (!POST_QUANTUM) return undefined;
  const { publicKey } = generateKeyPairSync('ml-kem-768');
  return publicKey.export({ format: 'raw-public' }).toString('base64');
}

function x25519Public(): string {
  const { publicKey } = generateKeyPairSync('x25519');
  const jwk = publicKey.export({ format: 'jwk' });
  return Buffer.from(jwk.x!, 'base64url').toString('base64');
}

/** Keys made up front so key generation never runs inside a timed window. */
const nodeKeys = new Map<string, { envelope: string; kem: string | undefined; wg: string }>();

class AgentFleet {
  readonly informer: Informer<KubernetesObject>;
  /** tunnel name → when this fleet saw it first (ms since epoch) */
  readonly seen = new Map<string, number>();
  published = 0;
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private inFlight = 0;
  private failure: Error | undefined;

  constructor(
    rest: KubeRest,
    private readonly custom: CustomObjectsApi,
    overlay: string,
  ) {
    this.informer = new Informer({
      client: rest,
      resource: customResource(GROUP, VERSION, NODE_TUNNEL_PLURAL, { kind: 'NodeTunnel' }),
      labelSelector: `${OVERLAY_LABEL}=${overlay}`,
    });
    const onObject = (obj: KubernetesObject): void => {
      const name = obj.metadata?.name ?? '';
      if (!this.seen.has(name)) this.seen.set(name, Date.now());
      const status = (obj as { status?: { envelopePublicKey?: string } }).status;
      if (!status?.envelopePublicKey && !this.queued.has(name)) {
        this.queued.add(name);
        this.queue.push(name);
        this.pump();
      }
    };
    this.informer.addHandler({ onAdd: onObject, onUpdate: (_old, obj) => onObject(obj) });
  }

  check(): void {
    if (this.failure) throw this.failure;
  }

  private pump(): void {
    while (this.inFlight < CONCURRENCY && this.queue.length > 0) {
      const name = this.queue.shift()!;
      this.inFlight++;
      void this.publish(name)
        .catch((err: unknown) => {
          this.failure ??= new Error(
            `simulated agent failed to publish keys of ${name}: ${describeError(err)}`,
          );
        })
        .finally(() => {
          this.inFlight--;
          this.pump();
        });
    }
  }

  private async publish(tunnel: string): Promise<void> {
    const node = tunnel.slice(tunnel.indexOf('.') + 1);
    const keys = nodeKeys.get(node);
    if (!keys) throw new Error(`no keys prepared for node ${node}`);
    await this.custom.patchClusterCustomObjectStatus(
      {
        group: GROUP,
        version: VERSION,
        plural: NODE_TUNNEL_PLURAL,
        name: tunnel,
        body: {
          status: {
            envelopePublicKey: keys.envelope,
            envelopeMLKEMPublicKey: keys.kem,
            publicKey: keys.wg,
            agent: AGENT_INFO,
          },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    this.published++;
  }

  async start(): Promise<void> {
    this.informer.start();
    await this.informer.waitForSync();
  }

  stop(): Promise<void> {
    return this.informer.stop();
  }
}

// ---------------------------------------------------------------------------------------------------------
// key Secret coverage: every pair present in exactly one Secret

/** Index of the pair (i, j), i < j, among all pairs of `maxNodes` nodes. */
const pairId = (i: number, j: number): number => i * maxNodes - (i * (i + 1)) / 2 + (j - i - 1);

class SecretCoverage {
  readonly informer: Informer<KubernetesObject>;
  /** pairs held by each Secret */
  private readonly held = new Map<string, Int32Array>();
  private readonly count = new Uint16Array((maxNodes * (maxNodes - 1)) / 2);
  single = 0;
  multiple = 0;
  writesSeen = 0;
  deletesSeen = 0;
  bytes = new Map<string, number>();
  undecodable = 0;

  constructor(rest: KubeRest, overlay: string) {
    // The informer keeps the Secrets (the sealed payloads are what is measured); pair sets are derived on
    // each event so completeness is a counter comparison, not an O(N²) scan per check.
    this.informer = new Informer({
      client: rest,
      resource: coreResources.secrets,
      namespace: keyNamespace,
      labelSelector: `${OVERLAY_LABEL}=${overlay}`,
    });
    this.informer.addHandler({
      onAdd: (s) => this.update(s),
      onUpdate: (_old, s) => this.update(s),
      onDelete: (s) => {
        this.deletesSeen++;
        this.set(s.metadata?.name ?? '', new Int32Array(0));
      },
    });
  }

  private update(s: KubernetesObject): void {
    this.writesSeen++;
    const name = s.metadata?.name ?? '';
    const raw = (s as { data?: Record<string, string> }).data?.[KEY_SECRET_DATA_KEY] ?? '';
    this.bytes.set(name, raw.length);
    let pairs: Array<{ a: string; b: string }> = [];
    try {
      pairs = (JSON.parse(Buffer.from(raw, 'base64').toString('utf8')) as { pairs: typeof pairs }).pairs;
    } catch {
      this.undecodable++;
    }
    const ids = new Int32Array(pairs.length);
    let n = 0;
    for (const p of pairs) {
      const a = nodeIndex.get(p.a);
      const b = nodeIndex.get(p.b);
      if (a === undefined || b === undefined || a === b) continue;
      ids[n++] = a < b ? pairId(a, b) : pairId(b, a);
    }
    this.set(name, ids.subarray(0, n));
  }

  private set(name: string, ids: Int32Array): void {
    for (const id of this.held.get(name) ?? []) this.bump(id, -1);
    for (const id of ids) this.bump(id, +1);
    if (ids.length === 0 && !this.informer.get(name, keyNamespace)) this.held.delete(name);
    else this.held.set(name, ids);
  }

  private bump(id: number, d: number): void {
    const before = this.count[id]!;
    const after = before + d;
    this.count[id] = after;
    if (before === 1) this.single--;
    else if (before >= 2) this.multiple--;
    if (after === 1) this.single++;
    else if (after >= 2) this.multiple++;
  }

  secrets(): number {
    return this.informer.keys().length;
  }

  complete(n: number): boolean {
    return this.secrets() === n && this.single === (n * (n - 1)) / 2 && this.multiple === 0;
  }

  totalBytes(): number {
    let b = 0;
    for (const v of this.bytes.values()) b += v;
    return b;
  }

  maxBytes(): number {
    return Math.max(0, ...this.bytes.values());
  }
}

// ---------------------------------------------------------------------------------------------------------
// cluster objects

class Lab {
  readonly core: CoreV1Api;
  readonly custom: CustomObjectsApi;
  readonly rest: KubeRest;

  constructor(readonly kc: KubeConfig) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.rest = new KubeRest(kc);
  }

  async createNodes(indexes: number[], set: string): Promise<void> {
    await forEachLimit(indexes, CONCURRENCY, async (i) => {
      // Nodes take their status on create (there is no kubelet to report it), so one request per node.
      const body: V1Node = {
        metadata: { name: nodeName(i), labels: { [RUN_LABEL]: run, [SET_LABEL]: set } },
        spec: { podCIDR: podCIDR(i), podCIDRs: [podCIDR(i)] },
        status: { addresses: [{ type: 'InternalIP', address: `198.18.${i >> 8}.${i & 255}` }] },
      };
      await this.core.createNode({ body });
    });
  }

  async deleteNodes(): Promise<number> {
    const list = await this.core.listNode({ labelSelector: `${RUN_LABEL}=${run}` });
    await forEachLimit(list.items, CONCURRENCY, async (n) => {
      try {
        await this.core.deleteNode({ name: n.metadata!.name! });
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    });
    return list.items.length;
  }

  async createOverlay(name: string, set: string): Promise<void> {
    await this.custom.createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: OVERLAY_NETWORK_PLURAL,
      body: {
        apiVersion: API_VERSION,
        kind: OVERLAY_NETWORK_KIND,
        metadata: { name, labels: { [RUN_LABEL]: run } },
        spec: {
          nodeSelector: { matchLabels: { [RUN_LABEL]: run, [SET_LABEL]: set } },
          addressPool: '10.200.0.0/16',
        },
      },
    });
  }

  async overlayExists(name: string): Promise<boolean> {
    try {
      await this.custom.getClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: OVERLAY_NETWORK_PLURAL,
        name,
      });
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  async deleteOverlay(name: string): Promise<void> {
    try {
      await this.custom.deleteClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: OVERLAY_NETWORK_PLURAL,
        name,
      });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  /** Last resort when the operator could not clean up: remove what it made, then its finalizer. */
  async forceRemoveOverlay(name: string): Promise<void> {
    const tunnels = (await this.custom.listClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: NODE_TUNNEL_PLURAL,
      labelSelector: `${OVERLAY_LABEL}=${name}`,
    })) as { items: KubernetesObject[] };
    await forEachLimit(tunnels.items, CONCURRENCY, async (t) => {
      await this.custom
        .deleteClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: NODE_TUNNEL_PLURAL,
          name: t.metadata!.name!,
        })
        .catch((err: unknown) => {
          if (!isNotFound(err)) throw err;
        });
    });
    await this.core
      .deleteCollectionNamespacedSecret({
        namespace: keyNamespace,
        labelSelector: `${OVERLAY_LABEL}=${name}`,
      })
      .catch(() => undefined);
    if (await this.overlayExists(name)) {
      await this.custom
        .patchClusterCustomObject(
          {
            group: GROUP,
            version: VERSION,
            plural: OVERLAY_NETWORK_PLURAL,
            name,
            body: { metadata: { finalizers: null } },
          },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        )
        .catch(() => undefined);
      await this.deleteOverlay(name);
    }
  }
}

const podCIDR = (i: number): string => `10.${64 + (i >> 8)}.${i & 255}.0/24`;

// ---------------------------------------------------------------------------------------------------------
// phases

interface CreationFigures {
  n: number;
  pairs: number;
  tunnelsSeconds: number;
  secretsSeconds: number;
  writes: Record<string, number>;
  reconciles: number;
  reconcileErrors: number;
  reconcileSeconds: number;
  secretEventsSeen: number;
  secretBytesTotal: number;
  secretBytesMax: number;
  peakRssMiB: number;
  loopBlockMs: number;
}

async function creationPhase(lab: Lab, op: OperatorProcess, n: number): Promise<CreationFigures> {
  const set = `n${n}`;
  const overlay = `${run}-${set}`;
  // Nodes 0..n-1; those an earlier, smaller size made are reused.
  const indexes = Array.from({ length: n }, (_, k) => k);
  // Nodes of earlier sets are relabelled into this one instead of created again.
  log(`N=${n}: preparing ${n} Node objects`);
  const existing = await lab.core.listNode({ labelSelector: `${RUN_LABEL}=${run}` });
  const have = new Set(existing.items.map((x) => x.metadata!.name!));
  await lab.createNodes(
    indexes.filter((i) => !have.has(nodeName(i))),
    set,
  );
  await forEachLimit(
    indexes.filter((i) => have.has(nodeName(i))),
    CONCURRENCY,
    async (i) => {
      await lab.core.patchNode(
        { name: nodeName(i), body: { metadata: { labels: { [SET_LABEL]: set } } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    },
  );
  const fleet = new AgentFleet(lab.rest, lab.custom, overlay);
  const coverage = new SecretCoverage(lab.rest, overlay);
  await fleet.start();
  coverage.informer.start();
  await coverage.informer.waitForSync();
  const before = await op.settle(`before N=${n}`);
  op.peakRssKiB = 0;
  await op.takeLoopMaxMs();

  log(`N=${n}: creating OverlayNetwork ${overlay}`);
  const t0 = Date.now();
  await lab.createOverlay(overlay, set);
  let tunnelsAt = 0;
  const secretsAt = await until(
    `N=${n}: all ${n} NodeTunnels and key Secrets with ${(n * (n - 1)) / 2} pairs`,
    () => {
      fleet.check();
      if (!tunnelsAt && fleet.seen.size >= n) {
        tunnelsAt = Math.max(...fleet.seen.values());
        log(`N=${n}: all ${n} NodeTunnels after ${((tunnelsAt - t0) / 1000).toFixed(1)} s`);
      }
      return tunnelsAt > 0 && coverage.complete(n) ? Date.now() : undefined;
    },
    100,
  );
  log(
    `N=${n}: all Secrets complete after ${((secretsAt - t0) / 1000).toFixed(1)} s; waiting for the operator to settle`,
  );
  const after = await op.settle(`after N=${n}`);
  const loopBlockMs = await op.takeLoopMaxMs();
  const figures: CreationFigures = {
    n,
    pairs: (n * (n - 1)) / 2,
    tunnelsSeconds: (tunnelsAt - t0) / 1000,
    secretsSeconds: (secretsAt - t0) / 1000,
    writes: writeDelta(before, after),
    reconciles: after.reconciles - before.reconciles,
    reconcileErrors: after.reconcileErrors - before.reconcileErrors,
    reconcileSeconds: after.reconcileSeconds - before.reconcileSeconds,
    secretEventsSeen: coverage.writesSeen,
    secretBytesTotal: coverage.totalBytes(),
    secretBytesMax: coverage.maxBytes(),
    peakRssMiB: op.peakRssKiB / 1024,
    loopBlockMs,
  };
  phaseState.set(n, { overlay, fleet, coverage });
  return figures;
}

const phaseState = new Map<number, { overlay: string; fleet: AgentFleet; coverage: SecretCoverage }>();

async function removeOverlay(lab: Lab, overlay: string): Promise<void> {
  await lab.deleteOverlay(overlay);
  try {
    await until(
      `OverlayNetwork ${overlay} to be cleaned up by the operator`,
      async () => !(await lab.overlayExists(overlay)),
      1000,
    );
  } catch (err) {
    log(`${describeError(err)}; removing its objects directly`);
    await lab.forceRemoveOverlay(overlay);
  }
}

interface JoinFigures {
  n: number;
  objectWrites: number;
  statusWrites: number;
  events: number;
  writes: Record<string, number>;
  agentStatusWrites: number;
  reconciles: number;
  seconds: number;
  loopBlockMs: number;
}

async function joinPhase(lab: Lab, op: OperatorProcess, n: number): Promise<JoinFigures> {
  const state = phaseState.get(n)!;
  const before = await op.settle(`before the join at N=${n}`);
  await op.takeLoopMaxMs();
  const published = state.fleet.published;
  const joiner = n; // nodes 0..n-1 are members
  log(`join: node ${nodeName(joiner)} joins the overlay of ${n}`);
  const t0 = Date.now();
  await lab.createNodes([joiner], `n${n}`);
  await until(
    `the joining node's key Secret with its ${n} pairs`,
    () => {
      state.fleet.check();
      return state.coverage.complete(n + 1);
    },
    100,
  );
  const seconds = (Date.now() - t0) / 1000;
  log(`join: key Secret complete after ${seconds.toFixed(1)} s; waiting for the operator to settle`);
  const after = await op.settle('after the join');
  const loopBlockMs = await op.takeLoopMaxMs();
  const writes = writeDelta(before, after);
  return {
    n,
    objectWrites: sum(writes, OBJECT_KINDS),
    statusWrites: writes['overlay.status'] ?? 0,
    events: writes.event ?? 0,
    writes,
    agentStatusWrites: state.fleet.published - published,
    reconciles: after.reconciles - before.reconciles,
    seconds,
    loopBlockMs,
  };
}

interface IdleFigures {
  seconds: number;
  writes: number;
  byKind: Record<string, number>;
  reconciles: number;
  loopBlockMs: number;
}

async function idlePhase(op: OperatorProcess): Promise<IdleFigures> {
  const before = await op.settle('before the idle window');
  await op.takeLoopMaxMs();
  log(`idle: ${IDLE_SECONDS} s with nothing changing`);
  await sleep(IDLE_SECONDS * 1000);
  const after = await op.metrics();
  const loopBlockMs = await op.takeLoopMaxMs();
  const byKind = writeDelta(before, after);
  return {
    seconds: IDLE_SECONDS,
    writes: sum(byKind),
    byKind,
    reconciles: after.reconciles - before.reconciles,
    loopBlockMs,
  };
}

interface RotationFigures {
  /** members of the overlay (the largest size plus the node that joined) */
  n: number;
  targetEpoch: number;
  /** completion -> every Secret of the old epoch deleted (seen by a watch) */
  purgeSeconds: number;
  /** key Secrets of the new epoch created; Secrets deleted (the old epoch's, seen by a watch) */
  secretsCreated: number;
  secretsDeleted: number;
  /** trigger (annotation written) -> status.epoch == target with no rotation in status */
  seconds: number;
  /** seconds from the trigger to the operator entering each phase, as seen by a watch on the overlay */
  phaseAt: Record<string, number>;
  /** seconds in each phase (Staging until CuttingOver, CuttingOver until Verifying, Verifying until done) */
  phaseSeconds: Record<string, number>;
  /** the simulated fleet's own time: all staging acknowledgements, all post-cutover reports */
  fleetStageSeconds: number;
  fleetApplySeconds: number;
  /** how long after the cutover instant the fleet finished its reports (the operator's verify timeout runs from it) */
  fleetApplyAfterCutoverSeconds: number;
  fleetApplyBytesPerPatch: number;
  fleetStatusWrites: number;
  writes: Record<string, number>;
  objectWrites: number;
  writesPerNode: number;
  events: number;
  /** a RotationIncomplete Event for this overlay: the operator gave up waiting for pairs (verify timeout) */
  incomplete: string | undefined;
  reconciles: number;
  reconcileErrors: number;
  loopBlockMs: number;
  /** per phase ('done' = after completion until the operator settled: the Secret rewrites to epoch T only) */
  loopBlockMsByPhase: Record<string, number>;
  writesByPhase: Record<string, Record<string, number>>;
  /** highest VmRSS sample per phase, MiB */
  rssMiBByPhase: Record<string, number>;
  peakRssMiB: number;
}

interface RotationStatusView {
  phase?: string;
  targetEpoch?: number;
  cutoverTime?: string;
}

/** A full rotation (scope Keys) of the largest overlay, with the simulated fleet playing the agents' part. */
async function rotationPhase(lab: Lab, op: OperatorProcess, n: number): Promise<RotationFigures> {
  const state = phaseState.get(n)!;
  const { overlay, fleet, coverage } = state;
  const tunnels = [...fleet.seen.keys()].sort();
  const nodes = tunnels.map((t) => t.slice(t.indexOf('.') + 1));
  const members = nodes.length;
  log(`rotation: ${members} members; creating their liveness Leases and fresh keys`);
  // Liveness: the operator waits only for agents whose Lease is fresh; one long Lease per node covers the phase.
  const leases = new KubeLeaseClient(lab.kc);
  await forEachLimit(nodes, CONCURRENCY, async (node) => {
    const now = Date.now();
    await leases.create(keyNamespace, agentLeaseName(node), {
      holderIdentity: node,
      leaseDurationSeconds: 600,
      acquireTime: now,
      renewTime: now,
      leaseTransitions: 0,
    });
  });
  // Keys made before the trigger so key generation never runs inside the timed window.
  const staged = new Map(nodes.map((node) => [node, x25519Public()]));

  // The overlay, watched: phase transitions are timed from its events, not polled.
  const overlayInformer = new Informer<KubernetesObject>({
    client: lab.rest,
    resource: customResource(GROUP, VERSION, OVERLAY_NETWORK_PLURAL, { kind: OVERLAY_NETWORK_KIND }),
    fieldSelector: `metadata.name=${overlay}`,
  });
  const phaseAt = new Map<string, number>();
  // A scrape at each phase change attributes event-loop blocks and writes to the phase that just ended.
  const loopByPhase: Record<string, number> = {};
  const writesByPhase: Record<string, Record<string, number>> = {};
  const rssMiBByPhase: Record<string, number> = {};
  let lastPhase: string | undefined;
  let lastScrape: Promise<Metrics> | undefined;
  const phaseChange = (next: string): void => {
    const ended = lastPhase;
    lastPhase = next;
    if (ended === undefined || !lastScrape) return;
    const prev = lastScrape;
    lastScrape = (async () => {
      const from = await prev;
      const ms = await op.takeLoopMaxMs();
      const to = await op.metrics();
      loopByPhase[ended] = Math.round(ms);
      rssMiBByPhase[ended] = Math.round(op.takePhasePeakKiB() / 1024);
      writesByPhase[ended] = writeDelta(from, to);
      return to;
    })();
    lastScrape.catch(() => undefined);
  };
  let current: { epoch: number; rotation: RotationStatusView | undefined } = {
    epoch: 0,
    rotation: undefined,
  };
  let onChange = (): void => undefined;
  const onOverlay = (obj: KubernetesObject): void => {
    const st = (obj as { status?: { epoch?: number; rotation?: RotationStatusView } }).status;
    current = { epoch: st?.epoch ?? 0, rotation: st?.rotation };
    const phase = st?.rotation?.phase;
    if (phase && !phaseAt.has(phase)) {
      phaseAt.set(phase, Date.now());
      phaseChange(phase);
    }
    onChange();
  };
  overlayInformer.addHandler({ onAdd: onOverlay, onUpdate: (_old, obj) => onOverlay(obj) });
  overlayInformer.start();
  await overlayInformer.waitForSync();
  const startEpoch = current.epoch;
  const target = startEpoch + 1;
  if (current.rotation) throw new Error(`overlay ${overlay} already has a rotation in status`);

  const before = await op.settle('before the rotation');
  const deletesBefore = coverage.deletesSeen;
  op.peakRssKiB = 0;
  op.takePhasePeakKiB();
  await op.takeLoopMaxMs();
  lastScrape = Promise.resolve(before);
  const published = fleet.published;
  let fleetWrites = 0;
  const patchStatus = async (tunnel: string, status: Record<string, unknown>): Promise<void> => {
    await lab.custom.patchClusterCustomObjectStatus(
      { group: GROUP, version: VERSION, plural: NODE_TUNNEL_PLURAL, name: tunnel, body: { status } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    fleetWrites++;
  };

  // The fleet's part, driven by the overlay watch: acknowledge staging once, report the cutover once.
  let failure: Error | undefined;
  let stage: { started: number; done: number } | undefined;
  let apply: { started: number; done: number; cutover: number; bytes: number } | undefined;
  const fail = (what: string) => (err: unknown) => {
    failure ??= new Error(`simulated agents failed to ${what}: ${describeError(err)}`);
  };
  const doStage = async (): Promise<void> => {
    const started = Date.now();
    stage = { started, done: 0 };
    await forEachLimit(tunnels, CONCURRENCY, (tunnel) => {
      const node = tunnel.slice(tunnel.indexOf('.') + 1);
      return patchStatus(tunnel, { stagedEpoch: target, stagedPublicKey: staged.get(node)! });
    });
    stage.done = Date.now();
    log(`rotation: fleet staged all ${members} in ${((stage.done - started) / 1000).toFixed(1)} s`);
  };
  const doApply = async (cutover: number): Promise<void> => {
    // Claimed before the wait, so overlay events during it do not start the reports again.
    apply = { started: 0, done: 0, cutover, bytes: 0 };
    const wait = cutover - Date.now();
    if (wait > 0) await sleep(wait);
    const started = Date.now();
    apply.started = started;
    const since = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    await forEachLimit(tunnels, CONCURRENCY, async (tunnel) => {
      const node = tunnel.slice(tunnel.indexOf('.') + 1);
      const peers = nodes
        .filter((p) => p !== node)
        .map((p) => ({ node: p, state: 'Encrypted', since, epoch: target, lastHandshakeTime: since }));
      const status = {
        appliedEpoch: target,
        publicKey: staged.get(node)!,
        peers,
        summary: { encrypted: peers.length, total: peers.length },
        peersSummary: `${peers.length}/${peers.length}`,
      };
      if (apply!.bytes === 0) apply!.bytes = JSON.stringify({ status }).length;
      await patchStatus(tunnel, status);
    });
    apply.done = Date.now();
    log(
      `rotation: fleet reported epoch ${target} for all ${members} in ${((apply.done - started) / 1000).toFixed(1)} s ` +
        `(${((apply.done - cutover) / 1000).toFixed(1)} s after the cutover instant)`,
    );
  };
  onChange = () => {
    const r = current.rotation;
    if (r?.targetEpoch !== target) return;
    if (r.phase === 'Staging' && !stage) void doStage().catch(fail('acknowledge staging'));
    if ((r.phase === 'CuttingOver' || r.phase === 'Verifying') && r.cutoverTime && !apply && stage?.done)
      void doApply(new Date(r.cutoverTime).getTime()).catch(fail('report the cutover'));
  };

  log(`rotation: requesting a rotation (scope Keys) of ${overlay}, epoch ${startEpoch} -> ${target}`);
  const t0 = Date.now();
  try {
    await lab.custom.patchClusterCustomObject(
      {
        group: GROUP,
        version: VERSION,
        plural: OVERLAY_NETWORK_PLURAL,
        name: overlay,
        body: { metadata: { annotations: { [ROTATE_ANNOTATION]: `bench-${t0}` } } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const doneAt = await until(
      `rotation of ${overlay} to epoch ${target} to complete`,
      () => {
        if (failure) throw failure;
        fleet.check();
        // A CuttingOver seen after the fleet staged may have arrived before doStage finished: re-check.
        onChange();
        if (current.rotation?.phase === 'Backoff')
          throw new Error(`rotation aborted (Backoff): ${JSON.stringify(current.rotation)}`);
        return current.epoch === target && !current.rotation ? Date.now() : undefined;
      },
      500,
    );
    phaseAt.set('done', doneAt);
    phaseChange('done');
    await lastScrape;
  } finally {
    onChange = () => undefined;
    await overlayInformer.stop();
  }
  const seconds = (phaseAt.get('done')! - t0) / 1000;
  log(
    `rotation: epoch ${target} in effect after ${seconds.toFixed(1)} s; waiting for the old epoch's Secrets to go`,
  );
  // Deleting the old epoch's Secrets is the rotation's last step: one request the API server works through
  // for tens of seconds, while the operator's metrics show no finished reconcile. Wait for the Secrets.
  const purgedAt = await until(
    `the Secrets of epoch ${target - 1} to be deleted`,
    () => (coverage.secrets() === members ? Date.now() : undefined),
    250,
  );
  const purgeSeconds = (purgedAt - phaseAt.get('done')!) / 1000;
  log(
    `rotation: old epoch's Secrets deleted ${purgeSeconds.toFixed(1)} s after completion; waiting for the operator to settle`,
  );
  const settled = await lastScrape;
  const after = await op.settle('after the rotation');
  loopByPhase.done = Math.round(await op.takeLoopMaxMs());
  rssMiBByPhase.done = Math.round(op.takePhasePeakKiB() / 1024);
  writesByPhase.done = writeDelta(settled, after);
  const loopBlockMs = Math.max(0, ...Object.values(loopByPhase));
  const events = (await lab.core.listNamespacedEvent({
    namespace: 'default',
    fieldSelector: `involvedObject.name=${overlay}`,
  })) as { items: Array<{ reason?: string; message?: string; lastTimestamp?: Date; eventTime?: Date }> };
  const incomplete = events.items.find(
    (e) => e.reason === 'RotationIncomplete' && (e.message ?? '').includes(`${target}`),
  );
  const writes = writeDelta(before, after);
  const order = ['Staging', 'CuttingOver', 'Verifying', 'done'];
  const phaseSeconds: Record<string, number> = {};
  for (let i = 0; i + 1 < order.length; i++) {
    const a = phaseAt.get(order[i]!);
    const b = phaseAt.get(order[i + 1]!);
    if (a !== undefined && b !== undefined) phaseSeconds[order[i]!] = (b - a) / 1000;
  }
  const objectWrites = sum(writes, OBJECT_KINDS);
  return {
    n: members,
    targetEpoch: target,
    purgeSeconds,
    secretsCreated: writes['secret.create'] ?? 0,
    secretsDeleted: coverage.deletesSeen - deletesBefore,
    seconds,
    phaseAt: Object.fromEntries([...phaseAt].map(([k, v]) => [k, (v - t0) / 1000])),
    phaseSeconds,
    fleetStageSeconds: stage ? (stage.done - stage.started) / 1000 : NaN,
    fleetApplySeconds: apply ? (apply.done - apply.started) / 1000 : NaN,
    fleetApplyAfterCutoverSeconds: apply ? (apply.done - apply.cutover) / 1000 : NaN,
    fleetApplyBytesPerPatch: apply?.bytes ?? 0,
    fleetStatusWrites: fleetWrites + (fleet.published - published),
    writes,
    objectWrites,
    writesPerNode: objectWrites / members,
    events: writes.event ?? 0,
    incomplete: incomplete?.message?.slice(0, 300),
    reconciles: after.reconciles - before.reconciles,
    reconcileErrors: after.reconcileErrors - before.reconcileErrors,
    loopBlockMs,
    loopBlockMsByPhase: loopByPhase,
    writesByPhase,
    rssMiBByPhase,
    peakRssMiB: op.peakRssKiB / 1024,
  };
}

// ---------------------------------------------------------------------------------------------------------
// report

interface Report {
  run: string;
  date: string;
  apiServer: string;
  sizes: number[];
  creation: CreationFigures[];
  join?: JoinFigures;
  idle?: IdleFigures;
  rotation?: RotationFigures;
  rss?: { peakMiB: number; sampledPeakMiB: number };
  /** the operator's RSS once started, before any overlay exists (runtime + libraries) */
  rssAtStartMiB?: number;
  error?: string;
}

const verdict = (ok: boolean): string => (ok ? 'PASS' : 'MISS');

function loopRow(what: string, ms: number): [string, string, string, string] {
  return [what, `${ms.toFixed(0)} ms`, `<= ${TARGETS.loopBlockMs} ms`, verdict(ms <= TARGETS.loopBlockMs)];
}

function table(r: Report): string {
  const rows: Array<[string, string, string, string]> = [];
  for (const c of r.creation) {
    rows.push([`N=${c.n}: creation -> all ${c.n} NodeTunnels`, `${c.tunnelsSeconds.toFixed(1)} s`, '-', '']);
    rows.push([
      `N=${c.n}: creation -> all ${c.n} Secrets, ${c.pairs} pairs once each`,
      `${c.secretsSeconds.toFixed(1)} s`,
      '-',
      '',
    ]);
    rows.push([
      `N=${c.n}: operator writes / reconciles during creation`,
      `${sum(c.writes)} / ${c.reconciles} (${c.reconcileSeconds.toFixed(1)} s in reconcile)`,
      '-',
      '',
    ]);
    rows.push(loopRow(`N=${c.n}: creation: longest event-loop block`, c.loopBlockMs));
  }
  if (r.join) {
    rows.push([
      `join at N=${r.join.n}: object writes (status writes)`,
      `${r.join.objectWrites} (${r.join.statusWrites})`,
      `<= ${TARGETS.joinWrites}`,
      verdict(r.join.objectWrites <= TARGETS.joinWrites),
    ]);
    rows.push(loopRow(`join at N=${r.join.n}: longest event-loop block`, r.join.loopBlockMs));
  }
  if (r.idle) {
    rows.push([
      `idle ${r.idle.seconds} s: writes`,
      String(r.idle.writes),
      `${TARGETS.idleWrites}`,
      verdict(r.idle.writes <= TARGETS.idleWrites),
    ]);
    rows.push(loopRow(`idle ${r.idle.seconds} s: longest event-loop block`, r.idle.loopBlockMs));
  }
  if (r.rotation) {
    const ro = r.rotation;
    const at = `rotation at N=${ro.n}`;
    rows.push([`${at}: trigger -> epoch ${ro.targetEpoch} in effect`, `${ro.seconds.toFixed(1)} s`, '-', '']);
    for (const [phase, s] of Object.entries(ro.phaseSeconds))
      rows.push([`${at}: time in ${phase}`, `${s.toFixed(1)} s`, '-', '']);
    rows.push([
      `${at}: simulated fleet: staging acks / post-cutover reports`,
      `${ro.fleetStageSeconds.toFixed(1)} s / ${ro.fleetApplySeconds.toFixed(1)} s`,
      '-',
      '',
    ]);
    rows.push([
      `${at}: operator object writes per node (${ro.objectWrites} / ${ro.n})`,
      ro.writesPerNode.toFixed(2),
      `<= ${TARGETS.rotationWritesPerNode}`,
      verdict(ro.writesPerNode <= TARGETS.rotationWritesPerNode),
    ]);
    {
      const perNode = sum(ro.writes, (k) => k.startsWith('secret.') || k.startsWith('nodetunnel.'));
      rows.push([
        `${at}:   of which key Secrets + NodeTunnels / the overlay's status`,
        `${(perNode / ro.n).toFixed(2)} per node / ${sum(ro.writes, (k) => k.startsWith('overlay.'))} in all`,
        '-',
        '',
      ]);
    }
    rows.push([
      `${at}: completion -> old epoch's Secrets deleted`,
      `${ro.purgeSeconds.toFixed(1)} s`,
      '-',
      '',
    ]);
    rows.push([
      `${at}: key Secrets created / deleted (by ${ro.writes['secret.deletecollection'] ?? 0} delete-collection request(s))`,
      `${ro.secretsCreated} / ${ro.secretsDeleted}`,
      '-',
      '',
    ]);
    rows.push([
      `${at}: completed with every pair Encrypted (no RotationIncomplete)`,
      ro.incomplete === undefined ? 'yes' : 'no',
      'yes',
      verdict(ro.incomplete === undefined),
    ]);
    rows.push(loopRow(`${at}: longest event-loop block`, ro.loopBlockMs));
    rows.push([`${at}: operator RSS peak during phase`, `${ro.peakRssMiB.toFixed(0)} MiB`, '-', '']);
  }
  if (r.rss) {
    rows.push([
      'operator peak RSS (VmHWM)',
      `${r.rss.peakMiB.toFixed(0)} MiB`,
      `<= ${TARGETS.peakRssMiB} MiB`,
      verdict(r.rss.peakMiB <= TARGETS.peakRssMiB),
    ]);
  }
  const head: [string, string, string, string] = ['figure', 'value', 'target', 'result'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const fmt = (row: string[]): string =>
    row
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  const lines = [fmt(head), fmt(widths.map((w) => '-'.repeat(w))), ...rows.map(fmt)];
  if (r.join) {
    lines.push(
      '',
      `join detail: operator writes ${JSON.stringify(r.join.writes)}; simulated agent status writes ${r.join.agentStatusWrites}; ` +
        `${r.join.reconciles} reconciles; Secret complete ${r.join.seconds.toFixed(1)} s after the Node was created`,
    );
  }
  for (const c of r.creation) {
    lines.push(
      `N=${c.n} detail: writes ${JSON.stringify(c.writes)}; reconcile errors ${c.reconcileErrors}; ` +
        `Secret events seen ${c.secretEventsSeen}; sealed data ${(c.secretBytesTotal / 2 ** 20).toFixed(1)} MiB in total, ` +
        `largest Secret ${(c.secretBytesMax / 1024).toFixed(0)} KiB; operator RSS peak during phase ${c.peakRssMiB.toFixed(0)} MiB`,
    );
  }
  if (r.idle)
    lines.push(`idle detail: writes ${JSON.stringify(r.idle.byKind)}; ${r.idle.reconciles} reconciles`);
  if (r.rotation) {
    const ro = r.rotation;
    lines.push(
      `rotation detail: operator writes ${JSON.stringify(ro.writes)}; ${ro.reconciles} reconciles ` +
        `(${ro.reconcileErrors} errors); phases entered at ${JSON.stringify(ro.phaseAt)} s after the trigger; ` +
        `simulated agent status writes ${ro.fleetStatusWrites}, ${(ro.fleetApplyBytesPerPatch / 1024).toFixed(0)} KiB ` +
        `per post-cutover patch, last one ${ro.fleetApplyAfterCutoverSeconds.toFixed(1)} s after the cutover instant`,
    );
    lines.push(
      `rotation by phase ('done' = completion until settled): longest event-loop block (ms) ` +
        `${JSON.stringify(ro.loopBlockMsByPhase)}; operator writes ${JSON.stringify(ro.writesByPhase)}; ` +
        `RSS peak (MiB) ${JSON.stringify(ro.rssMiBByPhase)}`,
    );
    if (ro.incomplete !== undefined) lines.push(`rotation incomplete: ${ro.incomplete}`);
  }
  if (r.rss) {
    lines.push(
      `RSS detail: ${r.rssAtStartMiB?.toFixed(0) ?? '?'} MiB once started (no overlay); ` +
        `highest VmRSS sample ${r.rss.sampledPeakMiB.toFixed(0)} MiB`,
    );
  }
  if (r.error) lines.push('', `BENCH FAILED: ${r.error}`);
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const kc = kubeConfig();
  const lab = new Lab(kc);
  const report: Report = {
    run,
    date: new Date().toISOString(),
    apiServer: kc.getCurrentCluster()?.server ?? '',
    sizes: SIZES,
    creation: [],
  };
  mkdirSync(OUT_DIR, { recursive: true });
  log(`run ${run}: sizes ${SIZES.join(', ')}, idle ${IDLE_SECONDS} s, API server ${report.apiServer}`);
  log(`building the operator (tsc -p tsconfig.build.json) into ${BUILD_DIR}`);
  execFileSync(
    process.execPath,
    [
      resolve(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'),
      '-p',
      'tsconfig.build.json',
      '--outDir',
      BUILD_DIR,
    ],
    { cwd: repoRoot, stdio: 'inherit' },
  );
  for (let i = 0; i < maxNodes; i++)
    nodeKeys.set(nodeName(i), { envelope: x25519Public(), kem: mlKemPublic(), wg: x25519Public() });
  await installCRDs(kc);
  for (const ns of [opNamespace, keyNamespace])
    await lab.core.createNamespace({ body: { metadata: { name: ns, labels: { [RUN_LABEL]: run } } } });
  const logFile = resolve(OUT_DIR, `operator-${run}.log`);
  const op = new OperatorProcess(
    process.env.KUBECONFIG ?? resolve(repoRoot, '.local', 'kubeconfig'),
    logFile,
  );
  log(`operator pid ${op.child.pid}, log ${logFile}`);
  let failed = false;
  try {
    await op.started();
    await sleep(3000);
    report.rssAtStartMiB = (op.rssKiB() ?? 0) / 1024;
    const sorted = [...SIZES].sort((a, b) => a - b);
    for (const n of sorted) {
      report.creation.push(await creationPhase(lab, op, n));
      if (n !== sorted[sorted.length - 1]) {
        const state = phaseState.get(n)!;
        log(`N=${n}: deleting its overlay before the next size`);
        await removeOverlay(lab, state.overlay);
        await state.fleet.stop();
        await state.coverage.informer.stop();
      }
    }
    const largest = sorted[sorted.length - 1]!;
    report.join = await joinPhase(lab, op, largest);
    report.idle = await idlePhase(op);
    report.rotation = await rotationPhase(lab, op, largest);
    op.sample();
    report.rss = { peakMiB: (op.hwmKiB() ?? 0) / 1024, sampledPeakMiB: op.peakRssKiB / 1024 };
  } catch (err) {
    failed = true;
    report.error = err instanceof Error ? err.message : String(err);
    const hwm = op.hwmKiB();
    if (hwm !== undefined) report.rss = { peakMiB: hwm / 1024, sampledPeakMiB: op.peakRssKiB / 1024 };
  } finally {
    log('cleaning up');
    for (const { overlay, fleet, coverage } of phaseState.values()) {
      if (op.child.exitCode === null)
        await removeOverlay(lab, overlay).catch((err: unknown) => log(`cleanup: ${describeError(err)}`));
      await fleet.stop();
      await coverage.informer.stop();
    }
    const code = await op.stop();
    if (code !== 0) log(`operator exited with code ${code}`);
    for (const { overlay } of phaseState.values()) {
      if (await lab.overlayExists(overlay).catch(() => false))
        await lab.forceRemoveOverlay(overlay).catch(() => undefined);
      await lab.core
        .deleteCollectionNamespacedEvent({
          namespace: 'default',
          fieldSelector: `involvedObject.name=${overlay}`,
        })
        .catch(() => undefined);
    }
    const deleted = await lab.deleteNodes().catch((err: unknown) => {
      log(`cleanup: deleting Nodes failed: ${describeError(err)}`);
      return 0;
    });
    log(`deleted ${deleted} Nodes`);
    for (const ns of [opNamespace, keyNamespace]) {
      // No namespace controller runs in the local control plane: empty the namespace ourselves.
      await lab.core.deleteCollectionNamespacedSecret({ namespace: ns }).catch(() => undefined);
      await lab.core.deleteCollectionNamespacedConfigMap({ namespace: ns }).catch(() => undefined);
      await lab.kc
        .makeApiClient(CoordinationV1Api)
        .deleteCollectionNamespacedLease({ namespace: ns })
        .catch(() => undefined);
      await lab.core.deleteNamespace({ name: ns }).catch(() => undefined);
    }
  }
  const text = table(report);
  console.log(`\nsealmesh operator bench, run ${run} (${report.apiServer})\n\n${text}\n`);
  const json = resolve(OUT_DIR, 'operator.json');
  writeFileSync(json, JSON.stringify(report, null, 2) + '\n');
  console.log(`figures: ${json}`);
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`bench failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
