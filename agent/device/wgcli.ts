// WireGuardDevice on top of the `ip` and `wg` command-line tools. Kernel WireGuard when `ip link add type
// wireguard` works, else wireguard-go (a daemon with its control socket at /var/run/wireguard/<if>.sock; in
// a lab node that directory is private to the node's mount namespace: a directory of the lab bound over it).
//
// Key material never goes on a command line (every user can read /proc/*/cmdline): it is written to 0600
// files in a fresh 0700 directory (on tmpfs where there is one), handed to `wg` by path and removed right
// after. `wg show dump` prints the private key and PSKs, so its output is parsed in place and never kept or
// logged; errors carry the command line (paths, public keys) and `wg`'s stderr, never stdout.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ipaddr from 'ipaddr.js';
import { decodePublicKey, fingerprint, publicKeyOf, validateKey } from '../../lib/keys.js';
import {
  validateInterfaceName,
  type DeviceImplementation,
  type DeviceState,
  type InterfaceConfig,
  type PeerConfig,
  type PeerState,
  type WireGuardDevice,
} from './device.js';
import { ensureRule, ROUTE_TABLE } from './policy.js';

export interface CommandResult {
  stdout: string;
  stderr: string;
}

/** Runs argv (no shell). Rejects with CommandError on a non-zero exit or timeout. */
export type CommandRunner = (argv: readonly string[]) => Promise<CommandResult>;

export class CommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly stderr: string,
    readonly exitCode: number | string | undefined,
  ) {
    super(`${argv.join(' ')} failed (exit ${String(exitCode)}): ${stderr.trim() || 'no error output'}`);
  }
}

export interface LocalRunnerOptions {
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

/** Runs commands in this process's namespaces. */
export function localRunner(options: LocalRunnerOptions = {}): CommandRunner {
  const timeout = options.timeoutMs ?? 15_000;
  return (argv) =>
    new Promise((resolve, reject) => {
      const [file, ...args] = argv;
      if (file === undefined) {
        reject(new Error('empty command'));
        return;
      }
      execFile(
        file,
        args,
        { timeout, killSignal: 'SIGKILL', env: options.env ?? process.env, maxBuffer: 16 << 20 },
        (err, stdout, stderr) => {
          if (err) {
            const code = (err as NodeJS.ErrnoException & { code?: number | string }).code;
            reject(new CommandError(argv, err.killed ? `timed out after ${timeout} ms` : stderr, code));
            return;
          }
          resolve({ stdout, stderr });
        },
      );
    });
}

/**
 * Runs commands inside other namespaces through nsenter (e.g. a lab node: `/run/netns/<node>` and its mount
 * namespace file). Key files are still written by this process, so `keyDir` must be visible in the target
 * mount namespace (a lab node's is a copy of the host's, so /dev/shm is).
 */
export function nsenterRunner(
  netns: string,
  mountns?: string,
  base: CommandRunner = localRunner(),
): CommandRunner {
  const prefix = ['nsenter', `--net=${netns}`, ...(mountns ? [`--mount=${mountns}`] : []), '--'];
  return (argv) => base([...prefix, ...argv]);
}

export interface WgCliDeviceOptions {
  run?: CommandRunner;
  /** `auto` (default): kernel if `ip link add type wireguard` works, else userspace. */
  implementation?: DeviceImplementation | 'auto';
  wireguardGo?: string;
  /** where the short-lived key files go; default /dev/shm (tmpfs) if present, else the OS temp dir */
  keyDir?: string;
  /** wireguard-go's socket directory (only used to wait for a deleted userspace device to go away) */
  socketDir?: string;
}

/**
 * The route protocol number that marks routes this device owns (`ip route` shows `proto 83`). Unassigned in
 * iproute2's rt_protos, so no routing daemon's routes are mistaken for ours.
 */
export const ROUTE_PROTO = '83';

export class WgCliDevice implements WireGuardDevice {
  readonly name: string;
  private readonly run: CommandRunner;
  private readonly wanted: DeviceImplementation | 'auto';
  private readonly wireguardGo: string;
  private readonly keyDir: string;
  private readonly socketDir: string;
  private chosen: DeviceImplementation | undefined;

