// WgCliDevice against a scripted `ip`/`wg`: which commands it runs, that keys reach `wg` only through 0600
// files that are gone afterwards, and how `wg show dump` is parsed. The real tools are exercised by
// test/e2e/lab-wireguard.test.ts.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { encodeKey, fingerprint, generateKeyPair, generatePresharedKey } from '../../lib/keys.js';
import { CommandError, WgCliDevice, normalizePrefix, parseDump, type CommandRunner } from './wgcli.js';

interface KeyFileSeen {
  content: string;
  mode: number;
  dirMode: number;
  path: string;
}

/** Just enough of a Linux host with `ip` and `wg` for WgCliDevice's commands. */
class ScriptedHost {
  calls: string[][] = [];
  keyFiles: KeyFileSeen[] = [];
  exists = false;
  kernel = false;
  addresses: string[] = [];
  /** sealmesh's routing table */
  routes: string[] = [];
  /** routes of this device in the main table (left by earlier versions) */
  mainRoutes: string[] = [];
  rules: { family: string }[] = [];
  listenPort = 0;
  privateKey = '(none)';
  publicKey = '(none)';
  peers = new Map<string, { psk: string; endpoint: string; allowed: string; keepalive: string }>();

  run: CommandRunner = async (argv) => {
    await Promise.resolve();
    this.calls.push([...argv]);
    const cmd = argv.join(' ');
    const fail = (stderr: string): never => {
      throw new CommandError(argv, stderr, 1);
    };
    const ok = (stdout = '') => ({ stdout, stderr: '' });

    if (cmd === 'ip link show dev wg0')
      return this.exists ? ok('4: wg0: <POINTOPOINT>') : fail('Device "wg0" does not exist.');
    if (cmd === 'ip link add dev wg0 type wireguard') {
      if (!this.kernel) fail('Error: Unknown device type.');
      this.exists = true;
      return ok();
    }
    if (cmd === 'setsid env -u LOG_LEVEL -u WG_PROCESS_FOREGROUND wireguard-go wg0') {
      this.exists = true;
      return ok();
    }
    if (cmd === 'ip link del dev wg0') {
      this.exists = false;
      return ok();
    }
    if (cmd.startsWith('test -S ')) return fail('');
    if (/^ip link set dev wg0 (mtu \d+|up)$/.test(cmd)) return ok();
    if (cmd === 'ip -j addr show dev wg0') {
      const addr_info = this.addresses.map((a) => ({
        local: a.split('/')[0],
        prefixlen: Number(a.split('/')[1]),
      }));
      return ok(JSON.stringify([{ ifname: 'wg0', addr_info }]));
    }
    if (argv[0] === 'ip' && argv[1] === 'addr' && argv[4] === 'dev') {
      const addr = argv[3]!;
      this.addresses =
        argv[2] === 'add' ? [...this.addresses, addr] : this.addresses.filter((a) => a !== addr);
      return ok();
    }
    if (argv[0] === 'ip' && argv[1] === '-j' && argv[3] === 'rule') {
      return ok(
        JSON.stringify(this.rules.filter((r) => r.family === argv[2]).map(() => ({ table: '51820' }))),
      );
    }
    if (argv[0] === 'ip' && argv[2] === 'rule' && argv[3] === 'add') {
      this.rules.push({ family: argv[1]! });
      return ok();
    }
    if (argv[0] === 'ip' && argv[1] === '-j' && argv[3] === 'route') {
      const v6 = argv[2] === '-6';
      const list = argv.at(-1) === 'main' ? this.mainRoutes : this.routes;
      return ok(
        JSON.stringify(
          list.filter((r) => r.includes(':') === v6).map((r) => ({ dst: r.replace(/\/32$/, '') })),
        ),
      );
    }
    if (argv[0] === 'ip' && argv[2] === 'route') {
      const prefix = argv[4]!;
      if (argv.at(-1) === 'main') {
        this.mainRoutes = this.mainRoutes.filter((r) => r !== prefix);
        return ok();
      }
      this.routes = this.routes.filter((r) => r !== prefix);
      if (argv[3] === 'replace') this.routes.push(prefix);
      return ok();
    }
    if (cmd === 'wg show wg0 dump') {
      const head = [this.privateKey, this.publicKey, String(this.listenPort), 'off'].join('\t');
      const peers = [...this.peers].map(([pub, p]) =>
        [pub, p.psk, p.endpoint, p.allowed || '(none)', '0', '0', '0', p.keepalive].join('\t'),
      );
      return ok([head, ...peers].join('\n') + '\n');
    }
    if (argv[0] === 'wg' && argv[1] === 'set') return this.wgSet(argv.slice(3));
    return fail(`scripted host: unexpected command ${cmd}`);
  };

