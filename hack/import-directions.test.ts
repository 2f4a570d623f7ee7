// The import directions of eslint.config.mjs (importDirections) hold: a wrong-direction import fails lint,
// the right one passes. Runs ESLint's Node API on snippets with only those rules, so it needs no type info.
import { ESLint, type Linter } from 'eslint';
import tseslint from 'typescript-eslint';
// @ts-expect-error: the config is plain JavaScript without declarations
import { importDirections } from '../eslint.config.mjs';

const eslint = new ESLint({
  cwd: new URL('..', import.meta.url).pathname,
  overrideConfigFile: true,
  overrideConfig: [
    { files: ['**/*.ts'], languageOptions: { parser: tseslint.parser } },
    ...(importDirections as Linter.Config[]),
  ],
});

async function problems(filePath: string, source: string): Promise<string[]> {
  const [result] = await eslint.lintText(source, { filePath });
  return (result?.messages ?? []).map((m) => `${m.ruleId ?? 'fatal'}: ${m.message}`);
}

test.each([
  ['agent/agent.ts', "import { IDENTITY_NAME } from '../operator/identity.js';"],
  ['agent/device/wgcli.ts', "import { renderMatrix } from '../../cmd/matrix.js';"],
  ['operator/app.ts', "import { LivenessLease } from '../agent/liveness.js';"],
  ['operator/plan/tunnels.ts', "import { KubeOperatorWriter } from '../writer.js';"],
  ['operator/plan/rotation.ts', "import { Informer } from '../../lib/runtime/informer.js';"],
  ['operator/plan/schedule.ts', "import { KubeConfig } from '@kubernetes/client-node';"],
  ['cmd/kubectl-sealmesh.ts', "import { computePairs } from '../operator/pairs.js';"],
  ['cmd/matrix.ts', "import { Sealer } from '../lib/seal.js';"],
  ['lib/contract/pairs.ts', "import { Agent } from '../../agent/agent.js';"],
  ['lib/runtime/informer.ts', "import { GROUP } from '../../api/v1alpha1/groupversion.js';"],
  ['lib/runtime/queue.ts', "import { keySecretName } from '../contract/keysecret.js';"],
])('%s: %s fails lint', async (file, source) => {
  expect(await problems(file, source)).toEqual([expect.stringMatching(/^no-restricted-imports: /)]);
});

test.each([
  ['agent/agent.ts', "import { IDENTITY_NAME } from '../lib/contract/identity.js';"],
  ['operator/app.ts', "import { agentLeaseName } from '../lib/contract/liveness.js';"],
  ['operator/plan/schedule.ts', "import type { KubeConfig } from '@kubernetes/client-node';"],
  ['operator/plan/keysecret.ts', "import { keySecretName } from '../../lib/contract/keysecret.js';"],
  ['cmd/kubectl-sealmesh.ts', "import { computePairs } from '../lib/contract/pairs.js';"],
  ['cmd/kubectl-sealmesh.ts', "import { Informer } from '../lib/runtime/informer.js';"],
  ['lib/contract/pairs.ts', "import { yieldToEventLoop } from '../runtime/cooperative.js';"],
])('%s: %s passes', async (file, source) => {
  expect(await problems(file, source)).toEqual([]);
});
