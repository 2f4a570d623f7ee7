// The alert rules of config/prometheus/prometheusrule.yaml as Prometheus reads them: `promtool check rules`
// parses every expression and annotation template, `promtool test rules` runs the cases of
// fixtures/prometheus-rules.test.yaml (each alert fires on the series it is about and not on healthy ones).
// promtool is built from its Go module at the version in hack/tools/VERSIONS and cached (hack/tools/build.sh).
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { dump, load } from 'js-yaml';
import { repoRoot } from '../support/cluster.js';
import { runTool, toolPath } from '../support/tools.js';

interface RuleGroup {
  name: string;
  rules: Array<{ alert: string; annotations?: Record<string, string> }>;
}

const groups = () =>
  (
    load(readFileSync(resolve(repoRoot, 'config/prometheus/prometheusrule.yaml'), 'utf8')) as {
      spec: { groups: RuleGroup[] };
    }
  ).spec.groups;

let tmp: string;

beforeAll(() => {
  toolPath('promtool'); // minutes on a new machine when bootstrap has not built it
  tmp = mkdtempSync(join(tmpdir(), 'sealmesh-rules-'));
}, 30 * 60_000);

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

test('promtool check rules accepts every rule, expression and template', () => {
  const file = join(tmp, 'check.yaml');
  writeFileSync(file, dump({ groups: groups() }));
  expect(runTool('promtool', ['check', 'rules', file])).toMatch(/SUCCESS: 7 rules found/);
});

test('promtool test rules: every alert fires on its case and stays quiet on the healthy series', () => {
  // promtool compares annotations too: the cases check labels and timing, check rules the templates.
  const bare = groups().map((g) => ({ ...g, rules: g.rules.map(({ annotations: _a, ...r }) => r) }));
  writeFileSync(join(tmp, 'rules.yaml'), dump({ groups: bare }));
  const cases = join(tmp, 'cases.yaml');
  copyFileSync(resolve(repoRoot, 'test/integration/fixtures/prometheus-rules.test.yaml'), cases);
  const tested = new Set([...readFileSync(cases, 'utf8').matchAll(/alertname: (\w+)/g)].map((m) => m[1]));
  expect([...tested].sort()).toEqual(bare.flatMap((g) => g.rules.map((r) => r.alert)).sort());
  expect(runTool('promtool', ['test', 'rules', cases])).toContain('SUCCESS');
});
