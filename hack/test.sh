#!/usr/bin/env bash
# `npm test`: bootstrap what is missing (the pinned Node.js among it) and build the image, then run unit,
# integration and e2e tests in one jest run.
# The integration and e2e projects start the local control plane (hack/cluster.sh) in their globalSetup
# and stop it afterwards unless it was already running.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
source hack/node/env.sh # the pinned Node.js (hack/node/VERSION) runs the tests and everything they start
bash hack/bootstrap.sh
# The image the container-mode e2e runs (test/e2e/container*.test.ts): built here, outside any test's timeout
# (a new machine installs podman and makes the base first; a warm build takes seconds).
bash hack/image/build.sh >/dev/null
exec node --experimental-vm-modules --no-warnings=ExperimentalWarning node_modules/jest/bin/jest.js --runInBand "$@"
