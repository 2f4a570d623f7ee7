// sealmesh operator entry point. Configuration from flags or environment:
//   --namespace / SEALMESH_NAMESPACE   operator namespace (default sealmesh-system)
//   --key-namespace / SEALMESH_KEY_NAMESPACE  sealed key Secrets + public identity (default sealmesh-keys)
//   --metrics-port / METRICS_PORT      /healthz, /readyz, /metrics (default 8080; 0 = any free port)
//   --metrics-host / METRICS_HOST      bind address (default 0.0.0.0)
//   --leader-elect=false               run without leader election (one replica only)
//   --rotation-stage-timeout 60s       live agents' time to acknowledge staging ...
//   --rotation-stage-per-agent 100ms   ... plus this per agent (the operator seals and writes every Secret first)
//   --rotation-cutover-delay 3s        how far ahead the shared cutover instant is set
//   --rotation-verify-timeout 2m       wait for every pair at the new epoch, then complete anyway (Warning Event)
//   --rotation-backoff 30s             first retry after an aborted rotation, doubling per attempt ...
//   --rotation-max-backoff 30m         ... up to this
//   --status-interval 2s               least time between two status writes that change only pair counts
//   POD_NAME                           leader-election identity (default hostname + random suffix)
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { loadKubeConfig } from '../lib/kube.js';
import { newLogger } from '../lib/log.js';
import { createOperator } from './app.js';
import { parseFlagDuration, TIMING_FLAGS, timingsFromFlags } from './flags.js';

// The key Secrets the operator writes (up to ~600 KB each) are large strings that die at once but stay in
// V8's large-object space until a full GC, and by default the heap grows to up to 4x what is live before one:
// at 1,000 nodes ~60 MB live became ~250 MB of heap. Growing by 1.25x keeps RSS near the live size for more,
// short (mostly concurrent) full GCs. V8 reads the flag at every GC, so setting it here takes effect; one given
// on the command line wins.
if (!process.execArgv.some((a) => a.startsWith('--heap-growing-percent'))) {
  setFlagsFromString('--heap-growing-percent=25');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      namespace: { type: 'string', default: process.env.SEALMESH_NAMESPACE ?? 'sealmesh-system' },
      'key-namespace': { type: 'string', default: process.env.SEALMESH_KEY_NAMESPACE ?? 'sealmesh-keys' },
      'metrics-port': { type: 'string', default: process.env.METRICS_PORT ?? '8080' },
      'metrics-host': { type: 'string', default: process.env.METRICS_HOST ?? '0.0.0.0' },
      'leader-elect': { type: 'string', default: 'true' },
      'status-interval': { type: 'string' },
      ...Object.fromEntries(Object.keys(TIMING_FLAGS).map((f) => [f, { type: 'string' as const }])),
    },
  });
  const flags = values as Record<string, string | undefined>;
  const rotationTimings = timingsFromFlags(flags);
  const statusIntervalMs =
    flags['status-interval'] === undefined
      ? undefined
      : parseFlagDuration('status-interval', flags['status-interval']);
  const log = newLogger('operator');
  const operator = await createOperator({
    kc: loadKubeConfig(),
    logger: log,
    namespace: values.namespace,
    keyNamespace: values['key-namespace'],
    identity: process.env.POD_NAME,
    leaderElection: values['leader-elect'] !== 'false',
    rotationTimings,
    statusIntervalMs,
    server: { host: values['metrics-host'], port: Number(values['metrics-port']) },
  });
  operator.manager.installSignalHandlers();
  await operator.start();
  const port = operator.manager.server?.port();
  log.info({ namespace: values.namespace, port }, 'operator started');
  const reason = await operator.manager.done;
  // Lost leadership: exit non-zero so the process restarts as a fresh candidate with empty state.
  process.exit(reason === 'shutdown' ? 0 : 1);
}

main().catch((err: unknown) => {
  newLogger('operator').fatal({ err: err instanceof Error ? err.message : String(err) }, 'operator failed');
  process.exit(1);
});