  private readKeyFile(path: string): string {
    if (path === '/dev/null') return '(none)';
    const seen = {
      path,
      content: readFileSync(path, 'utf8'),
      mode: statSync(path).mode & 0o777,
      dirMode: statSync(dirname(path)).mode & 0o777,
    };
    this.keyFiles.push(seen);
    return seen.content.trim();
  }

  private wgSet(args: string[]): CommandResult {
    let i = 0;
    while (i < args.length && args[i] !== 'peer') {
      const [k, v] = [args[i]!, args[i + 1]!];
      if (k === 'listen-port') this.listenPort = Number(v);
      if (k === 'private-key') this.privateKey = this.readKeyFile(v);
      i += 2;
    }
    if (args[i] === 'peer') {
      const pub = args[i + 1]!;
      if (args[i + 2] === 'remove') {
        this.peers.delete(pub);
        return { stdout: '', stderr: '' };
      }
      const p = this.peers.get(pub) ?? { psk: '(none)', endpoint: '(none)', allowed: '', keepalive: 'off' };
      for (let j = i + 2; j < args.length; j += 2) {
        const [k, v] = [args[j]!, args[j + 1]!];
        if (k === 'preshared-key') p.psk = this.readKeyFile(v);
        if (k === 'endpoint') p.endpoint = v;
        if (k === 'allowed-ips') p.allowed = v;
        if (k === 'persistent-keepalive') p.keepalive = v;
      }
      this.peers.set(pub, p);
    }
    return { stdout: '', stderr: '' };
  }
}
type CommandResult = { stdout: string; stderr: string };

const self = generateKeyPair();
const peer = generateKeyPair();
const psk = generatePresharedKey();

function newDevice(host: ScriptedHost): WgCliDevice {
  return new WgCliDevice('wg0', { run: host.run, keyDir: '/tmp' });
}

function allArgs(host: ScriptedHost): string {
  return host.calls.map((c) => c.join(' ')).join('\n');
}

describe('ensureInterface', () => {
  test('falls back to wireguard-go without kernel support, then converges the interface', async () => {
    const host = new ScriptedHost();
    const dev = newDevice(host);
    await dev.ensureInterface({
      addresses: ['10.100.0.1/24'],
      mtu: 1420,
      listenPort: 51820,
      privateKey: self.privateKey,
    });

    expect(dev.implementation).toBe('userspace');
    expect(host.calls.map((c) => c.join(' '))).toEqual([
      'ip link show dev wg0',
      'ip link add dev wg0 type wireguard',
      'setsid env -u LOG_LEVEL -u WG_PROCESS_FOREGROUND wireguard-go wg0',
      'ip link show dev wg0',
      'ip link set dev wg0 mtu 1420',
      'ip -j addr show dev wg0',
      'ip addr add 10.100.0.1/24 dev wg0',
      'ip link show dev wg0',
      'wg show wg0 dump',
      `wg set wg0 listen-port 51820 private-key ${host.keyFiles[0]!.path}`,
      'ip link set dev wg0 up',
    ]);
    expect(host.privateKey).toBe(encodeKey(self.privateKey));
  });

  test('uses kernel WireGuard when the kernel has it', async () => {
    const host = new ScriptedHost();
    host.kernel = true;
    const dev = newDevice(host);
    await dev.ensureInterface({ addresses: [], listenPort: 51820, privateKey: self.privateKey });
    expect(dev.implementation).toBe('kernel');
    expect(allArgs(host)).not.toContain('wireguard-go');
  });

  test('the private key reaches wg only as a 0600 file in a 0700 directory, removed afterwards', async () => {
    const host = new ScriptedHost();
    await newDevice(host).ensureInterface({ addresses: [], listenPort: 1, privateKey: self.privateKey });
    expect(host.keyFiles).toHaveLength(1);
    const file = host.keyFiles[0]!;
    expect(file.content).toBe(`${encodeKey(self.privateKey)}\n`);
    expect(file.mode).toBe(0o600);
    expect(file.dirMode).toBe(0o700);
    expect(existsSync(file.path)).toBe(false);
    expect(existsSync(dirname(file.path))).toBe(false);
    expect(allArgs(host)).not.toContain(encodeKey(self.privateKey));
  });

  test('converging an unchanged device rewrites neither key nor port, and drops stray addresses', async () => {
    const host = new ScriptedHost();
    const dev = newDevice(host);
    const config = { addresses: ['10.100.0.1/24'], listenPort: 51820, privateKey: self.privateKey };
    await dev.ensureInterface(config);
    host.publicKey = self.publicKey; // what wg reports once a private key is set
    host.addresses.push('10.99.0.1/16');
    host.calls = [];
    await dev.ensureInterface(config);
    expect(allArgs(host)).not.toMatch(/wg set/);
    expect(host.calls.map((c) => c.join(' '))).toContain('ip addr del 10.99.0.1/16 dev wg0');
    expect(host.addresses).toEqual(['10.100.0.1/24']);
  });

  test('refuses invalid input before running anything', async () => {
    const host = new ScriptedHost();
    const dev = newDevice(host);
    await expect(
      dev.ensureInterface({ addresses: [], listenPort: 1, privateKey: new Uint8Array(32) }),
    ).rejects.toThrow(/all zero/);
    await expect(
      dev.ensureInterface({ addresses: ['10.0.0.1/33'], listenPort: 1, privateKey: self.privateKey }),
    ).rejects.toThrow(/invalid CIDR/);
    await expect(
      dev.ensureInterface({ addresses: [], listenPort: 70000, privateKey: self.privateKey }),
    ).rejects.toThrow(/listen port/);
    expect(host.calls).toEqual([]);
    expect(() => new WgCliDevice('a-name-that-is-too-long')).toThrow(/invalid interface name/);
  });
});

