// One fail-closed scenario as the e2e test runs it (issue 13, "Done when"; test/e2e/failclosed.test.ts): the
// underlay bridge captured throughout (rolling captures, so nothing goes unseen), and from every member a
// ping to every other member's stand-in pod address (hack/lab.sh: node i has 10.244.i.1) at 22/s, plus TCP
// connections on one pair (a socat per connection: on two shared cores, one TCP loop per directed pair would
// starve the agents). What it reports: per directed pair the probes sent and answered (over the whole window
// and after the body said every pair is encrypted again), the plaintext packets on the underlay (total and
// per node pair), and the packets each member's fail-closed rules matched (nft counters, before and after).
// Everything is bounded: pings by a deadline (ping -w), the capture by time and packet count per chunk.
import { NftFirewall } from '../../agent/firewall/nft.js';
import { watchUnderlay, type UnderlayVerdict } from './capture.js';
import type { Lab } from './lab.js';
import { countPlaintext, plaintextByPair, startTcpProbe, type Plaintext } from './leak.js';
import { startProbes, summarize, type PairProbe, type ProbeResult, type ProbeRun } from './probes.js';

export interface MeshMember {
  name: string;
  /** lab.sh's node index: its pod CIDR is 10.244.<index>.0/24 */
  index: number;
}

/** The stand-in pod address of lab node `index` (hack/lab.sh): the first address of its pod CIDR. */
export function podAddress(index: number): string {
  return `10.244.${index}.1`;
}

export interface MeshOptions {
  lab: Lab;
  /** members that probe (and are probed) from the start */
  members: readonly MeshMember[];
  /** probed by every member from the start, before they exist (a joiner); they probe once join() is called */
  expected?: readonly MeshMember[];
  protectedRanges: readonly string[];
  /** the overlay's WireGuard port: the capture counts datagrams between nodes on it */
  port: number;
  /** ping payload (hex): seen on the underlay only in the clear */
  marker: string;
  /** the one pair that also gets TCP connections (about 7/s) */
  tcp?: { from: string; to: MeshMember };
  /** default 45 (22 probes/s asked per pair; the test asserts at least 20/s) */
  intervalMs?: number;
  /** bound of every ping (default 420 s) */
  maxSeconds?: number;
  /** how long probing goes on after the body (default 4 s) */
  tailMs?: number;
}

export interface MeshControl {
  /** `member` runs now (its rules are in): its probes to every other member start */
  join(member: MeshMember): void;
  /** `name` left the overlay: its own probes stop now (the probes to it go on) */
  leave(name: string): Promise<void>;
  /** every pair is encrypted again: probes sent from now on count as "after" */
  settled(): void;
}

export interface PairFigures {
  from: string;
  to: string;
  sent: number;
  received: number;
  /** probes sent per second over the pair's window */
  rate: number;
  maxGapMs: number;
  /** of the probes sent after settled() */
  sentAfter: number;
  receivedAfter: number;
  /** of the probes sent in the last 2 s of the pair's window */
  sentLast: number;
  receivedLast: number;
  result: ProbeResult;
}

export interface MeshReport<T> {
  value: T;
  pairs: PairFigures[];
  tcp?: { from: string; to: string; sent: number; received: number };
  plaintext: Plaintext;
  /** plaintext packets per node pair (`a<->b`), and `other` */
  plaintextByPair: Record<string, number>;
  underlay: UnderlayVerdict;
  /** packets matched by each node's fail-closed rules (sum over its overlays) at the start and at the end */
  matched: Record<string, { before?: number; after?: number }>;
  settledAt?: number;
}

/** Packets the rules of `node` matched so far, summed over its overlays (undefined: no table). */
export async function matchedPackets(lab: Lab, node: string): Promise<number | undefined> {
  const rules = await new NftFirewall({ run: lab.runner(node) }).read();
  if (!rules) return undefined;
  return [...rules.values()].reduce((a, r) => a + r.matched.packets, 0);
}

