// Hitless rotation for real (issue 6, "Done when"): a 4-node lab with the operator and an agent per node
// (config/ RBAC, service-account tokens, wireguard-go), one overlay, and continuous probes over every pair's
// tunnel (>= 20 probes/s) while the keys rotate:
//   1. PSK-only rotation (`kubectl sealmesh rotate --psk-only --wait`): no probe lost; every device holds the
//      new-epoch PSK on both ends of every pair (compared by fingerprint, computed inside the node);
//   2. full rotation (`kubectl sealmesh rotate --wait`): every public key changes; the longest gap of any pair
//      stays under 1 s;
//   3. the operator SIGKILLed while staging and restarted: the rotation completes (or aborts cleanly) and all
//      pairs are encrypted at one epoch within 60 s of the restart;
//   4. an agent stopped before a rotation: once its Lease has expired the rotation goes on without it; back,
//      it converges to the current epoch and its pairs are encrypted again;
// and throughout: the underlay carries only WireGuard UDP, never the probes' payload; no private key or PSK
// appears in any API object, Event or log. The scenarios build on each other and run in order.
//
// Keys the test handles (to search for leaks) are read from the agents' state dirs and unsealed in this
// process only; they are never printed. PSKs on the devices are compared by fingerprint, computed inside the
// node, so `wg` output with keys never reaches this process.
//
// Every operator on an API server reconciles every OverlayNetwork, so an operator of another test running at
// the same time on the shared control plane moves this overlay's epoch (see foreignOperator()). For figures
// that mean something, give the run a control plane of its own (hack/cluster.sh starts and stops it):
//   SEALMESH_LOCAL_DIR=$PWD/.local/rot-e2e-cp node ... jest.js test/e2e/rotation.test.ts --selectProjects e2e
import { execFile, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { agentLeaseName } from '../../lib/contract/liveness.js';
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
import {
  KEY_NAMESPACE,
  SYSTEM_NAMESPACE,
  describeProgress,
  kubectl,
  startOperatorProcess,
  waitAllEncrypted,
  WaitError,
} from '../../hack/deploy/deploy.js';
import { fingerprint } from '../../lib/keys.js';
import { decodeKeySecretData } from '../../lib/contract/keysecret.js';
import { isNotFound } from '../../lib/kube.js';
import { boxKeyPairFromSecret, unseal } from '../../lib/seal.js';
import { IDENTITY_NAME, IDENTITY_PUBLIC_KEY } from '../../lib/contract/identity.js';
import { startCapture, type Captured } from '../support/capture.js';
import { kubeConfig, kubeconfigPath, repoRoot, uniqueName } from '../support/cluster.js';
import { Deployment } from '../support/deploy.js';
import type { Lab } from '../support/lab.js';
import { median, startProbes, type PairProbe, type ProbeResult } from '../support/probes.js';

const kc = kubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);
const leases = kc.makeApiClient(CoordinationV1Api);
const overlay = uniqueName('e2e-rot');
const MEMBER_LABEL = 'sealmesh.io/member';
const PORT = 51820;
/** ICMP payload of every probe: seen on the underlay only if the tunnel leaked plaintext. */
const MARKER = '5ea1ed0ca11ab1e6';
/** 33 probes/s per pair asked (a loaded machine sends fewer; at least 20/s is asserted) */
const INTERVAL_MS = 30;

// Bounds (2 shared cores; operator and agents start through tsx).
const SETUP_MS = 150_000;
const ALL_ENCRYPTED_MS = 180_000;
const ROTATION_MS = 60_000;
const RESTART_CONVERGE_MS = 60_000;
const LEASE_EXPIRY_MS = 70_000;
const RETURN_CONVERGE_MS = 90_000;
const FULL_ROTATION_MAX_GAP_MS = 1000;

let deployment: Deployment | undefined;
/** The operator this test started after SIGKILLing the Deployment's (scenario 3); stopped in afterAll. */
let restartedOperator: ChildProcess | undefined;
let nodes: string[] = [];
/** every unordered pair once, probed from the first node to the second's tunnel address */
let pairs: PairProbe[] = [];
let iface = '';
/** Base64 of every private key and PSK seen (never printed): the leak check looks for them. */
const secrets = new Map<string, string>();
let failedScenario: string | undefined;

async function scenario(name: string, body: () => Promise<void>): Promise<void> {
  if (failedScenario) throw new Error(`not run: scenario ${failedScenario} failed`);
  failedScenario = name;
  try {
    await body();
  } catch (err) {
    const foreign = await foreignOperator().catch(() => undefined);
    if (foreign) throw new Error(`${String(err)}\n${foreign}`, { cause: err });
    throw err;
  }
  failedScenario = undefined;
}

/**
 * Every operator on an API server reconciles every OverlayNetwork. One that keeps its key Secrets in another
 * namespace (an integration test's, a bench's) finds none of this overlay's, takes them for lost and moves the
 * overlay to a new epoch: the KeySecretReplaced Events below, which nothing in this test causes.
 */
async function foreignOperator(): Promise<string | undefined> {
  const events = await core.listNamespacedEvent({
    namespace: 'default',
    fieldSelector: `involvedObject.name=${overlay}`,
  });
  const replaced = events.items.filter((e) => e.reason === 'KeySecretReplaced');
  if (replaced.length === 0) return undefined;
  return (
    `NOTE: ${replaced.length} KeySecretReplaced Event(s) on ${overlay} (${replaced.map((e) => e.message).join('; ')}): ` +
    'another operator on this API server (a concurrent integration test or bench?) reconciles this overlay and ' +
    'bumps its epoch. Run with a control plane of its own: SEALMESH_LOCAL_DIR=$PWD/.local/rot-e2e-cp'
  );
}

