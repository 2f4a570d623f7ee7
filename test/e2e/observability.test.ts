// What platform teams watch, proven in the lab (issue #16, "Done when"): each agent's /metrics (scraped inside
// its node, as Prometheus would on the node's address) shows its peers with handshake times and byte counters
// that move while probes run; a joining node's /readyz says ready only once its device is programmed; a peer
// whose inbound traffic is dropped on one side only (a broken receive path, as in cilium#46687) is reported
// Stalled by that side within the window, the pair's Event names it and the remedy tried, and it is Encrypted
// again once traffic comes back.
// Real operator, real agents, real WireGuard. The scenarios build on each other and run in order.
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import {
  API_VERSION,
  GROUP,
  NODE_TUNNEL_PLURAL,
  OVERLAY_NETWORK_KIND,
  OVERLAY_NETWORK_PLURAL,
  VERSION,
  nodeTunnelName,
} from '../../api/v1alpha1/groupversion.js';
import { METRIC_NAMES } from '../../agent/metrics.js';
import { STALL_WINDOW_MS } from '../../agent/stall.js';
import { repoRoot, uniqueName } from '../support/cluster.js';
import { Deployment } from '../support/deploy.js';
import {
  allEncrypted as allEncryptedIn,
  core,
  custom,
  deleteAgentLeases,
  kc,
  logTails,
  removeOverlay,
  scenarios,
  tunnelStatus,
} from '../support/env.js';
import { startPing } from '../support/leak.js';
import { until } from '../support/wait.js';

const overlay = uniqueName('e2e-obs');
const MEMBER_LABEL = 'sealmesh.io/member';
const SETUP_MS = 150_000;
const ENCRYPTED_MS = 180_000;
const MERGE = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

let deployment: Deployment | undefined;
const scenario = scenarios(() => Promise.resolve(logTails(deployment)));
let members: string[] = [];

function report(line: string): void {
  process.stdout.write(`[observability e2e] ${line}\n`);
}

const allEncrypted = () => allEncryptedIn(deployment, overlay, members, ENCRYPTED_MS);

beforeAll(async () => {
  deployment = await Deployment.up({ nodes: 2, kc });
  members = deployment.lab.nodes.map((n) => n.name);
  for (const node of members)
    await core.patchNode({ name: node, body: { metadata: { labels: { [MEMBER_LABEL]: overlay } } } }, MERGE);
  await custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: OVERLAY_NETWORK_PLURAL,
    body: {
      apiVersion: API_VERSION,
      kind: OVERLAY_NETWORK_KIND,
      metadata: { name: overlay },
      spec: { nodeSelector: { matchLabels: { [MEMBER_LABEL]: overlay } }, addressPool: '10.97.0.0/24' },
    },
  });
  await allEncrypted();
}, SETUP_MS + ENCRYPTED_MS);

afterAll(async () => {
  const errors = await removeOverlay(overlay);
  await deployment?.down().catch((err: unknown) => errors.push(String(err)));
  errors.push(...(await deleteAgentLeases(members)));
  if (errors.length) throw new Error(errors.join('\n'));
}, 120_000);

/** GET http://127.0.0.1:<port><path> inside the node (Node's fetch, run in its namespaces): status and body. */
async function get(node: string, port: number, path: string): Promise<{ status: number; body: string }> {
  const script =
    `fetch('http://127.0.0.1:${port}${path}').then(async (r) => console.log(JSON.stringify({ status: r.status, body: await r.text() })),` +
    ` () => console.log(JSON.stringify({ status: 0, body: '' })))`;
  const r = await deployment!.lab.exec(node, [process.execPath, '-e', script], { timeoutMs: 15_000 });
  return JSON.parse(r.stdout.trim() || '{"status":0,"body":""}') as { status: number; body: string };
}

