#!/usr/bin/env bash
# Builds the base image the Dockerfile starts FROM (node:<version>-bookworm-slim) on this machine, where no
# registry serves images: a minimal Debian bookworm root filesystem (debootstrap --variant=minbase, from the
# Debian mirror this machine's apt already uses, with its apt sources), the pinned Node.js
# (hack/node/install.sh's cached binary, hack/node/VERSION) in /usr/local/bin, and npm (pinned below, checked
# against its integrity) in /usr/local/lib/node_modules/npm, as the official image lays them out. The root
# filesystem is cached as a tarball outside the repo, keyed by the content that makes it
# (${SEALMESH_CACHE:-~/.cache/sealmesh}/image/base-<key>.tar), and imported into podman's storage with the
# label sealmesh.io/base-key=<key>: a second call with the same inputs does nothing. Prints the image name.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
version=$(tr -d '[:space:]' <"$root/hack/node/VERSION")
image=node:$version-bookworm-slim
suite=bookworm
# npm as the base image carries it (the Dockerfile's build stage runs `npm ci`), from the npm registry's
# `npm` package, checked against this integrity.
npm_version=11.19.1
npm_integrity=sha512-ztsxKxt/kkIaAs+2i0GU6I+DRmUdrNasxTZKJe9TCdSjKxlhah/4r/hl5ygMD6XAg1qZ9c2TNomR4qgOydp10g==
say() { echo "image/base.sh: $*" >&2; }
die() {
  say "$*"
  exit 1
}

node_bin=$(bash "$root/hack/node/install.sh")/node
# A machine whose TLS is intercepted trusts an extra CA through NODE_EXTRA_CA_CERTS or npm's `cafile` (npm
# and node here do): the base carries that trust as NODE_EXTRA_CA_CERTS, or `npm ci` in the Dockerfile's
# build stage cannot reach the registry. Without either the base has no extra trust.
extra_ca=${NODE_EXTRA_CA_CERTS:-}
if [[ -z $extra_ca ]]; then
  extra_ca=$(npm config get cafile 2>/dev/null || true)
  [[ -s $extra_ca ]] || extra_ca=$(sed -n 's/^cafile *= *//p' /etc/npmrc /usr/etc/npmrc 2>/dev/null | head -n1)
fi
[[ -n $extra_ca && -s $extra_ca ]] || extra_ca=''
cache=${SEALMESH_CACHE:-$HOME/.cache/sealmesh}/image
key=$(
  {
    sha256sum "$here/base.sh" "$node_bin" ${extra_ca:+"$extra_ca"} | cut -d' ' -f1
    echo "$suite $npm_version $npm_integrity $(uname -m)"
  } | sha256sum | cut -c1-16
)
if [[ $(podman image inspect "$image" --format '{{index .Labels "sealmesh.io/base-key"}}' 2>/dev/null) == "$key" ]]; then
  say "$image is current (key $key)"
  echo "$image"
  exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/base.lock"
flock 9
tarball=$cache/base-$key.tar
if [[ ! -s $tarball ]]; then
  for c in debootstrap podman; do command -v "$c" >/dev/null || die "$c missing: run hack/install-deps.sh --image"; done
  # The mirror this machine's apt uses (its deb822 or one-line sources), so nothing here names one.
  mirror=$(
    {
      sed -n 's/^URIs:[[:space:]]*\(\S*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null || true
      sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\(\S*\)[[:space:]]\+'"$suite"'[[:space:]].*/\2/p' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true
    } | { grep -v -- '-security' || true; } | head -n1
  )
  [[ -n $mirror ]] || die "no Debian mirror found in this machine's apt sources"
  tmp=$(mktemp -d "$cache/base-build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  rootfs=$tmp/rootfs
  say "debootstrap $suite (minbase) into $rootfs (first build, a few minutes)"
  t0=$SECONDS
  if ! debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
    tail -n 20 "$tmp/debootstrap.log" >&2
    die "debootstrap failed (log above)"
  fi
  # The apt sources of this machine (updates and security as well as the release), as the base image has.
  if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
    rm -f "$rootfs/etc/apt/sources.list"
    for f in /etc/apt/sources.list.d/*.sources; do cp "$f" "$rootfs/etc/apt/sources.list.d/"; done
  elif [[ -f /etc/apt/sources.list ]]; then
    cp /etc/apt/sources.list "$rootfs/etc/apt/sources.list"
  fi
  install -m 0755 "$node_bin" "$rootfs/usr/local/bin/node"
  if [[ -n $extra_ca ]]; then install -D -m 0644 "$extra_ca" "$rootfs/usr/local/share/sealmesh/extra-ca.crt"; fi
  (cd "$tmp" && npm pack --silent "npm@$npm_version" >/dev/null)
  got=sha512-$(openssl dgst -sha512 -binary "$tmp/npm-$npm_version.tgz" | base64 -w0)
  [[ $got == "$npm_integrity" ]] || die "npm@$npm_version does not match its pinned integrity"
  mkdir -p "$rootfs/usr/local/lib/node_modules/npm"
  tar -xzf "$tmp/npm-$npm_version.tgz" -C "$rootfs/usr/local/lib/node_modules/npm" --strip-components=1
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  # What the slim images leave out: downloaded packages, package lists, documentation.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
  chroot "$rootfs" /usr/local/bin/node -e "process.exit(process.version === 'v$version' ? 0 : 1)" ||
    die "node in the root filesystem does not report v$version"
  tar --numeric-owner -C "$rootfs" -cf "$tarball.partial" .
  mv "$tarball.partial" "$tarball"
  # earlier bases (other keys) are not used again
  find "$cache" -maxdepth 1 -name 'base-*.tar' ! -name "base-$key.tar" -delete
  say "root filesystem built in $((SECONDS - t0)) s ($(du -h "$tarball" | cut -f1)), cached as $tarball"
fi
ca_env=()
if [[ -n $extra_ca ]]; then ca_env=(--change "ENV NODE_EXTRA_CA_CERTS=/usr/local/share/sealmesh/extra-ca.crt"); fi
podman import "${ca_env[@]}" \
  --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change "ENV NODE_VERSION=$version" \
  --change 'CMD ["node"]' \
  --change "LABEL sealmesh.io/base-key=$key" \
  "$tarball" "$image" >/dev/null
say "imported $image (key $key)"
echo "$image"