  constructor(name: string, options: WgCliDeviceOptions = {}) {
    this.name = validateInterfaceName(name);
    this.run = options.run ?? localRunner();
    this.wanted = options.implementation ?? 'auto';
    this.wireguardGo = options.wireguardGo ?? 'wireguard-go';
    this.keyDir = options.keyDir ?? (existsSync('/dev/shm') ? '/dev/shm' : tmpdir());
    this.socketDir = options.socketDir ?? '/var/run/wireguard';
  }

  /** Which implementation created the interface (undefined until this object created one). */
  get implementation(): DeviceImplementation | undefined {
    return this.chosen;
  }

  async ensureInterface(config: InterfaceConfig): Promise<void> {
    validateKey(config.privateKey, `private key for ${this.name}`);
    const addresses = config.addresses.map(normalizeInterfaceAddress);
    if (!Number.isInteger(config.listenPort) || config.listenPort < 0 || config.listenPort > 65535) {
      throw new Error(`invalid listen port ${config.listenPort} for ${this.name}`);
    }
    if (!(await this.exists())) {
      await this.create();
    }
    if (config.mtu !== undefined) {
      await this.run(['ip', 'link', 'set', 'dev', this.name, 'mtu', String(config.mtu)]);
    }
    await this.syncAddresses(addresses);

    const current = await this.read();
    const args: string[] = [];
    if (current?.listenPort !== config.listenPort) {
      args.push('listen-port', String(config.listenPort));
    }
    // Rewriting an unchanged private key would still be harmless for WireGuard, but skipping it keeps
    // ensureInterface a no-op when nothing changed.
    if (current?.publicKey !== publicKeyOf(config.privateKey)) {
      await this.withKeyFile(config.privateKey, (path) =>
        this.run(['wg', 'set', this.name, ...args, 'private-key', path]),
      );
    } else if (args.length > 0) {
      await this.run(['wg', 'set', this.name, ...args]);
    }
    await this.run(['ip', 'link', 'set', 'dev', this.name, 'up']);
  }

  async setPrivateKey(privateKey: Uint8Array): Promise<void> {
    validateKey(privateKey, `private key for ${this.name}`);
    await this.withKeyFile(privateKey, (path) => this.run(['wg', 'set', this.name, 'private-key', path]));
  }

  async upsertPeer(peer: PeerConfig): Promise<void> {
    decodePublicKey(peer.publicKey, 'peer public key');
    const allowed = peer.allowedIPs.map(normalizePrefix);
    const keepalive = peer.persistentKeepalive ?? 0;
    if (!Number.isInteger(keepalive) || keepalive < 0 || keepalive > 65535) {
      throw new Error(`invalid persistent keepalive ${keepalive} for peer ${fingerprint(peer.publicKey)}`);
    }
    const set = (pskPath: string) =>
      this.run([
        'wg',
        'set',
        this.name,
        'peer',
        peer.publicKey,
        // An empty file (/dev/null) removes the PSK: a peer has exactly one, or none.
        'preshared-key',
        pskPath,
        ...(peer.endpoint ? ['endpoint', peer.endpoint] : []),
        'persistent-keepalive',
        keepalive === 0 ? 'off' : String(keepalive),
        'allowed-ips',
        allowed.join(','),
      ]);
    if (peer.presharedKey) {
      validateKey(peer.presharedKey, `pre-shared key for peer ${fingerprint(peer.publicKey)}`);
      await this.withKeyFile(peer.presharedKey, set);
    } else {
      await set('/dev/null');
    }
  }

  async removePeer(publicKey: string): Promise<void> {
    decodePublicKey(publicKey, 'peer public key');
    await this.run(['wg', 'set', this.name, 'peer', publicKey, 'remove']);
  }

  async read(): Promise<DeviceState | undefined> {
    if (!(await this.exists())) {
      return undefined;
    }
    const { stdout } = await this.run(['wg', 'show', this.name, 'dump']);
    return parseDump(this.name, stdout);
  }

