// Fail-closed, proven on the underlay (issue 13; ../shared/DESIGN.md, "Fail-closed data plane"): lab nodes
// have a default route out of their underlay interface and a stand-in pod address (hack/lab.sh), so a packet
// to a pod CIDR that the tunnel does not take leaves in the clear, and a capture on the underlay bridge sees
// it. Every scenario probes a stand-in pod address at 20/s with the underlay captured throughout, and counts
// plaintext packets to or from a pod CIDR or a tunnel address: zero in FailClosed, some in Monitor (the
// control: the test can fail). The scenarios build on each other and run in order.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { OverlayRulesState } from '../../agent/firewall/firewall.js';
import { NftFirewall } from '../../agent/firewall/nft.js';
import { KEY_NAMESPACE } from '../../hack/deploy/deploy.js';
import { keySecretName } from '../../lib/contract/keysecret.js';
import {
  API_VERSION,
  GROUP,
  OVERLAY_NETWORK_KIND,
  OVERLAY_NETWORK_PLURAL,
  VERSION,
} from '../../api/v1alpha1/groupversion.js';
import { startCapture } from '../support/capture.js';
import { uniqueName } from '../support/cluster.js';
import { Deployment } from '../support/deploy.js';
import {
  allEncrypted as allEncryptedIn,
  core,
  custom,
  deleteAgentLeases,
  kc,
  removeOverlay,
  scenarios,
} from '../support/env.js';
import { countPlaintext, startPing, startTcpProbe, type Plaintext } from '../support/leak.js';
import { until } from '../support/wait.js';

const overlay = uniqueName('e2e-fc');
const MEMBER_LABEL = 'sealmesh.io/member';
const ADDRESS_POOL = '10.95.0.0/24';
/** the lab's pod range (hack/lab.sh: node i has 10.244.i.0/24), declared protected for the overlay */
const POD_RANGE = '10.244.0.0/16';
const PROTECTED = [POD_RANGE, ADDRESS_POOL];
const MARKER = 'fa11c105edfa11c1';

const SETUP_MS = 150_000;
const ENCRYPTED_MS = 180_000;
const JOIN_MS = 150_000;

let deployment: Deployment | undefined;
const scenario = scenarios();
let members: string[] = [];

function report(line: string): void {
  process.stdout.write(`[failclosed e2e] ${line}\n`);
}

async function label(node: string, value: string | null): Promise<void> {
  await core.patchNode(
    { name: node, body: { metadata: { labels: { [MEMBER_LABEL]: value } } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
}

const allEncrypted = (nodes: string[], timeoutMs: number) =>
  allEncryptedIn(deployment, overlay, nodes, timeoutMs);

/** The stand-in pod address of lab node `index` (hack/lab.sh): the first address of its pod CIDR. */
function podAddress(index: number): string {
  return `10.244.${index}.1`;
}

/**
 * Runs `body` with the underlay captured and `from` pinging `to`'s stand-in pod address at 20/s throughout;
 * the plaintext packets to or from a protected range and the ping's own counts.
 */
async function probed(
  name: string,
  from: string,
  to: string,
  body: () => Promise<void>,
): Promise<{ plaintext: Plaintext; sent: number; received: number }> {
  const lab = deployment!.lab;
  const capture = await startCapture(lab, 300);
  const ping = startPing(lab, from, to, MARKER);
  const tcp = startTcpProbe(lab, from, to);
  let counted: { sent: number; received: number };
  let connections: { sent: number; received: number };
  try {
    await body();
    await new Promise((r) => setTimeout(r, 3000)); // probes through the tunnel after the change
  } finally {
    counted = await ping.stop();
    connections = await tcp.stop();
  }
  const captured = await capture.stop();
  const plaintext = countPlaintext(captured.lines, PROTECTED);
  report(
    `${name}: ${counted.sent} pings ${from} -> ${to}, ${counted.received} answered; ` +
      `${connections.sent} TCP connections, ${connections.received} answered; ` +
      `plaintext on the underlay: ${plaintext.total} (ICMP ${plaintext.icmp}, TCP ${plaintext.tcp}, UDP ${plaintext.udp}, other ${plaintext.other})` +
      (plaintext.sample.length ? `; e.g. ${plaintext.sample.join(' | ')}` : ''),
  );
  return { plaintext, ...counted };
}

beforeAll(async () => {
  deployment = await Deployment.up({ nodes: 2, kc });
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
        addressPool: ADDRESS_POOL,
        dataPlane: { protectedRanges: [POD_RANGE] },
      },
    },
  });
  await allEncrypted(members, ENCRYPTED_MS);
}, SETUP_MS + ENCRYPTED_MS);

