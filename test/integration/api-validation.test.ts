// The real API server and the zod schema give the same verdict on the same objects: every bad input in
// test/support/api-cases.ts is rejected by both, naming the same field; every good one is accepted by both;
// transition rules (immutable overlay/nodeName, monotonic epoch) and status writes are enforced by both.
// A differential run over tricky field values (CIDRs, endpoints, keys, cron, durations) checks that the
// two never disagree outside the table either.
import { ApiException, CustomObjectsApi } from '@kubernetes/client-node';
import { jest } from '@jest/globals';
import type { ParseResult } from '../../api/v1alpha1/common.types.js';
import {
  GROUP,
  NODE_TUNNEL_PLURAL,
  OVERLAY_NETWORK_PLURAL,
  VERSION,
} from '../../api/v1alpha1/groupversion.js';
import {
  nodeTunnelUpdateIssues,
  parseNodeTunnel,
  type NodeTunnel,
} from '../../api/v1alpha1/nodetunnel.types.js';
import { parseOverlayNetwork } from '../../api/v1alpha1/overlaynetwork.types.js';
import {
  badCases,
  badStatuses,
  badUpdates,
  goodCases,
  goodStatus,
  overlay,
  tunnel,
  zodOnlyCases,
  type Kind,
} from '../support/api-cases.js';
import { kubeConfig, uniqueName } from '../support/cluster.js';
import { installCRDs } from '../support/crds.js';

jest.setTimeout(60_000);

const kc = kubeConfig();
const custom = kc.makeApiClient(CustomObjectsApi);
const created: { kind: Kind; name: string }[] = [];

const plural = (kind: Kind) => (kind === 'OverlayNetwork' ? OVERLAY_NETWORK_PLURAL : NODE_TUNNEL_PLURAL);

type Verdict = { ok: true; obj: Record<string, unknown> } | { ok: false; code: number; message: string };

function rejection(err: unknown): Verdict {
  if (!(err instanceof ApiException)) throw err;
  const body: unknown = typeof err.body === 'string' ? JSON.parse(err.body) : err.body;
  const message = (body as { message?: string } | undefined)?.message ?? String(err.body);
  return { ok: false, code: err.code, message };
}

async function create(kind: Kind, body: Record<string, unknown>, dryRun = false): Promise<Verdict> {
  try {
    const obj = (await custom.createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: plural(kind),
      body,
      ...(dryRun ? { dryRun: 'All' } : {}),
    })) as Record<string, unknown>;
    if (!dryRun) created.push({ kind, name: (body.metadata as { name: string }).name });
    return { ok: true, obj };
  } catch (err) {
    return rejection(err);
  }
}

function zod(kind: Kind, obj: unknown): ParseResult<unknown> {
  return kind === 'OverlayNetwork' ? parseOverlayNetwork(obj) : parseNodeTunnel(obj);
}

beforeAll(async () => {
  await installCRDs(kc);
});

afterAll(async () => {
  for (const { kind, name } of created) {
    await custom
      .deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: plural(kind), name })
      .catch(() => undefined);
  }
});

describe('bad input: the API server and zod both reject it, naming the field', () => {
  test.each(badCases.map((c) => [c.name, c] as const))('%s', async (_, c) => {
    const body = c.build(uniqueName('t').slice(2));
    const api = await create(c.kind, body);
    if (api.ok) throw new Error(`API server accepted ${JSON.stringify(body.spec)}`);
    expect(api.code).toBe(422);
    expect(api.message).toContain(c.field);
    const z = zod(c.kind, body);
    if (z.ok) throw new Error(`zod accepted ${JSON.stringify(body.spec)}`);
    expect(
      z.issues.some(
        (i) => i.path === c.field || i.path.startsWith(`${c.field}.`) || i.path.startsWith(`${c.field}[`),
      ),
    ).toBe(true);
    if (c.message !== undefined) {
      expect(api.message).toContain(c.message);
      expect(z.error).toContain(c.message);
    }
  });
});

