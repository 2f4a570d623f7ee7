#!/usr/bin/env bash
# `npm test`: bootstrap what is missing (the pinned Node.js among it), then run unit, integration and e2e tests in one jest run.
# The integration and e2e projects start the local control plane (hack/cluster.sh) in their globalSetup
# and stop it afterwards unless it was already running.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
source hack/node/env.sh # the pinned Node.js (hack/node/VERSION) runs the tests and everything they start
bash hack/bootstrap.sh
exec node --experimental-vm-modules --no-warnings=ExperimentalWarning node_modules/jest/bin/jest.js --runInBand "$@"
