#!/usr/bin/env bash
# helm at the version pinned in hack/tools/VERSIONS, built from its Go module on first use and cached outside
# the repo (hack/tools/build.sh): `bash hack/helm.sh lint charts/sealmesh`.
set -euo pipefail
helm=$(bash "$(dirname "${BASH_SOURCE[0]}")/tools/build.sh" helm)
exec "$helm" "$@"
