#!/usr/bin/env bash
# The Python package's CI: a venv with maturin, numpy and pytest, a debug (dev-profile) build
# of the native module with `maturin develop`, then pytest. Shares the workspace's target dir
# so the Rust crates are not built twice. Usage: bindings/python/ci.sh (from anywhere).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${BLOCKFUSE_PY_VENV:-$root/target/python-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "maturin>=1.5,<2" numpy pytest
cd "$here"
CARGO_TARGET_DIR="$root/target" VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" "$venv/bin/maturin" develop --quiet
"$venv/bin/python" -m pytest -q tests
