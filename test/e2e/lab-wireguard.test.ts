// The node lab and the WireGuard device layer for real: a 2-node lab (Node objects in the real API server),
// WgCliDevice on both nodes (node 1 driven from this process through nsenter, node 2 by a script running
// inside the node the way the agent will), pings over the tunnel, and a capture on the underlay bridge that
// must show WireGuard UDP between the nodes and nothing else: no ICMP, no plaintext payload.
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { WgCliDevice } from '../../agent/device/wgcli.js';
import { encodeKey, fingerprint, generateKeyPair, generatePresharedKey } from '../../lib/keys.js';
import { kubeConfig, kubeconfigPath, repoRoot } from '../support/cluster.js';
import { startCapture } from '../support/capture.js';
import { Lab, type LabNode } from '../support/lab.js';

const PORT = 51820;
// The ICMP payload of the overlay pings. Seen on the underlay only if the tunnel leaked plaintext.
const MARKER = '5ea1ed0ca11ab1e5';

const TIMEOUT = 120_000;

let lab: Lab | undefined;
let n1: LabNode;
let n2: LabNode;
let dev1: WgCliDevice;
const key1 = generateKeyPair();
const key2 = generateKeyPair();
const psk = generatePresharedKey();

beforeAll(async () => {
  lab = await Lab.up({ nodes: 2 });
  [n1, n2] = lab.nodes as [LabNode, LabNode];
  dev1 = new WgCliDevice('wg0', { run: lab.runner(n1.name) });
}, 90_000);

afterAll(async () => {
  // down() stops whatever still runs in the nodes (wireguard-go included) and removes every namespace.
  await lab?.down();
}, 90_000);

test(
  'every lab node is a Node object with its underlay address, pod CIDR and lab label',
  async () => {
    const api = kubeConfig().makeApiClient(CoreV1Api);
    const list = await api.listNode({ labelSelector: `sealmesh.io/lab=${lab!.run}` });
    const seen = list.items.map((n) => ({
      name: n.metadata?.name,
      internalIP: n.status?.addresses?.find((a) => a.type === 'InternalIP')?.address,
      podCIDRs: n.spec?.podCIDRs,
    }));
    expect(seen.sort((a, b) => String(a.name).localeCompare(String(b.name)))).toEqual([
      { name: n1.name, internalIP: '198.18.0.2', podCIDRs: ['10.244.1.0/24'] },
      { name: n2.name, internalIP: '198.18.0.3', podCIDRs: ['10.244.2.0/24'] },
    ]);
  },
  TIMEOUT,
);

test(
  'inside a node, the unchanged kubeconfig reaches the API server (relayed from the host)',
  async () => {
    const bin = execFileSync('bash', [resolve(repoRoot, 'hack/kube/build.sh')], { encoding: 'utf8' }).trim();
    const r = await lab!.exec(n2.name, [
      resolve(bin, 'kubectl'),
      '--kubeconfig',
      kubeconfigPath,
      '--request-timeout=10s',
      'get',
      'node',
      n2.name,
      '-o',
      'name',
    ]);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe(`node/${n2.name}`);
  },
  TIMEOUT,
);

