// NftFirewall against the real nft and kernel, in a network namespace of its own (no lab, no API server):
// a table of the version before (sets without counters, the set looked up first) is re-made in one `nft -f`
// transaction; afterwards every member's prefixes count on their own element, a member joining changes only
// the elements that differ (the others keep their counts), and traffic that leaves through the overlay's
// device is never counted. Needs root (it is: the e2e project runs as root).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { NftFirewall } from '../../agent/firewall/nft.js';
import { localRunner, nsenterRunner, type CommandRunner } from '../../agent/device/wgcli.js';

const NS = `smnft-${randomBytes(3).toString('hex')}`;
const DEV = 'sm-x'; // stands in for the overlay's WireGuard device
const sh = (...argv: string[]) => execFileSync('ip', ['netns', 'exec', NS, ...argv], { encoding: 'utf8' });
const base = nsenterRunner(`/run/netns/${NS}`, undefined, localRunner());
const scripts: string[] = [];
/** Every `nft -f` the firewall runs, counted. */
const run: CommandRunner = (argv) => {
  if (argv[0] === 'nft' && argv[1] === '-f') scripts.push(argv[2]!);
  return base(argv);
};
const fw = new NftFirewall({ run });

/** Sends `n` pings to `addr` (each is dropped or leaves by a veth nobody answers on). */
function ping(addr: string, n: number): void {
  try {
    sh('ping', '-c', String(n), '-i', '0.01', '-W', '0.1', addr);
  } catch {
    // dropped (EPERM) or unanswered
  }
}

beforeAll(() => {
  execFileSync('ip', ['netns', 'add', NS]);
  sh('ip', 'link', 'set', 'lo', 'up');
  // the underlay: everything in 10.0.0.0/8 would leave by it
  // veth pairs (this kernel may have no dummy links); the far ends stay in the namespace, unanswered
  sh('ip', 'link', 'add', 'under0', 'type', 'veth', 'peer', 'name', 'under1');
  sh('ip', 'addr', 'add', '192.0.2.1/24', 'dev', 'under0');
  sh('ip', 'link', 'set', 'under0', 'up');
  sh('ip', 'link', 'set', 'under1', 'up');
  sh('ip', 'route', 'add', '10.0.0.0/8', 'dev', 'under0');
  // the overlay device, routing one member's pod CIDR
  sh('ip', 'link', 'add', DEV, 'type', 'veth', 'peer', 'name', 'sm-y');
  sh('ip', 'link', 'set', DEV, 'up');
  sh('ip', 'link', 'set', 'sm-y', 'up');
  sh('ip', 'route', 'add', '10.244.5.0/24', 'dev', DEV);
});

afterAll(() => {
  execFileSync('ip', ['netns', 'del', NS]);
});

test('a table of the version before is re-made in one transaction; drops count per member element', async () => {
  // what the version before wrote: sets without counters, the lookup before the interface
  const old = [
    'add table inet sealmesh',
    'add chain inet sealmesh output { type filter hook output priority 0; policy accept; }',
    'add set inet sealmesh ov_sm_2dx_v4 { type ipv4_addr; flags interval; }',
    'add set inet sealmesh ov_sm_2dx_v6 { type ipv6_addr; flags interval; }',
    'add element inet sealmesh ov_sm_2dx_v4 { 10.96.0.2/32, 10.244.0.0/16 }',
    `add rule inet sealmesh output ip daddr @ov_sm_2dx_v4 oifname != "${DEV}" counter drop comment "sealmesh ${DEV} out4 FailClosed"`,
  ].join('\n');
  execFileSync('ip', ['netns', 'exec', NS, 'nft', '-f', '-'], { input: old });

  // b: 10.96.0.2 and 10.244.2.0/24; c: 10.244.3.0/24 and 10.244.5.0/24 (routed through DEV); the rest declared
  const members = ['10.96.0.2/32', '10.244.2.0/24', '10.244.3.0/24', '10.244.5.0/24'];
  const rest = ['10.244.0.0/23', '10.244.4.0/24', '10.244.6.0/23', '10.244.8.0/21', '10.244.16.0/20'];
  const wide = ['10.244.32.0/19', '10.244.64.0/18', '10.244.128.0/17'];
  const prefixes = [...members, ...rest, ...wide];
  const changes = await fw.sync({ device: DEV, mode: 'FailClosed', prefixes });
  expect(changes[0]).toBe(`sets of ${DEV} re-made with per-element counters`);
  expect(scripts).toHaveLength(1);
  const listed = sh('nft', 'list', 'table', 'inet', 'sealmesh');
  expect(listed).toContain('counter packets 0 bytes 0'); // per-element counters
  expect(listed).toContain(`oifname != "${DEV}" ip daddr @ov_sm_2dx_v4 counter packets 0 bytes 0 drop`);
  expect(listed).not.toContain(`ip daddr @ov_sm_2dx_v4 oifname`);

  ping('10.244.2.7', 3);
  ping('10.96.0.2', 1);
  ping('10.244.3.9', 2);
  ping('10.244.9.1', 4); // the declared rest
  ping('10.244.5.1', 5); // through the overlay device: never counted
  let state = (await fw.read())?.get(DEV);
  expect(state?.elements.get('10.244.2.0/24')?.packets).toBe(3);
  expect(state?.elements.get('10.96.0.2/32')?.packets).toBe(1);
  expect(state?.elements.get('10.244.3.0/24')?.packets).toBe(2);
  expect(state?.elements.get('10.244.8.0/21')?.packets).toBe(4);
  expect(state?.elements.get('10.244.5.0/24')?.packets).toBe(0);
  expect(state?.matched.packets).toBe(10);

  // a member joins at 10.244.9.0/24, inside the declared rest: the rest's element around it is replaced by
  // the pieces and the member's own; every other element keeps its count
  const next = prefixes.filter((p) => p !== '10.244.8.0/21');
  next.push('10.244.8.0/24', '10.244.9.0/24', '10.244.10.0/23', '10.244.12.0/22');
  expect(await fw.sync({ device: DEV, mode: 'FailClosed', prefixes: next })).toEqual([
    'set ov_sm_2dx_v4: +10.244.8.0/24,10.244.9.0/24,10.244.10.0/23,10.244.12.0/22 -10.244.8.0/21',
  ]);
  state = (await fw.read())?.get(DEV);
  expect(state?.elements.get('10.244.2.0/24')?.packets).toBe(3);
  expect(state?.elements.get('10.244.3.0/24')?.packets).toBe(2);
  expect(state?.elements.get('10.244.9.0/24')?.packets).toBe(0);
  expect(await fw.sync({ device: DEV, mode: 'FailClosed', prefixes: next })).toEqual([]);

  await fw.remove(DEV);
  expect(await fw.read()).toBeUndefined();
});
