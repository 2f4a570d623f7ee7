// typescript-eslint with type information, so floating promises (a lost rejection in a controller loop)
// are caught at lint time.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * Which folder may import which (no-restricted-imports on the import path). The contract between operator,
 * agent and CLI lives in lib/contract/; lib/runtime/ is generic and knows no sealmesh type; operator/plan/ is
 * pure. A later block replaces an earlier one's rule for the files both match, so each block lists all its
 * restrictions. Exported for hack/import-directions.test.ts.
 */
const forbid = (regex, message) => ({ regex, message });
const NOT_OPERATOR = forbid(
  '(^|/)operator/',
  'Only the operator imports operator/: share it through lib/contract/.',
);
const NOT_AGENT = forbid('(^|/)agent/', 'Only the agent imports agent/: share it through lib/contract/.');
const NOT_CMD = forbid('(^|/)cmd/', 'Nothing imports cmd/.');
const restrict = (files, ...patterns) => ({
  files,
  rules: { 'no-restricted-imports': ['error', { patterns }] },
});
export const importDirections = [
  restrict(['agent/**/*.ts'], NOT_OPERATOR, NOT_CMD),
  restrict(['operator/**/*.ts'], NOT_AGENT, NOT_CMD),
  restrict(
    ['operator/plan/**/*.ts'],
    NOT_AGENT,
    NOT_CMD,
    forbid(
      '(^|/)(writer|controllers/.*|runtime/(informer|rest|manager|leader|queue|server))\\.js$',
      'operator/plan/ is pure: no writer, informer, REST client or manager.',
    ),
    {
      group: ['@kubernetes/client-node'],
      allowTypeImports: true,
      message: 'operator/plan/ is pure: client-node types only.',
    },
  ),
  restrict(
    ['cmd/**/*.ts'],
    NOT_OPERATOR,
    NOT_AGENT,
    forbid(
      '(^|/)lib/(?!contract/|runtime/|kube\\.js$)',
      'cmd/ imports api/, lib/contract/ and the generic client (lib/kube.ts, lib/runtime/) only.',
    ),
  ),
  restrict(['lib/**/*.ts'], NOT_OPERATOR, NOT_AGENT, NOT_CMD),
  restrict(
    ['lib/runtime/**/*.ts'],
    NOT_OPERATOR,
    NOT_AGENT,
    NOT_CMD,
    forbid('(^|/)(api|contract)/', 'lib/runtime/ is generic: it knows neither api/ nor lib/contract/.'),
  ),
];

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', '.local/', 'coverage/', '**/*.js', '**/*.mjs', '**/*.cjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      eqeqeq: ['error', 'smart'],
    },
  },
  ...importDirections,
);
