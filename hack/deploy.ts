// The steps of hack/demo.sh that talk to the API server, from hack/deploy/deploy.ts (which the e2e tests use
// too), so the demo and the tests deploy sealmesh the same way. Admin access from $KUBECONFIG.
//
//   tsx hack/deploy.ts install DIR                         namespaces, CRDs, RBAC, admission; DIR/*.kubeconfig
//                                                          (SEALMESH_INSTALL=helm: from the Helm chart)
//   tsx hack/deploy.ts start-operator DIR [--build]        the operator in its own session; DIR/operator.{log,pid}
//   tsx hack/deploy.ts agent-cmd DIR STATE_ROOT [--build]  print the command lab.sh runs in every node
//   tsx hack/deploy.ts wait OVERLAY NODES SECONDS          until every pair of NODES (comma-separated) is encrypted
// Container mode (SEALMESH_RUNTIME=container, hack/deploy/container.ts; the image from `npm run image`):
//   tsx hack/deploy.ts agent-container-cmd                 print the command lab.sh runs (--agent-host) per node
//   tsx hack/deploy.ts agent-container                     (that command) the node's agent pod as a container
//   tsx hack/deploy.ts start-operator-container DIR        the operator's pod in the lab ($SEALMESH_LAB_DIR);
//                                                          its log DIR/operator.log
//
// --build runs the compiled JavaScript in dist/ (`npm run build`, what the image runs) instead of the source.
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadKubeConfig } from '../lib/kube.js';
import {
  OPERATOR_SERVICE_ACCOUNT,
  WaitError,
  agentCommand,
  applyBase,
  installChart,
  describeProgress,
  startOperatorProcess,
  waitAllEncrypted,
  writeAgentKubeconfigTemplate,
  writeServiceAccountKubeconfig,
} from './deploy/deploy.js';
import { agentContainerCommand, startAgentContainer, startOperatorInLab } from './deploy/container.js';

const say = (msg: string) => process.stderr.write(`deploy: ${msg}\n`);
/** progress lines stay one terminal line or two; the full reason comes with a failure */
const clip = (s: string) => (s.length > 200 ? `${s.slice(0, 197)}...` : s);

function adminKubeconfig(): string {
  const file = process.env.KUBECONFIG;
  if (!file) throw new Error('KUBECONFIG must point at the admin kubeconfig (hack/cluster.sh env)');
  return file;
}

async function main(argv: string[]): Promise<number> {
  const from = argv.includes('--build') ? 'build' : 'source';
  const [command, ...args] = argv.filter((a) => a !== '--build');
  switch (command) {
    case 'install': {
      const [dir] = args;
      if (!dir) break;
      const helm = process.env.SEALMESH_INSTALL === 'helm';
      if (helm) await installChart(adminKubeconfig());
      else await applyBase(adminKubeconfig());
      const kc = loadKubeConfig();
      await writeServiceAccountKubeconfig(kc, OPERATOR_SERVICE_ACCOUNT, resolve(dir, 'operator.kubeconfig'));
      writeAgentKubeconfigTemplate(kc, resolve(dir, 'agent.kubeconfig'));
      say(
        `namespaces, CRDs, RBAC and admission policies ${helm ? 'installed with helm (release sealmesh)' : 'applied'}; kubeconfigs in ${dir}`,
      );
      return 0;
    }
    case 'start-operator': {
      const [dir] = args;
      if (!dir) break;
      const child = startOperatorProcess({
        kubeconfig: resolve(dir, 'operator.kubeconfig'),
        logFile: resolve(dir, 'operator.log'),
        detached: true,
        from,
      });
      if (!child.pid) throw new Error('the operator did not start');
      // "pid starttime": the start time lets `down` tell our operator from a process that reused the PID
      const start = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[19];
      writeFileSync(resolve(dir, 'operator.pid'), `${child.pid} ${start ?? ''}\n`);
      say(`operator started (pid ${child.pid}, log ${resolve(dir, 'operator.log')})`);
      return 0;
    }
    case 'agent-cmd': {
      const [dir, stateRoot] = args;
      if (!dir || !stateRoot) break;
      process.stdout.write(
        `${agentCommand({
          adminKubeconfig: resolve(adminKubeconfig()),
          template: resolve(dir, 'agent.kubeconfig'),
          stateRoot: resolve(stateRoot),
          from,
        })}\n`,
      );
      return 0;
    }
    case 'agent-container-cmd':
      process.stdout.write(`${agentContainerCommand(resolve(adminKubeconfig()))}\n`);
      return 0;
    case 'agent-container': {
      const id = await startAgentContainer(loadKubeConfig());
      say(`agent container of ${process.env.NODE_NAME} started (${id.slice(0, 12)})`);
      return 0;
    }
    case 'start-operator-container': {
      const [dir] = args;
      const labDir = process.env.SEALMESH_LAB_DIR;
      if (!dir || !labDir) break;
      const name = await startOperatorInLab(loadKubeConfig(), labDir, resolve(dir));
      say(`operator container ${name} started (log ${resolve(dir, 'operator.log')})`);
      return 0;
    }
    case 'wait': {
      const [overlay, nodes, seconds] = args;
      if (!overlay || !nodes || !seconds || !(Number(seconds) > 0)) break;
      const list = nodes.split(',').filter((n) => n !== '');
      try {
        const done = await waitAllEncrypted(
          loadKubeConfig(),
          overlay,
          list,
          Number(seconds) * 1000,
          (p, ms) => say(`${(ms / 1000).toFixed(0).padStart(4)} s  ${clip(p.reason)}`),
        );
        say(`overlay ${overlay}: ${done.reason}`);
        return 0;
      } catch (err) {
        if (!(err instanceof WaitError)) throw err;
        say(err.message);
        process.stderr.write(`${describeProgress(err.last)}\n`);
        return 1;
      }
    }
  }
  process.stderr.write(
    'usage: tsx hack/deploy.ts install DIR | start-operator DIR [--build] | agent-cmd DIR STATE_ROOT [--build] | wait OVERLAY NODES SECONDS | agent-container-cmd | agent-container | start-operator-container DIR\n',
  );
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    say(err instanceof Error ? err.message : String(err));
    process.exit(1);
  },
);