function report(line: string): void {
  process.stdout.write(`[rotation e2e] ${line}\n`);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function until<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs: number) {
  const t0 = Date.now();
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v !== undefined && v !== false) return { value: v, ms: Date.now() - t0 };
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(250);
  }
}

// ---- API views ----

interface RotationView {
  phase: string;
  scope: string;
  targetEpoch: number;
  cutoverTime?: string;
  reason?: string;
  attempt?: number;
}
interface OverlayStatus {
  epoch?: number;
  rotation?: RotationView;
  lastRotateRequest?: string;
  lastRotationTime?: string;
  lastPresharedKeyRotationTime?: string;
  encryptedSummary?: string;
}

async function overlayStatus(): Promise<OverlayStatus> {
  const o = (await custom.getClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: OVERLAY_NETWORK_PLURAL,
    name: overlay,
  })) as { status?: OverlayStatus };
  return o.status ?? {};
}

interface TunnelView {
  node: string;
  address: string;
  publicKey?: string;
  appliedEpoch?: number;
  stagedEpoch?: number;
  peers: Map<string, { state?: string; epoch?: number }>;
}

async function tunnels(): Promise<Map<string, TunnelView>> {
  const list = (await custom.listClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: NODE_TUNNEL_PLURAL,
    labelSelector: `${OVERLAY_LABEL}=${overlay}`,
  })) as {
    items: Array<{
      spec: { nodeName: string; address: string };
      status?: {
        publicKey?: string;
        appliedEpoch?: number;
        stagedEpoch?: number;
        peers?: Array<{ node: string; state?: string; epoch?: number }>;
      };
    }>;
  };
  return new Map(
    list.items.map((t) => [
      t.spec.nodeName,
      {
        node: t.spec.nodeName,
        address: t.spec.address.split('/')[0]!,
        publicKey: t.status?.publicKey,
        appliedEpoch: t.status?.appliedEpoch,
        stagedEpoch: t.status?.stagedEpoch,
        peers: new Map((t.status?.peers ?? []).map((p) => [p.node, { state: p.state, epoch: p.epoch }])),
      },
    ]),
  );
}

/**
 * Whether every pair among `among` is Encrypted on both sides at one epoch that every one of them applied;
 * otherwise why not.
 */
async function oneEpoch(among: readonly string[]): Promise<{ ok: boolean; epoch?: number; why: string }> {
  const t = await tunnels();
  const epochs = new Set(among.map((n) => t.get(n)?.appliedEpoch));
  if (epochs.size !== 1) {
    return {
      ok: false,
      why: `applied epochs ${among.map((n) => `${n}=${t.get(n)?.appliedEpoch}`).join(' ')}`,
    };
  }
  const epoch = [...epochs][0];
  const bad: string[] = [];
  for (const a of among) {
    for (const b of among) {
      if (a === b) continue;
      const p = t.get(a)?.peers.get(b);
      if (p?.state !== 'Encrypted' || p.epoch !== epoch) bad.push(`${a}->${b}=${p?.state}@${p?.epoch}`);
    }
  }
  return bad.length
    ? { ok: false, epoch, why: `not encrypted at ${epoch}: ${bad.join(' ')}` }
    : { ok: true, epoch, why: `every pair encrypted at epoch ${epoch}` };
}

