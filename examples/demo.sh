#!/usr/bin/env bash
# One command: build bbrun, then build, freeze, move and run the sample buildout.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin bbrun
# .cargo/config.toml builds for the host triple (a static-pie launcher):
# the binary is under target/<host triple>/release.
python3 examples/demo.py "target/$(rustc -vV | sed -n 's/^host: //p')/release/bbrun"
