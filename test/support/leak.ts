// What a leak looks like on the underlay, and the probes that would cause one (issue 13; ../shared/DESIGN.md,
// "Fail-closed data plane"): a continuous ping from one lab node to the stand-in pod address of another
// (hack/lab.sh puts 10.244.<i>.1 on every node), and the count of plaintext packets in a capture whose
// source or destination is a protected address (a pod CIDR or a tunnel address).
import { spawn, type ChildProcess } from 'node:child_process';
import ipaddr from 'ipaddr.js';
import type { Lab } from './lab.js';

export interface PingRun {
  /** stops the ping (SIGINT: it prints its statistics) and resolves with what it counted */
  stop(): Promise<{ sent: number; received: number; output: string }>;
}

/** `ping` at `intervalMs` (20/s by default) with `marker` as payload, from inside `from`, until stopped. */
export function startPing(lab: Lab, from: string, address: string, marker: string, intervalMs = 50): PingRun {
  const n = lab.node(from);
  const child: ChildProcess = spawn(
    'nsenter',
    [
      `--net=${n.netns}`,
      `--mount=${n.mountns}`,
      '--',
      'timeout',
      '600',
      'ping',
      '-n',
      '-i',
      String(intervalMs / 1000),
      '-W',
      '1',
      '-p',
      marker,
      address,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
      const m = /(\d+) packets transmitted, (\d+) received/.exec(output);
      return { sent: Number(m?.[1] ?? 0), received: Number(m?.[2] ?? 0), output };
    },
  };
}

/**
 * TCP connections to the stand-in pod's port 8080 (hack/lab.sh), one every `intervalMs`, from inside
 * `from`, until stopped; how many were tried and how many got the stand-in's answer.
 */
export function startTcpProbe(lab: Lab, from: string, address: string, intervalMs = 100): PingRun {
  const n = lab.node(from);
  const loop =
    `i=0; ok=0; trap 'echo "tried $i answered $ok"; exit 0' INT TERM; ` +
    `while [ $i -lt 6000 ]; do i=$((i+1)); ` +
    `socat -T1 - TCP:${address}:8080,connect-timeout=1 </dev/null 2>/dev/null | grep -q standin && ok=$((ok+1)); ` +
    `sleep ${intervalMs / 1000}; done; echo "tried $i answered $ok"`;
  const child: ChildProcess = spawn(
    'nsenter',
    [`--net=${n.netns}`, `--mount=${n.mountns}`, '--', 'bash', '-c', loop],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
      const m = /tried (\d+) answered (\d+)/.exec(output);
      return { sent: Number(m?.[1] ?? 0), received: Number(m?.[2] ?? 0), output };
    },
  };
}

/** Plaintext packets of a capture (`tcpdump -nn` lines) to or from a protected range, by kind. */
export interface Plaintext {
  icmp: number;
  tcp: number;
  udp: number;
  other: number;
  total: number;
  /** the first few lines, for the report */
  sample: string[];
}

/** time, IP or IP6, source and destination (each address or address.port), the rest */
const ADDRESS = /^\S+ IP6? (\S+) > (\S+): (.*)$/;

/**
 * Counts the IP packets in `lines` whose source or destination address lies in one of `protectedRanges`.
 * WireGuard's own datagrams are between underlay addresses and never match. A line whose addresses carry a
 * port (`a.b.c.d.port`) is split at the last dot.
 */
export function countPlaintext(lines: readonly string[], protectedRanges: readonly string[]): Plaintext {
  const ranges = protectedRanges.map((r) => ipaddr.parseCIDR(r));
  const inRange = (a: string): boolean => {
    const addr = bareAddress(a);
    if (addr === undefined) return false;
    return ranges.some(([net, len]) => addr.kind() === net.kind() && addr.match(net, len));
  };
  const out: Plaintext = { icmp: 0, tcp: 0, udp: 0, other: 0, total: 0, sample: [] };
  for (const line of lines) {
    const m = ADDRESS.exec(line);
    if (!m) continue;
    const [, src = '', dst = '', rest = ''] = m;
    if (!inRange(src) && !inRange(dst)) continue;
    if (/^ICMP/.test(rest)) out.icmp++;
    else if (/^Flags \[/.test(rest)) out.tcp++;
    else if (/^UDP/.test(rest)) out.udp++;
    else out.other++;
    out.total++;
    if (out.sample.length < 5) out.sample.push(line);
  }
  return out;
}

/** `10.244.3.1` or `10.244.3.1.8080` (tcpdump's address.port) to an address; undefined if neither. */
function bareAddress(s: string): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  if (ipaddr.isValid(s)) return ipaddr.parse(s);
  const cut = s.lastIndexOf('.');
  const head = cut > 0 ? s.slice(0, cut) : '';
  return ipaddr.isValid(head) ? ipaddr.parse(head) : undefined;
}

/** A lab node as the capture sees it: its underlay address and its pod CIDR. */
export interface UnderlayNode {
  name: string;
  underlayIP: string;
  podCIDR: string;
}

/**
 * The plaintext packets of `lines` (to or from a protected range) by the pair of nodes they were between:
 * each end is a node's underlay address or in its pod CIDR; keyed `x<->y` (names sorted). A packet crosses br0 twice when the underlay router forwards it (node -> router -> node):
 * both copies count. Anything else goes to `other`.
 */
export function plaintextByPair(
  lines: readonly string[],
  protectedRanges: readonly string[],
  nodes: readonly UnderlayNode[],
): Record<string, number> {
  const pods = nodes.map((n) => ({ n, cidr: ipaddr.parseCIDR(n.podCIDR) }));
  const owner = (a: string): UnderlayNode | undefined => {
    const addr = bareAddress(a);
    if (addr === undefined) return undefined;
    const byPod = pods.find(({ cidr: [net, len] }) => addr.kind() === net.kind() && addr.match(net, len));
    return byPod?.n ?? nodes.find((n) => n.underlayIP === addr.toString());
  };
  const out: Record<string, number> = {};
  for (const line of lines) {
    if (countPlaintext([line], protectedRanges).total === 0) continue;
    const [, src = '', dst = ''] = ADDRESS.exec(line) ?? [];
    const a = owner(src);
    const b = owner(dst);
    const key = a && b && a !== b ? [a.name, b.name].sort().join('<->') : 'other';
    out[key] = (out[key] ?? 0) + 1;
  }
  return out;
}

/**
 * The `tcpdump -nn` lines stamped (local time of day, as tcpdump prints it) before `epochMs`. A capture runs for
 * minutes: a stamp more than 12 h after the cut's time of day is taken as the day before.
 */
export function linesBefore(lines: readonly string[], epochMs: number): string[] {
  const cut = new Date(epochMs);
  const cutOfDay =
    ((cut.getHours() * 60 + cut.getMinutes()) * 60 + cut.getSeconds()) * 1000 + cut.getMilliseconds();
  const DAY = 86_400_000;
  return lines.filter((line) => {
    const m = /^(\d{2}):(\d{2}):(\d{2})\.(\d{3})/.exec(line);
    if (!m) return false;
    let t = ((Number(m[1]) * 60 + Number(m[2])) * 60 + Number(m[3])) * 1000 + Number(m[4]);
    if (t - cutOfDay > DAY / 2) t -= DAY;
    else if (cutOfDay - t > DAY / 2) t += DAY;
    return t < cutOfDay;
  });
}
