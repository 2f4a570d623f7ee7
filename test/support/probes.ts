// Continuous probes through the tunnel, for measuring what a rotation costs: one `ping` per node pair at a
// fixed interval (25 probes/s by default), run inside the lab node for a bounded time. Each reply's sequence
// number is recorded, so a loss shows up as a run of missing sequence numbers; its length times the interval
// is the gap that pair saw.
import type { Lab } from './lab.js';

export interface PairProbe {
  from: string;
  to: string;
  address: string;
}

export interface ProbeResult extends PairProbe {
  sent: number;
  received: number;
  lost: number;
  /** longest time without a reply, from consecutive missing sequence numbers (ms) */
  maxGapMs: number;
}

export interface ProbeRun {
  /** resolves when every probe has run its full time */
  results(): Promise<ProbeResult[]>;
}

/** Parses `ping` output: the replied sequence numbers and how many were sent. */
export function parsePing(output: string): { replied: Set<number>; sent: number } {
  const replied = new Set<number>();
  for (const m of output.matchAll(/icmp_seq=(\d+)\s+ttl=/g)) replied.add(Number(m[1]));
  const sent = Number(/(\d+) packets transmitted/.exec(output)?.[1] ?? Math.max(0, ...replied));
  return { replied, sent };
}

/** The longest run of unanswered probes among 1..sent, as a time; a probe in flight at the end is not lost. */
export function maxGap(replied: Set<number>, sent: number, intervalMs: number): number {
  let longest = 0;
  let run = 0;
  const last = Math.max(0, ...replied);
  for (let seq = 1; seq <= last; seq++) {
    if (replied.has(seq)) {
      run = 0;
    } else {
      run++;
      longest = Math.max(longest, run);
    }
  }
  // The gap a run of k lost probes stands for: from the last reply before it to the first after it.
  return longest === 0 ? 0 : (longest + 1) * intervalMs;
}

export function startProbes(
  lab: Lab,
  pairs: readonly PairProbe[],
  options: {
    intervalMs?: number;
    seconds: number;
    /** ping -p: payload bytes (hex), so a test can look for them on the underlay */
    pattern?: string;
  },
): ProbeRun {
  const intervalMs = options.intervalMs ?? 40;
  const pattern = options.pattern ? ['-p', options.pattern] : [];
  // Each ping ends by itself after exactly `seconds` (-w), so nothing has to be signalled from outside.
  const running = pairs.map((p) => ({
    pair: p,
    done: lab.exec(
      p.from,
      [
        'ping',
        '-n',
        '-i',
        String(intervalMs / 1000),
        '-W',
        '1',
        '-w',
        String(options.seconds),
        ...pattern,
        p.address,
      ],
      { timeoutMs: (options.seconds + 15) * 1000 },
    ),
  }));
  return {
    async results() {
      const results: ProbeResult[] = [];
      for (const r of running) {
        const out = await r.done;
        const { replied, sent } = parsePing(out.stdout);
        results.push({
          ...r.pair,
          sent,
          received: replied.size,
          lost: Math.max(0, Math.max(0, ...replied) - replied.size),
          maxGapMs: maxGap(replied, sent, intervalMs),
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
