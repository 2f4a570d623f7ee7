#!/usr/bin/env bash
# Builds one Go tool listed in hack/tools/VERSIONS (helm, promtool) from its module at the pinned version and
# caches the binary outside the repo, like hack/kube/build.sh does for the control plane. Prints the binary's
# path; a second call with the same version does nothing.
#
#   hack/tools/build.sh helm        -> ~/.cache/sealmesh/tools/helm-v3.22.0/helm
#   hack/tools/build.sh promtool    -> ~/.cache/sealmesh/tools/promtool-v0.316.0/promtool
#
# `go install pkg@version` builds with the module's own go.mod and go.sum (the versions its authors tested),
# not with anything resolved here, and needs no go.mod of ours.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
name=${1:?usage: build.sh <tool name from hack/tools/VERSIONS>}
read -r pkg version < <(awk -v n="$name" '$1 == n { print $2, $3 }' "$here/VERSIONS")
[[ -n ${pkg:-} && -n ${version:-} ]] || { echo "build.sh: $name is not in hack/tools/VERSIONS" >&2; exit 1; }
dir=${SEALMESH_CACHE:-$HOME/.cache/sealmesh}/tools/$name-$version
if [[ -x $dir/$name ]]; then
  echo "$dir/$name"
  exit 0
fi
command -v go >/dev/null || { echo "build.sh: Go is required to build $name" >&2; exit 1; }
# One build at a time (bootstrap and a test may both ask): the second waits, then finds the binary.
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
if [[ -x $dir/$name ]]; then
  echo "$dir/$name"
  exit 0
fi
echo "build.sh: building $name $version (first build takes a while)" >&2
tmp=$dir.tmp.$$
rm -rf "$tmp" && mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
ldflags="-s -w"
if [[ $name == helm ]]; then
  # What helm's Makefile stamps: its own version, and the Kubernetes version `helm template` and `helm lint`
  # assume without a cluster (1.<client-go minor>; unstamped it is 1.20, below the chart's kubeVersion).
  gomod=$(cd "$tmp" && go mod download -json "helm.sh/helm/v3@$version" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
  minor=$(sed -n 's/^\tk8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$gomod")
  [[ -n $minor ]] || { echo "build.sh: no k8s.io/client-go in helm's go.mod" >&2; exit 1; }
  ldflags+=" -X helm.sh/helm/v3/internal/version.version=$version"
  for pkg_ in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg_.k8sVersionMajor=1 -X $pkg_.k8sVersionMinor=$minor"
  done
fi
# promtool --version reads what Prometheus's release build stamps (the module version here: v0.3xx.y is 3.xx.y).
tags=
if [[ $name == promtool ]]; then
  ldflags+=" -X github.com/prometheus/common/version.Version=$version"
  # Without the cloud service-discovery plugins (AWS, Azure, GCE, ...: Prometheus's own build tag), which the
  # rule checks never use and which were most of the build: about 16 CPU-minutes with them.
  tags=remove_all_sd
fi
GOBIN=$tmp CGO_ENABLED=0 GOFLAGS=-buildvcs=false go install -trimpath -tags "$tags" -ldflags "$ldflags" "$pkg@$version" >&2
rm -rf "$dir" && mv "$tmp" "$dir"
echo "$dir/$name"
