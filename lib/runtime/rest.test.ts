import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeRest, METADATA_LIST_ACCEPT, METADATA_WATCH_ACCEPT, RequestTimeoutError } from './rest.js';
import { isTimeout } from '../kube.js';

// A plain HTTP endpoint on 127.0.0.1 that records the Accept header of each request: what KubeRest asks for
// is the whole point here; the API server's answer to it is covered by the integration test.
describe('KubeRest Accept headers', () => {
  const seen: Array<{ path: string; accept: string | undefined; method?: string }> = [];
  let server: http.Server;
  let rest: KubeRest;

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      seen.push({ path: req.url ?? '', accept: req.headers.accept, method: req.method });
      if (req.url?.startsWith('/slow')) return; // never answers
      res.writeHead(200, { 'content-type': 'application/json' });
      if (req.url?.includes('watch=true')) {
        res.end(JSON.stringify({ type: 'ADDED', object: { metadata: { name: 'a' } } }) + '\n');
      } else res.end(JSON.stringify({ metadata: { resourceVersion: '1' }, items: [] }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [
        {
          name: 'c',
          server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
          skipTLSVerify: true,
        },
      ],
      users: [{ name: 'u' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    rest = new KubeRest(kc);
  });

  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  beforeEach(() => {
    seen.length = 0;
  });

  const watchOnce = (metadataOnly: boolean): Promise<void> =>
    new Promise((resolve, reject) => {
      rest.watch(
        '/api/v1/secrets',
        {},
        { onEvent: () => undefined, onClose: (err) => (err ? reject(err) : resolve()) },
        metadataOnly ? { metadataOnly: true } : undefined,
      );
    });

  test('metadataOnly asks for PartialObjectMetadataList on list and PartialObjectMetadata on watch', async () => {
    await rest.list('/api/v1/secrets', { limit: 1 }, undefined, { metadataOnly: true });
    await watchOnce(true);
    expect(seen).toEqual([
      { path: '/api/v1/secrets?limit=1', accept: METADATA_LIST_ACCEPT, method: 'GET' },
      { path: '/api/v1/secrets?watch=true', accept: METADATA_WATCH_ACCEPT, method: 'GET' },
    ]);
    expect(METADATA_LIST_ACCEPT).toMatch(
      /^application\/json;as=PartialObjectMetadataList;g=meta\.k8s\.io;v=v1,/,
    );
  });

  test('without it, plain JSON', async () => {
    await rest.list('/api/v1/secrets', {});
    await watchOnce(false);
    expect(seen.map((s) => s.accept)).toEqual(['application/json', 'application/json']);
  });

  test('deleteCollection sends DELETE with the selector and asks for metadata only', async () => {
    await rest.deleteCollection(
      '/api/v1/namespaces/k/secrets',
      { labelSelector: 'a=b,c notin (1,2)' },
      {
        metadataOnly: true,
      },
    );
    expect(seen).toEqual([
      {
        path: '/api/v1/namespaces/k/secrets?labelSelector=a%3Db%2Cc+notin+%281%2C2%29',
        accept: METADATA_LIST_ACCEPT,
        method: 'DELETE',
      },
    ]);
  });

  test('a request without an answer in its timeout fails as a timeout', async () => {
    const err = await rest
      .deleteCollection('/slow', {}, { timeoutMs: 200 })
      .then(() => undefined)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RequestTimeoutError);
    expect(isTimeout(err)).toBe(true);
    expect((err as Error).message).toContain('no answer within 200 ms');
    expect(isTimeout(new Error('DELETE /x failed: socket hang up'))).toBe(false);
  });
});
