// The operator's pair and rotation metrics as a scrape shows them: pairs by state, rotation outcomes that start
// at 0 (so the first abort is an increase), key timestamps, and an overlay's series gone with the overlay.
import { expect, test } from '@jest/globals';
import { Registry } from 'prom-client';
import { operatorMetrics } from './metrics.js';

async function scrape(registry: Registry): Promise<string> {
  return registry.metrics();
}

function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test('pairs by state per overlay, Pending being what is neither encrypted, degraded nor unknown', async () => {
  const registry = new Registry();
  const m = operatorMetrics(registry);
  m.rotationMetrics.pairs('blue', { total: 10, encrypted: 5, degraded: 1, unknown: 2 });
  m.rotationMetrics.pairs('red', { total: 3, encrypted: 3, degraded: 0, unknown: 0 });
  const text = await scrape(registry);
  m.stop();
  expect(value(text, 'sealmesh_pairs{overlay="blue",state="Encrypted"}')).toBe(5);
  expect(value(text, 'sealmesh_pairs{overlay="blue",state="Pending"}')).toBe(2);
  expect(value(text, 'sealmesh_pairs{overlay="blue",state="Degraded"}')).toBe(1);
  expect(value(text, 'sealmesh_pairs{overlay="blue",state="Unknown"}')).toBe(2);
  expect(value(text, 'sealmesh_pairs{overlay="red",state="Encrypted"}')).toBe(3);
  expect(value(text, 'sealmesh_pairs{overlay="red",state="Pending"}')).toBe(0);
});

test('rotations by outcome: every series of a seen overlay starts at 0; incomplete and aborted are counted apart', async () => {
  const registry = new Registry();
  const m = operatorMetrics(registry);
  m.rotationMetrics.pairs('blue', { total: 3, encrypted: 3, degraded: 0, unknown: 0 });
  let text = await scrape(registry);
  for (const scope of ['Keys', 'PresharedKeys'])
    for (const outcome of ['completed', 'incomplete', 'aborted'])
      expect(
        value(text, `sealmesh_rotations_total{overlay="blue",scope="${scope}",outcome="${outcome}"}`),
      ).toBe(0);
  m.rotationMetrics.aborted('blue', 'Keys');
  m.rotationMetrics.completed('blue', 'Keys', 12, 2);
  m.rotationMetrics.completed('blue', 'Keys', 8, 0);
  m.rotationMetrics.completed('blue', 'PresharedKeys', 4, 0);
  text = await scrape(registry);
  m.stop();
  expect(value(text, 'sealmesh_rotations_total{overlay="blue",scope="Keys",outcome="aborted"}')).toBe(1);
  expect(value(text, 'sealmesh_rotations_total{overlay="blue",scope="Keys",outcome="incomplete"}')).toBe(1);
  expect(value(text, 'sealmesh_rotations_total{overlay="blue",scope="Keys",outcome="completed"}')).toBe(1);
  expect(
    value(text, 'sealmesh_rotations_total{overlay="blue",scope="PresharedKeys",outcome="completed"}'),
  ).toBe(1);
  expect(value(text, 'sealmesh_rotation_duration_seconds_count{overlay="blue",scope="Keys"}')).toBe(2);
});

test('key times: last rotation and next scheduled rotation as Unix timestamps, the next one only when scheduled', async () => {
  const registry = new Registry();
  const m = operatorMetrics(registry);
  const lastKeys = new Date('2026-01-01T00:00:00Z');
  const lastPsk = new Date('2026-01-02T00:00:00Z');
  m.rotationMetrics.keyTimes('blue', {
    lastKeys,
    lastPsk,
    nextRotationTime: new Date('2026-02-01T00:00:00Z'),
  });
  const text = await scrape(registry);
  m.stop();
  expect(value(text, 'sealmesh_last_rotation_timestamp_seconds{overlay="blue",kind="private"}')).toBe(
    lastKeys.getTime() / 1000,
  );
  expect(value(text, 'sealmesh_last_rotation_timestamp_seconds{overlay="blue",kind="preshared"}')).toBe(
    lastPsk.getTime() / 1000,
  );
  expect(value(text, 'sealmesh_next_rotation_timestamp_seconds{overlay="blue",kind="private"}')).toBe(
    Date.parse('2026-02-01T00:00:00Z') / 1000,
  );
  expect(text).not.toContain('sealmesh_next_rotation_timestamp_seconds{overlay="blue",kind="preshared"}');
  expect(value(text, 'sealmesh_key_age_seconds{overlay="blue",kind="private"}')).toBeGreaterThan(0);
});

test('post-quantum pairs and classical nodes per overlay; forgotten with the overlay', async () => {
  const registry = new Registry();
  const m = operatorMetrics(registry);
  m.rotationMetrics.postQuantum!('blue', { pairs: 6, postQuantumPairs: 3, classical: ['n4'] });
  m.rotationMetrics.postQuantum!('red', { pairs: 1, postQuantumPairs: 1, classical: [] });
  m.rotationMetrics.forget('red');
  const text = await scrape(registry);
  m.stop();
  expect(value(text, 'sealmesh_pairs_post_quantum{overlay="blue",sealed="hybrid"}')).toBe(3);
  expect(value(text, 'sealmesh_pairs_post_quantum{overlay="blue",sealed="all"}')).toBe(6);
  expect(value(text, 'sealmesh_nodes_classical_sealing{overlay="blue"}')).toBe(1);
  expect(text).not.toContain('overlay="red"');
});

test('a forgotten overlay leaves no series behind', async () => {
  const registry = new Registry();
  const m = operatorMetrics(registry);
  for (const overlay of ['blue', 'red']) {
    m.rotationMetrics.pairs(overlay, { total: 1, encrypted: 1, degraded: 0, unknown: 0 });
    m.rotationMetrics.keyTimes(overlay, { lastKeys: new Date(), lastPsk: new Date() });
    m.rotationMetrics.completed(overlay, 'Keys', 1, 0);
  }
  m.rotationMetrics.forget('blue');
  const text = await scrape(registry);
  m.stop();
  expect(text).not.toContain('overlay="blue"');
  expect(text).toContain('sealmesh_pairs{overlay="red",state="Encrypted"} 1');
  expect(text).toContain('sealmesh_rotations_total{overlay="red",scope="Keys",outcome="completed"} 1');
});