describe('good input: the API server and zod both accept it, with the same defaults', () => {
  test.each(goodCases.map((c) => [c.name, c] as const))('%s', async (_, c) => {
    const body = c.build(uniqueName('t').slice(2));
    const z = zod(c.kind, body);
    if (!z.ok) throw new Error(`zod rejected: ${z.error}`);
    const api = await create(c.kind, body);
    if (!api.ok) throw new Error(`API server rejected: ${api.message}`);
    // What the API server stored (after its defaulting) is what zod produces from the same input.
    expect(api.obj.spec).toEqual((z.value as { spec: unknown }).spec);
    const reparsed = zod(c.kind, api.obj);
    if (!reparsed.ok) throw new Error(`zod rejected the stored object: ${reparsed.error}`);
  });
});

describe('zod-only checks: accepted by the API server, rejected by zod (the operator reports InvalidSpec)', () => {
  test.each(zodOnlyCases.map((c) => [c.name, c] as const))('%s', async (_, c) => {
    const body = c.build(uniqueName('t').slice(2));
    const api = await create(c.kind, body, true);
    if (!api.ok) throw new Error(`the API server now rejects this too (move it to badCases): ${api.message}`);
    const z = zod(c.kind, body);
    expect(z.ok).toBe(false);
    if (!z.ok) expect(z.error).toContain(c.message);
  });
});

describe('NodeTunnel updates', () => {
  let stored: Record<string, unknown>;
  let parsed: NodeTunnel;
  const overlayName = uniqueName('upd');

  beforeAll(async () => {
    const api = await create('NodeTunnel', tunnel(overlayName, 'node-1'));
    if (!api.ok) throw new Error(api.message);
    stored = api.obj;
    const z = parseNodeTunnel(stored);
    if (!z.ok) throw new Error(z.error);
    parsed = z.value;
  });

  async function replace(body: Record<string, unknown>): Promise<Verdict> {
    try {
      const obj = (await custom.replaceClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: NODE_TUNNEL_PLURAL,
        name: `${overlayName}.node-1`,
        body,
      })) as Record<string, unknown>;
      return { ok: true, obj };
    } catch (err) {
      return rejection(err);
    }
  }

  test.each(badUpdates.map((c) => [c.name, c] as const))('rejected by both: %s', async (_, c) => {
    const next = structuredClone(stored) as { spec: Record<string, unknown> };
    c.change(next.spec);
    const api = await replace(next);
    if (api.ok) throw new Error('API server accepted the update');
    expect(api.message).toContain(c.field);
    expect(api.message).toContain(c.message);
    const nextParsed = { ...parsed, spec: { ...parsed.spec, ...next.spec } } as NodeTunnel;
    expect(nodeTunnelUpdateIssues(parsed, nextParsed)).toContainEqual({ path: c.field, message: c.message });
  });

  test('a higher epoch is accepted by both', async () => {
    const next = structuredClone(stored) as { spec: Record<string, unknown> };
    next.spec.epoch = 2;
    const api = await replace(next);
    if (!api.ok) throw new Error(api.message);
    stored = api.obj;
    const z = parseNodeTunnel(api.obj);
    if (!z.ok) throw new Error(z.error);
    expect(nodeTunnelUpdateIssues(parsed, z.value)).toEqual([]);
    parsed = z.value;
  });

  async function writeStatus(status: Record<string, unknown>): Promise<Verdict> {
    const current = (await custom.getClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: NODE_TUNNEL_PLURAL,
      name: `${overlayName}.node-1`,
    })) as Record<string, unknown>;
    try {
      const obj = (await custom.replaceClusterCustomObjectStatus({
        group: GROUP,
        version: VERSION,
        plural: NODE_TUNNEL_PLURAL,
        name: `${overlayName}.node-1`,
        body: { ...current, status },
      })) as Record<string, unknown>;
      return { ok: true, obj };
    } catch (err) {
      return rejection(err);
    }
  }

  test('a complete agent status is accepted by both', async () => {
    const api = await writeStatus(goodStatus);
    if (!api.ok) throw new Error(api.message);
    expect(api.obj.status).toEqual(goodStatus);
    const z = parseNodeTunnel(api.obj);
    if (!z.ok) throw new Error(z.error);
  });

  test.each(badStatuses.map((c) => [c.name, c] as const))('bad status rejected by both: %s', async (_, c) => {
    const api = await writeStatus(c.status);
    if (api.ok) throw new Error('API server accepted the status');
    expect(api.message).toContain(c.field);
    if (c.message !== undefined) expect(api.message).toContain(c.message);
    const z = parseNodeTunnel({ ...stored, status: c.status });
    expect(z.ok).toBe(false);
    if (!z.ok)
      expect(z.issues.some((i) => i.path === c.field || i.path.startsWith(`${c.field}.`))).toBe(true);
  });
});

