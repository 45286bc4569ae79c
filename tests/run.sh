#!/usr/bin/env bash
# The test command (README.md, .ci/run): Rust unit tests, then the
# integration tests that drive real buildouts through the real binary.
# Extra arguments go to pytest (e.g. `bash tests/run.sh -k relocation`).
set -euo pipefail
cd "$(dirname "$0")/.."

# Tests run as users run: Python writes byte-code (stale .pyc files after
# a move or an install would show up as changed files) and buffers output.
unset PYTHONDONTWRITEBYTECODE PYTHONUNBUFFERED

cargo build --workspace --bins
cargo test --workspace

venv=target/test-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check pytest

"$venv/bin/python" -m pytest tests -q -p no:cacheprovider "$@"
