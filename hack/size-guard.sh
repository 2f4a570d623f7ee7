#!/usr/bin/env bash
# Size guard (CI): no non-test TypeScript file in operator/, agent/, lib/ or cmd/ over 500 lines. A file that
# grows past it holds more than one concern: split it (see README, Layout). Exits 1 naming the offenders.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
limit=${SIZE_GUARD_LIMIT:-500}
status=0
while IFS= read -r -d '' file; do
  lines=$(wc -l <"$file")
  if ((lines > limit)); then
    echo "size-guard: $file has $lines lines (limit $limit)" >&2
    status=1
  fi
done < <(find operator agent lib cmd -name '*.ts' ! -name '*.test.ts' -print0)
if ((status == 0)); then echo "size-guard: no non-test file in operator/ agent/ lib/ cmd/ over $limit lines"; fi
exit "$status"
