#!/usr/bin/env bash
# Operator check on the frozen Plone 6 tree (benches/plone_check.py): in
# place against a `cp -a` copy, with the build root present and gone, and
# the cost of `import Products.CMFPlone` (wall time, strace counts).
# Not run in CI (minutes, ~1 GB of copies under target/bench-cache/plone).
#
#   bash benches/plone_check.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v strace >/dev/null || { echo "strace not installed (apt-get install strace)" >&2; exit 1; }
cargo build --release -q --bin bbrun
python3 benches/plone_check.py "$(bash benches/release_dir.sh)/bbrun" "${1:-5}"
