// Every metric an alert (config/prometheus/prometheusrule.yaml) or a dashboard panel
// (config/prometheus/sealmesh-dashboard.json) uses is registered by the code: the registries are built here
// as the operator and the agent build them, so a renamed or removed metric fails this test.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, expect, test } from '@jest/globals';
import { load } from 'js-yaml';
import { Registry } from 'prom-client';
import { AgentMetrics } from '../../agent/metrics.js';
import { RuntimeMetrics } from '../../lib/runtime/metrics.js';
import { operatorMetrics } from '../../operator/metrics.js';
import { metricNames } from './promql.js';

const root = resolve(import.meta.dirname, '..', '..');

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
}

function ruleExpressions(): Array<{ where: string; expr: string }> {
  const doc = load(readFileSync(resolve(root, 'config/prometheus/prometheusrule.yaml'), 'utf8')) as {
    spec: { groups: Array<{ name: string; rules: Rule[] }> };
  };
  return doc.spec.groups.flatMap((g) =>
    g.rules.map((r) => ({ where: `rule ${r.alert ?? r.record}`, expr: String(r.expr) })),
  );
}

interface Panel {
  title: string;
  targets?: Array<{ expr: string }>;
  panels?: Panel[];
}

function dashboardExpressions(): Array<{ where: string; expr: string }> {
  const dash = JSON.parse(
    readFileSync(resolve(root, 'config/prometheus/sealmesh-dashboard.json'), 'utf8'),
  ) as {
    panels: Panel[];
    templating: { list: Array<{ name: string; query?: { query?: string } | string }> };
  };
  const out: Array<{ where: string; expr: string }> = [];
  const visit = (p: Panel) => {
    for (const t of p.targets ?? []) out.push({ where: `panel "${p.title}"`, expr: t.expr });
    for (const c of p.panels ?? []) visit(c);
  };
  dash.panels.forEach(visit);
  for (const v of dash.templating.list) {
    const q = typeof v.query === 'string' ? v.query : v.query?.query;
    const m = q && /^label_values\((\w+),/.exec(q);
    if (m) out.push({ where: `variable ${v.name}`, expr: m[1]! });
  }
  return out;
}

const registries: Array<() => void> = [];
afterAll(() => registries.forEach((stop) => stop()));

/** Names and types of every metric the operator and the agent register. */
function registered(): Map<string, string> {
  const registry = new Registry();
  new RuntimeMetrics(registry);
  const op = operatorMetrics(registry);
  registries.push(() => op.stop());
  new AgentMetrics(registry);
  return new Map(registry.getMetricsAsArray().map((m) => [m.name, String(m.type)]));
}

/** A series name as queried: a registered name, or a histogram's _bucket/_sum/_count. */
function isRegistered(name: string, names: Map<string, string>): boolean {
  if (names.has(name)) return true;
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  return !!m && ['histogram', 'summary'].includes(names.get(m[1]!) ?? '');
}

test('every metric the alerts and the dashboard use is registered by the operator or the agent', () => {
  const names = registered();
  const exprs = [...ruleExpressions(), ...dashboardExpressions()];
  expect(exprs.length).toBeGreaterThan(20);
  const used = new Set<string>();
  const missing: string[] = [];
  for (const { where, expr } of exprs) {
    const found = metricNames(expr);
    expect(found.length).toBeGreaterThan(0);
    for (const name of found) {
      used.add(name);
      if (isRegistered(name, names)) continue;
      missing.push(`${where}: ${name}`);
    }
  }
  expect(missing).toEqual([]);
  // The operator's pair and rotation metrics and the agent's peer metrics are all charted or alerted on.
  for (const name of [
    'sealmesh_peer_state',
    'sealmesh_wireguard_latest_handshake_seconds',
    'sealmesh_wireguard_received_bytes_total',
    'sealmesh_failclosed_dropped_packets_total',
    'sealmesh_pairs',
    'sealmesh_rotations_total',
    'sealmesh_next_rotation_timestamp_seconds',
    'sealmesh_last_rotation_timestamp_seconds',
  ])
    expect(used).toContain(name);
});

test('the alerts the issue asks for are there, each with a severity and a summary', () => {
  const doc = load(readFileSync(resolve(root, 'config/prometheus/prometheusrule.yaml'), 'utf8')) as {
    spec: {
      groups: Array<{
        rules: Array<{ alert: string; labels?: { severity?: string }; annotations?: { summary?: string } }>;
      }>;
    };
  };
  const rules = doc.spec.groups.flatMap((g) => g.rules);
  expect(rules.map((r) => r.alert).sort()).toEqual([
    'SealmeshHandshakeStale',
    'SealmeshKeysOverdue',
    'SealmeshPairStalled',
    'SealmeshPairsNotEncrypted',
    'SealmeshPeerNotEncrypted',
    'SealmeshPlaintextDropped',
    'SealmeshRotationAborted',
  ]);
  for (const r of rules) {
    expect(['info', 'warning', 'critical']).toContain(r.labels?.severity);
    expect(r.annotations?.summary).toBeTruthy();
  }
});

test('the dashboard ConfigMap carries the Grafana sidecar label', () => {
  const k = load(readFileSync(resolve(root, 'config/prometheus/kustomization.yaml'), 'utf8')) as {
    configMapGenerator: Array<{ files: string[]; options: { labels: Record<string, string> } }>;
  };
  const gen = k.configMapGenerator[0]!;
  expect(gen.files).toEqual(['sealmesh-dashboard.json']);
  expect(gen.options.labels.grafana_dashboard).toBe('1');
});
