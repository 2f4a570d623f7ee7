import { RuntimeMetrics } from './metrics.js';
import { RuntimeServer } from './server.js';

async function get(
  port: number,
  path: string,
): Promise<{ status: number; body: string; type: string | null }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') };
}

describe('RuntimeServer', () => {
  let server: RuntimeServer;
  let metrics: RuntimeMetrics;
  let port: number;
  let synced = false;

  beforeAll(async () => {
    metrics = new RuntimeMetrics();
    server = new RuntimeServer({ host: '127.0.0.1', port: 0, registry: metrics.registry });
    server.addReadyCheck('informers-synced', () => synced);
    port = await server.start();
  });

  afterAll(() => server.close());

  test('binds a free port on 127.0.0.1', () => {
    expect(port).toBeGreaterThan(0);
  });

  test('/healthz answers 200 while the process is alive', async () => {
    await expect(get(port, '/healthz')).resolves.toMatchObject({ status: 200 });
  });

  test('/readyz is 503 until every readiness check passes, then 200', async () => {
    synced = false;
    const before = await get(port, '/readyz');
    expect(before.status).toBe(503);
    expect(before.body).toContain('[-]informers-synced failed');
    synced = true;
    const after = await get(port, '/readyz');
    expect(after.status).toBe(200);
    expect(after.body).toContain('[+]informers-synced ok');
  });

  test('/metrics serves default metrics and the runtime metrics in Prometheus format', async () => {
    metrics.reconcileTotal.inc({ controller: 'demo', result: 'success' });
    const res = await get(port, '/metrics');
    expect(res.status).toBe(200);
    expect(res.type).toContain('text/plain');
    expect(res.body).toContain('sealmesh_process_cpu_user_seconds_total');
    expect(res.body).toContain('sealmesh_reconcile_total{controller="demo",result="success"} 1');
    expect(res.body).toContain('# TYPE sealmesh_workqueue_depth gauge');
  });

  test('unknown paths are 404 and other methods 405', async () => {
    await expect(get(port, '/nope')).resolves.toMatchObject({ status: 404 });
    const res = await fetch(`http://127.0.0.1:${port}/healthz`, { method: 'POST' });
    expect(res.status).toBe(405);
  });
});
