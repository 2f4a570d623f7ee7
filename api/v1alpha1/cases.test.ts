// The zod half of the shared good/bad table (test/support/api-cases.ts); the integration test
// test/integration/api-validation.test.ts sends the same objects to the real API server.
import {
  badCases,
  badStatuses,
  badUpdates,
  goodCases,
  goodStatus,
  tunnel,
  zodOnlyCases,
  type Kind,
} from '../../test/support/api-cases.js';
import type { ParseResult } from './common.types.js';
import { nodeTunnelUpdateIssues, parseNodeTunnel } from './nodetunnel.types.js';
import { parseOverlayNetwork } from './overlaynetwork.types.js';

function parse(kind: Kind, obj: unknown): ParseResult<unknown> {
  return kind === 'OverlayNetwork' ? parseOverlayNetwork(obj) : parseNodeTunnel(obj);
}

test('the table is big enough to mean something', () => {
  expect(badCases.length).toBeGreaterThanOrEqual(20);
  expect(new Set(badCases.map((c) => c.name)).size).toBe(badCases.length);
});

test.each(badCases.map((c) => [c.name, c] as const))('zod rejects: %s', (_, c) => {
  const r = parse(c.kind, c.build('unit'));
  if (r.ok) throw new Error(`accepted: ${JSON.stringify(c.build('unit'))}`);
  const hit = r.issues.find(
    (i) => i.path === c.field || i.path.startsWith(`${c.field}.`) || i.path.startsWith(`${c.field}[`),
  );
  expect(hit).toBeDefined();
  if (c.message !== undefined) expect(r.error).toContain(c.message);
});

test.each(zodOnlyCases.map((c) => [c.name, c] as const))('zod rejects (zod-only): %s', (_, c) => {
  const r = parse(c.kind, c.build('unit'));
  expect(r.ok).toBe(false);
  if (!r.ok) {
    expect(r.issues.map((i) => i.path)).toContain(c.field);
    expect(r.error).toContain(c.message);
  }
});

test.each(goodCases.map((c) => [c.name, c] as const))('zod accepts: %s', (_, c) => {
  const r = parse(c.kind, c.build('unit'));
  if (!r.ok) throw new Error(r.error);
});

test.each(badUpdates.map((c) => [c.name, c] as const))('zod rejects the update: %s', (_, c) => {
  const before = parseNodeTunnel(tunnel('upd', 'node-1'));
  if (!before.ok) throw new Error(before.error);
  // Only the spec changes: changing overlay or nodeName also breaks the name rule, which is not the point.
  const spec: Record<string, unknown> = { ...before.value.spec };
  c.change(spec);
  const next = { ...before.value, spec: spec as typeof before.value.spec };
  expect(nodeTunnelUpdateIssues(before.value, next)).toContainEqual({ path: c.field, message: c.message });
});

test('an unchanged tunnel is a valid update', () => {
  const t = parseNodeTunnel(tunnel('upd', 'node-1'));
  if (!t.ok) throw new Error(t.error);
  expect(nodeTunnelUpdateIssues(t.value, { ...t.value, spec: { ...t.value.spec, epoch: 2 } })).toEqual([]);
});

test('zod accepts a complete agent status', () => {
  const r = parseNodeTunnel({ ...tunnel('st', 'node-1'), status: goodStatus });
  if (!r.ok) throw new Error(r.error);
});

test.each(badStatuses.map((c) => [c.name, c] as const))('zod rejects the status: %s', (_, c) => {
  const r = parseNodeTunnel({ ...tunnel('st', 'node-1'), status: c.status });
  expect(r.ok).toBe(false);
  if (!r.ok) {
    expect(r.issues.some((i) => i.path === c.field || i.path.startsWith(`${c.field}.`))).toBe(true);
    if (c.message !== undefined) expect(r.error).toContain(c.message);
  }
});
