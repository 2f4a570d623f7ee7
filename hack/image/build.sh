#!/usr/bin/env bash
# `npm run image`: builds sealmesh's image from the Dockerfile at the repository root, unchanged, with podman
# (runc: crun refuses this kernel's hybrid cgroups), as `sealmesh:latest` (SEALMESH_IMAGE moves the tag).
# The base the Dockerfile starts FROM comes from hack/image/base.sh (built here, no registry involved;
# --pull=never keeps it so). podman's layer cache is keyed by content: a second build with the same sources
# takes seconds. Installs podman, runc and debootstrap first when they are missing (hack/install-deps.sh).
# Prints the image name; the build's own output goes to stderr.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
image=${SEALMESH_IMAGE:-sealmesh:latest}
t0=$SECONDS
bash hack/install-deps.sh --image
bash hack/image/base.sh >/dev/null
t1=$SECONDS
# One build at a time (a demo and a test may both ask); --network host: the build's RUN steps reach the
# package registries the way this machine does, with no bridge made on the host.
exec 9>"${TMPDIR:-/tmp}/sealmesh-image.lock"
flock 9
podman --runtime runc build --pull=never --network host \
  --ulimit nofile=16384:16384 --ulimit nproc=4096:4096 -t "$image" . >&2
echo "image/build.sh: $image built in $((SECONDS - t0)) s (base $((t1 - t0)) s, Dockerfile $((SECONDS - t1)) s)" >&2
echo "$image"
