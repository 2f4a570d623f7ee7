// tcpdump on a lab's underlay bridge (the approach of test/e2e/lab-wireguard.test.ts, shared): what crossed
// between the nodes, as `tcpdump -nn` lines and as the raw pcap, so a test can look for plaintext bytes.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Lab } from './lab.js';

export interface Captured {
  /** `tcpdump -nn` lines */
  lines: string[];
  /** the pcap file: frames as they crossed the bridge */
  raw: Buffer;
}

/**
 * Starts a capture on br0 of the lab's underlay namespace, into a pcap under the lab dir; bounded by count and
 * time. Immediate mode: otherwise packets wait in the capture ring for up to a second and a stop right after
 * the traffic loses them.
 */
export async function startCapture(lab: Lab, maxSeconds = 60): Promise<{ stop: () => Promise<Captured> }> {
  const file = resolve(lab.dir, `underlay-${Date.now()}.pcap`);
  const child: ChildProcess = spawn(
    'nsenter',
    [
      `--net=${lab.underlayNetns}`,
      '--',
      'timeout',
      String(maxSeconds),
      'tcpdump',
      '--immediate-mode',
      '-i',
      'br0',
      '-nn',
      '-U',
      '-c',
      '20000',
      '-w',
      file,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let stderr = '';
  await new Promise<void>((ready, fail) => {
    const timer = setTimeout(() => fail(new Error(`tcpdump did not start: ${stderr}`)), 10_000);
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (stderr.includes('listening on')) {
        clearTimeout(timer);
        ready();
      }
    });
    child.once('exit', () => {
      clearTimeout(timer);
      fail(new Error(`tcpdump exited early: ${stderr}`));
    });
  });
  return {
    stop: async () => {
      await new Promise((r) => setTimeout(r, 300)); // last replies in flight
      child.kill('SIGINT'); // timeout(1) passes it on to tcpdump
      await exited;
      const read = spawn('tcpdump', ['-r', file, '-nn'], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      read.stdout.on('data', (d: Buffer) => (out += d.toString()));
      await new Promise((r) => read.once('exit', r));
      return { lines: out.split('\n').filter((x) => x !== ''), raw: readFileSync(file) };
    },
  };
}

/** What crossed the underlay while a body ran: WireGuard datagrams between the nodes, and everything else. */
export interface UnderlayVerdict {
  wireguard: number;
  /** lines that are neither ARP nor WireGuard UDP between two lab nodes on `port` */
  other: string[];
  icmp: number;
  /** the marker bytes were seen in some frame */
  marker: boolean;
  chunks: number;
  /** a chunk hit tcpdump's packet limit: part of the run went unseen */
  truncated: boolean;
  /** every line but ARP, in order */
  lines: string[];
}

/**
 * Captures the underlay for as long as `body` runs, rolling over to a new capture every `chunkMs` (default
 * 40 s) before the packet limit (the next one starts before the last one stops, so no moment goes unseen).
 */
export async function watchUnderlay<T>(
  lab: Lab,
  options: { port: number; marker: string; chunkMs?: number },
  body: () => Promise<T>,
): Promise<{ value: T; underlay: UnderlayVerdict }> {
  const chunks: Captured[] = [];
  let current = await startCapture(lab, 120);
  let done = false;
  const running = body().finally(() => {
    done = true;
  });
  const settled = running.then(
    () => undefined,
    () => undefined,
  );
  try {
    while (!done) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        settled,
        new Promise<void>((r) => (timer = setTimeout(r, options.chunkMs ?? 40_000))),
      ]);
      clearTimeout(timer);
      if (done) break;
      const next = await startCapture(lab, 120);
      chunks.push(await current.stop());
      current = next;
    }
  } finally {
    chunks.push(await current.stop());
  }
  const value = await running;
  const ips = lab.nodes.map((n) => n.underlayIP.replace(/\./g, '\\.')).join('|');
  const wg = new RegExp(
    `^\\S+ IP (${ips})\\.${options.port} > (${ips})\\.${options.port}: UDP, length \\d+$`,
  );
  const lines = chunks.flatMap((c) => c.lines).filter((l) => !/ ARP, /.test(l));
  return {
    value,
    underlay: {
      wireguard: lines.filter((l) => wg.test(l)).length,
      other: lines.filter((l) => !wg.test(l)),
      icmp: lines.filter((l) => /ICMP/i.test(l)).length,
      marker: chunks.some((c) => c.raw.includes(Buffer.from(options.marker, 'hex'))),
      chunks: chunks.length,
      truncated: chunks.some((c) => c.lines.length >= 20_000),
      lines,
    },
  };
}

/** A one-line account of a verdict, for the test's report. */
export function describeUnderlay(u: UnderlayVerdict): string {
  return `underlay ${u.wireguard} WireGuard datagrams (${u.chunks} capture(s)), other ${u.other.length}, ICMP ${u.icmp}, probe payload seen: ${u.marker}`;
}

/** Only WireGuard UDP crossed, some did, the payload never did, and nothing went unseen. */
export function expectCleanUnderlay(u: UnderlayVerdict, minWireGuard = 1): void {
  expect(u.truncated).toBe(false);
  expect(u.other.slice(0, 20)).toEqual([]);
  expect(u.icmp).toBe(0);
  expect(u.marker).toBe(false);
  expect(u.wireguard).toBeGreaterThanOrEqual(minWireGuard);
}
