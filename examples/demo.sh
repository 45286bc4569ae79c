#!/usr/bin/env bash
# One command: build bbrun, then build, freeze, move and run the sample buildout.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin bbrun
python3 examples/demo.py target/release/bbrun