test(
  'WireGuard between two nodes: tunnel works, underlay sees only WireGuard UDP, read() shows PSK and handshake',
  async () => {
    const l = lab!;
    // node 1 from here, through nsenter
    await dev1.ensureInterface({
      addresses: ['10.100.0.1/24'],
      listenPort: PORT,
      privateKey: key1.privateKey,
    });
    await dev1.upsertPeer({
      publicKey: key2.publicKey,
      presharedKey: psk,
      endpoint: `${n2.underlayIP}:${PORT}`,
      allowedIPs: ['10.100.0.2/32', n2.podCIDR],
      persistentKeepalive: 25,
    });
    await dev1.syncRoutes([n2.podCIDR]);

    // node 2 from inside the node: keys go in on stdin
    const capture = await startCapture(l);
    const applied = await l.exec(n2.name, ['node', '--import', 'tsx', 'test/e2e/fixtures/wg-apply.ts'], {
      timeoutMs: 60_000,
      input: JSON.stringify({
        name: 'wg0',
        privateKey: encodeKey(key2.privateKey),
        listenPort: PORT,
        addresses: ['10.100.0.2/24'],
        peers: [
          {
            publicKey: key1.publicKey,
            presharedKey: encodeKey(psk),
            endpoint: `${n1.underlayIP}:${PORT}`,
            allowedIPs: ['10.100.0.1/32', n1.podCIDR],
            keepalive: 25,
          },
        ],
        routes: [n1.podCIDR],
      }),
    });
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);
    const inNode = JSON.parse(applied.stdout) as { implementation: string; state: { publicKey: string } };
    expect(inNode.state.publicKey).toBe(key2.publicKey);

    // tunnel addresses and a pod address (10.244.2.1 on node 2's lo) through the tunnel
    const ping1 = await l.exec(n1.name, [
      'ping',
      '-c',
      '3',
      '-i',
      '0.2',
      '-W',
      '2',
      '-p',
      MARKER,
      '10.100.0.2',
    ]);
    expect(ping1.stdout).toContain('3 received');
    const ping2 = await l.exec(n1.name, [
      'ping',
      '-c',
      '2',
      '-i',
      '0.2',
      '-W',
      '2',
      '-p',
      MARKER,
      '10.244.2.1',
    ]);
    expect(ping2.stdout).toContain('2 received');
    const ping3 = await l.exec(n2.name, [
      'ping',
      '-c',
      '2',
      '-i',
      '0.2',
      '-W',
      '2',
      '-p',
      MARKER,
      '10.100.0.1',
    ]);
    expect(ping3.stdout).toContain('2 received');

    const packets = await capture.stop();
    const ip = packets.lines.filter((line) => !/ ARP, /.test(line));
    // handshake (2) + 7 echo requests and replies at least
    expect(ip.length).toBeGreaterThanOrEqual(16);
    const wireguard = new RegExp(
      `^\\S+ IP (${esc(n1.underlayIP)}\\.${PORT} > ${esc(n2.underlayIP)}\\.${PORT}|${esc(n2.underlayIP)}\\.${PORT} > ${esc(n1.underlayIP)}\\.${PORT}): UDP, length \\d+$`,
    );
    expect(ip.filter((line) => !wireguard.test(line))).toEqual([]);
    expect(packets.lines.filter((line) => /ICMP/i.test(line))).toEqual([]);
    expect(packets.raw.includes(Buffer.from(MARKER, 'hex'))).toBe(false);

    // read() back on both sides: the peer, with its PSK (by fingerprint) and a fresh handshake
    const state = await dev1.read();
    expect(state?.publicKey).toBe(key1.publicKey);
    expect(state?.listenPort).toBe(PORT);
    expect(state?.peers).toHaveLength(1);
    const peer = state!.peers[0]!;
    expect(peer).toMatchObject({
      publicKey: key2.publicKey,
      endpoint: `${n2.underlayIP}:${PORT}`,
      allowedIPs: ['10.100.0.2/32', n2.podCIDR],
      presharedKeySet: true,
      presharedKeyFingerprint: fingerprint(psk),
      persistentKeepalive: 25,
    });
    expect(Date.now() - peer.latestHandshake!.getTime()).toBeLessThan(60_000);
    expect(peer.rxBytes).toBeGreaterThan(0);
    expect(peer.txBytes).toBeGreaterThan(0);
    const dev2 = new WgCliDevice('wg0', { run: l.runner(n2.name) });
    const state2 = await dev2.read();
    expect(state2?.peers[0]).toMatchObject({
      publicKey: key1.publicKey,
      presharedKeyFingerprint: fingerprint(psk),
    });
    expect(state2?.peers[0]?.latestHandshake).toBeDefined();

    // wireguard-go's socket sits in each node's private /var/run/wireguard, not the host's
    if (inNode.implementation === 'userspace') {
      expect((await l.exec(n2.name, ['ls', '/var/run/wireguard'])).stdout.trim()).toBe('wg0.sock');
      expect((await l.exec(n1.name, ['ls', '/var/run/wireguard'])).stdout.trim()).toBe('wg0.sock');
    }

    // Positive control: the same marker sent in the clear over the underlay IS seen, so the check above bites.
    const control = await startCapture(l);
    const plain = await l.exec(n1.name, ['ping', '-c', '1', '-W', '2', '-p', MARKER, n2.underlayIP]);
    expect(plain.stdout).toContain('1 received');
    const seen = await control.stop();
    expect(seen.lines.filter((line) => /ICMP echo request/.test(line))).not.toEqual([]);
    expect(seen.raw.includes(Buffer.from(MARKER, 'hex'))).toBe(true);
  },
  TIMEOUT,
);