// Values chosen to probe the edges of each syntax; the two sides must agree on every one (dry-run only).
const probes: {
  field: string;
  kind: Kind;
  values: string[];
  body: (v: string, id: string) => Record<string, unknown>;
}[] = [
  {
    field: 'addressPool',
    kind: 'OverlayNetwork',
    body: (v, id) => overlay(`p-${id}`, { addressPool: v }),
    values: [
      '10.0.0.0/8',
      '10.0.0.0/30',
      '0.0.0.0/8',
      '255.255.255.252/30',
      '10.0.0.0/32',
      '10.0.0.0/0',
      '10.0.0.0/33',
      '10.0.0.0/-1',
      '10.0.0.0/',
      '/8',
      '10.0.0/8',
      '10.0.0.0.0/8',
      '1e.0.0.0/8',
      ' 10.0.0.0/8',
      '10.0.0.0/8 ',
      '10.0.0.0//8',
      '10.0.0.0/+8',
      'fd00::/64',
      'fd00::/126',
      'fd00::0/64',
      'FD00:0:0:0::/64',
      'fd00:0:0:0:0:0:0:0/64',
      '::/64',
      'fd00::/128',
      'fd00:::/64',
      'fd00::1::/64',
      'fd00:12345::/64',
      'fd00:1:2:3:4:5:6:7:8/64',
      '1:2:3:4:5:6:7::/64',
      '::1.2.3.0/120',
      '::ffff:0:0/96',
      '::ffff:1.2.3.0/120',
      'fe80::%eth0/64',
      'fd00::/064',
      '10.0.0.0/08',
      '010.0.0.0/8',
      '10.0.0.00/30',
    ],
  },
  {
    field: 'endpoint',
    kind: 'NodeTunnel',
    body: (v, id) => tunnel(`p-${id}`, 'n1', { endpoint: v }),
    values: [
      '1.2.3.4:1',
      '1.2.3.4:65535',
      '1.2.3.4:65536',
      '1.2.3.4:00001',
      '1.2.3.4:',
      ':51820',
      '1.2.3:5',
      '1.2.3.4.5:5',
      '01.2.3.4:5',
      'a:5',
      'a-:5',
      '-a:5',
      'a.b-c.d:5',
      'a..b:5',
      'a_b:5',
      '[::1]:5',
      '[::]:5',
      '[::1]',
      '[::1]:',
      '::1:5',
      '[1::2::3]:5',
      '[1:2:3:4:5:6:7:8]:5',
      '[1:2:3:4:5:6:7:8:9]:5',
      '[::ffff:1.2.3.4]:5',
      '[::1.2.3.4]:5',
      '[1.2.3.4]:5',
      '[fe80::1%eth0]:5',
      '[fd00::1]:99999',
      'x'.repeat(64) + '.example:5',
      '1.2.3.4:5:6',
    ],
  },
  {
    field: 'publicKey',
    kind: 'NodeTunnel',
    body: (v, id) => tunnel(`p-${id}`, 'n1', { publicKey: v }),
    values: [
      Buffer.alloc(32, 1).toString('base64'),
      Buffer.alloc(32, 255).toString('base64'),
      `${'A'.repeat(43)}=`,
      `${'A'.repeat(42)}E=`,
      `${'A'.repeat(42)}B=`,
      `${'A'.repeat(43)}`,
      `${'A'.repeat(44)}`,
      `${'A'.repeat(42)}==`,
      `${'/'.repeat(42)}w=`,
      `${'+'.repeat(42)}8=`,
      `${'-'.repeat(42)}A=`,
      Buffer.alloc(16, 1).toString('base64'),
    ],
  },
  {
    field: 'schedule',
    kind: 'OverlayNetwork',
    body: (v, id) => overlay(`p-${id}`, { keys: { rotation: { schedule: v } } }),
    values: [
      '* * * * *',
      '0 0 1 1 0',
      '59 23 31 12 7',
      '0-59 0-23 1-31 1-12 0-7',
      '*/59 */23 */31 */12 */7',
      '*/60 * * * *',
      '0 */24 * * *',
      '0 0 */32 * *',
      '0 0 * */13 *',
      '0 0 * * */8',
      '1,2,3 4,5 6,7 8,9 1,2',
      '1-2/3,4 * * * *',
      '0 0 * JAN sun',
      '0 0 * jan-dec SUN-sat',
      '0 0 * Jan,Feb Mon',
      '0 0 * janu *',
      '0 0 * * sunday',
      '0 0 ? * *',
      '0 0 * * 1L',
      'H * * * *',
      '0 0 * * *\t',
      ' 0 0 * * *',
      '0 0 * * * ',
      '0, 0 * * *',
      '00 00 01 01 00',
      '000 0 * * *',
      '5/15 * * * *',
      '*/5/2 * * * *',
      '1-2-3 * * * *',
      '-1 * * * *',
      '',
      '*',
    ],
  },
  {
    field: 'persistentKeepalive',
    kind: 'OverlayNetwork',
    body: (v, id) => overlay(`p-${id}`, { persistentKeepalive: v }),
    values: [
      '0s',
      '0',
      '1s',
      '25s',
      '1m',
      '1h',
      '1h1m1s',
      '1h1s',
      '1m1s',
      '18h12m15s',
      '18h12m16s',
      '65535s',
      '65536s',
      '1092m15s',
      '1092m16s',
      '99999s',
      '100000s',
      '1s1m',
      '1.5s',
      '1ms',
      '-1s',
      '+1s',
      '1S',
      '1d',
      's',
      '1h 1m',
      '00025s',
    ],
  },
  {
    field: 'interval',
    kind: 'OverlayNetwork',
    body: (v, id) => overlay(`p-${id}`, { keys: { rotation: { interval: v } } }),
    values: ['10m', '9m59s', '600s', '599s', '0h10m', '0h9m60s', '99999h', '1h', '0s', '10m0s'],
  },
];

