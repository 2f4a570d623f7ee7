// Policy routing of sealmesh's own (../shared/DESIGN.md, "Fail-closed data plane", Routes): peers' prefixes
// are routed into their overlay's WireGuard interface from a routing table that only sealmesh writes
// (ROUTE_TABLE), consulted through one `ip rule` (RULE_PREF, before the main table), as Calico's WireGuard
// does. So the CNI's routes in the main table are never replaced or deleted: what sealmesh adds, it removes.
// The device (wgcli.ts, syncRoutes) owns its routes in the table; the rule is node-wide and goes when the node
// leaves its last overlay (NftFirewall.remove) or on the uninstall.
import type { CommandRunner } from './wgcli.js';

/** The routing table sealmesh's routes live in. */
export const ROUTE_TABLE = '51820';
/** The priority of sealmesh's rule: after `local` (0), before `main` (32766). */
export const RULE_PREF = '5210';

const FAMILIES = ['-4', '-6'] as const;
type FamilyFlag = (typeof FAMILIES)[number];

/** Adds the rule `pref RULE_PREF lookup ROUTE_TABLE` for the family if it is not there. */
export async function ensureRule(run: CommandRunner, family: FamilyFlag): Promise<void> {
  if (await hasRule(run, family)) return;
  await run(['ip', family, 'rule', 'add', 'pref', RULE_PREF, 'lookup', ROUTE_TABLE]);
}

async function hasRule(run: CommandRunner, family: FamilyFlag): Promise<boolean> {
  const { stdout } = await run(['ip', '-j', family, 'rule', 'show', 'pref', RULE_PREF]);
  const rules = JSON.parse(stdout || '[]') as { table?: string }[];
  return rules.some((r) => r.table === ROUTE_TABLE);
}

/** Removes sealmesh's rules and every route left in its table (the node left its last overlay, or uninstall). */
export async function removePolicyRouting(run: CommandRunner): Promise<void> {
  for (const family of FAMILIES) {
    while (await hasRule(run, family)) {
      await run(['ip', family, 'rule', 'del', 'pref', RULE_PREF, 'lookup', ROUTE_TABLE]);
    }
    // an empty (or never used) table is no error
    await run(['ip', family, 'route', 'flush', 'table', ROUTE_TABLE]).catch(() => undefined);
  }
}
