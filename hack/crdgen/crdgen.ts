// Turns the zod schemas of api/v1alpha1 into CustomResourceDefinitions. A small walker rather than
// z.toJSONSchema: a CRD needs *structural* OpenAPI v3 (every node typed, everything inline, no anyOf/$ref,
// OpenAPI 3.0 keywords), and anything the walker does not know how to express is an error, not a silent
// approximation. Descriptions and Kubernetes extensions come from zod's metadata registry.
import { dump } from 'js-yaml';
import { z } from 'zod';
import { GROUP, VERSION, type CelRule, type KindInfo } from '../../api/v1alpha1/groupversion.js';

export interface JSONSchemaProps {
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  description?: string;
  format?: string;
  default?: unknown;
  enum?: unknown[];
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: boolean;
  exclusiveMaximum?: boolean;
  minItems?: number;
  maxItems?: number;
  maxProperties?: number;
  items?: JSONSchemaProps;
  properties?: Record<string, JSONSchemaProps>;
  required?: string[];
  additionalProperties?: JSONSchemaProps;
  'x-kubernetes-list-type'?: string;
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-map-type'?: string;
  'x-kubernetes-validations'?: CelRule[];
}

export interface ConvertOptions {
  /** Fail when a property has no description, so `kubectl explain` documents every field. */
  requireDescriptions: boolean;
}

// The zod internals the walker reads. zod 4 documents `_zod.def` as the schema's definition.
interface Def {
  type: string;
  checks?: { _zod: { def: CheckDef } }[];
  innerType?: z.ZodType;
  defaultValue?: unknown;
  element?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  catchall?: z.ZodType;
  keyType?: z.ZodType;
  valueType?: z.ZodType;
  entries?: Record<string, string | number>;
  values?: unknown[];
  // A format schema (z.int(), z.iso.datetime()) carries its own check in the def.
  check?: string;
  format?: string;
}

interface CheckDef {
  check: string;
  format?: string;
  pattern?: RegExp;
  value?: number;
  inclusive?: boolean;
  minimum?: number;
  maximum?: number;
  length?: number;
}

const defOf = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;

const STRING_FORMATS: Record<string, string> = { datetime: 'date-time', date: 'date', uuid: 'uuid' };

/** The part of a field that says whether the parent lists it in `required`. */
export function isOptional(schema: z.ZodType): boolean {
  const t = defOf(schema).type;
  return t === 'optional' || t === 'default' || t === 'prefault';
}

export function toOpenAPI(schema: z.ZodType, path = '', opts?: ConvertOptions): JSONSchemaProps {
  const def = defOf(schema);
  const fail = (msg: string): never => {
    throw new Error(`${path || '<root>'}: ${msg}`);
  };
  let out: JSONSchemaProps;
  switch (def.type) {
    case 'optional':
      out = toOpenAPI(def.innerType!, path, opts);
      break;
    case 'default':
    case 'prefault':
      out = { ...toOpenAPI(def.innerType!, path, opts), default: jsonCopy(def.defaultValue) };
      break;
    case 'string':
      out = stringSchema(def, fail);
      break;
    case 'number':
      out = numberSchema(def, fail);
      break;
    case 'boolean':
      out = { type: 'boolean' };
      break;
    case 'enum':
      out = { type: 'string', enum: Object.values(def.entries!) };
      if (out.enum!.some((v) => typeof v !== 'string')) fail('only string enums are supported');
      break;
    case 'literal':
      if (!def.values!.every((v) => typeof v === 'string')) fail('only string literals are supported');
      out = { type: 'string', enum: [...def.values!] };
      break;
    case 'array':
      out = {
        type: 'array',
        items: toOpenAPI(def.element!, `${path}[]`, opts),
        ...sizeChecks(def, 'Items', fail),
      };
      break;
    case 'record':
      if (defOf(def.keyType!).type !== 'string') fail('record keys must be strings');
      out = { type: 'object', additionalProperties: toOpenAPI(def.valueType!, `${path}{}`, opts) };
      break;
    case 'object': {
      if (def.catchall !== undefined && defOf(def.catchall).type !== 'never') {
        fail('objects with a catchall have no structural form');
      }
      const properties: Record<string, JSONSchemaProps> = {};
      const required: string[] = [];
      for (const [key, field] of Object.entries(def.shape!)) {
        const fieldPath = path === '' ? key : `${path}.${key}`;
        properties[key] = toOpenAPI(field, fieldPath, opts);
        if (opts?.requireDescriptions && properties[key].description === undefined) {
          throw new Error(`${fieldPath}: field has no description`);
        }
        if (!isOptional(field)) required.push(key);
      }
      out = { type: 'object', properties };
      if (required.length > 0) out.required = required;
      for (const c of def.checks ?? [])
        if (c._zod.def.check !== 'custom') fail(`unsupported object check ${c._zod.def.check}`);
      break;
    }
    default:
      return fail(`zod type ${def.type} has no structural OpenAPI form`);
  }
  return withMeta(out, schema);
}

