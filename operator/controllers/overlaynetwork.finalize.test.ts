import type { KubernetesObject } from '@kubernetes/client-node';
import { pino } from 'pino';
import type { OperatorWriter } from '../writer.js';
import { finalize } from './overlaynetwork.finalize.js';
import type { KeySecrets } from './overlaynetwork.keysecrets.js';
import { FINALIZER } from './overlaynetwork.scope.js';
import type { Tunnels } from './overlaynetwork.tunnels.js';

function setup(remaining: number, finalizers = [FINALIZER, 'other']) {
  const calls: string[] = [];
  const writer = {
    setOverlayFinalizers: (name: string, rv: string, list: string[]) => {
      calls.push(`finalizers ${name}@${rv}: ${list.join(',')}`);
      return Promise.resolve();
    },
  } as unknown as OperatorWriter;
  const tunnels = {
    deleteAll: (o: string) => (calls.push(`tunnels ${o}`), Promise.resolve()),
    remaining: () => remaining,
  } as unknown as Tunnels;
  const keySecrets = {
    deleteAll: (o: string) => (calls.push(`secrets ${o}`), Promise.resolve()),
    remaining: () => 0,
  } as unknown as KeySecrets;
  const raw: KubernetesObject = { metadata: { name: 'mesh', resourceVersion: '9', finalizers } };
  const run = () =>
    finalize({ writer }, { tunnels, keySecrets }, raw, pino({ level: 'silent' }), () => calls.push('done'));
  return { calls, run };
}

test('deletes what the overlay made, then drops only our finalizer', async () => {
  const { calls, run } = setup(0);
  await expect(run()).resolves.toBeUndefined();
  expect(calls).toEqual(['tunnels mesh', 'secrets mesh', 'finalizers mesh@9: other', 'done']);
});

test('keeps the finalizer while the caches still show objects of the overlay', async () => {
  const { calls, run } = setup(2);
  await expect(run()).resolves.toEqual({ requeueAfterMs: 500 });
  expect(calls).toEqual(['tunnels mesh', 'secrets mesh']);
});

test('without our finalizer there is nothing to do', async () => {
  const { calls, run } = setup(0, ['other']);
  await run();
  expect(calls).toEqual([]);
});