async function annotate(value: string): Promise<void> {
  await custom.patchClusterCustomObject(
    {
      group: GROUP,
      version: VERSION,
      plural: OVERLAY_NETWORK_PLURAL,
      name: overlay,
      body: { metadata: { annotations: { [ROTATE_ANNOTATION]: value } } },
    },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
}

/** Follows the overlay's status every 100 ms until `done` holds: the phases seen, the cutover instant. */
async function followRotation(
  done: (s: OverlayStatus) => boolean,
  timeoutMs: number,
  onStatus?: (s: OverlayStatus) => Promise<void> | void,
): Promise<{ status: OverlayStatus; phases: string[]; cutoverTime?: string; scope?: string; ms: number }> {
  const t0 = Date.now();
  const phases: string[] = [];
  let cutoverTime: string | undefined;
  let scope: string | undefined;
  for (;;) {
    const s = await overlayStatus().catch(() => undefined);
    if (s) {
      const phase = s.rotation?.phase;
      if (phase && phases[phases.length - 1] !== phase) phases.push(phase);
      cutoverTime = s.rotation?.cutoverTime ?? cutoverTime;
      scope = s.rotation?.scope ?? scope;
      await onStatus?.(s);
      if (done(s)) return { status: s, phases, cutoverTime, scope, ms: Date.now() - t0 };
    }
    if (Date.now() - t0 > timeoutMs) {
      throw new Error(
        `rotation not finished after ${timeoutMs} ms: phases ${phases.join(' > ')}, status ${JSON.stringify(s)}${logTails()}`,
      );
    }
    await sleep(100);
  }
}

/** PSK fingerprints per pair and epoch, from the operator's key Secrets ("a/b" with a < b). */
async function secretFingerprints(): Promise<Map<string, Map<number, string>>> {
  const list = await core.listNamespacedSecret({
    namespace: KEY_NAMESPACE,
    labelSelector: `${OVERLAY_LABEL}=${overlay}`,
  });
  const out = new Map<string, Map<number, string>>();
  for (const s of list.items) {
    const d = decodeKeySecretData(s.data);
    if (!d.ok) throw new Error(`key Secret ${s.metadata?.name} does not decode: ${d.error}`);
    for (const p of d.payload.pairs) {
      const byEpoch = out.get(`${p.a}/${p.b}`) ?? new Map<number, string>();
      byEpoch.set(p.epoch, p.fingerprint);
      out.set(`${p.a}/${p.b}`, byEpoch);
    }
  }
  return out;
}

const pairName = (x: string, y: string) => (x < y ? `${x}/${y}` : `${y}/${x}`);

// ---- devices (inside the nodes) ----

/**
 * Fingerprint of every peer's PSK on the node's device, by peer public key: computed inside the node (first
 * 16 hex of sha256 of the raw 32 bytes, as lib/keys.ts fingerprint()), so no PSK leaves the node.
 */
async function devicePskFingerprints(node: string): Promise<Map<string, string>> {
  const script =
    'set -o pipefail; wg show "$1" preshared-keys | while read -r peer psk; do ' +
    'if [ "$psk" = "(none)" ]; then echo "$peer none"; ' +
    'else echo "$peer $(printf %s "$psk" | base64 -d | sha256sum | cut -c1-16)"; fi; done';
  const r = await deployment!.lab.exec(node, ['bash', '-c', script, 'psk-fingerprints', iface]);
  // stderr of wg/base64 carries no key; stdout holds only public keys and fingerprints
  if (r.code !== 0)
    throw new Error(`PSK fingerprints in ${node} failed (exit ${r.code}): ${r.stderr.trim()}`);
  return new Map(
    r.stdout
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => l.split(' ') as [string, string]),
  );
}

async function devicePublicKey(node: string): Promise<string> {
  const r = await deployment!.lab.exec(node, ['wg', 'show', iface, 'public-key']);
  if (r.code !== 0) throw new Error(`wg show ${iface} public-key in ${node} failed: ${r.stderr.trim()}`);
  return r.stdout.trim();
}

/**
 * Asserts that on both ends of every pair the device's PSK is the Secret's PSK at `epoch` (by fingerprint) and
 * differs from the one at `oldEpoch`. Returns how many device entries matched.
 */
async function expectDevicePsks(
  epoch: number,
  old: Map<string, Map<number, string>>,
  oldEpoch: number,
): Promise<number> {
  const fps = await secretFingerprints();
  const t = await tunnels();
  const problems: string[] = [];
  let matched = 0;
  for (const node of nodes) {
    const device = await devicePskFingerprints(node);
    for (const peer of nodes) {
      if (peer === node) continue;
      const key = pairName(node, peer);
      const want = fps.get(key)?.get(epoch);
      const before = old.get(key)?.get(oldEpoch);
      const peerKey = t.get(peer)?.publicKey;
      const got = peerKey ? device.get(peerKey) : undefined;
      if (!want) problems.push(`${key}: no fingerprint at epoch ${epoch} in the Secrets`);
      else if (got !== want)
        problems.push(`${node}'s device, peer ${peer}: PSK ${got} is not epoch ${epoch}'s ${want}`);
      else if (before === undefined || before === want)
        problems.push(`${key}: epoch ${epoch}'s PSK ${want} is not new (epoch ${oldEpoch}: ${before})`);
      else matched++;
    }
  }
  expect(problems).toEqual([]);
  return matched;
}

// ---- key material for the leak check (never printed) ----

/** Private keys (WireGuard, envelope) from the agents' state dirs and every PSK the Secrets hold, unsealed. */
async function collectSecrets(): Promise<void> {
  const lab = deployment!.lab;
  const root = resolve(lab.dir, 'agents');
  const envelopes = new Map<string, ReturnType<typeof boxKeyPairFromSecret>>();
  for (const node of nodes) {
    const dir = resolve(root, node);
    const envelope = resolve(dir, 'envelope.key');
    if (existsSync(envelope)) {
      const b64 = readFileSync(envelope, 'utf8').trim();
      secrets.set(b64, `envelope private key of ${node}`);
      envelopes.set(node, boxKeyPairFromSecret(new Uint8Array(Buffer.from(b64, 'base64'))));
    }
    const keys = resolve(dir, 'overlays', overlay);
    if (!existsSync(keys)) continue;
    for (const f of readdirSync(keys)) {
      const m = /^wg-(\d+)\.key$/.exec(f);
      if (m)
        secrets.set(readFileSync(resolve(keys, f), 'utf8').trim(), `private key of ${node} at epoch ${m[1]}`);
    }
  }
  const cm = await core.readNamespacedConfigMap({ namespace: KEY_NAMESPACE, name: IDENTITY_NAME });
  const operatorKey = new Uint8Array(Buffer.from(cm.data?.[IDENTITY_PUBLIC_KEY] ?? '', 'base64'));
  const list = await core.listNamespacedSecret({
    namespace: KEY_NAMESPACE,
    labelSelector: `${OVERLAY_LABEL}=${overlay}`,
  });
  for (const s of list.items) {
    const d = decodeKeySecretData(s.data);
    if (!d.ok) continue;
    for (const p of d.payload.pairs) {
      for (const [node, sealed] of Object.entries(p.sealed)) {
        const env = envelopes.get(node);
        if (!env) continue;
        const psk = unseal(sealed, operatorKey, env);
        // the Secret's fingerprint is the PSK's: what the device comparisons rely on
        expect(fingerprint(psk)).toBe(p.fingerprint);
        secrets.set(Buffer.from(psk).toString('base64'), `PSK of ${p.a}/${p.b} at epoch ${p.epoch}`);
      }
    }
  }
}

// ---- underlay capture for a whole scenario (capture.ts, rolled over before its packet limit) ----

interface UnderlayVerdict {
  wireguard: number;
  other: string[];
  icmp: number;
  marker: boolean;
  chunks: number;
  /** a chunk hit tcpdump's packet limit: part of the scenario went unseen */
  truncated: boolean;
}

async function watchUnderlay<T>(
  lab: Lab,
  body: () => Promise<T>,
): Promise<{ value: T; underlay: UnderlayVerdict }> {
  const chunks: Captured[] = [];
  let done = false;
  const running = body().finally(() => {
    done = true;
  });
  const settled = running.then(
    () => undefined,
    () => undefined,
  );
  let current = await startCapture(lab, 120);
  try {
    while (!done) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([settled, new Promise<void>((r) => (timer = setTimeout(r, 40_000)))]);
      clearTimeout(timer);
      if (done) break;
      // the next capture runs before this one stops: no moment unseen
      const next = await startCapture(lab, 120);
      chunks.push(await current.stop());
      current = next;
    }
  } finally {
    chunks.push(await current.stop());
  }
  const value = await running;
  const ips = lab.nodes.map((n) => n.underlayIP.replace(/\./g, '\\.')).join('|');
  const wg = new RegExp(`^\\S+ IP (${ips})\\.${PORT} > (${ips})\\.${PORT}: UDP, length \\d+$`);
  const lines = chunks.flatMap((c) => c.lines).filter((l) => !/ ARP, /.test(l));
  return {
    value,
    underlay: {
      wireguard: lines.filter((l) => wg.test(l)).length,
      other: lines.filter((l) => !wg.test(l)),
      icmp: lines.filter((l) => /ICMP/i.test(l)).length,
      marker: chunks.some((c) => c.raw.includes(Buffer.from(MARKER, 'hex'))),
      chunks: chunks.length,
      truncated: chunks.some((c) => c.lines.length >= 20_000),
    },
  };
}

function expectCleanUnderlay(name: string, u: UnderlayVerdict): void {
  report(
    `${name}: underlay ${u.wireguard} WireGuard datagrams (${u.chunks} capture(s)), other ${u.other.length}, ICMP ${u.icmp}, probe payload seen: ${u.marker}`,
  );
  expect(u.truncated).toBe(false);
  expect(u.other.slice(0, 20)).toEqual([]);
  expect(u.icmp).toBe(0);
  expect(u.marker).toBe(false);
  expect(u.wireguard).toBeGreaterThan(0);
}

// ---- probes ----

function probeTable(name: string, results: ProbeResult[], seconds: number): { max: number; median: number } {
  const rows = results.map(
    (r) =>
      `  ${`${r.from} -> ${r.to}`.padEnd(44)} sent ${String(r.sent).padStart(5)}  received ${String(r.received).padStart(5)}  lost ${String(r.lost).padStart(4)}  max gap ${String(r.maxGapMs).padStart(6)} ms`,
  );
  const gaps = results.map((r) => r.maxGapMs);
  const max = Math.max(...gaps);
  const med = median(gaps);
  report(
    `${name}: probes every ${INTERVAL_MS} ms per pair (${(results.reduce((a, r) => a + r.sent, 0) / results.length / seconds).toFixed(1)}/s sent)\n${rows.join('\n')}\n  longest gap over pairs: max ${max} ms, median ${med} ms; lost ${results.reduce((a, r) => a + r.lost, 0)} of ${results.reduce((a, r) => a + r.sent, 0)}`,
  );
  return { max, median: med };
}

/** Probes every pair for `seconds` while `body` runs, the underlay captured all along. */
async function measured<T>(
  name: string,
  seconds: number,
  body: () => Promise<T>,
): Promise<{ value: T; results: ProbeResult[]; underlay: UnderlayVerdict; start: number; end: number }> {
  const d = deployment!;
  const { value, underlay } = await watchUnderlay(d.lab, async () => {
    const start = Date.now();
    const probes = startProbes(d.lab, pairs, { intervalMs: INTERVAL_MS, seconds, pattern: MARKER });
    const value = await body();
    const results = await probes.results();
    return { value, results, start, end: start + seconds * 1000 };
  });
  const out = { ...value, underlay };
  // every probe ran: a ping that could not start would show as 0 sent
  // at least 20 probes/s on every pair (25/s asked; a loaded machine sends a few less)
  for (const r of out.results) expect(r.sent / seconds).toBeGreaterThanOrEqual(20);
  probeTable(name, out.results, seconds);
  return out;
}

function plugin(
  args: string[],
  timeoutMs: number,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(
      resolve(repoRoot, 'bin/kubectl-sealmesh'),
      args,
      { env: { ...process.env, KUBECONFIG: kubeconfigPath }, timeout: timeoutMs, killSignal: 'SIGKILL' },
      (err, stdout, stderr) =>
        done({ code: err ? Number((err as { code?: unknown }).code ?? 1) || 1 : 0, stdout, stderr }),
    );
  });
}

