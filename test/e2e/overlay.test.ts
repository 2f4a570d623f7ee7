// The whole of sealmesh for real: config/ (namespaces, CRDs, RBAC) applied, the operator as a process and one
// agent inside every lab node, each authenticating as its own service account, real WireGuard (wireguard-go)
// between network namespaces. One overlay, then: every pair encrypted and pinging with only WireGuard UDP on
// the underlay; a fifth node joins; a node leaves (label removed) and vanishes from every device; an agent is
// killed with SIGKILL and restarted while traffic flows. The scenarios build on each other and run in order.
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import {
  API_VERSION,
  GROUP,
  NODE_TUNNEL_PLURAL,
  OVERLAY_LABEL,
  OVERLAY_NETWORK_KIND,
  OVERLAY_NETWORK_PLURAL,
  VERSION,
  nodeTunnelName,
} from '../../api/v1alpha1/groupversion.js';
import { agentLeaseName } from '../../lib/contract/liveness.js';
import { KEY_NAMESPACE, kubectl } from '../../hack/deploy/deploy.js';
import { describeUnderlay, expectCleanUnderlay, startCapture, watchUnderlay } from '../support/capture.js';
import { kubeconfigPath, uniqueName } from '../support/cluster.js';
import { Deployment } from '../support/deploy.js';
import {
  allEncrypted as allEncryptedIn,
  core,
  custom,
  deleteAgentLeases,
  kc,
  leases,
  removeOverlay,
  scenarios,
} from '../support/env.js';

const overlay = uniqueName('e2e-ovl');
/** The overlay selects nodes carrying this label (= the overlay's name); scenario c removes it from one. */
const MEMBER_LABEL = 'sealmesh.io/member';
const PORT = 51820;
/** ICMP payload of every overlay ping: seen on the underlay only if the tunnel leaked plaintext. */
const MARKER = '5ea1ed0ca11ab1e5';

// Bounds (the machine has 2 shared cores; agents start through tsx).
const SETUP_MS = 150_000;
const ALL_ENCRYPTED_MS = 180_000;
const JOIN_MS = 120_000;
const LEAVE_MS = 60_000;
const RECOVER_MS = 90_000;
/** Most ping loss tolerated across an agent's SIGKILL and restart: the device lives on in wireguard-go. */
const MAX_LOSS_PERCENT = 5;

let deployment: Deployment | undefined;
const scenario = scenarios();
/** the nodes currently in the overlay */
let members: string[] = [];

