#!/usr/bin/env bash
# Re-signs every bundled extension with the development key (keys/README.md). Development only.
set -euo pipefail
cd "$(dirname "$0")/.."
for dir in plugins/*/ plugins/@*/*/; do
  [ -f "$dir/package.json" ] || continue
  npx plinth sign "$dir" --key keys/dev-publisher.key --publisher plinth-dev
done
