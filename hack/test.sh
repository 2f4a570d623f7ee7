#!/usr/bin/env bash
# `npm test`: bootstrap what is missing, then run unit, integration and e2e tests in one jest run.
# The integration and e2e projects start the local control plane (hack/cluster.sh) in their globalSetup
# and stop it afterwards unless it was already running.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash hack/bootstrap.sh
exec node --experimental-vm-modules --no-warnings=ExperimentalWarning node_modules/jest/bin/jest.js --runInBand "$@"
