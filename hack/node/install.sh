#!/usr/bin/env bash
# Installs the Node.js release pinned in hack/node/VERSION (the only place the version is written; the
# Dockerfile's base images and package.json's engines must agree, which a unit test checks) and prints the
# directory holding its `node`. Node.js comes from the npm registry's node-linux-<arch> package, verified
# against the integrity pinned below, and is cached outside the repo in
# ${SEALMESH_CACHE:-~/.cache/sealmesh}/node-v<version>-<arch>. A second call does nothing. Needs npm (any
# Node.js that runs npm will do: this machine's own Node.js 20 is enough to fetch Node.js 24).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version=$(tr -d '[:space:]' <"$here/VERSION")
case $(uname -m) in
  x86_64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *)
    echo "node/install.sh: no pinned Node.js for $(uname -m)" >&2
    exit 1
    ;;
esac
# npm's integrity (sha512 of the package tarball) per "<version>-<arch>"; a new VERSION needs new lines here.
declare -A integrity=(
  [24.22.3-x64]=sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==
  [24.22.3-arm64]=sha512-IZx0J52/1NDwAsY2iyWR9nlPIYuYviTWetjj8+ElvYQh2+XRhLfCfkbFEF/2O5vGI2hcUbyPNHV+nz342FbJXw==
)
want=${integrity[$version-$arch]:-}
[[ -n $want ]] || {
  echo "node/install.sh: no integrity pinned for Node.js $version on $arch (hack/node/install.sh)" >&2
  exit 1
}
dir=${SEALMESH_CACHE:-$HOME/.cache/sealmesh}/node-v$version-$arch
if [[ -x $dir/bin/node ]]; then
  echo "$dir/bin"
  exit 0
fi
command -v npm >/dev/null || {
  echo "node/install.sh: npm is needed to fetch Node.js $version" >&2
  exit 1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "node/install.sh: fetching Node.js $version ($arch)" >&2
(cd "$tmp" && npm pack --silent "node-linux-$arch@$version" >/dev/null)
tarball=$(echo "$tmp"/node-linux-"$arch"-*.tgz)
got=sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)
[[ $got == "$want" ]] || {
  echo "node/install.sh: node-linux-$arch@$version does not match its pinned integrity" >&2
  exit 1
}
mkdir -p "$tmp/x"
tar -xzf "$tarball" -C "$tmp/x" package/bin/node package/LICENSE
"$tmp/x/package/bin/node" -e "process.exit(process.version === 'v$version' ? 0 : 1)" || {
  echo "node/install.sh: the fetched node does not report v$version" >&2
  exit 1
}
mkdir -p "$(dirname "$dir")"
rm -rf "$dir.partial" && mv "$tmp/x/package" "$dir.partial" && mv "$dir.partial" "$dir"
echo "$dir/bin"
