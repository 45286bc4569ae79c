#!/usr/bin/env bash
# Launcher overhead against plain python, same run (see benches/launcher.py).
set -euo pipefail
cd "$(dirname "$0")/.."
# As users run (and tests/run.sh): Python writes byte-code. With
# PYTHONDONTWRITEBYTECODE set, a module shipped without a .pyc is compiled
# at every run, in place as moved, and that hides what is measured.
unset PYTHONDONTWRITEBYTECODE PYTHONUNBUFFERED
cargo build --release --bin bbrun
python3 benches/launcher.py "$(bash benches/release_dir.sh)/bbrun" "${1:-40}"
