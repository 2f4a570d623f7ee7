// The operator keeps its published sealing key its own (issue #14 item 2), against the real API server: a
// ConfigMap changed to another key, or deleted, is put back by the leader.
import { Writable } from 'node:stream';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { jest } from '@jest/globals';
import { pino } from 'pino';
import { IDENTITY_NAME, IDENTITY_PUBLIC_KEY } from '../../lib/contract/identity.js';
import { encodeKey } from '../../lib/keys.js';
import { newBoxKeyPair } from '../../lib/seal.js';
import { createOperator, type Operator } from '../../operator/app.js';
import { kubeConfig, uniqueName } from '../support/cluster.js';
import { installCRDs } from '../support/crds.js';
import { until } from '../support/wait.js';

jest.setTimeout(60_000);

const kc: KubeConfig = kubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const namespace = uniqueName('ident');
const lines: string[] = [];
const logger = pino(
  { level: 'info' },
  new Writable({
    write: (chunk: Buffer, _e, cb) => {
      lines.push(chunk.toString());
      cb();
    },
  }),
);
let operator: Operator;

async function published(): Promise<string | undefined> {
  try {
    return (await core.readNamespacedConfigMap({ namespace, name: IDENTITY_NAME })).data?.[
      IDENTITY_PUBLIC_KEY
    ];
  } catch {
    return undefined;
  }
}

beforeAll(async () => {
  await installCRDs(kc);
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  operator = await createOperator({
    kc,
    logger,
    namespace,
    identity: uniqueName('replica'),
    leaseName: `${namespace}-lease`,
    leaseDurationMs: 4_000,
    resyncPeriodMs: 0,
    identityCheckMs: 300,
  });
  await operator.start();
});

afterAll(async () => {
  await operator?.stop();
  await core.deleteNamespace({ name: namespace });
});

test('a replaced or deleted published sealing key is restored by the operator', async () => {
  const own = await until('identity published', published);
  const rogue = encodeKey(newBoxKeyPair().publicKey);
  await core.replaceNamespacedConfigMap({
    namespace,
    name: IDENTITY_NAME,
    body: { metadata: { name: IDENTITY_NAME }, data: { [IDENTITY_PUBLIC_KEY]: rogue } },
  });
  await until('restored after a change', async () => ((await published()) === own ? true : undefined));
  expect(lines.join('')).toContain('the published sealing key was changed or removed');
  await core.deleteNamespacedConfigMap({ namespace, name: IDENTITY_NAME });
  await until('restored after a delete', async () => ((await published()) === own ? true : undefined));
  expect(lines.join('')).not.toContain(rogue);
});