test(
  'converging again changes nothing; a new PSK applies in place; routes and peers are removable',
  async () => {
    const l = lab!;
    const before = (await dev1.read())!.peers[0]!;
    expect(before.latestHandshake).toBeDefined();
    // the kernel's index of the interface: a device deleted and made again gets a new one
    const ifindex = async () => (await l.exec(n1.name, ['cat', '/sys/class/net/wg0/ifindex'])).stdout.trim();
    const indexBefore = await ifindex();
    expect(indexBefore).toMatch(/^\d+$/);
    await dev1.ensureInterface({
      addresses: ['10.100.0.1/24'],
      listenPort: PORT,
      privateKey: key1.privateKey,
    });
    // the same device, and its private key was not rewritten, so the session (and its handshake time) survived
    expect(await ifindex()).toBe(indexBefore);
    expect((await dev1.read())!.peers[0]!.latestHandshake).toEqual(before.latestHandshake);

    // PSK rotation on one side: the current session keeps working until the next handshake
    const psk2 = generatePresharedKey();
    await dev1.upsertPeer({
      publicKey: key2.publicKey,
      presharedKey: psk2,
      endpoint: `${n2.underlayIP}:${PORT}`,
      allowedIPs: ['10.100.0.2/32', n2.podCIDR],
      persistentKeepalive: 25,
    });
    expect((await dev1.read())!.peers[0]).toMatchObject({ presharedKeyFingerprint: fingerprint(psk2) });
    expect((await l.exec(n1.name, ['ping', '-c', '1', '-W', '2', '10.100.0.2'])).stdout).toContain(
      '1 received',
    );

    // no PSK: removed
    await dev1.upsertPeer({ publicKey: key2.publicKey, allowedIPs: ['10.100.0.2/32'] });
    const noPsk = (await dev1.read())!.peers[0]!;
    expect(noPsk.presharedKeySet).toBe(false);
    expect(noPsk.presharedKeyFingerprint).toBeUndefined();
    expect(noPsk.allowedIPs).toEqual(['10.100.0.2/32']);
    expect(noPsk.endpoint).toBe(`${n2.underlayIP}:${PORT}`); // kept when not given

    expect(await dev1.ownedRoutes()).toEqual([n2.podCIDR]);
    await dev1.syncRoutes([]);
    expect(await dev1.ownedRoutes()).toEqual([]);
    // the interface's own connected route is not ours and stays
    expect((await l.exec(n1.name, ['ip', 'route', 'show', 'dev', 'wg0'])).stdout).toContain('10.100.0.0/24');

    await dev1.removePeer(key2.publicKey);
    expect((await dev1.read())!.peers).toEqual([]);

    await dev1.delete();
    expect(await dev1.read()).toBeUndefined();
    expect((await l.exec(n1.name, ['ls', '/var/run/wireguard'])).stdout.trim()).toBe('');
    await dev1.delete(); // idempotent
  },
  TIMEOUT,
);

test(
  'add-node: a third node joins the running lab',
  async () => {
    const l = lab!;
    const n3 = await l.addNode();
    expect(n3).toMatchObject({ index: 3, underlayIP: '198.18.0.4', podCIDR: '10.244.3.0/24' });
    expect((await l.exec(n3.name, ['ping', '-c', '1', '-W', '2', n1.underlayIP])).stdout).toContain(
      '1 received',
    );
    const api = kubeConfig().makeApiClient(CoreV1Api);
    const node = await api.readNode({ name: n3.name });
    expect(node.status?.addresses).toContainEqual({ type: 'InternalIP', address: '198.18.0.4' });
  },
  TIMEOUT,
);

function esc(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