  async syncRoutes(prefixes: string[]): Promise<void> {
    const wanted = new Set(prefixes.map(normalizePrefix));
    const have = await this.ownedRoutes();
    for (const family of new Set([...wanted].map(familyFlag))) await ensureRule(this.run, family);
    for (const prefix of wanted) {
      await this.run(['ip', familyFlag(prefix), 'route', 'replace', prefix, ...this.routeOf()]);
    }
    for (const prefix of have) {
      if (!wanted.has(prefix))
        await this.run(['ip', familyFlag(prefix), 'route', 'del', prefix, ...this.routeOf()]);
    }
    // Earlier versions put their routes into the main table (the CNI's): those go, now that ours are elsewhere.
    for (const prefix of await this.ownedRoutes('main')) {
      await this.run(['ip', familyFlag(prefix), 'route', 'del', prefix, ...this.routeOf('main')]);
    }
  }

  /** `dev <if> proto 83 table <table>`: what marks a route as this device's. */
  private routeOf(table = ROUTE_TABLE): string[] {
    return ['dev', this.name, 'proto', ROUTE_PROTO, 'table', table];
  }

  /** The routes through this interface that syncRoutes owns (in sealmesh's table), as normalized prefixes. */
  async ownedRoutes(table = ROUTE_TABLE): Promise<string[]> {
    if (!(await this.exists())) {
      return [];
    }
    const out: string[] = [];
    for (const family of ['-4', '-6'] as const) {
      let stdout: string;
      try {
        ({ stdout } = await this.run(['ip', '-j', family, 'route', 'show', ...this.routeOf(table)]));
      } catch (err) {
        // a table nothing was ever added to does not exist yet
        if (err instanceof CommandError && /FIB table does not exist/i.test(err.stderr)) continue;
        throw err;
      }
      for (const r of parseJson<{ dst?: string }[]>(stdout, 'ip route show')) {
        if (r.dst && r.dst !== 'default') {
          out.push(normalizePrefix(r.dst.includes('/') ? r.dst : `${r.dst}/${family === '-4' ? 32 : 128}`));
        }
      }
    }
    return out;
  }

  async delete(): Promise<void> {
    if (!(await this.exists())) {
      return;
    }
    await this.run(['ip', 'link', 'del', 'dev', this.name]);
    // wireguard-go notices its tun device is gone and exits; until its socket is gone, a new wireguard-go
    // for the same name would find the name taken.
    const sock = join(this.socketDir, `${this.name}.sock`);
    for (let i = 0; i < 50 && (await this.socketPresent(sock)); i++) {
      await sleep(100);
    }
  }

  private async socketPresent(sock: string): Promise<boolean> {
    try {
      await this.run(['test', '-S', sock]);
      return true;
    } catch {
      return false;
    }
  }

  private async exists(): Promise<boolean> {
    try {
      await this.run(['ip', 'link', 'show', 'dev', this.name]);
      return true;
    } catch (err) {
      if (err instanceof CommandError && /does not exist|Cannot find device/i.test(err.stderr)) {
        return false;
      }
      throw err;
    }
  }

  private async create(): Promise<void> {
    if (this.wanted !== 'userspace') {
      try {
        await this.run(['ip', 'link', 'add', 'dev', this.name, 'type', 'wireguard']);
        this.chosen = 'kernel';
        return;
      } catch (err) {
        if (this.wanted === 'kernel') {
          throw new Error(`cannot create kernel WireGuard interface ${this.name}: ${errorMessage(err)}`, {
            cause: err,
          });
        }
      }
    }
    // wireguard-go creates the tun device and its socket, then forks into the background and returns. In its
    // own session, so the device outlives a restart of this process like a kernel device would. Without
    // LOG_LEVEL: with it the daemon keeps our stdout open and the call never ends.
    await this.run([
      'setsid',
      'env',
      '-u',
      'LOG_LEVEL',
      '-u',
      'WG_PROCESS_FOREGROUND',
      this.wireguardGo,
      this.name,
    ]);
    this.chosen = 'userspace';
    if (!(await this.exists())) {
      throw new Error(`${this.wireguardGo} ${this.name} returned but the interface does not exist`);
    }
  }

  private async syncAddresses(wanted: string[]): Promise<void> {
    const { stdout } = await this.run(['ip', '-j', 'addr', 'show', 'dev', this.name]);
    const links = parseJson<{ addr_info?: { local?: string; prefixlen?: number; scope?: string }[] }[]>(
      stdout,
      'ip addr show',
    );
    const have = new Set<string>();
    for (const a of links[0]?.addr_info ?? []) {
      if (a.local && a.prefixlen !== undefined && a.scope !== 'link') {
        have.add(normalizeInterfaceAddress(`${a.local}/${a.prefixlen}`));
      }
    }
    for (const addr of wanted) {
      if (!have.has(addr)) {
        await this.run(['ip', 'addr', 'add', addr, 'dev', this.name]);
      }
    }
    for (const addr of have) {
      if (!wanted.includes(addr)) {
        await this.run(['ip', 'addr', 'del', addr, 'dev', this.name]);
      }
    }
  }