describe('peers', () => {
  async function ready(): Promise<[ScriptedHost, WgCliDevice]> {
    const host = new ScriptedHost();
    const dev = newDevice(host);
    await dev.ensureInterface({
      addresses: ['10.100.0.1/24'],
      listenPort: 51820,
      privateKey: self.privateKey,
    });
    host.publicKey = self.publicKey;
    host.calls = [];
    host.keyFiles = [];
    return [host, dev];
  }

  test('upsertPeer hands the PSK over as a file and normalizes allowed IPs', async () => {
    const [host, dev] = await ready();
    await dev.upsertPeer({
      publicKey: peer.publicKey,
      presharedKey: psk,
      endpoint: '198.18.0.3:51820',
      allowedIPs: ['10.100.0.2/32', '10.244.2.7/24'],
      persistentKeepalive: 25,
    });
    const path = host.keyFiles[0]!.path;
    expect(host.calls).toEqual([
      [
        'wg',
        'set',
        'wg0',
        'peer',
        peer.publicKey,
        'preshared-key',
        path,
        'endpoint',
        '198.18.0.3:51820',
        'persistent-keepalive',
        '25',
        'allowed-ips',
        '10.100.0.2/32,10.244.2.0/24',
      ],
    ]);
    expect(host.keyFiles[0]!.mode).toBe(0o600);
    expect(existsSync(path)).toBe(false);
    expect(allArgs(host)).not.toContain(encodeKey(psk));

    const state = await dev.read();
    expect(state?.peers).toEqual([
      {
        publicKey: peer.publicKey,
        endpoint: '198.18.0.3:51820',
        allowedIPs: ['10.100.0.2/32', '10.244.2.0/24'],
        rxBytes: 0,
        txBytes: 0,
        persistentKeepalive: 25,
        presharedKeySet: true,
        presharedKeyFingerprint: fingerprint(psk),
      },
    ]);
  });

  test('without a PSK or keepalive: /dev/null removes the PSK, keepalive off, endpoint left alone', async () => {
    const [host, dev] = await ready();
    await dev.upsertPeer({ publicKey: peer.publicKey, allowedIPs: [] });
    expect(host.calls[0]).toEqual([
      'wg',
      'set',
      'wg0',
      'peer',
      peer.publicKey,
      'preshared-key',
      '/dev/null',
      'persistent-keepalive',
      'off',
      'allowed-ips',
      '',
    ]);
    expect((await dev.read())?.peers[0]?.presharedKeySet).toBe(false);
  });

  test('removePeer and invalid peer keys', async () => {
    const [host, dev] = await ready();
    await dev.upsertPeer({ publicKey: peer.publicKey, allowedIPs: [] });
    await dev.removePeer(peer.publicKey);
    expect(host.calls.at(-1)).toEqual(['wg', 'set', 'wg0', 'peer', peer.publicKey, 'remove']);
    await expect(dev.upsertPeer({ publicKey: 'nope', allowedIPs: [] })).rejects.toThrow(/peer public key/);
    await expect(
      dev.upsertPeer({ publicKey: peer.publicKey, presharedKey: new Uint8Array(16), allowedIPs: [] }),
    ).rejects.toThrow(/must be 32 bytes/);
  });

  test('setPrivateKey writes the new key through a file', async () => {
    const [host, dev] = await ready();
    const next = generateKeyPair();
    await dev.setPrivateKey(next.privateKey);
    expect(host.privateKey).toBe(encodeKey(next.privateKey));
    expect(allArgs(host)).not.toContain(encodeKey(next.privateKey));
  });
});