describe('differential: the API server and zod agree on tricky values', () => {
  test.each(probes.map((p) => [p.field, p] as const))('%s', async (_, p) => {
    const disagreements: string[] = [];
    const verdicts = new Set<string>();
    for (const v of p.values) {
      const body = p.body(v, uniqueName('d').slice(2));
      const api = await create(p.kind, body, true);
      const z = zod(p.kind, body);
      verdicts.add(`API ${api.ok ? 'accepts' : 'rejects'}`);
      verdicts.add(`zod ${z.ok ? 'accepts' : 'rejects'}`);
      if (api.ok !== z.ok) {
        const why = !api.ok ? api.message : !z.ok ? z.error : '';
        disagreements.push(
          `${JSON.stringify(v)}: API ${api.ok ? 'accepts' : 'rejects'}, zod ${z.ok ? 'accepts' : 'rejects'} (${why})`,
        );
      }
      // a rejection must be about the probed value, not some other part of the body
      if (!api.ok && !api.message.includes(p.field))
        disagreements.push(`${JSON.stringify(v)}: API rejects without naming ${p.field}: ${api.message}`);
      if (!z.ok && !z.error.includes(p.field))
        disagreements.push(`${JSON.stringify(v)}: zod rejects without naming ${p.field}: ${z.error}`);
    }
    expect(disagreements).toEqual([]);
    // positive and negative controls: each side both accepted and rejected some value, so the body is valid
    // around the probed field and agreement is not two sides failing alike
    expect([...verdicts].sort()).toEqual(['API accepts', 'API rejects', 'zod accepts', 'zod rejects']);
  });
});
