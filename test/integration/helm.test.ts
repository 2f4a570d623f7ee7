// The Helm chart (charts/sealmesh) against the real API server: `helm lint`, `helm template` with default
// values and with every toggle on applied with `kubectl apply --dry-run=server`, the rendered objects equal to
// config/'s (one source of truth: the chart's CRDs, rules and dashboard are copies `npm run manifests` writes),
// values.schema.json refusing bad values, and the monitoring objects: ServiceMonitor and PrometheusRule
// against stand-in CRDs (fixtures/monitoring-crds.yaml), the rule groups through `promtool check rules`.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, expect, jest, test } from '@jest/globals';
import { dump, loadAll } from 'js-yaml';
import { kubeconfigPath, kubectlPath, repoRoot } from '../support/cluster.js';
import { runTool, toolPath } from '../support/tools.js';

jest.setTimeout(120_000);

const CHART = resolve(repoRoot, 'charts/sealmesh');
const NAMESPACE = 'sealmesh-system';
const ALL_ON = [
  'monitoring.serviceMonitor.enabled=true',
  'monitoring.prometheusRule.enabled=true',
  'monitoring.dashboard.enabled=true',
  'image.tag=test',
  'operator.replicas=1',
  'operator.port=8081',
  'agent.metricsPort=9500',
  'operator.resources.limits.cpu=1',
  'agent.resources.requests.cpu=10m',
];

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [k: string]: unknown;
}

const kubectl = (args: readonly string[], input?: string) =>
  execFileSync(kubectlPath(), ['--kubeconfig', kubeconfigPath, ...args], {
    encoding: 'utf8',
    stdio: 'pipe',
    input,
    maxBuffer: 64 << 20,
  });

function template(...set: string[]): string {
  return runTool('helm', [
    'template',
    'sealmesh',
    CHART,
    '--namespace',
    NAMESPACE,
    ...set.flatMap((s) => ['--set', s]),
  ]);
}

const objects = (yaml: string) =>
  (loadAll(yaml) as Array<K8sObject | null>).filter((o): o is K8sObject => !!o);
const key = (o: K8sObject) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;

function dryRun(yaml: string): string {
  return kubectl(['apply', '--server-side', '--force-conflicts', '--dry-run=server', '-f', '-'], yaml);
}

let tmp: string;

beforeAll(() => {
  // Built once and cached (hack/tools/build.sh); minutes on a new machine, when bootstrap has not done it.
  toolPath('helm');
  toolPath('promtool');
  tmp = mkdtempSync(join(tmpdir(), 'sealmesh-helm-'));
  // A dry run cannot create the namespaces the namespaced objects go into.
  kubectl(['apply', '--server-side', '--force-conflicts', '-k', resolve(repoRoot, 'config/namespace')]);
}, 30 * 60_000);

afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
  try {
    kubectl([
      'delete',
      '--ignore-not-found',
      '-f',
      resolve(repoRoot, 'test/integration/fixtures/monitoring-crds.yaml'),
    ]);
  } catch {
    // nothing to clean
  }
});

test('helm lint passes with default values and with every toggle on', () => {
  expect(runTool('helm', ['lint', '--strict', CHART])).toContain('0 chart(s) failed');
  expect(runTool('helm', ['lint', '--strict', CHART, ...ALL_ON.flatMap((s) => ['--set', s])])).toContain(
    '0 chart(s) failed',
  );
});

test('the default rendering applies to the API server (dry run) and is config/default plus nothing else', () => {
  // config/ runs sealmesh:latest; the chart's default tag is its appVersion.
  const rendered = template('image.tag=latest');
  const out = dryRun(rendered);
  for (const expected of [
    'customresourcedefinition.apiextensions.k8s.io/overlaynetworks.sealmesh.io',
    'deployment.apps/sealmesh-operator',
    'daemonset.apps/sealmesh-agent',
    'validatingadmissionpolicy.admissionregistration.k8s.io/sealmesh-agent-nodetunnels',
    'validatingadmissionpolicybinding.admissionregistration.k8s.io/sealmesh-agent-leases',
  ])
    expect(out).toContain(expected);
  // Labels and annotations aside (Helm's own, the CRDs' keep), every object is config/default's, and the
  // only one of config/default the chart leaves out is the release namespace (helm --create-namespace).
  const strip = (o: K8sObject) => {
    const { labels: _l, annotations: _a, ...metadata } = o.metadata;
    return { ...o, metadata };
  };
  const chart = new Map(objects(rendered).map((o) => [key(o), strip(o)]));
  const config = new Map(
    objects(kubectl(['kustomize', resolve(repoRoot, 'config/default')])).map((o) => [key(o), strip(o)]),
  );
  config.delete(`Namespace//${NAMESPACE}`);
  expect([...chart.keys()].sort()).toEqual([...config.keys()].sort());
  for (const [k, o] of config) expect([k, chart.get(k)]).toEqual([k, o]);
});

