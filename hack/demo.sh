#!/usr/bin/env bash
# `npm run demo` / `npm run demo:down`: sealmesh end to end on this machine.
#
#   hack/demo.sh up     control plane, namespaces + CRDs + RBAC from config/, the operator and one agent per
#                       node (each as its service account, token from the TokenRequest API: least privilege
#                       for real), a 4-node WireGuard lab and the sample overlay; returns once every pair is
#                       encrypted (exit 1 with the reason and the last status if not within DEMO_TIMEOUT,
#                       default 180 s) and leaves everything running
#   hack/demo.sh down   overlay, agents + lab, operator, control plane: nothing left behind
#
# Both are idempotent and clean up after a crashed run. SEALMESH_LOCAL_DIR (default <repo>/.local) moves
# everything, control plane included, elsewhere; SEALMESH_KEEP_CLUSTER=1 makes `down` keep the control plane.
# SEALMESH_INSTALL=helm installs the namespaces, CRDs, RBAC and admission policies with the Helm chart
# (charts/sealmesh, release sealmesh; helm built once by hack/tools/build.sh) instead of applying config/.
# SEALMESH_RUNTIME=container runs the operator and the agents as the image (`npm run image`, built here when
# needed) under podman, with the pod specs of config/agent and config/manager applied as written
# (hack/deploy/container.ts); its logs are $demo/operator.log and $SEALMESH_LAB_DIR/<node>.agent.log.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
source hack/node/env.sh # the pinned Node.js (hack/node/VERSION) runs the operator and the agents
local_dir=${SEALMESH_LOCAL_DIR:-$root/.local}
case $local_dir in /*) ;; *) local_dir=$PWD/$local_dir ;; esac
export SEALMESH_LOCAL_DIR=$local_dir
demo=$local_dir/demo
export SEALMESH_LAB_DIR=$local_dir/lab
export KUBECONFIG=$local_dir/kubeconfig
nodes=4
overlay=sample
sample=config/samples/sealmesh_v1alpha1_overlaynetwork.yaml
timeout=${DEMO_TIMEOUT:-180}

say() { echo "demo: $*" >&2; }
die() {
  say "$*"
  exit 1
}
tsx() { node --import tsx "$@"; }
kubectl_() { "$(bash hack/kube/build.sh)/kubectl" --request-timeout=20s "$@"; }
cluster_up() { bash hack/cluster.sh status >/dev/null 2>&1; }

# The operator we started, if it still runs: the PID file holds "pid starttime" so a recycled PID is never
# mistaken for it.
operator_pid() {
  local pid start
  [[ -f $demo/operator.pid ]] || return 1
  read -r pid start <"$demo/operator.pid" || return 1
  [[ $pid =~ ^[0-9]+$ && -n $start ]] || return 1
  # field 3 is the state: a zombie (Z) is already dead, only not yet reaped
  [[ $(awk '{ print $3 " " $22 }' "/proc/$pid/stat" 2>/dev/null) =~ ^[^Z]\ $start$ ]] || return 1
  echo "$pid"
}

stop_operator() {
  local pid i
  if pid=$(operator_pid); then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    say "operator stopped (pid $pid)"
  fi
  rm -f "$demo/operator.pid"
}

# Deletes the overlay while the operator and agents still run, so they remove what they made (NodeTunnels,
# sealed Secrets, devices). An operator that is gone cannot drop its finalizer: then we do, after a bound.
delete_overlay() {
  cluster_up || return 0
  kubectl_ get overlaynetwork "$overlay" >/dev/null 2>&1 || return 0
  kubectl_ delete overlaynetwork "$overlay" --wait=false >/dev/null
  if ! kubectl_ wait --for=delete "overlaynetwork/$overlay" --timeout=30s >/dev/null 2>&1; then
    say "overlay $overlay still has finalizers after 30 s (operator not running?): removing them"
    kubectl_ patch overlaynetwork "$overlay" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
  fi
  say "overlay $overlay deleted"
}

down() {
  delete_overlay
  bash hack/lab.sh down # stops the agents (and wireguard-go) and removes every namespace and interface
  stop_operator
  if [[ ${SEALMESH_KEEP_CLUSTER:-} == 1 ]]; then
    say "keeping the control plane (SEALMESH_KEEP_CLUSTER=1)"
  else
    bash hack/cluster.sh down
  fi
  rm -rf "$demo" # the service-account tokens
  say "down"
}

up() {
  local t0=$SECONDS
  bash hack/bootstrap.sh
  local runtime=${SEALMESH_RUNTIME:-process}
  [[ $runtime == process || $runtime == container ]] || die "SEALMESH_RUNTIME is process or container, not $runtime"
  # The operator and the agents run from the compiled build (process mode) or the image built from it
  # (container mode); the kubectl plugin below runs from dist/ either way.
  say "npm run build"
  npm run --silent build >&2
  if [[ $runtime == container ]]; then
    say "npm run image"
    bash hack/image/build.sh >/dev/null
  fi
  bash hack/cluster.sh up
  # A previous demo (crashed or not) goes first; lab.sh up removes its lab, its Node objects with it.
  stop_operator
  mkdir -p "$demo"
  chmod 700 "$demo"
  tsx hack/deploy.ts install "$demo"
  local agent_cmd
  if [[ $runtime == container ]]; then
    agent_cmd=$(tsx hack/deploy.ts agent-container-cmd)
    bash hack/lab.sh up --nodes "$nodes" --agent-cmd "$agent_cmd" --agent-host >/dev/null
    tsx hack/deploy.ts start-operator-container "$demo"
  else
    tsx hack/deploy.ts start-operator "$demo" --build
    agent_cmd=$(tsx hack/deploy.ts agent-cmd "$demo" "$SEALMESH_LAB_DIR/agents" --build)
    bash hack/lab.sh up --nodes "$nodes" --agent-cmd "$agent_cmd" >/dev/null
  fi
  local lab_nodes
  lab_nodes=$(bash hack/lab.sh nodes | paste -sd, -)
  # The sample selects kubernetes.io/os=linux, which every lab Node carries: it is applied unchanged.
  kubectl_ apply -f "$sample"
  local t1=$SECONDS
  if ! tsx hack/deploy.ts wait "$overlay" "$lab_nodes" "$timeout"; then
    say "operator log: $demo/operator.log; agent logs: $SEALMESH_LAB_DIR/<node>.log"
    say "last lines of the operator log (cut to 300 characters):"
    tail -n 10 "$demo/operator.log" | cut -c1-300 >&2 || true
    die "not every pair encrypted within $timeout s (everything left running for inspection; npm run demo:down removes it)"
  fi
  say "all pairs encrypted $((SECONDS - t1)) s after applying the overlay ($((SECONDS - t0)) s in all)"
  echo
  kubectl_ get overlaynetworks,nodetunnels
  echo
  # plugin lookup stops at the first flag, so no --request-timeout before "sealmesh"
  PATH=$root/bin:$PATH "$(bash hack/kube/build.sh)/kubectl" sealmesh status
  cat <<EOF

Running ($runtime mode): the operator (log $demo/operator.log), $nodes lab nodes with an agent each (logs $SEALMESH_LAB_DIR/<node>.log$([[ $runtime == container ]] && echo ", <node>.agent.log; podman ps")).
  export KUBECONFIG=$KUBECONFIG PATH=$root/bin:\$PATH
  kubectl get nodetunnels; kubectl sealmesh status
  hack/lab.sh exec <node> -- wg show          (with SEALMESH_LAB_DIR=$SEALMESH_LAB_DIR)
  npm run demo:down                            removes it all
EOF
}

case ${1:-} in
  up) up ;;
  down) down ;;
  *)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac
