import type { KubernetesObject } from '@kubernetes/client-node';
import { pino } from 'pino';
import { coreResources, customResource, KubeApiError, type ResourceRef } from '../../lib/kube.js';
import { FakeListWatchClient } from '../../lib/runtime/testing/fakes.js';
import { Informer } from '../../lib/runtime/informer.js';
import { RequestTimeoutError, type RawList } from '../../lib/runtime/rest.js';
import { newBoxKeyPair, Sealer } from '../../lib/seal.js';
import type { OperatorWriter } from '../writer.js';
import { FINALIZER, MANAGED_BY, OverlayNetworkController } from './overlaynetwork.controller.js';

describe('old-epoch key Secrets', () => {
  const NS = 'keys';
  const secret = (node: string, epoch: number | undefined) => ({
    metadata: {
      name: `sealmesh.mesh.${node}${epoch === undefined ? '' : `.e${epoch}`}`,
      namespace: NS,
      resourceVersion: '1',
      labels: {
        ...MANAGED_BY,
        'sealmesh.io/overlay': 'mesh',
        'sealmesh.io/node': node,
        ...(epoch === undefined ? {} : { 'sealmesh.io/epoch': `${epoch}` }),
      },
    },
  });
  const overlay = (status: Record<string, unknown>, annotations?: Record<string, string>) => ({
    apiVersion: 'sealmesh.io/v1alpha1',
    kind: 'OverlayNetwork',
    metadata: {
      name: 'mesh',
      uid: 'u1',
      generation: 1,
      resourceVersion: '5',
      finalizers: [FINALIZER],
      ...(annotations ? { annotations } : {}),
    },
    spec: { nodeSelector: { matchLabels: { pool: 'none' } }, addressPool: '10.99.0.0/16' },
    status,
  });

  /** A controller over fixed caches (no nodes match: every Secret of `secrets` is of a node gone or an old epoch). */
  async function controllerWith(
    status: Record<string, unknown>,
    secrets: object[],
    deleteSecrets: (selector: string) => Promise<number>,
    opts: { annotations?: Record<string, string>; statusWritesBeforeFailing?: number } = {},
  ) {
    const calls: string[] = [];
    let statusWrites = 0;
    const informerOf = async (resource: ResourceRef, items: object[], namespace?: string) => {
      const client = new FakeListWatchClient();
      client.listResults.push({ metadata: { resourceVersion: '1' }, items } as RawList);
      const inf = new Informer<KubernetesObject>({ client, resource, namespace });
      inf.start();
      await inf.waitForSync();
      informers.push(inf);
      return inf;
    };
    const writer = {
      deleteSecrets: async (_ns: string, selector: string) => {
        calls.push(`deletecollection ${selector}`);
        return deleteSecrets(selector);
      },
      deleteSecret: (_ns: string, name: string) => {
        calls.push(`delete ${name}`);
        return Promise.resolve();
      },
      replaceOverlayStatus: () => {
        calls.push('status');
        if (++statusWrites > (opts.statusWritesBeforeFailing ?? Infinity))
          return Promise.reject(new KubeApiError('PATCH: HTTP 500: etcd unavailable', 500));
        return Promise.resolve();
      },
      event: (e: { reason: string }) => {
        calls.push(`event ${e.reason}`);
        return Promise.resolve();
      },
    } as unknown as OperatorWriter;
    const controller = new OverlayNetworkController({
      namespace: NS,
      overlays: await informerOf(customResource('sealmesh.io', 'v1alpha1', 'overlaynetworks'), [
        overlay(status, opts.annotations),
      ]),
      nodes: await informerOf(coreResources.nodes, []),
      tunnels: await informerOf(customResource('sealmesh.io', 'v1alpha1', 'nodetunnels'), []),
      secrets: await informerOf(coreResources.secrets, secrets, NS),
      secretReader: { read: () => Promise.resolve(undefined) },
      writer,
      sealer: new Sealer(newBoxKeyPair()),
      logger: pino({ level: 'silent' }),
    });
    return { controller, calls };
  }
  const informers: Informer<KubernetesObject>[] = [];
  afterEach(async () => {
    await Promise.all(informers.splice(0).map((i) => i.stop()));
  });

  test('are deleted with one request selecting every epoch but the current and the staged one', async () => {
    const { controller, calls } = await controllerWith(
      {
        epoch: 3,
        rotation: { phase: 'Staging', scope: 'Keys', targetEpoch: 4, startTime: '2026-01-01T00:00:00Z' },
      },
      [secret('a', 2), secret('a', 3), secret('a', 4), secret('b', undefined)],
      () => Promise.resolve(2),
    );
    await controller.reconcile('mesh');
    expect(calls.filter((c) => c.startsWith('delete'))).toEqual([
      'deletecollection sealmesh.io/overlay=mesh,sealmesh.io/epoch notin (3,4)',
      // node a left the overlay: its Secrets of the kept epochs go one by one
      'delete sealmesh.mesh.a.e3',
      'delete sealmesh.mesh.a.e4',
    ]);
  });

  test('Secrets the last request removed but the cache still shows are not requested again', async () => {
    const { controller, calls } = await controllerWith({ epoch: 3 }, [secret('a', 2)], () =>
      Promise.resolve(1),
    );
    await controller.reconcile('mesh');
    await controller.reconcile('mesh');
    expect(calls.filter((c) => c.startsWith('deletecollection'))).toHaveLength(1);
  });

  test('nothing of an old epoch in the cache: no request', async () => {
    const { controller, calls } = await controllerWith({ epoch: 3 }, [], () => Promise.resolve(0));
    await controller.reconcile('mesh');
    expect(calls.filter((c) => c.startsWith('delete'))).toEqual([]);
  });

  test('a deletion that outlasts the request timeout does not fail the pass; the next pass goes on', async () => {
    const { controller, calls } = await controllerWith({ epoch: 3 }, [secret('a', 2)], () =>
      Promise.reject(
        new RequestTimeoutError('DELETE /api/v1/namespaces/keys/secrets: no answer within 90000 ms'),
      ),
    );
    const result = await controller.reconcile('mesh');
    expect(calls).toContain('deletecollection sealmesh.io/overlay=mesh,sealmesh.io/epoch notin (3)');
    expect(result).toEqual({ requeueAfterMs: 1000 });
    // Not known to be gone: the next pass asks again.
    await controller.reconcile('mesh');
    expect(calls.filter((c) => c.startsWith('deletecollection'))).toHaveLength(2);
  });

  test('any other error fails the pass', async () => {
    const { controller } = await controllerWith({ epoch: 3 }, [secret('a', 2)], () =>
      Promise.reject(new KubeApiError('DELETE: HTTP 403: forbidden', 403)),
    );
    await expect(controller.reconcile('mesh')).rejects.toThrow(/forbidden/);
  });

  test('a pass failing after a step it wrote still records the Event of that step', async () => {
    // The rotation start is written at once; the pass's last status write then fails.
    const { controller, calls } = await controllerWith({ epoch: 1 }, [], () => Promise.resolve(0), {
      annotations: { 'sealmesh.io/rotate': 'now' },
      statusWritesBeforeFailing: 1,
    });
    await expect(controller.reconcile('mesh')).rejects.toThrow(/etcd unavailable/);
    expect(calls).toEqual(['status', 'status', 'event RotationStarted']);
  });
});