describe('syncRoutes', () => {
  test('adds the wanted routes to the sealmesh table behind its rule and removes only its own stale ones', async () => {
    const host = new ScriptedHost();
    host.exists = true;
    host.routes = ['10.244.9.0/24'];
    host.mainRoutes = ['10.244.7.0/24'];
    const dev = newDevice(host);
    await dev.syncRoutes(['10.244.2.0/24', '10.100.0.2', 'fd00:244:3::/64']);
    const mutations = host.calls
      .filter((c) => c.includes('replace') || c.includes('del') || c.includes('add'))
      .map((c) => c.join(' '));
    expect(mutations).toEqual([
      'ip -4 rule add pref 5210 lookup 51820',
      'ip -6 rule add pref 5210 lookup 51820',
      'ip -4 route replace 10.244.2.0/24 dev wg0 proto 83 table 51820',
      'ip -4 route replace 10.100.0.2/32 dev wg0 proto 83 table 51820',
      'ip -6 route replace fd00:244:3::/64 dev wg0 proto 83 table 51820',
      'ip -4 route del 10.244.9.0/24 dev wg0 proto 83 table 51820',
      // an earlier version's route in the main table (marked as ours) goes
      'ip -4 route del 10.244.7.0/24 dev wg0 proto 83 table main',
    ]);
    // a second sync finds the rules in place
    host.calls = [];
    await dev.syncRoutes(['10.244.2.0/24']);
    expect(host.calls.filter((c) => c.includes('rule') && c.includes('add'))).toEqual([]);
    expect((await dev.ownedRoutes()).sort()).toEqual(['10.244.2.0/24']);
    expect(host.mainRoutes).toEqual([]);
  });
});

describe('delete', () => {
  test('removes an existing interface and is a no-op otherwise', async () => {
    const host = new ScriptedHost();
    host.exists = true;
    const dev = newDevice(host);
    await dev.delete();
    expect(host.exists).toBe(false);
    host.calls = [];
    await dev.delete();
    expect(host.calls).toEqual([['ip', 'link', 'show', 'dev', 'wg0']]);
    expect(await dev.read()).toBeUndefined();
  });
});

describe('parseDump', () => {
  const priv = encodeKey(generateKeyPair().privateKey);
  const other = generateKeyPair();
  const dump = [
    [priv, self.publicKey, '51820', 'off'].join('\t'),
    [
      peer.publicKey,
      encodeKey(psk),
      '198.18.0.3:51820',
      '10.100.0.2/32,10.244.2.0/24',
      '1763700000',
      '1234',
      '5678',
      '25',
    ].join('\t'),
    [other.publicKey, '(none)', '(none)', '(none)', '0', '0', '0', 'off'].join('\t'),
  ].join('\n');

  test('reads the interface and every peer', () => {
    const state = parseDump('wg0', `${dump}\n`);
    expect(state.name).toBe('wg0');
    expect(state.publicKey).toBe(self.publicKey);
    expect(state.listenPort).toBe(51820);
    expect(state.peers[0]).toEqual({
      publicKey: peer.publicKey,
      endpoint: '198.18.0.3:51820',
      allowedIPs: ['10.100.0.2/32', '10.244.2.0/24'],
      latestHandshake: new Date(1763700000 * 1000),
      rxBytes: 1234,
      txBytes: 5678,
      persistentKeepalive: 25,
      presharedKeySet: true,
      presharedKeyFingerprint: fingerprint(psk),
    });
    expect(state.peers[1]).toEqual({
      publicKey: other.publicKey,
      allowedIPs: [],
      rxBytes: 0,
      txBytes: 0,
      presharedKeySet: false,
    });
  });

  test('keeps no secret: neither the private key nor the PSK is in the result', () => {
    const out = JSON.stringify(parseDump('wg0', dump));
    expect(out).not.toContain(priv);
    expect(out).not.toContain(encodeKey(psk));
  });

  test('an interface without a key', () => {
    expect(parseDump('wg0', '(none)\t(none)\t0\toff\n')).toEqual({ name: 'wg0', listenPort: 0, peers: [] });
  });

  test.each([
    ['empty output', ''],
    ['short peer line', `(none)\t(none)\t0\toff\n${peer.publicKey}\t(none)`],
  ])('rejects %s', (_name, text) => {
    expect(() => parseDump('wg0', text)).toThrow(/unexpected 'wg show wg0 dump' output/);
  });
});

describe('normalizePrefix', () => {
  test.each([
    ['10.244.2.7/24', '10.244.2.0/24'],
    ['10.100.0.2', '10.100.0.2/32'],
    ['fd00:0:0::1/64', 'fd00::/64'],
    ['fd00::1', 'fd00::1/128'],
  ])('%s -> %s', (input, expected) => {
    expect(normalizePrefix(input)).toBe(expected);
  });
});
