// `sealmesh-agent --uninstall`: removes everything of sealmesh's from this node's network: the fail-closed
// table (nft), the policy rule and routing table (device/policy.ts) and every WireGuard interface named
// `<prefix>-<6 hex>` (an agent's, agent.ts interfaceName). For a node taken out of sealmesh for good; an agent
// that merely stops (SIGTERM, SIGKILL, a rollout) leaves all of it in place on purpose.
import { removePolicyRouting } from './device/policy.js';
import { WgCliDevice, localRunner, type CommandRunner } from './device/wgcli.js';
import { NftFirewall } from './firewall/nft.js';

/** Removes sealmesh's table, rule, routes and interfaces; returns what it removed, in words. */
export async function uninstall(prefix: string, run: CommandRunner = localRunner()): Promise<string[]> {
  const removed: string[] = [];
  const firewall = new NftFirewall({ run });
  if (await firewall.read()) removed.push('nftables table inet sealmesh');
  await firewall.uninstall();
  const pattern = new RegExp(`^${prefix.replace(/[^A-Za-z0-9]/g, '\\$&')}-[0-9a-f]{6}$`);
  const { stdout } = await run(['ip', '-j', 'link', 'show']);
  for (const link of JSON.parse(stdout || '[]') as { ifname?: string }[]) {
    if (!link.ifname || !pattern.test(link.ifname)) continue;
    await new WgCliDevice(link.ifname, { run }).delete();
    removed.push(`interface ${link.ifname}`);
  }
  await removePolicyRouting(run);
  removed.push('ip rules and routes of table 51820 (if any)');
  return removed;
}