afterAll(async () => {
  const errors = await removeOverlay(overlay);
  await deployment?.down().catch((err: unknown) => errors.push(String(err)));
  errors.push(...(await deleteAgentLeases((deployment?.lab.nodes ?? []).map((n) => n.name))));
  if (errors.length) throw new Error(errors.join('\n'));
}, 120_000);

test(
  'a: a node joins, probed at 20/s from its first moment: no plaintext to or from a pod CIDR or tunnel address on the underlay, and the probes get through once the pair is encrypted',
  () =>
    scenario('a', async () => {
      const d = deployment!;
      const [n1] = members as [string];
      const joinerIndex = Math.max(...d.lab.nodes.map((n) => n.index)) + 1;
      const r = await probed('a (join)', n1, podAddress(joinerIndex), async () => {
        const t0 = Date.now();
        const added = await d.lab.addNode();
        expect(added.index).toBe(joinerIndex);
        const joiner = added.name;
        await label(joiner, overlay);
        members = [...members, joiner];
        await allEncrypted(members, JOIN_MS);
        report(
          `a: ${joiner} joined, all pairs encrypted ${((Date.now() - t0) / 1000).toFixed(1)} s after add-node`,
        );
      });
      expect(r.sent).toBeGreaterThan(20);
      expect(r.received).toBeGreaterThan(0);
      expect(r.plaintext.sample).toEqual([]);
      expect(r.plaintext.total).toBe(0);
    }),
  JOIN_MS + 60_000,
);

/** `nft -j list table inet sealmesh` inside a node, through the agent's own reader: rules per device. */
async function rulesIn(node: string) {
  return new NftFirewall({ run: deployment!.lab.runner(node) }).read();
}

