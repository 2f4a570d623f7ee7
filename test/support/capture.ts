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
