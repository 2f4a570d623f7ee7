// Continuous probes through the tunnel, for measuring what a rotation costs: one `ping` per node pair at a
// fixed interval, run inside the lab node until the test stops it. Every probe's send time and reply time are
// read from ping's own output (-D timestamps, -O for probes that got no answer), so the statistics see the
// whole window: a probe sent in it and never answered is lost wherever it falls, including after the last
// reply (a pair that goes dead and stays dead) or when there is no reply at all (a pair that never answers).
// After the window ends the pings run on for a tail, so the last probes of the window have time to be answered
// and a probe merely in flight is not counted as lost.
import { spawn } from 'node:child_process';
import type { Lab } from './lab.js';

export interface PairProbe {
  from: string;
  to: string;
  address: string;
}

/** One probe as ping reported it (times in ms since the epoch). */
export interface ProbeRecord {
  seq: number;
  /** when it was sent; estimated from its neighbours where ping printed nothing about it */
  sentAt: number;
  repliedAt?: number;
}

export interface ProbeResult extends PairProbe {
  /** probes sent inside the window */
  sent: number;
  /** of those, how many were answered */
  received: number;
  /** sent − received: every unanswered probe of the window, trailing ones included */
  lost: number;
  /**
   * Longest time without a reply in the window, the window's start and end counted as edges: a pair that dies
   * and stays dead reports the time from its last reply to the end; one that never answers, the whole window.
   */
  maxGapMs: number;
  /**
   * From the cutover instant to the first reply to a probe sent at or after it (to the window's end if there
   * is none); only when a cutover instant was given.
   */
  gapFromCutoverMs?: number;
  /** the last reply to a probe of the window (undefined: none) */
  lastReplyAt?: number;
  windowStart: number;
  windowEnd: number;
  /** every probe of the run as ping reported it, window or not (for statistics over part of the window) */
  records: ProbeRecord[];
}

/** Parses `ping -D -O` output: every probe it reported and how many it sent. */
export function parsePing(
  output: string,
  intervalMs: number,
): { probes: ProbeRecord[]; transmitted: number } {
  const bySeq = new Map<number, { sentAt?: number; repliedAt?: number; unansweredAt?: number }>();
  const entry = (seq: number) => {
    let e = bySeq.get(seq);
    if (!e) bySeq.set(seq, (e = {}));
    return e;
  };
  let highest = 0;
  for (const line of output.split('\n')) {
    const reply = /^\[(\d+\.\d+)\] .*icmp_seq=(\d+) ttl=\d+ time=([\d.]+) ms(.*)$/.exec(line);
    if (reply) {
      const e = entry(Number(reply[2]));
      highest = Math.max(highest, Number(reply[2]));
      if (e.repliedAt !== undefined || /DUP/.test(reply[4] ?? '')) continue; // duplicates count once
      e.repliedAt = Number(reply[1]) * 1000;
      e.sentAt = e.repliedAt - Number(reply[3]);
      continue;
    }
    // printed just before the next probe is sent: this one went out about one interval earlier
    const none = /^\[(\d+\.\d+)\] no answer yet for icmp_seq=(\d+)/.exec(line);
    if (none) {
      entry(Number(none[2])).unansweredAt = Number(none[1]) * 1000;
      highest = Math.max(highest, Number(none[2]));
    }
  }
  const transmitted = Number(/(\d+) packets transmitted/.exec(output)?.[1] ?? highest);
  const probes: ProbeRecord[] = [];
  for (let seq = 1; seq <= Math.max(transmitted, highest); seq++) {
    const e = bySeq.get(seq) ?? {};
    const prev = probes[probes.length - 1]?.sentAt;
    const estimate =
      e.sentAt ??
      (e.unansweredAt !== undefined ? e.unansweredAt - intervalMs : undefined) ??
      (prev !== undefined ? prev + intervalMs : undefined);
    if (estimate === undefined) continue; // nothing known about the start of the run: it had no probe yet
    // send times only grow
    const sentAt = prev !== undefined ? Math.max(prev, estimate) : estimate;
    probes.push({ seq, sentAt, ...(e.repliedAt !== undefined ? { repliedAt: e.repliedAt } : {}) });
  }
  return { probes, transmitted };
}

/**
 * The statistics of one pair over [start, end]: every probe sent in the window counts, answered or not (the
 * tail after `end` gave the last ones time for a reply).
 */
