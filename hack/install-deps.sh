#!/usr/bin/env bash
# Installs the Debian packages the node lab and the WireGuard device layer need. Idempotent and quiet when
# everything is present: apt is only touched when a command or package is missing, so CI and `npm test` can
# call this on every run.
#
#   wireguard-tools  wg                      iproute2     ip (netns, veth, bridge, routes)
#   wireguard-go     userspace WireGuard     tcpdump      proof that only WireGuard UDP crosses the underlay
#   nftables         nft (fail-closed rules) iputils-ping ping over the tunnel
#   util-linux       nsenter, unshare (per-node mount namespaces)
#   socat            relays the API server on 127.0.0.1 into lab nodes (over a unix socket)
#
# With --image also what builds and runs the image (hack/image/build.sh, the lab's container mode):
#   podman  runc  (the runtime podman is run with)  debootstrap  (the base image's root filesystem)
set -euo pipefail

# command -> the Debian package that provides it
declare -A wanted=(
  [wg]=wireguard-tools
  [wireguard-go]=wireguard-go
  [ip]=iproute2
  [tcpdump]=tcpdump
  [nft]=nftables
  [ping]=iputils-ping
  [nsenter]=util-linux
  [unshare]=util-linux
  [socat]=socat
)
if [[ ${1:-} == --image ]]; then
  wanted[podman]=podman
  wanted[runc]=runc
  wanted[debootstrap]=debootstrap
fi

missing=()
for cmd in "${!wanted[@]}"; do
  pkg=${wanted[$cmd]}
  # wireguard-go lives in /usr/bin but nft/tcpdump in /usr/sbin, which a non-root PATH may lack.
  if command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd || -x /sbin/$cmd ]]; then
    continue
  fi
  [[ " ${missing[*]-} " == *" $pkg "* ]] || missing+=("$pkg")
done

((${#missing[@]} == 0)) && exit 0

if ((EUID != 0)); then
  echo "install-deps.sh: missing Debian packages: ${missing[*]}" >&2
  echo "install-deps.sh: run as root (or: sudo apt-get install -y --no-install-recommends ${missing[*]})" >&2
  exit 1
fi
command -v apt-get >/dev/null || {
  echo "install-deps.sh: apt-get not found; install these packages by hand: ${missing[*]}" >&2
  exit 1
}

echo "install-deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "install-deps.sh: apt-get failed for: ${missing[*]}" >&2
  exit 1
fi
