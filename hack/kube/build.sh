#!/usr/bin/env bash
# Builds kube-apiserver, kubectl and etcd from the Kubernetes Go modules at the release pinned in
# hack/kube/VERSION (the only place the version is written) and caches them outside the repo, in
# ${SEALMESH_CACHE:-~/.cache/sealmesh}/<version>/bin. A second call with the same version does nothing.
#
# k8s.io/kubernetes is not meant to be a dependency: its go.mod points its k8s.io/* staging modules at
# ./staging/..., which does not exist in the module zip. The generated go.mod maps each of them to the
# published v0.<minor>.<patch> release instead, derived from the upstream go.mod so no list is kept here.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version=$(tr -d '[:space:]' <"$here/VERSION")
cache=${SEALMESH_CACHE:-$HOME/.cache/sealmesh}/$version
bin=$cache/bin
if [[ -x $bin/kube-apiserver && -x $bin/etcd && -x $bin/kubectl ]]; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null || { echo "build.sh: Go is required to build the control plane" >&2; exit 1; }
staging=v0.${version#v1.}
src=$cache/src
rm -rf "$src" && mkdir -p "$src/etcd" "$bin"
cp "$here/etcd/main.go" "$src/etcd/main.go"
upstream=$(cd "$src" && go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
[[ -f $upstream ]] || { echo "build.sh: could not download k8s.io/kubernetes@$version" >&2; exit 1; }
{
  echo "module sealmesh.io/hack/kube"
  echo
  grep -m1 '^go ' "$upstream"
  echo
  echo "require k8s.io/kubernetes $version"
  echo
  echo "replace ("
  sed -n "s#^\t\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\t\1 => \1 $staging#p" "$upstream"
  echo ")"
} >"$src/go.mod"
cat >"$src/tools.go" <<GO
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
cd "$src"
echo "build.sh: resolving modules for Kubernetes $version" >&2
go mod tidy >&2
echo "build.sh: building kube-apiserver, kubectl, etcd (first build takes a while)" >&2
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/client-go/pkg/version.gitVersion=$version" \
  -o "$bin/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl ./etcd >&2
echo "$bin"
