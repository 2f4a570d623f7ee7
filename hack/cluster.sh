#!/usr/bin/env bash
# Local control plane for development and tests: a real etcd and kube-apiserver on 127.0.0.1, built from the
# Kubernetes Go modules by hack/kube/build.sh. No kubelet and no controller-manager: lab nodes are Node
# objects the lab creates, and nothing garbage-collects owner references, so sealmesh deletes what it owns
# explicitly (a real cluster's garbage collector is then only a second line of defence).
#
#   hack/cluster.sh up       start (idempotent; cleans up after a crashed run), wait for /readyz
#   hack/cluster.sh down     stop what `up` started, by PID, and remove its data
#   hack/cluster.sh status   say whether it is running, exit 1 if not
#   hack/cluster.sh env      print `export KUBECONFIG=...` (eval "$(hack/cluster.sh env)")
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# SEALMESH_LOCAL_DIR lets a test run a second, throw-away control plane beside the shared one.
local_dir=${SEALMESH_LOCAL_DIR:-$root/.local}
state=$local_dir/cluster
kubeconfig=$local_dir/kubeconfig

log() { echo "cluster: $*" >&2; }
die() {
  log "$*"
  exit 1
}

bin_dir() { bash "$root/hack/kube/build.sh"; }

# A PID counts as ours only if the process is alive and runs the binary we started from the cache, so a
# PID file left by a crashed run can never make us signal an unrelated process that reused the number.
our_pid() {
  local name=$1 pid exe
  [[ -f $state/$name.pid ]] || return 1
  pid=$(<"$state/$name.pid")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [[ ${exe% (deleted)} == */$name ]] || return 1
  echo "$pid"
}

stop_one() {
  local name=$1 pid i
  if pid=$(our_pid "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$state/$name.pid"
}

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

ready() {
  [[ -f $kubeconfig ]] || return 1
  "$(bin_dir)/kubectl" --kubeconfig "$kubeconfig" --request-timeout=2s get --raw /readyz >/dev/null 2>&1
}

gen_pki() {
  local pki=$state/pki
  mkdir -p "$pki"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -subj "/CN=sealmesh-local-ca" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=sealmesh-admin" 2>/dev/null
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt -days 30 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n' >san.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 30 -extfile san.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    chmod 600 ./*.key
  )
}

write_kubeconfig() {
  local port=$1 pki=$state/pki
  mkdir -p "$(dirname "$kubeconfig")"
  cat >"$kubeconfig.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: sealmesh-local
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(base64 -w0 "$pki/admin.crt")
    client-key-data: $(base64 -w0 "$pki/admin.key")
contexts:
- name: sealmesh-local
  context: {cluster: sealmesh-local, user: admin}
current-context: sealmesh-local
EOF
  chmod 600 "$kubeconfig.tmp"
  mv "$kubeconfig.tmp" "$kubeconfig"
}

up() {
  local bin
  bin=$(bin_dir)
  if our_pid etcd >/dev/null && our_pid kube-apiserver >/dev/null && ready; then
    log "already running ($(status_line))"
    return 0
  fi
  # Anything left from a crashed run goes first: half a control plane is worse than none.
  down_quiet
  mkdir -p "$state"
  gen_pki
  local etcd_port peer_port api_port
  etcd_port=$(free_port)
  peer_port=$(free_port)
  api_port=$(free_port)
  setsid "$bin/etcd" --name sealmesh --data-dir "$state/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "sealmesh=http://127.0.0.1:$peer_port" --unsafe-no-fsync --log-level warn \
    </dev/null >"$state/etcd.log" 2>&1 &
  echo $! >"$state/etcd.pid"
  echo "$etcd_port $api_port" >"$state/ports"
  start_apiserver "$etcd_port" "$api_port"
  write_kubeconfig "$api_port"
  wait_ready
}

start_apiserver() { # ETCD_PORT API_PORT
  local bin etcd_port=$1 api_port=$2
  bin=$(bin_dir)
  local pki=$state/pki
  setsid "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --api-audiences https://kubernetes.default.svc \
    --authorization-mode RBAC \
    --enable-admission-plugins NamespaceLifecycle,LimitRanger,DefaultStorageClass,ResourceQuota,ServiceAccount,ValidatingAdmissionPolicy,MutatingAdmissionWebhook,ValidatingAdmissionWebhook \
    --service-cluster-ip-range 10.96.0.0/16 \
    --allow-privileged=true \
    --profiling=false \
    </dev/null >>"$state/kube-apiserver.log" 2>&1 &
  echo $! >"$state/kube-apiserver.pid"
}

wait_ready() {
  local i
  for i in $(seq 1 240); do
    if ready; then
      log "up: $(status_line)"
      return 0
    fi
    our_pid etcd >/dev/null || die "etcd exited; see $state/etcd.log: $(tail -n 5 "$state/etcd.log")"
    our_pid kube-apiserver >/dev/null ||
      die "kube-apiserver exited; see $state/kube-apiserver.log: $(tail -n 5 "$state/kube-apiserver.log")"
    sleep 0.5
  done
  die "kube-apiserver not ready after 120 s; see $state/kube-apiserver.log"
}

down_quiet() {
  stop_one kube-apiserver
  stop_one etcd
  rm -rf "$state" "$kubeconfig"
}

status_line() {
  echo "kube-apiserver $(sed -n 's#.*server: ##p' "$kubeconfig" 2>/dev/null), kubeconfig $kubeconfig"
}

case ${1:-} in
up) up ;;
down)
  down_quiet
  log "down"
  ;;
status)
  if our_pid etcd >/dev/null && our_pid kube-apiserver >/dev/null && ready; then
    echo "running: $(status_line)"
  else
    echo "not running"
    exit 1
  fi
  ;;
env) echo "export KUBECONFIG=$kubeconfig" ;;
# An API server outage for tests (issue #18): the kube-apiserver stops; etcd and its data stay. start-apiserver
# starts it again on the same port, certificates and data, and waits until it is ready.
stop-apiserver)
  our_pid kube-apiserver >/dev/null || die "no kube-apiserver of ours runs"
  stop_one kube-apiserver
  log "kube-apiserver stopped (etcd runs)"
  ;;
start-apiserver)
  our_pid etcd >/dev/null || die "no etcd of ours runs"
  our_pid kube-apiserver >/dev/null && die "kube-apiserver already runs"
  read -r etcd_port api_port <"$state/ports"
  start_apiserver "$etcd_port" "$api_port"
  wait_ready
  ;;
*)
  echo "usage: $0 up|down|status|env|stop-apiserver|start-apiserver" >&2
  exit 2
  ;;
esac