async function setMode(mode: 'FailClosed' | 'Monitor'): Promise<void> {
  await custom.patchClusterCustomObject(
    {
      group: GROUP,
      version: VERSION,
      plural: OVERLAY_NETWORK_PLURAL,
      name: overlay,
      body: { spec: { dataPlane: { mode, protectedRanges: [POD_RANGE] } } },
    },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
}

/** The rules of the node's one overlay (undefined: no table or no overlay in it). */
async function overlayRules(node: string): Promise<OverlayRulesState | undefined> {
  const all = await rulesIn(node);
  return all ? [...all.values()][0] : undefined;
}

/** PIDs of processes named `comm` in the node's network namespace (ip netns pids). */
function pidsIn(node: string, comm: string): number[] {
  const out: number[] = [];
  const pids = execFileSync('ip', ['netns', 'pids', node], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
    .map(Number);
  for (const pid of pids) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === comm) out.push(pid);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

test(
  'b: the agent SIGKILLed and restarted while its node is probed at 20/s: the rules stay (nft list), no plaintext on the underlay',
  () =>
    scenario('b', async () => {
      const d = deployment!;
      const [n1, n2] = members as [string, string];
      const r = await probed('b (agent SIGKILL)', n1, podAddress(d.lab.node(n2).index), async () => {
        await new Promise((x) => setTimeout(x, 1000));
        const killed = await d.killAgent(n2);
        const after = await rulesIn(n2);
        report(
          `b: agent ${killed} of ${n2} killed; its rules: ${JSON.stringify([...(after ?? new Map()).values()])}`,
        );
        expect(after?.size).toBe(1);
        expect([...after!.values()][0]).toMatchObject({ mode: 'FailClosed' });
        await new Promise((x) => setTimeout(x, 3000));
        await d.startAgent(n2);
        await allEncrypted(members, JOIN_MS);
      });
      expect(r.received).toBeGreaterThan(0);
      expect(r.plaintext.sample).toEqual([]);
      expect(r.plaintext.total).toBe(0);
    }),
  JOIN_MS + 60_000,
);

test(
  'c: wireguard-go killed on the probing node (the device is gone with its routes): no plaintext on the underlay; the agent re-creates the device',
  () =>
    scenario('c', async () => {
      const d = deployment!;
      const [n1, n2] = members as [string, string];
      const r = await probed('c (wireguard-go killed)', n1, podAddress(d.lab.node(n2).index), async () => {
        await new Promise((x) => setTimeout(x, 1000));
        const pids = pidsIn(n1, 'wireguard-go');
        expect(pids.length).toBe(1);
        process.kill(pids[0]!, 'SIGKILL');
        report(`c: wireguard-go ${pids[0]} of ${n1} killed`);
        await until(
          `${n1}'s device to be re-created`,
          () => Promise.resolve(pidsIn(n1, 'wireguard-go').some((pid) => pid !== pids[0])),
          JOIN_MS,
          250,
        );
        await new Promise((x) => setTimeout(x, 2000));
        await allEncrypted(members, JOIN_MS);
      });
      const matched = (await overlayRules(n1))?.matched;
      report(`c: ${n1}'s rules matched ${matched?.packets} packets so far`);
      expect(matched?.packets).toBeGreaterThan(0);
      expect(r.received).toBeGreaterThan(0);
      expect(r.plaintext.sample).toEqual([]);
      expect(r.plaintext.total).toBe(0);
    }),
  JOIN_MS + 60_000,
);

test(
  'd (control): in Monitor mode the same join shows plaintext on the underlay, and the counter counts it',
  () =>
    scenario('d', async () => {
      const d = deployment!;
      const [n1] = members as [string];
      await setMode('Monitor');
      await until(
        `${n1}'s rules in Monitor mode`,
        async () => (await overlayRules(n1))?.mode === 'Monitor',
        60_000,
        250,
      );
      const joinerIndex = Math.max(...d.lab.nodes.map((n) => n.index)) + 1;
      const r = await probed('d (join, Monitor)', n1, podAddress(joinerIndex), async () => {
        const added = await d.lab.addNode();
        await label(added.name, overlay);
        members = [...members, added.name];
        await allEncrypted(members, JOIN_MS);
      });
      const matched = (await overlayRules(n1))?.matched;
      report(`d: ${n1}'s Monitor rules counted ${matched?.packets} packets`);
      expect(r.plaintext.total).toBeGreaterThan(0);
      expect(matched?.packets).toBeGreaterThan(0);
      // back to the default for the scenarios after this one
      await setMode('FailClosed');
      await until(
        `${n1}'s rules back in FailClosed mode`,
        async () => (await overlayRules(n1))?.mode === 'FailClosed',
        60_000,
        250,
      );
    }),
  JOIN_MS + 90_000,
);

test(
  'e: the WireGuard UDP port blocked on one node for 10 s while it is probed at 20/s: no plaintext on the underlay; probes get through again after',
  () =>
    scenario('e', async () => {
      const d = deployment!;
      const [n1, n2] = members as [string, string];
      // a table of the test's own in n2, removed afterwards
      const block = [
        'add table inet e2eblock',
        'add chain inet e2eblock in { type filter hook input priority -300; policy accept; }',
        'add chain inet e2eblock out { type filter hook output priority -300; policy accept; }',
        'add rule inet e2eblock in udp dport 51820 drop',
        'add rule inet e2eblock out udp sport 51820 drop',
      ].join('\n');
      const r = await probed('e (UDP blocked)', n1, podAddress(d.lab.node(n2).index), async () => {
        await new Promise((x) => setTimeout(x, 1000));
        const set = await d.lab.exec(n2, ['nft', '-f', '-'], { input: `${block}\n` });
        expect(set.stderr).toBe('');
        await new Promise((x) => setTimeout(x, 10_000));
        const unset = await d.lab.exec(n2, ['nft', 'delete', 'table', 'inet', 'e2eblock']);
        expect(unset.code).toBe(0);
        await allEncrypted(members, JOIN_MS);
      });
      expect(r.received).toBeGreaterThan(0);
      expect(r.plaintext.sample).toEqual([]);
      expect(r.plaintext.total).toBe(0);
    }),
  JOIN_MS + 60_000,
);

test(
  'f: a node leaves the overlay (label removed), probed at 20/s until every peer removed it and after: no plaintext on the underlay; its own table goes with its last overlay',
  () =>
    scenario('f', async () => {
      const d = deployment!;
      const [n1, leaving] = members as [string, string];
      const others = members.filter((n) => n !== leaving);
      const key = (await d.lab.exec(leaving, ['wg', 'show', 'all', 'public-key'])).stdout
        .trim()
        .split('\t')[1];
      expect(key).toBeTruthy();
      const r = await probed('f (leave)', n1, podAddress(d.lab.node(leaving).index), async () => {
        await new Promise((x) => setTimeout(x, 1000));
        await label(leaving, null);
        members = others;
        await until(
          `${leaving} to vanish from every other member's device`,
          async () => {
            for (const n of others) {
              const peers = await d.lab.exec(n, ['wg', 'show', 'all', 'peers']);
              if (peers.stdout.includes(key!)) return false;
            }
            return true;
          },
          JOIN_MS,
          250,
        );
        await until(
          `${leaving}'s table to go`,
          async () => (await rulesIn(leaving)) === undefined,
          60_000,
          250,
        );
      });
      expect(r.plaintext.sample).toEqual([]);
      expect(r.plaintext.total).toBe(0);
      const rules = await d.lab.exec(leaving, ['ip', 'rule', 'show']);
      expect(rules.stdout).not.toContain('51820');
    }),
  JOIN_MS + 90_000,
);

test(
  "g: a node's key Secret deleted (the operator replaces it at a new epoch and every pair re-keys) while it is probed at 20/s: no plaintext on the underlay",
  () =>
    scenario('g', async () => {
      const d = deployment!;
      const [n1] = members as [string];
      const victim = members[members.length - 1]!;
      const epochOf = async (): Promise<number> => {
        const o = (await custom.getClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: OVERLAY_NETWORK_PLURAL,
          name: overlay,
        })) as { status?: { epoch?: number } };
        return o.status?.epoch ?? 0;
      };
      const before = await epochOf();
      const r = await probed('g (key Secret deleted)', n1, podAddress(d.lab.node(victim).index), async () => {
        await new Promise((x) => setTimeout(x, 1000));
        const stem = `${keySecretName(overlay, victim)}.e`;
        const secrets = await core.listNamespacedSecret({ namespace: KEY_NAMESPACE });
        const names = secrets.items.map((x) => x.metadata?.name ?? '').filter((n) => n.startsWith(stem));
        expect(names.length).toBeGreaterThan(0);
        for (const name of names) await core.deleteNamespacedSecret({ namespace: KEY_NAMESPACE, name });
        await until('a new epoch', async () => (await epochOf()) > before, JOIN_MS, 250);
        await allEncrypted(members, JOIN_MS);
        report(
          `g: ${names.join(', ')} deleted; epoch ${before} -> ${await epochOf()}, every pair encrypted again`,
        );
      });
      expect(r.received).toBeGreaterThan(0);
      expect(r.plaintext.sample).toEqual([]);
      expect(r.plaintext.total).toBe(0);
    }),
  JOIN_MS * 2 + 60_000,
);

test(
  'h: the uninstall (sealmesh-agent --uninstall) leaves no table, rule, route or device of sealmesh behind',
  () =>
    scenario('h', async () => {
      const d = deployment!;
      const n = members[members.length - 1]!;
      await d.killAgent(n);
      expect(await rulesIn(n)).toBeDefined();
      const r = await d.lab.exec(n, [process.execPath, '--import', 'tsx', 'agent/main.ts', '--uninstall'], {
        timeoutMs: 60_000,
      });
      report(`h: uninstall in ${n}: ${r.stdout.trim().replace(/\n/g, '; ')}`);
      expect(r.code).toBe(0);
      expect(await rulesIn(n)).toBeUndefined();
      const rules = await d.lab.exec(n, ['ip', 'rule', 'show']);
      expect(rules.stdout).not.toContain('51820');
      const routes = await d.lab.exec(n, ['ip', 'route', 'show', 'table', 'all']);
      expect(routes.stdout).not.toMatch(/table 51820|proto 83/);
      const links = await d.lab.exec(n, ['ip', '-br', 'link', 'show']);
      expect(links.stdout).not.toMatch(/^sm-/m);
      expect(pidsIn(n, 'wireguard-go')).toEqual([]);
    }),
  120_000,
);
