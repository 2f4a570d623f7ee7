import { median, parsePing, summarize, type ProbeRecord } from './probes.js';

const T0 = 1_796_000_000_000; // ms
/** `ping -D -O` lines: a reply for each seq in `replied`, "no answer yet" for the others (40 ms apart). */
function pingOutput(sent: number, replied: ReadonlySet<number>, summary = true): string {
  const at = (seq: number, extraMs: number) => ((T0 + (seq - 1) * 40 + extraMs) / 1000).toFixed(6);
  const lines = ['PING 100.64.0.2 (100.64.0.2) 56(84) bytes of data.'];
  for (let seq = 1; seq <= sent; seq++) {
    if (replied.has(seq))
      lines.push(`[${at(seq, 0.5)}] 64 bytes from 100.64.0.2: icmp_seq=${seq} ttl=64 time=0.500 ms`);
    else if (seq < sent) lines.push(`[${at(seq + 1, 0)}] no answer yet for icmp_seq=${seq}`);
  }
  if (summary)
    lines.push(
      '',
      '--- 100.64.0.2 ping statistics ---',
      `${sent} packets transmitted, ${replied.size} received`,
    );
  return lines.join('\n');
}
const range = (from: number, to: number) =>
  new Set(Array.from({ length: to - from + 1 }, (_, i) => from + i));
/** window of probes 1..n: from the first send to 20 ms after the last */
const windowOf = (n: number) => ({ start: T0, end: T0 + (n - 1) * 40 + 20 });

test('parsePing reads every probe: send and reply times of the answered, send times of the unanswered', () => {
  const { probes, transmitted } = parsePing(pingOutput(8, new Set([1, 2, 6, 7])), 40);
  expect(transmitted).toBe(8);
  expect(probes.map((p) => p.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  expect(probes.filter((p) => p.repliedAt !== undefined).map((p) => p.seq)).toEqual([1, 2, 6, 7]);
  for (const p of probes) expect(p.sentAt).toBeCloseTo(T0 + (p.seq - 1) * 40, 3);
  expect(probes[0]!.repliedAt).toBeCloseTo(T0 + 0.5, 3);
});

test('a duplicate reply counts once', () => {
  const out = `${pingOutput(2, new Set([1, 2]), false)}\n[${((T0 + 3) / 1000).toFixed(6)}] 64 bytes from 100.64.0.2: icmp_seq=1 ttl=64 time=3.000 ms (DUP!)\n2 packets transmitted, 2 received, +1 duplicates`;
  const { probes } = parsePing(out, 40);
  expect(probes.filter((p) => p.repliedAt !== undefined)).toHaveLength(2);
  expect(probes[0]!.repliedAt).toBeCloseTo(T0 + 0.5, 3);
});

test('a gap in the middle: lost probes and the time from the last reply before to the first after', () => {
  const { probes } = parsePing(pingOutput(8, new Set([1, 2, 6, 7, 8])), 40);
  const s = summarize(probes, windowOf(8));
  expect(s).toMatchObject({ sent: 8, received: 5, lost: 3 });
  expect(s.maxGapMs).toBe(160); // reply to 2 (at 40.5 ms) to reply to 6 (at 200.5 ms)
});

test('a pair that dies and stays dead: every probe after the last reply is lost, the gap runs to the end', () => {
  const { probes } = parsePing(pingOutput(100, range(1, 50)), 40);
  const s = summarize(probes, windowOf(100), T0 + 50 * 40);
  expect(s).toMatchObject({ sent: 100, received: 50, lost: 50 });
  // from the reply to probe 50 (1960.5 ms) to the window's end (3980 ms)
  expect(s.maxGapMs).toBe(2020);
  // from the cutover (2000 ms) to the end of the window: no reply after it
  expect(s.gapFromCutoverMs).toBe(1980);
});

test('a pair that never answers: everything lost, the whole window is the gap', () => {
  const { probes } = parsePing(pingOutput(100, new Set()), 40);
  expect(probes).toHaveLength(100);
  const s = summarize(probes, windowOf(100), T0 + 1000);
  expect(s).toMatchObject({ sent: 100, received: 0, lost: 100, maxGapMs: 3980, gapFromCutoverMs: 2980 });
});

test('a ping cut off before its summary line still counts the probes it reported', () => {
  const { probes, transmitted } = parsePing(pingOutput(10, range(1, 4), false), 40);
  expect(transmitted).toBe(9); // the last "no answer yet" is for 9
  expect(summarize(probes, windowOf(9))).toMatchObject({ sent: 9, received: 4, lost: 5 });
});

test('only probes sent inside the window count; a late reply is clamped to the window', () => {
  const probes: ProbeRecord[] = [
    { seq: 1, sentAt: T0 - 40, repliedAt: T0 - 39 }, // before the window
    { seq: 2, sentAt: T0, repliedAt: T0 + 1 },
    { seq: 3, sentAt: T0 + 40, repliedAt: T0 + 41 },
    { seq: 4, sentAt: T0 + 80, repliedAt: T0 + 900 }, // answered after the window ended
    { seq: 5, sentAt: T0 + 120 }, // the tail: after the window, not counted
  ];
  const s = summarize(probes, { start: T0, end: T0 + 100 });
  expect(s).toMatchObject({ sent: 3, received: 3, lost: 0 });
  expect(s.maxGapMs).toBe(59); // 41 → 100 (the late reply counts at the window's end)
});

test('the gap from the cutover ends at the first reply to a probe sent after it', () => {
  // replies to 1..10, 11..30 lost, replies from 31 on; cutover at probe 11's send time
  const { probes } = parsePing(pingOutput(60, new Set([...range(1, 10), ...range(31, 60)])), 40);
  const s = summarize(probes, windowOf(60), T0 + 10 * 40);
  expect(s.gapFromCutoverMs).toBe(801); // probe 31 sent at 1200 ms, answered 0.5 ms later
  // a reply that arrives after the cutover to a probe sent before it does not end the gap
  const late = probes.map((p) => (p.seq === 10 ? { ...p, repliedAt: T0 + 10 * 40 + 5 } : p));
  expect(summarize(late, windowOf(60), T0 + 10 * 40).gapFromCutoverMs).toBe(801);
  // no loss: the gap from the cutover is one interval at most
  const clean = parsePing(pingOutput(60, range(1, 60)), 40).probes;
  expect(summarize(clean, windowOf(60), T0 + 10 * 40 - 10).gapFromCutoverMs).toBeLessThanOrEqual(41);
});

test('median', () => {
  expect(median([3, 1, 2])).toBe(2);
  expect(median([4, 1, 2, 3])).toBe(2.5);
  expect(median([])).toBe(0);
});
