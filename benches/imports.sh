#!/usr/bin/env bash
# Import speed of a moved tree with the import index against in place, same
# run (see benches/imports.py). BBRUN=path/to/bbrun compares another build.
set -euo pipefail
cd "$(dirname "$0")/.."
# As users run (and tests/run.sh): Python writes byte-code. With
# PYTHONDONTWRITEBYTECODE set, a module shipped without a .pyc is compiled
# at every run, in place as moved, and that hides what is measured.
unset PYTHONDONTWRITEBYTECODE PYTHONUNBUFFERED
[ -n "${BBRUN:-}" ] || cargo build --release --bin bbrun
python3 benches/imports.py "${BBRUN:-$(bash benches/release_dir.sh)/bbrun}" "${1:-20}"
