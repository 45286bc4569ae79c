#!/usr/bin/env bash
# The frozen Plone 6 tree (benches/plone_tree.py): built once under
# target/bench-cache/plone with the release bbrun, reused after. Prints
# eggs, sys.path entries of bin/instance, files, MB and build times.
#
#   bash benches/plone_tree.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q --bin bbrun
python3 benches/plone_tree.py "$(bash benches/release_dir.sh)/bbrun"
