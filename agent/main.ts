// Entry point of the node agent (`npm run agent`, or the DaemonSet's container). Flags win over environment
// variables. SIGTERM/SIGINT stop the watches but leave every WireGuard interface up, so traffic keeps
// flowing while the agent restarts.
import { parseArgs } from 'node:util';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { loadKubeConfig } from '../lib/kube.js';
import { RuntimeServer } from '../lib/runtime/server.js';
import { newLogger } from '../lib/log.js';
import { parseDuration } from '../api/v1alpha1/validation.js';
import { Agent } from './agent.js';
import { WgCliDevice } from './device/wgcli.js';
import { NftFirewall } from './firewall/nft.js';
import { AgentMetrics } from './metrics.js';
import { KubeAgentApi } from './kube.js';
import { uninstall } from './uninstall.js';

/** The agent's /healthz and /readyz port on the node's loopback (hostNetwork: it shares the node's ports). */
const DEFAULT_HEALTH_PORT = 9466;
/**
 * /metrics for Prometheus on every address of the node. Beside the health port, and clear of what common node
 * agents listen on (node-exporter 9100, wireguard_exporter 9586, Calico 9091, Cilium 9962-9965, kube-proxy
 * 10249, kubelet 10250).
 */
const DEFAULT_METRICS_PORT = 9467;

const USAGE = `usage: agent [--node NAME] [--state-dir DIR] [--namespace NS] [--interface-prefix P] [--probe-interval 5s]
             [--health-port ${DEFAULT_HEALTH_PORT}] [--health-host 127.0.0.1]
             [--metrics-port ${DEFAULT_METRICS_PORT}] [--metrics-host 0.0.0.0]
       agent --uninstall [--interface-prefix P]
  --node              this node's name (env NODE_NAME)
  --state-dir         where keys are kept (env SEALMESH_STATE_DIR, default /var/lib/sealmesh)
  --namespace         the key namespace: sealed key Secrets, the operator's public key, liveness Leases (env SEALMESH_NAMESPACE, default sealmesh-keys)
  --interface-prefix  interface names are <prefix>-<6 hex> (default sm)
  --post-quantum      on|off: publish an ML-KEM-768 envelope key, so the operator seals this node's PSKs with
                      a key derived from X25519 and ML-KEM (env SEALMESH_POST_QUANTUM, default on)
  --probe-interval    how often peers are measured (default 5s)
  --health-port       serve /healthz (alive) and /readyz (caches synced, every overlay's device programmed) on
                      this port (0: off)
  --health-host       address to serve them on (default 127.0.0.1: the kubelet probes the node's loopback)
  --metrics-port      serve /metrics (and /healthz, /readyz) for Prometheus on this port (0: off)
  --metrics-host      address to serve them on (default 0.0.0.0: Prometheus scrapes the node's address)
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
      'post-quantum': { type: 'string' },
      'probe-interval': { type: 'string' },
      'health-port': { type: 'string' },
      'health-host': { type: 'string' },
      'metrics-port': { type: 'string' },
      'metrics-host': { type: 'string' },
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
  const postQuantum = values['post-quantum'] ?? process.env.SEALMESH_POST_QUANTUM ?? 'on';
  if (postQuantum !== 'on' && postQuantum !== 'off')
    throw new Error(`--post-quantum ${postQuantum}: expected on or off`);
  const probeInterval = values['probe-interval'] ?? '5s';
  const probeSeconds = parseDuration(probeInterval);
  if (!probeSeconds) throw new Error(`--probe-interval ${probeInterval} is not a duration such as 5s`);

  const port = (flag: 'health-port' | 'metrics-port', fallback: number): number => {
    const n = Number(values[flag] ?? fallback);
    if (!Number.isInteger(n) || n < 0 || n > 65535)
      throw new Error(`--${flag} ${values[flag]} is not a port number (0 turns it off)`);
    return n;
  };
  const healthPort = port('health-port', DEFAULT_HEALTH_PORT);
  const metricsPort = port('metrics-port', DEFAULT_METRICS_PORT);
  if (metricsPort !== 0 && metricsPort === healthPort)
    throw new Error(`--metrics-port and --health-port are both ${healthPort}: give them different ports`);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'sealmesh_agent_' });

  const log = newLogger('agent');
  const agent = new Agent({
    node,
    stateDir: values['state-dir'] ?? process.env.SEALMESH_STATE_DIR ?? '/var/lib/sealmesh',
    namespace: values.namespace ?? process.env.SEALMESH_NAMESPACE ?? 'sealmesh-keys',
    interfacePrefix: values['interface-prefix'] ?? 'sm',
    postQuantum: postQuantum === 'on',
    probeIntervalMs: probeSeconds * 1000,
    api: new KubeAgentApi(loadKubeConfig()),
    deviceFactory: (name) => new WgCliDevice(name),
    firewall: new NftFirewall(),
    metrics: new AgentMetrics(registry),
    logger: log,
  });

  // Two listeners of the same checks and metrics: the probes stay on loopback, so a host firewall or policy
  // that limits the metrics port to Prometheus can never fail them.
  const servers = [
    { port: healthPort, host: values['health-host'] ?? '127.0.0.1' },
    { port: metricsPort, host: values['metrics-host'] ?? '0.0.0.0' },
  ]
    .filter((s) => s.port !== 0)
    .map((s) => new RuntimeServer({ ...s, registry, logger: log }));
  for (const server of servers) {
    server.addHealthCheck('event-loop', () => true);
    server.addReadyCheck('agent-ready', () => agent.ready);
    await server.start();
  }

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    Promise.all([agent.stop(), ...servers.map((s) => s.close())]).then(
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