/** Copies description and Kubernetes extensions from zod's registry (the outermost wrapper wins). */
function withMeta(out: JSONSchemaProps, schema: z.ZodType): JSONSchemaProps {
  const meta = z.globalRegistry.get(schema);
  if (meta === undefined) return out;
  const result = { ...out };
  if (meta.description !== undefined) result.description = meta.description;
  if (meta.maxProperties !== undefined) result.maxProperties = meta.maxProperties;
  if (meta['x-kubernetes-list-type'] !== undefined)
    result['x-kubernetes-list-type'] = meta['x-kubernetes-list-type'];
  if (meta['x-kubernetes-list-map-keys'] !== undefined) {
    result['x-kubernetes-list-map-keys'] = [...meta['x-kubernetes-list-map-keys']];
  }
  if (meta['x-kubernetes-map-type'] !== undefined)
    result['x-kubernetes-map-type'] = meta['x-kubernetes-map-type'];
  const rules = meta['x-kubernetes-validations'];
  if (rules !== undefined) {
    // Metadata is inherited by clones and wrappers re-register it, so the same rule can arrive twice.
    const merged = [...(out['x-kubernetes-validations'] ?? [])];
    for (const r of rules) if (!merged.some((m) => m.rule === r.rule)) merged.push({ ...r });
    result['x-kubernetes-validations'] = merged;
  }
  return result;
}

function checksOf(def: Def): CheckDef[] {
  const own = def.check !== undefined ? [def as unknown as CheckDef] : [];
  return [...own, ...(def.checks ?? []).map((c) => c._zod.def)];
}

function sizeChecks(def: Def, noun: 'Length' | 'Items', fail: (m: string) => never): JSONSchemaProps {
  const out: JSONSchemaProps = {};
  const min = `min${noun}` as const;
  const max = `max${noun}` as const;
  const tighten = (key: typeof min | typeof max, v: number) => {
    const cur = out[key];
    out[key] = cur === undefined ? v : key === min ? Math.max(cur, v) : Math.min(cur, v);
  };
  for (const c of checksOf(def)) {
    if (c.check === 'min_length') tighten(min, c.minimum!);
    else if (c.check === 'max_length') tighten(max, c.maximum!);
    else if (c.check === 'length_equals') {
      tighten(min, c.length!);
      tighten(max, c.length!);
    } else if (c.check !== 'custom' && c.check !== 'string_format') fail(`unsupported check ${c.check}`);
  }
  return out;
}

function stringSchema(def: Def, fail: (m: string) => never): JSONSchemaProps {
  const out: JSONSchemaProps = { type: 'string', ...sizeChecks(def, 'Length', fail) };
  for (const c of checksOf(def)) {
    if (c.check !== 'string_format') continue;
    if (c.format === 'regex') {
      if (out.pattern !== undefined) fail('more than one pattern');
      if (c.pattern!.flags !== '')
        fail(`pattern /${c.pattern!.source}/ has flags, which OpenAPI cannot express`);
      out.pattern = c.pattern!.source;
    } else {
      const format = STRING_FORMATS[c.format!];
      if (format === undefined) fail(`string format ${c.format} has no OpenAPI equivalent here`);
      out.format = format;
    }
  }
  return out;
}

const INT_FORMATS: Record<string, string> = {
  int32: 'int32',
  safeint: 'int64',
  uint32: 'int64',
  int64: 'int64',
};