async function label(node: string, value: string | null): Promise<void> {
  await core.patchNode(
    { name: node, body: { metadata: { labels: { [MEMBER_LABEL]: value } } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
}

async function tunnelAddress(node: string): Promise<string> {
  const t = (await custom.getClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: NODE_TUNNEL_PLURAL,
    name: nodeTunnelName(overlay, node),
  })) as { spec: { address: string } };
  return t.spec.address.split('/')[0]!;
}

const allEncrypted = (nodes: string[], timeoutMs: number) =>
  allEncryptedIn(deployment, overlay, nodes, timeoutMs);

/** `wg show all <what>` inside a node: lines of "interface<TAB>value...". */
async function wgShow(node: string, what: 'peers' | 'public-key'): Promise<string[]> {
  const r = await deployment!.lab.exec(node, ['wg', 'show', 'all', what]);
  if (r.code !== 0) throw new Error(`wg show all ${what} in ${node} failed: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => l.split('\t').slice(1).join('\t'));
}

async function publicKey(node: string): Promise<string> {
  const keys = await wgShow(node, 'public-key');
  if (keys.length !== 1) throw new Error(`${node} has ${keys.length} WireGuard interfaces, expected 1`);
  return keys[0]!;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  while (!(await check())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
  return Date.now() - t0;
}

function report(line: string): void {
  process.stdout.write(`[overlay e2e] ${line}\n`);
}

beforeAll(async () => {
  deployment = await Deployment.up({ nodes: 4, kc });
  members = deployment.lab.nodes.map((n) => n.name);
  for (const node of members) await label(node, overlay);
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
        addressPool: '10.98.0.0/24',
        listenPort: PORT,
      },
    },
  });
}, SETUP_MS);

afterAll(async () => {
  // The overlay goes while the operator and agents still run, so they remove what they made; an operator
  // that died cannot drop its finalizer, so after a bound the test does.
  const errors = await removeOverlay(overlay);
  // stops the operator and the lab (agents, wireguard-go, namespaces, Node objects) even if the above failed
  await deployment?.down().catch((err: unknown) => errors.push(String(err)));
  // the agents' liveness Leases outlive them (agents may not delete Leases): the test removes its own
  errors.push(...(await deleteAgentLeases((deployment?.lab.nodes ?? []).map((n) => n.name))));
  if (errors.length) throw new Error(errors.join('\n'));
}, 120_000);

/** The WireGuard interface of the node: its name and kernel index (a re-created device gets a new index). */
async function wgInterface(node: string): Promise<{ name: string; index: number }> {
  const names = (await deployment!.lab.exec(node, ['wg', 'show', 'interfaces'])).stdout.trim().split(/\s+/);
  if (names.length !== 1 || !names[0])
    throw new Error(`${node} has WireGuard interfaces '${names.join(' ')}'`);
  const r = await deployment!.lab.exec(node, ['cat', `/sys/class/net/${names[0]}/ifindex`]);
  if (r.code !== 0) throw new Error(`ifindex of ${names[0]} in ${node}: ${r.stderr.trim()}`);
  return { name: names[0], index: Number(r.stdout.trim()) };
}

/** Runs a scenario with the underlay captured all along; the verdict is reported and asserted clean. */
async function captured(name: string, body: () => Promise<void>, minWireGuard = 1): Promise<void> {
  const { underlay } = await watchUnderlay(deployment!.lab, { port: PORT, marker: MARKER }, body);
  report(`${name}: ${describeUnderlay(underlay)}`);
  expectCleanUnderlay(underlay, minWireGuard);
}

test(
  `a: 4 nodes, all 6 pairs encrypted within ${ALL_ENCRYPTED_MS / 1000} s; every node pings every other through the tunnel and the underlay carries only WireGuard UDP`,
  () =>
    scenario('a', async () => {
      const d = deployment!;
      const ms = await allEncrypted(members, ALL_ENCRYPTED_MS);
      report(
        `a: 6/6 pairs encrypted ${(ms / 1000).toFixed(1)} s after the overlay was created (bound ${ALL_ENCRYPTED_MS / 1000} s)`,
      );

      // kubectl get nodetunnels: 3/3 encrypted peers on every node
      const table = (
        await kubectl(kubeconfigPath, ['get', 'nodetunnels', '-l', `${OVERLAY_LABEL}=${overlay}`])
      )
        .trim()
        .split('\n');
      const header = table[0]!.split(/\s+/);
      const peersCol = header.indexOf('PEERS');
      const nodeCol = header.indexOf('NODE');
      expect(peersCol).toBeGreaterThan(0);
      const peers: Record<string, string> = Object.fromEntries(
        table.slice(1).map((row): [string, string] => {
          const cells = row.split(/\s+/);
          return [cells[nodeCol] ?? '?', cells[peersCol] ?? '?'];
        }),
      );
      expect(peers).toEqual(Object.fromEntries(members.map((n) => [n, '3/3'])));

      const addresses = new Map<string, string>();
      for (const n of members) addresses.set(n, await tunnelAddress(n));
      expect(new Set(addresses.values()).size).toBe(members.length);

      const capture = await startCapture(d.lab);
      // every node pings every other node's tunnel address (12 ordered pairs), one source node at a time
      const failed: string[] = [];
      for (const from of members) {
        const results = await Promise.all(
          members
            .filter((to) => to !== from)
            .map(async (to) => {
              const r = await d.lab.exec(from, [
                'ping',
                '-c',
                '3',
                '-i',
                '0.2',
                '-W',
                '2',
                '-p',
                MARKER,
                addresses.get(to)!,
              ]);
              return { to, ok: r.stdout.includes('3 received'), out: r.stdout + r.stderr };
            }),
        );
        for (const r of results) if (!r.ok) failed.push(`${from} -> ${r.to}: ${r.out.trim()}`);
      }
      const packets = await capture.stop();
      expect(failed).toEqual([]);

      const ips = d.lab.nodes.map((n) => n.underlayIP.replace(/\./g, '\\.')).join('|');
      const wireguard = new RegExp(`^\\S+ IP (${ips})\\.${PORT} > (${ips})\\.${PORT}: UDP, length \\d+$`);
      const ip = packets.lines.filter((line) => !/ ARP, /.test(line));
      // at least the 36 echo requests and 36 replies, each one WireGuard datagram
      expect(ip.filter((line) => wireguard.test(line)).length).toBeGreaterThanOrEqual(72);
      expect(ip.filter((line) => !wireguard.test(line))).toEqual([]);
      expect(packets.lines.filter((line) => /ICMP/i.test(line))).toEqual([]);
      expect(packets.raw.includes(Buffer.from(MARKER, 'hex'))).toBe(false);

      // positive control: the marker sent in the clear over the underlay is seen, so the checks above bite
      const control = await startCapture(d.lab);
      const [n1, n2] = d.lab.nodes;
      const plain = await d.lab.exec(n1!.name, ['ping', '-c', '1', '-W', '2', '-p', MARKER, n2!.underlayIP]);
      expect(plain.stdout).toContain('1 received');
      const seen = await control.stop();
      expect(seen.raw.includes(Buffer.from(MARKER, 'hex'))).toBe(true);
    }),
  ALL_ENCRYPTED_MS + 60_000,
);

test(
  `b: a fifth node joins (lab.sh add-node) and all 10 pairs are encrypted within ${JOIN_MS / 1000} s; the underlay carries only WireGuard UDP`,
  () =>
    scenario('b', () =>
      captured('b', async () => {
        const d = deployment!;
        const t0 = Date.now();
        const n5 = await d.lab.addNode();
        await label(n5.name, overlay);
        members = [...members, n5.name];
        await allEncrypted(members, JOIN_MS);
        report(
          `b: ${n5.name} joined; 10/10 pairs encrypted ${((Date.now() - t0) / 1000).toFixed(1)} s after add-node (bound ${JOIN_MS / 1000} s)`,
        );
        const peers = await wgShow(n5.name, 'peers');
        expect(peers).toHaveLength(4);
        // the new node pings every other member through the tunnel, with the marker as payload
        for (const to of members.filter((n) => n !== n5.name)) {
          const r = await d.lab.exec(n5.name, [
            'ping',
            '-c',
            '2',
            '-i',
            '0.2',
            '-W',
            '2',
            '-p',
            MARKER,
            await tunnelAddress(to),
          ]);
          expect(`${to}: ${r.stdout.includes('2 received') ? 'answered' : r.stdout}`).toBe(`${to}: answered`);
        }
      }),
    ),
  JOIN_MS + 90_000,
);

test(
  `c: removing a node's ${MEMBER_LABEL} label removes it from every peer's device within ${LEAVE_MS / 1000} s; the underlay carries only WireGuard UDP`,
  () =>
    scenario('c', () =>
      captured('c', async () => {
        const leaving = members[1]!;
        const key = await publicKey(leaving);
        const others = members.filter((n) => n !== leaving);
        // before: every other node has it as a peer (so the check after means something)
        for (const n of others) expect(await wgShow(n, 'peers')).toContain(key);

        await label(leaving, null);
        members = others;
        const ms = await until(
          `${leaving}'s public key to vanish from ${others.join(', ')}`,
          async () => {
            for (const n of others) if ((await wgShow(n, 'peers')).includes(key)) return false;
            return true;
          },
          LEAVE_MS,
        );
        report(
          `c: ${leaving} gone from every peer's device ${(ms / 1000).toFixed(1)} s after its label was removed`,
        );
        for (const n of others) expect(await wgShow(n, 'peers')).toHaveLength(others.length - 1);
        // not asserted (beyond this issue): whether the leaving node's agent removed its own device
        const own = await deployment!.lab.exec(leaving, ['wg', 'show', 'interfaces']);
        report(`c: ${leaving}'s own WireGuard interfaces afterwards: '${own.stdout.trim()}'`);
        await allEncrypted(members, LEAVE_MS);
        // the remaining members still reach each other through the tunnel
        const [x, y] = members as [string, string];
        const r = await deployment!.lab.exec(x, [
          'ping',
          '-c',
          '2',
          '-i',
          '0.2',
          '-W',
          '2',
          '-p',
          MARKER,
          await tunnelAddress(y),
        ]);
        expect(r.stdout).toContain('2 received');
      }),
    ),
  LEAVE_MS * 2 + 60_000,
);

