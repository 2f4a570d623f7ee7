// Side effects of measuring, behind small interfaces (STYLE rule 9): sending a probe through the tunnel (a
// WireGuard handshake happens only when there is something to send) and finding the underlay MTU.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';

export interface Prober {
  /** Sends one packet to `address` (a peer's tunnel address), through interface `iface`. Never throws. */
  probe(iface: string, address: string): Promise<void>;
}

/** One `ping -c 1 -W 1` through the tunnel: enough to make WireGuard start a handshake. */
export const pingProber: Prober = {
  probe(_iface, address) {
    const argv = address.includes(':')
      ? ['-6', '-c', '1', '-W', '1', address]
      : ['-c', '1', '-W', '1', address];
    return new Promise((resolve) => {
      // No answer is expected before the handshake completes; only the attempt matters.
      execFile('ping', argv, { timeout: 3000, killSignal: 'SIGKILL' }, () => resolve());
    });
  },
};

export type UnderlayMtu = (underlayAddress: string) => Promise<number | undefined>;

/** The MTU of the local interface that holds `underlayAddress` (from /sys), or undefined if none does. */
export const sysUnderlayMtu: UnderlayMtu = async (underlayAddress) => {
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (!addrs?.some((a) => a.address === underlayAddress)) continue;
    try {
      const mtu = Number((await readFile(`/sys/class/net/${name}/mtu`, 'utf8')).trim());
      return Number.isInteger(mtu) && mtu > 0 ? mtu : undefined;
    } catch {
      return undefined;
    }
  }
  return undefined;
};

/** WireGuard's worst-case overhead: IPv6 (40) + UDP (8) + WireGuard header (32). */
export const WIREGUARD_OVERHEAD = 80;
export const DEFAULT_UNDERLAY_MTU = 1500;

/** `host` of an endpoint `host:port` or `[v6]:port`. */
export function endpointHost(endpoint: string): string {
  if (endpoint.startsWith('[')) return endpoint.slice(1, endpoint.indexOf(']'));
  const colon = endpoint.lastIndexOf(':');
  return colon < 0 ? endpoint : endpoint.slice(0, colon);
}