  /** Hands `key` to `fn` as the path of a 0600 file in a fresh 0700 directory, removed afterwards. */
  private async withKeyFile<T>(key: Uint8Array, fn: (path: string) => Promise<T>): Promise<T> {
    const dir = await mkdtemp(join(this.keyDir, 'sealmesh-wg-'));
    try {
      const path = join(dir, 'key');
      await writeFile(path, `${Buffer.from(key).toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
      return await fn(path);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

/**
 * Parses `wg show <if> dump`. Line 1: private-key public-key listen-port fwmark; then per peer: public-key
 * preshared-key endpoint allowed-ips latest-handshake rx tx keepalive, tab-separated. The private key is
 * skipped and the PSK reduced to its fingerprint here, so no secret leaves this function.
 */
export function parseDump(name: string, dump: string): DeviceState {
  const lines = dump.split('\n').filter((l) => l.length > 0);
  const head = lines[0]?.split('\t');
  if (!head || head.length < 4) {
    throw new Error(`unexpected 'wg show ${name} dump' output: no interface line`);
  }
  const state: DeviceState = {
    name,
    listenPort: Number(head[2]),
    peers: [],
  };
  if (head[1] && head[1] !== '(none)') {
    state.publicKey = head[1];
  }
  for (const [i, line] of lines.slice(1).entries()) {
    const f = line.split('\t');
    if (f.length < 8) {
      throw new Error(`unexpected 'wg show ${name} dump' output: peer line ${i + 1} has ${f.length} fields`);
    }
    const [publicKey, psk, endpoint, allowed, handshake, rx, tx, keepalive] = f as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    const peer: PeerState = {
      publicKey,
      allowedIPs: allowed === '(none)' || allowed === '' ? [] : allowed.split(','),
      rxBytes: Number(rx),
      txBytes: Number(tx),
      presharedKeySet: psk !== '(none)',
    };
    if (psk !== '(none)') {
      peer.presharedKeyFingerprint = fingerprint(psk);
    }
    if (endpoint !== '(none)') {
      peer.endpoint = endpoint;
    }
    if (handshake !== '0') {
      peer.latestHandshake = new Date(Number(handshake) * 1000);
    }
    if (keepalive !== 'off' && keepalive !== '0') {
      peer.persistentKeepalive = Number(keepalive);
    }
    state.peers.push(peer);
  }
  return state;
}

/** `10.0.0.7/24` stays a host address with its prefix length (what goes on an interface). */
export function normalizeInterfaceAddress(cidr: string): string {
  const [addr, len] = parseCidr(cidr);
  return `${addr.toString()}/${len}`;
}

/** A route/allowed-IP prefix in canonical form: network address, compact IPv6, explicit length. */
export function normalizePrefix(cidr: string): string {
  const withLen = cidr.includes('/') ? cidr : `${cidr}/${ipaddr.parse(cidr).kind() === 'ipv4' ? 32 : 128}`;
  const [addr, len] = parseCidr(withLen);
  const network =
    addr.kind() === 'ipv4'
      ? ipaddr.IPv4.networkAddressFromCIDR(withLen)
      : ipaddr.IPv6.networkAddressFromCIDR(withLen);
  return `${network.toString()}/${len}`;
}

function parseCidr(cidr: string): [ipaddr.IPv4 | ipaddr.IPv6, number] {
  try {
    return ipaddr.parseCIDR(cidr);
  } catch {
    throw new Error(`invalid CIDR '${cidr}'`);
  }
}

function familyFlag(prefix: string): '-4' | '-6' {
  return prefix.includes(':') ? '-6' : '-4';
}

function parseJson<T>(text: string, what: string): T {
  try {
    return JSON.parse(text || '[]') as T;
  } catch {
    throw new Error(`unexpected output from ${what}: not JSON`);
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
