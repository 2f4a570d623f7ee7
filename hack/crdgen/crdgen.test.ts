import { resolve } from 'node:path';
import { load } from 'js-yaml';
import { z } from 'zod';
import { nodeTunnelKind } from '../../api/v1alpha1/nodetunnel.types.js';
import { overlayNetworkKind } from '../../api/v1alpha1/overlaynetwork.types.js';
import { CRON, withRules } from '../../api/v1alpha1/validation.js';
import { crdFile, renderCRD, structuralProblems, toCRD, toOpenAPI, type JSONSchemaProps } from './crdgen.js';
import { KINDS, generatedFiles, staleFiles } from './manifests.js';

const root = resolve(import.meta.dirname, '..', '..');

describe('toOpenAPI', () => {
  test.each<[string, z.ZodType, JSONSchemaProps]>([
    ['string with bounds', z.string().min(1).max(5), { type: 'string', minLength: 1, maxLength: 5 }],
    ['string pattern', z.string().regex(/^a+$/), { type: 'string', pattern: '^a+$' }],
    ['date-time', z.iso.datetime({ offset: true }), { type: 'string', format: 'date-time' }],
    [
      'int64 with range',
      z.int().min(0).max(10),
      { type: 'integer', format: 'int64', minimum: 0, maximum: 10 },
    ],
    ['int32', z.int32().min(1), { type: 'integer', format: 'int32', minimum: 1 }],
    [
      'exclusive bounds',
      z.number().gt(0).lt(1),
      { type: 'number', minimum: 0, exclusiveMinimum: true, maximum: 1, exclusiveMaximum: true },
    ],
    ['boolean default', z.boolean().default(true), { type: 'boolean', default: true }],
    ['enum', z.enum(['A', 'B']), { type: 'string', enum: ['A', 'B'] }],
    ['literal', z.literal('x'), { type: 'string', enum: ['x'] }],
    [
      'array',
      z.array(z.string()).min(1).max(3),
      { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: 3 },
    ],
    [
      'map',
      z.record(z.string(), z.int32()),
      { type: 'object', additionalProperties: { type: 'integer', format: 'int32' } },
    ],
    ['described', z.string().describe('d'), { type: 'string', description: 'd' }],
    [
      'description on the optional wrapper',
      z.string().optional().describe('w'),
      { type: 'string', description: 'w' },
    ],
    [
      'object: optional and defaulted fields are not required',
      z.object({ a: z.string(), b: z.string().optional(), c: z.int().default(1) }),
      {
        type: 'object',
        properties: {
          a: { type: 'string' },
          b: { type: 'string' },
          c: { type: 'integer', format: 'int64', default: 1 },
        },
        required: ['a'],
      },
    ],
    [
      'prefault becomes a default the API server expands',
      z.object({ x: z.string().default('d') }).prefault({}),
      { type: 'object', properties: { x: { type: 'string', default: 'd' } }, default: {} },
    ],
  ])('%s', (_, schema, want) => {
    expect(toOpenAPI(schema)).toEqual(want);
  });

  test('CEL rules and list types come from the metadata registry', () => {
    const s = withRules(z.array(z.object({ k: z.string() })).max(2), [
      { rule: 'size(self) > 0', message: 'empty', test: (v) => v.length > 0 },
    ]).meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['k'] });
    expect(toOpenAPI(s)).toMatchObject({
      maxItems: 2,
      'x-kubernetes-validations': [{ rule: 'size(self) > 0', message: 'empty' }],
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['k'],
    });
  });

  test.each<[string, z.ZodType, RegExp]>([
    ['unions', z.object({ u: z.union([z.string(), z.int()]) }), /u: zod type union/],
    ['transforms', z.object({ t: z.string().transform((s) => s.length) }), /t: zod type pipe/],
    ['two patterns', z.object({ p: z.string().regex(/a/).regex(/b/) }), /p: more than one pattern/],
    ['regex flags', z.object({ f: z.string().regex(/a/i) }), /f: pattern \/a\/ has flags/],
    ['loose objects', z.looseObject({ a: z.string() }), /catchall/],
    ['number keys', z.record(z.enum(['a']), z.string()), /record keys must be strings/],
  ])('refuses %s, which have no structural form', (_, schema, message) => {
    expect(() => toOpenAPI(schema)).toThrow(message);
  });

  test('with requireDescriptions, a field without one is an error', () => {
    expect(() =>
      toOpenAPI(z.object({ a: z.object({ b: z.string() }).describe('a') }), 'spec', {
        requireDescriptions: true,
      }),
    ).toThrow('spec.a.b: field has no description');
  });
});

