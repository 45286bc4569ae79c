#!/usr/bin/env bash
# Print the directory cargo puts release binaries in. .cargo/config.toml
# names the host as the build target (the launcher is linked static-pie),
# so that is target/<host triple>/release.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "${CARGO_TARGET_DIR:-$PWD/target}/$(rustc -vV | sed -n 's/^host: //p')/release"
