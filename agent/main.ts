// Entry point of the node agent (`npm run agent`, or the DaemonSet's container). Flags win over environment
// variables. SIGTERM/SIGINT stop the watches but leave every WireGuard interface up, so traffic keeps
// flowing while the agent restarts.
import { parseArgs } from 'node:util';
import { Registry } from 'prom-client';
import { loadKubeConfig } from '../lib/kube.js';
import { RuntimeServer } from '../lib/runtime/server.js';
import { newLogger } from '../lib/log.js';
import { parseDuration } from '../api/v1alpha1/validation.js';
import { Agent } from './agent.js';
import { WgCliDevice } from './device/wgcli.js';
import { NftFirewall } from './firewall/nft.js';
import { KubeAgentApi } from './kube.js';
import { uninstall } from './uninstall.js';

/** The agent's /healthz and /readyz port on the node's loopback (hostNetwork: it shares the node's ports). */
const DEFAULT_HEALTH_PORT = 9466;

const USAGE = `usage: agent [--node NAME] [--state-dir DIR] [--namespace NS] [--interface-prefix P] [--probe-interval 5s]
             [--health-port ${DEFAULT_HEALTH_PORT}] [--health-host 127.0.0.1]
       agent --uninstall [--interface-prefix P]
  --node              this node's name (env NODE_NAME)
  --state-dir         where keys are kept (env SEALMESH_STATE_DIR, default /var/lib/sealmesh)
  --namespace         the key namespace: sealed key Secrets, the operator's public key, liveness Leases (env SEALMESH_NAMESPACE, default sealmesh-keys)
  --interface-prefix  interface names are <prefix>-<6 hex> (default sm)
  --probe-interval    how often peers are measured (default 5s)
  --health-port       serve /healthz (alive) and /readyz (caches synced, passes running) on this port (0: off)
  --health-host       address to serve them on (default 127.0.0.1: the kubelet probes the node's loopback)
  --uninstall         remove sealmesh's fail-closed rules (nft table inet sealmesh), its ip rule and routes and
                      its WireGuard interfaces from this node, then exit (no API access needed)
The kubeconfig comes from $KUBECONFIG, else the in-cluster service account.`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      node: { type: 'string' },
      'state-dir': { type: 'string' },
      namespace: { type: 'string' },
      'interface-prefix': { type: 'string' },
      'probe-interval': { type: 'string' },
      'health-port': { type: 'string' },
      'health-host': { type: 'string' },
      uninstall: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (values.uninstall) {
    for (const what of await uninstall(values['interface-prefix'] ?? 'sm')) console.log(`removed ${what}`);
    return;
  }
  const node = values.node ?? process.env.NODE_NAME;
  if (!node) throw new Error(`no node name: pass --node or set NODE_NAME\n${USAGE}`);
  const probeInterval = values['probe-interval'] ?? '5s';
  const probeSeconds = parseDuration(probeInterval);
  if (!probeSeconds) throw new Error(`--probe-interval ${probeInterval} is not a duration such as 5s`);

  const healthPort = Number(values['health-port'] ?? DEFAULT_HEALTH_PORT);
  if (!Number.isInteger(healthPort) || healthPort < 0 || healthPort > 65535)
    throw new Error(`--health-port ${values['health-port']} is not a port number (0 turns it off)`);

  const log = newLogger('agent');
  const agent = new Agent({
    node,
    stateDir: values['state-dir'] ?? process.env.SEALMESH_STATE_DIR ?? '/var/lib/sealmesh',
    namespace: values.namespace ?? process.env.SEALMESH_NAMESPACE ?? 'sealmesh-keys',
    interfacePrefix: values['interface-prefix'] ?? 'sm',
    probeIntervalMs: probeSeconds * 1000,
    api: new KubeAgentApi(loadKubeConfig()),
    deviceFactory: (name) => new WgCliDevice(name),
    firewall: new NftFirewall(),
    logger: log,
  });

  const health =
    healthPort === 0
      ? undefined
      : new RuntimeServer({
          host: values['health-host'] ?? '127.0.0.1',
          port: healthPort,
          registry: new Registry(),
          logger: log,
        });
  health?.addHealthCheck('event-loop', () => true);
  health?.addReadyCheck('agent-running', () => agent.running);
  await health?.start();

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    Promise.all([agent.stop(), health?.close()]).then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  await agent.start();
}

main().catch((err: unknown) => {
  console.error(`agent: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