test('CRDs carry helm.sh/resource-policy: keep unless crds.keep=false, and are left out with crds.install=false', () => {
  const crds = (...set: string[]) =>
    objects(template(...set)).filter((o) => o.kind === 'CustomResourceDefinition');
  expect(
    crds()
      .map((c) => c.metadata.name)
      .sort(),
  ).toEqual(['nodetunnels.sealmesh.io', 'overlaynetworks.sealmesh.io']);
  for (const c of crds()) expect(c.metadata.annotations?.['helm.sh/resource-policy']).toBe('keep');
  for (const c of crds('crds.keep=false')) expect(c.metadata.annotations).toBeUndefined();
  expect(crds('crds.install=false')).toEqual([]);
  const policies = (...set: string[]) =>
    objects(template(...set)).filter((o) => o.kind.startsWith('ValidatingAdmissionPolicy')).length;
  expect(policies()).toBe(4);
  expect(policies('admissionPolicies.enabled=false')).toBe(0);
});

test('every toggle on: ServiceMonitors, PrometheusRule and dashboard apply (stand-in CRDs), settings reach the pods', () => {
  kubectl([
    'apply',
    '--server-side',
    '-f',
    resolve(repoRoot, 'test/integration/fixtures/monitoring-crds.yaml'),
  ]);
  kubectl([
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    'crd/servicemonitors.monitoring.coreos.com',
    'crd/prometheusrules.monitoring.coreos.com',
  ]);
  const rendered = template(...ALL_ON);
  const out = dryRun(rendered);
  for (const expected of [
    'servicemonitor.monitoring.coreos.com/sealmesh-operator',
    'servicemonitor.monitoring.coreos.com/sealmesh-agent',
    'prometheusrule.monitoring.coreos.com/sealmesh',
    'configmap/sealmesh-dashboard',
    'service/sealmesh-operator-metrics',
    'service/sealmesh-agent-metrics',
  ])
    expect(out).toContain(expected);
  const all = objects(rendered);
  const find = (kind: string, name: string) => all.find((o) => o.kind === kind && o.metadata.name === name)!;
  const dashboard = find('ConfigMap', 'sealmesh-dashboard') as K8sObject & { data: Record<string, string> };
  expect(dashboard.metadata.labels?.grafana_dashboard).toBe('1');
  expect(JSON.parse(dashboard.data['sealmesh-dashboard.json']!)).toMatchObject({ uid: 'sealmesh' });
  type Pod = { spec: { template: { spec: { containers: Array<Record<string, unknown>> } } } };
  const operator = (find('Deployment', 'sealmesh-operator') as unknown as Pod).spec.template.spec
    .containers[0]!;
  expect(operator.image).toBe('sealmesh:test');
  expect(operator.args).toEqual(['--metrics-port', '8081']);
  expect(operator.resources).toEqual({
    requests: { cpu: '50m', memory: '128Mi' },
    limits: { cpu: 1, memory: '512Mi' },
  });
  const agent = (find('DaemonSet', 'sealmesh-agent') as unknown as Pod).spec.template.spec.containers[0]!;
  expect(agent.args).toEqual(['--metrics-port', '9500']);
  expect(agent.ports).toEqual([{ name: 'metrics', containerPort: 9500, protocol: 'TCP' }]);
  // The rule groups as Prometheus loads them: promtool parses every expression and template.
  const rule = find('PrometheusRule', 'sealmesh') as K8sObject & { spec: { groups: unknown[] } };
  const file = join(tmp, 'rules.yaml');
  writeFileSync(file, dump({ groups: rule.spec.groups }));
  expect(runTool('promtool', ['check', 'rules', file])).toMatch(/SUCCESS: 7 rules found/);
});

test('values.schema.json refuses unknown and ill-typed values', () => {
  expect(() => template('operatr.replicas=1')).toThrow(/operatr/);
  expect(() => template('operator.replicas=-1')).toThrow(/replicas/);
  expect(() => template('agent.metricsPort=70000')).toThrow(/metricsPort/);
  expect(() => template('keyNamespace.name=sealmesh-system')).toThrow(
    /must differ from the release namespace/,
  );
});
