#!/usr/bin/env bash
# Launcher overhead against plain python, same run (see benches/launcher.py).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin bbrun
python3 benches/launcher.py target/release/bbrun "${1:-40}"
