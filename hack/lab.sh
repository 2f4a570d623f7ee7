#!/usr/bin/env bash
# The node lab: N "nodes", each a network namespace plus its own mount namespace, joined by veth pairs to a
# bridge that lives in a dedicated underlay namespace, so nothing here touches the host's real network.
#
#   hack/lab.sh up --nodes N [--no-k8s] [--agent-cmd CMD] [--agent-host]
#                                                             (re)create the lab; a stale lab is removed first
#   hack/lab.sh add-node [--label K=V]...                    one more node joins a running lab
#   hack/lab.sh down                                          remove everything `up` made (idempotent)
#   hack/lab.sh status                                        what exists, what runs
#   hack/lab.sh nodes                                         node names, one a line
#   hack/lab.sh info                                          node name, index, underlay IP, pod CIDR a line
#   hack/lab.sh exec NODE -- CMD...                           run CMD inside NODE (its net + mount namespaces)
#   hack/lab.sh start NODE LABEL -- CMD...                    start CMD in NODE in the background (logged, PID kept)
#   hack/lab.sh pod NAME                                      a pod's own network namespace (lo, the API relay):
#                                                             prints its path; `down` removes it
#
# Why a mount namespace per node: wireguard-go keeps its control socket at /var/run/wireguard/<if>.sock, so
# two nodes with a wg0 each would fight over one socket. Each node gets a private directory there (and its
# own /sys, so /sys/class/net shows the node's links): <state dir>/root/<node>/var/run/wireguard, the node's
# "host path" that a container's hostPath volume of /var/run/wireguard binds too. The namespace is kept alive by bind-mounting it onto a file
# under the state dir, which is itself a private mount so the bind never propagates anywhere.
#
# Node i (from 1): Kubernetes name lab-<run>-n<i>, underlay 198.18.0.(i+1)/24 on eth0, pod CIDR 10.244.i.0/24.
# Nodes look like real nodes (../shared/DESIGN.md, "The local lab"): a default route out of eth0 via the
# underlay router 198.18.0.1 (the underlay namespace, which forwards and routes every node's pod CIDR to its
# node, as a host-gw CNI would), and a stand-in pod: 10.244.i.1/32 on lo that answers
# pings, and TCP on port 8080 (a socat that answers with one line). Without both a capture cannot see a leak:
# traffic to a prefix with no tunnel route would have nowhere to go. Unless --no-k8s, a Node object
# per lab node is created with those addresses and the label sealmesh.io/lab=<run>, and the API server (which
# listens on 127.0.0.1 of the host) is relayed to 127.0.0.1:<same port> inside every node through a unix
# socket, so .local/kubeconfig works unchanged inside a node.
#
# Container mode (--agent-host): the agent command runs in the host's namespaces with NODE_NAME, LAB_NETNS
# (the node's network namespace) and LAB_NODE_ROOT (<state dir>/root/<node>, where the node's hostPath
# volumes live) set; it starts the agent as a container (hack/deploy/container.ts) that joins the node's
# network namespace. `down` removes every container labelled sealmesh.io/lab=<run> first.
#
# Environment: SEALMESH_LAB_DIR (state dir, default <repo>/.local/lab; tests use their own so they never
# touch a demo lab), KUBECONFIG (default <repo>/.local/kubeconfig), KUBECTL (default: hack/kube/build.sh's).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
labdir=${SEALMESH_LAB_DIR:-$repo/.local/lab}
case $labdir in /*) ;; *) labdir=$PWD/$labdir ;; esac
state=$labdir/state
nsdir=$labdir/ns
kubeconfig=${KUBECONFIG:-$repo/.local/kubeconfig}
EXTRA_LABELS=() # add-node --label
wgrun=/var/run/wireguard # where wireguard-go puts its sockets (mount follows the /var/run symlink)

die() {
  echo "lab.sh: $*" >&2
  exit 1
}
say() { [[ -n ${LAB_QUIET:-} ]] || echo "lab.sh: $*" >&2; }

need_root() {
  ((EUID == 0)) || die "must run as root (network and mount namespaces)"
  for c in ip nsenter unshare; do command -v "$c" >/dev/null || die "$c missing: run hack/install-deps.sh"; done
}

# --- state -------------------------------------------------------------------------------------------------
# state is sourceable KEY=VALUE; every object is recorded *before* it is created, so `down` after a crash
# mid-`up` still finds it.
state_set() {
  local key=$1 val=$2
  mkdir -p "$labdir"
  touch "$state"
  grep -v "^$key=" "$state" >"$state.tmp" || true
  printf '%s=%q\n' "$key" "$val" >>"$state.tmp"
  mv "$state.tmp" "$state"
}
load_state() {
  RUN='' UNDERLAY='' K8S=0 NEXT=1 AGENT_CMD='' NSDIR_MOUNTED=0 API_PORT='' AGENT_HOST=0 CONTAINERS=0 PODS=''
  # shellcheck disable=SC1090
  [[ -f $state ]] && source "$state"
  NODES=()
  if [[ -f $labdir/nodes ]]; then
    local name _rest
    while read -r name _rest; do [[ -n $name ]] && NODES+=("$name"); done <"$labdir/nodes"
  fi
}
node_field() { # node_field NODE COLUMN (2=index 3=underlay ip 4=pod cidr)
  awk -v n="$1" -v c="$2" '$1 == n { print $c }' "$labdir/nodes"
}

kubectl_() {
  local bin=${KUBECTL:-}
  if [[ -z $bin ]]; then
    bin=$(bash "$repo/hack/kube/build.sh")/kubectl || die "could not find kubectl (hack/kube/build.sh failed)"
  fi
  "$bin" --kubeconfig "$kubeconfig" --request-timeout=15s "$@"
}

# --- processes ---------------------------------------------------------------------------------------------
# A recorded process is "pid starttime node label": the start time guards against killing a recycled PID.
proc_start() { awk '{ print $22 }' "/proc/$1/stat" 2>/dev/null || true; }

record_pid() { echo "$1 $(proc_start "$1") $2 $3" >>"$labdir/pids"; }

# start_in_node NODE LABEL CMD... : the hook agents use. Runs CMD inside NODE in its own session, output to
# <labdir>/<node>.log, PID recorded so `down` stops exactly this process.
# With --agent-host the agent's command runs in the host's namespaces (it starts a container in the node).
start_in_node() {
  local node=$1 label=$2
  shift 2
  local log=$labdir/$node.log
  local enter=(nsenter --net="/run/netns/$node" --mount="$nsdir/$node.mnt" --wd="$PWD" --)
  [[ $label == agent ]] && ((AGENT_HOST)) && enter=()
  echo "--- $(date -u +%FT%TZ) start $label: $*" >>"$log"
  NODE_NAME=$node SEALMESH_LAB_RUN=$RUN KUBECONFIG=$kubeconfig LAB_NETNS=/run/netns/$node \
    LAB_NODE_ROOT=$labdir/root/$node SEALMESH_LAB_DIR=$labdir \
    setsid "${enter[@]}" "$@" </dev/null >>"$log" 2>&1 &
  record_pid $! "$node" "$label"
  say "started $label in $node (pid $!, log $log)"
}

start_host() { # start_host LABEL CMD... : a helper process in the host namespaces (the API relay)
  local label=$1
  shift
  setsid "$@" </dev/null >>"$labdir/host.log" 2>&1 &
  record_pid $! host "$label"
}

kill_recorded() {
  [[ -f $labdir/pids ]] || return 0
  local pid start node label pids=()
  while read -r pid start node label; do
    [[ -n $pid && -d /proc/$pid && $(proc_start "$pid") == "$start" ]] || continue
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    pids+=("$pid")
  done <"$labdir/pids"
  wait_gone "${pids[@]}"
}

# alive PID: exists and is not a zombie (reparented processes may wait a while for init to reap them).
alive() {
  local st
  st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $st && $st != Z ]]
}

# wait_gone PID... : up to 5 s for a clean exit, then SIGKILL.
wait_gone() {
  local pid i
  for ((i = 0; i < 50; i++)); do
    local alive=0
    for pid in "$@"; do alive "$pid" && alive=1; done
    ((alive)) || return 0
    sleep 0.1
  done
  for pid in "$@"; do alive "$pid" && kill -KILL "$pid" 2>/dev/null; done
  return 0
}

ns_sysctl() { # NETNS KEY VALUE: /proc/sys/net is the one of the namespace the writer is in
  nsenter --net="/run/netns/$1" -- /bin/sh -c 'echo "$2" >"/proc/sys/$1"' sh "$2" "$3"
}

# --- nodes -------------------------------------------------------------------------------------------------
create_node() { # create_node INDEX
  local i=$1 node=lab-$RUN-n$1
  local ip=198.18.0.$((i + 1)) pod=10.244.$i.0/24
  ((i <= 250)) || die "at most 250 nodes"
  echo "$node $i $ip $pod" >>"$labdir/nodes"
  NODES+=("$node")

  ip netns add "$node"
  ip -n "$node" link set lo up
  # Veth created from inside the underlay namespace straight into the node: nothing in the host's namespace.
  ip -n "$UNDERLAY" link add "n$i" type veth peer name eth0 netns "$node"
  ip -n "$UNDERLAY" link set "n$i" master br0 up
  ns_sysctl "$node" net/ipv6/conf/eth0/disable_ipv6 1 # only on eth0: the overlay may be IPv6
  ip -n "$node" addr add "$ip/24" dev eth0
  ip -n "$node" link set eth0 up
  # Every real node has a default route; the underlay router sends pod-CIDR traffic on to the right node.
  ip -n "$node" route add default via 198.18.0.1 dev eth0
  ip -n "$UNDERLAY" route replace "$pod" via "$ip" dev br0
  # The stand-in pod: the node's first pod address, on lo (/32: a /24 on lo would make the whole pod CIDR
  # local; these kernels have no dummy interfaces).
  ip -n "$node" addr add "10.244.$i.1/32" dev lo

  : >"$nsdir/$node.mnt"
  mkdir -p "$wgrun" "$labdir/root/$node$wgrun"
  # The new mount namespace is a slave copy of the host's: /run/netns changes still reach it, nothing it
  # mounts goes back. Inside it: drop the copies of other nodes' namespace files, the node's own directory
  # for wireguard-go's sockets, sysfs of this node's network namespace.
  nsenter --net="/run/netns/$node" -- unshare --mount="$nsdir/$node.mnt" --propagation slave -- /bin/sh -ec '
    umount -l "$1" 2>/dev/null || true
    mount --bind "$3" "$2"
    umount -l /sys
    mount -t sysfs sealmesh-lab-sys /sys
  ' sh "$nsdir" "$wgrun" "$labdir/root/$node$wgrun"

  if ((K8S)); then create_node_object "$node" "$ip" "$pod"; fi
  if ((K8S)) && [[ -n $API_PORT ]]; then
    start_in_node "$node" apiserver-relay socat \
      "TCP-LISTEN:$API_PORT,bind=127.0.0.1,fork,reuseaddr" "UNIX-CONNECT:$labdir/apiserver.sock"
  fi
  if command -v socat >/dev/null; then
    start_in_node "$node" standin-pod socat "TCP-LISTEN:8080,bind=10.244.$i.1,fork,reuseaddr" \
      "SYSTEM:echo standin-$node"
  fi
  if [[ -n $AGENT_CMD ]]; then start_in_node "$node" agent bash -c "$AGENT_CMD"; fi
  state_set NEXT $((i + 1))
}

create_node_object() { # NODE IP PODCIDR
  local node=$1 ip=$2 pod=$3
  kubectl_ create -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $node
  labels:
    sealmesh.io/lab: "$RUN"
    kubernetes.io/hostname: $node
    kubernetes.io/os: linux
$(for l in "${EXTRA_LABELS[@]}"; do printf '    %s: "%s"\n' "${l%%=*}" "${l#*=}"; done)
spec:
  podCIDR: $pod
  podCIDRs: [$pod]
EOF
  # status is a subresource: create ignores it, so the addresses go in with a second request.
  kubectl_ patch node "$node" --subresource=status --type=merge \
    -p "{\"status\":{\"addresses\":[{\"type\":\"InternalIP\",\"address\":\"$ip\"},{\"type\":\"Hostname\",\"address\":\"$node\"}]}}" \
    >/dev/null
}

# The API server listens on the host's 127.0.0.1, which a node's network namespace cannot reach. A unix socket
# crosses network namespaces, so: host relay unix socket -> 127.0.0.1:PORT, and inside every node
# 127.0.0.1:PORT -> unix socket. The kubeconfig (and its serving certificate for 127.0.0.1) stays valid.
start_api_relay() {
  local server
  server=$(sed -n 's/^ *server: *//p' "$kubeconfig" | head -n1)
  if [[ $server =~ ^https?://(127\.0\.0\.1|localhost):([0-9]+)/?$ ]]; then
    API_PORT=${BASH_REMATCH[2]}
    state_set API_PORT "$API_PORT"
    command -v socat >/dev/null || die "socat missing: run hack/install-deps.sh"
    start_host apiserver-relay socat "UNIX-LISTEN:$labdir/apiserver.sock,fork,mode=600" "TCP:127.0.0.1:$API_PORT"
  else
    say "API server at '$server' is not on 127.0.0.1: no relay into the nodes"
  fi
}

# Containers this lab started (the agents', a pod's): removed before anything else, so a restart policy
# never brings one back while its namespace goes.
remove_containers() {
  ((CONTAINERS)) && [[ -n $RUN ]] && command -v podman >/dev/null || return 0
  local ids
  ids=$(podman ps -aq --filter "label=sealmesh.io/lab=$RUN" 2>/dev/null) || true
  [[ -z $ids ]] || podman rm -f -t 3 $ids >/dev/null 2>&1 || true
}

cmd_pod() {
  local name=${1:-}
  [[ $name =~ ^[a-z0-9-]+$ ]] || die "usage: hack/lab.sh pod NAME (lower-case letters, digits, -)"
  need_root
  load_state
  [[ -n $RUN ]] || die "pod: no lab is running (hack/lab.sh up --nodes N)"
  local ns=lab-$RUN-$name
  state_set CONTAINERS 1
  state_set PODS "$PODS $ns"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  if [[ -n $API_PORT ]]; then
    echo "--- $(date -u +%FT%TZ) start apiserver-relay in pod $name" >>"$labdir/$name.log"
    setsid nsenter --net="/run/netns/$ns" -- socat "TCP-LISTEN:$API_PORT,bind=127.0.0.1,fork,reuseaddr" \
      "UNIX-CONNECT:$labdir/apiserver.sock" </dev/null >>"$labdir/$name.log" 2>&1 &
    record_pid $! "$name" apiserver-relay
  fi
  echo "/run/netns/$ns"
}

# --- commands ----------------------------------------------------------------------------------------------
cmd_up() {
  local n=0 k8s=1 agent='' agent_host=0
  while (($#)); do
    case $1 in
      --nodes) n=${2:?--nodes needs a number}; shift 2 ;;
      --nodes=*) n=${1#*=}; shift ;;
      --no-k8s) k8s=0; shift ;;
      --agent-cmd) agent=${2:?--agent-cmd needs a command}; shift 2 ;;
      --agent-cmd=*) agent=${1#*=}; shift ;;
      --agent-host) agent_host=1; shift ;;
      *) die "up: unknown argument $1" ;;
    esac
  done
  [[ $n =~ ^[0-9]+$ ]] && ((n >= 1)) || die "up: --nodes N (N >= 1) is required"
  need_root
  if ((k8s)); then [[ -f $kubeconfig ]] || die "no kubeconfig at $kubeconfig: run hack/cluster.sh up, or pass --no-k8s"; fi
  if [[ -e $state || -e $labdir/nodes ]]; then
    say "removing the previous lab first"
    cmd_down
  fi
  local t0=$SECONDS
  mkdir -p "$labdir" "$nsdir"
  load_state
  RUN=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
  UNDERLAY=lab-$RUN-underlay K8S=$k8s AGENT_CMD=$agent AGENT_HOST=$agent_host CONTAINERS=$agent_host
  state_set RUN "$RUN"
  state_set UNDERLAY "$UNDERLAY"
  state_set K8S "$K8S"
  state_set AGENT_CMD "$AGENT_CMD"
  state_set AGENT_HOST "$AGENT_HOST"
  state_set CONTAINERS "$CONTAINERS"
  state_set KUBECONFIG_PATH "$kubeconfig"
  # A failure half-way leaves the state behind; `down` (or the next `up`) removes it.
  trap 'rc=$?; ((rc == 0)) || echo "lab.sh: up failed; hack/lab.sh down removes what was made" >&2' EXIT

  mount --bind "$nsdir" "$nsdir"
  state_set NSDIR_MOUNTED 1
  mount --make-private "$nsdir"

  ip netns add "$UNDERLAY" # also makes /run/netns a shared mount, before any node copies it
  ip -n "$UNDERLAY" link set lo up
  # The underlay carries IPv4 only: without IPv6 nothing (router solicitations, MLD) chatters on it, so a
  # capture on br0 shows exactly the traffic between nodes (and ARP).
  ns_sysctl "$UNDERLAY" net/ipv6/conf/default/disable_ipv6 1
  ns_sysctl "$UNDERLAY" net/ipv6/conf/all/disable_ipv6 1
  # br0 only forwards. With multicast snooping it joins 224.0.0.106 (router discovery) and sends IGMP reports
  # from 0.0.0.0, which a capture would have to explain away.
  ip -n "$UNDERLAY" link add br0 type bridge mcast_snooping 0
  ip -n "$UNDERLAY" link set br0 multicast off up
  # The underlay router every node's default route points at. It forwards between nodes on the same bridge,
  # so it must not send ICMP redirects (they would be noise in every capture).
  ip -n "$UNDERLAY" addr add 198.18.0.1/24 dev br0
  ns_sysctl "$UNDERLAY" net/ipv4/conf/all/send_redirects 0
  ns_sysctl "$UNDERLAY" net/ipv4/conf/br0/send_redirects 0
  ns_sysctl "$UNDERLAY" net/ipv4/ip_forward 1

  if ((K8S)); then start_api_relay; fi
  local i
  for ((i = 1; i <= n; i++)); do create_node "$i"; done
  say "up: $n nodes (run $RUN) in $((SECONDS - t0))s"
  printf '%s\n' "${NODES[@]}"
}

