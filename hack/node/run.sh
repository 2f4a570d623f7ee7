#!/usr/bin/env bash
# hack/node/run.sh CMD...: runs CMD with the pinned Node.js first on PATH (the npm scripts use it).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec "$@"
