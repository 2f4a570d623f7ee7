#!/usr/bin/env bash
# Brings a fresh machine to the point where tests and the demo can run: Debian packages for the lab,
# npm dependencies when node_modules is missing or older than the lockfile, and the control-plane binaries
# (built once per pinned Kubernetes version and cached outside the repo), and helm and promtool for the chart
# and alert-rule tests (hack/tools/build.sh, cached the same way). Each step is a no-op when done.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [[ -x hack/install-deps.sh ]]; then
  bash hack/install-deps.sh
fi
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "bootstrap: npm ci" >&2
  npm ci --no-audit --no-fund >&2
fi
bash hack/kube/build.sh >/dev/null
bash hack/tools/build.sh helm >/dev/null
bash hack/tools/build.sh promtool >/dev/null