export function summarize(
  probes: readonly ProbeRecord[],
  window: { start: number; end: number },
  cutoverAt?: number,
): Pick<ProbeResult, 'sent' | 'received' | 'lost' | 'maxGapMs' | 'gapFromCutoverMs' | 'lastReplyAt'> {
  const inWindow = probes.filter((p) => p.sentAt >= window.start && p.sentAt <= window.end);
  const replies = inWindow
    .map((p) => p.repliedAt)
    .filter((t): t is number => t !== undefined)
    .sort((a, b) => a - b);
  const edges = [window.start, ...replies.map((t) => Math.min(t, window.end)), window.end];
  let maxGapMs = 0;
  for (let i = 1; i < edges.length; i++) maxGapMs = Math.max(maxGapMs, edges[i]! - edges[i - 1]!);
  const out = {
    sent: inWindow.length,
    received: replies.length,
    lost: inWindow.length - replies.length,
    maxGapMs: Math.round(maxGapMs),
    ...(replies.length ? { lastReplyAt: replies[replies.length - 1]! } : {}),
  };
  if (cutoverAt === undefined) return out;
  const first = inWindow.find((p) => p.sentAt >= cutoverAt && p.repliedAt !== undefined);
  return { ...out, gapFromCutoverMs: Math.round((first?.repliedAt ?? window.end) - cutoverAt) };
}

export interface ProbeRun {
  /** when the pings were started (ms since the epoch) */
  readonly startedAt: number;
  /**
   * Ends the window now; the pings run on for the tail, then stop. Resolves with every pair's statistics,
   * each over its own window: from its first probe to this instant.
   */
  stop(cutoverAt?: number): Promise<ProbeResult[]>;
}

/**
 * Starts one ping per pair, every `intervalMs` (default 40), until stop() or as many probes as fit in
 * `maxSeconds` (default 600).
 */
export function startProbes(
  lab: Lab,
  pairs: readonly PairProbe[],
  options: {
    intervalMs?: number;
    /** ping -p: payload bytes (hex), so a test can look for them on the underlay */
    pattern?: string;
    maxSeconds?: number;
    /** how long the pings run on after the window, for the replies of its last probes (default 1500 ms) */
    tailMs?: number;
  } = {},
): ProbeRun {
  const intervalMs = options.intervalMs ?? 40;
  const tailMs = options.tailMs ?? 1500;
  const maxSeconds = options.maxSeconds ?? 600;
  const pattern = options.pattern ? ['-p', options.pattern] : [];
  const startedAt = Date.now();
  const running = pairs.map((pair) => {
    const node = lab.node(pair.from);
    // nsenter execs ping itself, so a signal to this child reaches ping
    const child = spawn(
      'nsenter',
      [
        `--net=${node.netns}`,
        `--mount=${node.mountns}`,
        '--',
        'ping',
        '-n',
        '-D',
        '-O',
        '-i',
        String(intervalMs / 1000),
        '-W',
        '1',
        // bounded by count, not by a deadline: with -w, ping exits at the first ICMP error (a router's
        // "net unreachable" for a pod CIDR no node has yet), and the pair would go unprobed from then on
        '-c',
        String(Math.ceil((maxSeconds * 1000) / intervalMs)),
        ...pattern,
        pair.address,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<{ stdout: string; stderr: string; code: number | null }>((done) =>
      child.once('close', (code) => done({ stdout, stderr, code })),
    );
    return { pair, child, exited };
  });
  return {
    startedAt,
    async stop(cutoverAt?: number) {
      const end = Date.now();
      await new Promise((r) => setTimeout(r, tailMs));
      for (const r of running) if (r.child.exitCode === null) r.child.kill('SIGINT');
      const results: ProbeResult[] = [];
      for (const r of running) {
        const out = await r.exited;
        const { probes, transmitted } = parsePing(out.stdout, intervalMs);
        if (transmitted === 0)
          throw new Error(`ping ${r.pair.from} -> ${r.pair.address} sent nothing: ${out.stderr.trim()}`);
        const window = { start: Math.max(startedAt, probes[0]?.sentAt ?? startedAt), end };
        results.push({
          ...r.pair,
          ...summarize(probes, window, cutoverAt),
          windowStart: window.start,
          windowEnd: window.end,
          records: probes,
        });
      }
      return results;
    },
  };
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