test(
  `d: SIGKILL of an agent and its restart lose at most ${MAX_LOSS_PERCENT}% of pings through the tunnel; the device is adopted, not re-created; all pairs encrypted again within ${RECOVER_MS / 1000} s`,
  () =>
    scenario('d', () =>
      captured('d', async () => {
        const d = deployment!;
        const [from, victim] = members as [string, string];
        const target = await tunnelAddress(victim);
        const keyBefore = await publicKey(victim);
        const deviceBefore = await wgInterface(victim);
        // 100 pings at 0.2 s: about 20 s of traffic across the kill (at ~2 s) and the restart (at ~5 s)
        const pingStart = Date.now();
        const pinging = d.lab.exec(
          from,
          ['ping', '-c', '100', '-i', '0.2', '-W', '1', '-p', MARKER, target],
          {
            timeoutMs: 60_000,
          },
        );
        await new Promise((r) => setTimeout(r, 2000));
        const killed = await d.killAgent(victim);
        await new Promise((r) => setTimeout(r, 3000));
        const restartedAt = Date.now();
        await d.startAgent(victim);
        const restarted = d.agentPid(victim);
        expect(restarted).toBeDefined();
        expect(restarted).not.toBe(killed);
        const r = await pinging;
        const pingEnd = Date.now();
        const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
        expect(m).not.toBeNull();
        const sent = Number(m![1]);
        const received = Number(m![2]);
        const loss = ((sent - received) / sent) * 100;
        report(
          `d: agent of ${victim} killed (pid ${killed}) and restarted (pid ${restarted}); ping ${from} -> ${victim}: ${received}/${sent} received, ${loss.toFixed(1)}% loss; kill and restart ${((restartedAt - pingStart) / 1000).toFixed(1)} s into ${((pingEnd - pingStart) / 1000).toFixed(1)} s of pings`,
        );
        // the kill and the restart fell inside the pings, with pings after the restart
        expect(pingEnd - restartedAt).toBeGreaterThan(5000);
        expect(sent).toBe(100);
        expect(loss).toBeLessThanOrEqual(MAX_LOSS_PERCENT);

        // the new agent is live: it renewed its Lease (as the agent service account) after the restart
        await until(
          `the restarted agent of ${victim} to renew its Lease`,
          async () => {
            const lease = await leases.readNamespacedLease({
              namespace: KEY_NAMESPACE,
              name: agentLeaseName(victim),
            });
            const renewed = lease.spec?.renewTime ? new Date(lease.spec.renewTime).getTime() : 0;
            return renewed >= restartedAt - 1000;
          },
          RECOVER_MS,
        );
        const ms = await allEncrypted(members, RECOVER_MS);
        report(
          `d: ${(members.length * (members.length - 1)) / 2} pairs encrypted again ${(ms / 1000).toFixed(1)} s after the ping loop`,
        );
        // the restarted agent still runs and adopted the device instead of re-creating it: the same interface
        // (a new one would have a new kernel index) with the same key
        expect(d.agentPid(victim)).toBe(restarted);
        expect(await wgInterface(victim)).toEqual(deviceBefore);
        expect(await publicKey(victim)).toBe(keyBefore);
        report(
          `d: ${victim}'s device ${deviceBefore.name} kept its index ${deviceBefore.index} across the restart`,
        );
      }),
    ),
  RECOVER_MS + 120_000,
);

test('no API request of the operator or an agent was refused: config/rbac grants what they use', () => {
  const logs = deployment!.logs();
  const forbidden = [
    ...logs.operator
      .split('\n')
      .filter((l) => /forbidden|HTTP 403/i.test(l))
      .map((l) => `operator: ${l.slice(0, 400)}`),
    ...Object.entries(logs.nodes).flatMap(([node, log]) =>
      log
        .split('\n')
        .filter((l) => /forbidden|HTTP 403/i.test(l))
        .map((l) => `${node}: ${l.slice(0, 400)}`),
    ),
  ];
  expect(forbidden).toEqual([]);
});
