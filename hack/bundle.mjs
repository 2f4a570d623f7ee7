// Bundles the kubectl plugin into dist/kubectl-sealmesh.cjs: one executable file that plain `node` runs with
// nothing else from the repo (no node_modules, no TypeScript at run time). CommonJS, so that it also runs
// when copied under a name without an extension (kubectl finds plugins by file name:
// `install -m 755 dist/kubectl-sealmesh.cjs /usr/local/bin/kubectl-sealmesh`). Part of `npm run build`; the
// integration tests' global setup and the CLI bench run it too, so that they exercise the shipped file.
//
// Start-up: the commands (cmd/commands.ts with the Kubernetes client and zod, ~1.6 MB minified) are embedded
// as a string and compiled only when a command runs. V8 must pre-parse every function of a script it
// compiles, and for this bundle that cost several times a bare `node -e 0`; a string literal is only
// scanned. So `--help` and argument errors (cmd/kubectl-sealmesh.ts) start about as fast as node itself.
import { chmodSync } from 'node:fs';
import { resolve } from 'node:path';
import { build } from 'esbuild';

const root = resolve(import.meta.dirname, '..');
const outfile = resolve(root, 'dist/kubectl-sealmesh.cjs');
const common = {
  absWorkingDir: root,
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'cjs',
  minify: true,
  legalComments: 'none',
  logLevel: 'warning',
};

const commands = await build({ ...common, entryPoints: ['cmd/commands.ts'], write: false });
const commandsSource = commands.outputFiles[0].text;

/** `./commands.js`, as the entry imports it, becomes a module that compiles the embedded bundle. */
const lazyCommands = {
  name: 'lazy-commands',
  setup(b) {
    b.onResolve({ filter: /^\.\/commands\.js$/ }, () => ({ path: 'commands', namespace: 'lazy' }));
    b.onLoad({ filter: /.*/, namespace: 'lazy' }, () => ({
      loader: 'js',
      contents: [
        `const { compileFunction } = require('node:vm');`,
        `const source = ${JSON.stringify(commandsSource)};`,
        `const params = ['exports', 'require', 'module', '__filename', '__dirname'];`,
        `const m = { exports: {} };`,
        `compileFunction(source, params, { filename: __filename + ':commands' })(m.exports, require, m, __filename, __dirname);`,
        `module.exports = m.exports;`,
      ].join('\n'),
    }));
  },
};

await build({
  ...common,
  entryPoints: ['cmd/kubectl-sealmesh.ts'],
  outfile,
  banner: { js: '#!/usr/bin/env node' },
  plugins: [lazyCommands],
});
chmodSync(outfile, 0o755);