describe('the sealmesh CRDs', () => {
  const crds = KINDS.map((k) => [k.kind, k, toCRD(k)] as const);

  test.each(crds)('%s is a structural schema without a single untyped node', (_, _k, crd) => {
    const schema = (crd.spec.versions as { schema: { openAPIV3Schema: JSONSchemaProps } }[])[0]!.schema
      .openAPIV3Schema;
    expect(structuralProblems(schema)).toEqual([]);
    expect(JSON.stringify(schema)).not.toContain('$ref');
  });

  test('structuralProblems finds what the API server would refuse', () => {
    expect(
      structuralProblems({
        type: 'object',
        properties: { a: {}, b: { type: 'array' }, c: { type: 'object' } },
        required: ['d'],
      }),
    ).toEqual([
      'a: no type',
      'b: array without items',
      'c: object without properties',
      '<root>: required d is not a property',
    ]);
  });

  test.each(crds)(
    '%s: every CEL rule has a message, and every regex in CEL compiles in JavaScript',
    (_, _k, crd) => {
      const rules: { rule: string; message?: string }[] = [];
      const walk = (v: unknown) => {
        if (Array.isArray(v)) v.forEach(walk);
        else if (v !== null && typeof v === 'object') {
          for (const [k, x] of Object.entries(v)) {
            if (k === 'x-kubernetes-validations') rules.push(...(x as { rule: string }[]));
            else walk(x);
          }
        }
      };
      walk(crd);
      expect(rules.length).toBeGreaterThan(5);
      for (const r of rules) {
        expect(r.message).toBeTruthy();
        for (const [, lit] of r.rule.matchAll(/matches\('((?:[^'\\]|\\.)*)'\)/g)) {
          expect(() => new RegExp(lit!.replaceAll('\\\\', '\\'))).not.toThrow();
        }
      }
    },
  );

  test('OverlayNetwork: names, scope, defaults and printer columns as in DESIGN.md', () => {
    const crd = toCRD(overlayNetworkKind);
    expect(crd.metadata.name).toBe('overlaynetworks.sealmesh.io');
    expect(crd.spec).toMatchObject({
      group: 'sealmesh.io',
      scope: 'Cluster',
      names: {
        kind: 'OverlayNetwork',
        plural: 'overlaynetworks',
        shortNames: ['ovl'],
        categories: ['sealmesh'],
      },
    });
    const v = (crd.spec.versions as Record<string, unknown>[])[0]!;
    expect(v.subresources).toEqual({ status: {} });
    const cols = (v.additionalPrinterColumns as { name: string; priority?: number }[]).filter(
      (c) => !c.priority,
    );
    expect(cols.map((c) => c.name.toUpperCase())).toEqual([
      'NODES',
      'ENCRYPTED',
      'EPOCH',
      'NEXT-ROTATION',
      'READY',
      'AGE',
    ]);
    const spec = (v.schema as { openAPIV3Schema: JSONSchemaProps }).openAPIV3Schema.properties!.spec!;
    expect(spec.properties!.listenPort!.default).toBe(51890);
    expect(spec.properties!.persistentKeepalive!.default).toBe('25s');
    expect(spec.properties!.routePodCIDRs!.default).toBe(true);
    expect(spec.properties!.paused!.default).toBe(false);
    expect(spec.properties!.keys!.default).toEqual({});
    expect(spec.properties!.keys!.properties!.custody).toMatchObject({
      enum: ['Node', 'Operator'],
      default: 'Node',
    });
    expect(spec.properties!.keys!.properties!.presharedKeys).toMatchObject({
      enum: ['PerPair', 'Disabled'],
      default: 'PerPair',
    });
    expect(spec.required).toEqual(['addressPool']);
    const status = (v.schema as { openAPIV3Schema: JSONSchemaProps }).openAPIV3Schema.properties!.status!;
    expect(status.properties!.conditions).toMatchObject({
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['type'],
    });
    const schedule = spec.properties!.keys!.properties!.rotation!.properties!.schedule!;
    expect(schedule['x-kubernetes-validations']![0]!.rule).toBe(`self.matches('${CRON}')`);
  });

  test('NodeTunnel: immutable overlay and node, per-peer list map, name rule', () => {
    const crd = toCRD(nodeTunnelKind);
    expect(crd.spec).toMatchObject({
      scope: 'Cluster',
      names: { shortNames: ['ntun'], categories: ['sealmesh'] },
    });
    const v = (crd.spec.versions as Record<string, unknown>[])[0]!;
    const cols = (v.additionalPrinterColumns as { name: string }[]).map((c) => c.name.toUpperCase());
    expect(cols).toEqual([
      'NODE',
      'OVERLAY',
      'ADDRESS',
      'ENDPOINT',
      'PEERS',
      'EPOCH',
      'READY',
      'AGENT',
      'AGE',
    ]);
    const root = (v.schema as { openAPIV3Schema: JSONSchemaProps }).openAPIV3Schema;
    const spec = root.properties!.spec!;
    expect(spec.properties!.overlay!['x-kubernetes-validations']).toEqual([
      { rule: 'self == oldSelf', message: 'overlay is immutable' },
    ]);
    expect(spec.properties!.nodeName!['x-kubernetes-validations']).toEqual([
      { rule: 'self == oldSelf', message: 'nodeName is immutable' },
    ]);
    expect(root.properties!.status!.properties!.peers).toMatchObject({
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['node'],
    });
    expect(root['x-kubernetes-validations']![0]!.rule).toContain('self.metadata.name');
  });

  test('rendering is deterministic and round-trips through YAML', () => {
    for (const k of KINDS) {
      const text = renderCRD(k);
      expect(renderCRD(k)).toBe(text);
      expect(load(text)).toEqual(JSON.parse(JSON.stringify(toCRD(k))));
      expect(crdFile(k)).toMatch(/^config\/crd\/bases\/sealmesh\.io_[a-z]+\.yaml$/);
    }
  });
});

test('the committed CRD YAML is what `npm run manifests` generates now', async () => {
  expect([...generatedFiles().keys()].sort()).toEqual([
    'charts/sealmesh/files/crds/sealmesh.io_nodetunnels.yaml',
    'charts/sealmesh/files/crds/sealmesh.io_overlaynetworks.yaml',
    'charts/sealmesh/files/prometheus/prometheusrule.yaml',
    'charts/sealmesh/files/prometheus/sealmesh-dashboard.json',
    'config/crd/bases/sealmesh.io_nodetunnels.yaml',
    'config/crd/bases/sealmesh.io_overlaynetworks.yaml',
  ]);
  const stale = await staleFiles(root);
  expect(stale).toEqual([]);
});

test('staleFiles reports a missing or changed file', async () => {
  const stale = await staleFiles(resolve(root, 'no-such-dir'));
  expect(stale.map((s) => s.detail)).toEqual(Array(6).fill('missing'));
});