/** The samples of `metric` for `peer` in a Prometheus text exposition. */
function sample(body: string, metric: string, peer: string): number | undefined {
  const line = body
    .split('\n')
    .find(
      (l) => l.startsWith(`${metric}{`) && l.includes(`overlay="${overlay}"`) && l.includes(`peer="${peer}"`),
    );
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

const METRICS_PORT = 9467;
const HEALTH_PORT = 9466;

test(
  "metrics: each agent's /metrics shows every peer with a recent handshake time and byte counters that move while probes run",
  () =>
    scenario('metrics', async () => {
      const d = deployment!;
      const before = new Map<string, string>();
      for (const n of members) before.set(n, (await get(n, METRICS_PORT, '/metrics')).body);
      const pings = members.map((n, i) =>
        startPing(
          d.lab,
          n,
          `10.244.${d.lab.node(members[(i + 1) % members.length]!).index}.1`,
          'b0b0b0b0',
          100,
        ),
      );
      await new Promise((r) => setTimeout(r, 12_000)); // more than the agents' 5 s probe interval, twice
      for (const p of pings) await p.stop();
      for (const n of members) {
        const after = (await get(n, METRICS_PORT, '/metrics')).body;
        for (const peer of members.filter((m) => m !== n)) {
          const hs = sample(after, METRIC_NAMES.handshake, peer);
          const sent = [before.get(n)!, after].map((b) => sample(b, METRIC_NAMES.sent, peer));
          const received = [before.get(n)!, after].map((b) => sample(b, METRIC_NAMES.received, peer));
          const encrypted = after
            .split('\n')
            .find(
              (l) =>
                l.startsWith(`${METRIC_NAMES.state}{`) &&
                l.includes(`peer="${peer}"`) &&
                l.includes('state="Encrypted"'),
            );
          report(
            `metrics: ${n} -> ${peer}: handshake ${hs}, sent ${sent.join(' -> ')}, received ${received.join(' -> ')}`,
          );
          expect(hs).toBeGreaterThan(Date.now() / 1000 - 180);
          expect(sent[1]).toBeGreaterThan(sent[0]!);
          expect(received[1]).toBeGreaterThan(received[0]!);
          expect(encrypted?.endsWith(' 1')).toBe(true);
        }
        expect(after).not.toMatch(/public_key|private|preshared/i);
      }
    }),
  60_000,
);

test(
  "readiness: a joining node's /readyz says ready only once its WireGuard device is programmed",
  () =>
    scenario('readiness', async () => {
      const d = deployment!;
      const added = await d.lab.addNode({ [MEMBER_LABEL]: overlay });
      const seen: number[] = [];
      let device = '';
      await until(
        `${added.name} ready`,
        async () => {
          const r = await get(added.name, HEALTH_PORT, '/readyz');
          if (seen[seen.length - 1] !== r.status) seen.push(r.status);
          if (r.status !== 200) return false;
          device = (await d.lab.exec(added.name, ['wg', 'show', 'interfaces'])).stdout.trim();
          return true;
        },
        ENCRYPTED_MS,
        100,
      );
      report(`readiness: ${added.name} /readyz went ${seen.join(' -> ')}; devices when ready: ${device}`);
      expect(seen).toContain(503);
      expect(device).toMatch(/^sm-/);
      members = [...members, added.name];
      await allEncrypted();
    }),
  ENCRYPTED_MS + 60_000,
);

test(
  "stall: inbound WireGuard traffic from one peer dropped on one node only, while that node keeps sending: it reports the peer Stalled within the window, the pair's Event says so and names the remedy, and the pair is Encrypted again once the drop goes",
  () =>
    scenario('stall', async () => {
      const d = deployment!;
      const [n1, n2] = members as [string, string];
      const spec = (
        (await custom.getClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: NODE_TUNNEL_PLURAL,
          name: nodeTunnelName(overlay, n2),
        })) as { spec: { listenPort: number; address: string } }
      ).spec;
      const from = d.lab.node(n1).underlayIP;
      // n2 drops what n1 sends it (one side only); n2 keeps sending to n1 (pings to n1's tunnel address)
      const block = [
        'add table inet e2estall',
        'add chain inet e2estall in { type filter hook input priority -300; policy accept; }',
        `add rule inet e2estall in ip saddr ${from} udp dport ${spec.listenPort} counter drop`,
      ].join('\n');
      const target = (
        (await custom.getClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: NODE_TUNNEL_PLURAL,
          name: nodeTunnelName(overlay, n1),
        })) as { spec: { address: string } }
      ).spec.address.split('/')[0]!;
      const ping = startPing(d.lab, n2, target, 'a5a5a5a5', 200);
      try {
        const set = await d.lab.exec(n2, ['nft', '-f', '-'], { input: `${block}\n` });
        expect(set.stderr).toBe('');
        const t0 = Date.now();
        const stalled = await until(
          `${n2} to report ${n1} Stalled`,
          async () => {
            const peer = (await tunnelStatus(overlay, n2)).peers?.find((p) => p.node === n1);
            return peer?.state === 'Stalled' ? peer : undefined;
          },
          STALL_WINDOW_MS + 45_000,
          500,
        );
        const after = Date.now() - t0;
        report(
          `stall: ${n2} reports ${n1} Stalled ${(after / 1000).toFixed(1)} s after the drop: ${stalled.message}`,
        );
        expect(stalled.message).toMatch(
          /^nothing received from the peer for 45s while sending to it; the peer was re-created once at /,
        );
        const counted = await d.lab.exec(n2, ['nft', 'list', 'table', 'inet', 'e2estall']);
        expect(counted.stdout).toMatch(/counter packets [1-9]/);
        const event = await until(
          'a PairLostEncryption Event naming the stall',
          async () => {
            const list = await core.listNamespacedEvent({
              namespace: 'default',
              fieldSelector: `involvedObject.name=${overlay}`,
            });
            return list.items.find(
              (e) => e.reason === 'PairLostEncryption' && (e.message ?? '').includes('Stalled'),
            );
          },
          30_000,
          500,
        );
        report(`stall: ${event.message}`);
        expect(event.message).toContain(
          `${n2} receives nothing from ${n1} while sending (Stalled; ${n2} re-created the peer once)`,
        );
        expect(d.logs().nodes[n2]).toContain('peer stalled (nothing received while sending); re-created it');
      } finally {
        await d.lab.exec(n2, ['nft', 'delete', 'table', 'inet', 'e2estall']);
        await ping.stop();
      }
      await until(
        `${n2} to see ${n1} Encrypted again`,
        async () =>
          (await tunnelStatus(overlay, n2)).peers?.find((p) => p.node === n1)?.state === 'Encrypted',
        ENCRYPTED_MS,
        500,
      );
      await allEncrypted();
    }),
  ENCRYPTED_MS + STALL_WINDOW_MS + 120_000,
);

