// In-memory Firewall for unit tests of the agent: keeps the rules per device as the kernel would, records
// every call in order (so a test can check the rules went in before the first peer), and can fail on demand.
import type { Firewall, OverlayRules, OverlayRulesState } from '../firewall/firewall.js';

export interface FirewallCall {
  method: 'sync' | 'remove' | 'read' | 'uninstall';
  device?: string;
  prefixes?: string[];
}

export class FakeFirewall implements Firewall {
  readonly calls: FirewallCall[] = [];
  /** undefined: no table */
  table: Map<string, OverlayRulesState> | undefined;
  private failure: Error | undefined;

  /** The next call rejects with `error`. */
  failNext(error = new Error('injected firewall failure')): void {
    this.failure = error;
  }

  private check(): void {
    const f = this.failure;
    this.failure = undefined;
    if (f) throw f;
  }

  sync(rules: OverlayRules): Promise<string[]> {
    this.calls.push({ method: 'sync', device: rules.device, prefixes: [...rules.prefixes] });
    this.check();
    this.table ??= new Map();
    const before = this.table.get(rules.device);
    const same = before?.mode === rules.mode && before.prefixes.join(',') === [...rules.prefixes].join(',');
    this.table.set(rules.device, {
      ...rules,
      prefixes: [...rules.prefixes],
      matched: before?.matched ?? { packets: 0, bytes: 0 },
      // an element that stays keeps its counter (as nft.ts keeps it); a new one counts from zero
      elements: new Map(
        rules.prefixes.map((p) => [p, before?.elements.get(p) ?? { packets: 0, bytes: 0 }] as const),
      ),
    });
    return Promise.resolve(same ? [] : [`rules of ${rules.device} set`]);
  }

  remove(device: string): Promise<void> {
    this.calls.push({ method: 'remove', device });
    this.check();
    this.table?.delete(device);
    if (this.table?.size === 0) this.table = undefined;
    return Promise.resolve();
  }

  read(): Promise<Map<string, OverlayRulesState> | undefined> {
    this.calls.push({ method: 'read' });
    this.check();
    return Promise.resolve(this.table && new Map(this.table));
  }

  /** Packets to `prefix` (an element of the overlay's set) matched by the rules of `device`. */
  count(device: string, prefix: string, packets: number, bytes = packets * 84): void {
    const state = this.table?.get(device);
    const c = state?.elements.get(prefix);
    if (!state || !c) throw new Error(`no element ${prefix} in the set of ${device}`);
    c.packets += packets;
    c.bytes += bytes;
    state.matched.packets += packets;
    state.matched.bytes += bytes;
  }

  uninstall(): Promise<void> {
    this.calls.push({ method: 'uninstall' });
    this.check();
    this.table = undefined;
    return Promise.resolve();
  }
}
