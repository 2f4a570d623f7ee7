#!/usr/bin/env bash
# `npm run bench`: runs test/bench/*.bench.ts against a local control plane (hack/cluster.sh).
#
# By default the bench gets a control plane of its own (SEALMESH_LOCAL_DIR=.local/bench-cluster), started
# here and stopped at the end: the operator it runs reconciles every OverlayNetwork it can see, so on a
# shared control plane it would fight the operators of tests running at the same time, and the sealed key
# Secrets of a 1,000-node overlay put hundreds of MB through etcd. BENCH_CLUSTER=shared uses the shared
# control plane (.local) instead; either way the bench stops a control plane only if it started it.
#
#   BENCH_SIZES=100,1000  BENCH_IDLE_SECONDS=120  BENCH_PHASE_TIMEOUT_SECONDS=300  BENCH_PROFILE=1
#   BENCH_ONLY=seal,operator  runs only those benches (file names without .bench.ts); default: all
#
# test/bench/firewall.bench.ts (the fail-closed rules' cost of a join at 1,000 members) needs root but no
# control plane: it runs in a network namespace of its own. BENCH_FW_MEMBERS=1000  BENCH_FW_JOINS=15
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
source hack/node/env.sh # the pinned Node.js (hack/node/VERSION)

if [[ ${BENCH_CLUSTER:-own} == shared ]]; then
  unset SEALMESH_LOCAL_DIR
else
  export SEALMESH_LOCAL_DIR=$root/.local/bench-cluster
fi
local_dir=${SEALMESH_LOCAL_DIR:-$root/.local}
export KUBECONFIG=$local_dir/kubeconfig

started=0
if ! bash hack/cluster.sh status >/dev/null 2>&1; then
  bash hack/cluster.sh up
  started=1
fi
stop_cluster() {
  if [[ $started == 1 ]]; then bash hack/cluster.sh down; fi
}
trap stop_cluster EXIT

status=0
only() { [[ -z ${BENCH_ONLY:-} || ,$BENCH_ONLY, == *,$(basename "$1" .bench.ts),* ]]; }
for bench in test/bench/*.bench.ts; do
  [[ $bench == test/bench/lab.bench.ts ]] && continue # runs last, below
  only "$bench" || continue
  echo "== $bench" >&2
  node --import tsx "$bench" || status=$?
done
# The real lab (operator, agents, wireguard-go in namespaces; needs root): a node joining a lab of 4 and of 8.
# BENCH_LAB_SIZES=4,8  BENCH_LAB_JOINS=3  BENCH_LAB_TIMEOUT_SECONDS=120
if only test/bench/lab.bench.ts; then
  echo "== test/bench/lab.bench.ts" >&2
  node --import tsx test/bench/lab.bench.ts || status=$?
fi
exit "$status"