/** The end of every log, so a failure says what the operator and the agents were doing. */
function logTails(): string {
  if (!deployment) return '';
  const logs = deployment.logs();
  const tail = (s: string) =>
    s
      .trim()
      .split('\n')
      .slice(-8)
      .map((l) => `    ${l.slice(0, 400)}`)
      .join('\n');
  let out = `\n--- operator (${deployment.operatorLog}):\n${tail(logs.operator)}`;
  for (const [node, log] of Object.entries(logs.nodes)) out += `\n--- ${node}:\n${tail(log)}`;
  return out;
}

async function allEncrypted(among: string[], timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  try {
    await waitAllEncrypted(kc, overlay, among, timeoutMs);
  } catch (err) {
    if (err instanceof WaitError)
      throw new Error(`${err.message}\n${describeProgress(err.last)}${logTails()}`, { cause: err });
    throw err;
  }
  return Date.now() - t0;
}

/** /proc start time of a process (to tell a recycled PID); undefined when it is gone. */
function procStart(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[19];
  } catch {
    return undefined;
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

beforeAll(async () => {
  deployment = await Deployment.up({ nodes: 4, kc });
  nodes = deployment.lab.nodes.map((n) => n.name);
  for (const node of nodes) {
    await core.patchNode(
      { name: node, body: { metadata: { labels: { [MEMBER_LABEL]: overlay } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }
  await custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: OVERLAY_NETWORK_PLURAL,
    body: {
      apiVersion: API_VERSION,
      kind: OVERLAY_NETWORK_KIND,
      metadata: { name: overlay },
      spec: {
        nodeSelector: { matchLabels: { [MEMBER_LABEL]: overlay } },
        addressPool: '10.97.0.0/24',
        listenPort: PORT,
      },
    },
  });
}, SETUP_MS);

afterAll(async () => {
  const errors: string[] = [];
  try {
    await custom.deleteClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: OVERLAY_NETWORK_PLURAL,
      name: overlay,
    });
    // an operator that died cannot drop its finalizer: after a bound the test does
    await until(
      'the overlay to be deleted',
      async () => {
        try {
          await overlayStatus();
          return false;
        } catch (err) {
          return isNotFound(err);
        }
      },
      30_000,
    ).catch(async (err: unknown) => {
      errors.push(String(err));
      await kubectl(kubeconfigPath, [
        'patch',
        'overlaynetwork',
        overlay,
        '--type=merge',
        '-p',
        '{"metadata":{"finalizers":null}}',
      ]).catch(() => undefined);
    });
  } catch (err) {
    if (!isNotFound(err)) errors.push(`deleting overlay ${overlay}: ${String(err)}`);
  }
  if (restartedOperator) await stopChild(restartedOperator).catch((err: unknown) => errors.push(String(err)));
  // The logs outlive the run (they hold no key: test 6 checks), so a failure can be read afterwards.
  if (deployment) {
    try {
      const dir = resolve(repoRoot, '.local', 'e2e-rotation-logs', overlay);
      mkdirSync(dir, { recursive: true });
      const logs = deployment.logs();
      writeFileSync(resolve(dir, 'operator.log'), logs.operator);
      for (const [node, log] of Object.entries(logs.nodes)) writeFileSync(resolve(dir, `${node}.log`), log);
      report(`logs kept in ${dir}`);
    } catch (err) {
      errors.push(`keeping the logs: ${String(err)}`);
    }
  }
  await deployment?.down().catch((err: unknown) => errors.push(String(err)));
  for (const n of nodes) {
    await leases
      .deleteNamespacedLease({ namespace: KEY_NAMESPACE, name: agentLeaseName(n) })
      .catch((err: unknown) => {
        if (!isNotFound(err)) errors.push(`deleting the Lease of ${n}: ${String(err)}`);
      });
  }
  secrets.clear();
  if (errors.length) throw new Error(errors.join('\n'));
}, 120_000);

test(
  `setup: 4 nodes, all 6 pairs encrypted within ${ALL_ENCRYPTED_MS / 1000} s`,
  () =>
    scenario('setup', async () => {
      const ms = await allEncrypted(nodes, ALL_ENCRYPTED_MS);
      const t = await tunnels();
      pairs = [];
      for (const [i, a] of nodes.entries())
        for (const b of nodes.slice(i + 1)) pairs.push({ from: a, to: b, address: t.get(b)!.address });
      const ifaces = await deployment!.lab.exec(nodes[0]!, ['wg', 'show', 'interfaces']);
      const names = ifaces.stdout.trim().split(/\s+/).filter(Boolean);
      expect(names).toHaveLength(1);
      iface = names[0]!;
      await collectSecrets();
      report(
        `setup: ${pairs.length} pairs encrypted ${(ms / 1000).toFixed(1)} s after the overlay was created; interface ${iface}`,
      );
    }),
  ALL_ENCRYPTED_MS + 30_000,
);

test(
  '1: a PSK-only rotation (kubectl sealmesh rotate --psk-only) loses no probe; both ends of every pair run the new PSK',
  () =>
    scenario('1', async () => {
      const before = await overlayStatus();
      const from = before.epoch ?? 1;
      const oldFps = await secretFingerprints();
      const keysBefore = await tunnels();
      const deviceKeysBefore = new Map<string, string>();
      for (const n of nodes) deviceKeysBefore.set(n, await devicePublicKey(n));
      const run = await measured('1 (PSK-only)', 24, async () => {
        await sleep(2000);
        const cli = plugin(['rotate', overlay, '--psk-only', '--wait', '--timeout', '40s'], 60_000);
        const followed = await followRotation((s) => (s.epoch ?? 1) > from && !s.rotation, ROTATION_MS);
        const out = await cli;
        return { followed, out, doneAt: Date.now() };
      });
      const { followed, out } = run.value;
      report(
        `1: epoch ${from} -> ${followed.status.epoch} (${followed.scope}), phases ${followed.phases.join(' > ')}, cutover ${followed.cutoverTime}, ${(followed.ms / 1000).toFixed(1)} s from request to completion`,
      );
      expect(out.code).toBe(0);
      expect(out.stdout).toContain(`rotation of ${overlay} completed: epoch ${from + 1}`);
      expect(followed.scope).toBe('PresharedKeys');
      expect(followed.status.epoch).toBe(from + 1);
      expect(followed.status.lastRotateRequest).toMatch(/^psk:/);
      expect(followed.status.lastPresharedKeyRotationTime).toBeDefined();
      // the cutover fell inside the probed window, with time to spare after it
      const cutover = Date.parse(followed.cutoverTime ?? '');
      expect(cutover).toBeGreaterThan(run.start);
      expect(cutover + 3000).toBeLessThan(run.end);
      expect(run.value.doneAt).toBeLessThan(run.end);

      // zero probes lost on every pair
      expect(run.results.map((r) => `${r.from}->${r.to}: lost ${r.lost}`)).toEqual(
        run.results.map((r) => `${r.from}->${r.to}: lost 0`),
      );
      expectCleanUnderlay('1', run.underlay);

      await allEncrypted(nodes, 30_000);
      expect((await oneEpoch(nodes)).epoch).toBe(from + 1);
      const matched = await expectDevicePsks(from + 1, oldFps, from);
      report(
        `1: ${matched} device PSK entries (both ends of ${pairs.length} pairs) hold epoch ${from + 1}'s PSK, not epoch ${from}'s`,
      );
      // PSK-only: nobody's private key changed
      const keysAfter = await tunnels();
      for (const n of nodes) {
        expect(keysAfter.get(n)?.publicKey).toBe(keysBefore.get(n)?.publicKey);
        expect(await devicePublicKey(n)).toBe(deviceKeysBefore.get(n));
      }
      await collectSecrets();
    }),
  120_000,
);

test(
  `2: a full rotation (kubectl sealmesh rotate) changes every public key; no pair loses ${FULL_ROTATION_MAX_GAP_MS} ms or more`,
  () =>
    scenario('2', async () => {
      const from = (await overlayStatus()).epoch ?? 1;
      const oldFps = await secretFingerprints();
      const keysBefore = await tunnels();
      const deviceKeysBefore = new Map<string, string>();
      for (const n of nodes) deviceKeysBefore.set(n, await devicePublicKey(n));
      const run = await measured('2 (Keys)', 24, async () => {
        await sleep(2000);
        const cli = plugin(['rotate', overlay, '--wait', '--timeout', '40s'], 60_000);
        const followed = await followRotation((s) => (s.epoch ?? 1) > from && !s.rotation, ROTATION_MS);
        const out = await cli;
        return { followed, out, doneAt: Date.now() };
      });
      const { followed, out } = run.value;
      report(
        `2: epoch ${from} -> ${followed.status.epoch} (${followed.scope}), phases ${followed.phases.join(' > ')}, cutover ${followed.cutoverTime}, ${(followed.ms / 1000).toFixed(1)} s from request to completion`,
      );
      expect(out.code).toBe(0);
      expect(followed.scope).toBe('Keys');
      expect(followed.status.epoch).toBe(from + 1);
      expect(followed.status.lastRotationTime).toBeDefined();
      const cutover = Date.parse(followed.cutoverTime ?? '');
      expect(cutover).toBeGreaterThan(run.start);
      expect(cutover + 3000).toBeLessThan(run.end);
      expect(run.value.doneAt).toBeLessThan(run.end);

      const over = run.results.filter((r) => r.maxGapMs >= FULL_ROTATION_MAX_GAP_MS);
      expect(over.map((r) => `${r.from}->${r.to}: ${r.maxGapMs} ms`)).toEqual([]);
      expectCleanUnderlay('2', run.underlay);

      await allEncrypted(nodes, 30_000);
      expect((await oneEpoch(nodes)).epoch).toBe(from + 1);
      const keysAfter = await tunnels();
      for (const n of nodes) {
        const now = keysAfter.get(n)?.publicKey;
        expect(now).toBeDefined();
        expect(now).not.toBe(keysBefore.get(n)?.publicKey);
        const device = await devicePublicKey(n);
        expect(device).toBe(now);
        expect(device).not.toBe(deviceKeysBefore.get(n));
      }
      report(`2: all ${nodes.length} public keys changed (status.publicKey and wg show public-key agree)`);
      await expectDevicePsks(from + 1, oldFps, from);
      await collectSecrets();
    }),
  120_000,
);

test(
  `3: the operator SIGKILLed while staging and restarted: the rotation ends and all pairs are at one epoch within ${RESTART_CONVERGE_MS / 1000} s of the restart`,
  () =>
    scenario('3', async () => {
      const d = deployment!;
      const from = (await overlayStatus()).epoch ?? 1;
      const pidFile = resolve(d.dir, 'operator.pid');
      const [pidText] = readFileSync(pidFile, 'utf8').trim().split(' ');
      const pid = Number(pidText);
      expect(procStart(pid)).toBeDefined();
      const holder = await leases
        .readNamespacedLease({ namespace: SYSTEM_NAMESPACE, name: 'sealmesh-operator' })
        .then((l) => l.spec?.holderIdentity)
        .catch(() => undefined);
      let restartAt = 0;
      let killedIn = '';
      let stagedAtKill = '';
      const run = await measured('3 (operator killed while staging)', 60, async () => {
        await sleep(2000);
        await annotate(`kill-${Date.now()}`);
        // SIGKILL as soon as the status says Staging: no shutdown code runs
        await followRotation((s) => s.rotation?.phase === 'Staging' || (s.epoch ?? 1) > from, 20_000);
        process.kill(pid, 'SIGKILL');
        const s = await overlayStatus();
        killedIn = s.rotation?.phase ?? `no rotation (epoch ${s.epoch})`;
        const t = await tunnels();
        const fps = await secretFingerprints();
        const target = s.rotation?.targetEpoch ?? from + 1;
        stagedAtKill = `${[...t.values()].filter((x) => x.stagedEpoch === target).length}/${nodes.length} agents staged, ${[...fps.values()].filter((m) => m.has(target)).length}/${pairs.length} pairs with epoch-${target} PSKs in the Secrets`;
        await until(
          'the operator to exit',
          () => Promise.resolve(procStart(pid) === undefined || undefined),
          5000,
        ).catch(() => undefined);
        await sleep(1000);
        restartAt = Date.now();
        restartedOperator = startOperatorProcess({
          kubeconfig: resolve(d.dir, 'operator.kubeconfig'),
          logFile: d.operatorLog,
        });
        // Deployment's reaper stops the operator named here if this process dies before afterAll
        if (restartedOperator.pid)
          writeFileSync(pidFile, `${restartedOperator.pid} ${procStart(restartedOperator.pid)}\n`);
        const ended = await followRotation(
          (x) => (!x.rotation && (x.epoch ?? 1) > from) || x.rotation?.phase === 'Backoff',
          RESTART_CONVERGE_MS,
        );
        const settled = await until(
          'every pair encrypted at one epoch',
          async () => {
            const o = await oneEpoch(nodes);
            return o.ok ? o : undefined;
          },
          Math.max(1000, RESTART_CONVERGE_MS - (Date.now() - restartAt)),
        ).catch(async (err: unknown) => {
          throw new Error(`${String(err)}: ${(await oneEpoch(nodes)).why}${logTails()}`);
        });
        return { ended, settled, convergedMs: Date.now() - restartAt };
      });
      const { ended, settled, convergedMs } = run.value;
      report(
        `3: leader Lease held by ${holder ?? '?'}; operator pid ${pid} SIGKILLed in phase ${killedIn} (${stagedAtKill}); restarted; rotation ${ended.status.rotation ? `aborted: ${ended.status.rotation.reason}` : `completed at epoch ${ended.status.epoch}`} (phases after restart ${ended.phases.join(' > ')}); every pair encrypted at epoch ${settled.value.epoch} ${(convergedMs / 1000).toFixed(1)} s after the restart`,
      );
      expect(killedIn).toBe('Staging');
      expect(convergedMs).toBeLessThanOrEqual(RESTART_CONVERGE_MS);
      if (ended.status.rotation) {
        // aborted cleanly: a reason, the old epoch kept everywhere
        expect(ended.status.rotation.reason).toBeTruthy();
        expect(settled.value.epoch).toBe(from);
      } else {
        expect(settled.value.epoch).toBe(from + 1);
      }
      expectCleanUnderlay('3', run.underlay);
      await collectSecrets();
    }),
  180_000,
);

test(
  '4: an agent stopped before a rotation: the rotation goes on without it once its Lease expired; back, it converges and its pairs are encrypted again',
  () =>
    scenario('4', async () => {
      const d = deployment!;
      const victim = nodes[nodes.length - 1]!;
      const live = nodes.filter((n) => n !== victim);
      const from = (await overlayStatus()).epoch ?? 1;
      const keyBefore = (await tunnels()).get(victim)?.publicKey;
      const killedAt = Date.now();
      const killed = await d.killAgent(victim);
      // the operator waits for live agents only: a Lease renewed within its duration
      const expired = await until(
        `the Lease of ${victim} to expire`,
        async () => {
          const l = await leases.readNamespacedLease({
            namespace: KEY_NAMESPACE,
            name: agentLeaseName(victim),
          });
          const renewed = l.spec?.renewTime ? new Date(l.spec.renewTime).getTime() : 0;
          const until = renewed + (l.spec?.leaseDurationSeconds ?? 0) * 1000;
          return Date.now() > until + 1000 ? { renewed, duration: l.spec?.leaseDurationSeconds } : undefined;
        },
        LEASE_EXPIRY_MS,
      );
      report(
        `4: agent of ${victim} killed (pid ${killed}); its Lease (${expired.value.duration} s) expired ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill`,
      );
      const run = await measured(`4 (agent of ${victim} down)`, 50, async () => {
        await sleep(2000);
        await annotate(`down-${Date.now()}`);
        const ended = await followRotation(
          (s) => (!s.rotation && (s.epoch ?? 1) > from) || s.rotation?.phase === 'Backoff',
          ROTATION_MS,
        );
        const liveAt = ended.status.rotation
          ? undefined
          : await until(
              'the live nodes encrypted at the new epoch',
              async () => {
                const o = await oneEpoch(live);
                return o.ok ? o : undefined;
              },
              30_000,
            );
        const returnedAt = Date.now();
        await d.startAgent(victim);
        expect(d.agentPid(victim)).toBeDefined();
        expect(d.agentPid(victim)).not.toBe(killed);
        const back = await until(
          `${victim} to converge and every pair to be encrypted at one epoch`,
          async () => {
            const o = await oneEpoch(nodes);
            return o.ok ? o : undefined;
          },
          RETURN_CONVERGE_MS,
        ).catch(async (err: unknown) => {
          throw new Error(`${String(err)}: ${(await oneEpoch(nodes)).why}${logTails()}`);
        });
        return { ended, liveAt, back, convergeMs: Date.now() - returnedAt };
      });
      const { ended, back, convergeMs } = run.value;
      const liveResults = run.results.filter((r) => r.from !== victim && r.to !== victim);
      const liveGaps = probeTableSummary(liveResults);
      report(
        `4: rotation ${ended.status.rotation ? `aborted: ${ended.status.rotation.reason}` : `completed at epoch ${ended.status.epoch} without ${victim}`} (phases ${ended.phases.join(' > ')}); ${victim}'s agent restarted, every pair encrypted at epoch ${back.value.epoch} ${(convergeMs / 1000).toFixed(1)} s later; pairs among live nodes: max gap ${liveGaps.max} ms, median ${liveGaps.median} ms`,
      );
      if (ended.status.rotation) {
        expect(ended.status.rotation.reason).toBeTruthy();
      } else {
        expect(ended.status.epoch).toBe(from + 1);
        expect(back.value.epoch).toBe(from + 1);
        // the rotation without the stopped node stayed hitless for everyone else
        expect(
          liveResults.filter((r) => r.maxGapMs >= FULL_ROTATION_MAX_GAP_MS).map((r) => `${r.from}->${r.to}`),
        ).toEqual([]);
        // Keys rotation: the returning node took a new key for the new epoch
        const now = (await tunnels()).get(victim)?.publicKey;
        expect(now).not.toBe(keyBefore);
        expect(await devicePublicKey(victim)).toBe(now);
      }
      expect(convergeMs).toBeLessThanOrEqual(RETURN_CONVERGE_MS);
      expectCleanUnderlay('4', run.underlay);
      await collectSecrets();
    }),
  LEASE_EXPIRY_MS + 200_000,
);

function probeTableSummary(results: ProbeResult[]): { max: number; median: number } {
  const gaps = results.map((r) => r.maxGapMs);
  return { max: Math.max(0, ...gaps), median: median(gaps) };
}

test('6: no private key or PSK appears in any API object, Event or log', async () => {
  await collectSecrets();
  const haystacks: Array<[string, string]> = [];
  const dump = (what: string, obj: unknown) => haystacks.push([what, JSON.stringify(obj)]);
  dump(
    'overlaynetworks',
    await custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: OVERLAY_NETWORK_PLURAL }),
  );
  dump(
    'nodetunnels',
    await custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: NODE_TUNNEL_PLURAL }),
  );
  dump('events', await core.listEventForAllNamespaces());
  for (const ns of [KEY_NAMESPACE, SYSTEM_NAMESPACE]) {
    dump(`configmaps in ${ns}`, await core.listNamespacedConfigMap({ namespace: ns }));
    dump(`leases in ${ns}`, await leases.listNamespacedLease({ namespace: ns }));
    const list = await core.listNamespacedSecret({ namespace: ns });
    // Secret data is base64: searched decoded too
    const decoded = list.items.map((s) =>
      Object.fromEntries(
        Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]),
      ),
    );
    dump(`secrets in ${ns}`, { list, decoded });
  }
  dump('nodes', await core.listNode());
  const logs = deployment!.logs();
  haystacks.push(['operator log', logs.operator]);
  for (const [node, log] of Object.entries(logs.nodes)) haystacks.push([`log of ${node}`, log]);

  const found: string[] = [];
  const kinds = new Map<string, number>();
  for (const [b64, what] of secrets) {
    const raw = Buffer.from(b64, 'base64');
    expect(raw.length).toBe(32);
    const kind = what.split(' of ')[0]!;
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    // base64 without its padding, base64url, hex: the ways a key could be written out
    const forms = [
      raw.toString('base64').slice(0, 43),
      raw.toString('base64url').slice(0, 43),
      raw.toString('hex'),
    ];
    for (const [where, text] of haystacks) {
      const lower = text.toLowerCase();
      if (forms.slice(0, 2).some((f) => text.includes(f)) || lower.includes(forms[2]!))
        found.push(`${what} (fingerprint ${fingerprint(new Uint8Array(raw))}) in ${where}`);
    }
  }
  report(
    `6: searched ${[...kinds].map(([k, n]) => `${n} ${k}s`).join(', ')} in ${haystacks.length} dumps (${Math.round(haystacks.reduce((a, [, t]) => a + t.length, 0) / 1024)} KiB): ${found.length} found`,
  );
  expect(kinds.get('PSK') ?? 0).toBeGreaterThan(0);
  expect(kinds.get('private key') ?? 0).toBeGreaterThan(0);
  expect(found).toEqual([]);
}, 60_000);