/**
 * PIDs of the processes holding UDP `port` in the node's network namespace (`ss`; the lab runs other socats in
 * every node, the API relay and the stand-in pod, so a process name would not tell ours apart).
 */
function udpHolders(node: string, port: number): number[] {
  const out = execFileSync('ip', ['netns', 'exec', node, 'ss', '-Huanp', `sport = :${port}`], {
    encoding: 'utf8',
  });
  return [...out.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
}

/** PIDs of processes named `comm` in the node's network namespace. */
function pidsIn(node: string, comm: string): number[] {
  return execFileSync('ip', ['netns', 'pids', node], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
    .map(Number)
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === comm;
      } catch {
        return false;
      }
    });
}

test(
  "port: another process holds a node's WireGuard port when its agent (re)creates the device: the NodeTunnel says which port and why, the overlay's Degraded names the node, and it recovers by itself once the port is free",
  () =>
    scenario('port', async () => {
      const d = deployment!;
      const node = members[members.length - 1]!;
      const { listenPort } = (
        (await custom.getClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: NODE_TUNNEL_PLURAL,
          name: nodeTunnelName(overlay, node),
        })) as { spec: { listenPort: number } }
      ).spec;
      // the agent down, its device gone (wireguard-go killed: the device and the port go with it), the port
      // taken meanwhile
      await d.killAgent(node);
      for (const pid of pidsIn(node, 'wireguard-go')) process.kill(pid, 'SIGKILL');
      await until(
        `${node}'s wireguard-go gone`,
        () => Promise.resolve(pidsIn(node, 'wireguard-go').length === 0),
        10_000,
        100,
      );
      await until(
        `socat holding UDP ${listenPort} in ${node}`,
        async () => {
          if (udpHolders(node, listenPort).length > 0) return true;
          await new Promise<void>((done) =>
            execFile(
              'bash',
              [
                `${repoRoot}/hack/lab.sh`,
                'start',
                node,
                'porthog',
                '--',
                'timeout',
                '300',
                'socat',
                '-u',
                `UDP-RECV:${listenPort}`,
                '/dev/null',
              ],
              { env: { ...process.env, SEALMESH_LAB_DIR: d.lab.dir, LAB_QUIET: '1' } },
              () => done(),
            ),
          );
          await new Promise((r) => setTimeout(r, 500));
          return udpHolders(node, listenPort).length > 0;
        },
        20_000,
        100,
      );
      await d.startAgent(node);
      const ready = await until(
        `${node}'s NodeTunnel to say ListenPortInUse`,
        async () => {
          const c = (await tunnelStatus(overlay, node)).conditions?.find((x) => x.type === 'Ready');
          return c?.reason === 'ListenPortInUse' ? c : undefined;
        },
        60_000,
        250,
      );
      report(`port: ${node} Ready=${ready.status} ${ready.reason}: ${ready.message}`);
      expect(ready.status).toBe('False');
      expect(ready.message).toContain(`UDP port ${listenPort} is taken by another process on this node`);
      const degraded = await until(
        "the overlay's Degraded to name the node",
        async () => {
          const o = (await custom.getClusterCustomObject({
            group: GROUP,
            version: VERSION,
            plural: OVERLAY_NETWORK_PLURAL,
            name: overlay,
          })) as {
            status?: {
              conditions?: Array<{ type: string; status: string; reason: string; message: string }>;
            };
          };
          const c = o.status?.conditions?.find((x) => x.type === 'Degraded');
          return c?.reason === 'ListenPortInUse' ? c : undefined;
        },
        60_000,
        250,
      );
      report(`port: overlay Degraded ${degraded.reason}: ${degraded.message}`);
      expect(degraded.message).toContain(`UDP port ${listenPort} taken by another process on ${node}`);
      // the node's pairs are not counted encrypted on the strength of a report from before the device went
      const pairs = await until(
        "the node's pairs not counted encrypted",
        async () => {
          const o = (await custom.getClusterCustomObject({
            group: GROUP,
            version: VERSION,
            plural: OVERLAY_NETWORK_PLURAL,
            name: overlay,
          })) as { status?: { pairs?: { total: number; encrypted: number } } };
          const p = o.status?.pairs;
          return p && p.encrypted < p.total ? p : undefined;
        },
        30_000,
        250,
      );
      report(`port: while the port is held, ${pairs.encrypted}/${pairs.total} pairs encrypted`);
      const peer = members.find((m) => m !== node)!;
      const t0 = Date.now();
      const hog = udpHolders(node, listenPort);
      expect(hog.length).toBeGreaterThan(0);
      for (const pid of hog) expect(readFileSync(`/proc/${pid}/comm`, 'utf8').trim()).toBe('socat');
      for (const pid of hog) process.kill(pid, 'SIGTERM');
      await allEncrypted();
      const mine = await tunnelStatus(overlay, node);
      expect(mine.conditions?.find((x) => x.type === 'Ready')).toMatchObject({
        status: 'True',
        reason: 'Applied',
      });
      report(
        `port: every pair encrypted ${((Date.now() - t0) / 1000).toFixed(1)} s after the port was freed`,
      );
      // traffic, through the device on the port it now holds
      const ping = startPing(d.lab, peer, `10.244.${d.lab.node(node).index}.1`, 'b1b1b1b1', 20);
      await new Promise((r) => setTimeout(r, 3_000));
      const got = await ping.stop();
      report(`port: ${peer} -> ${node}'s pod after recovery: ${got.received}/${got.sent} answered`);
      expect(got.sent).toBeGreaterThan(50);
      expect(got.received).toBeGreaterThan(got.sent * 0.9);
      // wireguard-go holds it (an IPv4 and an IPv6 socket)
      const holders = udpHolders(node, listenPort).map((pid) =>
        readFileSync(`/proc/${pid}/comm`, 'utf8').trim(),
      );
      expect([...new Set(holders)]).toEqual(['wireguard-go']);
      await until(
        'Degraded cleared',
        async () => {
          const o = (await custom.getClusterCustomObject({
            group: GROUP,
            version: VERSION,
            plural: OVERLAY_NETWORK_PLURAL,
            name: overlay,
          })) as { status?: { conditions?: Array<{ type: string; reason: string }> } };
          return o.status?.conditions?.find((x) => x.type === 'Degraded')?.reason !== 'ListenPortInUse';
        },
        60_000,
        250,
      );
    }),
  ENCRYPTED_MS + 120_000,
);
