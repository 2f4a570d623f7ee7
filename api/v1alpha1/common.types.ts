// Schemas both kinds share: metav1-style conditions, label selectors and object metadata, plus the parse
// helper that turns a zod failure into one readable line (field path and message).
import type { V1ObjectMeta } from '@kubernetes/client-node';
import { z } from 'zod';
import {
  LABEL_VALUE,
  QUALIFIED_NAME,
  celString,
  listMap,
  listSet,
  matchesRule,
  withRules,
} from './validation.js';

// ---------------------------------------------------------------------------------------------------------
// Conditions, as metav1.Condition.

export const ConditionStatusSchema = z.enum(['True', 'False', 'Unknown']);

export const ConditionSchema = z
  .object({
    type: z
      .string()
      .min(1)
      .max(316)
      .regex(new RegExp(QUALIFIED_NAME))
      .describe('Type of condition in CamelCase, e.g. Ready.'),
    status: ConditionStatusSchema.describe('Status of the condition: True, False or Unknown.'),
    observedGeneration: z
      .int()
      .min(0)
      .optional()
      .describe('The .metadata.generation the condition was computed from.'),
    lastTransitionTime: z.iso
      .datetime({ offset: true })
      .describe('Last time the condition changed status (not when it was last written).'),
    reason: z
      .string()
      .min(1)
      .max(1024)
      .regex(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/)
      .describe('Machine-readable CamelCase reason for the last transition, e.g. InvalidSpec.'),
    message: z
      .string()
      .max(32768)
      .describe('Human-readable details about the last transition; may be empty.'),
  })
  .describe('One aspect of the current state of this object.');

export type Condition = z.infer<typeof ConditionSchema>;

export function conditions(description: string) {
  return listMap(ConditionSchema, ['type'], 16).describe(description);
}

// ---------------------------------------------------------------------------------------------------------
// Label selectors, as metav1.LabelSelector.

const WITH_VALUES = ['In', 'NotIn'];

export const LabelSelectorRequirementSchema = withRules(
  z
    .object({
      key: withRules(z.string().min(1).max(317).describe('The label key the selector applies to.'), [
        matchesRule(
          QUALIFIED_NAME,
          'must be a label key: an optional DNS-subdomain prefix and /, then a name',
        ),
      ]),
      operator: z
        .enum(['In', 'NotIn', 'Exists', 'DoesNotExist'])
        .describe("The key's relationship to the values: In, NotIn, Exists or DoesNotExist."),
      values: listSet(
        withRules(z.string().max(63).describe('A label value.'), [
          matchesRule(LABEL_VALUE, 'must be a label value: at most 63 alphanumerics, -, _ or .'),
        ]),
        64,
      )
        .optional()
        .describe('Label values: non-empty for In and NotIn, empty or absent for Exists and DoesNotExist.'),
    })
    .describe('A selector requirement: a key, an operator and values.'),
  [
    {
      rule: "self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0 : !has(self.values) || size(self.values) == 0",
      message: 'values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist',
      fieldPath: '.values',
      test: (r) =>
        WITH_VALUES.includes(r.operator) ? (r.values?.length ?? 0) > 0 : (r.values?.length ?? 0) === 0,
    },
  ],
);

export const LabelSelectorSchema = z
  .object({
    matchLabels: withRules(
      z
        .record(
          z.string(),
          withRules(z.string().max(63).describe('A label value.'), [
            matchesRule(LABEL_VALUE, 'must be a label value: at most 63 alphanumerics, -, _ or .'),
          ]),
        )
        .meta({ maxProperties: 64 })
        .describe('Labels a node must have, as key/value pairs (ANDed with matchExpressions).'),
      [
        {
          rule: `self.all(k, size(k) <= 317 && k.matches(${celString(QUALIFIED_NAME)}))`,
          message: 'every key must be a label key: an optional DNS-subdomain prefix and /, then a name',
          test: (m) => Object.keys(m).every((k) => k.length <= 317 && new RegExp(QUALIFIED_NAME).test(k)),
        },
      ],
    ).optional(),
    matchExpressions: z
      .array(LabelSelectorRequirementSchema)
      .max(32)
      .optional()
      .describe('Label requirements a node must meet (ANDed).'),
  })
  .describe('A Kubernetes label selector; an empty selector selects every node.');

export type LabelSelector = z.infer<typeof LabelSelectorSchema>;

// ---------------------------------------------------------------------------------------------------------
// Object metadata is the API server's business; the schemas only insist on a name so that every parsed
// object can be addressed.

export const ObjectMetaSchema = z.custom<V1ObjectMeta & { name: string }>(
  (v) =>
    typeof v === 'object' &&
    v !== null &&
    typeof (v as { name?: unknown }).name === 'string' &&
    (v as { name: string }).name !== '',
  { message: 'metadata.name is required' },
);

// ---------------------------------------------------------------------------------------------------------
// Parsing.

export interface Issue {
  /** Kubernetes-style field path, e.g. `spec.keys.rotation.interval` or `spec.allowedIPs[1]`. */
  path: string;
  message: string;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string; issues: Issue[] };

export function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}

export function issuesOf(error: z.ZodError): Issue[] {
  return error.issues.map((i) => ({ path: fieldPath(i.path), message: i.message }));
}

export function formatIssues(issues: Issue[]): string {
  return issues.map((i) => (i.path === '' ? i.message : `${i.path}: ${i.message}`)).join('; ');
}

/** safeParse with a readable error: `spec.listenPort: Too big: expected number to be <=65535; …`. */
export function parseWith<S extends z.ZodType>(schema: S, obj: unknown): ParseResult<z.output<S>> {
  const r = schema.safeParse(obj);
  if (r.success) return { ok: true, value: r.data };
  const issues = issuesOf(r.error);
  return { ok: false, error: formatIssues(issues), issues };
}
