#!/usr/bin/env bash
# Import speed of a moved tree with the import index against in place, same
# run (see benches/imports.py). BBRUN=path/to/bbrun compares another build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${BBRUN:-}" ] || cargo build --release --bin bbrun
python3 benches/imports.py "${BBRUN:-target/release/bbrun}" "${1:-20}"
