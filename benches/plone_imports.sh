#!/usr/bin/env bash
# `import Products.CMFPlone` on the frozen Plone 6 tree: in place against a
# copy run through bbrun with the import index (benches/plone_imports.py).
# Needs the cached tree (bash benches/plone_tree.sh) and root (a private
# mount namespace puts the in-place copy at its build root). BBRUN=path
# compares another build; BASELINE=path adds a second binary's column.
#
#   bash benches/plone_imports.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
# As users run (and tests/run.sh): Python writes byte-code. With
# PYTHONDONTWRITEBYTECODE set, a module shipped without a .pyc is compiled
# at every run, in place as moved, and that hides what is measured.
unset PYTHONDONTWRITEBYTECODE PYTHONUNBUFFERED
command -v strace >/dev/null || { echo "strace not installed (apt-get install strace)" >&2; exit 1; }
[ -f target/bench-cache/plone/tree.json ] || { echo "no cached Plone tree: run bash benches/plone_tree.sh first" >&2; exit 1; }
[ -n "${BBRUN:-}" ] || cargo build --release -q --bin bbrun
exec unshare -m python3 benches/plone_imports.py "${BBRUN:-$(bash benches/release_dir.sh)/bbrun}" "${1:-10}"