cmd_add_node() {
  need_root
  load_state
  [[ -n $RUN ]] || die "add-node: no lab is running (hack/lab.sh up --nodes N)"
  # --label K=V: on the Node object from its creation, as a kubelet's --node-labels (an overlay's selector
  # matches the node from its first moment)
  while (($#)); do
    case $1 in
      --label) [[ ${2:-} =~ ^[A-Za-z0-9./_-]+=[A-Za-z0-9._-]*$ ]] || die "add-node: --label K=V, got '${2:-}'"
        EXTRA_LABELS+=("$2"); shift 2 ;;
      *) die "add-node: unknown argument $1" ;;
    esac
  done
  local i=$NEXT
  create_node "$i"
  echo "lab-$RUN-n$i"
}

cmd_down() {
  need_root
  load_state
  [[ -d $labdir ]] || return 0
  local t0=$SECONDS
  # the recorded processes first: an agent's start command still running would start a container after
  kill_recorded
  remove_containers
  # Whatever still runs inside a node's network namespace was started in it through this lab (wireguard-go
  # daemonizes, so its PID is never recorded): stop it before the namespace goes, all nodes at once since
  # wireguard-go takes a second or two to wind down.
  local node pids=()
  for node in "${NODES[@]}"; do
    [[ -e /run/netns/$node ]] && mapfile -t -O "${#pids[@]}" pids < <(ip netns pids "$node" 2>/dev/null)
  done
  if ((${#pids[@]})); then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait_gone "${pids[@]}"
  fi
  for node in "${NODES[@]}"; do
    [[ -e /run/netns/$node ]] && { ip netns del "$node" 2>/dev/null || true; }
    [[ -e $nsdir/$node.mnt ]] && { umount "$nsdir/$node.mnt" 2>/dev/null || umount -l "$nsdir/$node.mnt" 2>/dev/null || true; }
  done
  local pod
  for pod in $PODS; do [[ -e /run/netns/$pod ]] && { ip netns del "$pod" 2>/dev/null || true; }; done
  if [[ -n $UNDERLAY && -e /run/netns/$UNDERLAY ]]; then ip netns del "$UNDERLAY" 2>/dev/null || true; fi
  if ((NSDIR_MOUNTED)); then umount "$nsdir" 2>/dev/null || umount -l "$nsdir" 2>/dev/null || true; fi

  if ((K8S)) && [[ -n $RUN ]]; then
    [[ -n ${KUBECONFIG_PATH:-} ]] && kubeconfig=$KUBECONFIG_PATH
    # An unreachable API server must not keep the namespaces alive: say what is left and carry on.
    if ! kubectl_ delete nodes -l "sealmesh.io/lab=$RUN" --ignore-not-found --wait=false >/dev/null 2>&1; then
      echo "lab.sh: could not delete the Node objects of run $RUN (API server down?);" \
        "later: kubectl delete nodes -l sealmesh.io/lab=$RUN" >&2
    fi
  fi
  rm -rf "$labdir"
  say "down: removed run ${RUN:-?} in $((SECONDS - t0))s"
}

cmd_status() {
  load_state
  if [[ -z $RUN ]]; then
    echo "no lab (state dir $labdir)"
    return 0
  fi
  echo "run $RUN, underlay namespace $UNDERLAY, state dir $labdir, k8s $K8S"
  local node
  for node in "${NODES[@]}"; do
    local ns=missing links=''
    if [[ -e /run/netns/$node ]]; then
      ns=ok
      links=$(ip -n "$node" -br link show 2>/dev/null | awk '{ printf "%s%s(%s)", sep, $1, $2; sep=" " }')
    fi
    printf '%-22s %-14s %-15s netns:%s  %s\n' "$node" "$(node_field "$node" 3)" "$(node_field "$node" 4)" "$ns" "$links"
  done
  if [[ -f $labdir/pids ]]; then
    local pid start nd label
    while read -r pid start nd label; do
      local st=exited
      alive "$pid" && [[ $(proc_start "$pid") == "$start" ]] && st=running
      printf 'process %-8s %-22s %-16s %s\n' "$pid" "$nd" "$label" "$st"
    done <"$labdir/pids"
  fi
}

cmd_exec() {
  local node=${1:-}
  shift || true
  [[ ${1:-} == -- ]] && shift
  [[ -n $node && $# -gt 0 ]] || die "usage: hack/lab.sh exec NODE -- CMD..."
  load_state
  [[ " ${NODES[*]-} " == *" $node "* ]] || die "exec: no node $node in this lab (hack/lab.sh nodes)"
  exec nsenter --net="/run/netns/$node" --mount="$nsdir/$node.mnt" --wd="$PWD" -- "$@"
}

cmd_start() {
  local node=${1:-} label=${2:-}
  shift 2 || true
  [[ ${1:-} == -- ]] && shift
  [[ -n $node && -n $label && $# -gt 0 ]] || die "usage: hack/lab.sh start NODE LABEL -- CMD..."
  load_state
  [[ " ${NODES[*]-} " == *" $node "* ]] || die "start: no node $node in this lab"
  start_in_node "$node" "$label" "$@"
}

sub=${1:-}
shift || true
case $sub in
  up) cmd_up "$@" ;;
  add-node) cmd_add_node "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  nodes) load_state; ((${#NODES[@]} == 0)) || printf "%s\n" "${NODES[@]}" ;;
  info) [[ -f $labdir/nodes ]] && cat "$labdir/nodes" ;;
  exec) cmd_exec "$@" ;;
  start) cmd_start "$@" ;;
  pod) cmd_pod "$@" ;;
  *) die "usage: hack/lab.sh up --nodes N [--no-k8s] [--agent-cmd CMD] [--agent-host] | add-node | down | status | nodes | info | exec NODE -- CMD | start NODE LABEL -- CMD" ;;
esac
