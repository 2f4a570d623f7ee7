// kubectl plugin: `kubectl sealmesh status [OVERLAY]` prints each overlay's pair matrix (colour on a
// terminal, plain when piped); `kubectl sealmesh rotate OVERLAY [--psk-only] [--wait]` starts a key rotation
// now and, with --wait, follows it to the end (cmd/commands.ts).
//
// `npm run build` bundles this file into dist/kubectl-sealmesh.cjs, one file that plain `node` runs with
// nothing else from the repo. This entry parses the arguments with nothing but node:util, and loads the
// commands (and with them the Kubernetes client, most of the start-up time) only when one runs.
import { parseArgs } from 'node:util';

const USAGE = `usage: kubectl sealmesh status [OVERLAY] [--kubeconfig FILE] [--no-color]
       kubectl sealmesh rotate OVERLAY [--psk-only] [--wait] [--timeout 300s] [--kubeconfig FILE]
  --psk-only  rotate only the pre-shared keys (sessions continue; needs keys.presharedKeys: PerPair)`;

async function main(argv: string[]): Promise<number> {
  // The Kubernetes client's dependencies use APIs that Node.js 24 deprecates (node-fetch 2: url.parse,
  // tr46: the punycode module); their warnings are for those libraries' developers, and a plugin user can do
  // nothing about them, so they stay out of the plugin's stderr.
  process.noDeprecation = true;
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      kubeconfig: { type: 'string' },
      'no-color': { type: 'boolean', default: false },
      wait: { type: 'boolean', default: false },
      'psk-only': { type: 'boolean', default: false },
      timeout: { type: 'string', default: '300s' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const [command, overlay] = positionals;
  if (values.help || !command) {
    process.stdout.write(`${USAGE}\n`);
    return values.help ? 0 : 2;
  }
  if (command !== 'status' && command !== 'rotate') {
    process.stderr.write(`unknown command ${command}\n${USAGE}\n`);
    return 2;
  }
  if (command === 'rotate' && !overlay) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const seconds = Number(/^(\d+)s?$/.exec(values.timeout)?.[1] ?? NaN);
  if (!Number.isFinite(seconds)) {
    process.stderr.write(`--timeout must be a number of seconds, e.g. 300s\n`);
    return 2;
  }
  const { run } = await import('./commands.js');
  return run({
    command,
    overlay,
    kubeconfig: values.kubeconfig,
    colour: process.stdout.isTTY && !values['no-color'] && !process.env.NO_COLOR,
    wait: values.wait,
    pskOnly: values['psk-only'],
    timeoutSeconds: seconds,
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`kubectl sealmesh: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