function numberSchema(def: Def, fail: (m: string) => never): JSONSchemaProps {
  const out: JSONSchemaProps = { type: 'number' };
  for (const c of checksOf(def)) {
    switch (c.check) {
      case 'number_format': {
        const f = INT_FORMATS[c.format!];
        if (f === undefined) fail(`number format ${c.format} is not supported`);
        out.type = 'integer';
        out.format = f;
        if (c.format === 'uint32') out.minimum = Math.max(out.minimum ?? 0, 0);
        break;
      }
      case 'greater_than':
        out.minimum = c.value!;
        if (!c.inclusive) out.exclusiveMinimum = true;
        break;
      case 'less_than':
        out.maximum = c.value!;
        if (!c.inclusive) out.exclusiveMaximum = true;
        break;
      case 'custom':
        break;
      default:
        fail(`unsupported number check ${c.check}`);
    }
  }
  return out;
}

export interface CRD {
  apiVersion: 'apiextensions.k8s.io/v1';
  kind: 'CustomResourceDefinition';
  metadata: { name: string };
  spec: Record<string, unknown>;
}

export function crdName(info: KindInfo): string {
  return `${info.plural}.${GROUP}`;
}

export function toCRD(info: KindInfo): CRD {
  const opts: ConvertOptions = { requireDescriptions: true };
  const openAPIV3Schema: JSONSchemaProps = {
    description: info.description,
    type: 'object',
    properties: {
      apiVersion: {
        type: 'string',
        description:
          'APIVersion defines the versioned schema of this representation of an object. Servers should convert ' +
          'recognized schemas to the latest internal value, and may reject unrecognized values.',
      },
      kind: {
        type: 'string',
        description: 'Kind is a string value representing the REST resource this object represents.',
      },
      metadata: { type: 'object' },
      spec: toOpenAPI(info.spec, 'spec', opts),
      status: toOpenAPI(info.status, 'status', opts),
    },
    required: ['spec'],
  };
  if (info.rootValidations.length > 0) {
    openAPIV3Schema['x-kubernetes-validations'] = info.rootValidations.map((r) => ({ ...r }));
  }
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: crdName(info) },
    spec: {
      group: GROUP,
      names: {
        kind: info.kind,
        listKind: `${info.kind}List`,
        plural: info.plural,
        singular: info.singular,
        shortNames: [...info.shortNames],
        categories: [...info.categories],
      },
      scope: info.scope,
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: info.printerColumns.map((c) => ({ ...c })),
          schema: { openAPIV3Schema },
        },
      ],
    },
  };
}

const HEADER = '# Generated by `npm run manifests` (hack/gen-crds.ts) from api/v1alpha1. DO NOT EDIT.\n';

export function renderCRD(info: KindInfo): string {
  return HEADER + dump(toCRD(info), { noRefs: true, lineWidth: 110 });
}

/** Where `npm run manifests` writes a kind's CRD, relative to the repository root. */
export function crdFile(info: KindInfo): string {
  return `config/crd/bases/${GROUP}_${info.plural}.yaml`;
}

/**
 * Problems that would make the API server reject the schema as non-structural, or that this project rules
 * out: a node without a type, composition keywords, references. Empty when the schema is fine.
 */
export function structuralProblems(schema: JSONSchemaProps, path = '<root>'): string[] {
  const problems: string[] = [];
  const raw = schema as Record<string, unknown>;
  for (const k of [
    '$ref',
    'anyOf',
    'oneOf',
    'allOf',
    'not',
    'nullable',
    'x-kubernetes-preserve-unknown-fields',
  ]) {
    if (k in raw) problems.push(`${path}: uses ${k}`);
  }
  if (schema.type === undefined) problems.push(`${path}: no type`);
  if (schema.type === 'array' && schema.items === undefined) problems.push(`${path}: array without items`);
  if (
    schema.type === 'object' &&
    schema.properties === undefined &&
    schema.additionalProperties === undefined
  ) {
    if (path !== 'metadata') problems.push(`${path}: object without properties`);
  }
  for (const [k, v] of Object.entries(schema.properties ?? {})) {
    problems.push(...structuralProblems(v, path === '<root>' ? k : `${path}.${k}`));
  }
  if (schema.items !== undefined) problems.push(...structuralProblems(schema.items, `${path}[]`));
  if (schema.additionalProperties !== undefined) {
    problems.push(...structuralProblems(schema.additionalProperties, `${path}{}`));
  }
  for (const r of schema.required ?? []) {
    if (!(r in (schema.properties ?? {}))) problems.push(`${path}: required ${r} is not a property`);
  }
  return problems;
}

/** Defaults are JSON values; a JSON copy (not structuredClone) keeps plain objects plain in every realm. */
function jsonCopy(v: unknown): unknown {
  return JSON.parse(JSON.stringify(v)) as unknown;
}