/** Runs `body` with every member probing every other one and the underlay captured; see the module comment. */
export async function probeMesh<T>(
  o: MeshOptions,
  body: (mesh: MeshControl) => Promise<T>,
): Promise<MeshReport<T>> {
  const intervalMs = o.intervalMs ?? 45;
  const targets = [...o.members, ...(o.expected ?? [])];
  const matched: MeshReport<T>['matched'] = {};
  for (const m of o.members) matched[m.name] = { before: await matchedPackets(o.lab, m.name) };
  const running = new Map<string, ProbeRun>();
  const results: ProbeResult[] = [];
  let settledAt: number | undefined;
  let tcpResult: MeshReport<T>['tcp'];
  const start = (from: MeshMember): void => {
    if (running.has(from.name)) return;
    const pairs: PairProbe[] = targets
      .filter((t) => t.name !== from.name)
      .map((t) => ({ from: from.name, to: t.name, address: podAddress(t.index) }));
    if (pairs.length === 0) return;
    running.set(
      from.name,
      startProbes(o.lab, pairs, {
        intervalMs,
        pattern: o.marker,
        maxSeconds: o.maxSeconds ?? 420,
        tailMs: 1500,
      }),
    );
  };
  const stop = async (name: string): Promise<void> => {
    const run = running.get(name);
    if (!run) return;
    running.delete(name);
    results.push(...(await run.stop()));
  };
  const mesh: MeshControl = {
    join: start,
    leave: stop,
    settled: () => {
      settledAt = Date.now();
    },
  };

  const { value, underlay } = await watchUnderlay(
    o.lab,
    // 22 probes/s on each of up to 12 pairs, two datagrams a probe: 20 s stay under tcpdump's packet limit
    { port: o.port, marker: o.marker, chunkMs: 20_000 },
    async () => {
      for (const m of o.members) start(m);
      const tcp = o.tcp ? startTcpProbe(o.lab, o.tcp.from, podAddress(o.tcp.to.index), 150) : undefined;
      try {
        return await body(mesh);
      } finally {
        await new Promise((r) => setTimeout(r, o.tailMs ?? 4000));
        await Promise.all([...running.keys()].map((n) => stop(n)));
        const t = await tcp?.stop();
        if (t && o.tcp)
          tcpResult = { from: o.tcp.from, to: o.tcp.to.name, sent: t.sent, received: t.received };
      }
    },
  );
  for (const name of Object.keys(matched)) matched[name]!.after = await matchedPackets(o.lab, name);
  for (const m of o.expected ?? [])
    if (o.lab.nodes.some((n) => n.name === m.name))
      matched[m.name] = { after: await matchedPackets(o.lab, m.name) };

  const pairs = results.map((r): PairFigures => {
    const seconds = Math.max(0.001, (r.windowEnd - r.windowStart) / 1000);
    const after =
      settledAt === undefined
        ? { sent: 0, received: 0 }
        : summarize(r.records, { start: settledAt, end: r.windowEnd });
    const last = summarize(r.records, { start: r.windowEnd - 2000, end: r.windowEnd });
    return {
      from: r.from,
      to: r.to,
      sent: r.sent,
      received: r.received,
      rate: Math.round((r.sent / seconds) * 10) / 10,
      maxGapMs: r.maxGapMs,
      sentAfter: after.sent,
      receivedAfter: after.received,
      sentLast: last.sent,
      receivedLast: last.received,
      result: r,
    };
  });
  return {
    value,
    pairs,
    ...(tcpResult ? { tcp: tcpResult } : {}),
    plaintext: countPlaintext(underlay.lines, o.protectedRanges),
    plaintextByPair: plaintextByPair(underlay.lines, o.protectedRanges, o.lab.nodes),
    underlay,
    matched,
    ...(settledAt !== undefined ? { settledAt } : {}),
  };
}

/** Replies that arrived in [start, end] per pair (a blocked pair gets none, whatever was queued before). */
export function repliesBetween(p: PairFigures, start: number, end: number): number {
  return p.result.records.filter(
    (r) => r.repliedAt !== undefined && r.repliedAt >= start && r.repliedAt <= end,
  ).length;
}

/** The report in a few lines: per pair, TCP, plaintext, WireGuard datagrams, rule counters. */
export function describeMesh(name: string, r: MeshReport<unknown>): string {
  const pairs = r.pairs
    .map(
      (p) =>
        `${short(p.from)}->${short(p.to)} ${p.received}/${p.sent} (${p.rate}/s, gap ${p.maxGapMs} ms` +
        (r.settledAt !== undefined ? `, after ${p.receivedAfter}/${p.sentAfter}` : '') +
        `, last 2 s ${p.receivedLast}/${p.sentLast}` +
        ')',
    )
    .join('; ');
  const tcp = r.tcp
    ? `TCP ${short(r.tcp.from)}->${short(r.tcp.to)} ${r.tcp.received}/${r.tcp.sent}`
    : 'no TCP';
  const pt = r.plaintext;
  const matched = Object.entries(r.matched)
    .map(([n, m]) => `${short(n)} ${m.before ?? '-'}->${m.after ?? '-'}`)
    .join(', ');
  return (
    `${name}: pings answered/sent ${pairs}; ${tcp}; ` +
    `plaintext on the underlay ${pt.total} (ICMP ${pt.icmp}, TCP ${pt.tcp}, UDP ${pt.udp}, other ${pt.other})` +
    ` by pair ${JSON.stringify(r.plaintextByPair)}; ` +
    `WireGuard datagrams ${r.underlay.wireguard} in ${r.underlay.chunks} capture(s), truncated ${r.underlay.truncated}, ` +
    `probe payload seen ${r.underlay.marker}; rules matched (packets) ${matched}` +
    (pt.sample.length ? `; e.g. ${pt.sample.join(' | ')}` : '')
  );
}

/** lab-<run>-n3 -> n3 */
function short(node: string): string {
  return /-(n\d+)$/.exec(node)?.[1] ?? node;
}
